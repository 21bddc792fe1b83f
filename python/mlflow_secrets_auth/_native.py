"""Access to the Go core through a transport chosen per process.

* ``InProcess``: the shared library loaded with cffi (ABI mode), on first use
  (or just before it: ``preload``), never at import.
* ``Helper``: the ``msa-helper`` executable built from the same Go code,
  started lazily, one per process, answering the same calls over a pipe. It
  is used where the in-process runtime must not or cannot be called: in a
  child forked after the library was loaded (a Go runtime does not survive
  fork: its threads are gone and the first call hangs), where no library is
  bundled (musllinux and helper-only macOS wheels), and where the library
  fails to load (for example "cannot allocate memory in static TLS block").

A child forked from a process whose core is in-process first asks its
parent: before each ``os.fork`` such a process makes a socket pair and serves
one end with its own core (``MsaShare``); the child speaks the helper
protocol on the other end, so a parent and its forked workers share one
cache, one login and one refresh schedule, and no worker starts a helper.
The parent serves the child only while both hand the core the same
environment; when it refuses (``not_shared``), or the parent is gone, the
child starts a helper of its own.

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
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Protocol

ABI_VERSION = 2
LIBRARY_ENV = "MLFLOW_SECRETS_AUTH_LIBRARY"
HELPER_ENV = "MLFLOW_SECRETS_AUTH_HELPER"
TRANSPORT_ENV = "MLFLOW_SECRETS_AUTH_TRANSPORT"
# The helper's per-call budget until its first set_env reply names the real one
# ("timeout_ms", which the core derives from MLFLOW_SECRETS_TIMEOUT_SEC).
DEFAULT_TIMEOUT_MS = 10_000
# A helper call is waited for its budget plus this; then its reply is abandoned.
HELPER_GRACE = 2.0
# A helper that let a call expire must answer a ping within this before it is used again.
PING_WAIT = 2.0
# set_env (also replayed to a restarted helper) does not wait on any backend.
SET_ENV_WAIT = 5.0
# The parent's core (MsaShare) refuses a child whose environment is not its own.
NOT_SHARED = "not_shared"

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
    def headers(self, target: str, proxy: str = "", reject: str = "") -> Reply: ...
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


def _headers_request(target: str, proxy: str, reject: str) -> dict[str, Any]:
    request: dict[str, Any] = {"target": target}
    if proxy:
        request["proxy"] = proxy
    if reject:
        request["reject"] = reject
    return request


class InProcess:
    """The Go core loaded into this process."""

    def __init__(self, lib: Any, ffi: Any) -> None:
        self._lib = lib
        self._ffi = ffi
        self._madvise: Callable[[Any, int, int], int] | None = None
        self._dontneed = 0

    @classmethod
    def load(cls, path: Path) -> InProcess:
        try:
            from mlflow_secrets_auth._ffi import ffi  # generated at build time
        except ImportError as exc:
            raise NativeError(f"the cffi module for {path.name} is missing ({exc})") from exc
        try:
            lib: Any = _take_preloaded() or ffi.dlopen(str(path))
        except OSError as exc:
            raise NativeError(f"cannot load {path}: {exc}") from exc
        abi = lib.MsaAbiVersion()
        if abi != ABI_VERSION:
            raise NativeError(f"{path} has ABI version {abi}, this package needs {ABI_VERSION}")
        core = cls(lib, ffi)
        core._release_by_caller()
        return core

    def _release_by_caller(self) -> None:
        """Drop the library's read-only pages after a fetch here, once the
        call has returned, rather than in the library, where the code of the
        way back maps some of them again (MsaReleaseByCaller)."""
        if not sys.platform.startswith("linux"):
            return
        try:
            import mmap

            madvise = self._ffi.dlopen(None).madvise
            self._dontneed = mmap.MADV_DONTNEED
            if self._lib.MsaReleaseByCaller(1) == 1:
                self._madvise = madvise
        except (AttributeError, OSError, self._ffi.error):  # an older library, or no C library: it releases them
            pass

    def _reply(self, ptr: Any) -> Reply:
        if ptr == self._ffi.NULL:
            raise NativeError("the native library returned no reply")
        try:
            raw: bytes = self._ffi.string(ptr)
        finally:
            self._lib.MsaFree(ptr)
        reply: Reply = json.loads(raw)
        release = reply.pop("release", None)
        if release and self._madvise is not None:
            for start, length in release:
                self._madvise(self._ffi.cast("void *", start), length, self._dontneed)
        return reply

    def headers(self, target: str, proxy: str = "", reject: str = "") -> Reply:
        if not proxy and not reject:  # the common case: no JSON to build
            return self._reply(self._lib.GetAuthHeaders(target.encode()))
        return self._reply(self._lib.MsaHeaders(json.dumps(_headers_request(target, proxy, reject)).encode()))

    def set_env(self, env: dict[str, str]) -> Reply:
        return self._reply(self._lib.MsaSetEnv(json.dumps(env).encode()))

    def info(self) -> Reply:
        return self._reply(self._lib.MsaInfo())

    def doctor(self, url: str) -> Reply:
        return self._reply(self._lib.MsaDoctor(url.encode()))

    def invalidate(self) -> None:
        self._lib.MsaInvalidate()

    def share(self, fd: int) -> bool:
        """Serve this core on ``fd``, one end of a socket pair (MsaShare); False if it cannot."""
        try:
            return bool(self._lib.MsaShare(fd) == 0)
        except (AttributeError, self._ffi.error):  # a library from before MsaShare (MLFLOW_SECRETS_AUTH_LIBRARY)
            return False


class _Pending:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: Reply | None = None  # None with done set: the pipe broke


class _Process:
    """One running helper: its pipes, a reader thread, and the calls waiting on it.

    The pipes are raw file descriptors, not Python file objects: a forked child
    must close its copies without taking any lock, and a buffered stream's lock
    may be held by this process's reader thread at the moment of the fork.
    The reader thread owns the read end and closes it when the helper's output
    ends; the write end is closed under ``write_lock`` (or, in a forked child,
    where no writer thread exists, without it).
    """

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, sock: int = -1) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        if sock >= 0:  # the parent's core, over the socket made at the fork (MsaShare)
            self._rfd, self._wfd = sock, os.dup(sock)
        else:
            child_in, self._wfd = os.pipe()  # both ends close-on-exec (PEP 446)
            self._rfd, child_out = os.pipe()
            try:
                self.proc = subprocess.Popen(
                    argv, stdin=child_in, stdout=child_out, stderr=subprocess.DEVNULL, close_fds=True, env=env
                )
            except BaseException:
                os.close(self._wfd)
                os.close(self._rfd)
                raise
            finally:
                os.close(child_in)
                os.close(child_out)
        self.shared = sock >= 0
        self.write_lock = threading.Lock()
        self.pending: dict[int, _Pending] = {}
        self.pending_lock = threading.Lock()
        self.alive = True  # False once its output ended or it was killed
        self.suspect = False  # a call expired: ping it before the next call uses it
        reader = threading.Thread(target=self._read, name="mlflow-secrets-auth-helper-reader", daemon=True)
        reader.start()

    def _read(self) -> None:
        fd, rest = self._rfd, b""
        try:
            while chunk := os.read(fd, 65536):
                *lines, rest = (rest + chunk).split(b"\n")
                for line in lines:
                    self._deliver(line)
        except OSError:
            pass
        finally:
            os.close(fd)
            self._fail_all()

    def _deliver(self, line: bytes) -> None:
        try:
            message = json.loads(line)
            waiter_id, reply = int(message["id"]), message["reply"]
        except (ValueError, KeyError, TypeError):
            return  # not ours: ignore it, its caller times out
        with self.pending_lock:
            waiter = self.pending.pop(waiter_id, None)
        if waiter is not None and isinstance(reply, dict):
            waiter.reply = reply
            waiter.done.set()

    def _fail_all(self) -> None:
        with self.pending_lock:
            self.alive = False
            waiters, self.pending = list(self.pending.values()), {}
        for waiter in waiters:
            waiter.done.set()

    def send(self, call_id: int, request: dict[str, Any]) -> _Pending:
        line = json.dumps({"id": call_id, **request}).encode() + b"\n"
        waiter = _Pending()
        with self.pending_lock:
            if not self.alive:
                waiter.done.set()
                return waiter
            self.pending[call_id] = waiter
        try:
            with self.write_lock:
                if self._wfd < 0:
                    raise OSError("the helper's input is closed")
                view = memoryview(line)
                while view:
                    view = view[os.write(self._wfd, view) :]
        except OSError:  # EPIPE: the helper is gone
            self.forget(call_id)
            waiter.done.set()
        return waiter

    def forget(self, call_id: int) -> bool:
        """Stop waiting for a reply; False if the reply (or the pipe's end) already took the waiter."""
        with self.pending_lock:
            return self.pending.pop(call_id, None) is not None

    def running(self) -> bool:
        return self.alive and (self.proc is None or self.proc.poll() is None)

    def kill(self) -> None:
        self._fail_all()
        if self.proc is not None:
            try:
                self.proc.kill()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        with self.write_lock:
            fd, self._wfd = self._wfd, -1
        if fd >= 0:
            if self.shared:  # ends the reader's read too: the parent sees this connection close
                try:
                    with socket.socket(fileno=os.dup(fd)) as sock:
                        sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            os.close(fd)
        # The read end is the reader thread's: it sees the end of the output and closes it.

    def drop_in_child(self) -> None:
        """In a forked child: close the inherited pipe ends, leave the parent's helper alone.

        Takes no lock and touches no Python stream: the threads of the parent
        (which may have held them at the fork) do not exist here."""
        fds, self._wfd, self._rfd = (self._wfd, self._rfd), -1, -1
        self.alive = False
        for fd in fds:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass


def _timeout_ms(reply: Reply) -> int:
    value = reply.get("timeout_ms")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return DEFAULT_TIMEOUT_MS


class Helper:
    """The core in a helper process of its own, over a pipe.

    One JSON request per line, ``{"id": n, "op": ...}``, and one reply per line,
    ``{"id": n, "reply": {...}}``; replies may come in any order, so several
    threads wait on one helper at once.

    Time: a headers call carries ``deadline_ms``, the budget the core gave in
    its last set_env reply (``timeout_ms``; ``DEFAULT_TIMEOUT_MS`` before any),
    and is waited for that plus ``grace``. A call that gets no answer by then
    is abandoned (NativeError) but the helper is kept: it may only be busy
    with slow backends, and a restart would lose its cache, back-off and
    logins. Before the next call uses it, it must answer a ping within
    ``ping_wait``. It is killed and restarted only when it fails that ping or
    its pipe breaks (it exited, EOF, EPIPE); the new one first gets the last
    environment, and a call that met a broken pipe is asked once more.

    Environment: the AWS and Azure SDKs read the helper's own process
    environment, which the core never writes. So a helper is started with
    the last environment it was handed as its process environment, and when
    a set_env reply names variables that its SDKs would read with another
    value (``process_env``), it is replaced by one started with the new
    environment.

    ``shared``: a socket to the parent's core (made at the fork, served by
    its ``MsaShare``), used first in place of a helper process. The first time
    the parent refuses a call (``not_shared``: another environment) or the
    connection breaks, it is closed for good and a helper is started.
    """

    def __init__(
        self,
        path: Path,
        argv: list[str] | None = None,
        grace: float = HELPER_GRACE,
        ping_wait: float = PING_WAIT,
        env: dict[str, str] | None = None,
        shared: int = -1,
        parent: int = -1,
    ) -> None:
        if argv is None and not os.access(path, os.X_OK):
            raise NativeError(f"the helper {path} is missing or not executable")
        self._path = path
        self._argv = argv or [str(path)]
        self._grace = grace
        self._ping_wait = ping_wait
        self._lock = threading.Lock()  # starting, pinging and stopping
        self._proc: _Process | None = None
        self._ids = itertools.count(1)
        self._env = env  # the environment a (re)started helper runs in and is given
        self._timeout_ms = DEFAULT_TIMEOUT_MS
        self._shared = shared
        self._parent = parent  # the pid whose core the shared socket reaches
        self.starts = 0
        self.note = "the parent process's core (forked)" if shared >= 0 else ""

    def _running(self) -> _Process:
        with self._lock:
            proc = self._proc
            if proc is not None and proc.shared and os.getppid() != self._parent:
                # The parent is gone (a sibling may hold its end of our socket open, so no EOF came).
                self._proc = None
                self._unshare(proc, "it exited")
                proc = None
            if proc is not None and proc.running():
                if not proc.suspect or self._answers_ping(proc):
                    return proc
            self._proc = None
            if proc is not None:
                proc.kill()
            shared, self._shared = self._shared, -1
            if shared >= 0 and os.getppid() != self._parent:
                _close_quietly(shared)
                self.note = "helper process (forked; the parent process had exited)"
            elif shared >= 0:
                proc = _Process([], sock=shared)
                if self._env is None or self._replay(proc):
                    self._proc = proc
                    return proc
                self._unshare(proc, "it serves another environment")
            try:
                proc = _Process(self._argv, self._env)
            except OSError as exc:
                raise NativeError(f"cannot start the helper {self._path}: {exc}") from exc
            self.starts += 1
            # Before any other call reaches it (they wait on this lock).
            if self._env is not None and not self._replay(proc):
                proc.kill()
                raise NativeError(f"the restarted helper {self._path} did not take the environment")
            self._proc = proc
            return proc

    def _replay(self, proc: _Process) -> bool:
        """Hand a new helper (or the parent's core) the last environment."""
        waiter = proc.send(next(self._ids), {"op": "set_env", "env": self._env})
        if not waiter.done.wait(SET_ENV_WAIT) or not (waiter.reply or {}).get("ok"):
            return False
        self._timeout_ms = _timeout_ms(waiter.reply or {})
        return True

    def _unshare(self, proc: _Process, why: str) -> None:
        proc.kill()
        self.note = f"helper process (forked; the parent process's core refused: {why})"
        logger.debug("mlflow-secrets-auth: the parent process's core refused (%s); starting a helper", why)

    def _answers_ping(self, proc: _Process) -> bool:
        call_id = next(self._ids)
        waiter = proc.send(call_id, {"op": "ping"})
        if waiter.done.wait(self._ping_wait) and (waiter.reply or {}).get("ok"):
            proc.suspect = False
            return True
        proc.forget(call_id)
        return False

    def _exchange(self, proc: _Process, request: dict[str, Any], wait: float) -> Reply | None:
        call_id = next(self._ids)
        waiter = proc.send(call_id, request)
        if waiter.done.wait(wait):
            return waiter.reply
        if not proc.forget(call_id):  # answered (or the pipe ended) just now: take that
            waiter.done.wait(SET_ENV_WAIT)  # set right after the waiter was taken
            return waiter.reply
        proc.suspect = True
        raise NativeError(
            f"the helper {self._path} did not answer {request.get('op')} within {wait:.1f} s (the core's budget of"
            f" {self._timeout_ms / 1000:g} s from MLFLOW_SECRETS_TIMEOUT_SEC, plus {self._grace:g} s); the call was"
            " abandoned"
        )

    def _kill(self, proc: _Process) -> None:
        with self._lock:
            if self._proc is proc:
                self._proc = None
        proc.kill()

    def call(self, request: dict[str, Any], wait: float | None = None) -> Reply:
        """Send one request and wait for its reply (``wait`` seconds; by default the budget plus the grace)."""
        if wait is None:
            wait = self._timeout_ms / 1000 + self._grace
        broken = 0
        while broken < 2:
            proc = self._running()
            reply = self._exchange(proc, request, wait)
            if reply is not None and proc.shared and reply.get("code") == NOT_SHARED:
                with self._lock:
                    if self._proc is proc:
                        self._proc = None
                self._unshare(proc, "the environments differ")
                continue  # ask a helper of our own (once: the parent's socket is closed for good)
            if reply is not None:
                return reply
            self._kill(proc)  # its pipe broke: start a new one and ask once more
            broken += 1
        raise NativeError(f"the helper {self._path} stopped answering (it exited twice during one call)")

    def forget(self) -> None:
        """In a forked child: drop the parent's pipes without touching its helper or any lock."""
        proc, self._proc = self._proc, None
        self._lock = threading.Lock()  # the parent's may have been held at the fork: never acquire it
        if proc is not None:
            proc.drop_in_child()
        shared, self._shared = self._shared, -1
        if shared >= 0:
            _close_quietly(shared)

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()

    def headers(self, target: str, proxy: str = "", reject: str = "") -> Reply:
        request: dict[str, Any] = {"op": "headers", "arg": target, "deadline_ms": self._timeout_ms}
        if proxy:
            request["proxy"] = proxy
        if reject:
            request["reject"] = reject
        return self.call(request)

    def set_env(self, env: dict[str, str]) -> Reply:
        reply = self.call({"op": "set_env", "env": env}, SET_ENV_WAIT)
        if reply.get("ok"):
            self._env = dict(env)
            self._timeout_ms = _timeout_ms(reply)
            if reply.get("process_env"):
                # Its SDKs read an older process environment: start one in this environment.
                with self._lock:
                    proc, self._proc = self._proc, None
                if proc is not None:
                    proc.kill()
                reply = self.call({"op": "set_env", "env": env}, SET_ENV_WAIT)
        return reply

    def info(self) -> Reply:
        return self.call({"op": "info"})

    def doctor(self, url: str) -> Reply:
        # Every provider is checked in turn, each within the core's budget.
        return self.call({"op": "doctor", "arg": url}, 4 * self._timeout_ms / 1000 + self._grace)

    def invalidate(self) -> None:
        self.call({"op": "invalidate"})


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


_lock = threading.Lock()
_transport: Transport | None = None
_pid = -1  # the process that chose _transport
_runtime_pid = -1  # the process that loaded the Go runtime into this address space, if any
_fork_hook = False
_preloaded: tuple[int, Any] | None = None  # (pid, library) opened by preload, not yet used
_notes: list[str] = []  # why this transport was chosen, for `info`
_forking = threading.local()  # .pair: (parent end, child end) of the socket pair made for the fork in progress
_parent_fd = -1  # in a forked child: its socket to the parent's core, until a transport takes it


def _after_fork_in_child() -> None:
    """Runs in a forked child: take no lock and close no Python stream here, since
    a thread of the parent may have held them at the fork and it does not exist
    in the child to release them."""
    global _transport, _lock, _parent_fd
    if isinstance(_transport, Helper):
        _transport.forget()  # so the parent's helper still sees EOF when the parent exits
    _transport = None  # choose again; an inherited runtime means the parent's core or a helper
    _lock = threading.Lock()  # a new one: the parent's may have been held while forking
    inherited, (ours, theirs) = _parent_fd, getattr(_forking, "pair", (-1, -1))
    _forking.pair = (-1, -1)
    _parent_fd = theirs
    for fd in (inherited, ours):  # our parent's socket to its own parent; our parent's end
        if fd >= 0:
            _close_quietly(fd)


def _before_fork() -> None:
    """Runs in a process about to fork: when its core is in-process, make a
    socket pair for the child. The parent's end is handed to the core after
    the fork, so that the child never holds a copy of it and sees the
    connection close when the parent exits."""
    _forking.pair = (-1, -1)
    if not isinstance(_transport, InProcess) or _pid != os.getpid():
        return
    try:
        ours, theirs = socket.socketpair()
    except OSError:
        return  # the child starts a helper, as without sharing
    _forking.pair = (ours.detach(), theirs.detach())


def _after_fork_in_parent() -> None:
    (ours, theirs), _forking.pair = getattr(_forking, "pair", (-1, -1)), (-1, -1)
    if ours < 0:
        return
    t = _transport
    try:
        if isinstance(t, InProcess):
            t.share(ours)  # serves its own duplicate; if it cannot, the child sees EOF and starts a helper
    finally:
        _close_quietly(ours)
        _close_quietly(theirs)  # the child's end: the core sees EOF when the child closes it


def at_fork(child: Callable[[], None]) -> None:
    """Run child() in forked children, where the platform has fork hooks."""
    register = getattr(os, "register_at_fork", None)
    if register is not None:
        register(after_in_child=child)


def _share_at_fork() -> None:
    register = getattr(os, "register_at_fork", None)
    if register is not None:
        register(before=_before_fork, after_in_parent=_after_fork_in_parent)


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


def in_helper(env: dict[str, str], names: list[str]) -> Transport:
    """Move this process's core to a helper started with ``env``, because the
    library's SDKs read the environment the process started with, where
    ``names`` have other values (the core never writes it). Returns the
    transport to use."""
    global _transport
    if os.environ.get(TRANSPORT_ENV, "").strip().lower() == "inprocess":
        return transport()  # kept, as asked: the core's error names the variables
    with _lock:
        if isinstance(_transport, InProcess) and _pid == os.getpid():
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            _notes.append(f"transport: helper process ({shown} changed after the library loaded)")
            logger.info(
                "mlflow-secrets-auth: %s changed after the library loaded, and the cloud SDKs read the environment"
                " the process started with; using the helper process %s, started with the current environment",
                shown,
                helper_path(),
            )
            _transport = Helper(helper_path(), env=dict(env))
    return transport()


def transport_notes() -> list[str]:
    """Why the current transport was chosen (shown once by `info`)."""
    t = _transport
    if isinstance(t, Helper) and t.note:
        return [f"transport: {t.note}"]
    return list(_notes)


def preload() -> None:
    """Open the library ahead of its first use, where that use would load it
    into this process. The Go runtime and its package initialisers start on a
    thread of their own while dlopen returns, so the Python work between now
    and the first call into the library (preparing the request, copying the
    environment) runs beside them instead of before them. Anything unusual
    (another transport, a fork after a load, a file that does not load) is
    left to the first use, which reports it."""
    global _preloaded, _runtime_pid
    pid = os.getpid()
    forced = os.environ.get(TRANSPORT_ENV, "auto").strip().lower() or "auto"
    if _transport is not None or _preloaded is not None or _runtime_pid not in (-1, pid) or forced == "helper":
        return
    path = library_path()
    with _lock:
        if _transport is not None or _preloaded is not None or _runtime_pid not in (-1, pid):
            return
        try:
            from mlflow_secrets_auth._ffi import ffi

            lib = ffi.dlopen(str(path))
        except (ImportError, OSError):
            return
        # The runtime is in this address space from here on: a child forked now must not call it.
        _preloaded, _runtime_pid = (pid, lib), pid


def _take_preloaded() -> Any:
    """The library preload opened in this process, once; else None. (Its
    runtime is running: another file would be a second Go runtime.)"""
    global _preloaded
    found, _preloaded = _preloaded, None
    return found[1] if found is not None and found[0] == os.getpid() else None


def _choose() -> None:
    global _transport, _pid, _runtime_pid, _fork_hook, _parent_fd
    pid = os.getpid()
    if isinstance(_transport, Helper) and _pid != pid:
        _transport.forget()  # forked where no fork hook ran (from C): the parent's pipes are not ours
    forced = os.environ.get(TRANSPORT_ENV, "auto").strip().lower() or "auto"
    if forced not in ("auto", "inprocess", "helper"):
        raise NativeError(f"{TRANSPORT_ENV}={forced!r} is not one of auto, inprocess, helper")
    if not _fork_hook:
        at_fork(_after_fork_in_child)
        _share_at_fork()
        _fork_hook = True
    _notes.clear()
    lib = library_path()
    shared, _parent_fd = _parent_fd, -1
    if shared >= 0 and forced == "auto" and _runtime_pid not in (-1, pid):
        # Forked from a process whose core is in-process: ask it (a helper if it refuses).
        _transport, _pid = Helper(helper_path(), shared=shared, parent=_runtime_pid), pid
        return
    if shared >= 0:
        _close_quietly(shared)
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
        _transport = InProcess.load(lib)
    except NativeError as exc:
        if forced == "inprocess":
            raise
        logger.warning("mlflow-secrets-auth: %s; using the helper process %s instead", exc, helper_path())
        _notes.append(f"transport: helper process ({exc})")
        _transport, _pid = Helper(helper_path()), pid
        return
    _notes.append("transport: in-process library")
    _pid = _runtime_pid = pid
