"""Access to the Go core through a transport chosen per process.

* ``InProcess``: the shared library loaded with cffi (ABI mode), on first use,
  never at import.
* ``Helper``: the ``msa-helper`` executable built from the same Go code,
  started lazily, one per process, answering the same calls over a pipe. It
  is used where the in-process runtime must not or cannot be called: in a
  child forked after the library was loaded (a Go runtime does not survive
  fork: its threads are gone and the first call hangs), and where the library
  fails to load (for example "cannot allocate memory in static TLS block").

Forks are seen by ``os.register_at_fork`` and, for forks made from C, by a
pid check on every call that reaches the core. ``MLFLOW_SECRETS_AUTH_TRANSPORT``
(``auto``, ``inprocess`` or ``helper``) forces a choice, for tests and for
diagnosis.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import threading
from pathlib import Path
from typing import IO, Any, Protocol

ABI_VERSION = 1
LIBRARY_NAME = "libmlflow_secrets_auth.so"
HELPER_NAME = "msa-helper"
LIBRARY_ENV = "MLFLOW_SECRETS_AUTH_LIBRARY"
TRANSPORT_ENV = "MLFLOW_SECRETS_AUTH_TRANSPORT"
# The helper answers within the core's own deadline (MLFLOW_SECRETS_TIMEOUT_SEC,
# at most 300 s); this only guards against a helper that stopped answering.
HELPER_REPLY_TIMEOUT = 330.0

Reply = dict[str, Any]
logger = logging.getLogger("mlflow_secrets_auth")


class NativeError(RuntimeError):
    """The native core could not be reached or answered nonsense."""


class Transport(Protocol):
    def headers(self, host: str) -> Reply: ...
    def set_env(self, env: dict[str, str]) -> Reply: ...
    def info(self) -> Reply: ...
    def doctor(self, url: str) -> Reply: ...
    def invalidate(self) -> None: ...


def library_path() -> Path:
    override = os.environ.get(LIBRARY_ENV)
    return Path(override) if override else Path(__file__).with_name(LIBRARY_NAME)


class InProcess:
    """The Go core loaded into this process."""

    def __init__(self, path: Path) -> None:
        from mlflow_secrets_auth._ffi import ffi  # generated at build time

        try:
            self._lib: Any = ffi.dlopen(str(path))
        except OSError as exc:
            raise NativeError(f"cannot load {path}: {exc}") from exc
        abi = self._lib.MsaAbiVersion()
        if abi != ABI_VERSION:
            raise NativeError(f"{path} has ABI version {abi}, this package needs {ABI_VERSION}")
        self._ffi = ffi

    def _reply(self, ptr: Any) -> Reply:
        if ptr == self._ffi.NULL:
            raise NativeError("the native library returned no reply")
        try:
            raw: bytes = self._ffi.string(ptr)
        finally:
            self._lib.MsaFree(ptr)
        reply: Reply = json.loads(raw)
        return reply

    def headers(self, host: str) -> Reply:
        return self._reply(self._lib.GetAuthHeaders(host.encode()))

    def set_env(self, env: dict[str, str]) -> Reply:
        return self._reply(self._lib.MsaSetEnv(json.dumps(env).encode()))

    def info(self) -> Reply:
        return self._reply(self._lib.MsaInfo())

    def doctor(self, url: str) -> Reply:
        return self._reply(self._lib.MsaDoctor(url.encode()))

    def invalidate(self) -> None:
        self._lib.MsaInvalidate()


class Helper:
    """The core in a helper process of its own, over a pipe (one JSON line each way)."""

    def __init__(self, path: Path) -> None:
        if not os.access(path, os.X_OK):
            raise NativeError(f"the helper {path} is missing or not executable")
        self._path = path
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [str(self._path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        self._proc = proc
        return proc

    def call(self, request: dict[str, Any]) -> Reply:
        line = json.dumps(request).encode() + b"\n"
        with self._lock:
            for attempt in (1, 2):
                proc = self._proc if self._proc is not None and self._proc.poll() is None else self._start()
                stdin, stdout = proc.stdin, proc.stdout
                assert stdin is not None and stdout is not None
                try:
                    stdin.write(line)
                    stdin.flush()
                    raw = _read_line(stdout, HELPER_REPLY_TIMEOUT)
                except (OSError, ValueError):
                    raw = b""
                if raw:
                    reply: Reply = json.loads(raw)
                    return reply
                self._stop()
                if attempt == 2:
                    raise NativeError(f"the helper {self._path} stopped answering")
        raise AssertionError("unreachable")

    def forget(self) -> None:
        """In a forked child: drop the parent's pipes without touching its helper."""
        proc, self._proc = self._proc, None
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()

    def headers(self, host: str) -> Reply:
        return self.call({"op": "headers", "arg": host})

    def set_env(self, env: dict[str, str]) -> Reply:
        return self.call({"op": "set_env", "env": env})

    def info(self) -> Reply:
        return self.call({"op": "info"})

    def doctor(self, url: str) -> Reply:
        return self.call({"op": "doctor", "arg": url})

    def invalidate(self) -> None:
        self.call({"op": "invalidate"})


def _read_line(stream: IO[bytes], timeout: float) -> bytes:
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else b""


_lock = threading.Lock()
_transport: Transport | None = None
_pid = -1  # the process that chose _transport
_runtime_pid = -1  # the process that loaded the Go runtime into this address space, if any
_fork_hook = False


def _after_fork_in_child() -> None:
    global _transport, _lock
    if isinstance(_transport, Helper):
        _transport.forget()  # so the parent's helper still sees EOF when the parent exits
    _transport = None  # choose again; an inherited runtime means the helper
    _lock = threading.Lock()  # the parent may have held it while forking


def transport() -> Transport:
    """The transport for this process, chosen and started on first use."""
    t = _transport
    if t is not None and _pid == os.getpid():
        return t
    with _lock:
        if _transport is None or _pid != os.getpid():
            _choose()
        assert _transport is not None
        return _transport


def _choose() -> None:
    global _transport, _pid, _runtime_pid, _fork_hook
    pid = os.getpid()
    forced = os.environ.get(TRANSPORT_ENV, "auto").strip().lower() or "auto"
    if forced not in ("auto", "inprocess", "helper"):
        raise NativeError(f"{TRANSPORT_ENV}={forced!r} is not one of auto, inprocess, helper")
    helper_path = Path(__file__).with_name(HELPER_NAME)
    if not _fork_hook:
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _fork_hook = True
    if forced == "helper" or (forced == "auto" and _runtime_pid not in (-1, pid)):
        # Forked after the library was loaded: never call the inherited runtime.
        _transport, _pid = Helper(helper_path), pid
        return
    try:
        _transport = InProcess(library_path())
    except NativeError as exc:
        if forced == "inprocess":
            raise
        logger.warning("mlflow-secrets-auth: %s; using the helper process %s instead", exc, helper_path)
        _transport, _pid = Helper(helper_path), pid
        return
    _pid = _runtime_pid = pid
