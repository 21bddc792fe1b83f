"""The MLflow request-auth provider ``mlflow_secrets_auth``.

MLflow calls ``get_auth()`` on every request and hands the returned object to
``requests``, which calls it with the prepared request. That is where the
destination is known, so that is where the host policy is applied: the Go core
decides, per host, whether credentials may be sent and which headers to send.
Answers are kept per host for as long as the core says they are fresh, so a
request normally costs a dictionary lookup.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, TypeVar

from mlflow.tracking.request_auth.abstract_request_auth_provider import RequestAuthProvider
from requests import PreparedRequest
from requests.auth import AuthBase

from mlflow_secrets_auth import _env, _native

NAME = "mlflow_secrets_auth"
logger = logging.getLogger("mlflow_secrets_auth")


class MlflowSecretsAuthError(RuntimeError):
    """No credentials could be produced; ``code`` and ``variable`` say why."""

    def __init__(self, message: str, code: str = "internal", variable: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.variable = variable


# Per destination ("scheme://host:port"): (env generation, monotonic deadline, header items).
_entries: dict[str, tuple[int, float, tuple[tuple[str, str], ...]]] = {}
DENIAL_TTL = 1.0  # seconds a "host not allowed" answer is reused
_sync_lock = threading.Lock()
_synced: tuple[int, int, str, str] | None = None  # (transport, env generation, URIs) the core was last given
_said: set[str] = set()  # log messages already emitted once


def _after_fork_in_child() -> None:
    """A child may be forked while another thread holds the lock: start afresh."""
    global _sync_lock, _synced
    _sync_lock = threading.Lock()
    _synced = None


os.register_at_fork(after_in_child=_after_fork_in_child)


class SecretsAuth(AuthBase):
    """Adds the secret-derived headers to each request its host may receive."""

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        url = r.url or ""
        end = url.find("/", 8)  # the slash after "scheme://host:port" ("https://" is 8 characters)
        key = url if end < 0 else url[:end]
        entry = _entries.get(key)
        if (
            entry is not None
            and entry[0] == (_env.generation if _env.tracked else _env.current())
            and entry[1] > time.monotonic()
        ):
            items = entry[2]
        else:
            items = _lookup(key)
        for name, value in items:
            r.headers[name] = value
        return r


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
    global _synced
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
            level = logging.getLevelName(env.get("MLFLOW_SECRETS_LOG_LEVEL", "INFO").strip().upper())
            logger.setLevel(level if isinstance(level, int) else logging.INFO)
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
    done.wait()
    ok, value = outcome[0]
    if ok:
        result: T = value
        return result
    raise value


def _lookup(key: str) -> tuple[tuple[str, str], ...]:
    try:
        t = _native.transport()
        generation = sync(t)
        reply: dict[str, Any] = interruptible(lambda: t.headers(key))
    except _native.NativeError as exc:
        raise MlflowSecretsAuthError(f"mlflow-secrets-auth: {exc}") from exc
    if reply.get("ok"):
        items = tuple(reply["headers"].items())
        _entries[key] = (generation, time.monotonic() + reply.get("max_age_ms", 0) / 1000.0, items)
        if stale := reply.get("stale"):
            _once(logging.WARNING, f"mlflow-secrets-auth: serving the last good credential: {stale['message']}")
        for attempt in reply.get("attempts", ()):
            _once(logging.WARNING, f"mlflow-secrets-auth: skipped {attempt['provider']}: {attempt['message']}")
        return items
    message = f"mlflow-secrets-auth: {reply.get('message')}"
    if reply.get("code") == "host_not_allowed":
        _once(logging.WARNING, message)
        # Kept briefly: a change of environment ends it at once, while
        # mlflow.set_registry_uri (which changes no variable) is seen within DENIAL_TTL.
        _entries[key] = (generation, time.monotonic() + DENIAL_TTL, ())
        return ()
    raise MlflowSecretsAuthError(message, str(reply.get("code")), reply.get("variable"))
