"""Cloud-provider emulators for integration tests, on 127.0.0.1 only.

Plain Python (no pytest), in the style of ``harness.py``: every server is a
context manager that runs in its own process group or in daemon threads, keeps
its files in a private temporary directory and removes it on exit.

* ``MotoServer``: AWS Secrets Manager (``moto_server`` from the venv), with an
  optional switch that makes moto check IAM credentials (``enable_iam_auth``).
* ``FakeKeyVault``: a small Key Vault look-alike written here (HTTPS with a
  throw-away CA, challenge-based bearer auth, an App Service style managed
  identity endpoint, secret versions, the Key Vault REST API's error shapes).
  Lowkey Vault, the emulator we would rather use, cannot be had on this
  workplace: Maven Central's mirror here answers 404 for every version of
  com.github.nagyesta.lowkey-vault:lowkey-vault-app (checked 2026-11-27).

Secrets (secret values, access keys, bearer tokens) are kept in attributes and
return values; nothing here prints or logs them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import requests

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from harness import (  # noqa: E402  (needs the sys.path entry above)
    _LIVE,
    LOCALHOST,
    HarnessError,
    ManagedServer,
    free_port,
    make_tls_files,
    venv_executable,
)

__all__ = [
    "AccessKey",
    "FakeKeyVault",
    "KeyVaultError",
    "MotoServer",
]


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


# --------------------------------------------------------------------------- #
# AWS Secrets Manager: moto
# --------------------------------------------------------------------------- #


class AccessKey(NamedTuple):
    """An IAM access key created in moto (``secret_access_key`` is a secret)."""

    user: str
    access_key_id: str
    secret_access_key: str


_ALLOW_ALL_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


class MotoServer(ManagedServer):
    """``moto_server -H 127.0.0.1 -p <free port>`` with Secrets Manager helpers.

    Attributes while running: ``url``, ``port``, ``region`` (us-east-1),
    ``account_id`` (moto's default 123456789012) and the credentials that
    ``client()`` uses by default: ``access_key_id``/``secret_access_key``, the
    dummies ``testing``/``testing`` until ``enable_iam_auth()`` replaces them
    with a real admin key.

    Moto does not check credentials at all by default: any key id, any secret
    and even a bad signature are accepted. ``enable_iam_auth()`` (or
    ``iam_auth=True``) turns on moto's IAM checks (``POST /moto-api/reset-auth``,
    the run-time form of ``INITIAL_NO_AUTH_ACTION_COUNT``): from then on only
    access keys created in moto's IAM work, signatures are verified and IAM
    policies are applied. Failures are HTTP 403 with an XML body (code
    ``InvalidClientTokenId``, ``SignatureDoesNotMatch`` or ``AccessDenied``)
    and no ``X-Amzn-ErrorType`` header, even for JSON-protocol services.
    """

    ADMIN_USER = "msa-admin"

    def __init__(
        self,
        iam_auth: bool = False,
        region: str = "us-east-1",
        startup_timeout: float = 30.0,
    ) -> None:
        self._want_iam_auth = iam_auth
        self.region = region
        self._startup_timeout = startup_timeout
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.url = ""
        self.account_id = "123456789012"
        self.access_key_id = "testing"
        self.secret_access_key = "testing"
        self.iam_auth = False
        self.log_path: Path | None = None
        self.startup_seconds = 0.0

    # -- lifecycle ---------------------------------------------------------- #

    def start(self) -> None:
        if self.running:
            return
        self._tmp = Path(tempfile.mkdtemp(prefix="msa-moto-"))
        _LIVE[id(self)] = self
        self.port = free_port()
        self.url = f"http://{LOCALHOST}:{self.port}"
        self.log_path = self._tmp / "moto.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)  # auth is switched at run time
        env["PYTHONUNBUFFERED"] = "1"
        started = time.monotonic()
        moto_server = venv_executable("moto_server", "pip install 'moto[server]'")
        self._spawn([moto_server, "-H", LOCALHOST, "-p", str(self.port)], env)
        self._wait_http_ok(f"{self.url}/moto-api/", started + self._startup_timeout, "moto_server", 0.05)
        self.startup_seconds = time.monotonic() - started
        if self._want_iam_auth:
            self.enable_iam_auth()

    # -- moto control API --------------------------------------------------- #

    def _moto_api(self, path: str, data: str | None = None) -> dict[str, Any]:
        r = requests.post(f"{self.url}/moto-api/{path}", data=data, timeout=10)
        if r.status_code != 200:
            raise HarnessError(f"moto POST /moto-api/{path}: HTTP {r.status_code}: {r.text[:300]}")
        body: dict[str, Any] = r.json()
        return body

    def reset(self) -> None:
        """Drop all moto state (``POST /moto-api/reset``).

        That also deletes the IAM users and keys, so IAM auth is switched off
        first and, if it was on (or ``iam_auth=True`` was given), switched on
        again with a new admin key (``access_key_id`` changes).
        """
        had_auth = self.iam_auth or self._want_iam_auth
        self.disable_iam_auth()
        self._moto_api("reset")
        if had_auth:
            self.enable_iam_auth()

    def enable_iam_auth(self) -> AccessKey:
        """Make moto check credentials from now on; return the new admin key.

        Creates IAM user ``msa-admin`` with an allow-all inline policy and an
        access key, makes ``client()`` use it by default, then sets moto's
        no-auth action budget to 0. Any other key id then gets 403
        ``InvalidClientTokenId``; a right id with a wrong secret gets 403
        ``SignatureDoesNotMatch``; a key whose policies do not allow the
        action gets 403 ``AccessDenied``.
        """
        if self.iam_auth:
            self.disable_iam_auth()
        admin = self.create_access_key(self.ADMIN_USER, policy=_ALLOW_ALL_POLICY)
        self.access_key_id, self.secret_access_key = admin.access_key_id, admin.secret_access_key
        self._moto_api("reset-auth", "0")
        self.iam_auth = True
        return admin

    def disable_iam_auth(self) -> None:
        """Accept any credentials again; ``client()`` goes back to ``testing``."""
        self._moto_api("reset-auth", "inf")
        self.iam_auth = False
        self.access_key_id = self.secret_access_key = "testing"

    def create_access_key(
        self,
        user: str,
        actions: list[str] | tuple[str, ...] = ("secretsmanager:GetSecretValue",),
        resources: list[str] | tuple[str, ...] = ("*",),
        policy: dict[str, Any] | None = None,
    ) -> AccessKey:
        """Create IAM ``user`` (if missing) with an inline policy allowing
        ``actions`` on ``resources`` (or the given ``policy``) and a new access
        key. Only meaningful once IAM auth is on; works either way."""
        iam = self.client("iam")
        with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
            iam.create_user(UserName=user)
        doc = policy or {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": list(resources)}],
        }
        iam.put_user_policy(UserName=user, PolicyName="msa-test", PolicyDocument=json.dumps(doc))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        return AccessKey(user, key["AccessKeyId"], key["SecretAccessKey"])

    # -- clients ------------------------------------------------------------ #

    def client(
        self,
        service: str = "secretsmanager",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> Any:
        """A boto3 client for ``service`` pointed at this server (region
        ``us-east-1``; default credentials as described in the class doc)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            service,
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=access_key_id if access_key_id is not None else self.access_key_id,
            aws_secret_access_key=secret_access_key if secret_access_key is not None else self.secret_access_key,
            config=Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=5, read_timeout=30),
        )

    def env(self, access_key: AccessKey | None = None) -> dict[str, str]:
        """Environment for an AWS SDK child process (Go SDK v2, boto3, CLI)
        that should talk to this server. Contains credentials: do not log it."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": self.url,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": access_key.access_key_id if access_key else self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": access_key.secret_access_key if access_key else self.secret_access_key,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    # -- Secrets Manager helpers --------------------------------------------- #

    @staticmethod
    def _value_kwargs(string: str | None, binary: bytes | None) -> dict[str, Any]:
        if (string is None) == (binary is None):
            raise ValueError("give exactly one of string= or binary=")
        return {"SecretString": string} if string is not None else {"SecretBinary": binary}

    def create_secret(self, name: str, string: str | None = None, binary: bytes | None = None, **kwargs: Any) -> str:
        """CreateSecret; returns the ARN (``...:secret:<name>-<6 random chars>``)."""
        resp = self.client().create_secret(Name=name, **self._value_kwargs(string, binary), **kwargs)
        return str(resp["ARN"])

    def put_secret_value(
        self,
        name: str,
        string: str | None = None,
        binary: bytes | None = None,
        stages: list[str] | None = None,
    ) -> str:
        """PutSecretValue; returns the new VersionId.

        Without ``stages`` the new version becomes AWSCURRENT and the previous
        AWSCURRENT version becomes AWSPREVIOUS (as in AWS). With e.g.
        ``stages=["AWSPENDING"]`` the current version is left alone.
        """
        kwargs = self._value_kwargs(string, binary)
        if stages is not None:
            kwargs["VersionStages"] = list(stages)
        resp = self.client().put_secret_value(SecretId=name, **kwargs)
        return str(resp["VersionId"])

    def update_stage(
        self,
        name: str,
        stage: str,
        move_to_version: str | None,
        remove_from_version: str | None = None,
    ) -> None:
        """UpdateSecretVersionStage. For AWSCURRENT, ``remove_from_version``
        defaults to the version that has it now (AWS requires it).

        Moto 5.2 quirk: moving AWSCURRENT this way updates the labels but not
        moto's internal default version, so GetSecretValue *without*
        VersionStage/VersionId keeps returning the old value; with
        ``VersionStage="AWSCURRENT"`` it returns the new one. Prefer
        ``put_secret_value`` for rotations that a client reads by name only.
        """
        if stage == "AWSCURRENT" and remove_from_version is None:
            remove_from_version = self.version_with_stage(name, "AWSCURRENT")
        kwargs: dict[str, Any] = {"SecretId": name, "VersionStage": stage}
        if move_to_version is not None:
            kwargs["MoveToVersionId"] = move_to_version
        if remove_from_version is not None:
            kwargs["RemoveFromVersionId"] = remove_from_version
        self.client().update_secret_version_stage(**kwargs)

    def stages(self, name: str) -> dict[str, list[str]]:
        """``{version_id: [stages]}`` from DescribeSecret (versions with no
        stage left are included with an empty list)."""
        resp = self.client().describe_secret(SecretId=name)
        return {k: list(v) for k, v in resp.get("VersionIdsToStages", {}).items()}

    def version_with_stage(self, name: str, stage: str) -> str | None:
        for version, labels in self.stages(name).items():
            if stage in labels:
                return version
        return None

    def get_secret_value(self, secret_id: str, **kwargs: Any) -> dict[str, Any]:
        """GetSecretValue by name, full ARN or partial ARN (no random suffix)."""
        resp: dict[str, Any] = self.client().get_secret_value(SecretId=secret_id, **kwargs)
        return resp

    def delete_secret(self, name: str, force: bool = True) -> None:
        self.client().delete_secret(SecretId=name, ForceDeleteWithoutRecovery=force)


# --------------------------------------------------------------------------- #
# Azure Key Vault: shared REST helpers
# --------------------------------------------------------------------------- #


class KeyVaultError(HarnessError):
    """A Key Vault REST call answered with an unexpected status."""

    def __init__(self, method: str, path: str, status: int, code: str, message: str) -> None:
        super().__init__(f"Key Vault {method} {path}: HTTP {status} {code}: {message}")
        self.status = status
        self.code = code


def _epoch(value: _dt.datetime | float | int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return int(value.timestamp())
    return int(value)


def _parse_challenge(header: str) -> dict[str, str]:
    """``Bearer a="x", b="y"`` -> ``{"a": "x", "b": "y"}``."""
    header = re.sub(r"^\s*Bearer\s+", "", header, flags=re.IGNORECASE)
    return {m.group(1): m.group(2) for m in re.finditer(r'([\w-]+)="([^"]*)"', header)}


class _KeyVaultClientMixin:
    """Key Vault REST helpers on top of ``vault_url``, ``ca_pem`` and the
    managed-identity endpoint ``identity_url``/``identity_header``."""

    api_version = "7.4"
    vault_url: str
    ca_pem: Path
    identity_url: str
    identity_header: str

    _token: str | None = None
    _token_resource: str | None = None

    def identity_env(self) -> dict[str, str]:
        """Env vars that make Azure SDK ``ManagedIdentityCredential`` (and so
        ``DefaultAzureCredential``) use this emulator's token endpoint, in the
        App Service form (GET ``IDENTITY_ENDPOINT``?api-version=2019-08-01&
        resource=..., header ``X-IDENTITY-HEADER``). Add ``SSL_CERT_FILE`` or a
        custom CA (``ca_pem``) for the vault's HTTPS."""
        return {"IDENTITY_ENDPOINT": self.identity_url, "IDENTITY_HEADER": self.identity_header}

    def challenge(self) -> dict[str, str]:
        """Send an unauthenticated request; return the parsed 401
        ``WWW-Authenticate`` bearer challenge (``resource``, ...)."""
        r = requests.get(
            f"{self.vault_url}/secrets",
            params={"api-version": self.api_version},
            verify=str(self.ca_pem),
            timeout=10,
        )
        if r.status_code != 401 or "WWW-Authenticate" not in r.headers:
            raise HarnessError(f"expected a 401 bearer challenge from {self.vault_url}, got HTTP {r.status_code}")
        return _parse_challenge(r.headers["WWW-Authenticate"])

    def fetch_token(self, resource: str) -> dict[str, Any]:
        """GET the managed-identity endpoint as an App Service client would;
        return its JSON (``access_token`` is a secret)."""
        r = requests.get(
            self.identity_url,
            params={"api-version": "2019-08-01", "resource": resource},
            headers={"X-IDENTITY-HEADER": self.identity_header},
            timeout=10,
        )
        if r.status_code != 200:
            raise HarnessError(f"token endpoint: HTTP {r.status_code}: {r.text[:200]}")
        body: dict[str, Any] = r.json()
        return body

    def access_token(self) -> str:
        """A bearer token obtained the way the Azure SDK does: challenge first,
        then the identity endpoint for the challenge's resource. Cached."""
        if self._token is None:
            params = self.challenge()
            resource = params.get("resource") or params.get("scope", "")
            resource = resource.removesuffix("/.default")
            self._token = str(self.fetch_token(resource)["access_token"])
            self._token_resource = resource
        return self._token

    def kv_request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        expect: tuple[int, ...] = (200,),
        api_version: str | None = None,
    ) -> dict[str, Any]:
        """Call ``<vault_url>/<path>`` with a bearer token; return the JSON."""
        r = requests.request(
            method,
            f"{self.vault_url}/{path.lstrip('/')}",
            params={"api-version": api_version or self.api_version},
            headers={"Authorization": f"Bearer {self.access_token()}"},
            json=body,
            verify=str(self.ca_pem),
            timeout=15,
        )
        if r.status_code not in expect:
            code, message = "", r.text[:300]
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                err = r.json()["error"]
                code, message = str(err.get("code", "")), str(err.get("message", ""))
                inner = err.get("innererror") or {}
                if inner.get("code"):
                    code = f"{code}/{inner['code']}"
            raise KeyVaultError(method, path, r.status_code, code, message)
        if not r.content:
            return {}
        out: dict[str, Any] = r.json()
        return out

    @staticmethod
    def _attributes(enabled: bool | None, expires: Any, not_before: Any) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        if enabled is not None:
            attrs["enabled"] = bool(enabled)
        if expires is not None:
            attrs["exp"] = _epoch(expires)
        if not_before is not None:
            attrs["nbf"] = _epoch(not_before)
        return attrs

    @staticmethod
    def version_of(bundle: dict[str, Any]) -> str:
        """The version part of a secret bundle's ``id``."""
        return str(bundle["id"]).rstrip("/").rsplit("/", 1)[-1]

    def set_secret(
        self,
        name: str,
        value: str,
        enabled: bool = True,
        expires: _dt.datetime | float | None = None,
        not_before: _dt.datetime | float | None = None,
        content_type: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> str:
        """PUT /secrets/<name>: a new version; returns its version id."""
        body: dict[str, Any] = {"value": value, "attributes": self._attributes(enabled, expires, not_before)}
        if content_type is not None:
            body["contentType"] = content_type
        if tags is not None:
            body["tags"] = tags
        return self.version_of(self.kv_request("PUT", f"secrets/{name}", body))

    def update_secret(
        self,
        name: str,
        version: str,
        enabled: bool | None = None,
        expires: _dt.datetime | float | None = None,
        not_before: _dt.datetime | float | None = None,
    ) -> dict[str, Any]:
        """PATCH /secrets/<name>/<version> (attributes only); returns the bundle."""
        body = {"attributes": self._attributes(enabled, expires, not_before)}
        return self.kv_request("PATCH", f"secrets/{name}/{version}", body)

    def get_secret(self, name: str, version: str | None = None) -> dict[str, Any]:
        """GET /secrets/<name>[/<version>]; the bundle (``value``, ``id``,
        ``attributes``...). Raises ``KeyVaultError`` (``.status``, ``.code``)."""
        path = f"secrets/{name}/{version}" if version else f"secrets/{name}"
        return self.kv_request("GET", path)

    def delete_secret(self, name: str) -> dict[str, Any]:
        return self.kv_request("DELETE", f"secrets/{name}")


# --------------------------------------------------------------------------- #
# FakeKeyVault: a Key Vault look-alike in this process
# --------------------------------------------------------------------------- #


class _TLSThreadingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the per-connection thread.
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                return
        super().finish_request(request, client_address)


class FakeKeyVault(_KeyVaultClientMixin, ManagedServer):
    """An Azure Key Vault look-alike for the secrets API, on 127.0.0.1.

    Same interface as ``LowkeyVault`` (``vault_url``, ``ca_pem``,
    ``identity_url``, ``identity_env()``, ``set_secret``, ``update_secret``,
    ``get_secret``) and modelled on the real service:

    * HTTPS with a certificate for ``127.0.0.1``/``localhost`` signed by a
      throw-away CA (``ca_pem``).
    * Challenge auth: a request without a valid token gets 401 with
      ``WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>",
      resource="https://vault.azure.net"`` (``challenge_resource``). Only
      tokens issued by its own identity endpoint for that resource are accepted.
    * Managed identity, App Service form: ``GET identity_url?api-version=..&resource=..``
      with header ``X-IDENTITY-HEADER: <identity_header>`` (else 401) returns
      ``access_token``, ``expires_on`` (epoch seconds as a string),
      ``resource``, ``token_type``.
    * Secrets: PUT ``/secrets/{name}``, GET ``/secrets/{name}[/{version}]``
      (a trailing ``/`` with an empty version means latest, as azsecrets
      sends it), PATCH ``/secrets/{name}/{version}``, GET
      ``/secrets/{name}/versions``, DELETE ``/secrets/{name}``. Versions are
      32 hex chars. Reading a disabled version gives 403 ``Forbidden`` with
      innererror ``SecretDisabled``; a missing one 404 ``SecretNotFound``.
      Like Key Vault, GET still returns expired or not-yet-valid secrets.
      Any ``api-version`` is accepted (see ``api_versions_seen``).

    Test hooks: ``requests_log`` (method, path, api-version, status),
    ``token_requests``, ``fail_next(n, status)`` and ``revoke_tokens()``.
    """

    def __init__(
        self,
        challenge_resource: str = "https://vault.azure.net",
        tenant_id: str = "00000000-0000-0000-0000-000000000000",
        token_lifetime: float = 3600.0,
    ) -> None:
        self.challenge_resource = challenge_resource.rstrip("/")
        self.tenant_id = tenant_id
        self.token_lifetime = token_lifetime
        self._tmp: Path | None = None
        self._servers: list[ThreadingHTTPServer] = []
        self._lock = threading.Lock()
        self._secrets: dict[str, list[dict[str, Any]]] = {}
        self._tokens: dict[str, tuple[str, float]] = {}
        self._failures: list[tuple[int, str | None]] = []
        self.requests_log: list[tuple[str, str, str, int]] = []
        self.token_requests: list[str] = []
        self.port = 0
        self.identity_port = 0
        self.vault_url = ""
        self.identity_url = ""
        self.identity_header = ""
        self.ca_pem = Path()
        self._token = None

    @property
    def api_versions_seen(self) -> set[str]:
        return {entry[2] for entry in self.requests_log}

    def start(self) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="msa-fakekv-"))
        _LIVE[id(self)] = self
        ca, cert, key = make_tls_files(self._tmp / "tls", names=("127.0.0.1", "localhost"))
        self.ca_pem = ca
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(str(cert), str(key))
        self.identity_header = secrets.token_urlsafe(16)

        vault = _TLSThreadingHTTPServer((LOCALHOST, 0), self._handler(self._serve_vault))
        vault.tls = tls
        ident = _TLSThreadingHTTPServer((LOCALHOST, 0), self._handler(self._serve_identity))
        self._servers = [vault, ident]
        for srv in self._servers:
            threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
        self.port = vault.server_address[1]
        self.identity_port = ident.server_address[1]
        self.vault_url = f"https://{LOCALHOST}:{self.port}"
        self.identity_url = f"http://{LOCALHOST}:{self.identity_port}/metadata/identity/oauth2/token"

    def close(self) -> None:
        for srv in self._servers:
            with contextlib.suppress(Exception):
                srv.shutdown()
            with contextlib.suppress(Exception):
                srv.server_close()
        self._servers = []
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        _LIVE.pop(id(self), None)

    # -- test hooks ----------------------------------------------------------- #

    def fail_next(self, count: int = 1, status: int = 500, retry_after: str | None = None) -> None:
        """Make the next ``count`` authorised vault requests fail with ``status``."""
        with self._lock:
            self._failures += [(status, retry_after)] * count

    def revoke_tokens(self) -> None:
        """Invalidate every token issued so far (vault answers 401 to them)."""
        with self._lock:
            self._tokens.clear()
        self._token = None

    # -- HTTP plumbing --------------------------------------------------------- #

    def _handler(self, serve: Any) -> type[BaseHTTPRequestHandler]:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # no access log: URLs and headers may carry secrets

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = serve(self.command, self.path, self.headers, body)
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                if payload is not None:
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if data and self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_PATCH = do_POST = do_DELETE = do_HEAD = _any

        return Handler

    @staticmethod
    def _error(status: int, code: str, message: str, inner: str | None = None) -> tuple[int, dict[str, str], Any]:
        err: dict[str, Any] = {"code": code, "message": message}
        if inner:
            err["innererror"] = {"code": inner}
        return status, {}, {"error": err}

    def _serve_identity(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], Any]:
        url = urllib.parse.urlsplit(raw_path)
        query = urllib.parse.parse_qs(url.query)
        if method != "GET" or url.path.rstrip("/") != "/metadata/identity/oauth2/token":
            return 404, {}, {"error": "not_found"}
        if headers.get("X-IDENTITY-HEADER") != self.identity_header:
            return 401, {}, {"error": "invalid_request", "error_description": "missing or wrong X-IDENTITY-HEADER"}
        resource = (query.get("resource") or [""])[0]
        if not resource:
            return 400, {}, {"error": "invalid_request", "error_description": "resource is required"}
        resource = resource.removesuffix("/.default").rstrip("/")
        token = secrets.token_urlsafe(32)
        expires = time.time() + self.token_lifetime
        with self._lock:
            self._tokens[token] = (resource, expires)
            self.token_requests.append(resource)
        return (
            200,
            {},
            {
                "access_token": token,
                "expires_on": str(int(expires)),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": "11111111-1111-1111-1111-111111111111",
            },
        )

    def _challenge_header(self) -> dict[str, str]:
        return {
            "WWW-Authenticate": (
                f'Bearer authorization="https://login.microsoftonline.com/{self.tenant_id}", '
                f'resource="{self.challenge_resource}"'
            )
        }

    def _authorised(self, headers: Any) -> bool:
        auth = headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            return False
        with self._lock:
            entry = self._tokens.get(auth[len("Bearer ") :])
        return entry is not None and entry[0] == self.challenge_resource and entry[1] > time.time()

    def _bundle(self, name: str, item: dict[str, Any], with_value: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": f"{self.vault_url}/secrets/{name}/{item['version']}",
            "attributes": dict(item["attributes"]),
        }
        if with_value:
            out["value"] = item["value"]
        if item.get("contentType") is not None:
            out["contentType"] = item["contentType"]
        if item.get("tags"):
            out["tags"] = dict(item["tags"])
        return out

    def _serve_vault(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], Any]:
        url = urllib.parse.urlsplit(raw_path)
        api_version = (urllib.parse.parse_qs(url.query).get("api-version") or [""])[0]
        result = self._vault_result(method, url.path, headers, body, api_version)
        with self._lock:
            self.requests_log.append((method, url.path, api_version, result[0]))
        return result

    def _vault_result(
        self, method: str, path: str, headers: Any, body: bytes, api_version: str
    ) -> tuple[int, dict[str, str], Any]:
        if not self._authorised(headers):
            status, _, payload = self._error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
            return status, self._challenge_header(), payload
        if not api_version:
            return self._error(400, "BadParameter", "The api-version query parameter is required.")
        with self._lock:
            if self._failures:
                status, retry_after = self._failures.pop(0)
                extra = {"Retry-After": retry_after} if retry_after else {}
                return status, extra, {"error": {"code": "InjectedFailure", "message": f"injected HTTP {status}"}}
        parts = path.split("/")  # "", "secrets", name, [version]
        if len(parts) < 3 or parts[1] != "secrets" or not re.fullmatch(r"[0-9A-Za-z-]{1,127}", parts[2]):
            return self._error(404, "NotFound", f"no such path {path}")
        name = parts[2]
        version = parts[3] if len(parts) > 3 else ""
        if len(parts) > 4:
            return self._error(404, "NotFound", f"no such path {path}")
        try:
            request = json.loads(body) if body else {}
        except ValueError:
            return self._error(400, "BadParameter", "invalid JSON body")
        with self._lock:
            return self._secrets_op(method, name, version, request)

    def _secrets_op(
        self, method: str, name: str, version: str, request: dict[str, Any]
    ) -> tuple[int, dict[str, str], Any]:
        key = name.lower()  # Key Vault names are case-insensitive
        versions = self._secrets.get(key, [])
        not_found = self._error(
            404,
            "SecretNotFound",
            f"A secret with (name/id) {name}{'/' + version if version else ''} was not found in this key vault.",
        )
        if method == "PUT" and not version:
            if not isinstance(request.get("value"), str):
                return self._error(400, "BadParameter", "Property 'value' is required.")
            now = int(time.time())
            attrs = {"enabled": True, "created": now, "updated": now, "recoveryLevel": "Recoverable+Purgeable"}
            attrs.update({k: v for k, v in (request.get("attributes") or {}).items() if k in ("enabled", "exp", "nbf")})
            item = {
                "version": uuid.uuid4().hex,
                "value": request["value"],
                "attributes": attrs,
                "contentType": request.get("contentType"),
                "tags": request.get("tags") or {},
            }
            self._secrets.setdefault(key, []).append(item)
            return 200, {}, self._bundle(name, item)
        if not versions:
            return not_found
        if method == "DELETE" and not version:
            del self._secrets[key]
            latest = versions[-1]
            return (
                200,
                {},
                {
                    **self._bundle(name, latest, with_value=False),
                    "recoveryId": f"{self.vault_url}/deletedsecrets/{name}",
                },
            )
        if method == "GET" and version == "versions":
            items = [
                {"id": f"{self.vault_url}/secrets/{name}/{v['version']}", "attributes": dict(v["attributes"])}
                for v in versions
            ]
            return 200, {}, {"value": items, "nextLink": None}
        if version:
            item = next((v for v in versions if v["version"] == version.lower()), None)
            if item is None:
                return not_found
        else:
            item = versions[-1]
        if method == "GET":
            if not item["attributes"].get("enabled", True):
                return self._error(
                    403, "Forbidden", "Operation get is not allowed on a disabled secret.", "SecretDisabled"
                )
            return 200, {}, self._bundle(name, item)
        if method == "PATCH" and version:
            attrs = request.get("attributes") or {}
            item["attributes"].update({k: v for k, v in attrs.items() if k in ("enabled", "exp", "nbf")})
            item["attributes"]["updated"] = int(time.time())
            if "contentType" in request:
                item["contentType"] = request["contentType"]
            if "tags" in request:
                item["tags"] = request["tags"] or {}
            return 200, {}, self._bundle(name, item, with_value=False)
        return self._error(405, "MethodNotAllowed", f"{method} is not supported here")
