"""An unmodified MLflow script, run as its own process, authenticated through
the plugin against a real MLflow server, once per backend: OpenBao and a real
HashiCorp Vault, moto's Secrets Manager server and the Key Vault stand-in."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import cloud_harness
import harness
import pytest
import requests
from conftest import clean_env, plugin_env

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "train.py"


def run_script(env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE)],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_ids(server: harness.MlflowServer) -> dict[str, dict[str, object]]:
    """Runs of the demo experiment, read with the admin credentials directly."""
    auth = server.basic_auth
    exp = requests.get(
        f"{server.url}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": "secrets-auth-demo"},
        auth=auth,
        timeout=30,
    )
    if exp.status_code == 404:
        return {}
    exp.raise_for_status()
    exp_id = exp.json()["experiment"]["experiment_id"]
    body = requests.post(
        f"{server.url}/api/2.0/mlflow/runs/search", json={"experiment_ids": [exp_id]}, auth=auth, timeout=30
    ).json()
    return {r["info"]["run_id"]: r for r in body.get("runs", [])}


def assert_logged(result: subprocess.CompletedProcess[str], server: harness.MlflowServer, secret: str) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    run_id = result.stdout.split("logged run ")[1].split(";")[0]
    run = run_ids(server)[run_id]
    data = run["data"]
    assert {"key": "learning_rate", "value": "0.01"} in data["params"]  # type: ignore[operator, index]
    assert any(m["key"] == "loss" for m in data["metrics"])  # type: ignore[index, union-attr]
    artifacts = requests.get(
        f"{server.url}/api/2.0/mlflow/artifacts/list", params={"run_id": run_id}, auth=server.basic_auth, timeout=30
    ).json()
    assert [f["path"] for f in artifacts["files"]] == ["report.txt"]
    assert secret not in result.stdout + result.stderr


@pytest.mark.both_vaults
def test_basic_auth_kv1_token(
    vault_ready: harness.VaultAPIServer, mlflow_server: harness.MlflowServer, reader_token: str, secret_path: str
) -> None:
    user, password = mlflow_server.basic_auth
    vault_ready.kv_put("secret", secret_path, {"username": user, "password": password, "note": "x"}, version=1)
    env = plugin_env(
        vault_ready,
        mlflow_server.url,
        VAULT_TOKEN=reader_token,
        MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
        MLFLOW_VAULT_AUTH_MODE="basic",
    )
    assert_logged(run_script(env), mlflow_server, password)


@pytest.mark.both_vaults
def test_basic_auth_kv2_approle(
    vault_ready: harness.VaultAPIServer, mlflow_server: harness.MlflowServer, secret_path: str
) -> None:
    user, password = mlflow_server.basic_auth
    vault_ready.kv_put("kv2", secret_path, {"username": user, "password": password}, version=2)
    role_id, secret_id = vault_ready.create_approle("e2e", ["mlflow-reader"], token_ttl="1m", token_max_ttl="5m")
    env = plugin_env(
        vault_ready,
        mlflow_server.url,
        VAULT_ROLE_ID=role_id,
        VAULT_SECRET_ID=secret_id,
        MLFLOW_VAULT_SECRET_PATH=f"kv2/{secret_path}",
        MLFLOW_VAULT_AUTH_MODE="basic",
    )
    result = run_script(env)
    assert_logged(result, mlflow_server, password)
    assert secret_id not in result.stdout + result.stderr


@pytest.mark.both_vaults
def test_bearer_through_a_checking_proxy(
    vault_ready: harness.VaultAPIServer, bearer_proxy: harness.NginxBearerProxy, reader_token: str, secret_path: str
) -> None:
    vault_ready.kv_put("kv2", secret_path, {"token": bearer_proxy.token}, version=2)
    before = bearer_proxy.counts()
    env = plugin_env(
        vault_ready, bearer_proxy.url, VAULT_TOKEN=reader_token, MLFLOW_VAULT_SECRET_PATH=f"kv2/data/{secret_path}"
    )  # the API form of the path works too
    result = run_script(env)
    assert_logged(result, bearer_proxy.upstream, bearer_proxy.token)
    after = bearer_proxy.wait_for_counts(accepted=before.accepted + 5)
    assert after.rejected == before.rejected, "the proxy rejected a request the plugin sent"
    # And a wrong token is refused by the same proxy, so the check is real.
    vault_ready.kv_put("kv2", secret_path, {"token": "not-the-token"}, version=2)
    env["MLFLOW_VAULT_SECRET_PATH"] = f"kv2/{secret_path}"
    assert run_script(env).returncode != 0


def test_openbao_configured_with_bao_variables_only(
    vault_ready: harness.VaultAPIServer, mlflow_server: harness.MlflowServer, reader_token: str, secret_path: str
) -> None:
    """OpenBao's own variable names (BAO_ADDR, BAO_TOKEN) work without any VAULT_*."""
    assert vault_ready.kind == harness.OPENBAO
    user, password = mlflow_server.basic_auth
    vault_ready.kv_put("kv2", secret_path, {"username": user, "password": password}, version=2)
    env = {
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "MLFLOW_TRACKING_AUTH": "mlflow_secrets_auth",
        "MLFLOW_SECRETS_AUTH_ENABLE": "vault",
        "BAO_ADDR": vault_ready.addr,
        "BAO_TOKEN": reader_token,
        "MLFLOW_VAULT_SECRET_PATH": f"kv2/{secret_path}",
        "MLFLOW_VAULT_AUTH_MODE": "basic",
    }
    result = run_script(env)
    assert_logged(result, mlflow_server, password)
    assert reader_token not in result.stdout + result.stderr
    # A VAULT_TOKEN never goes to BAO_ADDR: the mix is an error naming both, and nothing is sent.
    result = run_script({**env, "VAULT_TOKEN": "not-a-valid-token"})
    assert result.returncode != 0
    assert "VAULT_TOKEN is set but the address in use is BAO_ADDR" in result.stderr, result.stderr[-2000:]
    assert "not-a-valid-token" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"MLFLOW_VAULT_SECRET_PATH": ""}, "MLFLOW_VAULT_SECRET_PATH"),
        ({"VAULT_ADDR": "not a url"}, "VAULT_ADDR"),
        ({"MLFLOW_VAULT_AUTH_MODE": "digest"}, "MLFLOW_VAULT_AUTH_MODE"),
        ({"MLFLOW_SECRETS_AUTH_ENABLE": "vault,gcp"}, "MLFLOW_SECRETS_AUTH_ENABLE"),
        ({"MLFLOW_VAULT_AUTH_MODE": "bearer"}, "MLFLOW_VAULT_AUTH_MODE=basic"),  # secret holds user/password
        ({"MLFLOW_VAULT_SECRET_PATH": "secret/mlflow/missing"}, "no secret at MLFLOW_VAULT_SECRET_PATH"),
    ],
)
def test_misconfiguration_is_named_and_no_secret_leaks(
    mlflow_server: harness.MlflowServer, basic_env: dict[str, str], change: dict[str, str], variable: str
) -> None:
    password, reader_token = mlflow_server.admin_password, basic_env["VAULT_TOKEN"]
    env = dict(basic_env)
    env.update(change)
    result = run_script(env, timeout=120)
    assert result.returncode != 0
    assert variable in result.stderr, result.stderr[-2000:]
    for value in (password, reader_token):
        assert value not in result.stdout + result.stderr


def test_aws_backend(moto: cloud_harness.MotoServer, mlflow_server: harness.MlflowServer) -> None:
    user, password = mlflow_server.basic_auth
    secret = f"mlflow/e2e-{secrets.token_hex(3)}"
    moto.create_secret(secret, string=json.dumps({"username": user, "password": password}))
    env = {
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "MLFLOW_TRACKING_AUTH": "mlflow_secrets_auth",
        "MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager",
        "MLFLOW_AWS_SECRET_ID": secret,
        "MLFLOW_AWS_AUTH_MODE": "basic",
        **moto.env(),
    }
    assert_logged(run_script(env), mlflow_server, password)


def test_azure_backend(keyvault: cloud_harness.FakeKeyVault, mlflow_server: harness.MlflowServer) -> None:
    user, password = mlflow_server.basic_auth
    keyvault.set_secret("mlflow-e2e", f"{user}:{password}")  # plain text user:pass
    env = {
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "MLFLOW_TRACKING_AUTH": "mlflow_secrets_auth",
        "MLFLOW_SECRETS_AUTH_ENABLE": "azure-key-vault",
        "AZURE_KEY_VAULT_URL": keyvault.vault_url,
        "MLFLOW_AZURE_SECRET_NAME": "mlflow-e2e",
        "MLFLOW_AZURE_AUTH_MODE": "basic",
        "MLFLOW_AZURE_CA_BUNDLE": str(keyvault.ca_pem),
        **keyvault.identity_env(),
    }
    assert_logged(run_script(env), mlflow_server, password)
