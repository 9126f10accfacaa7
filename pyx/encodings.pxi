# Encoding tables. Included by _ext.pyx.
#
# Shape letters: N positions, C channels (the model width).


def _sinusoidal_rows(const floating[::1] positions, floating[:, ::1] out,
                     const double[::1] inv_freq):
    cdef Py_ssize_t n_pos = out.shape[0], dim = out.shape[1]
    cdef Py_ssize_t p, i
    cdef double angle
    with nogil:
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
    _checks.sinusoidal(positions, dim, base)
    cdef Py_ssize_t i, half = (dim + 1) // 2
    inv = np.empty(half, dtype=np.float64)
    cdef double[::1] inv_v = inv
    for i in range(half):
        inv_v[i] = pow(base, -(2.0 * i) / dim)
    out = np.empty((positions.shape[0], dim), dtype=positions.dtype)
    _sinusoidal_rows(positions, out, inv_v)
    return out


# Bias tables over distances ----------------------------------------------------------------------
#
# Every bias family except FIRE is a function of the distance d = i - j, one row per head, laid out
# the way the attention kernel reads it: (H, T) for causal attention, column c is d = c; (H, 2T-1)
# for two-sided, column c is d = c - (T-1). NumPy builds these from (H, 2T) float64 temporaries,
# several per call; here each entry is made once, threads splitting the heads (or, for Sandwich's
# shared cosine sums, the distances). Computed in float64, stored in the parameters' dtype.
# NumPy twins: reference.alibi_table, kerple_table(_backward), sandwich_table, bucket_table(_backward).


def _check_table(T, causal):
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    return (T, 0) if causal else (2 * T - 1, -(T - 1))      # columns, distance of column 0


def alibi_table(slopes, Py_ssize_t T, bint causal):
    """table[h, c] = -slopes[h] |d|: ALiBi's (H, T) or (H, 2T-1) bias. slopes: (H,) float32/float64."""
    _check("slopes", slopes, 1)
    n, lo = _check_table(T, causal)
    out = np.empty((slopes.shape[0], n), dtype=slopes.dtype)
    _kerple_rows(slopes, slopes, out, lo, 0)
    return out


def kerple_table(r1, r2, Py_ssize_t T, bint causal, bint power):
    """table[h, c] = -r1[h] g(|d|), g = ln(1 + r2[h] |d|), or |d|^r2[h] when power. r1, r2: (H,)."""
    _check_kerple(r1, r2)
    n, lo = _check_table(T, causal)
    out = np.empty((r1.shape[0], n), dtype=r1.dtype)
    _kerple_rows(r1, r2, out, lo, 2 if power else 1)
    return out


def _check_kerple(r1, r2):
    _check("r1", r1, 1)
    _check("r2", r2, 1, r1.dtype)
    if r1.shape != r2.shape:
        raise ValueError(f"r1 and r2 shapes differ: {r1.shape}, {r2.shape}")


cdef inline double _kerple_g(double d, double r2, int kind) noexcept nogil:
    """kind 0: d (ALiBi, whose slope plays r1); 1: ln(1 + r2 d); 2: d^r2."""
    if kind == 0:
        return d
    if kind == 1:
        return log1p(r2 * d)
    return pow(d, r2)


def _kerple_rows(const floating[::1] r1, const floating[::1] r2, floating[:, ::1] out,
                 Py_ssize_t lo, int kind):
    cdef Py_ssize_t h, c
    with nogil:
        for h in prange(out.shape[0], schedule="static"):
            for c in range(out.shape[1]):
                out[h, c] = <floating>(-<double>r1[h] * _kerple_g(fabs(<double>(c + lo)), r2[h], kind))


def kerple_table_backward(dtable, r1, r2, Py_ssize_t T, bint causal, bint power):
    """(dr1, dr2), (H,) each: the gradients of sum(dtable * kerple_table(r1, r2, T, causal, power))."""
    _check_kerple(r1, r2)
    _check("dtable", dtable, 2, r1.dtype)
    n, lo = _check_table(T, causal)
    if dtable.shape != (r1.shape[0], n):
        raise ValueError(f"dtable must be (H, {n}) = ({r1.shape[0]}, {n}), got {dtable.shape}")
    dr1 = np.empty(r1.shape[0], dtype=np.float64)
    dr2 = np.empty(r1.shape[0], dtype=np.float64)
    _kerple_grads(dtable, r1, r2, dr1, dr2, lo, power)
    return dr1.astype(r1.dtype), dr2.astype(r1.dtype)


def _kerple_grads(const floating[:, ::1] dtable, const floating[::1] r1, const floating[::1] r2,
                  double[::1] dr1, double[::1] dr2, Py_ssize_t lo, bint power):
    cdef Py_ssize_t h, c
    cdef double d, g, dg, a, b
    with nogil:
        for h in prange(dtable.shape[0], schedule="static"):
            a = 0
            b = 0
            for c in range(dtable.shape[1]):
                d = fabs(<double>(c + lo))
                g = _kerple_g(d, r2[h], 2 if power else 1)
                if power:
                    dg = g * log(d) if d > 0 else 0.0       # d/dr2 d^r2 = d^r2 ln d
                else:
                    dg = d / (1 + r2[h] * d)                # d/dr2 ln(1 + r2 d)
                a = a + dtable[h, c] * g
                b = b + dtable[h, c] * dg
            dr1[h] = -a
            dr2[h] = -r1[h] * b


def sandwich_table(head_scale, Py_ssize_t dim, Py_ssize_t T, bint causal):
    """table[h, c] = (sum_{k=1..dim/2} cos(d / 10000^(2k/dim)) - dim/2) / head_scale[h]."""
    _check("head_scale", head_scale, 1)
    if dim < 0:
        raise ValueError(f"dim must be >= 0, got {dim}")
    n, lo = _check_table(T, causal)
    cdef Py_ssize_t k
    inv = np.empty(dim // 2, dtype=np.float64)
    cdef double[::1] inv_v = inv
    for k in range(dim // 2):
        inv_v[k] = 1 / pow(10000.0, 2.0 * (k + 1) / dim)
    inner = np.empty(n, dtype=np.float64)
    _cosine_sums(inv_v, inner, lo, dim)
    out = np.empty((head_scale.shape[0], n), dtype=head_scale.dtype)
    _scaled_rows(inner, head_scale, out)
    return out


cdef void _cosine_sums(const double[::1] inv_freq, double[::1] inner, Py_ssize_t lo, Py_ssize_t dim) noexcept nogil:
    cdef Py_ssize_t c, k
    cdef double acc
    for c in prange(inner.shape[0], schedule="static"):
        acc = 0
        for k in range(inv_freq.shape[0]):
            acc = acc + cos((c + lo) * inv_freq[k])
        inner[c] = acc - dim / 2.0             # dim/2 as a real number: dim may be odd


def _scaled_rows(const double[::1] inner, const floating[::1] head_scale, floating[:, ::1] out):
    cdef Py_ssize_t h, c
    with nogil:
        for h in prange(out.shape[0], schedule="static"):
            for c in range(out.shape[1]):
                out[h, c] = <floating>(inner[c] / head_scale[h])


def _check_buckets(buckets, n_buckets, n_table=None):
    if not isinstance(buckets, np.ndarray):
        raise TypeError(f"buckets must be a numpy array, got {type(buckets).__name__}")
    if buckets.dtype != np.int64:
        raise TypeError(f"buckets must be int64, got {buckets.dtype}")
    if buckets.ndim != 1 or not buckets.flags.c_contiguous:
        raise ValueError(f"buckets must be a C-contiguous (n_table,) array, got shape {buckets.shape}")
    if buckets.size and (buckets.min() < 0 or buckets.max() >= n_buckets):
        raise ValueError(f"bucket ids must lie in [0, {n_buckets}), got {buckets.min()}..{buckets.max()}")


def bucket_table(values, buckets):
    """table[h, c] = values[buckets[c], h] (T5). values: (n_buckets, H); buckets: (n_table,) int64."""
    _check("values", values, 2)
    _check_buckets(buckets, values.shape[0])
    out = np.empty((values.shape[1], buckets.shape[0]), dtype=values.dtype)
    _gather_rows(values, buckets, out)
    return out


def _gather_rows(const floating[:, ::1] values, const cnp.int64_t[::1] buckets, floating[:, ::1] out):
    cdef Py_ssize_t h, c
    with nogil:
        for h in prange(out.shape[0], schedule="static"):
            for c in range(out.shape[1]):
                out[h, c] = values[buckets[c], h]


def bucket_table_backward(dtable, buckets, Py_ssize_t n_buckets):
    """dvalues (n_buckets, H): dvalues[b, h] = the sum of dtable[h, c] over the columns c in bucket b."""
    _check("dtable", dtable, 2)
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be >= 1, got {n_buckets}")
    _check_buckets(buckets, n_buckets)
    if buckets.shape[0] != dtable.shape[1]:
        raise ValueError(f"buckets has {buckets.shape[0]} entries for a table of {dtable.shape[1]} columns")
    grad = np.zeros((n_buckets, dtable.shape[0]), dtype=dtable.dtype)
    _scatter_rows(dtable, buckets, grad)
    return grad


def _scatter_rows(const floating[:, ::1] dtable, const cnp.int64_t[::1] buckets, floating[:, ::1] grad):
    cdef Py_ssize_t h, c
    with nogil:
        # each thread owns whole heads, i.e. whole columns of grad: no two threads add to one entry
        for h in prange(dtable.shape[0], schedule="static"):
            for c in range(dtable.shape[1]):
                grad[buckets[c], h] += dtable[h, c]
