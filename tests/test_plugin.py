"""The plugin inside this test process: entry point, lazy loading, host policy,
environment changes, rotation and AppRole renewal against real servers."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import harness
import pytest
import requests
from conftest import apply, plugin_env, search_url, send
from mlflow.tracking.request_auth.registry import fetch_auth
from mlflow_secrets_auth.provider import MlflowSecretsAuthError, SecretsAuth


def test_entry_point_returns_our_auth_object() -> None:
    assert isinstance(fetch_auth("mlflow_secrets_auth"), SecretsAuth)


def test_import_loads_nothing_until_the_first_request(
    vault_ready: harness.VaultServer, mlflow_server: harness.MlflowServer
) -> None:
    code = """
import sys
from mlflow_secrets_auth.provider import SecretsAuthProvider
from mlflow_secrets_auth import _native
auth = SecretsAuthProvider().get_auth()
maps = lambda: open("/proc/self/maps").read()
assert "libmlflow_secrets_auth" not in maps(), "loaded at import"
assert "mlflow_secrets_auth._ffi" not in sys.modules
import requests
r = requests.Request("GET", sys.argv[1]).prepare()
try:
    auth(r)
except Exception as exc:
    print("error:", exc)
assert "libmlflow_secrets_auth" in maps(), "not loaded on first use"
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "VAULT_"))}
    out = subprocess.run(
        [sys.executable, "-c", code, mlflow_server.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")
    assert "no secret provider is enabled" in out.stdout


def test_host_policy_is_enforced_per_request(
    use_env,
    vault_ready: harness.VaultServer,  # type: ignore[no-untyped-def]
    mlflow_server: harness.MlflowServer,
    reader_token: str,
    secret_path: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    user, password = mlflow_server.basic_auth
    vault_ready.kv_put("secret", secret_path, {"username": user, "password": password}, version=1)
    use_env(
        plugin_env(
            vault_ready,
            mlflow_server.url,
            VAULT_TOKEN=reader_token,
            MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
            MLFLOW_VAULT_AUTH_MODE="basic",
        )
    )
    assert send(search_url(mlflow_server.url)).status_code == 200
    # The same server under another name is another host: no credentials, one warning.
    other = mlflow_server.url.replace("127.0.0.1", "localhost")
    with caplog.at_level(logging.WARNING, logger="mlflow_secrets_auth"):
        assert "Authorization" not in apply(search_url(other)).headers
        assert send(search_url(other)).status_code == 401
    warnings = [r.getMessage() for r in caplog.records if "localhost" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "MLFLOW_SECRETS_ALLOWED_HOSTS" in warnings[0]
    assert "Authorization" not in apply("https://mlflow.attacker.example/x").headers
    # Allowing it through the environment takes effect on the next request.
    os.environ["MLFLOW_SECRETS_ALLOWED_HOSTS"] = "localhost"
    assert send(search_url(other)).status_code == 200
    assert "Authorization" not in apply(search_url(mlflow_server.url)).headers  # no longer on the list
    os.environ["MLFLOW_SECRETS_ALLOWED_HOSTS"] = "*.example.com,localhost:1"
    assert "Authorization" in apply("https://a.b.example.com/x").headers
    assert "Authorization" not in apply("https://example.com.evil.net/x").headers
    assert "Authorization" not in apply(search_url(other)).headers  # port does not match


def test_errors_raise_with_the_variable(
    use_env,
    vault_ready: harness.VaultServer,  # type: ignore[no-untyped-def]
    mlflow_server: harness.MlflowServer,
) -> None:
    use_env(
        plugin_env(
            vault_ready,
            mlflow_server.url,
            VAULT_TOKEN="not-a-real-token-value",
            MLFLOW_VAULT_SECRET_PATH="secret/mlflow/x",
        )
    )
    with pytest.raises(MlflowSecretsAuthError) as err:
        apply(mlflow_server.url)
    assert err.value.code == "backend"
    assert "permission denied" in str(err.value)
    assert "not-a-real-token-value" not in str(err.value)
    os.environ["MLFLOW_SECRETS_AUTH_ENABLE"] = ""
    with pytest.raises(MlflowSecretsAuthError) as err:
        apply(mlflow_server.url)
    assert err.value.code == "not_enabled"
    assert err.value.variable == "MLFLOW_SECRETS_AUTH_ENABLE"


def test_environment_change_switches_secret(
    use_env,
    vault_ready: harness.VaultServer,  # type: ignore[no-untyped-def]
    bearer_proxy: harness.NginxBearerProxy,
    reader_token: str,
) -> None:
    vault_ready.kv_put("kv2", "mlflow/first", {"token": "first-token"}, version=2)
    vault_ready.kv_put("kv2", "mlflow/second", {"token": bearer_proxy.token}, version=2)
    use_env(
        plugin_env(vault_ready, bearer_proxy.url, VAULT_TOKEN=reader_token, MLFLOW_VAULT_SECRET_PATH="kv2/mlflow/first")
    )
    assert send(search_url(bearer_proxy.url)).status_code == 401
    os.environ["MLFLOW_VAULT_SECRET_PATH"] = "kv2/mlflow/second"
    assert send(search_url(bearer_proxy.url)).status_code == 200
    os.environ["MLFLOW_AUTH_HEADER_NAME"] = "X-Api-Key"
    assert apply(bearer_proxy.url).headers["X-Api-Key"] == bearer_proxy.token


def test_rotation_is_picked_up_after_the_ttl(
    use_env,
    vault_ready: harness.VaultServer,  # type: ignore[no-untyped-def]
    mlflow_server: harness.MlflowServer,
    reader_token: str,
    secret_path: str,
) -> None:
    admin = mlflow_server.basic_auth
    user = f"svc-{secret_path.split('/')[-1]}"
    old, new = "old-Passw0rd-" + user, "new-Passw0rd-" + user
    requests.post(
        f"{mlflow_server.url}/api/2.0/mlflow/users/create",
        json={"username": user, "password": old},
        auth=admin,
        timeout=30,
    ).raise_for_status()
    vault_ready.kv_put("secret", secret_path, {"username": user, "password": old}, version=1)
    use_env(
        plugin_env(
            vault_ready,
            mlflow_server.url,
            VAULT_TOKEN=reader_token,
            MLFLOW_VAULT_TTL_SEC="3",
            MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
            MLFLOW_VAULT_AUTH_MODE="basic",
        )
    )
    assert send(search_url(mlflow_server.url)).status_code == 200
    rotated_at = time.monotonic()
    requests.patch(
        f"{mlflow_server.url}/api/2.0/mlflow/users/update-password",
        json={"username": user, "password": new},
        auth=admin,
        timeout=30,
    ).raise_for_status()
    vault_ready.kv_put("secret", secret_path, {"username": user, "password": new}, version=1)
    # Within the TTL the cached (now rotated-out) credential is still sent.
    status = send(search_url(mlflow_server.url)).status_code
    if time.monotonic() - rotated_at < 2.5:
        assert status == 401
    time.sleep(max(0.0, 3.2 - (time.monotonic() - rotated_at)))
    assert send(search_url(mlflow_server.url)).status_code == 200


def test_approle_token_is_renewed_then_replaced(
    use_env,
    vault_ready: harness.VaultServer,  # type: ignore[no-untyped-def]
    mlflow_server: harness.MlflowServer,
    secret_path: str,
) -> None:
    """2-second renewable tokens, 6-second max TTL, secret re-read every second:
    requests keep succeeding for 14 s while the plugin renews and logs in again,
    and it logs in far less often than it fetches."""
    user, password = mlflow_server.basic_auth
    vault_ready.kv_put("kv2", secret_path, {"username": user, "password": password}, version=2)
    role = "renew-" + secret_path.split("/")[-1]
    vault_ready.api(
        "POST",
        f"auth/approle/role/{role}",
        {"token_policies": ["mlflow-reader"], "token_ttl": "2s", "token_max_ttl": "6s"},
    )
    role_id = vault_ready.api("GET", f"auth/approle/role/{role}/role-id")["data"]["role_id"]
    secret_id = vault_ready.api("POST", f"auth/approle/role/{role}/secret-id", {"num_uses": 100})["data"]["secret_id"]
    use_env(
        plugin_env(
            vault_ready,
            mlflow_server.url,
            VAULT_ROLE_ID=role_id,
            VAULT_SECRET_ID=secret_id,
            MLFLOW_VAULT_TTL_SEC="1",
            MLFLOW_VAULT_SECRET_PATH=f"kv2/{secret_path}",
            MLFLOW_VAULT_AUTH_MODE="basic",
        )
    )
    deadline, requests_sent = time.monotonic() + 14, 0
    while time.monotonic() < deadline:
        assert send(search_url(mlflow_server.url)).status_code == 200
        requests_sent += 1
        time.sleep(0.25)
    remaining = vault_ready.api("POST", f"auth/approle/role/{role}/secret-id/lookup", {"secret_id": secret_id})["data"][
        "secret_id_num_uses"
    ]
    logins = 100 - int(remaining)
    # One login per 6 s token lifetime (renewed at 2 s in between): about 3 in 14 s.
    # Without renewal it would be ~7, with a login per fetch ~14.
    assert 2 <= logins <= 4, f"{logins} logins for {requests_sent} requests"


def test_vault_over_tls(
    use_env,
    vault_ready: harness.VaultServer,
    mlflow_server: harness.MlflowServer,  # type: ignore[no-untyped-def]
    reader_token: str,
    secret_path: str,
    tmp_path,
) -> None:  # type: ignore[no-untyped-def]
    """VAULT_CACERT / VAULT_CAPATH trust a private CA; without them the
    certificate is refused; VAULT_SKIP_VERIFY turns verification off."""
    ca, cert, key = harness.make_tls_files(tmp_path / "tls")
    capath = tmp_path / "capath"
    capath.mkdir()
    (capath / "ca.pem").write_bytes(ca.read_bytes())
    vault_ready.kv_put("secret", secret_path, {"token": "tls-token"}, version=1)
    with harness.LoopbackProxy(vault_ready.addr.split("//")[1], tls=(cert, key)) as proxy:
        env = plugin_env(
            vault_ready,
            mlflow_server.url,
            VAULT_ADDR=proxy.url,
            VAULT_TOKEN=reader_token,
            MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
        )
        use_env(env)
        with pytest.raises(MlflowSecretsAuthError) as err:
            apply(mlflow_server.url)
        assert "certificate" in str(err.value)
        assert "VAULT_ADDR" in str(err.value)
        for extra in ({"VAULT_CACERT": str(ca)}, {"VAULT_CAPATH": str(capath)}, {"VAULT_SKIP_VERIFY": "true"}):
            for k in ("VAULT_CACERT", "VAULT_CAPATH", "VAULT_SKIP_VERIFY"):
                os.environ.pop(k, None)
            os.environ.update(extra)
            assert apply(mlflow_server.url).headers["Authorization"] == "Bearer tls-token", extra
        assert proxy.connections >= 3
