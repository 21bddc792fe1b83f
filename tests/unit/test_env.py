"""Environment tracking: os.environ writes are counted; a replaced os.environ
falls back to comparing snapshots."""

from __future__ import annotations

import os

import pytest
from mlflow_secrets_auth import _env


def test_writes_through_os_environ_change_the_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    _env.track()
    assert _env.tracked
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
    os.environ.setdefault("MSA_UNIT_TEST_OTHER", "x")
    try:
        assert _env.current() != g2
    finally:
        del os.environ["MSA_UNIT_TEST_OTHER"]


def test_track_is_idempotent() -> None:
    _env.track()
    cls = type(os.environ)
    _env.track()
    assert type(os.environ) is cls


def test_a_replaced_environ_is_compared_by_content(monkeypatch: pytest.MonkeyPatch) -> None:
    replacement = dict(os.environ)
    monkeypatch.setattr(os, "environ", replacement)
    monkeypatch.setattr(_env, "tracked", False)
    _env.track()  # a plain dict cannot count its writes
    assert _env.tracked is False
    g0 = _env.current()
    assert _env.current() == g0
    replacement["MSA_UNIT_TEST_VAR"] = "1"
    g1 = _env.current()
    assert g1 != g0
    assert _env.current() == g1
    replacement["MSA_UNIT_TEST_VAR"] = "2"
    assert _env.current() != g1
