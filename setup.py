"""Build tinype's compiled kernels: pyx/*.pyx -> tinype._ext.

`pip install -e .` runs this. Two switches:
- OpenMP is probed by compiling a tiny program with -fopenmp; if the compiler cannot, the
  extension is built serially (prange then runs as a plain loop) instead of failing.
- TINYPE_CYTHON_DEBUG=1 rebuilds with bounds and wraparound checks on, for debugging a kernel:
      TINYPE_CYTHON_DEBUG=1 pip install -e .
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("TINYPE_CYTHON_DEBUG", "0") not in ("", "0")

OPENMP_PROBE = r"""
#include <omp.h>
int main(void) { int n = 0;
#pragma omp parallel reduction(+:n)
  n += 1;
  return n > 0 ? 0 : 1; }
"""


def compiler_has_openmp(compiler) -> bool:
    """Compile and link a small OpenMP program with the compiler setuptools will use."""
    tmp = tempfile.mkdtemp(prefix="tinype-omp-")
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(OPENMP_PROBE)
        objs = compiler.compile([src], output_dir=tmp, extra_postargs=["-fopenmp"])
        compiler.link_executable(objs, os.path.join(tmp, "probe"), extra_postargs=["-fopenmp"])
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExtWithOpenMP(build_ext):
    def build_extensions(self):
        use_omp = sys.platform != "win32" and compiler_has_openmp(self.compiler)
        flags = ["-fopenmp"] if use_omp else []
        print(f"tinype: building kernels {'with' if use_omp else 'WITHOUT'} OpenMP"
              f"{' (debug: bounds checks on)' if DEBUG else ''}")
        for ext in self.extensions:
            ext.extra_compile_args += ["-O3"] + flags
            ext.extra_link_args += flags
        super().build_extensions()


extensions = [
    Extension(
        "tinype._ext",
        sources=["pyx/_ext.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": DEBUG,
            "wraparound": DEBUG,
            "initializedcheck": DEBUG,
            "cdivision": not DEBUG,
        },
        # Recompile when the debug switch flips, even if the .pyx did not change.
        force=DEBUG,
    ),
    cmdclass={"build_ext": BuildExtWithOpenMP},
)
