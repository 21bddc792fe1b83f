"""Session-scoped fixtures that run real Vault, MLflow and nginx servers."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

import harness  # noqa: E402  (needs the sys.path entry above)


@pytest.fixture(scope="session")
def vault_binary() -> Path:
    """The Vault test-server binary (built with ``go test -c`` on first use)."""
    return harness.ensure_vault_server_binary()


@pytest.fixture(scope="session")
def vault_server(vault_binary: Path) -> Iterator[harness.VaultServer]:
    with harness.VaultServer(binary=vault_binary) as vault:
        yield vault


@pytest.fixture(scope="session")
def mlflow_server() -> Iterator[harness.MlflowServer]:
    with harness.MlflowServer() as server:
        yield server


@pytest.fixture(scope="session")
def bearer_proxy(
    mlflow_server: harness.MlflowServer,
) -> Iterator[harness.NginxBearerProxy]:
    with harness.NginxBearerProxy(mlflow_server, secrets.token_urlsafe(32)) as proxy:
        yield proxy
