"""Cheap detection of os.environ changes.

The Go library cannot see changes made through os.environ after the process
started, so they are handed over. To avoid re-reading the environment on
every request, os.environ's class is swapped for a subclass that counts
writes; ``current()`` then costs one identity check. When os.environ is
replaced by another object (``os.environ = dict(...)``, a test's monkeypatch,
or the original put back), the change of object itself counts as a change,
and an object that cannot count its writes is compared by content on every
call.
"""

from __future__ import annotations

import os
import threading
from typing import Any

_lock = threading.Lock()
generation = 0
_seen: Any = None  # the os.environ object current() last saw
_counted: Any = None  # the same object when it counts its own writes, else None
_last_copy: dict[str, str] | None = None  # the content of _seen when it does not count


class _CountingEnviron(os._Environ):  # type: ignore[type-arg]
    """os.environ that counts writes (set, delete, and all that use them)."""

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key, value)
        _bump()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        _bump()


def _bump() -> None:
    global generation
    with _lock:
        generation += 1


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a parent's thread may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def track() -> None:
    """Make the process environment count its writes (idempotent)."""
    env = os.environ
    if type(env) is os._Environ:
        env.__class__ = _CountingEnviron


def current() -> int:
    """Return a number that changes whenever os.environ has changed."""
    global generation, _seen, _counted, _last_copy
    env = os.environ
    if env is _counted:
        return generation
    counting = isinstance(env, _CountingEnviron)
    snapshot = None if counting else dict(env)
    with _lock:
        if env is not _seen:
            changed = True
        elif counting:  # the object last compared by content has just begun to count (track()): compare once more
            changed = _last_copy is None or dict(env) != _last_copy
        else:
            changed = snapshot != _last_copy
        if changed:
            generation += 1
        _seen, _last_copy = env, snapshot
        _counted = env if counting else None
        return generation
