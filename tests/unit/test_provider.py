"""The provider module's pure parts: log level, core events, interruptible,
and the response hook's redirect and 401 handling, with a fake transport."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from mlflow_secrets_auth import _hooks, _native, provider


@pytest.mark.parametrize(
    ("raw", "level"),
    [(None, logging.INFO), ("", logging.INFO), ("debug", logging.DEBUG), (" WARNING ", logging.WARNING),
     ("error", logging.ERROR)],
)
def test_log_levels(raw: str | None, level: int) -> None:
    assert provider.log_level(raw) == (level, None)


@pytest.mark.parametrize("raw", ["verbose", "5", "LOUD" * 100])
def test_an_invalid_log_level_is_a_warning_and_info(raw: str) -> None:
    level, warning = provider.log_level(raw)
    assert level == logging.INFO
    assert warning is not None
    assert provider.LOG_LEVEL_ENV in warning
    assert len(warning) < 200  # a long value is cut


class FakeTransport:
    """Answers like the core: headers per allowed origin, a counter of invalidations."""

    def __init__(self, allowed: dict[str, str], header: str = "X-Api-Key") -> None:
        self.allowed = allowed
        self.header = header
        self.invalidations = 0
        self.env: dict[str, str] = {}
        self.events: list[dict[str, str]] = []

    def headers(self, host: str) -> dict[str, Any]:
        events, self.events = self.events, []
        if host in self.allowed:
            return {"ok": True, "headers": {self.header: self.allowed[host]}, "max_age_ms": 60000, "events": events}
        return {"ok": False, "code": "host_not_allowed", "message": f"{host} not allowed", "events": events}

    def set_env(self, env: dict[str, str]) -> dict[str, Any]:
        self.env = env
        return {"ok": True}

    def info(self) -> dict[str, Any]:
        return {"ok": True}

    def doctor(self, url: str) -> dict[str, Any]:
        return {"ok": True}

    def invalidate(self) -> None:
        self.invalidations += 1


@pytest.fixture()
def core(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTransport]:
    fake = FakeTransport({"http://a:1": "tok-a", "http://b:2": "tok-b"})
    monkeypatch.setattr(_native, "transport", lambda: fake)
    monkeypatch.setattr(provider, "_synced", None)
    monkeypatch.setattr(provider, "_limiter", _hooks.RefetchLimiter(5.0, lambda: 0.0))
    provider._entries.clear()
    yield fake
    provider._entries.clear()


def test_invalid_log_level_never_fails_a_request(
    core: FakeTransport, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(provider.LOG_LEVEL_ENV, "chatty")
    with caplog.at_level(logging.DEBUG, logger="mlflow_secrets_auth"):
        assert provider.headers_for("http://a:1") == (("X-Api-Key", "tok-a"),)
        assert logging.getLogger("mlflow_secrets_auth").level == logging.INFO
    warnings = [r for r in caplog.records if provider.LOG_LEVEL_ENV in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


def test_core_events_are_logged_once_at_their_level(core: FakeTransport, caplog: pytest.LogCaptureFixture) -> None:
    core.events = [{"level": "warning", "message": "vault: down"}, {"level": "info", "message": "vault: back"}]
    with caplog.at_level(logging.DEBUG, logger="mlflow_secrets_auth"):
        provider.headers_for("http://a:1")
        provider.headers_for("http://b:2")
    got = [(r.levelno, r.getMessage()) for r in caplog.records if "vault:" in r.getMessage()]
    assert got == [
        (logging.WARNING, "mlflow-secrets-auth: vault: down"),
        (logging.INFO, "mlflow-secrets-auth: vault: back"),
    ]


def redirect(from_url: str, location: str, req: requests.PreparedRequest, status: int = 302) -> requests.Response:
    resp = requests.Response()
    resp.status_code, resp.url, resp.request = status, from_url, req
    resp.headers["Location"] = location
    return resp


def prepared(url: str) -> requests.PreparedRequest:
    req = requests.Request("GET", url).prepare()
    req.prepare_auth(provider.SecretsAuth())
    return req


def run_hooks(resp: requests.Response) -> requests.Response:
    for hook in resp.request.hooks["response"]:
        resp = hook(resp)
    return resp


def test_the_hook_strips_our_header_for_an_origin_that_is_not_allowed(core: FakeTransport) -> None:
    req = prepared("http://a:1/x")
    assert req.headers["X-Api-Key"] == "tok-a"
    run_hooks(redirect("http://a:1/x", "http://evil:1/x", req, 307))
    assert "X-Api-Key" not in req.headers


def test_the_hook_swaps_in_the_allowed_origins_headers(core: FakeTransport) -> None:
    req = prepared("http://a:1/x")
    run_hooks(redirect("http://a:1/x", "http://b:2/y", req))
    assert req.headers["X-Api-Key"] == "tok-b"


def test_the_hook_keeps_the_header_within_the_origin(core: FakeTransport) -> None:
    req = prepared("http://a:1/x")
    req.headers["X-Api-Key"] = "as-sent"
    run_hooks(redirect("http://a:1/x", "/elsewhere", req))
    assert req.headers["X-Api-Key"] == "as-sent"


def test_no_hook_where_nothing_was_added(core: FakeTransport) -> None:
    req = prepared("http://evil:1/x")
    assert "X-Api-Key" not in req.headers
    assert req.hooks["response"] == []


class Adapter:
    def __init__(self) -> None:
        self.sent: list[tuple[requests.PreparedRequest, dict[str, Any]]] = []

    def send(self, req: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent.append((req, kwargs))
        resp = requests.Response()
        resp.status_code, resp.request, resp._content = 200, req, b""
        return resp


def unauthorized(req: requests.PreparedRequest, adapter: Adapter) -> requests.Response:
    resp = requests.Response()
    resp.status_code, resp.url, resp.request, resp._content = 401, req.url, req, b""
    resp.connection = adapter
    return resp


def run_hooks_with(resp: requests.Response, **kwargs: Any) -> requests.Response:
    for hook in resp.request.hooks["response"]:
        resp = hook(resp, **kwargs)
    return resp


def test_a_401_refetches_and_resends_once_with_the_same_settings(core: FakeTransport) -> None:
    req = prepared("http://a:1/x")
    core.allowed["http://a:1"] = "tok-a2"  # rotated in the secret manager
    adapter = Adapter()
    settings = {"timeout": 7, "verify": "/ca.pem", "cert": ("c", "k"), "proxies": {"http": "p"}, "stream": False}
    final = run_hooks_with(unauthorized(req, adapter), **settings)
    assert core.invalidations == 1
    assert final.status_code == 200
    assert len(adapter.sent) == 1
    resent, kwargs = adapter.sent[0]
    assert resent.headers["X-Api-Key"] == "tok-a2"
    assert kwargs == settings
    assert [h.status_code for h in final.history] == [401]
    assert not any(k.lower().startswith("x-retry") for k in resent.headers)  # no marker header


def test_a_401_with_an_unchanged_credential_is_returned_as_is(core: FakeTransport) -> None:
    req = prepared("http://a:1/x")
    adapter = Adapter()
    resp = unauthorized(req, adapter)
    assert run_hooks_with(resp) is resp
    assert adapter.sent == []


def test_401s_refetch_at_most_once_per_credential_per_interval(
    core: FakeTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]
    monkeypatch.setattr(provider, "_limiter", _hooks.RefetchLimiter(5.0, lambda: now[0]))
    for _ in range(20):
        run_hooks_with(unauthorized(prepared("http://a:1/x"), Adapter()))
    assert core.invalidations == 1
    now[0] = 5.0
    run_hooks_with(unauthorized(prepared("http://a:1/x"), Adapter()))
    assert core.invalidations == 2


def test_interruptible_returns_and_raises() -> None:
    assert provider.interruptible(lambda: 42) == 42
    with pytest.raises(ValueError, match="boom"):
        provider.interruptible(lambda: (_ for _ in ()).throw(ValueError("boom")))
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(provider.interruptible(threading.current_thread)))
    t.start()
    t.join()
    assert out == [t]  # off the main thread it runs in place


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mutex as the stand-in C call")
@pytest.mark.parametrize("to", ["process", "blocked thread"])
def test_interruptible_lets_ctrl_c_through_a_blocking_c_call(to: str) -> None:
    """A C call that ignores signals (a held pthread mutex) stands in for a
    slow core call: Ctrl-C must still reach the main thread while it blocks,
    also when the kernel hands the signal to the blocked thread."""
    assert threading.current_thread() is threading.main_thread()
    # Background jobs (CI, make from a script) inherit SIGINT ignored: install
    # Python's own handler, as an interactive interpreter has it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _interrupt_blocking_call(to)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_blocking_call(to: str) -> None:
    libc = ctypes.CDLL(None)
    mutex = ctypes.create_string_buffer(64)  # zeroed: a default glibc mutex
    assert libc.pthread_mutex_lock(mutex) == 0
    interrupted = threading.Event()
    fallback = threading.Event()
    started = threading.Event()
    caller: list[int] = []

    def blocking() -> int:
        caller.append(threading.get_ident())
        started.set()
        return int(libc.pthread_mutex_lock(mutex))

    def interrupt() -> None:
        started.wait(20)
        if to == "process":
            os.kill(os.getpid(), signal.SIGINT)
        else:
            signal.pthread_kill(caller[0], signal.SIGINT)
        if not interrupted.wait(20):
            fallback.set()  # never delivered while blocked: end the C call so the test can fail
        libc.pthread_mutex_unlock(mutex)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        provider.interruptible(blocking)
    interrupted.set()
    assert not fallback.is_set(), "Ctrl-C waited for the C call to end"


@pytest.mark.parametrize(
    ("key", "shown"),
    [("https://h:1", "https://h:1"), ("http://u:pw@h:1", "http://***@h:1"), ("http://a@b@h", "http://***@h")],
)
def test_origin_keys_in_log_lines_hide_userinfo(key: str, shown: str) -> None:
    assert provider._shown(key) == shown
