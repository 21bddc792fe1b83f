"""Checks of the cloud emulator harness (tests/cloud_harness.py).

Moto's server and the Key Vault stand-in (FakeKeyVault) are started for real
and checked through their HTTP APIs.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import cloud_harness as ch
import pytest
import requests
from botocore.exceptions import ClientError

# --------------------------------------------------------------------------- #
# moto / AWS Secrets Manager
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def moto() -> Iterator[ch.MotoServer]:
    with ch.MotoServer() as server:
        yield server


def _name(prefix: str = "msa") -> str:
    return f"{prefix}/{secrets.token_hex(4)}"


def _client_error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    resp: dict[str, Any] = exc.value.response
    return str(resp["Error"]["Code"]), int(resp["ResponseMetadata"]["HTTPStatusCode"])


def test_moto_binds_loopback(moto: ch.MotoServer) -> None:
    assert moto.url == f"http://127.0.0.1:{moto.port}"
    assert requests.get(f"{moto.url}/moto-api/", timeout=5).status_code == 200


def test_moto_create_and_get_by_name_and_arn(moto: ch.MotoServer) -> None:
    name = _name()
    arn = moto.create_secret(name, string="v1")
    prefix = f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{re.escape(name)}"
    assert re.fullmatch(prefix + r"-[A-Za-z0-9]{6}", arn)
    by_name = moto.get_secret_value(name)
    by_arn = moto.get_secret_value(arn)
    by_partial_arn = moto.get_secret_value(arn.rsplit("-", 1)[0])
    for resp in (by_name, by_arn, by_partial_arn):
        assert resp["SecretString"] == "v1"
        assert resp["ARN"] == arn
        assert resp["VersionStages"] == ["AWSCURRENT"]


def test_moto_put_secret_value_rotates_stages(moto: ch.MotoServer) -> None:
    name = _name()
    moto.create_secret(name, string="v1")
    v1 = moto.version_with_stage(name, "AWSCURRENT")
    v2 = moto.put_secret_value(name, string="v2")
    v3 = moto.put_secret_value(name, string="v3")
    assert len({v1, v2, v3}) == 3
    stages = moto.stages(name)
    assert stages[v3] == ["AWSCURRENT"]
    assert stages[v2] == ["AWSPREVIOUS"]
    assert stages.get(v1, []) == []
    assert moto.get_secret_value(name)["SecretString"] == "v3"
    assert moto.get_secret_value(name, VersionStage="AWSPREVIOUS")["SecretString"] == "v2"
    assert moto.get_secret_value(name, VersionId=v1)["SecretString"] == "v1"


def test_moto_pending_stage_and_update_stage(moto: ch.MotoServer) -> None:
    name = _name()
    moto.create_secret(name, string="old")
    current = moto.version_with_stage(name, "AWSCURRENT")
    pending = moto.put_secret_value(name, string="new", stages=["AWSPENDING"])
    assert moto.get_secret_value(name)["SecretString"] == "old"
    assert moto.get_secret_value(name, VersionStage="AWSPENDING")["SecretString"] == "new"

    moto.update_stage(name, "AWSCURRENT", move_to_version=pending)
    stages = moto.stages(name)
    assert "AWSCURRENT" in stages[pending]
    assert stages[current] == ["AWSPREVIOUS"]
    assert moto.get_secret_value(name, VersionStage="AWSCURRENT")["SecretString"] == "new"
    # Moto 5.2 quirk (documented in MotoServer.update_stage): a read without a
    # stage still follows moto's stale default version. If this starts failing,
    # moto was fixed and the docstring can go.
    assert moto.get_secret_value(name)["SecretString"] == "old"


def test_moto_binary_secret(moto: ch.MotoServer) -> None:
    name = _name()
    payload = bytes(range(256))
    moto.create_secret(name, binary=payload)
    resp = moto.get_secret_value(name)
    assert resp["SecretBinary"] == payload
    assert "SecretString" not in resp
    version = moto.put_secret_value(name, binary=b"\x00second")
    assert moto.get_secret_value(name, VersionId=version)["SecretBinary"] == b"\x00second"


def test_moto_missing_secret(moto: ch.MotoServer) -> None:
    with pytest.raises(ClientError) as exc:
        moto.get_secret_value(_name("missing"))
    # Real AWS answers 400; moto answers 404. The error code is the same.
    assert _client_error(exc) == ("ResourceNotFoundException", 404)
    arn = moto.create_secret(_name(), string="x")
    with pytest.raises(ClientError) as exc:
        moto.get_secret_value(arn[:-6] + "zzzzzz")
    assert _client_error(exc)[0] == "ResourceNotFoundException"


def test_moto_ignores_credentials_by_default(moto: ch.MotoServer) -> None:
    name = _name()
    moto.create_secret(name, string="open")
    stranger = moto.client(access_key_id="AKIANOTAREALKEY00000", secret_access_key="wrong")
    assert stranger.get_secret_value(SecretId=name)["SecretString"] == "open"


def test_moto_iam_auth() -> None:
    with ch.MotoServer(iam_auth=True) as moto:
        assert moto.iam_auth
        assert moto.access_key_id != "testing"
        name = _name()
        moto.create_secret(name, string="guarded")  # as the admin key
        reader = moto.create_access_key("reader", actions=["secretsmanager:GetSecretValue"])
        as_reader = moto.client(access_key_id=reader.access_key_id, secret_access_key=reader.secret_access_key)
        assert as_reader.get_secret_value(SecretId=name)["SecretString"] == "guarded"

        with pytest.raises(ClientError) as exc:
            as_reader.create_secret(Name=_name(), SecretString="nope")
        assert _client_error(exc)[1] == 403
        assert "AccessDenied" in str(exc.value)

        dummy = moto.client(access_key_id="testing", secret_access_key="testing")
        with pytest.raises(ClientError) as exc:
            dummy.get_secret_value(SecretId=name)
        assert _client_error(exc)[1] == 403
        assert "InvalidClientTokenId" in str(exc.value)

        bad_secret = moto.client(access_key_id=reader.access_key_id, secret_access_key="x" * 40)
        with pytest.raises(ClientError) as exc:
            bad_secret.get_secret_value(SecretId=name)
        assert _client_error(exc)[1] == 403
        assert "SignatureDoesNotMatch" in str(exc.value)

        env = moto.env(reader)
        assert env["AWS_ENDPOINT_URL_SECRETS_MANAGER"] == moto.url
        assert env["AWS_ACCESS_KEY_ID"] == reader.access_key_id

        old_admin = moto.access_key_id
        moto.reset()  # wipes IAM too; auth stays on with a fresh admin key
        assert moto.iam_auth and moto.access_key_id != old_admin
        with pytest.raises(ClientError) as exc:
            as_reader.get_secret_value(SecretId=name)
        assert _client_error(exc)[1] == 403
        with pytest.raises(ClientError) as exc:
            moto.get_secret_value(name)
        assert _client_error(exc)[0] == "ResourceNotFoundException"

        moto.disable_iam_auth()
        assert dummy.list_secrets()["SecretList"] == []


# --------------------------------------------------------------------------- #
# Key Vault emulators
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def keyvault() -> Iterator[ch.FakeKeyVault]:
    with ch.FakeKeyVault() as fake:
        yield fake


def _kv_name() -> str:
    return f"msa-{secrets.token_hex(4)}"


def test_keyvault_https_validates_with_ca_pem(keyvault: ch.FakeKeyVault) -> None:
    assert keyvault.vault_url.startswith("https://127.0.0.1:")
    assert keyvault.ca_pem.is_file()
    assert "BEGIN CERTIFICATE" in keyvault.ca_pem.read_text()
    r = requests.get(f"{keyvault.vault_url}/secrets", params={"api-version": "7.4"}, verify=str(keyvault.ca_pem))
    assert r.status_code == 401  # TLS fine; no token yet
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{keyvault.vault_url}/secrets", params={"api-version": "7.4"}, timeout=10)


def test_keyvault_bearer_challenge(keyvault: ch.FakeKeyVault) -> None:
    challenge = keyvault.challenge()
    assert challenge.get("resource", "").startswith("https://")


def test_keyvault_identity_endpoint_returns_token(keyvault: ch.FakeKeyVault) -> None:
    env = keyvault.identity_env()
    assert env["IDENTITY_ENDPOINT"].startswith("http://127.0.0.1:")
    assert env["IDENTITY_ENDPOINT"].endswith("/metadata/identity/oauth2/token")
    resource = keyvault.challenge()["resource"]
    r = requests.get(
        env["IDENTITY_ENDPOINT"],
        params={"api-version": "2019-08-01", "resource": resource},
        headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]},
        timeout=10,
    )
    assert r.status_code == 200
    body = r.json()
    assert body["access_token"]
    assert body["token_type"] == "Bearer"
    assert int(body["expires_on"]) > time.time()


def test_keyvault_set_get_latest_and_pinned(keyvault: ch.FakeKeyVault) -> None:
    name = _kv_name()
    v1 = keyvault.set_secret(name, "first")
    v2 = keyvault.set_secret(name, "second")
    assert re.fullmatch(r"[0-9a-f]{32}", v1) and re.fullmatch(r"[0-9a-f]{32}", v2) and v1 != v2
    latest = keyvault.get_secret(name)
    assert latest["value"] == "second"
    assert keyvault.version_of(latest) == v2
    assert latest["attributes"]["enabled"] is True
    pinned = keyvault.get_secret(name, v1)
    assert pinned["value"] == "first"
    assert pinned["id"].endswith(f"/secrets/{name}/{v1}")


def test_keyvault_disable_version(keyvault: ch.FakeKeyVault) -> None:
    name = _kv_name()
    v1 = keyvault.set_secret(name, "old")
    v2 = keyvault.set_secret(name, "new")
    updated = keyvault.update_secret(name, v1, enabled=False)
    assert updated["attributes"]["enabled"] is False
    with pytest.raises(ch.KeyVaultError) as exc:
        keyvault.get_secret(name, v1)
    assert exc.value.status == 403
    assert keyvault.get_secret(name)["value"] == "new"

    keyvault.update_secret(name, v2, enabled=False)
    with pytest.raises(ch.KeyVaultError) as exc:
        keyvault.get_secret(name)  # the latest version is disabled: no fallback
    assert exc.value.status == 403

    keyvault.update_secret(name, v1, enabled=True)
    assert keyvault.get_secret(name, v1)["value"] == "old"


def test_keyvault_set_disabled_and_expiry(keyvault: ch.FakeKeyVault) -> None:
    name = _kv_name()
    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    version = keyvault.set_secret(name, "tmp", expires=expires)
    bundle = keyvault.get_secret(name, version)
    assert bundle["attributes"]["exp"] == int(expires.timestamp())
    off = keyvault.set_secret(name, "off", enabled=False)
    with pytest.raises(ch.KeyVaultError) as exc:
        keyvault.get_secret(name, off)
    assert exc.value.status == 403


def test_keyvault_missing_secret(keyvault: ch.FakeKeyVault) -> None:
    with pytest.raises(ch.KeyVaultError) as exc:
        keyvault.get_secret(_kv_name())
    assert exc.value.status == 404


# -- FakeKeyVault specifics --------------------------------------------------- #


@pytest.fixture()
def fake_kv() -> Iterator[ch.FakeKeyVault]:
    with ch.FakeKeyVault() as fake:
        yield fake


def test_fake_kv_rejects_foreign_tokens_and_wrong_identity_header(fake_kv: ch.FakeKeyVault) -> None:
    url = f"{fake_kv.vault_url}/secrets/x"
    r = requests.get(
        url,
        params={"api-version": "7.4"},
        headers={"Authorization": "Bearer not-issued-here"},
        verify=str(fake_kv.ca_pem),
        timeout=10,
    )
    assert r.status_code == 401
    challenge = ch._parse_challenge(r.headers["WWW-Authenticate"])
    assert challenge["resource"] == "https://vault.azure.net"
    assert challenge["authorization"].startswith("https://login.microsoftonline.com/")

    r = requests.get(
        fake_kv.identity_url,
        params={"api-version": "2019-08-01", "resource": "https://vault.azure.net"},
        headers={"X-IDENTITY-HEADER": "wrong"},
        timeout=10,
    )
    assert r.status_code == 401

    # A token for another resource is not accepted either.
    other = fake_kv.fetch_token("https://management.azure.com")["access_token"]
    r = requests.get(
        url,
        params={"api-version": "7.4"},
        headers={"Authorization": f"Bearer {other}"},
        verify=str(fake_kv.ca_pem),
        timeout=10,
    )
    assert r.status_code == 401


def test_fake_kv_error_shapes_hooks_and_trailing_slash(fake_kv: ch.FakeKeyVault) -> None:
    name = _kv_name()
    version = fake_kv.set_secret(name, "value")
    # azsecrets asks for the latest version as /secrets/<name>/ (empty version).
    assert fake_kv.kv_request("GET", f"secrets/{name}/", api_version="2025-07-01")["value"] == "value"
    assert "2025-07-01" in fake_kv.api_versions_seen

    fake_kv.update_secret(name, version, enabled=False)
    with pytest.raises(ch.KeyVaultError) as exc:
        fake_kv.get_secret(name)
    assert (exc.value.status, exc.value.code) == (403, "Forbidden/SecretDisabled")
    with pytest.raises(ch.KeyVaultError) as exc:
        fake_kv.get_secret("does-not-exist")
    assert (exc.value.status, exc.value.code) == (404, "SecretNotFound")

    fake_kv.update_secret(name, version, enabled=True)
    fake_kv.fail_next(1, status=503, retry_after="1")
    with pytest.raises(ch.KeyVaultError) as exc:
        fake_kv.get_secret(name)
    assert exc.value.status == 503
    assert fake_kv.get_secret(name)["value"] == "value"

    before = len(fake_kv.token_requests)
    fake_kv.revoke_tokens()
    assert fake_kv.get_secret(name)["value"] == "value"  # helper fetched a new token
    assert len(fake_kv.token_requests) == before + 1
    assert fake_kv.token_requests[-1] == "https://vault.azure.net"
