# Fused layer kernels: GELU, LayerNorm, softmax cross-entropy, embedding scatter-add.
# Included by _ext.pyx. NumPy twins: tinype/reference.py (same names, same signatures).
#
# Why these: in NumPy each of these layers is 5-10 passes over memory on one core (every
# operator makes a temporary). Here each is one or two passes, split over cores by rows.
#
# Shape letters: N rows (B*T), C channels, V vocabulary.

cdef double GELU_K = 0.7978845608028654      # sqrt(2 / pi)
cdef double GELU_A = 0.044715


# GELU --------------------------------------------------------------------------------------------

# The loops below are plain pointer loops in small helpers, called once per chunk or row from a
# prange: that is the form gcc vectorises (with libmvec's SIMD exp), which it does not do for the
# loops Cython generates over memoryviews inside a prange.

cdef Py_ssize_t CHUNK = 4096          # elements per prange task for elementwise kernels


cdef inline void _gelu_fwd_span(const floating* x, floating* out, floating* t, Py_ssize_t n) noexcept nogil:
    # 0.5 x (1 + tanh(u)) = x * sigmoid(2u): one exp per element, and no cancellation in
    # 1 + tanh(u) for large negative x. t = tanh(u) = 2 sigmoid(2u) - 1 is kept for the backward.
    # float32 runs the same loop in C, compiled for this CPU's widest vector exp (elementwise.h).
    cdef Py_ssize_t i
    cdef floating xi, sig
    if floating is float:
        tp_gelu_fwd(_cpu_path, x, out, t, n)
    else:
        for i in range(n):
            xi = x[i]
            sig = 1 / (1 + _exp(-2 * GELU_K * (xi + GELU_A * xi * xi * xi)))
            t[i] = 2 * sig - 1
            out[i] = xi * sig


cdef inline void _gelu_bwd_span(const floating* dout, const floating* x, const floating* t, floating* dx,
                                Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating xi, ti
    if floating is float:
        tp_gelu_bwd(_cpu_path, dout, x, t, dx, n)
    else:
        for i in range(n):
            xi = x[i]
            ti = t[i]
            dx[i] = dout[i] * (0.5 * (1 + ti) + 0.5 * xi * ((1 - ti) * (1 + ti))
                               * GELU_K * (1 + 3 * GELU_A * xi * xi))


def _gelu_fwd(const floating[::1] x, floating[::1] out, floating[::1] t):
    cdef Py_ssize_t c, start, n = x.shape[0]
    with nogil:
        for c in prange((n + CHUNK - 1) // CHUNK, schedule="static", use_threads_if=n >= PARALLEL_MIN):
            start = c * CHUNK
            _gelu_fwd_span(&x[start], &out[start], &t[start], min(CHUNK, n - start))


def _gelu_bwd(const floating[::1] dout, const floating[::1] x, const floating[::1] t,
              floating[::1] dx):
    cdef Py_ssize_t c, start, n = x.shape[0]
    with nogil:
        for c in prange((n + CHUNK - 1) // CHUNK, schedule="static", use_threads_if=n >= PARALLEL_MIN):
            start = c * CHUNK
            _gelu_bwd_span(&dout[start], &x[start], &t[start], &dx[start], min(CHUNK, n - start))


def gelu_forward(x):
    """out = 0.5 x (1 + t), t = tanh(sqrt(2/pi) (x + 0.044715 x^3)). x: any shape, C-contiguous.
    Returns (out, t)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array, got {type(x).__name__}")
    _check("x", x, x.ndim)
    out = np.empty_like(x)
    t = np.empty_like(x)
    _gelu_fwd(x.reshape(-1), out.reshape(-1), t.reshape(-1))
    return out, t


def gelu_backward(dout, x, t):
    """dx = dout * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2))."""
    _check("x", x, x.ndim)
    _check("dout", dout, x.ndim, x.dtype)
    _check("t", t, x.ndim, x.dtype)
    if dout.shape != x.shape or t.shape != x.shape:
        raise ValueError(f"shapes differ: dout {dout.shape}, x {x.shape}, t {t.shape}")
    dx = np.empty_like(x)
    _gelu_bwd(dout.reshape(-1), x.reshape(-1), t.reshape(-1), dx.reshape(-1))
    return dx


# LayerNorm ---------------------------------------------------------------------------------------

cdef inline void _ln_fwd_row(const floating* x, const floating* w, const floating* b, double eps,
                             floating* out, floating* xhat, floating* rstd, Py_ssize_t C) noexcept nogil:
    cdef Py_ssize_t c
    cdef double mean = 0.0, var = 0.0, d
    cdef floating m, r
    # mean and biased variance in double: two passes over a row that sits in cache
    for c in range(C):
        mean += x[c]
    mean /= C
    for c in range(C):
        d = x[c] - mean
        var += d * d
    r = <floating>(1.0 / sqrt(var / C + eps))
    m = <floating>mean
    rstd[0] = r
    for c in range(C):
        xhat[c] = (x[c] - m) * r
        out[c] = xhat[c] * w[c] + b[c]


cdef inline void _ln_bwd_row(const floating* dout, const floating* xhat, floating rstd, const floating* w,
                             floating* dx, Py_ssize_t C) noexcept nogil:
    # dxhat = dout * w;  dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    cdef Py_ssize_t c
    cdef double m1 = 0.0, m2 = 0.0
    cdef floating g, a, bb
    for c in range(C):
        g = dout[c] * w[c]
        m1 += g
        m2 += g * xhat[c]
    a = <floating>(m1 / C)
    bb = <floating>(m2 / C)
    for c in range(C):
        dx[c] = rstd * (dout[c] * w[c] - a - xhat[c] * bb)


def _ln_fwd(const floating[:, ::1] x, const floating[::1] w, const floating[::1] b, double eps,
            floating[:, ::1] out, floating[:, ::1] xhat, floating[::1] rstd):
    cdef Py_ssize_t n, C = x.shape[1]
    with nogil:
        for n in prange(x.shape[0], schedule="static", use_threads_if=x.shape[0] * C >= PARALLEL_MIN):
            _ln_fwd_row(&x[n, 0], &w[0], &b[0], eps, &out[n, 0], &xhat[n, 0], &rstd[n], C)


def _ln_bwd(const floating[:, ::1] dout, const floating[:, ::1] xhat, const floating[::1] rstd,
            const floating[::1] w, floating[:, ::1] dx):
    cdef Py_ssize_t n, C = xhat.shape[1]
    with nogil:
        for n in prange(xhat.shape[0], schedule="static", use_threads_if=xhat.shape[0] * C >= PARALLEL_MIN):
            _ln_bwd_row(&dout[n, 0], &xhat[n, 0], rstd[n], &w[0], &dx[n, 0], C)


def layernorm_forward(x, w, b, double eps=1e-5):
    """x: (N, C); w, b: (C,). Returns out (N, C), xhat (N, C), rstd (N,)."""
    _check("x", x, 2)
    _check("w", w, 1, x.dtype)
    _check("b", b, 1, x.dtype)
    if w.shape[0] != x.shape[1] or b.shape[0] != x.shape[1]:
        raise ValueError(f"w {w.shape} and b {b.shape} must be ({x.shape[1]},) for x {x.shape}")
    out = np.empty_like(x)
    xhat = np.empty_like(x)
    rstd = np.empty(x.shape[0], dtype=x.dtype)
    _ln_fwd(x, w, b, eps, out, xhat, rstd)
    return out, xhat, rstd


def layernorm_backward(dout, xhat, rstd, w):
    """dout, xhat: (N, C); rstd: (N,); w: (C,). Returns dx (N, C), dw (C,), db (C,)."""
    _check("xhat", xhat, 2)
    _check("dout", dout, 2, xhat.dtype)
    _check("rstd", rstd, 1, xhat.dtype)
    _check("w", w, 1, xhat.dtype)
    if dout.shape != xhat.shape or rstd.shape[0] != xhat.shape[0] or w.shape[0] != xhat.shape[1]:
        raise ValueError(f"shapes do not fit: dout {dout.shape}, xhat {xhat.shape}, rstd {rstd.shape}, w {w.shape}")
    dx = np.empty_like(xhat)
    _ln_bwd(dout, xhat, rstd, w, dx)
    # The column sums reduce across rows (threads would race): two BLAS-backed reductions.
    dw = np.einsum("nc,nc->c", dout, xhat)
    db = dout.sum(axis=0)
    return dx, dw, db


# Softmax cross-entropy ---------------------------------------------------------------------------

cdef inline double _xent_row(const floating* z, Py_ssize_t target, floating weight, floating* d,
                             Py_ssize_t V) noexcept nogil:
    """Returns the row's nll; writes d = (softmax(z) - onehot(target)) * weight. float32: the same
    loop in C, compiled for this CPU's widest vector exp (elementwise.h)."""
    cdef Py_ssize_t v
    cdef floating mx = z[0], e, inv
    cdef double s = 0.0
    if floating is float:
        return tp_xent_row(_cpu_path, z, target, weight, d, V)
    else:
        for v in range(1, V):
            if z[v] > mx:
                mx = z[v]
        # the exponentials go straight into d and are normalised in place
        for v in range(V):
            e = _exp(z[v] - mx)
            d[v] = e
            s += e
        inv = <floating>(weight / s)
        for v in range(V):
            d[v] = d[v] * inv
        d[target] -= weight
        return log(s) - (z[target] - mx)


def _xent(const floating[:, ::1] logits, const long long[::1] targets, const floating[::1] weights,
          double[::1] nll, floating[:, ::1] dlogits):
    cdef Py_ssize_t n, V = logits.shape[1]
    with nogil:
        for n in prange(logits.shape[0], schedule="static", use_threads_if=logits.shape[0] * V >= PARALLEL_MIN):
            nll[n] = _xent_row(&logits[n, 0], targets[n], weights[n], &dlogits[n, 0], V)


def softmax_cross_entropy(logits, targets, weights):
    """Fused forward and backward of a weighted softmax cross-entropy.

    logits: (N, V); targets: (N,) int64 in [0, V); weights: (N,) the weight of each row in the loss.
    Returns nll (N,) float64 per row, and dlogits (N, V) = (softmax - onehot) * weight.
    """
    _check("logits", logits, 2)
    _check("weights", weights, 1, logits.dtype)
    if not isinstance(targets, np.ndarray) or targets.dtype != np.int64 or targets.ndim != 1 \
            or not targets.flags.c_contiguous:
        raise TypeError("targets must be a C-contiguous (N,) int64 array")
    cdef Py_ssize_t N = logits.shape[0], V = logits.shape[1]
    if targets.shape[0] != N or weights.shape[0] != N:
        raise ValueError(f"targets {targets.shape} and weights {weights.shape} must be ({N},)")
    if V < 1:
        raise ValueError("logits need at least one class")
    if N and (targets.min() < 0 or targets.max() >= V):
        raise ValueError(f"targets must be in [0, {V}), got values in [{targets.min()}, {targets.max()}]")
    nll = np.empty(N, dtype=np.float64)
    dlogits = np.empty_like(logits)
    _xent(logits, targets, weights, nll, dlogits)
    return nll, dlogits


# Embedding ---------------------------------------------------------------------------------------

def _embed_bwd(const long long[::1] idx, const floating[:, ::1] dout, floating[:, ::1] dwte):
    cdef Py_ssize_t n, c, C = dout.shape[1]
    with nogil:
        # Serial: two rows with the same token would race. N*C adds are cheap next to the rest.
        for n in range(idx.shape[0]):
            for c in range(C):
                dwte[idx[n], c] += dout[n, c]


def embedding_backward(idx, dout, Py_ssize_t vocab_size):
    """Scatter-add: dwte[idx[n]] += dout[n]. idx: (N,) int64; dout: (N, C). Returns dwte (V, C)."""
    _check("dout", dout, 2)
    if not isinstance(idx, np.ndarray) or idx.dtype != np.int64 or idx.ndim != 1 or not idx.flags.c_contiguous:
        raise TypeError("idx must be a C-contiguous (N,) int64 array")
    if idx.shape[0] != dout.shape[0]:
        raise ValueError(f"idx {idx.shape} and dout {dout.shape} disagree on N")
    if idx.shape[0] and (idx.min() < 0 or idx.max() >= vocab_size):
        raise ValueError(f"token ids must be in [0, {vocab_size})")
    dwte = np.zeros((vocab_size, dout.shape[1]), dtype=dout.dtype)
    _embed_bwd(idx, dout, dwte)
    return dwte
