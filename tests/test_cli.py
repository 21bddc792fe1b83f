"""`mlflow-secrets-auth info` and `doctor` against real servers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import harness
from conftest import plugin_env

CLI = str(Path(sys.executable).with_name("mlflow-secrets-auth"))


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "VAULT_"))}
    base.update(env)
    return subprocess.run([CLI, *args], env=base, capture_output=True, text=True, timeout=120, check=False)


def test_info(vault_ready: harness.VaultAPIServer, reader_token: str) -> None:
    env = plugin_env(
        vault_ready,
        "https://mlflow.test:5000",  # info contacts no server
        VAULT_TOKEN=reader_token,
        MLFLOW_VAULT_SECRET_PATH="secret/mlflow/info",
        MLFLOW_SECRETS_ALLOWED_HOSTS="*.corp.com",
    )
    out = cli(env, "info")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "enabled providers: vault" in out.stdout
    assert "*.corp.com" in out.stdout
    assert "header: Authorization" in out.stdout
    assert reader_token not in out.stdout + out.stderr
    bad = cli({**env, "MLFLOW_VAULT_TTL_SEC": "soon"}, "info")
    assert bad.returncode == 1
    assert "MLFLOW_VAULT_TTL_SEC" in bad.stdout


def test_doctor_dry_run(mlflow_server: harness.MlflowServer, basic_env: dict[str, str]) -> None:
    env = basic_env
    password = mlflow_server.admin_password
    url = f"{mlflow_server.url}/api/2.0/mlflow/experiments/search?max_results=1"
    ok = cli(env, "doctor", "--dry-run", url)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "sends Authorization: Basic <redacted" in ok.stdout
    assert "HTTP 200" in ok.stdout
    assert password not in ok.stdout + ok.stderr
    # Each failure names its exact cause.
    cases = {
        "MLFLOW_VAULT_SECRET_PATH": ({"MLFLOW_VAULT_SECRET_PATH": "secret/mlflow/nothing-here"}, "no secret at"),
        "VAULT_TOKEN": ({"VAULT_TOKEN": "wrong-token-value"}, "rejected the token in VAULT_TOKEN"),
        "VAULT_ADDR": ({"VAULT_ADDR": f"http://127.0.0.1:{harness.free_port()}"}, "connection refused"),
        "MLFLOW_VAULT_AUTH_MODE": ({"MLFLOW_VAULT_AUTH_MODE": "bearer"}, "MLFLOW_VAULT_AUTH_MODE=basic"),
    }
    for name, (change, cause) in cases.items():
        out = cli({**env, **change}, "doctor")
        assert out.returncode == 1, name
        assert cause in out.stdout, f"{name}: {out.stdout}"
        assert "wrong-token-value" not in out.stdout + out.stderr
    # The host check: a URL that is not the tracking server.
    other = url.replace("127.0.0.1", "localhost")
    out = cli(env, "doctor", "--dry-run", other)
    assert out.returncode == 1
    assert "MLFLOW_SECRETS_ALLOWED_HOSTS" in out.stdout
