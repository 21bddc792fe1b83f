"""Provider order for real: Vault goes down, AWS (second) keeps requests
succeeding; `doctor` reports every provider's state and cause."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import subprocess
import sys
import time
from pathlib import Path

import cloud_harness
import harness
import pytest
import requests
from conftest import apply, clean_env, search_url, send

CLI = str(Path(sys.executable).with_name("mlflow-secrets-auth"))


def user_in(request: requests.PreparedRequest) -> str:
    scheme, _, value = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(value).decode().split(":", 1)[0]


def test_vault_stops_and_aws_takes_over(
    use_env,  # type: ignore[no-untyped-def]
    mlflow_server: harness.MlflowServer,
    moto: cloud_harness.MotoServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    admin, admin_password = mlflow_server.basic_auth
    backup_user, backup_password = f"backup-{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    requests.post(
        f"{mlflow_server.url}/api/2.0/mlflow/users/create",
        json={"username": backup_user, "password": backup_password},
        auth=(admin, admin_password),
        timeout=30,
    ).raise_for_status()
    aws_secret = f"mlflow/backup-{secrets.token_hex(3)}"
    moto.create_secret(aws_secret, string=json.dumps({"username": backup_user, "password": backup_password}))
    url = search_url(mlflow_server.url)
    with harness.OpenBaoServer() as vault:
        vault.kv_put("secret", "mlflow/primary", {"username": admin, "password": admin_password}, version=1)
        use_env(
            {
                "MLFLOW_TRACKING_URI": mlflow_server.url,
                "MLFLOW_SECRETS_AUTH_ENABLE": "vault,aws-secrets-manager",
                "VAULT_ADDR": vault.addr,
                "VAULT_TOKEN": vault.root_token,
                "MLFLOW_VAULT_SECRET_PATH": "secret/mlflow/primary",
                "MLFLOW_VAULT_AUTH_MODE": "basic",
                "MLFLOW_VAULT_TTL_SEC": "1",
                "MLFLOW_SECRETS_TIMEOUT_SEC": "5",
                "MLFLOW_AWS_SECRET_ID": aws_secret,
                "MLFLOW_AWS_AUTH_MODE": "basic",
                **moto.env(),
            }
        )
        assert send(url).status_code == 200
        assert user_in(apply(url)) == admin  # Vault, first in order, serves
        vault.stop()
    with caplog.at_level(logging.WARNING, logger="mlflow_secrets_auth"):
        deadline = time.monotonic() + 30
        while True:
            assert send(url).status_code == 200  # never a failed request
            if user_in(apply(url)) == backup_user:  # after Vault's TTL, AWS serves
                break
            assert time.monotonic() < deadline, "AWS never took over from the stopped Vault"
            time.sleep(0.05)
    assert user_in(apply(url)) == backup_user
    # One warning says Vault failed and names the variable to check.
    warned = [r.getMessage() for r in caplog.records if "vault" in r.getMessage() and "VAULT_ADDR" in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in caplog.records]  # once per outage, not per attempt
    assert admin_password not in " ".join(r.getMessage() for r in caplog.records)


def test_doctor_reports_each_provider(moto: cloud_harness.MotoServer, keyvault: cloud_harness.FakeKeyVault) -> None:
    aws_secret = f"mlflow/doctor-{secrets.token_hex(3)}"
    moto.create_secret(aws_secret, string="doctor-aws-token")
    keyvault.set_secret("doctor-secret", "doctor-azure-token")
    env = clean_env(
        MLFLOW_TRACKING_URI="https://mlflow.test:5000",
        MLFLOW_SECRETS_AUTH_ENABLE="vault,aws-secrets-manager,azure-key-vault",
        VAULT_ADDR=f"http://127.0.0.1:{harness.free_port()}",
        VAULT_TOKEN="some-vault-token",
        MLFLOW_VAULT_SECRET_PATH="secret/mlflow/x",
        MLFLOW_SECRETS_TIMEOUT_SEC="5",
        MLFLOW_AWS_SECRET_ID=aws_secret,
        **moto.env(),
        AZURE_KEY_VAULT_URL=keyvault.vault_url,
        MLFLOW_AZURE_SECRET_NAME="doctor-secret",
        MLFLOW_AZURE_CA_BUNDLE=str(keyvault.ca_pem),
        **keyvault.identity_env(),
    )
    env["IDENTITY_HEADER"] = "not-the-identity-header"
    out = subprocess.run([CLI, "doctor"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = {line.split("]", 1)[1].split(":", 1)[0].strip(): line for line in out.stdout.splitlines() if "]" in line}
    assert lines["vault credential"].startswith("[FAIL]")
    assert "connection refused" in lines["vault credential"]
    assert lines["aws-secrets-manager credential"].startswith("[ok  ]")
    assert "Bearer <redacted" in lines["aws-secrets-manager credential"]
    assert lines["azure-key-vault credential"].startswith("[FAIL]")
    assert "no Azure credential could get a token" in lines["azure-key-vault credential"]
    for value in ("doctor-aws-token", "doctor-azure-token", "some-vault-token", "not-the-identity-header"):
        assert value not in out.stdout + out.stderr
