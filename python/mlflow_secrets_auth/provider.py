"""The MLflow request-auth provider ``mlflow_secrets_auth``.

MLflow calls ``get_auth()`` on every request and hands the returned object to
``requests``, which calls it with the prepared request. That is where the
destination is known, so that is where the host policy is applied: the Go core
decides, per origin, whether credentials may be sent and which headers to send.
Answers are kept per origin for as long as the core says they are fresh, so a
request normally costs a dictionary lookup.

The auth object also registers a response hook on each request it adds headers
to. ``requests`` runs response hooks before it follows a redirect, and builds
the next hop from a copy of the request the hook sees, so the hook decides
what the next hop carries:

* a redirect to another origin (scheme, host, port) loses our headers, and
  gets them back only if the core allows that origin (``requests`` itself
  then still drops ``Authorization`` when the host or port changes, except
  for an http->https upgrade on the default ports; if such an allowed target
  answers 401, the request is sent to it once more with the credential);
* a 401 to a request that carried our credential drops the cached credential
  (here and in the core), fetches again and, if it changed, sends the request
  once more through the same connection adapter with the same settings
  (timeout, TLS verification, client certificate, proxies), as requests' own
  HTTPDigestAuth does. At most one refetch per credential per
  ``REFETCH_INTERVAL`` seconds; no marker header.

This module is the entry point MLflow imports: it imports nothing that can
fail, and starts nothing. If the native core cannot work, the auth object
raises ``MlflowSecretsAuthError``: a request never goes out without the
credentials it was meant to carry.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, TypeVar

from mlflow.tracking.request_auth.abstract_request_auth_provider import RequestAuthProvider
from requests import PreparedRequest, Response
from requests.auth import AuthBase

from mlflow_secrets_auth import _env, _hooks, _native

NAME = "mlflow_secrets_auth"
LOG_LEVEL_ENV = "MLFLOW_SECRETS_LOG_LEVEL"
logger = logging.getLogger("mlflow_secrets_auth")


class MlflowSecretsAuthError(RuntimeError):
    """No credentials could be produced; ``code`` and ``variable`` say why."""

    def __init__(self, message: str, code: str = "internal", variable: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.variable = variable


Items = _hooks.Items
# Per destination ("scheme://host:port"): (env generation, monotonic deadline, header items).
_entries: dict[str, tuple[int, float, Items]] = {}
DENIAL_TTL = 1.0  # seconds a "host not allowed" answer is reused
REFETCH_INTERVAL = 5.0  # at most one refetch per credential this often after a 401
_limiter = _hooks.RefetchLimiter(REFETCH_INTERVAL)
_sync_lock = threading.Lock()
_synced: tuple[int, int, str, str] | None = None  # (transport, env generation, URIs) the core was last given
_said: set[str] = set()  # log messages already emitted once
_fork_hook = False


def _after_fork_in_child() -> None:
    """A child may be forked while another thread holds a lock: start afresh."""
    global _sync_lock, _synced, _limiter
    _sync_lock = threading.Lock()
    _synced = None
    _limiter = _hooks.RefetchLimiter(REFETCH_INTERVAL)
    _env._lock = threading.Lock()


class SecretsAuth(AuthBase):
    """Adds the secret-derived headers to each request its origin may receive."""

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        items = headers_for(_hooks.origin_key(r.url or ""))
        if items:
            for name, value in items:
                r.headers[name] = value
            r.register_hook("response", _Guard(tuple(name for name, _ in items)))
        return r


def headers_for(key: str) -> Items:
    """Our headers for an origin key: from the per-origin cache, or from the core."""
    entry = _entries.get(key)
    if (
        entry is not None
        and entry[0] == _env.current()
        and entry[1] > time.monotonic()
    ):
        return entry[2]
    return _lookup(key)


class _Guard:
    """The response hook of one request (shared by its redirect hops and retry)."""

    __slots__ = ("granted", "names")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.granted: str | None = None  # the origin a redirect was allowed to carry our headers to

    def __call__(self, resp: Response, **kwargs: Any) -> Response:
        original = resp.request  # the request requests copies for a redirect's next hop
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
        new = _hooks.redirect_headers(req.url, target, self._carried(req), headers_for)
        if new is None:
            return
        for r in {id(original): original, id(req): req}.values():
            _set(r, self.names, new)
        self.names = tuple(dict.fromkeys(self.names + tuple(name for name, _ in new)))
        self.granted = _hooks.origin_key(target) if new else None

    def _retry(self, resp: Response, kwargs: dict[str, Any]) -> Response:
        req = resp.request
        if req.url is None:
            return resp
        key = _hooks.origin_key(req.url)
        carried = self._carried(req)
        if not carried:
            # requests itself drops Authorization on a redirect to another
            # host or port, even one the core allowed: send it there once.
            if self.granted != key:
                return resp
            self.granted = None
            try:
                new = headers_for(key)
            except MlflowSecretsAuthError:
                return resp
            return self._resend(resp, new, kwargs) if new else resp
        try:
            if _limiter.allow(carried):
                invalidate()
            new = headers_for(key)
        except MlflowSecretsAuthError as exc:
            _once(logging.WARNING, f"mlflow-secrets-auth: the server answered 401 and no new credential: {exc}")
            return resp
        if not new or new == carried:
            return resp
        logger.info("mlflow-secrets-auth: %s answered 401; sending the request again with a new credential", key)
        return self._resend(resp, new, kwargs)

    def _resend(self, resp: Response, new: Items, kwargs: dict[str, Any]) -> Response:
        """Send resp's request again with new headers, through the same adapter and settings."""
        req = resp.request
        _ = resp.content  # release the connection for the new request
        resp.close()
        prep = req.copy()
        _copy_cookies(prep, req, resp)
        for r in (prep, req):  # req too: a redirect's next hop is copied from it
            _set(r, self.names, new)
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


def invalidate() -> None:
    """Forget every cached credential, in the core and here."""
    try:
        _native.transport().invalidate()
    except _native.NativeError as exc:
        raise MlflowSecretsAuthError(f"mlflow-secrets-auth: {exc}") from exc
    finally:
        _entries.clear()


_AUTH = SecretsAuth()


class SecretsAuthProvider(RequestAuthProvider):
    """Registered under the ``mlflow.request_auth_provider`` entry point."""

    def get_name(self) -> str:
        return NAME

    def get_auth(self) -> SecretsAuth:
        return _AUTH


def _once(level: int, message: str) -> None:
    if message not in _said:
        _said.add(message)
        logger.log(level, "%s", message)


def log_level(raw: str | None) -> tuple[int, str | None]:
    """The logger level for MLFLOW_SECRETS_LOG_LEVEL, and a warning if it is not one."""
    text = (raw or "").strip().upper()
    if not text:
        return logging.INFO, None
    level = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "WARN": logging.WARNING,
             "ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL}.get(text)
    if level is None:
        shown = (raw or "")[:40]
        return logging.INFO, (
            f"mlflow-secrets-auth: {LOG_LEVEL_ENV}={shown!r} is not one of DEBUG, INFO, WARNING, ERROR; using INFO"
        )
    return level, None


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


def sync(t: _native.Transport) -> int:
    """Hand the core the current environment if it changed; return its generation."""
    global _synced, _fork_hook
    if not _fork_hook:
        _native.at_fork(_after_fork_in_child)
        _fork_hook = True
    _env.track()
    generation = _env.current()  # read before copying, so a racing write is seen next time
    tracking, registry = _mlflow_uris()
    state = (id(t), generation, tracking, registry)
    with _sync_lock:
        if _synced != state:
            env = dict(os.environ)
            env["MLFLOW_TRACKING_URI"] = tracking
            env["MLFLOW_REGISTRY_URI"] = registry
            reply = t.set_env(env)
            if not reply.get("ok"):
                raise MlflowSecretsAuthError(str(reply.get("message")), str(reply.get("code")))
            _entries.clear()
            _said.clear()
            level, warning = log_level(env.get(LOG_LEVEL_ENV))
            logger.setLevel(level)
            if warning:
                _once(logging.WARNING, warning)
            _synced = state
    return generation


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


def _shown(key: str) -> str:
    """An origin key fit for a log line: any userinfo as ***."""
    scheme, sep, rest = key.partition("://")
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}" if "@" in rest else key


def _lookup(key: str) -> Items:
    try:
        t = _native.transport()
        generation = sync(t)
        reply: dict[str, Any] = interruptible(lambda: t.headers(key))
    except _native.NativeError as exc:
        raise MlflowSecretsAuthError(f"mlflow-secrets-auth: {exc}") from exc
    log_events(reply)
    if reply.get("ok"):
        items: Items = tuple(reply["headers"].items())
        max_age = reply.get("max_age_ms", 0) / 1000.0
        _entries[key] = (generation, time.monotonic() + max_age, items)
        logger.debug(
            "mlflow-secrets-auth: %s: header %s from %s, reused for %.1f s",
            _shown(key), ", ".join(name for name, _ in items), reply.get("provider"), max_age,
        )
        if stale := reply.get("stale"):  # the core's events carry the one warning per outage
            _once(logging.DEBUG, f"mlflow-secrets-auth: serving the last good credential: {stale['message']}")
        for attempt in reply.get("attempts", ()):  # the outage warning itself comes once, as an event
            _once(logging.DEBUG, f"mlflow-secrets-auth: skipped {attempt['provider']}: {attempt['message']}")
        return items
    message = f"mlflow-secrets-auth: {reply.get('message')}"
    if reply.get("code") == "host_not_allowed":
        _once(logging.WARNING, message)
        # Kept briefly: a change of environment ends it at once, while
        # mlflow.set_registry_uri (which changes no variable) is seen within DENIAL_TTL.
        _entries[key] = (generation, time.monotonic() + DENIAL_TTL, ())
        return ()
    raise MlflowSecretsAuthError(message, str(reply.get("code")), reply.get("variable"))
