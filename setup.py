"""Build tinype's compiled kernels: pyx/*.pyx -> tinype._ext.

`pip install -e .` runs this. Two switches:
- OpenMP is probed by compiling a tiny program with -fopenmp; if the compiler cannot, the
  extension is built serially (prange then runs as a plain loop) instead of failing.
- TINYPE_CYTHON_DEBUG=1 rebuilds with bounds and wraparound checks on, for debugging a kernel:
      TINYPE_CYTHON_DEBUG=1 pip install -e .
- The kernels are compiled for the machine that builds them (-march=native, when the compiler
  takes it): an editable install runs where it was built, and AVX2/FMA roughly double the attention
  kernel's speed over the SSE2 baseline. TINYPE_PORTABLE=1 builds for any x86-64 instead (for a
  wheel that other machines will use).
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

PYX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyx")
DEBUG = os.environ.get("TINYPE_CYTHON_DEBUG", "0") not in ("", "0")
PORTABLE = os.environ.get("TINYPE_PORTABLE", "0") not in ("", "0")

# Vectorised math: with these flags and pyx/simd_math.h, gcc turns exp loops into calls to glibc's
# libmvec SIMD exp (GELU's forward: 0.2 ms instead of 3.6 ms for 512k floats). -fno-finite-math-only keeps NaN and
# inf semantics (overflowing logits, masked -inf). The flags go to the compiler only, never to the
# linker: gcc < 13 links crtfastmath.o into a shared library built with -ffast-math, which would
# switch the whole process (NumPy included) to flush-to-zero.
FAST_MATH = ["-ffast-math", "-fno-finite-math-only"]

MATH_PROBE = r"""
#include "simd_math.h"
void f(const float *x, float *y, int n) { for (int i = 0; i < n; i++) y[i] = expf(x[i]); }
int main(void) { float x[64] = {0}, y[64]; f(x, y, 64); return y[0] == 1.0f ? 0 : 1; }
"""

OPENMP_PROBE = r"""
#include <omp.h>
int main(void) { int n = 0;
#pragma omp parallel reduction(+:n)
  n += 1;
  return n > 0 ? 0 : 1; }
"""


def compiles(compiler, code, compile_args=(), link_args=(), libraries=()) -> bool:
    """Can the compiler setuptools will use compile and link this program with these flags?"""
    tmp = tempfile.mkdtemp(prefix="tinype-probe-")
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(code)
        objs = compiler.compile([src], output_dir=tmp, include_dirs=[PYX], extra_postargs=list(compile_args))
        compiler.link_executable(objs, os.path.join(tmp, "probe"), libraries=list(libraries),
                                 extra_postargs=list(link_args))
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExtWithOpenMP(build_ext):
    def build_extensions(self):
        unix = sys.platform != "win32"
        use_omp = unix and compiles(self.compiler, OPENMP_PROBE, ["-fopenmp"], ["-fopenmp"])
        omp = ["-fopenmp"] if use_omp else []
        math_flags, libs, macros = [], [], [("TINYPE_NO_MVEC", "1")]
        if unix and compiles(self.compiler, MATH_PROBE, ["-O3"] + FAST_MATH, libraries=["mvec", "m"]):
            math_flags, libs, macros = FAST_MATH, ["mvec", "m"], []
        elif unix and compiles(self.compiler, MATH_PROBE, ["-O3", "-DTINYPE_NO_MVEC"] + FAST_MATH):
            math_flags = FAST_MATH                # no libmvec (not glibc): scalar libm calls
        arch = []
        if unix and not PORTABLE and compiles(self.compiler, MATH_PROBE, ["-O3", "-march=native"] + math_flags,
                                              libraries=libs):
            arch = ["-march=native"]
        print(f"tinype: building kernels {'with' if use_omp else 'WITHOUT'} OpenMP, "
              f"{'vectorised' if libs else 'scalar'} math, {'native' if arch else 'portable'} instructions"
              f"{' (debug: bounds checks on)' if DEBUG else ''}")
        for ext in self.extensions:
            ext.extra_compile_args += ["-O3"] + arch + math_flags + omp
            ext.extra_link_args += omp
            ext.libraries += libs
            ext.define_macros += macros
        super().build_extensions()


extensions = [
    Extension(
        "tinype._ext",
        sources=["pyx/_ext.pyx"],
        include_dirs=[np.get_include(), PYX],
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
