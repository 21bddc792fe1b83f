"""Real-server tests for the settings that had none: AppRole on a custom mount,
a namespace, TLS client certificates (and the cert auth method),
VAULT_TLS_SERVER_NAME, the registry URI as an allowed host, and
MLFLOW_SECRETS_LOG_LEVEL. Each test also shows the
setting matters: without it (or with a wrong value) the result differs."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import harness
import pytest
from conftest import apply, clean_env, plugin_env
from mlflow_secrets_auth.provider import MlflowSecretsAuthError

TRACKING = "https://mlflow.test"


def header(url: str = TRACKING) -> str | None:
    return apply(url).headers.get("Authorization")


def error_of(url: str = TRACKING) -> MlflowSecretsAuthError:
    with pytest.raises(MlflowSecretsAuthError) as err:
        apply(url)
    return err.value


@pytest.mark.both_vaults
def test_approle_on_a_custom_mount(use_env, vault_ready: harness.VaultAPIServer, secret_path: str) -> None:  # type: ignore[no-untyped-def]
    mount = f"ml-approle-{secrets.token_hex(3)}"
    vault_ready.enable_approle(mount)
    role_id, secret_id = vault_ready.create_approle("ml", ["mlflow-reader"], mount=mount)
    vault_ready.kv_put("secret", secret_path, {"token": "custom-mount-token"}, version=1)
    env = plugin_env(
        vault_ready,
        TRACKING,
        VAULT_ROLE_ID=role_id,
        VAULT_SECRET_ID=secret_id,
        MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
    )
    use_env({**env, "MLFLOW_VAULT_APPROLE_MOUNT": mount})
    assert header() == "Bearer custom-mount-token"
    os.environ["MLFLOW_VAULT_APPROLE_MOUNT"] = f"/{mount}/"  # slashes around it are fine
    assert header() == "Bearer custom-mount-token"
    # Without the setting the default mount (approle/) is asked, which has no such role.
    del os.environ["MLFLOW_VAULT_APPROLE_MOUNT"]
    err = error_of()
    assert "VAULT_ROLE_ID" in str(err), str(err)
    assert secret_id not in str(err)


def test_namespace(use_env, vault_ready: harness.VaultAPIServer) -> None:  # type: ignore[no-untyped-def]
    """OpenBao namespaces: the same path holds different secrets in the root
    namespace and in team-x/; VAULT_NAMESPACE picks which one is read, and a
    token created inside the namespace works only with it."""
    assert vault_ready.kind == harness.OPENBAO  # HashiCorp's open-source build has no namespaces
    ns = f"team-{secrets.token_hex(3)}"
    vault_ready.create_namespace(ns)
    for namespace, value in (("", "root-namespace-token"), (ns, "team-namespace-token")):
        vault_ready.enable_kv("nskv", 2, namespace=namespace)
        vault_ready.kv_put("nskv", "mlflow/auth", {"token": value}, version=2, namespace=namespace)
    vault_ready.write_policy("reader", 'path "nskv/data/*" { capabilities = ["read"] }', namespace=ns)
    team_token = vault_ready.create_token(["reader"], namespace=ns)
    env = plugin_env(
        vault_ready, TRACKING, VAULT_TOKEN=vault_ready.root_token, MLFLOW_VAULT_SECRET_PATH="nskv/mlflow/auth"
    )
    use_env(env)
    assert header() == "Bearer root-namespace-token"
    os.environ["VAULT_NAMESPACE"] = ns
    assert header() == "Bearer team-namespace-token"
    os.environ["VAULT_TOKEN"] = team_token
    assert header() == "Bearer team-namespace-token"
    del os.environ["VAULT_NAMESPACE"]  # the team's token means nothing in the root namespace
    err = error_of()
    assert "permission denied" in str(err), str(err)
    assert team_token not in str(err)


@pytest.fixture(scope="module")
def tls_bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[harness.OpenBaoServer, harness.PKI]]:
    """OpenBao with an HTTPS listener whose certificate names only vault.test
    (not 127.0.0.1) and which requires a client certificate from our CA."""
    pki = harness.make_pki(tmp_path_factory.mktemp("pki"), server_names=("vault.test",))
    with harness.OpenBaoServer(tls=harness.TLSListener(pki.server_cert, pki.server_key, client_ca=pki.ca)) as bao:
        bao.write_policy("mlflow-reader", 'path "secret/mlflow/*" { capabilities = ["read"] }')
        yield bao, pki


def tls_env(bao: harness.OpenBaoServer, pki: harness.PKI, path: str, **extra: str) -> dict[str, str]:
    return plugin_env(
        bao,
        TRACKING,
        VAULT_ADDR=bao.tls_addr,
        VAULT_TOKEN=bao.create_token(["mlflow-reader"]),
        VAULT_CACERT=str(pki.ca),
        VAULT_CLIENT_CERT=str(pki.client_cert),
        VAULT_CLIENT_KEY=str(pki.client_key),
        MLFLOW_VAULT_SECRET_PATH=f"secret/{path}",
        **extra,
    )


def test_tls_server_name(use_env, tls_bao: tuple[harness.OpenBaoServer, harness.PKI], secret_path: str) -> None:  # type: ignore[no-untyped-def]
    bao, pki = tls_bao
    bao.kv_put("secret", secret_path, {"token": "server-name-token"}, version=1)
    use_env(tls_env(bao, pki, secret_path))
    err = error_of()  # 127.0.0.1 is not in the certificate
    assert "certificate" in str(err), str(err)
    os.environ["VAULT_TLS_SERVER_NAME"] = "vault.test"
    assert header() == "Bearer server-name-token"
    os.environ["VAULT_TLS_SERVER_NAME"] = "other.test"
    assert "certificate" in str(error_of())


def test_tls_client_certificate(
    use_env,  # type: ignore[no-untyped-def]
    tls_bao: tuple[harness.OpenBaoServer, harness.PKI],
    secret_path: str,
    tmp_path: Path,
) -> None:
    """The listener requires a client certificate: VAULT_CLIENT_CERT/KEY are
    presented; without them, or with a certificate from another CA, the
    handshake fails and no header is produced."""
    bao, pki = tls_bao
    bao.kv_put("secret", secret_path, {"token": "client-cert-token"}, version=1)
    env = tls_env(bao, pki, secret_path, VAULT_TLS_SERVER_NAME="vault.test")
    use_env(env)
    assert header() == "Bearer client-cert-token"
    other = harness.make_pki(tmp_path / "other")
    for cert, key in ((None, None), (other.client_cert, other.client_key)):
        for var in ("VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY"):
            os.environ.pop(var, None)
        if cert is not None and key is not None:
            os.environ.update(VAULT_CLIENT_CERT=str(cert), VAULT_CLIENT_KEY=str(key))
        with pytest.raises(MlflowSecretsAuthError):
            apply(TRACKING)
    os.environ["VAULT_CLIENT_KEY"] = str(tmp_path / "missing.key")
    err = error_of()
    assert err.variable == "VAULT_CLIENT_KEY", str(err)


def test_cert_auth_method(  # type: ignore[no-untyped-def]
    use_env, tls_bao: tuple[harness.OpenBaoServer, harness.PKI], secret_path: str
) -> None:
    """No token and no AppRole: the plugin logs in with OpenBao's cert auth
    method over the TLS connection that presents VAULT_CLIENT_CERT, and the
    token it gets reads the secret. A wrong role or mount, plain http, or no
    certificate at all each give an error naming the variable to change."""
    bao, pki = tls_bao
    auths = bao.api("GET", "sys/auth")
    if "cert/" not in auths.get("data", auths):
        bao.api("POST", "sys/auth/cert", {"type": "cert"})
    bao.api(
        "POST",
        "auth/cert/certs/mlflow",
        {"certificate": pki.ca.read_text(), "token_policies": "mlflow-reader", "token_ttl": "1h"},
    )
    bao.kv_put("secret", secret_path, {"token": "cert-login-token"}, version=1)
    env = plugin_env(
        bao,
        TRACKING,
        VAULT_ADDR=bao.tls_addr,
        VAULT_TLS_SERVER_NAME="vault.test",
        VAULT_CACERT=str(pki.ca),
        VAULT_CLIENT_CERT=str(pki.client_cert),
        VAULT_CLIENT_KEY=str(pki.client_key),
        MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
    )
    assert "VAULT_TOKEN" not in env and "VAULT_ROLE_ID" not in env
    use_env(env)
    assert header() == "Bearer cert-login-token"
    os.environ["MLFLOW_VAULT_CERT_ROLE"] = "mlflow"  # the role named in the login body
    assert header() == "Bearer cert-login-token"
    os.environ["MLFLOW_VAULT_CERT_ROLE"] = "no-such-role"
    err = error_of()
    assert err.variable == "VAULT_CLIENT_CERT", str(err)
    assert "MLFLOW_VAULT_CERT_ROLE=no-such-role" in str(err), str(err)
    del os.environ["MLFLOW_VAULT_CERT_ROLE"]
    os.environ["MLFLOW_VAULT_CERT_MOUNT"] = "/not-cert/"  # nothing is enabled there
    err = error_of()
    assert err.variable == "MLFLOW_VAULT_CERT_MOUNT", str(err)
    assert "MLFLOW_VAULT_CERT_MOUNT=not-cert" in str(err), str(err)
    os.environ["MLFLOW_VAULT_CERT_MOUNT"] = "cert"
    assert header() == "Bearer cert-login-token"
    # The login's token carries the certificate role's policy, nothing more.
    outside = f"outside/{secrets.token_hex(4)}"
    bao.kv_put("secret", outside, {"token": "not-for-mlflow"}, version=1)
    os.environ["MLFLOW_VAULT_SECRET_PATH"] = f"secret/{outside}"
    err = error_of()
    assert "permission denied" in str(err), str(err)
    os.environ["MLFLOW_VAULT_SECRET_PATH"] = f"secret/{secret_path}"
    # cert auth needs https.
    os.environ["VAULT_ADDR"] = bao.addr
    err = error_of()
    assert err.variable == "VAULT_ADDR" and "https" in str(err), str(err)
    os.environ["VAULT_ADDR"] = bao.tls_addr
    # Without the client certificate there is no credential at all.
    for var in ("VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY"):
        del os.environ[var]
    err = error_of()
    assert err.variable == "VAULT_TOKEN", str(err)
    assert "VAULT_CLIENT_CERT" in str(err), str(err)


def test_registry_uri_is_an_allowed_host(  # type: ignore[no-untyped-def]
    use_env, vault_ready: harness.VaultAPIServer, reader_token: str, secret_path: str
) -> None:
    vault_ready.kv_put("secret", secret_path, {"token": "registry-token"}, version=1)
    registry = "https://registry.test:8443"
    use_env(
        plugin_env(vault_ready, TRACKING, VAULT_TOKEN=reader_token, MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}")
    )
    assert header(f"{registry}/api/2.0/mlflow/registered-models/search") is None  # not the tracking server
    os.environ["MLFLOW_REGISTRY_URI"] = registry
    assert header(f"{registry}/api/2.0/mlflow/registered-models/search") == "Bearer registry-token"
    assert header(f"{TRACKING}/api/2.0/mlflow/experiments/search") == "Bearer registry-token"
    assert header("https://registry.test:9443/x") is None  # another port is another server
    assert header("https://other.test/x") is None
    # An explicit allow-list replaces the default policy: the registry is no longer implied.
    os.environ["MLFLOW_SECRETS_ALLOWED_HOSTS"] = "mlflow.test"
    assert header(f"{registry}/x") is None
    assert header(f"{TRACKING}/x") == "Bearer registry-token"


LOGGING = """
import logging, sys, requests
logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="%(levelname)s %(name)s %(message)s")
from mlflow.tracking.request_auth.registry import fetch_auth
auth = fetch_auth("mlflow_secrets_auth")
for url in (sys.argv[1], "https://not-allowed.example/x"):
    r = requests.Request("GET", url).prepare()
    r.prepare_auth(auth)
"""


@pytest.mark.parametrize(
    ("level", "debug", "warning", "complaint"),
    [
        ("DEBUG", True, True, False),
        ("INFO", False, True, False),
        ("ERROR", False, False, False),
        ("loud", False, True, True),  # invalid: one warning naming the variable, then INFO
    ],
)
def test_log_level(
    vault_ready: harness.VaultAPIServer,
    reader_token: str,
    secret_path: str,
    level: str,
    debug: bool,
    warning: bool,
    complaint: bool,
) -> None:
    """The plugin's logger honours MLFLOW_SECRETS_LOG_LEVEL whatever the root
    logger's level (here DEBUG): debug lines only at DEBUG, the not-allowed-host
    warning hidden at ERROR, an invalid value reported and treated as INFO."""
    vault_ready.kv_put("secret", secret_path, {"token": "log-token"}, version=1)
    env = clean_env(
        **plugin_env(
            vault_ready,
            TRACKING,
            VAULT_TOKEN=reader_token,
            MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
            MLFLOW_SECRETS_LOG_LEVEL=level,
        )
    )
    out = subprocess.run(
        [sys.executable, "-c", LOGGING, f"{TRACKING}/x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    ours = [line for line in out.stdout.splitlines() if " mlflow_secrets_auth" in line]
    assert any(line.startswith("DEBUG ") for line in ours) == debug, ours
    host_warnings = [line for line in ours if line.startswith("WARNING ") and "not-allowed.example" in line]
    assert bool(host_warnings) == warning, ours
    complaints = [line for line in ours if "MLFLOW_SECRETS_LOG_LEVEL" in line]
    assert bool(complaints) == complaint, ours
    if complaint:
        assert complaints[0].startswith("WARNING ") and "INFO" in complaints[0], complaints
    assert reader_token not in out.stdout + out.stderr
    assert "log-token" not in out.stdout + out.stderr
