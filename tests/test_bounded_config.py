"""Files named by settings cannot hang or crash the process: a FIFO or
/dev/zero as VAULT_CACERT is a clear error naming the variable (it used to hang
forever, or abort Python with Go's "fatal error: out of memory")."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from conftest import apply
from mlflow_secrets_auth.provider import MlflowSecretsAuthError


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_ca_file_that_never_ends(use_env, tmp_path: Path, kind: str) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "ca.pem")
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path = kind
    use_env(
        {
            "MLFLOW_TRACKING_URI": "https://mlflow.bounded.test",
            "MLFLOW_SECRETS_AUTH_ENABLE": "vault",
            "VAULT_ADDR": "https://vault.bounded.test:8200",
            "VAULT_TOKEN": "unused-token",
            "MLFLOW_VAULT_SECRET_PATH": "secret/mlflow/auth",
            "VAULT_CACERT": path,
            "MLFLOW_SECRETS_TIMEOUT_SEC": "2",
        }
    )
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            apply("https://mlflow.bounded.test/api/2.0/mlflow/experiments/search")
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=call, daemon=True)  # a regression hangs here, not the suite
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), f"VAULT_CACERT={path} hung the request"
    assert len(outcome) == 1 and isinstance(outcome[0], MlflowSecretsAuthError), outcome
    err = outcome[0]
    assert err.variable == "VAULT_CACERT", str(err)
    assert "not a regular file" in str(err)
