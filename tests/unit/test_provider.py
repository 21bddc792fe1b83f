"""The provider module's parts with a fake core: the hop decision (origin and
proxy) and its cache, the log level and warnings from the core, core events,
interruptible, and the response hook's redirect and 401 handling."""

from __future__ import annotations

import base64
import ctypes
import io
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

PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class FakeTransport:
    """Answers like the core (PROTOCOL.md): headers per allowed origin with a
    fingerprint, the cleartext rule for a hop through a proxy, and reject."""

    def __init__(self, allowed: dict[str, str], header: str = "X-Api-Key") -> None:
        self.allowed = allowed
        self.header = header
        self.rotated: dict[str, str] = {}  # origin -> the value a reject of the current one yields
        self.calls: list[tuple[str, str, str]] = []  # (target, proxy, reject)
        self.env: dict[str, str] = {}
        self.events: list[dict[str, str]] = []
        self.log_level = "INFO"
        self.warnings: list[str] = []
        self.set_envs = 0

    @staticmethod
    def fingerprint(value: str) -> str:
        return f"fp<{len(value)}:{value[::-1]}>"  # stable per value; not how the core computes it

    def headers(self, target: str, proxy: str = "", reject: str = "") -> dict[str, Any]:
        self.calls.append((target, proxy, reject))
        events, self.events = self.events, []
        if target not in self.allowed:
            return {"ok": False, "code": "host_not_allowed", "variable": "MLFLOW_SECRETS_ALLOWED_HOSTS",
                    "message": f"{target} not allowed", "events": events}
        if proxy.startswith("http://") and target.startswith("http://") and "127.0.0.1" not in proxy:
            return {"ok": False, "code": "host_not_allowed", "variable": "MLFLOW_SECRETS_ALLOW_HTTP",
                    "message": f"cleartext through {proxy}; set MLFLOW_SECRETS_ALLOW_HTTP=true", "events": events}
        if reject and reject == self.fingerprint(self.allowed[target]) and target in self.rotated:
            self.allowed[target] = self.rotated.pop(target)
        value = self.allowed[target]
        return {"ok": True, "headers": {self.header: value}, "fingerprint": self.fingerprint(value),
                "max_age_ms": 60000, "events": events}

    def set_env(self, env: dict[str, str]) -> dict[str, Any]:
        self.env = env
        self.set_envs += 1
        return {"ok": True, "timeout_ms": 10000, "log_level": self.log_level, "warnings": list(self.warnings)}

    def info(self) -> dict[str, Any]:
        return {"ok": True}

    def doctor(self, url: str) -> dict[str, Any]:
        return {"ok": True}

    def invalidate(self) -> None:
        raise AssertionError("the plugin never clears the core's cache")


@pytest.fixture()
def core(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTransport]:
    fake = FakeTransport({"http://a:1": "tok-a", "http://b:2": "tok-b", "https://c": "tok-c"})
    monkeypatch.setattr(_native, "transport", lambda: fake)
    monkeypatch.setattr(provider, "_synced", None)
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    provider._entries.clear()
    yield fake
    provider._entries.clear()
    logging.getLogger("mlflow_secrets_auth").setLevel(logging.NOTSET)


def prepared(url: str, **kwargs: Any) -> requests.PreparedRequest:
    req = requests.Request("GET", url, **kwargs).prepare()
    req.prepare_auth(provider.SecretsAuth())
    return req


# --------------------------------------------------------------------------- #
# One decision per hop: origin and proxy, cached per environment and origin
# --------------------------------------------------------------------------- #


def test_the_core_is_asked_with_the_proxy_requests_will_use(
    core: FakeTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://user:pw@proxy.corp:3128")
    assert prepared("https://c/x").headers["X-Api-Key"] == "tok-c"
    assert core.calls == [("https://c", "http://proxy.corp:3128", "")]  # no proxy credentials handed over


def test_cleartext_through_a_proxy_is_refused_with_the_opt_in_named(
    core: FakeTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.corp:3128")
    req = requests.Request("GET", "http://a:1/x").prepare()
    with pytest.raises(provider.MlflowSecretsAuthError) as err:
        req.prepare_auth(provider.SecretsAuth())
    assert err.value.variable == "MLFLOW_SECRETS_ALLOW_HTTP"
    assert "MLFLOW_SECRETS_ALLOW_HTTP" in str(err.value)
    assert "X-Api-Key" not in req.headers
    assert core.calls == [("http://a:1", "http://proxy.corp:3128", "")]
    # NO_PROXY for that host: a direct connection, which the core allows.
    monkeypatch.setenv("NO_PROXY", "a")
    assert prepared("http://a:1/x").headers["X-Api-Key"] == "tok-a"
    assert core.calls[-1] == ("http://a:1", "", "")


def test_a_host_that_is_not_allowed_gets_nothing_and_no_error(core: FakeTransport) -> None:
    req = prepared("http://evil:1/x")
    assert "X-Api-Key" not in req.headers
    assert req.hooks["response"] == []


def test_a_cached_answer_is_for_one_environment_and_so_one_proxy(
    core: FakeTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    hop_calls: list[str] = []
    real_hop = _hooks.hop

    def counting_hop(url: str, proxies: Any = None) -> tuple[str, str]:
        hop_calls.append(url)
        return real_hop(url, proxies)

    monkeypatch.setattr(_hooks, "hop", counting_hop)
    for _ in range(50):
        assert prepared("https://c/x").headers["X-Api-Key"] == "tok-c"
    assert len(hop_calls) == 1  # the proxy is chosen on a miss only
    assert core.calls == [("https://c", "", "")]
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")  # a new environment: a new decision
    prepared("https://c/x")
    assert core.calls[-1] == ("https://c", "http://proxy.corp:3128", "")
    monkeypatch.setenv("NO_PROXY", "c")
    prepared("https://c/other")
    assert core.calls[-1] == ("https://c", "", "")
    assert len(hop_calls) == 3


def test_requests_share_one_hook_object_per_answer(core: FakeTransport) -> None:
    first, second = prepared("http://a:1/x"), prepared("http://a:1/y")
    assert len(first.hooks["response"]) == 1
    assert first.hooks["response"][0] is second.hooks["response"][0]


# --------------------------------------------------------------------------- #
# Log level, warnings and events come from the core
# --------------------------------------------------------------------------- #


def test_the_log_level_is_the_cores(core: FakeTransport, monkeypatch: pytest.MonkeyPatch) -> None:
    core.log_level = "DEBUG"
    prepared("http://a:1/x")
    assert logging.getLogger("mlflow_secrets_auth").level == logging.DEBUG
    core.log_level = "ERROR"
    monkeypatch.setenv("MLFLOW_SECRETS_LOG_LEVEL", "whatever")  # read by the core only
    prepared("http://a:1/x")
    assert logging.getLogger("mlflow_secrets_auth").level == logging.ERROR


def test_core_warnings_are_logged_once_per_environment(
    core: FakeTransport, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    core.warnings = ["MLFLOW_SECRETS_LOG_LEVEL='loud' is not a level; using INFO", "VAULT_ADDR is cleartext"]
    with caplog.at_level(logging.DEBUG, logger="mlflow_secrets_auth"):
        prepared("http://a:1/x")
        prepared("http://b:2/x")
        provider._entries.clear()
        prepared("http://a:1/x")  # the same environment: not again
        monkeypatch.setenv("SOMETHING_ELSE", "1")
        prepared("http://a:1/x")  # a new environment: once more
    got = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert got == [f"mlflow-secrets-auth: {w}" for w in core.warnings] * 2
    assert core.set_envs == 2


def test_core_events_are_logged_once_at_their_level(core: FakeTransport, caplog: pytest.LogCaptureFixture) -> None:
    core.events = [{"level": "warning", "message": "vault: down"}, {"level": "info", "message": "vault: back"}]
    with caplog.at_level(logging.DEBUG, logger="mlflow_secrets_auth"):
        prepared("http://a:1/x")
        prepared("http://b:2/x")
    got = [(r.levelno, r.getMessage()) for r in caplog.records if "vault:" in r.getMessage()]
    assert got == [
        (logging.WARNING, "mlflow-secrets-auth: vault: down"),
        (logging.INFO, "mlflow-secrets-auth: vault: back"),
    ]


def test_log_lines_never_show_userinfo(core: FakeTransport, caplog: pytest.LogCaptureFixture) -> None:
    core.allowed["http://u:s3cr3t@a:1"] = "tok-u"
    core.log_level = "DEBUG"
    with caplog.at_level(logging.DEBUG, logger="mlflow_secrets_auth"):
        assert prepared("http://u:s3cr3t@a:1/x").headers["X-Api-Key"] == "tok-u"
        prepared("http://a:1/x")
    lines = [r.getMessage() for r in caplog.records]
    assert any("http://a:1" in line for line in lines), lines  # a key without userinfo is shown
    assert len([line for line in lines if "header X-Api-Key" in line]) == 2, lines
    assert not any("s3cr3t" in line for line in lines), lines


# --------------------------------------------------------------------------- #
# Redirects
# --------------------------------------------------------------------------- #


def redirect(from_url: str, location: str, req: requests.PreparedRequest, status: int = 302) -> requests.Response:
    resp = requests.Response()
    resp.status_code, resp.url, resp.request = status, from_url, req
    resp.headers["Location"] = location
    return resp


def run_hooks(resp: requests.Response, **kwargs: Any) -> requests.Response:
    for hook in list(resp.request.hooks["response"]):
        resp = hook(resp, **kwargs)
    return resp


def test_the_hook_strips_our_header_for_an_origin_that_is_not_allowed(core: FakeTransport) -> None:
    req = prepared("http://a:1/x")
    assert req.headers["X-Api-Key"] == "tok-a"
    run_hooks(redirect("http://a:1/x", "http://evil:1/x", req, 307))
    assert "X-Api-Key" not in req.headers


def test_the_hook_swaps_in_the_allowed_origins_headers(core: FakeTransport) -> None:
    req = prepared("http://a:1/x")
    other = prepared("http://a:1/y")
    run_hooks(redirect("http://a:1/x", "http://b:2/y", req))
    assert req.headers["X-Api-Key"] == "tok-b"
    # The shared hook was replaced for this request only.
    assert req.hooks["response"][0] is not other.hooks["response"][0]
    assert other.headers["X-Api-Key"] == "tok-a"


def test_the_hook_keeps_the_header_within_the_origin(core: FakeTransport) -> None:
    req = prepared("http://a:1/x")
    req.headers["X-Api-Key"] = "as-sent"
    run_hooks(redirect("http://a:1/x", "/elsewhere", req))
    assert req.headers["X-Api-Key"] == "as-sent"


def test_the_redirect_hop_is_decided_with_its_proxy(core: FakeTransport) -> None:
    """The next hop goes through the proxy requests will use for it: here the
    cleartext proxy of the hop before, so the core refuses it and the request fails."""
    req = prepared("https://c/x")
    with pytest.raises(provider.MlflowSecretsAuthError, match="MLFLOW_SECRETS_ALLOW_HTTP"):
        run_hooks(redirect("https://c/x", "http://b:2/y", req), proxies={"http": "http://proxy.corp:3128"})
    assert core.calls[-1] == ("http://b:2", "http://proxy.corp:3128", "")
    assert "X-Api-Key" not in req.headers  # removed before the hop was decided
    # Without a proxy for it, the same redirect carries b's header.
    req = prepared("https://c/x")
    run_hooks(redirect("https://c/x", "http://b:2/y", req), proxies={"https": "http://proxy.corp:3128"})
    assert core.calls[-1] == ("http://b:2", "", "")
    assert req.headers["X-Api-Key"] == "tok-b"


def test_no_hook_where_nothing_was_added(core: FakeTransport) -> None:
    req = prepared("http://evil:1/x")
    assert "X-Api-Key" not in req.headers
    assert req.hooks["response"] == []


# --------------------------------------------------------------------------- #
# 401: reject exactly the headers sent, re-send only what can be replayed
# --------------------------------------------------------------------------- #


class Adapter:
    def __init__(self) -> None:
        self.sent: list[tuple[requests.PreparedRequest, dict[str, Any], bytes | None]] = []

    def send(self, req: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        body = req.body
        data = body.read() if hasattr(body, "read") else body
        self.sent.append((req, kwargs, data.encode() if isinstance(data, str) else data))
        resp = requests.Response()
        resp.status_code, resp.request, resp._content = 200, req, b""
        return resp


def unauthorized(req: requests.PreparedRequest, adapter: Adapter) -> requests.Response:
    resp = requests.Response()
    resp.status_code, resp.url, resp.request, resp._content = 401, req.url, req, b""
    resp.connection = adapter
    return resp


SETTINGS = {"timeout": 7, "verify": "/ca.pem", "cert": ("c", "k"), "proxies": {"https": "https://p:1"}, "stream": False}


def test_a_401_rejects_the_headers_sent_and_resends_once_with_the_same_settings(core: FakeTransport) -> None:
    req = prepared("http://a:1/x")
    core.rotated["http://a:1"] = "tok-a2"  # what the core has once tok-a is rejected
    adapter = Adapter()
    final = run_hooks(unauthorized(req, adapter), **SETTINGS)
    assert core.calls[-1] == ("http://a:1", "", core.fingerprint("tok-a"))
    assert final.status_code == 200
    assert len(adapter.sent) == 1
    resent, kwargs, _ = adapter.sent[0]
    assert resent.headers["X-Api-Key"] == "tok-a2"
    assert kwargs == SETTINGS
    assert [h.status_code for h in final.history] == [401]
    assert not any(k.lower().startswith("x-retry") for k in resent.headers)  # no marker header
    # Our copy of the rejected headers is gone: the next request carries the new ones.
    assert prepared("http://a:1/x").headers["X-Api-Key"] == "tok-a2"


def test_the_401_resend_is_decided_with_the_hops_proxy(core: FakeTransport, caplog: pytest.LogCaptureFixture) -> None:
    """The re-send goes through the adapter with the hop's proxies: the core
    decides with that proxy, and refuses a cleartext one (the 401 stays, and says why)."""
    req = prepared("http://a:1/x")
    core.rotated["http://a:1"] = "tok-a2"
    adapter = Adapter()
    resp = unauthorized(req, adapter)
    with caplog.at_level(logging.WARNING, logger="mlflow_secrets_auth"):
        assert run_hooks(resp, proxies={"http": "http://proxy.corp:3128"}) is resp
    assert core.calls[-1] == ("http://a:1", "http://proxy.corp:3128", core.fingerprint("tok-a"))
    assert adapter.sent == []
    assert any("MLFLOW_SECRETS_ALLOW_HTTP" in r.getMessage() for r in caplog.records)


def test_a_401_with_an_unchanged_credential_is_returned_as_is(core: FakeTransport) -> None:
    req = prepared("http://a:1/x")
    adapter = Adapter()
    resp = unauthorized(req, adapter)
    assert run_hooks(resp) is resp
    assert adapter.sent == []
    assert core.calls[-1] == ("http://a:1", "", core.fingerprint("tok-a"))


def test_every_401_is_one_reject_and_never_a_loop(core: FakeTransport) -> None:
    """No rate limit in Python: each 401 reports the headers it answered once;
    the core decides whether that means a refresh."""
    for _ in range(20):
        resp = unauthorized(prepared("http://a:1/x"), Adapter())
        assert run_hooks(resp) is resp
    rejects = [c for c in core.calls if c[2]]
    assert len(rejects) == 20
    assert len(core.calls) == 21  # the first fetch, then one reject per 401


def test_a_401_to_headers_we_did_not_set_rejects_nothing(core: FakeTransport) -> None:
    req = prepared("http://a:1/x")
    req.headers["X-Api-Key"] = "changed-by-the-caller"
    core.rotated["http://a:1"] = "tok-a2"
    adapter = Adapter()
    resp = unauthorized(req, adapter)
    assert run_hooks(resp) is resp
    assert [c for c in core.calls if c[2]] == []
    assert adapter.sent == []


def stream() -> Iterator[bytes]:
    yield b"part-1,"
    yield b"part-2"


def test_a_streamed_body_is_never_sent_again(core: FakeTransport, caplog: pytest.LogCaptureFixture) -> None:
    req = requests.Request("POST", "http://a:1/x", data=stream()).prepare()
    req.prepare_auth(provider.SecretsAuth())
    core.rotated["http://a:1"] = "tok-a2"
    adapter = Adapter()
    resp = unauthorized(req, adapter)
    with caplog.at_level(logging.WARNING, logger="mlflow_secrets_auth"):
        assert run_hooks(resp) is resp
    assert adapter.sent == []
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "cannot be replayed" in lines[0], lines
    # The credential was still reported: the next request carries the new one.
    assert prepared("http://a:1/x").headers["X-Api-Key"] == "tok-a2"


@pytest.mark.parametrize("body", [b"whole-body", "whole-body", "file"])
def test_bytes_and_file_bodies_are_sent_again_whole(core: FakeTransport, body: object) -> None:
    data = io.BytesIO(b"whole-body") if body == "file" else body
    req = requests.Request("POST", "http://a:1/x", data=data).prepare()
    req.prepare_auth(provider.SecretsAuth())
    if isinstance(data, io.BytesIO):
        data.read()  # the first attempt read it
    core.rotated["http://a:1"] = "tok-a2"
    adapter = Adapter()
    final = run_hooks(unauthorized(req, adapter))
    assert final.status_code == 200
    assert [sent for _, _, sent in adapter.sent] == [b"whole-body"]


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




def test_state_per_origin_is_bounded_and_refusals_summarised(
    core: FakeTransport, caplog: pytest.LogCaptureFixture
) -> None:
    """Thousands of distinct hosts (a crawler, a misconfigured URL template) keep
    a bounded cache and a bounded once-only set, and log one summary line instead
    of a warning per refused host."""
    caplog.set_level(logging.WARNING, logger="mlflow_secrets_auth")
    for i in range(provider.MAX_ENTRIES + 500):
        prepared(f"http://h{i}.example:80/x")
        assert len(provider._entries) <= provider.MAX_ENTRIES
        assert len(provider._said) <= provider.MAX_SAID
    refused = [r for r in caplog.records if "not allowed" in r.getMessage()]
    summary = [r for r in caplog.records if "more than" in r.getMessage()]
    assert len(refused) == provider.REFUSALS_LOGGED
    assert len(summary) == 1
    assert prepared("http://a:1/x").headers["X-Api-Key"] == "tok-a"  # still served after the churn


# --------------------------------------------------------------------------- #
# Precedence over MLflow's static MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN
# --------------------------------------------------------------------------- #

STATIC_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
               provider.STATIC_FALLBACK_ENV)
WRONG_BASIC = "Basic " + base64.b64encode(b"alice:wrong-pw-123").decode()


@pytest.fixture()
def static(core: FakeTransport, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> FakeTransport:
    """The fake core, a home without ~/.mlflow/credentials, a wrong static username and password."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in STATIC_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(provider, "_precedence_said", set())
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong-pw-123")
    return core


def as_mlflow_sends(url: str, authorization: str = WRONG_BASIC) -> requests.PreparedRequest:
    """A request as MLflow's http_request makes it: the static Authorization first, then our auth."""
    req = requests.Request("GET", url, headers={"Authorization": authorization}).prepare()
    req.prepare_auth(provider.SecretsAuth())
    return req


@pytest.mark.parametrize("header", ["Authorization", "X-Api-Key"])
def test_the_plugins_credential_replaces_the_static_one(static: FakeTransport, header: str) -> None:
    """With the default header it overwrites Authorization; with a custom header name
    the static Authorization is removed, not sent alongside."""
    static.header = header
    req = as_mlflow_sends("http://a:1/x")
    assert req.headers[header] == "tok-a"
    assert req.headers.get("Authorization") in (None, "tok-a")
    assert WRONG_BASIC not in req.headers.values()


def test_a_bearer_static_token_is_removed_as_well(static: FakeTransport, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "stale-token-456")
    static.header = "X-Api-Key"
    assert "Authorization" not in as_mlflow_sends("http://a:1/x", "Bearer stale-token-456").headers
    assert "Authorization" not in as_mlflow_sends("http://evil:1/x", "Bearer stale-token-456").headers


def test_a_refused_host_gets_no_static_credential_either(
    static: FakeTransport, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mlflow_secrets_auth"):
        req = as_mlflow_sends("http://evil:1/x")
    assert "Authorization" not in req.headers
    refusal = [r.getMessage() for r in caplog.records if "evil" in r.getMessage()]
    assert len(refusal) == 1 and provider.STATIC_FALLBACK_ENV in refusal[0], refusal
    assert "wrong-pw-123" not in caplog.text


def test_a_callers_own_authorization_is_never_touched(static: FakeTransport) -> None:
    """Only the header MLflow builds from the static variables is removed."""
    static.header = "X-Api-Key"
    assert as_mlflow_sends("http://a:1/x", "Bearer callers-own").headers["Authorization"] == "Bearer callers-own"
    assert as_mlflow_sends("http://evil:1/x", "Bearer callers-own").headers["Authorization"] == "Bearer callers-own"


@pytest.mark.parametrize("value", ["true", "1", "YES", "on"])
def test_the_fallback_opt_in_sends_the_static_one_to_refused_hosts(
    static: FakeTransport, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(provider.STATIC_FALLBACK_ENV, value)
    assert as_mlflow_sends("http://evil:1/x").headers["Authorization"] == WRONG_BASIC
    static.header = "X-Api-Key"  # allowed hosts still get only the plugin's credential
    assert "Authorization" not in as_mlflow_sends("http://a:1/x").headers


def test_a_bad_fallback_value_is_named_and_taken_as_off(
    static: FakeTransport, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(provider.STATIC_FALLBACK_ENV, "sure")
    with caplog.at_level(logging.WARNING, logger="mlflow_secrets_auth"):
        assert "Authorization" not in as_mlflow_sends("http://evil:1/x").headers
    bad = [r.getMessage() for r in caplog.records if "'sure' is not a switch" in r.getMessage()]
    assert len(bad) == 1 and provider.STATIC_FALLBACK_ENV in bad[0]


def test_one_precedence_warning_per_process_naming_the_variables_not_the_values(
    static: FakeTransport, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="mlflow_secrets_auth"):
        for url in ("http://a:1/x", "http://b:2/x", "http://evil:1/x", "http://a:1/y"):
            as_mlflow_sends(url)
        monkeypatch.setenv("SOMETHING_ELSE", "1")  # a new environment, the same configuration: not again
        as_mlflow_sends("http://a:1/x")
    warned = [r for r in caplog.records if "replaces the static one" in r.getMessage()]
    assert len(warned) == 1
    text = warned[0].getMessage()
    assert warned[0].levelno == logging.WARNING
    assert "mlflow_secrets_auth" in text and "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in text
    assert "wrong-pw-123" not in caplog.text and "alice" not in caplog.text


def test_no_precedence_warning_and_nothing_removed_without_a_static_credential(
    static: FakeTransport, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")  # a username alone: MLflow builds no header
    static.header = "X-Api-Key"
    with caplog.at_level(logging.DEBUG, logger="mlflow_secrets_auth"):
        assert as_mlflow_sends("http://a:1/x").headers["Authorization"] == WRONG_BASIC
    assert "replaces the static one" not in caplog.text


def test_the_credentials_file_counts_and_is_named(
    static: FakeTransport, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    (tmp_path / ".mlflow").mkdir()
    (tmp_path / ".mlflow" / "credentials").write_text("[mlflow]\nmlflow_tracking_password = wrong-pw-123\n")
    with caplog.at_level(logging.WARNING, logger="mlflow_secrets_auth"):
        assert "Authorization" not in as_mlflow_sends("http://evil:1/x").headers
    assert f"MLFLOW_TRACKING_USERNAME and {provider.CREDENTIALS_FILE}" in caplog.text


def test_the_static_credential_is_worked_out_once_per_environment(
    static: FakeTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    real = provider._mlflow_creds
    monkeypatch.setattr(provider, "_mlflow_creds", lambda: (reads.append(1), real())[1])
    static.header = "X-Api-Key"
    for _ in range(50):
        assert "Authorization" not in as_mlflow_sends("http://a:1/x").headers
        assert "Authorization" not in as_mlflow_sends("http://evil:1/x").headers
    assert len(reads) == 1
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "another-pw")  # seen with the next environment
    assert as_mlflow_sends("http://evil:1/x").headers["Authorization"] == WRONG_BASIC
    assert "Authorization" not in as_mlflow_sends(
        "http://evil:1/x", "Basic " + base64.b64encode(b"alice:another-pw").decode()).headers
    assert len(reads) == 2


def test_the_otlp_session_follows_the_same_rule(static: FakeTransport) -> None:
    """OpenTelemetry's exporter puts MLflow's build_otlp_headers on its session;
    the session's auth (ours) then replaces or removes the static header."""
    from mlflow_secrets_auth import otlp

    static.header = "X-Api-Key"
    s = otlp.session()
    s.headers.update({"Authorization": WRONG_BASIC, "x-mlflow-experiment-id": "0"})
    to_server = s.prepare_request(requests.Request("POST", "http://a:1/v1/traces", data=b"x"))
    assert to_server.headers["X-Api-Key"] == "tok-a" and "Authorization" not in to_server.headers
    collector = s.prepare_request(requests.Request("POST", "http://evil:1/v1/traces", data=b"x"))
    assert "Authorization" not in collector.headers and "X-Api-Key" not in collector.headers


@pytest.mark.parametrize("env", [
    {"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p:w"},
    {"MLFLOW_TRACKING_TOKEN": "t0k"},
    {"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p", "MLFLOW_TRACKING_TOKEN": "t0k"},
    {"MLFLOW_TRACKING_USERNAME": "u"},
])
def test_the_static_value_is_the_one_mlflow_builds(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Compared with MLflow's own build_otlp_headers (the same rule as rest_utils.http_request)."""
    from mlflow.tracing.utils.otlp import build_otlp_headers

    monkeypatch.setenv("HOME", str(tmp_path))
    for name in STATIC_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    static = provider.static_credential(os.environ, provider._mlflow_creds())
    assert static.authorization == build_otlp_headers("0").get("Authorization")


def test_credential_paths_for_info_and_doctor() -> None:
    from mlflow_secrets_auth import otlp

    env = {"MLFLOW_TRACKING_AUTH": "mlflow_secrets_auth", "MLFLOW_TRACKING_USERNAME": "u",
           "MLFLOW_TRACKING_PASSWORD": "p"}
    basic = provider.static_credential(env, ("u", "p"))
    rest, traces, gateway = otlp.credential_paths(env, "X-Api-Key", basic, otlp_plugin=True)
    assert "this plugin's X-Api-Key" in rest and "replacing the static MLFLOW_TRACKING_USERNAME" in rest
    assert "other hosts: no credential" in rest and provider.STATIC_FALLBACK_ENV in rest
    assert "this plugin's X-Api-Key" in traces
    assert "static MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (Basic)" in gateway
    _, traces, _ = otlp.credential_paths(env, "X-Api-Key", basic, otlp_plugin=False)
    assert traces == "OTLP/HTTP traces: the static MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
    token = provider.static_credential({"MLFLOW_TRACKING_TOKEN": "t"}, (None, None))
    _, traces, gateway = otlp.credential_paths(env, "Authorization", token, otlp_plugin=False)
    assert traces.endswith("the static MLFLOW_TRACKING_TOKEN")
    assert "no credential" in gateway and "401" in gateway
    none = provider.static_credential({}, (None, None))
    rest, traces, gateway = otlp.credential_paths({}, "Authorization", none, otlp_plugin=False)
    assert "no credential (MLFLOW_TRACKING_AUTH does not select mlflow_secrets_auth)" in rest
    assert traces.endswith("no credential")


@pytest.mark.parametrize(("chosen", "preloads"), [("mlflow_secrets_auth", 1), ("kubernetes", 0), (None, 0)])
def test_the_provider_starts_loading_the_library_only_when_mlflow_will_ask_it(
    monkeypatch: pytest.MonkeyPatch, chosen: str | None, preloads: int
) -> None:
    calls: list[str] = []

    def preload() -> None:
        calls.append("preload")

    monkeypatch.setattr(_native, "preload", preload)
    if chosen is None:
        monkeypatch.delenv("MLFLOW_TRACKING_AUTH", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_AUTH", chosen)
    p = provider.SecretsAuthProvider()  # as MLflow's registry makes one, at its first request
    assert len(calls) == preloads
    p.get_auth()
    assert len(calls) == preloads  # never on the per-request path
