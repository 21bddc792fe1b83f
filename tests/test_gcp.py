"""Google Secret Manager through the plugin in this process: the Go core's one
REST call and Google's own ADC library against the stand-ins of
``gcp_harness.FakeGoogle`` (Secret Manager over HTTPS, metadata server, OAuth
token endpoint, STS), for every Application Default Credentials source."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import gcp_harness
import harness
import pytest
from conftest import apply, search_url, send
from mlflow_secrets_auth.provider import MlflowSecretsAuthError

TRACKING = "https://mlflow.test:5000"
PROJECT = "msa-project"
# Google's own variables, which conftest's use_env does not clear.
GOOGLE_PREFIXES = ("GOOGLE_", "GCE_", "CLOUDSDK_")


@pytest.fixture(scope="session")
def google() -> Iterator[gcp_harness.FakeGoogle]:
    with gcp_harness.FakeGoogle() as server:
        yield server


@pytest.fixture()
def gcp_env(use_env, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """use_env, also clearing Google's variables (the machine's own never leak in)."""
    for key in list(os.environ):
        if key.startswith(GOOGLE_PREFIXES):
            monkeypatch.delenv(key)
    return use_env


def auth_header(url: str = TRACKING) -> str | None:
    return apply(url).headers.get("Authorization")


def error_of(url: str = TRACKING) -> MlflowSecretsAuthError:
    with pytest.raises(MlflowSecretsAuthError) as err:
        apply(url)
    return err.value


def wait_for_header(expected: str, timeout: float = 15.0) -> None:
    """Poll until ``expected`` is the header sent; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(MlflowSecretsAuthError):
            if auth_header() == expected:
                return
        assert time.monotonic() < deadline, f"no {expected!r} after {timeout:.0f}s"
        time.sleep(0.05)


def secret_id() -> str:
    return f"mlflow-{secrets.token_hex(5)}"


def base_env(google: gcp_harness.FakeGoogle, secret: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The plugin on Google Secret Manager at the stand-in; no credentials yet.
    CLOUDSDK_CONFIG is an empty folder, so no gcloud file of this machine is found."""
    (tmp_path / "gcloud").mkdir(exist_ok=True)
    return {
        "MLFLOW_TRACKING_URI": TRACKING,
        "MLFLOW_SECRETS_AUTH_ENABLE": "gcp-secret-manager",
        "MLFLOW_GCP_SECRET_NAME": secret,
        "MLFLOW_GCP_SECRETMANAGER_ENDPOINT": google.sm_url,
        "MLFLOW_GCP_CA_BUNDLE": str(google.ca_pem),
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        **extra,
    }


def last_reader(google: gcp_harness.FakeGoogle) -> str:
    return google.reads[-1][0]


def test_metadata_server(gcp_env, google: gcp_harness.FakeGoogle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """GCE / GKE Workload Identity / Cloud Run: the metadata server gives the
    token and the project."""
    secret = secret_id()
    google.add_version(google.metadata_project, secret, json.dumps({"token": "meta-token"}))
    gcp_env(base_env(google, secret, tmp_path, GCE_METADATA_HOST=google.metadata_host))
    assert auth_header() == "Bearer meta-token"
    assert google.reads[-1] == (
        f"serviceAccount:{google.metadata_email}",
        f"projects/{google.metadata_project}/secrets/{secret}/versions/latest",
    )


def test_service_account_key_and_versions(gcp_env, google: gcp_harness.FakeGoogle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A key file: its RS256 assertion goes to its token_uri; its project is used."""
    email = f"reader-{secrets.token_hex(3)}@{PROJECT}.iam.gserviceaccount.com"
    key = google.service_account_key(tmp_path, email, PROJECT)
    secret = secret_id()
    google.add_version(PROJECT, secret, json.dumps({"username": "alice", "password": "one"}), alias="blue")
    google.add_version(PROJECT, secret, json.dumps({"username": "alice", "password": "two"}))
    gcp_env(base_env(google, secret, tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(key), MLFLOW_GCP_AUTH_MODE="basic"))
    assert auth_header() == "Basic " + base64.b64encode(b"alice:two").decode()
    assert last_reader(google) == f"serviceAccount:{email}"
    for version, password in (("1", "one"), ("blue", "one"), ("2", "two"), ("latest", "two")):
        os.environ["MLFLOW_GCP_SECRET_VERSION"] = version
        assert auth_header() == "Basic " + base64.b64encode(f"alice:{password}".encode()).decode(), version
    # The full resource name with its version.
    os.environ.pop("MLFLOW_GCP_SECRET_VERSION")
    os.environ["MLFLOW_GCP_SECRET_NAME"] = f"projects/{PROJECT}/secrets/{secret}/versions/1"
    assert auth_header() == "Basic " + base64.b64encode(b"alice:one").decode()


@pytest.mark.parametrize("impersonate", [False, True])
def test_external_account(gcp_env, google: gcp_harness.FakeGoogle, tmp_path: Path, impersonate: bool) -> None:  # type: ignore[no-untyped-def]
    """Workload identity federation: a file-sourced subject token exchanged at
    STS, optionally for a service account's token (impersonation)."""
    audience = f"//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/p/providers/{secret_id()}"
    email = f"fed-{secrets.token_hex(3)}@{PROJECT}.iam.gserviceaccount.com"
    conf, _ = google.external_account(tmp_path, audience, impersonate=email if impersonate else None)
    secret = secret_id()
    google.add_version(PROJECT, secret, "federated-token")
    gcp_env(base_env(google, secret, tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(conf), MLFLOW_GCP_PROJECT=PROJECT))
    assert auth_header() == "Bearer federated-token"
    assert last_reader(google) == (f"serviceAccount:{email}" if impersonate else f"principal:{audience}")


def test_external_account_subject_token_refused(gcp_env, google: gcp_harness.FakeGoogle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    conf, token_file = google.external_account(tmp_path, "//iam.googleapis.com/projects/123/x")
    token_file.write_text("eyJ.not-a-token-STS-knows.sig")
    secret = secret_id()
    google.add_version(PROJECT, secret, "tok")
    gcp_env(base_env(google, secret, tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(conf), GOOGLE_CLOUD_PROJECT=PROJECT))
    err = error_of()
    assert (err.code, err.variable) == ("backend", "GOOGLE_APPLICATION_CREDENTIALS")
    assert "external account (audience //iam.googleapis.com/projects/123/x)" in str(err)
    assert "not-a-token-STS-knows" not in str(err)


def test_gcloud_file_authorized_user(gcp_env, google: gcp_harness.FakeGoogle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """gcloud's well-known file (in CLOUDSDK_CONFIG) with user credentials."""
    env = base_env(google, secret_id(), tmp_path, MLFLOW_GCP_PROJECT=PROJECT)
    client_id = f"{secrets.token_hex(4)}.apps.googleusercontent.com"
    google.authorized_user(Path(env["CLOUDSDK_CONFIG"]) / "application_default_credentials.json", client_id)
    google.add_version(PROJECT, env["MLFLOW_GCP_SECRET_NAME"], "user-token")
    gcp_env(env)
    assert auth_header() == "Bearer user-token"
    assert last_reader(google) == f"user:{client_id}"


def test_regional_secret(gcp_env, google: gcp_harness.FakeGoogle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    secret = secret_id()
    google.add_version(PROJECT, secret, "regional-token", location="europe-west4")
    google.add_version(PROJECT, secret, "global-token")
    name = f"projects/{PROJECT}/locations/europe-west4/secrets/{secret}"
    gcp_env(base_env(google, name, tmp_path, GCE_METADATA_HOST=google.metadata_host))
    assert auth_header() == "Bearer regional-token"
    assert google.reads[-1][1] == f"{name}/versions/latest"


def test_errors_as_the_user_sees_them(gcp_env, google: gcp_harness.FakeGoogle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    secret = secret_id()
    gcp_env(base_env(google, secret, tmp_path, GCE_METADATA_HOST=google.metadata_host, MLFLOW_GCP_PROJECT=PROJECT))
    err = error_of()
    assert (err.code, err.variable) == ("backend", "MLFLOW_GCP_SECRET_NAME")
    assert f"secret projects/{PROJECT}/secrets/{secret}/versions/latest not found" in str(err)

    google.add_version(PROJECT, secret, "v1")
    google.add_version(PROJECT, secret, "v2")
    google.set_state(PROJECT, secret, 1, "DISABLED")
    google.set_state(PROJECT, secret, 2, "DESTROYED")
    os.environ["MLFLOW_GCP_SECRET_VERSION"] = "1"
    err = error_of()
    assert (err.code, err.variable) == ("secret_unusable", "MLFLOW_GCP_SECRET_VERSION")
    assert "versions/1 is disabled" in str(err)
    os.environ["MLFLOW_GCP_SECRET_VERSION"] = "2"
    err = error_of()
    assert (err.code, err.variable) == ("secret_unusable", "MLFLOW_GCP_SECRET_VERSION")
    assert "versions/2 is destroyed" in str(err)

    denied = secret_id()
    google.add_version(PROJECT, denied, "guarded")
    google.allow(PROJECT, denied, {"serviceAccount:someone-else@x.iam.gserviceaccount.com"})
    os.environ.pop("MLFLOW_GCP_SECRET_VERSION")
    os.environ["MLFLOW_GCP_SECRET_NAME"] = denied
    err = error_of()
    assert err.code == "backend"
    assert f"access denied to secret projects/{PROJECT}/secrets/{denied}/versions/latest" in str(err)
    assert f"metadata server default account ({google.metadata_email})" in str(err)
    assert "ya29." not in str(err)


def test_crc_mismatch_is_never_a_credential(gcp_env, google: gcp_harness.FakeGoogle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    secret = secret_id()
    google.add_version(PROJECT, secret, "crc-token")
    gcp_env(base_env(google, secret, tmp_path, GCE_METADATA_HOST=google.metadata_host, MLFLOW_GCP_PROJECT=PROJECT))
    google.corrupt_crc = True
    try:
        err = error_of()
    finally:
        google.corrupt_crc = False
    assert err.code == "backend"
    assert "CRC32C" in str(err)
    assert "crc-token" not in str(err)
    wait_for_header("Bearer crc-token")  # the same secret, once the checksum matches (the core retries it)


def test_trust_and_no_credentials(gcp_env, google: gcp_harness.FakeGoogle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    secret = secret_id()
    google.add_version(PROJECT, secret, "tok")
    env = base_env(google, secret, tmp_path, GCE_METADATA_HOST=google.metadata_host, MLFLOW_GCP_PROJECT=PROJECT)
    del env["MLFLOW_GCP_CA_BUNDLE"]
    gcp_env(env)  # the stand-in's CA is not trusted: verification fails, never skipped
    assert "certificate" in str(error_of())
    os.environ["MLFLOW_GCP_CA_BUNDLE"] = str(google.ca_pem)
    assert auth_header() == "Bearer tok"
    # A key file that does not exist: named, with its variable.
    os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = str(tmp_path / "missing.json")
    err = error_of()
    assert (err.code, err.variable) == ("not_configured", "GOOGLE_APPLICATION_CREDENTIALS")


def test_basic_auth_against_real_mlflow(  # type: ignore[no-untyped-def]
    gcp_env, google: gcp_harness.FakeGoogle, mlflow_server: harness.MlflowServer, tmp_path: Path
) -> None:
    """The MLflow server (basic auth) accepts what Secret Manager holds, and refuses a wrong password."""
    user, password = mlflow_server.basic_auth
    secret = secret_id()
    google.add_version(PROJECT, secret, json.dumps({"username": user, "password": password}))
    env = base_env(
        google,
        secret,
        tmp_path,
        GCE_METADATA_HOST=google.metadata_host,
        MLFLOW_GCP_PROJECT=PROJECT,
        MLFLOW_GCP_AUTH_MODE="basic",
        MLFLOW_TRACKING_AUTH="mlflow_secrets_auth",
    )
    env["MLFLOW_TRACKING_URI"] = mlflow_server.url
    gcp_env(env)
    assert send(search_url(mlflow_server.url)).status_code == 200
    wrong = secret_id()
    google.add_version(PROJECT, wrong, json.dumps({"username": user, "password": "not-the-password"}))
    os.environ["MLFLOW_GCP_SECRET_NAME"] = wrong
    assert send(search_url(mlflow_server.url)).status_code == 401
