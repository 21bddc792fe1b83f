"""Precedence over MLflow's static credential, against real servers.

The credential is in OpenBao; the environment also has a WRONG static
MLFLOW_TRACKING_USERNAME/PASSWORD, which MLflow puts into Authorization before
the plugin runs. The plugin's credential wins on a real
``mlflow server --app-name basic-auth`` (and one warning names both); with a
custom header name the static Authorization does not go along; a host the
policy refuses gets neither, unless MLFLOW_SECRETS_STATIC_FALLBACK=true.
Loopback ``Recorder`` servers show exactly which headers arrived.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import subprocess
import textwrap

import harness
import mlflow
import pytest
import requests
from conftest import clean_env, client_python, search_url
from mlflow import MlflowClient
from mlflow_secrets_auth.provider import STATIC_FALLBACK_ENV
from test_redirects import recorders

WRONG = "wrong-static-Passw0rd"
WRONG_BASIC = "Basic " + base64.b64encode(f"admin:{WRONG}".encode()).decode()
STATIC = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": WRONG}
PRECEDENCE = "replaces the static one"  # words of the one precedence warning


def test_the_plugin_wins_over_a_wrong_static_password_with_one_warning(
    mlflow_server: harness.MlflowServer, basic_env: dict[str, str]
) -> None:
    """A fresh process logs a run with the credential from OpenBao although the
    static password is wrong; exactly one warning names the plugin and both variables."""
    assert requests.get(search_url(mlflow_server.url), auth=("admin", WRONG), timeout=30).status_code == 401
    name = f"precedence-{secrets.token_hex(4)}"
    code = textwrap.dedent("""
        import json, os, mlflow
        mlflow.set_experiment(os.environ["MSA_TEST_EXPERIMENT"])
        with mlflow.start_run() as run:
            mlflow.log_param("p", "v")
            mlflow.log_metric("m", 1.5)
        for _ in range(3):
            mlflow.search_experiments()
        print(json.dumps({"run_id": run.info.run_id}))
    """)
    env = clean_env(**basic_env, **STATIC, MSA_TEST_EXPERIMENT=name)
    result = subprocess.run([client_python(), "-c", code], env=env,
                            capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert WRONG not in result.stdout + result.stderr
    warned = [line for line in result.stderr.splitlines() if PRECEDENCE in line]
    assert len(warned) == 1, result.stderr[-3000:]
    assert "mlflow_secrets_auth" in warned[0]
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in warned[0]
    run_id = json.loads(result.stdout.strip().splitlines()[-1])["run_id"]
    admin = requests.Session()
    admin.auth = mlflow_server.basic_auth
    got = admin.get(f"{mlflow_server.url}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=30).json()
    assert got["run"]["data"]["params"] == [{"key": "p", "value": "v"}]
    assert got["run"]["data"]["metrics"][0]["value"] == 1.5


def test_a_refused_host_gets_no_static_credential_unless_opted_in(
    use_env, basic_env: dict[str, str], caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    with recorders(("127.0.0.1", 0)) as (server,):
        use_env({**basic_env, **STATIC, "MLFLOW_TRACKING_URI": server.url,
                 "MLFLOW_SECRETS_ALLOWED_HOSTS": "mlflow.corp.example"})
        with caplog.at_level(logging.WARNING, logger="mlflow_secrets_auth"):
            mlflow.search_experiments()
        assert server.seen, "the request did not reach the server"
        assert server.values("Authorization") == []  # the wrong static password did not go out
        refusal = [r.getMessage() for r in caplog.records if "127.0.0.1" in r.getMessage()]
        assert len(refusal) == 1 and STATIC_FALLBACK_ENV in refusal[0], refusal
        os.environ[STATIC_FALLBACK_ENV] = "true"
        before = len(server.seen)
        mlflow.search_experiments()
        assert [h.get("authorization") for _, _, h in server.seen[before:]] == [WRONG_BASIC]
    assert WRONG not in caplog.text


def test_a_custom_header_name_sends_the_plugins_header_alone(
    use_env, vault_ready: harness.VaultAPIServer, reader_token: str, secret_path: str  # type: ignore[no-untyped-def]
) -> None:
    token = secrets.token_urlsafe(16)
    vault_ready.kv_put("secret", secret_path, {"token": token}, version=1)
    with recorders(("127.0.0.1", 0)) as (server,):
        use_env({
            **STATIC,
            "MLFLOW_TRACKING_URI": server.url,
            "MLFLOW_TRACKING_AUTH": "mlflow_secrets_auth",
            "MLFLOW_SECRETS_AUTH_ENABLE": "vault",
            "VAULT_ADDR": vault_ready.addr,
            "VAULT_TOKEN": reader_token,
            "MLFLOW_VAULT_SECRET_PATH": f"secret/{secret_path}",
            "MLFLOW_AUTH_HEADER_NAME": "X-Api-Key",
        })
        MlflowClient().search_experiments()
        assert server.values("X-Api-Key") == [token]
        assert server.values("Authorization") == []
