"""PEP 517 backend: setuptools, after build.sh has built the Go library.

Wheels get a platform tag (see setup.py) because they carry a native library.
``make wheels`` (packaging/build_wheels.py) builds the wheels for every
platform from this Linux machine and calls this backend with MSA_PREBUILT=1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (  # noqa: F401  (re-exported hooks)
    build_sdist,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

ROOT = Path(__file__).resolve().parent.parent


def _build_native() -> None:
    if os.environ.get("MSA_PREBUILT") == "1":
        # packaging/build_wheels.py cross-builds the binaries for each platform
        # and stages them next to the package before calling this backend.
        return
    env = dict(os.environ, PYTHON=sys.executable)
    subprocess.run(["bash", str(ROOT / "build.sh")], check=True, env=env)


def build_wheel(wheel_directory: str, config_settings: Any = None, metadata_directory: Any = None) -> str:
    _build_native()
    return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory: str, config_settings: Any = None, metadata_directory: Any = None) -> str:
    _build_native()
    return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
