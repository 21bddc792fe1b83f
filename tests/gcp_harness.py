"""Google Cloud stand-ins for integration tests, on 127.0.0.1 only.

No Secret Manager emulator can be had here (the Go emulator module is refused
by the module proxy; the PyPI ones use POST for ``:access`` and send no CRC),
so ``FakeGoogle`` follows the real REST APIs itself. It runs in daemon threads
of this process, in the style of ``cloud_harness.FakeKeyVault``:

* Secret Manager over HTTPS with a throw-away CA (``ca_pem``):
  ``GET /v1/projects/P/secrets/S/versions/V:access`` and the regional form
  ``/v1/projects/P/locations/L/secrets/S/versions/V:access``; the answer is
  ``{"name", "payload": {"data": base64, "dataCrc32c": "<decimal CRC32C>"}}``.
  Errors in Google's shape (``{"error": {"code", "message", "status"}}``):
  404 NOT_FOUND, 403 PERMISSION_DENIED, 400 FAILED_PRECONDITION for a
  DISABLED or DESTROYED version, 401 UNAUTHENTICATED. Only bearer tokens
  issued by the stand-ins below are accepted, and each is tied to the identity
  it was issued for (``reads`` records who read what).
* A metadata server (plain HTTP, reached through ``GCE_METADATA_HOST``): the
  ``Metadata-Flavor: Google`` header is required; ``/computeMetadata/v1/``
  ``instance/service-accounts/default/token``, ``.../default/email`` and
  ``project/project-id``.
* An OAuth token endpoint (HTTPS, same CA) for service-account keys: it
  verifies the RS256 JWT assertion against the key's public half, its
  ``aud`` (the key's ``token_uri``), ``scope`` and lifetime; it also takes
  ``grant_type=refresh_token`` for ``authorized_user`` files.
* An STS endpoint (HTTPS) that exchanges a subject token from an
  ``external_account`` file (RFC 8693 form, as ``sts.googleapis.com/v1/token``
  takes it), and IAM Credentials' ``generateAccessToken`` for service-account
  impersonation.

Tokens, keys and secret values are kept in attributes; nothing here prints
or logs them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import shutil
import ssl
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cloud_harness import _TLSThreadingHTTPServer
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from harness import _LIVE, LOCALHOST, ManagedServer, make_tls_files

__all__ = ["FakeGoogle", "crc32c"]

SCOPE = "https://www.googleapis.com/auth/cloud-platform"

_Reply = tuple[int, dict[str, str], Any]


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as Secret Manager's ``dataCrc32c``."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))


def _google_error(status: int, code: str, message: str) -> _Reply:
    return status, {}, {"error": {"code": status, "message": message, "status": code}}


class FakeGoogle(ManagedServer):
    """Secret Manager, metadata server, OAuth and STS stand-ins (see module doc).

    Attributes while running: ``sm_url``, ``oauth_url`` (token endpoint),
    ``sts_url``, ``iam_url``, ``metadata_host`` (host:port), ``ca_pem``.
    Test hooks: ``add_version``, ``set_state``, ``allow`` (per-secret IAM),
    ``corrupt_crc``, ``reads`` (identity, resource), ``token_grants``.
    """

    def __init__(
        self,
        metadata_project: str = "meta-project",
        metadata_email: str = "vm-runner@meta-project.iam.gserviceaccount.com",
    ) -> None:
        self.metadata_project = metadata_project
        self.metadata_email = metadata_email
        self._tmp: Path | None = None
        self._servers: list[ThreadingHTTPServer] = []
        self._lock = threading.Lock()
        # (project, location, secret) -> list of versions {"data", "state"}, number = index + 1
        self._secrets: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self._aliases: dict[tuple[str, str, str], dict[str, int]] = {}
        self._allowed: dict[tuple[str, str, str], set[str]] = {}
        self._tokens: dict[str, tuple[str, float]] = {}  # access token -> (identity, expiry)
        self._keys: dict[str, rsa.RSAPublicKey] = {}  # service-account e-mail -> public key
        self._users: dict[str, tuple[str, str]] = {}  # refresh token -> (client id, client secret)
        self._subjects: dict[str, str] = {}  # subject token -> audience
        self.corrupt_crc = False
        self.reads: list[tuple[str, str]] = []
        self.token_grants: list[str] = []
        self.sm_url = self.oauth_url = self.sts_url = self.iam_url = self.metadata_host = ""
        self.ca_pem = Path()

    # -- lifecycle ---------------------------------------------------------- #

    def start(self) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="msa-fakegoogle-"))
        _LIVE[id(self)] = self
        ca, cert, key = make_tls_files(self._tmp / "tls", names=("127.0.0.1", "localhost"))
        self.ca_pem = ca
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(str(cert), str(key))
        sm = _TLSThreadingHTTPServer((LOCALHOST, 0), self._handler(self._serve_sm))
        tokens = _TLSThreadingHTTPServer((LOCALHOST, 0), self._handler(self._serve_tokens))
        sm.tls = tokens.tls = tls
        meta = _TLSThreadingHTTPServer((LOCALHOST, 0), self._handler(self._serve_metadata))
        self._servers = [sm, tokens, meta]
        for srv in self._servers:
            threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
        self.sm_url = f"https://{LOCALHOST}:{sm.server_address[1]}"
        base = f"https://{LOCALHOST}:{tokens.server_address[1]}"
        self.oauth_url, self.sts_url, self.iam_url = f"{base}/token", f"{base}/v1/token", f"{base}/v1"
        self.metadata_host = f"{LOCALHOST}:{meta.server_address[1]}"

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

    # -- secrets ------------------------------------------------------------- #

    def add_version(
        self, project: str, secret: str, data: bytes | str, location: str = "", alias: str | None = None
    ) -> int:
        """Add a version (ENABLED); return its number."""
        raw = data.encode() if isinstance(data, str) else data
        key = (project, location, secret)
        with self._lock:
            versions = self._secrets.setdefault(key, [])
            versions.append({"data": raw, "state": "ENABLED"})
            if alias:
                self._aliases.setdefault(key, {})[alias] = len(versions)
            return len(versions)

    def set_state(self, project: str, secret: str, version: int, state: str, location: str = "") -> None:
        """ENABLED, DISABLED or DESTROYED (which drops the data, as Google does)."""
        with self._lock:
            item = self._secrets[(project, location, secret)][version - 1]
            item["state"] = state
            if state == "DESTROYED":
                item["data"] = b""

    def allow(self, project: str, secret: str, identities: set[str], location: str = "") -> None:
        """Only these identities may read the secret (default: any token of ours)."""
        with self._lock:
            self._allowed[(project, location, secret)] = set(identities)

    # -- credential files ---------------------------------------------------- #

    def service_account_key(self, directory: Path, email: str, project: str) -> Path:
        """Write a service-account key file whose token_uri is our OAuth endpoint."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with self._lock:
            self._keys[email] = key.public_key()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        path = directory / f"sa-{secrets.token_hex(4)}.json"
        path.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": project,
                    "private_key_id": secrets.token_hex(20),
                    "private_key": pem,
                    "client_email": email,
                    "client_id": str(secrets.randbelow(10**20)),
                    "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                    "token_uri": self.oauth_url,
                }
            )
        )
        path.chmod(0o600)
        return path

    def authorized_user(self, path: Path, client_id: str = "msa-test.apps.googleusercontent.com") -> Path:
        """Write an ``authorized_user`` file (as ``gcloud auth application-default login`` does)."""
        refresh, client_secret = secrets.token_urlsafe(24), secrets.token_urlsafe(12)
        with self._lock:
            self._users[refresh] = (client_id, client_secret)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "type": "authorized_user",
                    "client_id": client_id,
                    "client_secret": client_secret,
                    "refresh_token": refresh,
                    "token_uri": self.oauth_url,
                }
            )
        )
        return path

    def external_account(self, directory: Path, audience: str, impersonate: str | None = None) -> tuple[Path, Path]:
        """Write a workload identity federation file with a file-sourced subject
        token; return (config file, subject token file)."""
        subject = f"eyJhbGciOiJSUzI1NiJ9.{secrets.token_urlsafe(24)}.{secrets.token_urlsafe(16)}"
        with self._lock:
            self._subjects[subject] = audience
        token_file = directory / f"subject-{secrets.token_hex(4)}.jwt"
        token_file.write_text(subject)
        conf: dict[str, Any] = {
            "type": "external_account",
            "audience": audience,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": self.sts_url,
            "credential_source": {"file": str(token_file)},
        }
        if impersonate:
            conf["service_account_impersonation_url"] = (
                f"{self.iam_url}/projects/-/serviceAccounts/{impersonate}:generateAccessToken"
            )
        path = directory / f"external-{secrets.token_hex(4)}.json"
        path.write_text(json.dumps(conf))
        return path, token_file

    # -- HTTP plumbing -------------------------------------------------------- #

    def _handler(self, serve: Any) -> type[BaseHTTPRequestHandler]:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # no access log: headers and bodies carry tokens

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = serve(self.command, self.path, self.headers, body)
                if isinstance(payload, str):
                    data, ctype = payload.encode(), "application/text"
                else:
                    data, ctype = json.dumps(payload).encode(), "application/json; charset=UTF-8"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _any

        return Handler

    def _issue(self, identity: str, lifetime: float = 3600.0) -> str:
        token = "ya29." + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (identity, time.time() + lifetime)
            self.token_grants.append(identity)
        return token

    def _identity(self, headers: Any) -> str | None:
        auth = headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            return None
        with self._lock:
            entry = self._tokens.get(auth[len("Bearer ") :])
        return entry[0] if entry and entry[1] > time.time() else None

    # -- metadata server ------------------------------------------------------ #

    def _serve_metadata(self, method: str, raw_path: str, headers: Any, body: bytes) -> _Reply:
        flavor = {"Metadata-Flavor": "Google"}
        if headers.get("Metadata-Flavor") != "Google" or headers.get("X-Forwarded-For"):
            return 403, {}, "Missing Metadata-Flavor:Google header."
        url = urllib.parse.urlsplit(raw_path)
        path = url.path.removeprefix("/computeMetadata/v1")
        if path == "/instance/service-accounts/default/token":
            scopes = urllib.parse.parse_qs(url.query).get("scopes", [SCOPE])[0].split(",")
            if SCOPE not in scopes:
                return 400, flavor, "scope not granted"
            token = self._issue(f"serviceAccount:{self.metadata_email}")
            return 200, flavor, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
        if path == "/instance/service-accounts/default/email":
            return 200, flavor, self.metadata_email
        if path == "/project/project-id":
            return 200, flavor, self.metadata_project
        return 404, flavor, "not found"

    # -- OAuth, STS and IAM Credentials --------------------------------------- #

    def _serve_tokens(self, method: str, raw_path: str, headers: Any, body: bytes) -> _Reply:
        path = urllib.parse.urlsplit(raw_path).path
        if method == "POST" and path == "/token":
            form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
            return self._oauth(form)
        if method == "POST" and path == "/v1/token":
            form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
            return self._sts(form)
        m = re.fullmatch(r"/v1/projects/-/serviceAccounts/([^/:]+):generateAccessToken", path)
        if method == "POST" and m:
            return self._impersonate(urllib.parse.unquote(m.group(1)), headers, body)
        return _google_error(404, "NOT_FOUND", "no such method")

    def _oauth(self, form: dict[str, str]) -> _Reply:
        bad = 400, {}, {"error": "invalid_grant", "error_description": "Invalid grant: account not found"}
        if form.get("grant_type") == "refresh_token":
            with self._lock:
                user = self._users.get(form.get("refresh_token", ""))
            if user is None or user != (form.get("client_id"), form.get("client_secret")):
                return bad
            return (
                200,
                {},
                {
                    "access_token": self._issue(f"user:{user[0]}"),
                    "expires_in": 3599,
                    "token_type": "Bearer",
                    "scope": SCOPE,
                },
            )
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return 400, {}, {"error": "unsupported_grant_type"}
        try:
            head, claims_b64, sig = form.get("assertion", "").encode().split(b".")
            header, claims = json.loads(_b64url(head)), json.loads(_b64url(claims_b64))
            with self._lock:
                key = self._keys.get(str(claims.get("iss")))
            if header.get("alg") != "RS256" or key is None:
                return bad
            key.verify(_b64url(sig), head + b"." + claims_b64, padding.PKCS1v15(), hashes.SHA256())
        except (ValueError, InvalidSignature):
            return 400, {}, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        now = time.time()
        if (
            claims.get("aud") != self.oauth_url
            or SCOPE not in str(claims.get("scope", "")).split()
            or not claims.get("iat", 0) - 300 <= now <= claims.get("exp", 0)
            or claims["exp"] - claims["iat"] > 3600
        ):
            return 400, {}, {"error": "invalid_grant", "error_description": "Invalid JWT: bad audience, scope or time."}
        return (
            200,
            {},
            {
                "access_token": self._issue(f"serviceAccount:{claims['iss']}"),
                "expires_in": 3599,
                "token_type": "Bearer",
            },
        )

    def _sts(self, form: dict[str, str]) -> _Reply:
        with self._lock:
            audience = self._subjects.get(form.get("subject_token", ""))
        if (
            form.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange"
            or form.get("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token"
            or form.get("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt"
            or SCOPE not in form.get("scope", "").split()
        ):
            return (
                400,
                {},
                {"error": "invalid_request", "error_description": "not a token exchange for an access token"},
            )
        if audience is None or audience != form.get("audience"):
            return 400, {}, {"error": "invalid_grant", "error_description": "The audience or subject token is invalid."}
        return (
            200,
            {},
            {
                "access_token": self._issue(f"principal:{audience}"),
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": "Bearer",
                "expires_in": 3600,
            },
        )

    def _impersonate(self, email: str, headers: Any, body: bytes) -> _Reply:
        caller = self._identity(headers)
        if caller is None or not caller.startswith("principal:"):
            return _google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        try:
            scopes = json.loads(body or b"{}").get("scope", [])
        except ValueError:
            scopes = []
        if SCOPE not in scopes:
            return _google_error(400, "INVALID_ARGUMENT", "scope is required")
        expire = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        return 200, {}, {"accessToken": self._issue(f"serviceAccount:{email}"), "expireTime": expire}

    # -- Secret Manager -------------------------------------------------------- #

    def _serve_sm(self, method: str, raw_path: str, headers: Any, body: bytes) -> _Reply:
        path = urllib.parse.unquote(urllib.parse.urlsplit(raw_path).path)
        m = re.fullmatch(r"/v1/projects/([^/]+)/(?:locations/([^/]+)/)?secrets/([^/]+)/versions/([^/]+):access", path)
        if method != "GET" or m is None:
            return _google_error(404, "NOT_FOUND", f"The requested URL {path[:100]} was not found on this server.")
        identity = self._identity(headers)
        if identity is None:
            return _google_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. "
                "Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            )
        project, location, secret, version = m.group(1), m.group(2) or "", m.group(3), m.group(4)
        prefix = f"projects/{project}/" + (f"locations/{location}/" if location else "") + f"secrets/{secret}"
        resource = f"{prefix}/versions/{version}"
        key = (project, location, secret)
        with self._lock:
            allowed = self._allowed.get(key)
            versions = self._secrets.get(key, [])
            number = self._aliases.get(key, {}).get(version)
            if number is None and version == "latest":
                enabled = [i + 1 for i, v in enumerate(versions) if v["state"] == "ENABLED"]
                number = enabled[-1] if enabled else None
            elif number is None and version.isdigit():
                number = int(version)
            self.reads.append((identity, resource))
            if allowed is not None and identity not in allowed:
                return _google_error(
                    403,
                    "PERMISSION_DENIED",
                    f"Permission 'secretmanager.versions.access' denied "
                    f"for resource '{resource}' (or it may not exist).",
                )
            if not versions:
                return _google_error(404, "NOT_FOUND", f"Secret [{prefix}] not found or has no versions.")
            if number is None or not 1 <= number <= len(versions):
                return _google_error(404, "NOT_FOUND", f"Secret Version [{resource}] not found.")
            item = versions[number - 1]
            if item["state"] != "ENABLED":
                return _google_error(
                    400,
                    "FAILED_PRECONDITION",
                    f"Secret Version [{prefix}/versions/{number}] is in {item['state']} state.",
                )
            data = item["data"]
            crc = crc32c(data) ^ (1 if self.corrupt_crc else 0)
        return (
            200,
            {},
            {
                "name": f"{prefix}/versions/{number}",
                "payload": {"data": base64.b64encode(data).decode(), "dataCrc32c": str(crc)},
            },
        )
