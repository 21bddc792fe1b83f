"""Access to the Go core through a transport chosen per process.

* ``InProcess``: the shared library loaded with cffi (ABI mode), on first use,
  never at import.
* ``Helper``: the ``msa-helper`` executable built from the same Go code,
  started lazily, one per process, answering the same calls over a pipe. It
  is used where the in-process runtime must not or cannot be called: in a
  child forked after the library was loaded (a Go runtime does not survive
  fork: its threads are gone and the first call hangs), where no library is
  bundled (musllinux and helper-only macOS wheels), and where the library
  fails to load (for example "cannot allocate memory in static TLS block").

Forks are seen by ``os.register_at_fork`` where it exists and, for forks made
from C, by a pid check on every call that reaches the core.
``MLFLOW_SECRETS_AUTH_TRANSPORT`` (``auto``, ``inprocess`` or ``helper``)
forces a choice, for tests and for diagnosis; ``MLFLOW_SECRETS_AUTH_LIBRARY``
and ``MLFLOW_SECRETS_AUTH_HELPER`` name other files than the bundled ones.

Importing this module does nothing that can fail or start anything.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Protocol

ABI_VERSION = 2
LIBRARY_ENV = "MLFLOW_SECRETS_AUTH_LIBRARY"
HELPER_ENV = "MLFLOW_SECRETS_AUTH_HELPER"
TRANSPORT_ENV = "MLFLOW_SECRETS_AUTH_TRANSPORT"
TIMEOUT_ENV = "MLFLOW_SECRETS_TIMEOUT_SEC"
# A helper call may take the core's own deadline (MLFLOW_SECRETS_TIMEOUT_SEC,
# default 10 s, at most 300 s) plus this; then the helper is killed.
HELPER_GRACE = 2.0

Reply = dict[str, Any]
logger = logging.getLogger("mlflow_secrets_auth")


def library_name(platform: str = sys.platform) -> str:
    if platform == "win32":
        return "mlflow_secrets_auth.dll"
    if platform == "darwin":
        return "libmlflow_secrets_auth.dylib"
    return "libmlflow_secrets_auth.so"


def helper_name(platform: str = sys.platform) -> str:
    return "msa-helper.exe" if platform == "win32" else "msa-helper"


LIBRARY_NAME = library_name()
HELPER_NAME = helper_name()


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


def helper_path() -> Path:
    override = os.environ.get(HELPER_ENV)
    return Path(override) if override else Path(__file__).with_name(HELPER_NAME)


def core_timeout(env: dict[str, str] | os._Environ[str] | None = None) -> float:
    """The core's per-call deadline in seconds, as the core reads it (10 s default, 1..300)."""
    raw = (env if env is not None else os.environ).get(TIMEOUT_ENV, "").strip()
    try:
        value = float(raw) if raw else 10.0
    except ValueError:
        return 10.0
    return min(max(value, 1.0), 300.0) if value == value else 10.0  # NaN: the default


class InProcess:
    """The Go core loaded into this process."""

    def __init__(self, path: Path) -> None:
        try:
            from mlflow_secrets_auth._ffi import ffi  # generated at build time
        except ImportError as exc:
            raise NativeError(f"the cffi module for {path.name} is missing ({exc})") from exc
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


class _Pending:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: Reply | None = None  # None with done set: the helper went away


class _Process:
    """One running helper: its pipes, a reader thread, and the calls waiting on it."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        self.write_lock = threading.Lock()
        self.pending: dict[int, _Pending] = {}
        self.pending_lock = threading.Lock()
        self.alive = True
        reader = threading.Thread(target=self._read, name="mlflow-secrets-auth-helper-reader", daemon=True)
        reader.start()

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            for line in stdout:
                try:
                    message = json.loads(line)
                    waiter_id, reply = int(message["id"]), message["reply"]
                except (ValueError, KeyError, TypeError):
                    continue  # not ours: ignore it, its caller times out
                with self.pending_lock:
                    waiter = self.pending.pop(waiter_id, None)
                if waiter is not None and isinstance(reply, dict):
                    waiter.reply = reply
                    waiter.done.set()
        except (OSError, ValueError):
            pass
        self._fail_all()

    def _fail_all(self) -> None:
        with self.pending_lock:
            self.alive = False
            waiters, self.pending = list(self.pending.values()), {}
        for waiter in waiters:
            waiter.done.set()

    def send(self, call_id: int, line: bytes) -> _Pending:
        waiter = _Pending()
        with self.pending_lock:
            if not self.alive:
                waiter.done.set()
                return waiter
            self.pending[call_id] = waiter
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            with self.write_lock:
                stdin.write(line)
                stdin.flush()
        except (OSError, ValueError):
            with self.pending_lock:
                self.pending.pop(call_id, None)
            waiter.done.set()
        return waiter

    def forget(self, call_id: int) -> None:
        with self.pending_lock:
            self.pending.pop(call_id, None)

    def kill(self) -> None:
        self._fail_all()
        try:
            self.proc.kill()
            self.proc.wait()
        except OSError:
            pass
        self.drop()

    def drop(self) -> None:
        """In a forked child: close the inherited pipe ends, leave the parent's helper alone."""
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


class Helper:
    """The core in a helper process of its own, over a pipe.

    One JSON request per line, ``{"id": n, "op": ...}``, and one reply per line,
    ``{"id": n, "reply": {...}}``; replies may come in any order, so several
    threads wait on one helper at once. A call that gets no answer within its
    deadline (the core's own timeout plus ``HELPER_GRACE``) kills the helper;
    the next call starts a new one and first hands it the last environment.
    """

    def __init__(self, path: Path, argv: list[str] | None = None) -> None:
        if argv is None and not os.access(path, os.X_OK):
            raise NativeError(f"the helper {path} is missing or not executable")
        self._path = path
        self._argv = argv or [str(path)]
        self._lock = threading.Lock()  # starting and stopping
        self._proc: _Process | None = None
        self._ids = itertools.count(1)
        self._env: dict[str, str] | None = None  # the state a restarted helper is given
        self.starts = 0

    def _running(self) -> _Process:
        with self._lock:
            proc = self._proc
            if proc is not None and proc.alive and proc.proc.poll() is None:
                return proc
            self._proc = None
            if proc is not None:
                proc.kill()
            try:
                proc = _Process(self._argv)
            except OSError as exc:
                raise NativeError(f"cannot start the helper {self._path}: {exc}") from exc
            self.starts += 1
            if self._env is not None:
                # Before any other call reaches it (they wait on this lock).
                call_id = next(self._ids)
                line = json.dumps({"id": call_id, "op": "set_env", "env": self._env}).encode() + b"\n"
                waiter = proc.send(call_id, line)
                if not waiter.done.wait(HELPER_GRACE + 3.0) or not (waiter.reply or {}).get("ok"):
                    proc.kill()
                    raise NativeError(f"the restarted helper {self._path} did not take the environment")
            self._proc = proc
            return proc

    def _exchange(self, proc: _Process, request: dict[str, Any], deadline: float) -> Reply | None:
        call_id = next(self._ids)
        line = json.dumps({"id": call_id, **request}).encode() + b"\n"
        waiter = proc.send(call_id, line)
        if not waiter.done.wait(deadline):
            proc.forget(call_id)
            self._kill(proc)
            raise NativeError(
                f"the helper {self._path} did not answer within {deadline:.1f} s; it was stopped and is restarted"
                " on the next call"
            )
        return waiter.reply

    def _kill(self, proc: _Process) -> None:
        with self._lock:
            if self._proc is proc:
                self._proc = None
        proc.kill()

    def call(self, request: dict[str, Any], deadline: float | None = None) -> Reply:
        if deadline is None:
            deadline = core_timeout(self._env) + HELPER_GRACE
        for attempt in (1, 2):
            proc = self._running()
            reply = self._exchange(proc, request, deadline)
            if reply is not None:
                return reply
            self._kill(proc)  # it exited (EOF): start a new one and ask once more
            if attempt == 2:
                break
        raise NativeError(f"the helper {self._path} stopped answering")

    def forget(self) -> None:
        """In a forked child: drop the parent's pipes without touching its helper."""
        proc, self._proc = self._proc, None
        self._lock = threading.Lock()
        if proc is not None:
            proc.drop()

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()

    def headers(self, host: str) -> Reply:
        return self.call({"op": "headers", "arg": host})

    def set_env(self, env: dict[str, str]) -> Reply:
        reply = self.call({"op": "set_env", "env": env}, HELPER_GRACE + 3.0)
        if reply.get("ok"):
            self._env = dict(env)
        return reply

    def info(self) -> Reply:
        return self.call({"op": "info"})

    def doctor(self, url: str) -> Reply:
        # Every provider is checked in turn, each within the core's deadline.
        return self.call({"op": "doctor", "arg": url}, 4 * core_timeout(self._env) + HELPER_GRACE)

    def invalidate(self) -> None:
        self.call({"op": "invalidate"})


_lock = threading.Lock()
_transport: Transport | None = None
_pid = -1  # the process that chose _transport
_runtime_pid = -1  # the process that loaded the Go runtime into this address space, if any
_fork_hook = False
_notes: list[str] = []  # why this transport was chosen, for `info`


def _after_fork_in_child() -> None:
    global _transport, _lock
    if isinstance(_transport, Helper):
        _transport.forget()  # so the parent's helper still sees EOF when the parent exits
    _transport = None  # choose again; an inherited runtime means the helper
    _lock = threading.Lock()  # the parent may have held it while forking


def at_fork(child: Callable[[], None]) -> None:
    """Run child() in forked children, where the platform has fork hooks."""
    register = getattr(os, "register_at_fork", None)
    if register is not None:
        register(after_in_child=child)


def transport() -> Transport:
    """The transport for this process, chosen and started on first use."""
    t = _transport
    if t is not None and _pid == os.getpid():
        return t
    with _lock:
        if _transport is None or _pid != os.getpid():
            try:
                _choose()
            except NativeError:
                raise
            except Exception as exc:  # anything else is as fatal, and must say so
                raise NativeError(f"cannot start the native core: {exc.__class__.__name__}: {exc}") from exc
        assert _transport is not None
        return _transport


def transport_notes() -> list[str]:
    """Why the current transport was chosen (shown once by `info`)."""
    return list(_notes)


def _choose() -> None:
    global _transport, _pid, _runtime_pid, _fork_hook
    pid = os.getpid()
    forced = os.environ.get(TRANSPORT_ENV, "auto").strip().lower() or "auto"
    if forced not in ("auto", "inprocess", "helper"):
        raise NativeError(f"{TRANSPORT_ENV}={forced!r} is not one of auto, inprocess, helper")
    if not _fork_hook:
        at_fork(_after_fork_in_child)
        _fork_hook = True
    _notes.clear()
    lib = library_path()
    if forced == "helper" or (forced == "auto" and _runtime_pid not in (-1, pid)):
        # Forked after the library was loaded: never call the inherited runtime.
        _notes.append(f"transport: helper process ({'forced by ' + TRANSPORT_ENV if forced == 'helper' else 'forked'})")
        _transport, _pid = Helper(helper_path()), pid
        return
    if forced == "auto" and LIBRARY_ENV not in os.environ and not lib.exists():
        # A helper-only wheel (musllinux, or macOS without a dylib): not a fault.
        _notes.append(f"transport: helper process (no {LIBRARY_NAME} in this build)")
        _transport, _pid = Helper(helper_path()), pid
        return
    try:
        _transport = InProcess(lib)
    except NativeError as exc:
        if forced == "inprocess":
            raise
        logger.warning("mlflow-secrets-auth: %s; using the helper process %s instead", exc, helper_path())
        _notes.append(f"transport: helper process ({exc})")
        _transport, _pid = Helper(helper_path()), pid
        return
    _notes.append("transport: in-process library")
    _pid = _runtime_pid = pid

