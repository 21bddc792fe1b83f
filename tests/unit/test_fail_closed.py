"""Never unauthenticated in silence: when the native core cannot work, an
MLflow call with MLFLOW_TRACKING_AUTH=mlflow_secrets_auth fails with our
error, and nothing reaches the server. (A loopback socket stands in for the
server; it only counts connections.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = """
import mlflow
from mlflow.tracking.request_auth.registry import fetch_auth
print("registered", type(fetch_auth("mlflow_secrets_auth")).__name__, flush=True)
try:
    mlflow.search_experiments()
except Exception as exc:
    chain = []
    while exc is not None:
        chain.append(type(exc).__name__ + ": " + str(exc))
        exc = exc.__cause__ or exc.__context__
    print("raised", " <- ".join(chain))
else:
    print("no error")
"""


@pytest.fixture()
def listener() -> Iterator[tuple[str, list[int]]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    accepted: list[int] = []

    def loop() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    threading.Thread(target=loop, daemon=True).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", accepted
    sock.close()


def run(env: dict[str, str]) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "VAULT_", "AWS_", "AZURE_"))}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env={**base, **env}, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_no_usable_core_means_the_request_fails_with_our_error(
    listener: tuple[str, list[int]], tmp_path: Path
) -> None:
    url, accepted = listener
    broken = tmp_path / "libmlflow_secrets_auth.so"
    broken.write_text("not a library")
    stdout = run(
        {
            "MLFLOW_TRACKING_URI": url,
            "MLFLOW_TRACKING_AUTH": "mlflow_secrets_auth",
            "MLFLOW_SECRETS_AUTH_ENABLE": "vault",
            "MLFLOW_SECRETS_AUTH_LIBRARY": str(broken),
            "MLFLOW_SECRETS_AUTH_HELPER": str(tmp_path / "no-helper"),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        }
    )
    assert "registered SecretsAuth" in stdout
    # MLflow wraps it in an MlflowException whose cause is ours.
    assert "MlflowSecretsAuthError: mlflow-secrets-auth:" in stdout, stdout
    assert "no-helper" in stdout  # says what is missing
    assert accepted == []  # not one connection: nothing went out unauthenticated


def test_a_forced_transport_that_cannot_work_fails_the_same_way(
    listener: tuple[str, list[int]], tmp_path: Path
) -> None:
    url, accepted = listener
    stdout = run(
        {
            "MLFLOW_TRACKING_URI": url,
            "MLFLOW_TRACKING_AUTH": "mlflow_secrets_auth",
            "MLFLOW_SECRETS_AUTH_ENABLE": "vault",
            "MLFLOW_SECRETS_AUTH_TRANSPORT": "inprocess",
            "MLFLOW_SECRETS_AUTH_LIBRARY": str(tmp_path / "missing.so"),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        }
    )
    assert "MlflowSecretsAuthError: mlflow-secrets-auth: cannot load" in stdout, stdout
    assert accepted == []
