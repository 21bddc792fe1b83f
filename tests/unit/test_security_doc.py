"""SECURITY.md names the tests that prove each rule: every one must exist, and
every sweep scenario it names must be in the sweep. A renamed or deleted test
fails here instead of leaving the threat model pointing at nothing."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "SECURITY.md").read_text()


def _text(folder: str, pattern: str) -> str:
    """Every file under ROOT/folder matching pattern (no git: make mutants runs on a copy of the tree)."""
    return "\n".join(f.read_text() for f in sorted((ROOT / folder).rglob(pattern)) if f.is_file())


def test_every_named_test_exists() -> None:
    go, py = _text("go", "*_test.go"), _text("tests", "*.py")
    named = set(re.findall(r"`((?:Test|Fuzz)[A-Za-z0-9_]+|test_[a-z0-9_]+)`", DOC))
    assert len(named) >= 20, f"SECURITY.md names too few tests to be checked: {sorted(named)}"
    missing = sorted(
        n for n in named
        if not re.search(rf"^func {n}\(", go, re.M) and not re.search(rf"^\s*def {n}\(", py, re.M)
    )
    assert not missing, f"SECURITY.md names tests that do not exist: {missing}"


def test_every_named_sweep_scenario_exists() -> None:
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    try:
        import test_egress_sweep
    finally:
        sys.path.remove(str(ROOT / "tests"))
    # "sweep `a`, `b` and its control `c`": every backticked name after "sweep" in a cell.
    named = {name for cell in re.findall(r"sweep (`[^|]*)", DOC) for name in re.findall(r"`([a-z0-9-]+)`", cell)}
    assert len(named) >= 8, f"SECURITY.md names too few sweep scenarios: {sorted(named)}"
    missing = sorted(named - set(test_egress_sweep.SCENARIOS))
    assert not missing, f"SECURITY.md names sweep scenarios that do not exist: {missing}"


def test_every_named_test_file_exists() -> None:
    files = set(re.findall(r"`(tests/[A-Za-z0-9_/]+\.py)`", DOC))
    assert files, "SECURITY.md names no test file"
    assert not sorted(f for f in files if not (ROOT / f).is_file())
