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

pytestmark = pytest.mark.both_vaults  # every test here runs against OpenBao and HashiCorp Vault


def poll_until(check, what: str, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    """Call ``check`` until it returns a truthy value (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not observed within {timeout:.0f}s: {what}"
        time.sleep(0.05)


def test_entry_point_returns_our_auth_object() -> None:
    assert isinstance(fetch_auth("mlflow_secrets_auth"), SecretsAuth)


def test_import_loads_nothing_until_the_first_request() -> None:
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
        [sys.executable, "-c", code, "https://mlflow.test:5000"],
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
    vault_ready: harness.VaultAPIServer,  # type: ignore[no-untyped-def]
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
    vault_ready: harness.VaultAPIServer,  # type: ignore[no-untyped-def]
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
    assert "rejected the token in VAULT_TOKEN" in str(err.value)
    assert "not-a-real-token-value" not in str(err.value)
    os.environ["MLFLOW_SECRETS_AUTH_ENABLE"] = ""
    with pytest.raises(MlflowSecretsAuthError) as err:
        apply(mlflow_server.url)
    assert err.value.code == "not_enabled"
    assert err.value.variable == "MLFLOW_SECRETS_AUTH_ENABLE"


def test_environment_change_switches_secret(
    use_env,
    vault_ready: harness.VaultAPIServer,  # type: ignore[no-untyped-def]
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


def test_rotation_cached_within_the_ttl_then_picked_up(
    use_env,
    vault_ready: harness.VaultAPIServer,  # type: ignore[no-untyped-def]
    mlflow_server: harness.MlflowServer,
    reader_token: str,
    secret_path: str,
) -> None:
    """Within the TTL the cached credential is sent even after the secret changed
    (one Vault read); after it, the rotated one is picked up without a restart."""
    admin = mlflow_server.basic_auth
    user = f"svc-{secret_path.split('/')[-1]}"
    old, new = "old-Passw0rd-" + user, "new-Passw0rd-" + user
    requests.post(
        f"{mlflow_server.url}/api/2.0/mlflow/users/create",
        json={"username": user, "password": old},
        auth=admin,
        timeout=30,
    ).raise_for_status()
    cached, short = f"secret/{secret_path}-cached", f"secret/{secret_path}-short"
    for path in (cached, short):
        vault_ready.kv_put("secret", path.removeprefix("secret/"), {"username": user, "password": old}, version=1)
    with harness.LoopbackProxy(vault_ready.addr.split("//")[1]) as proxy:
        env = plugin_env(
            vault_ready,
            mlflow_server.url,
            VAULT_ADDR=proxy.url,
            VAULT_TOKEN=reader_token,
            MLFLOW_VAULT_AUTH_MODE="basic",
        )
        # A one-hour TTL: the value read first is kept, whatever Vault holds now.
        use_env({**env, "MLFLOW_VAULT_SECRET_PATH": cached, "MLFLOW_VAULT_TTL_SEC": "3600"})
        assert send(search_url(mlflow_server.url)).status_code == 200
        vault_ready.kv_put("secret", cached.removeprefix("secret/"), {"username": user, "password": "wrong"}, version=1)
        for _ in range(3):
            assert send(search_url(mlflow_server.url)).status_code == 200
        assert proxy.count("GET", f"/v1/{cached}") == 1, proxy.request_lines
        # A two-second TTL: rotate in MLflow and in Vault; the new password is used
        # as soon as the plugin has re-read it.
        use_env({**env, "MLFLOW_VAULT_SECRET_PATH": short, "MLFLOW_VAULT_TTL_SEC": "2"})
        assert send(search_url(mlflow_server.url)).status_code == 200
        requests.patch(
            f"{mlflow_server.url}/api/2.0/mlflow/users/update-password",
            json={"username": user, "password": new},
            auth=admin,
            timeout=30,
        ).raise_for_status()
        vault_ready.kv_put("secret", short.removeprefix("secret/"), {"username": user, "password": new}, version=1)
        poll_until(lambda: send(search_url(mlflow_server.url)).status_code == 200, "the rotated password in use")
        assert proxy.count("GET", f"/v1/{short}") >= 2


def test_approle_token_is_renewed_then_replaced(
    use_env,
    vault_ready: harness.VaultAPIServer,  # type: ignore[no-untyped-def]
    mlflow_server: harness.MlflowServer,
    secret_path: str,
) -> None:
    """2-second renewable tokens with a 6-second max TTL, the secret re-read every
    second: the plugin renews its token (observed: renew-self) before it logs in
    again (observed: a second login), every request meanwhile succeeds, and it
    logs in less often than it reads."""
    user, password = mlflow_server.basic_auth
    vault_ready.kv_put("kv2", secret_path, {"username": user, "password": password}, version=2)
    role = "renew-" + secret_path.split("/")[-1]
    role_id, secret_id = vault_ready.create_approle(role, ["mlflow-reader"], token_ttl="2s", token_max_ttl="6s")
    with harness.LoopbackProxy(vault_ready.addr.split("//")[1]) as proxy:
        use_env(
            plugin_env(
                vault_ready,
                mlflow_server.url,
                VAULT_ADDR=proxy.url,
                VAULT_ROLE_ID=role_id,
                VAULT_SECRET_ID=secret_id,
                MLFLOW_VAULT_TTL_SEC="1",
                MLFLOW_VAULT_SECRET_PATH=f"kv2/{secret_path}",
                MLFLOW_VAULT_AUTH_MODE="basic",
            )
        )

        def events() -> tuple[list[str], list[int], list[int]]:
            lines = list(proxy.request_lines)
            logins = [i for i, line in enumerate(lines) if line.startswith("PUT /v1/auth/approle/login")]
            renewals = [i for i, line in enumerate(lines) if line.startswith("PUT /v1/auth/token/renew-self")]
            return lines, logins, renewals

        def replaced_after_renewal() -> bool:
            assert send(search_url(mlflow_server.url)).status_code == 200  # never a failed request
            _, logins, renewals = events()
            return len(logins) >= 2 and bool(renewals) and renewals[0] < logins[1]

        poll_until(replaced_after_renewal, "a token renewal followed by a new login", timeout=45)
        lines, logins, _ = events()
    reads = sum(1 for line in lines if line.startswith(f"GET /v1/kv2/data/{secret_path}"))
    assert len(logins) < reads, lines


def test_vault_over_tls(
    use_env,
    vault_ready: harness.VaultAPIServer,
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
