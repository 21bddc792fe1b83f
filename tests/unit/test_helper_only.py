"""A helper-only build (musllinux, macOS without a dylib): the package holds
no library, uses the helper without a warning, and `info` says so."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow_secrets_auth
from mlflow_secrets_auth import _native

PACKAGE = Path(mlflow_secrets_auth.__file__).parent
ROOT = Path(__file__).resolve().parents[2]


def static_helper() -> Path:
    """The static Go helper of this tree's Go sources, built once per content:
    `go build` links it again every time (seconds of CPU and reads of every
    dependency's archive), and `make mutants` runs this test once per mutant."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    digest = hashlib.sha256(subprocess.run([go, "version"], capture_output=True, check=True).stdout)
    for f in sorted([ROOT / "go.mod", ROOT / "go.sum", *(ROOT / "go").rglob("*.go")]):
        if not f.name.endswith("_test.go"):
            digest.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    out = Path(tempfile.gettempdir()) / f"msa-static-helper-{digest.hexdigest()[:16]}" / _native.HELPER_NAME
    if not out.is_file():
        out.parent.mkdir(exist_ok=True)
        partial = out.with_name(f"{out.name}.{os.getpid()}.tmp")
        subprocess.run([go, "build", "-trimpath", "-o", str(partial), "./go/cmd/msa-helper"],
                       cwd=ROOT, env=dict(os.environ, CGO_ENABLED="0"), check=True, capture_output=True, timeout=600)
        partial.replace(out)
    return out


def test_info_names_the_helper_transport_and_nothing_warns(tmp_path: Path) -> None:
    pkg = tmp_path / "mlflow_secrets_auth"
    pkg.mkdir()
    for f in PACKAGE.glob("*.py"):
        shutil.copy(f, pkg / f.name)
    # A helper-only wheel carries the static Go helper (the launcher of the other
    # wheels needs the library beside it): build that one.
    shutil.copy2(static_helper(), pkg / _native.HELPER_NAME)
    assert not (pkg / _native.LIBRARY_NAME).exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "VAULT_", "AWS_", "AZURE_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env["MLFLOW_TRACKING_URI"] = "https://mlflow.example"
    out = subprocess.run(
        [sys.executable, "-m", "mlflow_secrets_auth.cli", "info"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert f"transport: helper process (no {_native.LIBRARY_NAME} in this build)" in out.stdout, out.stdout + out.stderr
    assert out.stdout.count("transport:") == 1
    assert f"ABI {_native.ABI_VERSION})" in out.stdout  # the helper answered info
    assert "WARNING" not in out.stderr.upper(), out.stderr
