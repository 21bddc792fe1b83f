"""When the MLflow server answers 401 to our credential, the plugin rejects
exactly that credential in the core (by its fingerprint) and, if the core then
has another one, re-sends the request once, with the session's own settings.
A 401 never clears anything else: during a backend outage the held credential
keeps being served.

A real ``mlflow server --app-name basic-auth`` behind a TLS loopback proxy
(the client trusts it only through MLFLOW_TRACKING_SERVER_CERT_PATH, so a
re-send that lost the session's ``verify`` fails), a real Vault API server
(OpenBao) behind a counting loopback proxy.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import harness
import mlflow
import pytest
import requests
from conftest import plugin_env
from faultproxy import FaultProxy
from mlflow.exceptions import MlflowException


@pytest.fixture()
def tls_front(mlflow_server: harness.MlflowServer, tmp_path: Path) -> Iterator[tuple[harness.LoopbackProxy, Path]]:
    ca, cert, key = harness.make_tls_files(tmp_path / "tls")
    with harness.LoopbackProxy(f"127.0.0.1:{mlflow_server.port}", tls=(cert, key)) as proxy:
        yield proxy, ca


@pytest.fixture()
def vault_proxy(vault_ready) -> Iterator[harness.LoopbackProxy]:  # type: ignore[no-untyped-def]
    addr = urlparse(vault_ready.addr)
    with harness.LoopbackProxy(f"{addr.hostname}:{addr.port}") as proxy:
        yield proxy


def secret_reads(proxy: harness.LoopbackProxy, secret_path: str) -> int:
    """Reads of the secret itself (not the mount lookups before them)."""
    lines = list(proxy.request_lines)
    return sum(1 for line in lines if line.startswith("GET ") and secret_path in line and "/sys/" not in line)


def make_user(mlflow_server: harness.MlflowServer, name: str, password: str) -> None:
    requests.post(
        f"{mlflow_server.url}/api/2.0/mlflow/users/create",
        json={"username": name, "password": password},
        auth=mlflow_server.basic_auth,
        timeout=30,
    ).raise_for_status()


def set_password(mlflow_server: harness.MlflowServer, name: str, password: str) -> None:
    requests.patch(
        f"{mlflow_server.url}/api/2.0/mlflow/users/update-password",
        json={"username": name, "password": password},
        auth=mlflow_server.basic_auth,
        timeout=30,
    ).raise_for_status()


def test_rotated_on_the_server_first_is_refetched_and_resent_once(
    use_env, vault_ready, mlflow_server, reader_token, secret_path, tls_front, vault_proxy
) -> None:  # type: ignore[no-untyped-def]
    front, ca = tls_front
    user = "svc-" + secrets.token_hex(4)
    old, new = "old-" + secrets.token_urlsafe(12), "new-" + secrets.token_urlsafe(12)
    make_user(mlflow_server, user, old)
    vault_ready.kv_put("secret", secret_path, {"username": user, "password": old}, version=1)
    use_env(
        plugin_env(
            vault_ready,
            front.url,
            VAULT_ADDR=vault_proxy.url,
            VAULT_TOKEN=reader_token,
            MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
            MLFLOW_VAULT_AUTH_MODE="basic",
            MLFLOW_VAULT_TTL_SEC="3600",  # nothing expires during the test: only the 401 can refresh it
            MLFLOW_TRACKING_SERVER_CERT_PATH=str(ca),
            MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        )
    )
    mlflow.search_experiments()
    assert secret_reads(vault_proxy, secret_path) == 1
    # The server side rotates first; the secret manager follows. No waiting:
    # the rejection refreshes the rejected value at once.
    set_password(mlflow_server, user, new)
    vault_ready.kv_put("secret", secret_path, {"username": user, "password": new}, version=1)
    searches_before = sum("experiments/search" in line for line in front.request_lines)

    mlflow.search_experiments()  # 401 with the old password, then 200 with the new one

    searches = [line for line in front.request_lines if "experiments/search" in line][searches_before:]
    assert len(searches) == 2, searches  # the rejected request and its one re-send
    assert secret_reads(vault_proxy, secret_path) == 2
    mlflow.search_experiments()  # the new credential is now the cached one
    assert secret_reads(vault_proxy, secret_path) == 2


def test_a_server_that_always_answers_401_gets_each_request_once(
    use_env, vault_ready, mlflow_server, reader_token, secret_path, vault_proxy
) -> None:  # type: ignore[no-untyped-def]
    """A wrong secret: every 401 rejects it once, the core reads the same value
    again (same fingerprint), so nothing is re-sent and nothing loops."""
    user = "svc-" + secrets.token_hex(4)
    make_user(mlflow_server, user, "right-" + secrets.token_urlsafe(12))
    vault_ready.kv_put("secret", secret_path, {"username": user, "password": "wrong"}, version=1)
    with harness.LoopbackProxy(f"127.0.0.1:{mlflow_server.port}") as front:
        use_env(
            plugin_env(
                vault_ready,
                front.url,
                VAULT_ADDR=vault_proxy.url,
                VAULT_TOKEN=reader_token,
                MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
                MLFLOW_VAULT_AUTH_MODE="basic",
                MLFLOW_VAULT_TTL_SEC="3600",
                MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
            )
        )
        for _ in range(10):
            with pytest.raises(MlflowException):
                mlflow.search_experiments()
        searches = [line for line in front.request_lines if "experiments/search" in line]
    assert len(searches) == 10  # one request per call: never a re-send of the same credential
    # The first read, then at most one per rejected request (the core coalesces, never loops).
    assert 1 <= secret_reads(vault_proxy, secret_path) <= 11


def test_a_401_during_a_backend_outage_keeps_the_held_credential(
    use_env, vault_ready, mlflow_server, reader_token, secret_path
) -> None:  # type: ignore[no-untyped-def]
    """Issue 14: one 401 while Vault is down must not end stale-serving. The
    rejected value's refresh fails (Vault hangs past MLFLOW_SECRETS_TIMEOUT_SEC),
    the core keeps it, and once the server takes it again every request
    succeeds, Vault still down."""
    user = "svc-" + secrets.token_hex(4)
    password = "pw-" + secrets.token_urlsafe(12)
    make_user(mlflow_server, user, password)
    vault_ready.kv_put("secret", secret_path, {"username": user, "password": password}, version=1)
    with FaultProxy(vault_ready.addr) as vault:
        use_env(
            plugin_env(
                vault_ready,
                mlflow_server.url,
                VAULT_ADDR=vault.url,
                VAULT_TOKEN=reader_token,
                MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
                MLFLOW_VAULT_AUTH_MODE="basic",
                MLFLOW_VAULT_TTL_SEC="3600",
                MLFLOW_SECRETS_TIMEOUT_SEC="2",
                MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
            )
        )
        mlflow.search_experiments()
        reads = vault.count(f"/v1/secret/{secret_path}")
        assert reads == 1
        vault.hang = True  # the outage: Vault never answers from now on
        set_password(mlflow_server, user, "changed-" + secrets.token_urlsafe(8))
        with pytest.raises(MlflowException):
            mlflow.search_experiments()  # 401: the held value is rejected, its refresh fails
        assert vault.count(f"/v1/secret/{secret_path}") == 2  # the rejection did try to refresh it
        set_password(mlflow_server, user, password)
        for _ in range(3):
            mlflow.search_experiments()  # the held value, still served during the outage
