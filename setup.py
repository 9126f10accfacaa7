"""Build tinype's compiled kernels: pyx/*.pyx -> tinype._ext.

`pip install .` (or `pip install -e .`, or `python -m build`) runs this. The build is portable by
default and fast everywhere:
- The whole extension is compiled for the baseline of its architecture (x86-64: SSE2; no
  -march=native), so a wheel runs on any machine of that architecture: pip's wheel cache, a shared
  cluster image, a CI artefact. Only the attention kernel's register tiles (pyx/tiles.h) and the
  float32 GELU and cross-entropy loops (pyx/elementwise.h) are also
  compiled for AVX2 + FMA and for AVX-512, through function-level target attributes; the extension
  picks the best one this CPU supports when it loads (tinype.kernels.CPU_PATH), and
  TINYPE_CPU_PATH=avx2|portable lowers that choice at run time. The portable path has tiles too,
  in the 128-bit vectors every x86-64 (SSE2) and aarch64 (NEON) has. On other architectures or
  compilers without target attributes, the AVX copies are left out.
- TINYPE_NATIVE=1 adds -march=native for every loop: for a machine that builds and runs its own
  copy. (On the AVX-512 development machine the default build's attention was as fast as the
  native build it replaced: the README's "Portable builds" has the measurement.)
- OpenMP is probed by compiling a tiny program with -fopenmp; if the compiler cannot, the
  extension is built serially (prange then runs as a plain loop) instead of failing.
  TINYPE_NO_OPENMP=1 skips the probe, as a compiler without OpenMP would (CI builds it so).
- TINYPE_CYTHON_DEBUG=1 rebuilds with bounds and wraparound checks on, for debugging a kernel:
      TINYPE_CYTHON_DEBUG=1 pip install -e .
"""
import os
import platform
import shutil
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

PYX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyx")
DEBUG = os.environ.get("TINYPE_CYTHON_DEBUG", "0") not in ("", "0")
NATIVE = os.environ.get("TINYPE_NATIVE", "0") not in ("", "0")
NO_OPENMP = os.environ.get("TINYPE_NO_OPENMP", "0") not in ("", "0")

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


# The attention tiles: both instruction sets' copies, the run-time CPU check, called once.
TILES_PROBE = r"""
#include "tiles.h"
int main(void) { float a[6 * 64] = {0}, b[64 * 64] = {0}, c[6 * 64] = {0};
  if (tp_cpu_best() == 2) tp_mm_avx512(6, 64, 64, 1.0f, a, 64, 1, b, 64, c, 64);
  if (tp_cpu_best() == 1) tp_mm_avx2(6, 64, 64, 1.0f, a, 64, 1, b, 64, c, 64);
  return c[0] == 0.0f ? 0 : 1; }
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
        use_omp = unix and not NO_OPENMP and compiles(self.compiler, OPENMP_PROBE, ["-fopenmp"], ["-fopenmp"])
        omp = ["-fopenmp"] if use_omp else []
        math_flags, libs, macros = [], [], [("TINYPE_NO_MVEC", "1")]
        if unix and compiles(self.compiler, MATH_PROBE, ["-O3"] + FAST_MATH, libraries=["mvec", "m"]):
            math_flags, libs, macros = FAST_MATH, ["mvec", "m"], []
        elif unix and compiles(self.compiler, MATH_PROBE, ["-O3", "-DTINYPE_NO_MVEC"] + FAST_MATH):
            math_flags = FAST_MATH                # no libmvec (not glibc): scalar libm calls
        arch = []
        if unix and NATIVE and compiles(self.compiler, MATH_PROBE, ["-O3", "-march=native"] + math_flags,
                                        libraries=libs):
            arch = ["-march=native"]
        # the register tiles: AVX2 and AVX-512 copies where the compiler takes the target attributes
        tiles = "avx512, avx2"
        base = ["-O3"] + arch + math_flags
        if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
            tiles = "none (not x86: plain loops)"          # tiles.h leaves them out by itself
        elif not compiles(self.compiler, TILES_PROBE, base):
            macros = macros + [("TINYPE_NO_AVX512", "1")]
            tiles = "avx2"
            if not compiles(self.compiler, TILES_PROBE, base + ["-DTINYPE_NO_AVX512"]):
                macros = macros + [("TINYPE_NO_X86_TILES", "1")]
                tiles = "none"
        flags = base + omp
        print(f"tinype: building kernels {'with' if use_omp else 'WITHOUT'} OpenMP, "
              f"{'vectorised' if libs else 'scalar'} math, {'native' if arch else 'baseline'} instructions, "
              f"attention tiles compiled for: {tiles} (chosen at run time)"
              f"{' (debug: bounds checks on)' if DEBUG else ''}")
        for ext in self.extensions:
            ext.extra_compile_args += flags
            ext.extra_link_args += omp
            ext.libraries += libs
            # what tinype.kernels.build_info() reports (a C string: no quotes or backslashes inside)
            ext.define_macros += macros + [("TINYPE_BUILD_FLAGS", '"' + " ".join(flags) + '"')]
        super().build_extensions()


extensions = [
    Extension(
        "tinype._ext",
        sources=["pyx/_ext.pyx"],
        include_dirs=[np.get_include(), PYX],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        # rebuild when an included file changes (and ship them in the sdist)
        depends=sorted(os.path.join("pyx", f) for f in os.listdir(PYX) if f.endswith((".pxi", ".h"))),
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
