"""Environment tracking: os.environ writes are counted; a replaced os.environ
(a dict, a monkeypatch, the original put back) is seen at the next call."""

from __future__ import annotations

import os

import pytest
from mlflow_secrets_auth import _env


def test_writes_through_os_environ_change_the_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    _env.track()
    assert isinstance(os.environ, _env._CountingEnviron)
    g0 = _env.current()
    assert _env.current() == g0  # no write, no change
    monkeypatch.setenv("MSA_UNIT_TEST_VAR", "1")
    g1 = _env.current()
    assert g1 != g0
    os.environ.update({"MSA_UNIT_TEST_VAR": "2"})  # update() goes through __setitem__
    g2 = _env.current()
    assert g2 != g1
    monkeypatch.delenv("MSA_UNIT_TEST_VAR")
    assert _env.current() != g2
    g3 = _env.current()
    os.environ.setdefault("MSA_UNIT_TEST_OTHER", "x")
    try:
        assert _env.current() != g3
    finally:
        del os.environ["MSA_UNIT_TEST_OTHER"]


def test_beginning_to_count_is_not_a_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin reads the generation before it starts counting writes (its first request): the switch
    alone must not look like a change, or that request's headers are fetched again at the next one."""
    for name in ("_seen", "_counted", "_last_copy"):  # a fresh start: nothing seen yet
        monkeypatch.setattr(_env, name, None)
    monkeypatch.setattr(os.environ, "__class__", os._Environ)  # as before track(); restored after the test
    g0 = _env.current()
    _env.track()
    assert _env.current() == g0
    assert _env.current() == g0
    # A write made before the switch, which nothing counted, is still seen.
    for name in ("_seen", "_counted", "_last_copy"):
        monkeypatch.setattr(_env, name, None)
    monkeypatch.setattr(os.environ, "__class__", os._Environ)
    g1 = _env.current()
    monkeypatch.setenv("MSA_UNIT_TEST_VAR", "uncounted")
    _env.track()
    assert _env.current() != g1


def test_track_is_idempotent() -> None:
    _env.track()
    cls = type(os.environ)
    _env.track()
    assert type(os.environ) is cls


def test_a_replaced_environ_is_seen_and_so_is_the_original_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a notebook or a test does: os.environ replaced for real, after the
    process environment was tracked and read, then restored."""
    _env.track()
    original = os.environ
    g0 = _env.current()
    replacement = {**os.environ, "MSA_UNIT_TEST_VAR": "replaced"}
    monkeypatch.setattr(os, "environ", replacement)
    _env.track()  # a plain dict cannot count its writes: it is compared by content
    g1 = _env.current()
    assert g1 != g0
    assert _env.current() == g1  # unchanged content, same generation
    replacement["MSA_UNIT_TEST_VAR"] = "written"
    g2 = _env.current()
    assert g2 != g1
    assert _env.current() == g2
    monkeypatch.setattr(os, "environ", original)  # put back
    g3 = _env.current()
    assert g3 != g2
    assert _env.current() == g3
    monkeypatch.setenv("MSA_UNIT_TEST_VAR", "counted again")  # the original counts its writes again
    assert _env.current() != g3
