# Rotary embedding: rotate channel pairs of x by per-position angles. Included by _ext.pyx.
# NumPy twin: tinype.reference.apply_rotary (same signature).
#
#   y_a = x_a cos - x_b sin,   y_b = x_b cos + x_a sin      (cos, sin: (T, D/2), amplitudes included)
#
# The backward is the transposed rotation, apply_rotary(dy, cos, -sin); xPos's per-position scale is
# folded into its cos/sin tables, so this one kernel serves every rotary encoding.
# Shape letters: N = B*H independent (T, D) slices, T time, D head dim.


cdef inline void _rotate_row(const floating* x, const floating* c, const floating* s, floating* y,
                             Py_ssize_t half, bint interleaved) noexcept nogil:
    cdef Py_ssize_t k
    cdef floating a, b
    if interleaved:                           # pair k = channels (2k, 2k+1), as the RoFormer paper
        for k in range(half):
            a = x[2 * k]
            b = x[2 * k + 1]
            y[2 * k] = a * c[k] - b * s[k]
            y[2 * k + 1] = b * c[k] + a * s[k]
    else:                                     # pair k = channels (k, k + D/2), as transformers
        for k in range(half):
            y[k] = x[k] * c[k] - x[k + half] * s[k]
            y[k + half] = x[k + half] * c[k] + x[k] * s[k]


def _rotary(const floating[:, :, ::1] x, const floating[:, ::1] cos_t, const floating[:, ::1] sin_t,
            floating[:, :, ::1] y, bint interleaved):
    cdef Py_ssize_t N = x.shape[0], T = x.shape[1], half = x.shape[2] // 2, row, n, t
    with nogil:
        # every (slice, time) row is independent: split them all over the threads
        for row in prange(N * T, schedule="static", use_threads_if=N * T * half >= PARALLEL_MIN // 2):
            n = row // T
            t = row % T
            _rotate_row(&x[n, t, 0], &cos_t[t, 0], &sin_t[t, 0], &y[n, t, 0], half, interleaved)


def apply_rotary(x, cos_t, sin_t, bint interleaved=False):
    """Rotate x (..., T, D) by the angles whose cos and sin (T, D/2) are given; returns y like x.

    D must be even; x, cos, sin C-contiguous and of one dtype. Twin: reference.apply_rotary.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"x must be (..., T, D), got shape {x.shape}")
    _check("x", x, x.ndim)
    _check("cos", cos_t, 2, x.dtype)
    _check("sin", sin_t, 2, x.dtype)
    # (no negative indices anywhere in these files: wraparound is off project-wide, even for tuples)
    T, D = x.shape[x.ndim - 2], x.shape[x.ndim - 1]
    if D % 2:
        raise ValueError(f"rotary embedding needs an even head dimension, got D={D}")
    if cos_t.shape != (T, D // 2) or sin_t.shape != (T, D // 2):
        raise ValueError(f"cos and sin must be (T, D/2) = ({T}, {D // 2}), got {cos_t.shape} and {sin_t.shape}")
    y = np.empty_like(x)
    x3 = x.reshape(-1, T, D)
    y3 = y.reshape(-1, T, D)
    if x.size:
        _rotary(x3, cos_t, sin_t, y3, interleaved)
    return y
