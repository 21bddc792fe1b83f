"""Per-server credentials (MLFLOW_SECRETS_SERVERS): one Python process logs to
two real basic-auth MLflow servers, each with its own admin password, held in
OpenBao at two paths. Through the in-process library and through the helper,
and with the patterns in the wrong order (the first matching one wins)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import harness
import pytest
import requests
from conftest import clean_env, client_python, plugin_env

# Logs one run to each server, each through its own MlflowClient, and prints
# what happened per server (never a credential: only ids and error texts).
SCRIPT = """
import json, sys
from mlflow import MlflowClient

out = {}
for name, uri in json.loads(sys.argv[1]).items():
    try:
        client = MlflowClient(tracking_uri=uri)
        exp = client.create_experiment(sys.argv[2] + "-" + name)
        run = client.create_run(exp)
        client.log_param(run.info.run_id, "server", name)
        client.set_terminated(run.info.run_id)
        out[name] = {"run_id": run.info.run_id}
    except Exception as exc:
        out[name] = {"error": (type(exc).__name__ + ": " + str(exc))[:400]}
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def staging_server() -> Iterator[harness.MlflowServer]:
    """A second MLflow server, with its own random admin password."""
    with harness.MlflowServer() as server:
        yield server


@pytest.fixture()
def two_servers(
    vault_ready: harness.VaultAPIServer,
    mlflow_server: harness.MlflowServer,
    staging_server: harness.MlflowServer,
    reader_token: str,
    secret_path: str,
) -> dict[str, str]:
    """OpenBao holds each server's admin credentials at its own path; the base
    settings read the production path."""
    assert mlflow_server.admin_password != staging_server.admin_password
    for name, server in (("prod", mlflow_server), ("staging", staging_server)):
        user, password = server.basic_auth
        vault_ready.kv_put("secret", f"{secret_path}/{name}", {"username": user, "password": password}, version=1)
    return plugin_env(
        vault_ready,
        mlflow_server.url,
        VAULT_TOKEN=reader_token,
        MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}/prod",
        MLFLOW_VAULT_AUTH_MODE="basic",
    )


def authority(server: harness.MlflowServer) -> str:
    return server.url.split("://", 1)[1].rstrip("/")


def log_to_both(
    env: dict[str, str], prod: harness.MlflowServer, staging: harness.MlflowServer
) -> dict[str, dict[str, str]]:
    targets = json.dumps({"prod": prod.url, "staging": staging.url})
    result = subprocess.run(
        [client_python(), "-c", SCRIPT, targets, f"servers-{secrets.token_hex(4)}"],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    out: dict[str, dict[str, str]] = json.loads(line[len("RESULT ") :])
    for server in (prod, staging):
        assert server.admin_password not in result.stdout + result.stderr
    return out


def stored_param(server: harness.MlflowServer, run_id: str) -> str | None:
    """The run's "server" param as the server stored it (read with its admin credentials)."""
    resp = requests.get(
        f"{server.url}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, auth=server.basic_auth, timeout=30
    )
    if resp.status_code == 404:
        return None
    resp.raise_for_status()
    params = {p["key"]: p["value"] for p in resp.json()["run"]["data"].get("params", [])}
    return params.get("server")


@pytest.mark.parametrize("transport", ["inprocess", "helper"])
def test_each_server_gets_its_own_credential(
    two_servers: dict[str, str],
    mlflow_server: harness.MlflowServer,
    staging_server: harness.MlflowServer,
    secret_path: str,
    transport: str,
) -> None:
    servers = {authority(staging_server): {"MLFLOW_VAULT_SECRET_PATH": f"secret/{secret_path}/staging"}}
    env = dict(two_servers, MLFLOW_SECRETS_SERVERS=json.dumps(servers), MLFLOW_SECRETS_AUTH_TRANSPORT=transport)
    out = log_to_both(env, mlflow_server, staging_server)
    assert "run_id" in out["prod"], out
    assert "run_id" in out["staging"], out
    assert stored_param(mlflow_server, out["prod"]["run_id"]) == "prod"
    assert stored_param(staging_server, out["staging"]["run_id"]) == "staging"
    assert stored_param(staging_server, out["prod"]["run_id"]) is None


def test_first_matching_pattern_wins(
    two_servers: dict[str, str],
    mlflow_server: harness.MlflowServer,
    staging_server: harness.MlflowServer,
    secret_path: str,
) -> None:
    """Written in the wrong order, the wide pattern (any port of 127.0.0.1,
    production's credential) shadows staging's own entry: staging refuses the
    production credential and stores nothing."""
    host = authority(staging_server).rsplit(":", 1)[0]
    # json.dumps keeps the dict's order: the wide pattern comes first.
    servers = {
        host: {"MLFLOW_VAULT_SECRET_PATH": f"secret/{secret_path}/prod"},
        authority(staging_server): {"MLFLOW_VAULT_SECRET_PATH": f"secret/{secret_path}/staging"},
    }
    env = dict(two_servers, MLFLOW_SECRETS_SERVERS=json.dumps(servers))
    out = log_to_both(env, mlflow_server, staging_server)
    assert stored_param(mlflow_server, out["prod"]["run_id"]) == "prod"
    assert "run_id" not in out["staging"], out
    assert "401" in out["staging"]["error"] or "Unauthorized" in out["staging"]["error"], out


CLI = str(Path(sys.executable).with_name("mlflow-secrets-auth"))


def test_info_and_doctor_list_servers(
    two_servers: dict[str, str],
    mlflow_server: harness.MlflowServer,
    staging_server: harness.MlflowServer,
    secret_path: str,
) -> None:
    pattern = authority(staging_server)
    path = f"secret/{secret_path}/staging"
    overrides = {"MLFLOW_VAULT_SECRET_PATH": path, "MLFLOW_AUTH_HEADER_NAME": "authorization"}
    servers = {pattern: overrides}
    env = clean_env(**two_servers, MLFLOW_SECRETS_SERVERS=json.dumps(servers))
    info = subprocess.run([CLI, "info", "--json"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert info.returncode == 0, info.stdout + info.stderr
    listed = json.loads(info.stdout)["servers"]
    assert [s["pattern"] for s in listed] == [pattern]
    assert listed[0]["variables"] == ["MLFLOW_VAULT_SECRET_PATH", "MLFLOW_AUTH_HEADER_NAME"]
    assert listed[0]["header_name"] == "Authorization"
    assert ["secret path", path] in listed[0]["providers"][0]["details"]
    text = subprocess.run([CLI, "info"], env=env, capture_output=True, text=True, timeout=120, check=False)
    want = (f"server {pattern} (MLFLOW_SECRETS_SERVERS): sets MLFLOW_VAULT_SECRET_PATH, MLFLOW_AUTH_HEADER_NAME; "
            "providers: vault; header: Authorization")
    assert text.returncode == 0 and want in text.stdout, text.stdout + text.stderr
    doctor = subprocess.run(
        [CLI, "doctor", "--dry-run", f"{staging_server.url}/api/2.0/mlflow/experiments/search?max_results=1"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert f"[ok  ] server {pattern}: vault credential: fetched" in doctor.stdout
    assert f"may receive credentials (server \"{pattern}\" (MLFLOW_SECRETS_SERVERS))" in doctor.stdout
    assert "dry run: GET" in doctor.stdout and "with credentials: HTTP 200" in doctor.stdout
    for server in (mlflow_server, staging_server):
        assert server.admin_password not in info.stdout + doctor.stdout + doctor.stderr


def test_bad_servers_setting_names_pattern_and_variable(two_servers: dict[str, str]) -> None:
    """An unusable MLFLOW_SECRETS_SERVERS stops every request (no host falls back to
    the base credential), and the message names the pattern and the variable."""
    servers = {"127.0.0.1:1": {"MLFLOW_SECRETS_TIMEOUT_SEC": "5"}}
    env = clean_env(**two_servers, MLFLOW_SECRETS_SERVERS=json.dumps(servers))
    result = subprocess.run([CLI, "doctor"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    want = 'server "127.0.0.1:1" (MLFLOW_SECRETS_SERVERS): MLFLOW_SECRETS_TIMEOUT_SEC cannot be set per server'
    assert want in result.stdout
