"""Only here to make wheels platform wheels: they carry a native library and a
helper executable but no CPython extension, so the tag is py3-none-<platform>.

``has_ext_modules() -> True`` puts the files at the wheel root (platlib), where
``auditwheel`` inspects them. ``MSA_PLAT_NAME`` (set by packaging/build_wheels.py
for cross-built wheels) overrides the platform tag, e.g.
``manylinux_2_17_aarch64.manylinux2014_aarch64``.
"""

import os

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution


class BinaryDistribution(Distribution):
    def has_ext_modules(self) -> bool:
        return True


class PlatformWheel(bdist_wheel):
    def finalize_options(self) -> None:
        plat = os.environ.get("MSA_PLAT_NAME")
        if plat:
            self.plat_name = plat
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self) -> tuple[str, str, str]:
        _, _, plat = super().get_tag()
        # bdist_wheel turns the dot of a compressed tag set into "_"; keep it.
        return "py3", "none", os.environ.get("MSA_PLAT_NAME") or plat


# Put at the root of site-packages, so it runs at interpreter start: when
# MLFLOW_TRACKING_AUTH selects the plugin, OTLP/HTTP trace export uses its
# credential provider (python/mlflow_secrets_auth/_startup.py).
PTH_NAME = "mlflow_secrets_auth_otlp.pth"
PTH_LINE = "import mlflow_secrets_auth._startup\n"


class BuildPyWithPth(build_py):
    def run(self) -> None:
        super().run()
        target = os.path.join(self.build_lib, PTH_NAME)
        with open(target, "w", encoding="ascii") as f:
            f.write(PTH_LINE)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), os.path.join(self.build_lib, PTH_NAME)]


setup(distclass=BinaryDistribution, cmdclass={"bdist_wheel": PlatformWheel, "build_py": BuildPyWithPth})
