"""AWS Secrets Manager (moto's server) and Azure Key Vault (the Key Vault
stand-in over HTTPS with a managed-identity endpoint), through the plugin in
this process, the real SDKs and credential chains in the Go core."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import secrets
import time

import cloud_harness
import pytest
from conftest import apply
from mlflow_secrets_auth.provider import MlflowSecretsAuthError

TRACKING = "https://mlflow.test:5000"


def auth_header(url: str = TRACKING) -> str | None:
    return apply(url).headers.get("Authorization")


def error_of(url: str = TRACKING) -> MlflowSecretsAuthError:
    with pytest.raises(MlflowSecretsAuthError) as err:
        apply(url)
    return err.value


def name() -> str:
    return f"mlflow/{secrets.token_hex(5)}"


def wait_for_header(expected: str, timeout: float = 15.0) -> None:
    """Poll until ``expected`` is the header sent; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (got := auth_header()) != expected:
        assert time.monotonic() < deadline, f"still {got!r} after {timeout:.0f}s, expected {expected!r}"
        time.sleep(0.05)


# --------------------------------------------------------------------------- #
# AWS Secrets Manager
# --------------------------------------------------------------------------- #


def aws_env(moto: cloud_harness.MotoServer, secret_id: str, **extra: str) -> dict[str, str]:
    return {
        "MLFLOW_TRACKING_URI": TRACKING,
        "MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager",
        "MLFLOW_AWS_SECRET_ID": secret_id,
        **moto.env(),
        **extra,
    }


def test_aws_by_name_and_by_arn(use_env, moto: cloud_harness.MotoServer) -> None:  # type: ignore[no-untyped-def]
    secret = name()
    arn = moto.create_secret(secret, string=json.dumps({"token": "aws-token", "other": 1}))
    use_env(aws_env(moto, secret))
    assert auth_header() == "Bearer aws-token"
    # By ARN, with AWS_REGION pointing elsewhere: the ARN's region (us-east-1) wins.
    use_env(
        {
            "MLFLOW_AWS_SECRET_ID": "",
            "MLFLOW_AWS_SECRET_NAME": arn,
            "AWS_REGION": "eu-west-3",
            "AWS_DEFAULT_REGION": "eu-west-3",
        }
    )
    assert auth_header() == "Bearer aws-token"
    os.environ["MLFLOW_AWS_SECRET_NAME"] = arn.replace("us-east-1", "eu-west-3")
    err = error_of()
    assert err.code == "backend"
    assert "not found" in str(err)


def test_aws_stages_and_version_ids(use_env, moto: cloud_harness.MotoServer) -> None:  # type: ignore[no-untyped-def]
    secret = name()
    moto.create_secret(secret, string="first")
    first = moto.version_with_stage(secret, "AWSCURRENT")
    moto.put_secret_value(secret, string="second")
    pending = moto.put_secret_value(secret, string="pending", stages=["AWSPENDING"])
    custom = moto.put_secret_value(secret, string="custom", stages=["blue"])
    use_env(aws_env(moto, secret))
    assert auth_header() == "Bearer second"
    expected = {
        "AWSCURRENT": "second",
        "AWSPREVIOUS": "first",
        "AWSPENDING": "pending",
        "blue": "custom",
        str(first): "first",
        pending: "pending",
        custom: "custom",
    }
    for version, value in expected.items():
        os.environ["MLFLOW_AWS_SECRET_VERSION"] = version
        assert auth_header() == f"Bearer {value}", version
    os.environ["MLFLOW_AWS_SECRET_VERSION"] = "no-such-stage"
    err = error_of()
    assert err.variable == "MLFLOW_AWS_SECRET_VERSION"
    assert "stage no-such-stage" in str(err)


def test_aws_secret_binary_is_decoded_once(use_env, moto: cloud_harness.MotoServer) -> None:  # type: ignore[no-untyped-def]
    secret = name()
    moto.create_secret(secret, binary=json.dumps({"username": "u", "password": "p:w"}).encode())
    use_env(aws_env(moto, secret, MLFLOW_AWS_AUTH_MODE="basic"))
    assert auth_header() == "Basic " + base64.b64encode(b"u:p:w").decode()
    # Bytes that are themselves base64 text stay as they are (0.2.0 decoded them twice).
    b64 = name()
    moto.create_secret(b64, binary=base64.b64encode(b"12345"))
    use_env({"MLFLOW_AWS_SECRET_ID": b64, "MLFLOW_AWS_AUTH_MODE": "bearer"})
    assert auth_header() == "Bearer MTIzNDU="


def test_aws_missing_secret_and_wrong_keys(use_env, moto: cloud_harness.MotoServer) -> None:  # type: ignore[no-untyped-def]
    use_env(aws_env(moto, "mlflow/does-not-exist"))
    err = error_of()
    assert (err.code, err.variable) == ("backend", "MLFLOW_AWS_SECRET_ID")
    assert "mlflow/does-not-exist" in str(err)
    assert "not found" in str(err)
    secret = name()
    moto.create_secret(secret, string="guarded-token")
    key = moto.enable_iam_auth()
    try:
        use_env(aws_env(moto, secret, AWS_ACCESS_KEY_ID=key.access_key_id, AWS_SECRET_ACCESS_KEY=key.secret_access_key))
        assert auth_header() == "Bearer guarded-token"
        os.environ["AWS_SECRET_ACCESS_KEY"] = "wrong-secret-key-value"
        err = error_of()
        assert (err.code, err.variable) == ("backend", "AWS_ACCESS_KEY_ID")
        assert "rejected" in str(err)
        assert "wrong-secret-key-value" not in str(err)
    finally:
        moto.disable_iam_auth()


def test_aws_rotation_cached_then_picked_up(use_env, moto: cloud_harness.MotoServer) -> None:  # type: ignore[no-untyped-def]
    cached = name()
    moto.create_secret(cached, string="before-rotation")
    use_env(aws_env(moto, cached, MLFLOW_AWS_TTL_SEC="3600"))
    assert auth_header() == "Bearer before-rotation"
    moto.put_secret_value(cached, string="after-rotation")
    assert auth_header() == "Bearer before-rotation"  # within the hour: the cached value
    short = name()
    moto.create_secret(short, string="before-rotation")
    use_env(aws_env(moto, short, MLFLOW_AWS_TTL_SEC="2"))
    assert auth_header() == "Bearer before-rotation"
    moto.put_secret_value(short, string="after-rotation")
    wait_for_header("Bearer after-rotation")


# --------------------------------------------------------------------------- #
# Azure Key Vault
# --------------------------------------------------------------------------- #


def azure_env(kv: cloud_harness.FakeKeyVault, secret: str, **extra: str) -> dict[str, str]:
    return {
        "MLFLOW_TRACKING_URI": TRACKING,
        "MLFLOW_SECRETS_AUTH_ENABLE": "azure-key-vault",
        "AZURE_KEY_VAULT_URL": kv.vault_url,
        "MLFLOW_AZURE_SECRET_NAME": secret,
        "MLFLOW_AZURE_CA_BUNDLE": str(kv.ca_pem),
        **kv.identity_env(),
        **extra,
    }


def kv_name() -> str:
    return f"mlflow-{secrets.token_hex(5)}"


def test_azure_latest_and_pinned(use_env, keyvault: cloud_harness.FakeKeyVault) -> None:  # type: ignore[no-untyped-def]
    secret = kv_name()
    v1 = keyvault.set_secret(secret, json.dumps({"username": "alice", "password": "one"}))
    keyvault.set_secret(secret, json.dumps({"username": "alice", "password": "two"}))
    use_env(azure_env(keyvault, secret, MLFLOW_AZURE_AUTH_MODE="basic"))
    assert auth_header() == "Basic " + base64.b64encode(b"alice:two").decode()
    os.environ["MLFLOW_AZURE_SECRET_VERSION"] = v1
    assert auth_header() == "Basic " + base64.b64encode(b"alice:one").decode()
    os.environ["MLFLOW_AZURE_SECRET_VERSION"] = "0" * 32
    err = error_of()
    assert (err.code, err.variable) == ("backend", "MLFLOW_AZURE_SECRET_VERSION")


def test_azure_disabled_and_expired(use_env, keyvault: cloud_harness.FakeKeyVault) -> None:  # type: ignore[no-untyped-def]
    secret = kv_name()
    version = keyvault.set_secret(secret, "tok")
    keyvault.update_secret(secret, version, enabled=False)
    use_env(azure_env(keyvault, secret))
    err = error_of()
    assert err.code == "secret_unusable"
    assert "disabled" in str(err)
    expired = kv_name()
    keyvault.set_secret(expired, "tok", expires=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
    os.environ["MLFLOW_AZURE_SECRET_NAME"] = expired
    err = error_of()
    assert err.code == "secret_unusable"
    assert "expired at" in str(err)


def test_azure_new_version_cached_then_picked_up(use_env, keyvault: cloud_harness.FakeKeyVault) -> None:  # type: ignore[no-untyped-def]
    cached = kv_name()
    keyvault.set_secret(cached, "old-azure-token")
    use_env(azure_env(keyvault, cached, MLFLOW_AZURE_TTL_SEC="3600"))
    assert auth_header() == "Bearer old-azure-token"
    keyvault.set_secret(cached, "new-azure-token")
    assert auth_header() == "Bearer old-azure-token"  # within the hour: the cached value
    short = kv_name()
    keyvault.set_secret(short, "old-azure-token")
    use_env(azure_env(keyvault, short, MLFLOW_AZURE_TTL_SEC="2"))
    assert auth_header() == "Bearer old-azure-token"
    keyvault.set_secret(short, "new-azure-token")
    wait_for_header("Bearer new-azure-token")


def test_azure_trust_and_credentials(use_env, keyvault: cloud_harness.FakeKeyVault) -> None:  # type: ignore[no-untyped-def]
    secret = kv_name()
    keyvault.set_secret(secret, "tok")
    env = azure_env(keyvault, secret)
    del env["MLFLOW_AZURE_CA_BUNDLE"]
    use_env(env)  # the emulator's CA is not trusted: verification fails, never skipped
    assert "certificate" in str(error_of())
    os.environ["MLFLOW_AZURE_CA_BUNDLE"] = str(keyvault.ca_pem)
    assert auth_header() == "Bearer tok"


def test_aws_credential_chain(use_env, moto: cloud_harness.MotoServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """No static keys in the environment: the SDK's chain finds credentials in a
    profile, through web identity (STS on moto) and from a container endpoint.
    With moto's IAM checks on, only real keys from its IAM pass."""
    secret = name()
    moto.create_secret(secret, string="chain-token")
    key = moto.enable_iam_auth()
    try:
        base = aws_env(moto, secret)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            base.pop(k)
        # A named profile in a shared credentials file.
        creds = tmp_path / "credentials"
        creds.write_text(
            f"[ml]\naws_access_key_id = {key.access_key_id}\naws_secret_access_key = {key.secret_access_key}\n"
        )
        (tmp_path / "config").write_text("[profile ml]\nregion = us-east-1\n")
        use_env(
            {
                **base,
                "AWS_PROFILE": "ml",
                "AWS_SHARED_CREDENTIALS_FILE": str(creds),
                "AWS_CONFIG_FILE": str(tmp_path / "config"),
            }
        )
        assert auth_header() == "Bearer chain-token"
        os.environ["AWS_PROFILE"] = "missing-profile"
        assert "missing-profile" in str(error_of())
    finally:
        moto.disable_iam_auth()
    # Web identity: AssumeRoleWithWebIdentity against moto's STS.
    token_file = tmp_path / "web-identity-token"
    token_file.write_text("eyJhbGciOiJub25lIn0.eyJzdWIiOiJtbGZsb3cifQ.")
    use_env(
        {
            **base,
            "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/mlflow-reader",
            "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
            "AWS_ROLE_SESSION_NAME": "msa-test",
            "AWS_ENDPOINT_URL_STS": moto.url,
        }
    )
    for k in ("AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        os.environ.pop(k, None)
    assert auth_header() == "Bearer chain-token"
    os.environ["AWS_WEB_IDENTITY_TOKEN_FILE"] = str(tmp_path / "no-such-token")
    assert error_of().code == "backend"
