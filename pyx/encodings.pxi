# Encoding tables. Included by _ext.pyx.
#
# Shape letters: N positions, C channels (the model width).

import numpy as np
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sin, cos, pow

cnp.import_array()


cdef void _sinusoidal_rows(const floating[::1] positions, floating[:, ::1] out,
                           const double[::1] inv_freq) noexcept nogil:
    cdef Py_ssize_t n_pos = out.shape[0], dim = out.shape[1]
    cdef Py_ssize_t p, i
    cdef double angle
    # Rows are independent: each thread owns whole rows of `out`.
    for p in prange(n_pos, schedule="static"):
        for i in range(inv_freq.shape[0]):
            # Angles in double even for float32 tables: at p = 4096 a float32 angle is off by ~1e-3.
            angle = <double>positions[p] * inv_freq[i]
            out[p, 2 * i] = <floating>sin(angle)
            if 2 * i + 1 < dim:
                out[p, 2 * i + 1] = <floating>cos(angle)


def sinusoidal_table(positions, Py_ssize_t dim, double base=10000.0):
    """PE[p, 2i] = sin(p / base^(2i/dim)), PE[p, 2i+1] = cos(p / base^(2i/dim)).

    positions: (N,) float32 or float64, real values allowed, C-contiguous.
    Returns (N, dim) in the dtype of `positions`. Twin: tinype.reference.sinusoidal_table.
    """
    if not isinstance(positions, np.ndarray):
        raise TypeError(f"positions must be a numpy array, got {type(positions).__name__}")
    if positions.ndim != 1:
        raise ValueError(f"positions must be 1-D (N,), got shape {positions.shape}")
    if positions.dtype != np.float32 and positions.dtype != np.float64:
        raise TypeError(f"positions must be float32 or float64, got {positions.dtype}")
    if not positions.flags.c_contiguous:
        raise ValueError("positions must be C-contiguous (use np.ascontiguousarray)")
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if not base > 0.0:
        raise ValueError(f"base must be > 0, got {base}")
    cdef Py_ssize_t i, half = (dim + 1) // 2
    inv = np.empty(half, dtype=np.float64)
    cdef double[::1] inv_v = inv
    for i in range(half):
        inv_v[i] = pow(base, -(2.0 * i) / dim)
    out = np.empty((positions.shape[0], dim), dtype=positions.dtype)
    if positions.dtype == np.float32:
        _sinusoidal_rows[float](positions, out, inv_v)
    else:
        _sinusoidal_rows[double](positions, out, inv_v)
    return out
