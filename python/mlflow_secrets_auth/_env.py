"""Cheap detection of os.environ changes.

The Go library cannot see changes made through os.environ after the process
started, so they are handed over. To avoid re-reading the environment on
every request, os.environ's class is swapped for a subclass that counts
writes; the count is compared per request. If os.environ was replaced by
something else, a full comparison is used instead.
"""

from __future__ import annotations

import os
import threading

_lock = threading.Lock()
generation = 0
tracked = False  # os.environ counts its writes; generation is then exact
_last_copy: dict[str, str] | None = None


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


def track() -> None:
    """Start counting os.environ writes (idempotent)."""
    global tracked
    env = os.environ
    if isinstance(env, _CountingEnviron):
        tracked = True
    elif type(env) is os._Environ:
        env.__class__ = _CountingEnviron
        tracked = True


def current() -> int:
    """Return a number that changes whenever os.environ has changed."""
    global _last_copy
    if tracked:
        return generation
    snapshot = dict(os.environ)
    if snapshot != _last_copy:
        _last_copy = snapshot
        _bump()
    return generation
