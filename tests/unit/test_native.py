"""The transport layer without any server: platform names, the transport
choice (after fork, helper-only builds, broken libraries), and the helper
pipe protocol with a fake helper (concurrency, restart with state, deadline)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow_secrets_auth import _native

FAKE = Path(__file__).with_name("fake_helper.py")


def test_file_names_by_platform() -> None:
    assert _native.library_name("linux") == "libmlflow_secrets_auth.so"
    assert _native.library_name("darwin") == "libmlflow_secrets_auth.dylib"
    assert _native.library_name("win32") == "mlflow_secrets_auth.dll"
    assert _native.helper_name("win32") == "msa-helper.exe"
    assert _native.helper_name("linux") == _native.helper_name("darwin") == "msa-helper"


@pytest.fixture()
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The module's per-process choice, reset for one test and restored after.
    A runtime loaded during the test stays recorded: a later fork must see it."""
    saved = (_native._transport, _native._pid, _native._runtime_pid, _native._preloaded)
    _native._transport, _native._pid, _native._preloaded = None, -1, None
    loaded_before = _native._runtime_pid == os.getpid()
    _native._runtime_pid = -1
    for var in (_native.TRANSPORT_ENV, _native.LIBRARY_ENV, _native.HELPER_ENV):
        monkeypatch.delenv(var, raising=False)
    yield
    loaded = loaded_before or _native._runtime_pid == os.getpid()
    _native._transport, _native._pid, _native._runtime_pid, _native._preloaded = saved
    if loaded:
        _native._runtime_pid = os.getpid()


class CountingFFI:
    """The generated cffi module's ``ffi`` with its dlopen calls of a library file counted (or failing)."""

    def __init__(self, fail: bool = False) -> None:
        from mlflow_secrets_auth._ffi import ffi

        self.real, self.fail, self.opened = ffi, fail, 0

    def dlopen(self, path: str | None) -> object:
        if path is None:  # the C library (madvise)
            return self.real.dlopen(None)
        self.opened += 1
        if self.fail:
            raise OSError(f"{path}: invalid ELF header")
        return self.real.dlopen(path)

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


@pytest.fixture()
def counted(monkeypatch: pytest.MonkeyPatch) -> CountingFFI:
    import types

    fake = CountingFFI()
    monkeypatch.setitem(sys.modules, "mlflow_secrets_auth._ffi", types.SimpleNamespace(ffi=fake))
    return fake


def test_preload_opens_the_library_once_and_the_first_use_takes_it(fresh: None, counted: CountingFFI) -> None:
    _native.preload()
    assert counted.opened == 1
    assert _native._runtime_pid == os.getpid()  # from here on a forked child must not call the runtime
    _native.preload()  # a second provider, say: nothing more
    assert counted.opened == 1
    assert isinstance(_native.transport(), _native.InProcess)
    assert counted.opened == 1 and _native._preloaded is None


@pytest.mark.parametrize("case", ["helper forced", "forked after a load", "transport chosen", "unloadable"])
def test_preload_leaves_every_other_case_to_the_first_use(
    fresh: None, counted: CountingFFI, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    if case == "helper forced":
        monkeypatch.setenv(_native.TRANSPORT_ENV, "helper")
    elif case == "forked after a load":
        _native._runtime_pid = os.getpid() + 1
    elif case == "transport chosen":
        _native._transport, _native._pid = _native.Helper(_native.helper_path()), os.getpid()
    else:
        counted.fail = True
    runtime_pid = _native._runtime_pid
    _native.preload()  # raises nothing
    assert _native._preloaded is None and _native._runtime_pid == runtime_pid
    assert counted.opened == (1 if case == "unloadable" else 0)


def transport_of_a_forked_child() -> str:
    """The class of the transport a child forked now chooses (a child that calls the
    inherited Go runtime hangs instead of answering)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, type(_native.transport()).__name__.encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    name = os.read(read, 100).decode()
    os.close(read)
    assert status == 0
    return name


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_child_forked_after_a_preload_chooses_the_helper(fresh: None) -> None:
    _native.preload()
    assert _native._preloaded is not None
    assert transport_of_a_forked_child() == "Helper"  # the runtime is in this address space
    assert isinstance(_native.transport(), _native.InProcess)


def test_forced_helper(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_native.TRANSPORT_ENV, "helper")
    assert isinstance(_native.transport(), _native.Helper)


def test_a_bad_transport_value_names_the_variable(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_native.TRANSPORT_ENV, "carrier-pigeon")
    with pytest.raises(_native.NativeError, match=_native.TRANSPORT_ENV):
        _native.transport()


def test_a_child_of_a_process_that_loaded_the_runtime_uses_the_helper(
    fresh: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _native._runtime_pid = os.getpid() + 1  # "the parent loaded it" (the fixture restores it)
    monkeypatch.setattr(_native, "InProcess", None)  # any attempt to load would fail loudly
    assert isinstance(_native.transport(), _native.Helper)


def test_a_helper_only_build_uses_the_helper_quietly(
    fresh: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_native, "LIBRARY_NAME", "no-such-library.so")
    with caplog.at_level(logging.DEBUG, logger="mlflow_secrets_auth"):
        assert isinstance(_native.transport(), _native.Helper)
    assert caplog.records == []
    assert _native.transport_notes() == ["transport: helper process (no no-such-library.so in this build)"]


def test_a_library_that_cannot_load_falls_back_with_a_warning(
    fresh: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.so"
    broken.write_text("not a library")
    monkeypatch.setenv(_native.LIBRARY_ENV, str(broken))
    with caplog.at_level(logging.WARNING, logger="mlflow_secrets_auth"):
        assert isinstance(_native.transport(), _native.Helper)
    assert any("using the helper process" in r.getMessage() for r in caplog.records)
    _native._transport = None  # choose again (the fixture restores it)
    monkeypatch.setenv(_native.TRANSPORT_ENV, "inprocess")
    with pytest.raises(_native.NativeError, match="cannot load"):
        _native.transport()


def test_no_library_and_no_helper_is_an_error(fresh: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(_native.LIBRARY_ENV, str(tmp_path / "missing.so"))
    monkeypatch.setenv(_native.HELPER_ENV, str(tmp_path / "missing-helper"))
    with pytest.raises(_native.NativeError, match="missing-helper"):
        _native.transport()


def test_no_fork_hooks_on_this_platform(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "register_at_fork", raising=False)
    monkeypatch.setattr(_native, "_fork_hook", False)
    monkeypatch.setenv(_native.TRANSPORT_ENV, "helper")
    assert isinstance(_native.transport(), _native.Helper)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_chooses_the_helper_without_calling_the_runtime(fresh: None) -> None:
    parent = _native.transport()
    assert isinstance(parent, _native.InProcess)  # the built library is next to the package
    assert transport_of_a_forked_child() == "Helper"
    assert _native.transport() is parent


@pytest.fixture()
def fake() -> Iterator[_native.Helper]:
    helper = _native.Helper(FAKE, argv=[sys.executable, str(FAKE)], grace=0.2, ping_wait=0.5)
    yield helper
    helper.close()


def test_threads_wait_on_the_helper_at_once(fake: _native.Helper) -> None:
    slow: list[dict[str, object]] = []
    t = threading.Thread(target=lambda: slow.append(fake.call({"op": "headers", "arg": "slow"}, 30)))
    t.start()
    # Answered while the slow call is still waiting (a serialized transport would time out here).
    assert fake.call({"op": "headers", "arg": "fast"}, 10)["headers"] == {"X-Host": "fast"}
    assert slow == []
    fake.call({"op": "release"}, 10)
    t.join(30)
    assert [r["headers"] for r in slow] == [{"X-Host": "slow"}]


def test_headers_requests_carry_the_budget_from_set_env_and_the_hop(fake: _native.Helper) -> None:
    plain = fake.headers("https://h.example:443")["request"]
    assert plain == {"id": plain["id"], "op": "headers", "arg": "https://h.example:443", "deadline_ms": 10_000}
    assert fake.set_env({"FAKE_TIMEOUT_MS": "1234"})["timeout_ms"] == 1234
    hop = fake.headers("http://h.example:80", proxy="http://proxy.example:3128", reject="ab12")["request"]
    assert (hop["arg"], hop["proxy"], hop["reject"], hop["deadline_ms"]) == (
        "http://h.example:80", "http://proxy.example:3128", "ab12", 1234,
    )  # fmt: skip
    assert "reject" not in fake.headers("http://h.example:80", proxy="http://proxy.example:3128")["request"]


def running_pid(helper: _native.Helper) -> int:
    pid = helper.call({"op": "info"}, 10)["pid"]
    assert isinstance(pid, int)
    return pid


def test_a_restarted_helper_gets_the_last_environment_first(fake: _native.Helper) -> None:
    env = {"MLFLOW_TRACKING_URI": "https://t.example", "MLFLOW_REGISTRY_URI": "https://r.example", "A": "1"}
    assert fake.set_env(env)["ok"]
    first = running_pid(fake)
    os.kill(first, signal.SIGKILL)
    info = fake.call({"op": "info"}, 10)
    assert info["pid"] != first
    assert info["env"] == env
    assert fake.starts == 2


def test_slow_calls_are_abandoned_and_the_helper_kept(fake: _native.Helper) -> None:
    """Two calls in a row outlive their budget (100 ms from set_env, + 0.2 s grace):
    each is abandoned with an error naming the timeout; the helper, still
    answering pings, is neither killed nor restarted."""
    fake.set_env({"FAKE_TIMEOUT_MS": "100"})
    pid = running_pid(fake)
    expired = r"did not answer headers within 0\.3 s .*MLFLOW_SECRETS_TIMEOUT_SEC.*abandoned"
    for _ in range(2):
        with pytest.raises(_native.NativeError, match=expired):
            fake.headers("slow")
    info = fake.call({"op": "info"}, 10)
    assert (info["pid"], fake.starts) == (pid, 1)
    assert info["pings"] == 2  # before the second slow call, and before this one
    fake.call({"op": "release"}, 10)  # the abandoned replies now arrive, and are ignored
    assert fake.headers("fast")["headers"] == {"X-Host": "fast"}
    assert fake.call({"op": "info"}, 10)["pings"] == 2  # no call expired since: no ping


def test_a_helper_that_fails_a_ping_is_restarted(fake: _native.Helper) -> None:
    env = {"MLFLOW_TRACKING_URI": "https://t.example", "FAKE_TIMEOUT_MS": "100"}
    fake.set_env(env)
    stuck = running_pid(fake)
    proc = fake._proc
    assert proc is not None
    fake.call({"op": "mute"}, 10)  # alive, reading, answering nothing
    with pytest.raises(_native.NativeError, match="abandoned"):
        fake.headers("x")
    assert proc.proc.poll() is None  # an expired call alone kills nothing
    info = fake.call({"op": "info"}, 10)  # the ping goes unanswered: stopped, and a new helper answers
    assert info["pid"] != stuck
    assert info["env"] == env
    assert fake.starts == 2
    assert proc.proc.wait(10) == -signal.SIGKILL


def test_a_helper_that_dies_mid_call_is_restarted_once_and_the_call_retried(
    fake: _native.Helper, tmp_path: Path
) -> None:
    env = {"MLFLOW_TRACKING_URI": "https://t.example"}
    fake.set_env(env)
    first = running_pid(fake)
    marker = tmp_path / "died"
    assert fake.call({"op": "die_once", "arg": str(marker)}, 10) == {"ok": True, "survived": str(marker)}
    assert marker.exists()  # the first helper exited on this call
    info = fake.call({"op": "info"}, 10)
    assert (info["pid"] != first, info["env"], fake.starts) == (True, env, 2)


def test_a_helper_that_exits_on_every_try_is_an_error_not_a_hang(fake: _native.Helper) -> None:
    with pytest.raises(_native.NativeError, match="stopped answering"):
        fake.call({"op": "exit"}, 30)
    assert fake.starts == 2  # tried once more on a new helper, and no more
    assert fake.headers("x")["ok"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_fork_while_a_call_is_in_flight_leaves_the_child_free(fresh: None, fake: _native.Helper) -> None:
    """At the fork the helper's reader thread is blocked reading its pipe, a
    call waits on it, and the transport's locks are held. The child's fork hook
    must neither take a lock nor close a stream those threads hold: it returns,
    the inherited pipe ends are closed in the child, and the parent's helper
    keeps working."""
    os.environ[_native.TRANSPORT_ENV] = "helper"  # the fixture removes it again
    _native.transport()  # registers the fork hook (a real helper is started only on a call)
    _native._transport = fake
    slow: list[dict[str, object]] = []
    t = threading.Thread(target=lambda: slow.append(fake.call({"op": "headers", "arg": "slow"}, 60)))
    t.start()
    assert fake.headers("fast")["ok"]  # the reader thread runs
    proc = fake._proc
    assert proc is not None
    inherited = (proc._wfd, proc._rfd)
    read, write = os.pipe()
    # Every lock of the transport held at the fork, as another thread could hold it then:
    # in the child nobody will ever release them.
    held = (_native._lock, fake._lock, proc.write_lock, proc.pending_lock)
    for lock in held:
        lock.acquire()
    pid = os.fork()
    if pid != 0:
        for lock in held:
            lock.release()
    if pid == 0:  # the child
        try:
            closed = []
            for fd in inherited:
                try:
                    os.fstat(fd)
                except OSError:
                    closed.append(fd)
            ok = _native._transport is None and fake._proc is None and closed == list(inherited)
            os.write(write, b"ok" if ok else b"not reset")
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + 30
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung in the fork hook")
        time.sleep(0.01)
    assert os.read(read, 100) == b"ok"
    os.close(read)
    fake.call({"op": "release"}, 10)
    t.join(30)
    assert [r["headers"] for r in slow] == [{"X-Host": "slow"}]
    assert fake.starts == 1


class FakeLib:
    """The C API as cffi presents it, recording which function got what."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.freed = 0

    def GetAuthHeaders(self, host: bytes) -> bytes:
        self.calls.append(("GetAuthHeaders", host))
        return b'{"ok": true}'

    def MsaHeaders(self, request: bytes) -> bytes:
        self.calls.append(("MsaHeaders", json.loads(request)))
        return b'{"ok": true}'

    def MsaFree(self, ptr: bytes) -> None:
        self.freed += 1


class FakeFFI:
    NULL = None

    @staticmethod
    def string(ptr: bytes) -> bytes:
        return ptr

    @staticmethod
    def cast(ctype: str, value: int) -> tuple[str, int]:
        return (ctype, value)


def test_in_process_headers_take_the_fast_path_unless_there_is_a_hop_to_describe() -> None:
    lib = FakeLib()
    t = _native.InProcess(lib, FakeFFI())
    t.headers("https://h.example:443")
    t.headers("http://h.example:80", proxy="http://proxy.example:3128")
    t.headers("https://h.example:443", reject="ab12")
    t.headers("http://h.example:80", "https://proxy.example:3128", "cd34")
    assert lib.calls == [
        ("GetAuthHeaders", b"https://h.example:443"),
        ("MsaHeaders", {"target": "http://h.example:80", "proxy": "http://proxy.example:3128"}),
        ("MsaHeaders", {"target": "https://h.example:443", "reject": "ab12"}),
        ("MsaHeaders", {"target": "http://h.example:80", "proxy": "https://proxy.example:3128", "reject": "cd34"}),
    ]
    assert lib.freed == 4


def test_the_pages_a_reply_names_are_released_after_it_is_freed() -> None:
    """MsaReleaseByCaller: the ranges go to madvise once the reply is freed (freeing is a call into the
    library, whose code would map them back), and the reply reaches the caller without them."""
    lib = FakeLib()
    reply = b'{"ok": true, "headers": {"A": "b"}, "release": [[4096, 8192], [65536, 4096]]}'
    lib.GetAuthHeaders = lambda host: reply  # type: ignore[method-assign]
    events: list[object] = []
    lib.MsaFree = lambda ptr: events.append("free")  # type: ignore[method-assign]
    ffi = FakeFFI()
    t = _native.InProcess(lib, ffi)
    t._madvise = lambda addr, length, advice: events.append((addr, length, advice)) or 0
    t._dontneed = 4
    got = t.headers("https://h.example:443")
    assert got == {"ok": True, "headers": {"A": "b"}}
    assert events == ["free", (("void *", 4096), 8192, 4), (("void *", 65536), 4096, 4)]
    events.clear()
    t._madvise = None  # the library releases them itself: the member is dropped all the same
    assert t.headers("https://h.example:443") == {"ok": True, "headers": {"A": "b"}}
    assert events == ["free"]


@pytest.mark.skipif(sys.platform == "win32", reason="cffi opens the C library by None on POSIX only")
def test_a_library_without_msashare_is_not_shared_and_raises_nothing() -> None:
    """A library from before MsaShare (MLFLOW_SECRETS_AUTH_LIBRARY): cffi raises its own error, not
    AttributeError, for a declared function the library lacks; share() must say False, or every fork
    prints a traceback from the fork hook."""
    from mlflow_secrets_auth._ffi import ffi

    t = _native.InProcess(ffi.dlopen(None), ffi)  # the C library: every name of ours is missing
    a, b = socket.socketpair()
    try:
        assert t.share(a.fileno()) is False
    finally:
        a.close()
        b.close()


def test_the_real_helper_answers_json_to_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    helper = _native.Helper(_native.helper_path())
    try:
        reply = helper.call({"op": '\u0001"odd\\'}, 10)
        assert reply["ok"] is False
        assert reply["code"] == "internal"
        assert "unknown op \u0001" in reply["message"]
        assert helper.call({"op": "abi"}, 10) == {"ok": True, "abi": _native.ABI_VERSION}
    finally:
        helper.close()
