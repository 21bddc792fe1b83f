"""The sdist carries the Go sources, and a wheel built from it is a platform
wheel with the library, the cffi module and the entry points inside."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_sdist_then_wheel(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "-o", str(tmp_path), str(ROOT)], check=True, capture_output=True
    )
    (sdist,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in (
        "build.sh",
        "go.mod",
        "go.sum",
        "go/capi/main.go",
        "include/mlflow_secrets_auth.h",
        "go/internal/provider/vault/vault.go",
        "python/build_ffi.py",
        "build_backend/msa_backend.py",
    ):
        assert needed in names, needed
    assert not any(n.endswith((".so", "mlflow_secrets_auth/_ffi.py", "_test.go")) for n in names), (
        "build outputs or tests in the sdist"
    )

    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(sdist)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("*.whl")
    assert wheel.name.endswith("-py3-none-linux_x86_64.whl"), wheel.name
    with zipfile.ZipFile(wheel) as zf:
        files = zf.namelist()
        entry_points = next(zf.read(n).decode() for n in files if n.endswith("entry_points.txt"))
        metadata = next(zf.read(n).decode() for n in files if n.endswith("METADATA"))
    assert any(f.endswith("mlflow_secrets_auth/libmlflow_secrets_auth.so") for f in files)
    assert any(f.endswith("mlflow_secrets_auth/_ffi.py") for f in files)
    with zipfile.ZipFile(wheel) as zf:
        helper = next(i for i in zf.infolist() if i.filename.endswith("mlflow_secrets_auth/msa-helper"))
    assert (helper.external_attr >> 16) & 0o111, "msa-helper must be executable in the wheel"
    assert "[mlflow.request_auth_provider]" in entry_points
    assert "mlflow_secrets_auth = mlflow_secrets_auth.provider:SecretsAuthProvider" in entry_points
    assert "mlflow-secrets-auth = mlflow_secrets_auth.cli:main" in entry_points
    requires = sorted(
        line.split()[1].split(">")[0] for line in metadata.splitlines() if line.startswith("Requires-Dist")
    )
    assert requires == ["cffi", "mlflow-skinny"], requires
