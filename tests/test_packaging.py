"""The sdist carries the Go sources and the license (not the tests, which need
the checkout's harness), and a wheel built from it is a platform wheel with the
library and helper at its root (platlib), the cffi module, the license and the
entry points inside. Cross-built release wheels: tests/test_wheels.py."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
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
        "packaging/launcher/launcher.c",
        "LICENSE",
    ):
        assert needed in names, needed
    assert not any(
        n.startswith(("tests/", "packaging/")) and not "packaging/launcher/launcher.c".startswith(n) for n in names
    ), "tests without their harness in the sdist"
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
    # Built here with this machine's compiler: tagged for this platform (a local
    # wheel; the manylinux ones for PyPI come from `make wheels`), never py3-none-any.
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    assert wheel.name.endswith(f"-py3-none-{platform}.whl"), wheel.name
    with zipfile.ZipFile(wheel) as zf:
        files = zf.namelist()
        entry_points = next(zf.read(n).decode() for n in files if n.endswith("entry_points.txt"))
        metadata = next(zf.read(n).decode() for n in files if n.endswith("METADATA"))
        wheel_meta = next(zf.read(n).decode() for n in files if n.endswith(".dist-info/WHEEL"))
        license_text = next(zf.read(n).decode() for n in files if n.endswith(".dist-info/licenses/LICENSE"))
        helper = next(i for i in zf.infolist() if i.filename == "mlflow_secrets_auth/msa-helper")
    # At the root, not under .data/purelib: auditwheel and installers see a platform wheel.
    assert "Root-Is-Purelib: false" in wheel_meta
    assert "mlflow_secrets_auth/libmlflow_secrets_auth.so" in files
    assert "mlflow_secrets_auth/_ffi.py" in files
    assert not any(".data/" in f for f in files), files
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "License-Expression: Apache-2.0" in metadata
    assert (helper.external_attr >> 16) & 0o111, "msa-helper must be executable in the wheel"
    assert "[mlflow.request_auth_provider]" in entry_points
    assert "mlflow_secrets_auth = mlflow_secrets_auth.provider:SecretsAuthProvider" in entry_points
    assert "mlflow-secrets-auth = mlflow_secrets_auth.cli:main" in entry_points
    requires = sorted(
        line.split()[1].split(">")[0] for line in metadata.splitlines() if line.startswith("Requires-Dist")
    )
    assert requires == ["cffi", "mlflow-skinny"], requires


def test_go_version_agrees() -> None:
    """go.mod's go (and toolchain) line, build.sh's message and the README name one Go release."""
    go_mod = (ROOT / "go.mod").read_text()
    go_line = re.search(r"^go (\d+)\.(\d+)(?:\.\d+)?$", go_mod, re.M)
    assert go_line, "go.mod has no go line"
    minor = f"{go_line.group(1)}.{go_line.group(2)}"
    toolchain = re.search(r"^toolchain go(\d+\.\d+)", go_mod, re.M)
    assert toolchain is None or toolchain.group(1) == minor, toolchain
    build_sh = (ROOT / "build.sh").read_text()
    assert re.findall(r"go (\d+\.\d+) or newer", build_sh) == [minor], build_sh
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"Go \(?(\d+\.\d+) or newer", readme))
    assert named == {minor}, f"README names Go {named}, go.mod says {minor}"
