"""Vault/OpenBao login from workload identities, against real servers on
127.0.0.1: JWT/OIDC auth with tokens the test signs, Kubernetes auth with a
TokenReview stand-in, AWS IAM auth replayed to moto's STS, and a tokenless
client behind `bao agent` (AppRole auto-auth, api_proxy).

The JWT and Kubernetes cases run on OpenBao and on HashiCorp Vault (the test
build in tests/vaultserver registers the jwt, kubernetes and aws auth
methods). AWS IAM runs on HashiCorp Vault only: OpenBao has no aws auth
method."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import harness
import pytest
from conftest import apply, plugin_env
from mlflow_secrets_auth import _native, provider
from mlflow_secrets_auth.provider import MlflowSecretsAuthError
from test_e2e import assert_logged, run_script

TRACKING = "https://mlflow.test"
CLI = str(Path(sys.executable).with_name("mlflow-secrets-auth"))


def invalidate() -> None:
    """Forget every cached credential, in the core (MsaInvalidate) and in the plugin."""
    _native.transport().invalidate()
    provider._entries.clear()


def header(url: str = TRACKING) -> str | None:
    return apply(url).headers.get("Authorization")


def error_of(url: str = TRACKING) -> MlflowSecretsAuthError:
    invalidate()
    with pytest.raises(MlflowSecretsAuthError) as err:
        apply(url)
    return err.value


def wait_for_header(want: str, timeout: float = 15.0) -> list[str]:
    """The headers (or "error: ...") seen while polling until ``want`` (at
    most ``timeout`` seconds: a refresh is due within the 1 s TTL)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(str(header()))
        except MlflowSecretsAuthError as exc:
            seen.append(f"error: {exc}")
        if seen[-1] == want:
            break
        time.sleep(0.1)
    return seen


@pytest.fixture()
def issuer() -> harness.JWTIssuer:
    return harness.JWTIssuer("https://ci.test")


def enable_jwt(vault: harness.VaultAPIServer, issuer: harness.JWTIssuer, job: str) -> str:
    """A JWT auth mount trusting ``issuer``, with role ``ci`` bound to
    audience ``mlflow`` and the claim ``job``; returns the mount."""
    mount = f"jwt-{secrets.token_hex(3)}"
    vault.api("POST", f"sys/auth/{mount}", {"type": "jwt"})
    vault.api(
        "POST", f"auth/{mount}/config", {"jwt_validation_pubkeys": [issuer.public_pem], "bound_issuer": issuer.issuer}
    )
    bind_job(vault, mount, job)
    return mount


def bind_job(vault: harness.VaultAPIServer, mount: str, job: str) -> None:
    vault.api(
        "POST",
        f"auth/{mount}/role/ci",
        {
            "role_type": "jwt",
            "bound_audiences": ["mlflow"],
            "user_claim": "sub",
            "bound_claims": {"job": job},
            "token_policies": ["mlflow-reader"],
            "token_ttl": "1h",
        },
    )


@pytest.mark.both_vaults
def test_jwt_login_end_to_end(
    vault_ready: harness.VaultAPIServer,
    mlflow_server: harness.MlflowServer,
    issuer: harness.JWTIssuer,
    secret_path: str,
    tmp_path: Path,
) -> None:
    """An unmodified MLflow script logs a run; the plugin logged in with the JWT in the file."""
    mount = enable_jwt(vault_ready, issuer, "train")
    user, password = mlflow_server.basic_auth
    vault_ready.kv_put("secret", secret_path, {"username": user, "password": password}, version=1)
    jwt_file = tmp_path / "token"
    jwt = issuer.sign({"sub": "runner-1", "aud": "mlflow", "job": "train"})
    jwt_file.write_text(jwt)
    env = plugin_env(
        vault_ready,
        mlflow_server.url,
        MLFLOW_VAULT_JWT_ROLE="ci",
        MLFLOW_VAULT_JWT_MOUNT=mount,
        MLFLOW_VAULT_JWT_PATH=str(jwt_file),
        MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
        MLFLOW_VAULT_AUTH_MODE="basic",
    )
    result = run_script(env)
    assert_logged(result, mlflow_server, password)
    assert jwt not in result.stdout + result.stderr


@pytest.mark.both_vaults
@pytest.mark.parametrize("case", ["wrong audience", "expired", "wrong issuer key"])
def test_jwt_refused_names_role_and_file(  # type: ignore[no-untyped-def]
    case: str,
    use_env,
    vault_ready: harness.VaultAPIServer,
    issuer: harness.JWTIssuer,
    secret_path: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mount = enable_jwt(vault_ready, issuer, "train")
    vault_ready.kv_put("secret", secret_path, {"token": "never-served"}, version=1)
    claims = {"sub": "runner-1", "aud": "mlflow", "job": "train"}
    if case == "wrong audience":
        jwt = issuer.sign({**claims, "aud": "someone-else"})
    elif case == "expired":
        jwt = issuer.sign(claims, ttl=-600)
    else:
        jwt = harness.JWTIssuer(issuer.issuer).sign(claims)
    jwt_file = tmp_path / "ci-token"
    jwt_file.write_text(jwt + "\n")
    use_env(
        plugin_env(
            vault_ready,
            TRACKING,
            MLFLOW_VAULT_JWT_ROLE="ci",
            MLFLOW_VAULT_JWT_MOUNT=mount,
            MLFLOW_VAULT_JWT_PATH=str(jwt_file),
            MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
        )
    )
    with caplog.at_level(logging.DEBUG):
        err = str(error_of())
    assert "MLFLOW_VAULT_JWT_ROLE=ci" in err, err
    assert f"MLFLOW_VAULT_JWT_PATH={jwt_file}" in err, err
    for part in jwt.split("."):
        assert part not in err
        assert part not in caplog.text


@pytest.mark.both_vaults
def test_jwt_rotated_file_is_read_again(  # type: ignore[no-untyped-def]
    use_env, vault_ready: harness.VaultAPIServer, issuer: harness.JWTIssuer, secret_path: str, tmp_path: Path
) -> None:
    """The role moves from job "a" to job "b" and every token of the old login
    is revoked: only a client that reads the file again (and logs in with the
    new JWT) still gets the secret; the old JWT is refused."""
    mount = enable_jwt(vault_ready, issuer, "a")
    vault_ready.kv_put("secret", secret_path, {"token": "first"}, version=1)
    jwt_file = tmp_path / "token"
    old = issuer.sign({"sub": "runner-1", "aud": "mlflow", "job": "a"})
    jwt_file.write_text(old)
    use_env(
        plugin_env(
            vault_ready,
            TRACKING,
            MLFLOW_VAULT_JWT_ROLE="ci",
            MLFLOW_VAULT_JWT_MOUNT=mount,
            MLFLOW_VAULT_JWT_PATH=str(jwt_file),
            MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
            MLFLOW_VAULT_TTL_SEC="1",
        )
    )
    invalidate()
    assert header() == "Bearer first"
    # The identity changes: the old JWT is no longer accepted, its tokens are gone.
    bind_job(vault_ready, mount, "b")
    vault_ready.api("PUT", f"sys/leases/revoke-prefix/auth/{mount}/login", {})
    old_login = vault_ready.api("POST", f"auth/{mount}/login", {"role": "ci", "jwt": old}, token="", expect=(400,))
    assert "errors" in old_login
    jwt_file.write_text(issuer.sign({"sub": "runner-1", "aud": "mlflow", "job": "b"}))
    vault_ready.kv_put("secret", secret_path, {"token": "second"}, version=1)
    # The same provider refreshes (TTL 1 s): until the new value arrives the
    # held one is served; a client that kept the old JWT never gets it.
    seen = wait_for_header("Bearer second")
    assert seen[-1] == "Bearer second", seen[-5:]
    assert not any(h.startswith("error") for h in seen), seen


@pytest.fixture()
def token_review() -> Iterator[harness.TokenReviewServer]:
    with harness.TokenReviewServer() as server:
        yield server


@pytest.mark.both_vaults
def test_kubernetes_login(  # type: ignore[no-untyped-def]
    use_env,
    vault_ready: harness.VaultAPIServer,
    token_review: harness.TokenReviewServer,
    issuer: harness.JWTIssuer,
    secret_path: str,
    tmp_path: Path,
) -> None:
    mount = f"k8s-{secrets.token_hex(3)}"
    vault_ready.api("POST", f"sys/auth/{mount}", {"type": "kubernetes"})
    vault_ready.api(
        "POST",
        f"auth/{mount}/config",
        {
            "kubernetes_host": token_review.url,
            "disable_local_ca_jwt": True,
            # Required with disable_local_ca_jwt; unused over plain http.
            "kubernetes_ca_cert": harness.make_tls_files(tmp_path)[0].read_text(),
        },
    )
    vault_ready.api(
        "POST",
        f"auth/{mount}/role/trainer",
        {
            "bound_service_account_names": ["trainer"],
            "bound_service_account_namespaces": ["ml"],
            "token_policies": ["mlflow-reader"],
            "token_ttl": "1h",
        },
    )
    vault_ready.kv_put("secret", secret_path, {"token": "from-kubernetes"}, version=1)
    uid = str(uuid.uuid4())
    sa_token = issuer.sign(harness.kubernetes_claims("ml", "trainer", uid))
    token_review.allow(sa_token, "ml", "trainer", uid)
    token_file = tmp_path / "token"
    token_file.write_text(sa_token)
    use_env(
        plugin_env(
            vault_ready,
            TRACKING,
            MLFLOW_VAULT_K8S_ROLE="trainer",
            MLFLOW_VAULT_K8S_MOUNT=mount,
            MLFLOW_VAULT_K8S_TOKEN_PATH=str(token_file),
            MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
        )
    )
    invalidate()
    assert header() == "Bearer from-kubernetes"
    assert token_review.reviews >= 1
    # Another service account's token (rotated in by the kubelet, say) is
    # refused by the role; the error names the role and the file, not the token.
    other_uid = str(uuid.uuid4())
    other = issuer.sign(harness.kubernetes_claims("ml", "intruder", other_uid))
    token_review.allow(other, "ml", "intruder", other_uid)
    token_file.write_text(other)
    os.environ["MLFLOW_SECRETS_TIMEOUT_SEC"] = "29"  # a new provider: nothing held from the login above
    err = str(error_of())
    assert "MLFLOW_VAULT_K8S_ROLE=trainer" in err, err
    assert f"MLFLOW_VAULT_K8S_TOKEN_PATH={token_file}" in err, err
    assert other.split(".")[1] not in err


@pytest.fixture()
def agent(vault_ready: harness.VaultAPIServer) -> Iterator[harness.BaoAgent]:
    role_id, secret_id = vault_ready.create_approle(f"agent-{secrets.token_hex(3)}", ["mlflow-reader"])
    with harness.BaoAgent(vault_ready.addr, role_id, secret_id) as running:
        yield running


def test_agent_mode_is_tokenless(  # type: ignore[no-untyped-def]
    use_env, vault_ready: harness.VaultAPIServer, agent: harness.BaoAgent, secret_path: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vault_ready.kv_put("secret", secret_path, {"token": "through-the-agent"}, version=1)
    env = {
        "MLFLOW_TRACKING_URI": TRACKING,
        "MLFLOW_TRACKING_AUTH": "mlflow_secrets_auth",
        "MLFLOW_SECRETS_AUTH_ENABLE": "vault",
        "VAULT_AGENT_ADDR": agent.addr,
        "MLFLOW_VAULT_SECRET_PATH": f"secret/{secret_path}",
    }
    use_env(env)
    invalidate()
    assert header() == "Bearer through-the-agent"
    # The same through BAO_AGENT_ADDR; and info says who authenticates.
    monkeypatch.delenv("VAULT_AGENT_ADDR")
    monkeypatch.setenv("BAO_AGENT_ADDR", agent.addr)
    invalidate()
    assert header() == "Bearer through-the-agent"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "VAULT_", "BAO_"))}
    out = subprocess.run([CLI, "info"], env={**base, **env}, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"agent (the agent at {agent.addr} authenticates)" in out.stdout, out.stdout
    # Without the agent (the server itself, no token), the read is refused:
    # the agent is what made it work.
    monkeypatch.setenv("BAO_AGENT_ADDR", vault_ready.addr)
    err = str(error_of())
    assert "permission denied" in err, err


@pytest.mark.both_vaults
def test_aws_iam_login_against_moto(  # type: ignore[no-untyped-def]
    use_env, vault_ready: harness.VaultAPIServer, moto, secret_path: str
) -> None:
    """The aws method's iam login: the plugin signs sts:GetCallerIdentity with
    the AWS SDK's chain; Vault replays it to its sts_endpoint (moto), and
    binds the role to moto's caller ARN. OpenBao has no aws auth method
    ("plugin not found in the catalog: aws"), so this runs on HashiCorp Vault
    (tests/vaultserver registers it)."""
    if vault_ready.kind == harness.OPENBAO:
        pytest.skip("OpenBao has no aws auth method (removed from its catalog)")
    mount = f"aws-{secrets.token_hex(3)}"
    vault_ready.api("POST", f"sys/auth/{mount}", {"type": "aws"})
    vault_ready.api(
        "POST",
        f"auth/{mount}/config/client",
        {"sts_endpoint": moto.url, "sts_region": "us-east-1", "iam_server_id_header_value": "vault.test"},
    )
    import boto3

    key_id, secret_key = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    caller = boto3.client(
        "sts",
        endpoint_url=moto.url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret_key,
    ).get_caller_identity()["Arn"]
    # moto answers arn:aws:sts::<account>:user/moto; Vault binds the canonical
    # IAM form of a user's ARN.
    caller = caller.replace(":sts::", ":iam::")
    vault_ready.api(
        "POST",
        f"auth/{mount}/role/dev",
        {
            "auth_type": "iam",
            "bound_iam_principal_arn": [caller],
            "resolve_aws_unique_ids": False,
            "token_policies": ["mlflow-reader"],
        },
    )
    vault_ready.kv_put("secret", secret_path, {"token": "from-aws-iam"}, version=1)
    use_env(
        plugin_env(
            vault_ready,
            TRACKING,
            MLFLOW_VAULT_AWS_ROLE="dev",
            MLFLOW_VAULT_AWS_MOUNT=mount,
            MLFLOW_VAULT_AWS_HEADER_VALUE="vault.test",
            MLFLOW_VAULT_SECRET_PATH=f"secret/{secret_path}",
            AWS_ACCESS_KEY_ID=key_id,
            AWS_SECRET_ACCESS_KEY=secret_key,
            AWS_CONFIG_FILE="/nonexistent",
            AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
            AWS_EC2_METADATA_DISABLED="true",
        )
    )
    invalidate()
    assert header() == "Bearer from-aws-iam"
    # A role bound to another principal refuses the same signed identity.
    os.environ["MLFLOW_VAULT_AWS_ROLE"] = "nobody"
    err = str(error_of())
    assert "MLFLOW_VAULT_AWS_ROLE=nobody" in err, err
    assert "wJalrXUtnFEMI" not in err
