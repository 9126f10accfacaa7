# What every kernel file uses: cimports, the math helpers and the CPU path. Included first by
# _ext.pyx; the other .pxi files rely only on this one, never on each other's order.
#
# Float dispatch: each kernel's loop is a fused `def` function over `floating` (float / double)
# memoryviews, so Cython picks the specialisation from the arrays' dtype when the wrapper calls
# it; the wrappers validate (tinype/_checks.py, shared with the NumPy backend) and allocate, and
# never branch on the dtype themselves. Read-only inputs are `const` memoryviews throughout, so
# a read-only array (np.broadcast_to, a memory-mapped file, flags.writeable = False) is accepted.

import numpy as np
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport malloc, free
from libc.string cimport memset

from tinype import _checks
from tinype._checks import array as _check

cnp.import_array()

# Waking the second thread and joining it costs a few microseconds on an idle machine and far more
# when the cores are busy; a row-wise kernel with less work than this many elements runs on the
# calling thread (a decoding step's rows are 64 floats: thread start-up would be most of its time).
cdef Py_ssize_t PARALLEL_MIN = 32768

cdef extern from "simd_math.h" nogil:     # math.h, plus the SIMD exp declarations
    float expf(float)
    float logf(float)
    float sqrtf(float)
    double exp(double)
    double log(double)
    double log1p(double)
    double sqrt(double)
    double sin(double)
    double cos(double)
    double pow(double, double)
    double fabs(double)
    float INFINITY


cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _log(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


# CPU path of the attention kernel's float32 products (pyx/tiles.h) ------------------------------

cdef extern from "tiles.h" nogil:
    int tp_cpu_best()
    void tp_mm_base(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, float alpha, const float* A, Py_ssize_t a_rs,
                    Py_ssize_t a_ks, const float* B, Py_ssize_t ldb, float* C, Py_ssize_t ldc)
    void tp_mm_avx2(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, float alpha, const float* A, Py_ssize_t a_rs,
                    Py_ssize_t a_ks, const float* B, Py_ssize_t ldb, float* C, Py_ssize_t ldc)
    void tp_mm_avx512(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, float alpha, const float* A, Py_ssize_t a_rs,
                      Py_ssize_t a_ks, const float* B, Py_ssize_t ldb, float* C, Py_ssize_t ldc)
    void tp_rowdots_base(Py_ssize_t L, Py_ssize_t D, float alpha, const float* q, const float* K,
                         Py_ssize_t ks, float* s)
    void tp_wsum_base(Py_ssize_t L, Py_ssize_t D, const float* w, const float* V, Py_ssize_t vs, float* o)
    void tp_rowdots_avx2(Py_ssize_t L, Py_ssize_t D, float alpha, const float* q, const float* K,
                         Py_ssize_t ks, float* s)
    void tp_wsum_avx2(Py_ssize_t L, Py_ssize_t D, const float* w, const float* V, Py_ssize_t vs, float* o)
    void tp_rowdots_avx512(Py_ssize_t L, Py_ssize_t D, float alpha, const float* q, const float* K,
                         Py_ssize_t ks, float* s)
    void tp_wsum_avx512(Py_ssize_t L, Py_ssize_t D, const float* w, const float* V, Py_ssize_t vs, float* o)
    const int TP_COMPILED_BEST
    const bint TP_HAVE_BASE
    const int TP_OPENMP
    const char* TINYPE_BUILD_FLAGS
    const char* TP_COMPILER

# GELU's, cross-entropy's and the attention rows' float32 loops, one copy per CPU path (pyx/elementwise.h)
# (each entry point takes the CPU path and calls that path's copy)
cdef extern from "elementwise.h" nogil:
    void tp_gelu_fwd(int path, const float* x, float* out, float* t, Py_ssize_t n)
    void tp_gelu_bwd(int path, const float* dout, const float* x, const float* t, float* dx, Py_ssize_t n)
    double tp_xent_row(int path, const float* z, Py_ssize_t target, float weight, float* d, Py_ssize_t V)
    float tp_row_logits(int path, float* s, Py_ssize_t ncol, float a, const float* bias, Py_ssize_t diag,
                        int with_max)
    float tp_row_weights(int path, float* s, Py_ssize_t ncol, Py_ssize_t nk, float shift)

_PATHS = ("portable", "avx2", "avx512")

# the best path this CPU supports (asked once), and the one in use (may be lowered, never raised)
cdef int _cpu_best = tp_cpu_best()
cdef int _cpu_path = _cpu_best


def _cpu_paths():
    """The paths this build can run on this CPU, best first: e.g. ['avx512', 'avx2', 'portable']."""
    return [_PATHS[i] for i in range(_cpu_best, -1, -1)]


def _get_cpu_path():
    return _PATHS[_cpu_path]


def _set_cpu_path(name):
    """Use `name` ('portable', 'avx2' or 'avx512') from now on; returns the previous path's name.
    Only a path this CPU runs (see _cpu_paths) can be chosen."""
    global _cpu_path
    if name not in _PATHS:
        raise ValueError(f"CPU path must be one of {', '.join(_PATHS)}; got {name!r}")
    if name not in _cpu_paths():
        raise ValueError(f"CPU path {name!r} is not available here (this build on this CPU runs: "
                         f"{', '.join(_cpu_paths())})")
    old = _PATHS[_cpu_path]
    _cpu_path = _PATHS.index(name)
    return old


def _build_info():
    """How this extension was compiled: flags, OpenMP, the tile paths compiled in, the compiler."""
    return {"compiler": TP_COMPILER.decode(), "compiler_flags": TINYPE_BUILD_FLAGS.decode(),
            "openmp": bool(TP_OPENMP), "compiled_paths": [_PATHS[i] for i in range(TP_COMPILED_BEST, -1, -1)],
            "portable_tiles": bool(TP_HAVE_BASE)}
