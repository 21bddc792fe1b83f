"""Vault auth recovery through the plugin, against real servers: an AppRole
token revoked behind the plugin's back is replaced by a new login (and the
rotated secret is then served without a restart); a revoked static token is
reported naming VAULT_TOKEN."""

from __future__ import annotations

import time

import harness
import pytest
from conftest import apply, plugin_env
from mlflow_secrets_auth.provider import MlflowSecretsAuthError

pytestmark = pytest.mark.both_vaults  # every test here runs against OpenBao and HashiCorp Vault

TRACKING = "https://mlflow.recovery.test"


def bearer() -> str:
    return str(apply(f"{TRACKING}/api/2.0/mlflow/experiments/search").headers.get("Authorization", ""))


def revoke_role_tokens(vault: harness.VaultAPIServer, role: str) -> int:
    """Revoke every token AppRole issued for ``role`` (the plugin's among them)."""
    accessors = vault.api("GET", "auth/token/accessors?list=true")["data"]["keys"]
    revoked = 0
    for accessor in accessors:
        data = vault.api("POST", "auth/token/lookup-accessor", {"accessor": accessor})["data"]
        if (data.get("meta") or {}).get("role_name") == role:
            vault.api("POST", "auth/token/revoke-accessor", {"accessor": accessor})
            revoked += 1
    return revoked


def test_approle_logs_in_again_after_its_token_is_revoked(
    use_env,  # type: ignore[no-untyped-def]
    vault_ready: harness.VaultAPIServer,
    secret_path: str,
) -> None:
    """Token revoked while the secret_id is still valid, then the secret rotated:
    the plugin must log in again and serve the rotated value. Before the fix it
    kept the old credential for the whole stale window (30 of 30 replies)."""
    vault_ready.kv_put("kv2", secret_path, {"token": "before-rotation"}, version=2)
    role = "recover-" + secret_path.split("/")[-1]
    role_id, secret_id = vault_ready.create_approle(role, ["mlflow-reader"], token_ttl="1h", token_max_ttl="4h")
    with harness.LoopbackProxy(vault_ready.addr.split("//")[1]) as proxy:
        use_env(
            plugin_env(
                vault_ready,
                TRACKING,
                VAULT_ADDR=proxy.url,
                VAULT_ROLE_ID=role_id,
                VAULT_SECRET_ID=secret_id,
                MLFLOW_VAULT_TTL_SEC="1",
                MLFLOW_VAULT_SECRET_PATH=f"kv2/{secret_path}",
            )
        )
        assert bearer() == "Bearer before-rotation"
        assert proxy.count("PUT", "/v1/auth/approle/login") == 1, proxy.request_lines
        assert revoke_role_tokens(vault_ready, role) == 1
        vault_ready.kv_put("kv2", secret_path, {"token": "after-rotation"}, version=2)
        deadline = time.monotonic() + 30
        while bearer() != "Bearer after-rotation":  # the held credential is served meanwhile
            assert time.monotonic() < deadline, f"the rotated secret was never served: {proxy.request_lines}"
            time.sleep(0.05)
        assert proxy.count("PUT", "/v1/auth/approle/login") == 2, proxy.request_lines


def test_a_revoked_static_token_names_vault_token(
    use_env,  # type: ignore[no-untyped-def]
    vault_ready: harness.VaultAPIServer,
    reader_token: str,
    secret_path: str,
) -> None:
    vault_ready.kv_put("kv2", secret_path, {"token": "never-served"}, version=2)
    vault_ready.api("POST", "auth/token/revoke", {"token": reader_token})
    use_env(
        plugin_env(
            vault_ready,
            TRACKING,
            VAULT_TOKEN=reader_token,
            MLFLOW_VAULT_SECRET_PATH=f"kv2/{secret_path}",
        )
    )
    with pytest.raises(MlflowSecretsAuthError) as err:
        bearer()
    assert err.value.variable == "VAULT_TOKEN", str(err.value)
    assert "revoked" in str(err.value), str(err.value)
    assert reader_token not in str(err.value)
