"""The MLflow request-auth provider ``mlflow_secrets_auth``.

MLflow calls ``get_auth()`` on every request and hands the returned object to
``requests``, which calls it with the prepared request. That is where the
destination is known, so that is where the core's decision is asked for: the
Go core decides, per hop, whether credentials may be sent and which headers to
send. A hop is the origin (``scheme://host:port``) and the proxy the request
goes through (``_hooks.hop``: ``select_proxy`` over the proxies requests uses,
``NO_PROXY`` applied); the core refuses, for example, an ``http://`` origin
reached through a cleartext proxy that is not loopback. Answers are kept per
origin for the environment they were made in (which fixes the proxy) and for
as long as the core says they are fresh, so a request normally costs a
dictionary lookup.

The auth object also puts a response hook on each request it adds headers to
(one hook object per answer, shared by the requests that use it; a request
whose hook must keep state gets its own). ``requests`` runs response hooks
before it follows a redirect, and builds the next hop from a copy of the
request the hook sees, so the hook decides what the next hop carries:

* a redirect to another origin loses our headers, and gets them back only if
  the core allows that hop (its origin, and the proxy requests will use for
  it) (``requests`` itself then still drops ``Authorization`` when the host
  or port changes, except for an http->https upgrade on the default ports; if
  such an allowed target answers 401, the request is sent to it once more
  with the credential);
* a 401 to a request that carried our headers rejects exactly those headers
  in the core (by the fingerprint the core gave with them): the core
  refreshes that one credential, once, however many requests report it. If
  the core then has other headers, the request is sent once more through the
  same connection adapter with the same settings (timeout, TLS verification,
  client certificate, proxies), as requests' own HTTPDigestAuth does, unless
  its body was a stream that cannot be replayed exactly: then the 401 is the
  answer. No marker header.

Precedence over MLflow's static credential. MLflow puts
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (Basic; also read
from ``~/.mlflow/credentials``) or ``MLFLOW_TRACKING_TOKEN`` (Bearer) into a
request's ``Authorization`` header before the auth object runs, and so does
its OTLP exporter. The rule: on every request this auth object sees (MLflow's
REST calls through ``fetch_auth``, the OTLP/HTTP trace session of ``otlp.py``)
the plugin's credential replaces the static one. With the default header it
overwrites ``Authorization``; with another ``MLFLOW_AUTH_HEADER_NAME`` the
static ``Authorization`` is removed (not merely warned about: two credentials
on one request is what a user who selected this plugin does not expect). For
a host the policy refuses, the static credential is not sent either, unless
``MLFLOW_SECRETS_STATIC_FALLBACK=true`` (read here, in Python, because it
concerns MLflow's own variables). Only an ``Authorization`` header equal to
the one MLflow builds from the static credential is ever removed: a caller's
own header is left alone. When both are configured, one warning per process
names the static variables (never their values). The static value is worked
out once per environment (in ``sync``), so a request costs one comparison.

This module is the entry point MLflow imports: it imports nothing that can
fail, and starts nothing. If the native core cannot work, or refuses a hop
because it would carry the credential in cleartext, the auth object raises
``MlflowSecretsAuthError``: a request never goes out without the credentials
it was meant to carry.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple, TypeVar

from mlflow.tracking.request_auth.abstract_request_auth_provider import RequestAuthProvider
from requests import PreparedRequest, Response
from requests.auth import AuthBase

from mlflow_secrets_auth import _env, _hooks, _native
from mlflow_secrets_auth._startup import TRACKING_AUTH  # MLflow's: the name of the provider it asks

NAME = "mlflow_secrets_auth"
ALLOW_HTTP_ENV = "MLFLOW_SECRETS_ALLOW_HTTP"  # named by the core when a hop would be cleartext
STATIC_FALLBACK_ENV = "MLFLOW_SECRETS_STATIC_FALLBACK"  # send the static credential to hosts the policy refuses
AUTHORIZATION = "Authorization"
CREDENTIALS_FILE = "~/.mlflow/credentials"  # where MLflow also reads the static username and password
logger = logging.getLogger("mlflow_secrets_auth")


class MlflowSecretsAuthError(RuntimeError):
    """No credentials could be produced; ``code`` and ``variable`` say why."""

    def __init__(self, message: str, code: str = "internal", variable: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.variable = variable


Items = _hooks.Items


class _Answer:
    """The headers of one core answer, and the response hook of the requests
    that carry them. Immutable and shared: a request whose hook needs state
    (a 401 or a redirect) gets a ``_Guard`` of its own in place of this one."""

    __slots__ = ("fingerprint", "items", "names", "sets_authorization")

    def __init__(self, items: Items, fingerprint: str) -> None:
        self.items = items
        self.fingerprint = fingerprint  # the core's name for exactly these headers
        self.names = tuple(name for name, _ in items)
        self.sets_authorization = any(name.lower() == "authorization" for name in self.names)

    def __call__(self, resp: Response, **kwargs: Any) -> Response:
        if resp.status_code != 401 and not resp.is_redirect:
            return resp
        guard = _Guard(self)
        hooks = resp.request.hooks.get("response") or []
        for i, hook in enumerate(hooks):
            if hook is self:
                hooks[i] = guard  # later hops of this request (same hook list) see its state
                break
        return guard(resp, **kwargs)


# Per origin key ("scheme://host:port", as the URL spells it), for the hop as
# requests makes it from the environment: (env generation, monotonic deadline,
# the headers or None when the core gives none, the proxy of the hop).
Entry = tuple[int, float, "_Answer | None", str]
_entries: dict[str, Entry] = {}
MAX_ENTRIES = 4096  # past this many origins the cache starts over (the core keeps its own, bounded)
DENIAL_TTL = 1.0  # seconds a "host not allowed" answer is reused
REFUSALS_LOGGED = 20  # refused hosts named one by one per environment; then one summary line
MAX_SAID = 1024  # once-only messages remembered per environment
_sync_lock = threading.Lock()
_synced: tuple[int, int, str, str] | None = None  # (transport, env generation, URIs) the core was last given
_said: set[str] = set()  # log messages already emitted once (cleared with each new environment)
_refusals = 0  # distinct refused-host warnings in this environment
_warnings: tuple[str, ...] = ()  # the core's configuration warnings for the current environment
_fork_hook = False
_now = time.monotonic
USERNAME, PASSWORD, TOKEN = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"


class Static(NamedTuple):
    """MLflow's static credential in one environment: never printed (``names`` says where it comes from)."""

    authorization: str | None  # the Authorization value MLflow builds from it; None when it builds none
    names: tuple[str, ...]  # the variables (or the credentials file) it comes from
    fallback: bool  # STATIC_FALLBACK_ENV: hosts the policy refuses still get it
    problem: str  # a STATIC_FALLBACK_ENV value that is not a switch (then it is off), or ""


_SWITCH = {
    "": False,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
}  # as the core reads its switches


def static_credential(env: Mapping[str, str], creds: tuple[str | None, str | None]) -> Static:
    """What MLflow sends from its static credential, built as ``rest_utils.http_request`` and
    ``build_otlp_headers`` build it: Basic from a username and password (creds: as MLflow
    resolves them, environment first, then the credentials file), else Bearer from the token."""
    user, password = creds
    token = env.get(TOKEN)
    names: list[str] = []
    authorization = None
    if user and password:
        authorization = "Basic " + base64.standard_b64encode(f"{user}:{password}".encode()).decode()
        names += [var if env.get(var) else CREDENTIALS_FILE for var in (USERNAME, PASSWORD)]
    if token:
        authorization = authorization or f"Bearer {token}"
        names.append(TOKEN)
    raw = env.get(STATIC_FALLBACK_ENV, "")
    fallback = _SWITCH.get(raw.strip().lower())
    problem = (
        ""
        if fallback is not None
        else (
            f"{STATIC_FALLBACK_ENV}={raw[:40]!r} is not a switch (use 1, true, yes, on, 0, false, no, off); "
            "taken as off: hosts the policy refuses get no static credential"
        )
    )
    return Static(authorization, tuple(dict.fromkeys(names)), bool(fallback), problem)


def static_names(static: Static) -> str:
    return " and ".join(static.names)


def precedence_warning(static: Static) -> str:
    """The one warning for a process where both this plugin and a static credential are configured ("" if not)."""
    if static.authorization is None:
        return ""
    refused = (
        f"hosts the policy refuses get the static one ({STATIC_FALLBACK_ENV}=true)"
        if static.fallback
        else f"hosts the policy refuses get neither (set {STATIC_FALLBACK_ENV}=true to send the static one there)"
    )
    return (
        f"mlflow-secrets-auth: both this plugin ({NAME}) and {static_names(static)} are set: on the requests "
        "this plugin covers (MLflow's REST calls, OTLP/HTTP traces) its credential replaces the static one "
        "(a static Authorization header is removed when MLFLOW_AUTH_HEADER_NAME names another header); "
        f"{refused}; gateway:/ judges still send the static one"
    )


def _mlflow_creds() -> tuple[str | None, str | None]:
    """The username and password as MLflow reads them (environment, then ~/.mlflow/credentials)."""
    try:
        from mlflow.utils.credentials import read_mlflow_creds

        creds = read_mlflow_creds()
        return creds.username, creds.password
    except Exception:  # an MLflow without it, or an unreadable file: the environment only
        return os.environ.get(USERNAME), os.environ.get(PASSWORD)


# Worked out once per environment (sync), read on every request.
_static = Static(None, (), False, "")
_static_auth: str | None = None
_static_fallback = False
_precedence = ""  # precedence_warning(_static)
_precedence_said: set[str] = set()  # precedence warnings given in this process (a handful of distinct texts)
_origin_key = _hooks.origin_key


def _after_fork_in_child() -> None:
    """A child may be forked while another thread holds a lock: start afresh."""
    global _sync_lock, _synced
    _sync_lock = threading.Lock()
    _synced = None


class SecretsAuth(AuthBase):
    """Adds the secret-derived headers to each request whose hop may carry them."""

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        url = r.url or ""
        entry = _entries.get(_origin_key(url))
        if entry is None or entry[0] != _env.current() or entry[1] <= _now():
            entry = _fetch(url)
        answer = entry[2]
        headers, static = r.headers, _static_auth
        if answer is not None:
            for name, value in answer.items:
                headers[name] = value
            r.hooks["response"].append(answer)
            if static is not None and not answer.sets_authorization and headers.get(AUTHORIZATION) == static:
                del headers[AUTHORIZATION]  # a custom header name: the static credential does not go along
        elif static is not None and not _static_fallback and headers.get(AUTHORIZATION) == static:
            del headers[AUTHORIZATION]  # a refused host gets no credential at all
        return r


def _fetch(url: str) -> Entry:
    """The core's answer for a request to url, going out as requests sends it from the environment; kept."""
    generation = _env.current()  # before the proxy is chosen from the environment
    key, proxy = _hooks.hop(url)
    ttl, answer = _ask(key, proxy)
    entry: Entry = (generation, _now() + ttl, answer, proxy)
    if len(_entries) >= MAX_ENTRIES:
        _entries.clear()
    _entries[key] = entry
    return entry


def _decide(url: str, proxies: _hooks.Proxies, reject: str = "") -> tuple[str, _Answer | None]:
    """(origin key, headers) for one hop inside a request's hooks: with the
    proxies requests uses for it; cached only where it matches the environment's hop."""
    key, proxy = _hooks.hop(url, proxies)
    if not reject:
        entry = _entries.get(key)
        if entry is not None and entry[3] == proxy and entry[0] == _env.current() and entry[1] > _now():
            return key, entry[2]
    return key, _ask(key, proxy, reject)[1]


def _forget(key: str, fingerprint: str) -> None:
    """Drop our copy of headers the server rejected once the core has others."""
    entry = _entries.get(key)
    if entry is not None and entry[2] is not None and entry[2].fingerprint == fingerprint:
        _entries.pop(key, None)


class _Guard:
    """The response hook of one request that needs state (shared by its redirect hops and retry)."""

    __slots__ = ("current", "granted", "names", "proxies")

    def __init__(self, answer: _Answer) -> None:
        self.current: _Answer | None = answer  # the headers this request carries now
        self.names = answer.names  # every header name we ever set on it
        self.granted: str | None = None  # the origin a redirect was allowed to carry our headers to
        self.proxies: _hooks.Proxies = None  # those of the hop being answered

    def __call__(self, resp: Response, **kwargs: Any) -> Response:
        original = resp.request  # the request requests copies for a redirect's next hop
        self.proxies = kwargs.get("proxies")
        if resp.status_code == 401:
            resp = self._retry(resp, kwargs)
        if resp.is_redirect:
            self._redirect(resp, original)
        return resp

    def _carried(self, req: PreparedRequest) -> Items:
        values = ((name, req.headers.get(name)) for name in self.names)
        return tuple((n, v) for n, v in values if isinstance(v, str))

    def _redirect(self, resp: Response, original: PreparedRequest) -> None:
        req = resp.request
        location = resp.headers.get("location")
        if location is None or req.url is None:
            return
        target = _hooks.redirect_target(req.url, _hooks.decode_location(location))
        answers: list[_Answer | None] = []
        hops = {id(original): original, id(req): req}.values()

        def lookup(url: str) -> Items:
            for r in hops:  # first, so that no failure below leaves them on
                _set(r, self.names, ())
            answer = _decide(url, _hooks.redirect_proxies(url, self.proxies))[1]
            answers.append(answer)
            return answer.items if answer is not None else ()

        new = _hooks.redirect_headers(req.url, target, lookup)
        if new is None:
            return
        for r in hops:
            _set(r, self.names, new)
        self.names = tuple(dict.fromkeys(self.names + tuple(name for name, _ in new)))
        self.current = answers[0] if answers else None
        self.granted = _hooks.origin_key(target) if new else None

    def _retry(self, resp: Response, kwargs: dict[str, Any]) -> Response:
        req = resp.request
        if req.url is None:
            return resp
        if not self._carried(req):
            # requests itself drops Authorization on a redirect to another
            # host or port, even one the core allowed: send it there once.
            key = _hooks.origin_key(req.url)
            if self.granted != key:
                return resp
            self.granted = None
            try:
                answer = _decide(req.url, self.proxies)[1]
            except MlflowSecretsAuthError:
                return resp
            return self._resend(resp, answer, key, kwargs) if answer is not None else resp
        rejected = self.current
        if rejected is None or any(req.headers.get(name) != value for name, value in rejected.items):
            return resp  # not the headers the core gave: not ours to judge
        try:
            key, answer = _decide(req.url, self.proxies, reject=rejected.fingerprint)
        except MlflowSecretsAuthError as exc:
            _once(logging.WARNING, f"mlflow-secrets-auth: the server answered 401 and no new credential: {exc}")
            return resp
        if answer is None or answer.fingerprint == rejected.fingerprint:
            return resp
        _forget(key, rejected.fingerprint)
        return self._resend(resp, answer, key, kwargs)

    def _resend(self, resp: Response, answer: _Answer, key: str, kwargs: dict[str, Any]) -> Response:
        """Send resp's request again with new headers, through the same adapter and settings."""
        req = resp.request
        if not _hooks.replayable(req):
            logger.warning(
                "mlflow-secrets-auth: %s answered 401; the request is not sent again with the new credential"
                " because its body was a stream that cannot be replayed",
                _loggable(key),
            )
            return resp
        logger.info(
            "mlflow-secrets-auth: %s answered 401; sending the request again with a new credential", _loggable(key)
        )
        _ = resp.content  # release the connection for the new request
        resp.close()
        prep = req.copy()
        _copy_cookies(prep, req, resp)
        for r in (prep, req):  # req too: a redirect's next hop is copied from it
            _set(r, self.names, answer.items)
        self.names = tuple(dict.fromkeys(self.names + answer.names))
        self.current = answer
        if prep._body_position is not None:  # a file-like body: read again from where it began
            from requests.utils import rewind_body

            rewind_body(prep)
        again: Response = resp.connection.send(prep, **kwargs)
        again.history.append(resp)
        again.request = prep
        return again


def _set(r: PreparedRequest, names: tuple[str, ...], items: Items) -> None:
    for name in names:
        r.headers.pop(name, None)
    for name, value in items:
        r.headers[name] = value


def _copy_cookies(prep: PreparedRequest, req: PreparedRequest, resp: Response) -> None:
    from requests.cookies import extract_cookies_to_jar

    jar: Any = prep._cookies
    if jar is not None:
        extract_cookies_to_jar(jar, req, resp.raw)
        prep.prepare_cookies(jar)


_AUTH = SecretsAuth()


class SecretsAuthProvider(RequestAuthProvider):
    """Registered under the ``mlflow.request_auth_provider`` entry point.

    MLflow makes one of each registered provider when its first request
    needs auth, then asks the one ``MLFLOW_TRACKING_AUTH`` names: when that
    is this one, the library starts loading here (``_native.preload``)."""

    def __init__(self) -> None:
        if os.environ.get(TRACKING_AUTH) == NAME:
            _native.preload()

    def get_name(self) -> str:
        return NAME

    def get_auth(self) -> SecretsAuth:
        return _AUTH


def _remember(message: str) -> None:
    if len(_said) >= MAX_SAID:
        _said.clear()
    _said.add(message)


def _once(level: int, message: str) -> None:
    if message not in _said:
        _remember(message)
        logger.log(level, "%s", message)


def _refused(message: str) -> None:
    """A refused host: named once each, up to REFUSALS_LOGGED per environment, then one summary."""
    global _refusals
    if message in _said:
        return
    _refusals += 1
    if _refusals <= REFUSALS_LOGGED:
        _once(logging.WARNING, message)
        return
    _remember(message)
    if _refusals == REFUSALS_LOGGED + 1:
        logger.warning(
            "mlflow-secrets-auth: credentials were refused for more than %d hosts; the others are "
            "logged at DEBUG only (their requests go out without this plugin's credential)",
            REFUSALS_LOGGED,
        )
    logger.debug("%s", message)


def _mlflow_uris() -> tuple[str, str]:
    """The tracking and registry URIs as MLflow resolves them now."""
    from mlflow.tracking._model_registry.utils import get_registry_uri
    from mlflow.tracking._tracking_service.utils import get_tracking_uri

    tracking = get_tracking_uri()
    try:
        registry = get_registry_uri()
    except Exception:  # an unusual registry setting must not break requests
        registry = ""
    return str(tracking or ""), str(registry or "")


def sync(get: Callable[[], _native.Transport]) -> _native.Transport:
    """Hand the core the current environment if it changed; return the transport to use.

    That is ``get()``, unless the in-process library's cloud SDKs would read
    other values from the environment the process started with (the core
    never writes it): then the core moves to a helper process started with
    the current environment (``_native.in_helper``). ``get`` is called once
    MLflow's URIs are read: a first call loads the library, and a preloaded
    library's runtime starts beside that work (``_native.preload``).

    The core's reply names the logger level (it reads MLFLOW_SECRETS_LOG_LEVEL)
    and every configuration warning; requests log each once per environment
    (``info`` and ``doctor`` print them themselves).
    """
    global _synced, _fork_hook, _warnings, _refusals, _static, _static_auth, _static_fallback, _precedence
    if not _fork_hook:
        _native.at_fork(_after_fork_in_child)
        _fork_hook = True
    _env.track()
    generation = _env.current()  # read before copying, so a racing write is seen next time
    tracking, registry = _mlflow_uris()
    t = get()
    state = (id(t), generation, tracking, registry)
    with _sync_lock:
        if _synced != state:
            env = dict(os.environ)
            env["MLFLOW_TRACKING_URI"] = tracking
            env["MLFLOW_REGISTRY_URI"] = registry
            reply = t.set_env(env)
            if reply.get("ok") and reply.get("process_env") and isinstance(t, _native.InProcess):
                t = _native.in_helper(env, [str(n) for n in reply["process_env"]])
                state = (id(t), generation, tracking, registry)
                reply = t.set_env(env)
            if not reply.get("ok"):
                raise MlflowSecretsAuthError(str(reply.get("message")), str(reply.get("code")))
            _entries.clear()
            _said.clear()
            _refusals = 0
            level = logging.getLevelName(str(reply.get("log_level") or "INFO"))
            logger.setLevel(level if isinstance(level, int) else logging.INFO)
            _warnings = tuple(f"mlflow-secrets-auth: {w}" for w in reply.get("warnings") or ())
            static = static_credential(env, _mlflow_creds())
            if static.problem:
                _warnings += (f"mlflow-secrets-auth: {static.problem}",)
            _static, _static_auth, _static_fallback = static, static.authorization, static.fallback
            _precedence = precedence_warning(static)
            _synced = state
    return t


T = TypeVar("T")


def interruptible(call: Callable[[], T]) -> T:
    """Run a call that may wait on a backend so that Ctrl-C still works.

    Python runs signal handlers only between bytecodes, never while a thread
    is inside a C call. On the main thread (the only one that gets
    KeyboardInterrupt) the call runs on a short-lived worker thread while the
    main thread waits interruptibly; the core bounds the call's own duration.
    """
    if threading.current_thread() is not threading.main_thread():
        return call()
    done = threading.Event()
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # re-raised on the caller's thread
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=run, name="mlflow-secrets-auth-call", daemon=True).start()
    # In short slices: a process-directed SIGINT may land on another thread,
    # and then only a wake-up lets this thread run the handler.
    while not done.wait(0.1):
        pass
    ok, value = outcome[0]
    if ok:
        result: T = value
        return result
    raise value


_LEVELS = {"warning": logging.WARNING, "info": logging.INFO, "error": logging.ERROR, "debug": logging.DEBUG}


def log_events(reply: dict[str, Any]) -> None:
    """Log the core's one-shot events, each once, at its level."""
    for event in reply.get("events") or ():
        if isinstance(event, dict):
            level = _LEVELS.get(str(event.get("level", "")).lower(), logging.WARNING)
            logger.log(level, "mlflow-secrets-auth: %s", event.get("message", ""))


def _loggable(key: str) -> str:
    """An origin key for our own log lines: one with userinfo is not shown at all."""
    return key if "@" not in key else "the server (its URL has userinfo, not shown)"


def _ask(key: str, proxy: str, reject: str = "") -> tuple[float, _Answer | None]:
    """The core's decision for one hop: (seconds it may be reused, the headers or None).

    None: the origin is not one the credential is for (logged once). A hop
    the core refuses because it would carry the credential in cleartext
    (the origin's scheme or the proxy's) raises, as every other failure does.
    """
    try:
        t = sync(_native.transport)
        for warning in _warnings:
            _once(logging.WARNING, warning)
        if _precedence and _precedence not in _precedence_said:
            _precedence_said.add(_precedence)
            logger.warning("%s", _precedence)
        reply: dict[str, Any] = interruptible(lambda: t.headers(key, proxy, reject))
    except _native.NativeError as exc:
        raise MlflowSecretsAuthError(f"mlflow-secrets-auth: {exc}") from exc
    log_events(reply)
    if reply.get("ok"):
        answer = _Answer(tuple(reply["headers"].items()), str(reply.get("fingerprint") or ""))
        max_age = reply.get("max_age_ms", 0) / 1000.0
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "mlflow-secrets-auth: %s%s: header %s from %s, reused for %.1f s",
                _loggable(key),
                f" through the proxy {proxy}" if proxy else "",
                ", ".join(answer.names),
                reply.get("provider"),
                max_age,
            )
        if stale := reply.get("stale"):  # the core's events carry the one warning per outage
            _once(logging.DEBUG, f"mlflow-secrets-auth: serving the last good credential: {stale['message']}")
        for attempt in reply.get("attempts", ()):  # the outage warning itself comes once, as an event
            _once(logging.DEBUG, f"mlflow-secrets-auth: skipped {attempt['provider']}: {attempt['message']}")
        return max_age, answer
    message = f"mlflow-secrets-auth: {reply.get('message')}"
    code, variable = str(reply.get("code")), reply.get("variable")
    if code == "host_not_allowed" and variable != ALLOW_HTTP_ENV:
        if _static_auth is not None and not _static_fallback:
            message += (
                f"; the static {static_names(_static)} credential is not sent there either "
                f"({STATIC_FALLBACK_ENV}=true sends it)"
            )
        _refused(message)
        # Kept briefly: a change of environment ends it at once, while
        # mlflow.set_registry_uri (which changes no variable) is seen within DENIAL_TTL.
        return DENIAL_TTL, None
    raise MlflowSecretsAuthError(message, code, variable)
