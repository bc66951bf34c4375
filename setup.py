"""Build of the optional native fast path (``vspan.datapath._native``, ``vspan.ports._ring``).

Everything else is in pyproject.toml. The C extension needs only a C compiler
and the Python headers; when it cannot be built the package still installs and
the switch uses the Python replay (``docs/datapath.md``).
"""

from __future__ import annotations

import logging

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

log = logging.getLogger("vspan.setup")


class OptionalBuildExt(build_ext):
    """Build extensions, but never fail the install because of them."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as err:  # no compiler, no headers: the Python path is used
            log.warning("vspan: native fast path not built (%s); using the Python path", err)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as err:
            log.warning("vspan: %s not built (%s); using the Python path", ext.name, err)


FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]

setup(
    ext_modules=[
        Extension("vspan.datapath._native", ["src/vspan/datapath/_native.c"],
                  depends=["src/vspan/ports/_segment.h", "src/vspan/datapath/_tcpstep.h",
                           "src/vspan/datapath/_erspan_tx.h",
                           "src/vspan/datapath/_conntrack.h", "src/vspan/datapath/_wake.h",
                           "src/vspan/datapath/_slots.h"],
                  extra_compile_args=FLAGS,
                  optional=True),
        Extension("vspan.ports._ring", ["src/vspan/ports/_ring.c"],
                  depends=["src/vspan/ports/_segment.h", "src/vspan/datapath/_slots.h"],
                  extra_compile_args=FLAGS,
                  optional=True),
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
