"""Session-scoped fixtures that run real Vault, MLflow and nginx servers."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from mlflow.tracking.request_auth.registry import fetch_auth
from packaging.version import Version

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

import cloud_harness  # noqa: E402  (needs the sys.path entry above)
import harness  # noqa: E402


@pytest.fixture(scope="session")
def moto() -> Iterator[cloud_harness.MotoServer]:
    with cloud_harness.MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def keyvault() -> Iterator[cloud_harness.FakeKeyVault]:
    with cloud_harness.FakeKeyVault() as server:
        yield server


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_vaults: run against OpenBao and HashiCorp Vault (the vault_kind parameter); others: OpenBao"
    )
    config.addinivalue_line(
        "markers", "hashicorp: set on tests that use the HashiCorp Vault build (`make test` runs them last)"
    )
    config.addinivalue_line(
        "markers",
        "mlflow_features(*features): MLflow features (test_mlflow_paths.Feature) the client script uses; "
        "skipped, naming each, when the client interpreter's MLflow is older",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses a Vault server gets the ``vault_kind`` parameter:
    both kinds when marked ``both_vaults``, otherwise OpenBao only (fast, no build).
    Always parametrizing keeps one server per kind for the whole session."""
    if "vault_kind" in metafunc.fixturenames:
        kinds = harness.VAULT_KINDS if metafunc.definition.get_closest_marker("both_vaults") else (harness.OPENBAO,)
        metafunc.parametrize("vault_kind", kinds, indirect=True, scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("vault_kind") == harness.HASHICORP:
            item.add_marker(pytest.mark.hashicorp)


@pytest.fixture(scope="session")
def vault_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture(scope="session")
def vault_binary() -> Path:
    """The HashiCorp Vault test-server binary (built with ``go test -c`` on first use)."""
    return harness.ensure_vault_server_binary()


@pytest.fixture(scope="session")
def vault_server(vault_kind: str) -> Iterator[harness.VaultAPIServer]:
    """A running Vault API server of ``vault_kind``: OpenBao's dev server or the Vault build."""
    kwargs = {"binary": harness.ensure_vault_server_binary()} if vault_kind == harness.HASHICORP else {}
    with harness.vault_api_server(vault_kind, **kwargs) as vault:
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


# The interpreter of the MLflow client scripts (the path matrix, precedence, per-server credentials):
# MSA_MLFLOW_PYTHON if set (`make test-mlflow2`: .venv-mlflow2, MLflow 2.x), else the one running
# pytest. The servers (MLflow, OpenBao, nginx) and in-process checks stay those of this interpreter.
CLIENT_PYTHON_ENV = "MSA_MLFLOW_PYTHON"


def client_python() -> str:
    return os.environ.get(CLIENT_PYTHON_ENV) or sys.executable


@pytest.fixture(scope="session")
def client_mlflow_version() -> Version:
    """The MLflow version installed for :func:`client_python` (read once per session)."""
    code = (
        "from importlib import metadata\n"
        "for dist in ('mlflow', 'mlflow-skinny'):\n"
        "    try:\n"
        "        print(metadata.version(dist)); break\n"
        "    except metadata.PackageNotFoundError:\n"
        "        pass\n"
    )
    result = subprocess.run([client_python(), "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and result.stdout.strip(), f"no MLflow in {client_python()}: {result.stderr}"
    return Version(result.stdout.strip())


# Variables a test's environment starts without, so the machine's own settings never leak in.
PLUGIN_PREFIXES = (
    "MLFLOW_", "VAULT_", "BAO_", "AWS_", "AZURE_", "IDENTITY_", "MSI_", "IMDS_", "GOOGLE_", "GCE_", "CLOUDSDK_",
)


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without any plugin or cloud SDK variable, plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PLUGIN_PREFIXES)}
    env.update(extra)
    return env


READER_POLICY = """
path "secret/mlflow/*" { capabilities = ["read"] }
path "kv2/data/mlflow/*" { capabilities = ["read"] }
"""


@pytest.fixture(scope="session")
def vault_ready(vault_server: harness.VaultAPIServer) -> harness.VaultAPIServer:
    """Vault with a KV v2 mount at kv2/, a reader policy and AppRole enabled."""
    vault_server.enable_kv("kv2", 2)
    vault_server.write_policy("mlflow-reader", READER_POLICY)
    vault_server.enable_approle()
    return vault_server


@pytest.fixture()
def reader_token(vault_ready: harness.VaultAPIServer) -> str:
    """A Vault token that may only read the MLflow secrets (not the root token)."""
    return vault_ready.create_token(["mlflow-reader"], ttl="1h")


@pytest.fixture()
def secret_path() -> str:
    """A fresh secret path, so no cached value from another test is reused."""
    return f"mlflow/{secrets.token_hex(6)}"


def plugin_env(vault: harness.VaultAPIServer, tracking_uri: str, **extra: str) -> dict[str, str]:
    """The environment a user sets: the plugin selected, Vault configured."""
    env = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_TRACKING_AUTH": "mlflow_secrets_auth",
        "MLFLOW_SECRETS_AUTH_ENABLE": "vault",
        "VAULT_ADDR": vault.addr,
    }
    env.update(extra)
    return env


def apply(url: str) -> requests.PreparedRequest:
    """What MLflow does per request: fetch_auth() and let requests apply it."""
    req = requests.Request("GET", url).prepare()
    req.prepare_auth(fetch_auth("mlflow_secrets_auth"))
    return req


def send(url: str) -> requests.Response:
    return requests.get(url, auth=fetch_auth("mlflow_secrets_auth"), timeout=30)


@pytest.fixture()
def use_env(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Set the plugin's variables in os.environ, as a notebook user would."""
    for key in list(os.environ):
        if key.startswith(PLUGIN_PREFIXES):
            monkeypatch.delenv(key)

    def set_env(env: dict[str, str]) -> None:
        for key, value in env.items():
            monkeypatch.setenv(key, value)

    return set_env


def search_url(base: str) -> str:
    return f"{base}/api/2.0/mlflow/experiments/search?max_results=1"


@pytest.fixture()
def basic_env(
    vault_ready: harness.VaultAPIServer, mlflow_server: harness.MlflowServer, reader_token: str, secret_path: str
) -> dict[str, str]:
    """Vault holds the MLflow admin credentials; the environment that uses them in basic mode."""
    user, password = mlflow_server.basic_auth
    vault_ready.kv_put("secret", secret_path, {"username": user, "password": password}, version=1)
    return plugin_env(
        vault_ready,
        mlflow_server.url,
        VAULT_TOKEN=reader_token,
        MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
        MLFLOW_VAULT_AUTH_MODE="basic",
    )
