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


setup(distclass=BinaryDistribution, cmdclass={"bdist_wheel": PlatformWheel})
