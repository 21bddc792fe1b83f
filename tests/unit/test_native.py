"""The transport layer without any server: platform names, the transport
choice (after fork, helper-only builds, broken libraries), and the helper
pipe protocol with a fake helper (concurrency, restart with state, deadline)."""

from __future__ import annotations

import logging
import os
import signal
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


@pytest.mark.parametrize(("raw", "seconds"), [("", 10.0), ("3", 3.0), ("0", 1.0), ("9999", 300.0), ("x", 10.0)])
def test_core_timeout_reads_like_the_core(raw: str, seconds: float) -> None:
    assert _native.core_timeout({_native.TIMEOUT_ENV: raw}) == seconds


@pytest.fixture()
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The module's per-process choice, reset for one test and restored after.
    A runtime loaded during the test stays recorded: a later fork must see it."""
    saved = (_native._transport, _native._pid, _native._runtime_pid)
    _native._transport, _native._pid = None, -1
    loaded_before = _native._runtime_pid == os.getpid()
    _native._runtime_pid = -1
    for var in (_native.TRANSPORT_ENV, _native.LIBRARY_ENV, _native.HELPER_ENV):
        monkeypatch.delenv(var, raising=False)
    yield
    loaded = loaded_before or _native._runtime_pid == os.getpid()
    _native._transport, _native._pid, _native._runtime_pid = saved
    if loaded:
        _native._runtime_pid = os.getpid()


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
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: must not call the inherited Go runtime
        try:
            os.write(write, type(_native.transport()).__name__.encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 100) == b"Helper"
    os.close(read)
    assert status == 0
    assert _native.transport() is parent


@pytest.fixture()
def fake() -> Iterator[_native.Helper]:
    helper = _native.Helper(FAKE, argv=[sys.executable, str(FAKE)])
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
    assert slow == [{"ok": True, "headers": {"X-Host": "slow"}}]


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


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="POSIX signals")
def test_a_helper_that_stops_answering_is_killed_after_the_deadline(fake: _native.Helper) -> None:
    env = {"MLFLOW_TRACKING_URI": "https://t.example"}
    fake.set_env(env)
    stopped = running_pid(fake)
    proc = fake._proc
    assert proc is not None
    os.kill(stopped, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(_native.NativeError, match=r"did not answer within 0\.5 s"):
        fake.call({"op": "info"}, 0.5)
    assert time.monotonic() - started < 5.0  # the deadline, not the helper, ended the wait
    assert proc.proc.wait(10) == -signal.SIGKILL
    info = fake.call({"op": "info"}, 10)
    assert info["pid"] != stopped
    assert info["env"] == env


def test_a_helper_that_exits_mid_call_is_an_error_not_a_hang(fake: _native.Helper) -> None:
    with pytest.raises(_native.NativeError, match="stopped answering"):
        fake.call({"op": "exit"}, 30)
    assert fake.starts == 2  # tried once more on a new helper
    assert fake.call({"op": "headers", "arg": "x"}, 10)["ok"]


def test_the_real_helper_answers_json_to_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    helper = _native.Helper(_native.helper_path())
    try:
        reply = helper.call({"op": "\u0001\"odd\\"}, 10)
        assert reply["ok"] is False
        assert reply["code"] == "internal"
        assert "unknown op \u0001" in reply["message"]
        assert helper.call({"op": "abi"}, 10) == {"ok": True, "abi": _native.ABI_VERSION}
    finally:
        helper.close()
