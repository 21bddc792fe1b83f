"""Checks that the integration-test harness really runs working servers.

Its own suite (`make test-harness`), so the product suite's count means product
tests. The Vault API checks run against OpenBao and HashiCorp Vault."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import harness
import pytest
import requests

SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


def _uid() -> str:
    return uuid.uuid4().hex[:8]


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #


def test_free_port_is_bindable() -> None:
    import socket

    port = harness.free_port()
    assert 1024 < port < 65536
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


@pytest.mark.hashicorp
def test_vault_binary_cached_under_hash(vault_binary: Path) -> None:
    assert vault_binary == harness.vault_server_binary_path()
    assert vault_binary.name.startswith("vaultserver-") and vault_binary.name.endswith(".test")
    assert len(vault_binary.name) == len("vaultserver-") + 12 + len(".test")
    assert os.access(vault_binary, os.X_OK)
    assert harness.REPO_ROOT not in vault_binary.parents


# --------------------------------------------------------------------------- #
# Vault and OpenBao
# --------------------------------------------------------------------------- #

both = pytest.mark.both_vaults


@both
def test_vault_kv_v1_roundtrip(vault_server: harness.VaultAPIServer) -> None:
    # secret/ is pre-mounted as KV v1 in the test core; enable_kv must cope.
    vault_server.enable_kv("secret", 1)
    path = f"app/{_uid()}"
    vault_server.kv_put("secret", path, {"token": "v1-value"}, version=1)
    r = requests.get(
        f"{vault_server.addr}/v1/secret/{path}",
        headers={"X-Vault-Token": vault_server.root_token},
        timeout=5,
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"token": "v1-value"}
    assert vault_server.kv_get("secret", path, version=1) == {"token": "v1-value"}


@both
def test_vault_kv_v2_roundtrip(vault_server: harness.VaultAPIServer) -> None:
    mount = f"kv2-{_uid()}"
    vault_server.enable_kv(mount, 2)
    vault_server.enable_kv(mount, 2)  # idempotent
    vault_server.kv_put(mount, "mlflow/auth", {"username": "u", "password": "p1"}, version=2)
    vault_server.kv_put(mount, "mlflow/auth", {"username": "u", "password": "p2"}, version=2)
    r = requests.get(
        f"{vault_server.addr}/v1/{mount}/data/mlflow/auth",
        headers={"X-Vault-Token": vault_server.root_token},
        timeout=5,
    )
    assert r.status_code == 200, r.text
    body = r.json()["data"]
    assert body["data"] == {"username": "u", "password": "p2"}
    assert body["metadata"]["version"] == 2
    mounts = vault_server.api("GET", "sys/mounts")["data"]
    assert mounts[f"{mount}/"]["options"]["version"] == "2"


@both
def test_vault_kv_version_switch(vault_server: harness.VaultAPIServer) -> None:
    mount = f"kvsw-{_uid()}"
    vault_server.enable_kv(mount, 1)
    vault_server.kv_put(mount, "x", {"a": "1"}, version=1)
    vault_server.enable_kv(mount, 2)
    vault_server.kv_put(mount, "x", {"a": "2"}, version=2)
    mounts = vault_server.api("GET", "sys/mounts")["data"]
    assert mounts[f"{mount}/"]["options"]["version"] == "2"
    body = vault_server.api("GET", f"{mount}/data/x")["data"]
    assert body["data"] == {"a": "2"}
    assert body["metadata"]["version"] == 1
    vault_server.enable_kv(mount, 1)
    mounts = vault_server.api("GET", "sys/mounts")["data"]
    assert mounts[f"{mount}/"]["options"]["version"] == "1"


@both
def test_vault_policy_token_and_approle(vault_server: harness.VaultAPIServer) -> None:
    mount = f"kv-{_uid()}"
    vault_server.enable_kv(mount, 2)
    vault_server.kv_put(mount, "app", {"token": "t"}, version=2)
    policy = f"read-{mount}"
    vault_server.write_policy(policy, f'path "{mount}/data/*" {{ capabilities = ["read"] }}\n')

    token = vault_server.create_token([policy], ttl="15m")
    info = vault_server.lookup_token(token)
    assert policy in info["policies"]
    assert 850 <= info["ttl"] <= 900
    assert vault_server.kv_get(mount, "app") == {"token": "t"}
    r = requests.get(
        f"{vault_server.addr}/v1/{mount}/data/app",
        headers={"X-Vault-Token": token},
        timeout=5,
    )
    assert r.status_code == 200 and r.json()["data"]["data"] == {"token": "t"}
    r = requests.post(
        f"{vault_server.addr}/v1/{mount}/data/app",
        headers={"X-Vault-Token": token},
        json={"data": {"token": "evil"}},
        timeout=5,
    )
    assert r.status_code == 403

    vault_server.enable_approle()
    vault_server.enable_approle()  # idempotent
    role_id, secret_id = vault_server.create_approle(f"role-{_uid()}", [policy], token_ttl=600, token_max_ttl=1200)
    r = requests.post(
        f"{vault_server.addr}/v1/auth/approle/login",
        json={"role_id": role_id, "secret_id": secret_id},
        timeout=5,
    )
    assert r.status_code == 200, r.text
    auth = r.json()["auth"]
    assert auth["lease_duration"] == 600
    assert policy in auth["token_policies"]
    info = vault_server.lookup_token(auth["client_token"])
    assert 590 <= info["ttl"] <= 600
    r = requests.get(
        f"{vault_server.addr}/v1/{mount}/data/app",
        headers={"X-Vault-Token": auth["client_token"]},
        timeout=5,
    )
    assert r.status_code == 200
    again = vault_server.approle_login(role_id, secret_id)
    assert again["lease_duration"] == 600
    assert again["client_token"] != auth["client_token"]

    bad = requests.post(
        f"{vault_server.addr}/v1/auth/approle/login",
        json={"role_id": role_id, "secret_id": "not-the-secret"},
        timeout=5,
    )
    assert bad.status_code in (400, 403)


@both
def test_vault_stop_and_start(vault_kind: str) -> None:
    # Own instance, so the session-wide server is not disturbed.
    kwargs = {"binary": harness.ensure_vault_server_binary()} if vault_kind == harness.HASHICORP else {}
    with harness.vault_api_server(vault_kind, **kwargs) as vault:
        vault.enable_kv("secret", 1)
        vault.kv_put("secret", "a", {"k": "v"}, version=1)
        old_addr = vault.addr
        vault.stop()
        assert not vault.running
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{old_addr}/v1/sys/health", timeout=2)
        vault.start()
        assert vault.running
        r = requests.get(f"{vault.addr}/v1/sys/health", timeout=5)
        assert r.status_code == 200 and r.json()["sealed"] is False
        # A fresh in-memory Vault: the old data is gone, the new root token works.
        vault.enable_kv("secret", 1)
        vault.kv_put("secret", "b", {"k": "w"}, version=1)
        assert vault.kv_get("secret", "b", version=1) == {"k": "w"}
        tmp = vault._tmp
        assert tmp is not None and tmp.exists()
        proc = vault._proc
        assert proc is not None
    assert tmp is not None and not tmp.exists()
    assert proc.poll() is not None


def test_openbao_namespace_and_tls_listener(tmp_path: Path) -> None:
    ca, cert, key = harness.make_tls_files(tmp_path / "tls", names=("vault.test",))
    with harness.OpenBaoServer(tls=harness.TLSListener(cert, key)) as bao:
        assert bao.kind == harness.OPENBAO
        assert bao.api("GET", "sys/mounts")["data"]["secret/"]["options"]["version"] == "1"  # like Vault's core
        bao.create_namespace("team")
        bao.api("POST", "sys/mounts/kv", {"type": "kv", "options": {"version": "2"}}, namespace="team")
        bao.api("POST", "kv/data/x", {"data": {"k": "in-team"}}, namespace="team")
        assert bao.api("GET", "kv/data/x", namespace="team")["data"]["data"] == {"k": "in-team"}
        with pytest.raises(harness.HarnessError, match="404"):
            bao.api("GET", "kv/data/x")  # not in the root namespace
        with pytest.raises(
            requests.exceptions.SSLError, match="not valid for"
        ):  # the certificate names vault.test only
            requests.get(f"{bao.tls_addr}/v1/sys/health", verify=str(ca), timeout=5)


# --------------------------------------------------------------------------- #
# MLflow
# --------------------------------------------------------------------------- #


def test_mlflow_requires_basic_auth(mlflow_server: harness.MlflowServer) -> None:
    r = requests.get(mlflow_server.url + SEARCH, timeout=10)
    assert r.status_code == 401
    r = requests.get(mlflow_server.url + SEARCH, auth=("admin", "wrong-password"), timeout=10)
    assert r.status_code == 401
    r = requests.get(mlflow_server.url + SEARCH, auth=mlflow_server.basic_auth, timeout=10)
    assert r.status_code == 200, r.text
    assert "experiments" in r.json()


# --------------------------------------------------------------------------- #
# nginx
# --------------------------------------------------------------------------- #


def test_proxy_bearer_check(bearer_proxy: harness.NginxBearerProxy) -> None:
    url = bearer_proxy.url + SEARCH
    before = bearer_proxy.counts()

    assert requests.get(url, timeout=10).status_code == 401
    wrong = [
        "Bearer wrong",
        f"bearer {bearer_proxy.token}",
        f"Bearer {bearer_proxy.token}x",
        f"Bearer {bearer_proxy.token[:-1]}",
        f"Basic {bearer_proxy.token}",
        bearer_proxy.upstream.basic_auth_header,
    ]
    for value in wrong:
        r = requests.get(url, headers={"Authorization": value}, timeout=10)
        assert r.status_code == 401, value.split(" ", 1)[0]

    good = {"Authorization": f"Bearer {bearer_proxy.token}"}
    r = requests.get(url, headers=good, timeout=10)
    assert r.status_code == 200, r.text
    assert "experiments" in r.json()

    want_rejected = before.rejected + 1 + len(wrong)
    after = bearer_proxy.wait_for_counts(accepted=before.accepted + 1, rejected=want_rejected)
    assert after == harness.ProxyCounts(before.accepted + 1, want_rejected)


def test_proxy_passes_large_artifact_upload(
    bearer_proxy: harness.NginxBearerProxy,
) -> None:
    good = {"Authorization": f"Bearer {bearer_proxy.token}"}
    payload = os.urandom(3 * 1024 * 1024 + 17)  # above nginx's default 1 MiB limit
    path = f"/api/2.0/mlflow-artifacts/artifacts/harness-{_uid()}/blob.bin"
    r = requests.put(bearer_proxy.url + path, data=payload, headers=good, timeout=60)
    assert r.status_code == 200, r.text[:300]
    r = requests.get(bearer_proxy.url + path, headers=good, timeout=60)
    assert r.status_code == 200
    assert r.content == payload


def test_proxy_stops_cleanly(mlflow_server: harness.MlflowServer) -> None:
    with harness.NginxBearerProxy(mlflow_server, "tok-" + _uid()) as proxy:
        tmp, proc, port = proxy._tmp, proxy._proc, proxy.port
        assert proc is not None and tmp is not None
        r = requests.get(
            proxy.url + SEARCH,
            headers={"Authorization": f"Bearer {proxy.token}"},
            timeout=10,
        )
        assert r.status_code == 200
    assert proc.poll() is not None
    assert not tmp.exists()
    deadline = time.monotonic() + 5
    while harness._port_open(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not harness._port_open(port)


# --------------------------------------------------------------------------- #
# Request counting
# --------------------------------------------------------------------------- #


STREAM = (
    b"GET /v1/secret/a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"
    b"PUT /v1/auth/approle/login HTTP/1.1\r\nContent-Length: 27\r\n\r\nGET /v1/not-a-request HTTP/"
    b"POST /v1/b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    b"GET /v1/c HTTP/1.1\r\n\r\n"
)
EXPECTED = ["GET /v1/secret/a?x=1", "PUT /v1/auth/approle/login", "POST /v1/b", "GET /v1/c"]


@pytest.mark.parametrize("size", [1, 2, 7, 64, len(STREAM)])
def test_request_stream_counts_split_and_pipelined_requests(size: int) -> None:
    """Request lines split across reads, several requests in one read, and a
    body that looks like a request line (not counted)."""
    stream = harness.HTTPRequestStream()
    seen: list[str] = []
    for i in range(0, len(STREAM), size):
        seen += stream.feed(STREAM[i : i + size])
    assert seen == EXPECTED


def test_loopback_proxy_counts_requests(vault_server: harness.VaultAPIServer) -> None:
    with harness.LoopbackProxy(vault_server.addr.split("//")[1]) as proxy:
        with requests.Session() as session:  # one kept-alive connection
            for _ in range(3):
                r = session.get(f"{proxy.url}/v1/sys/health", timeout=5)
                assert r.status_code == 200
        proxy.wait_for(lambda: proxy.count("GET", "/v1/sys/health") == 3, "three counted requests", timeout=5)
        assert proxy.accepted == proxy.connections == 1
