# Attention of the newest queries against a KV cache (incremental decoding). Included by _ext.pyx.
# NumPy twin: tinype.reference.attention_decode (same signature).
#
#   s_j = mult_a * (q_a . k_j) + bias,   j = 0 .. t0 + a        (mult_a = scale * logit_scale[a])
#   out_a = sum_j exp(s_j - max) v_j / sum_j exp(s_j - max)
#
# One new byte is one query per head: a row of L dot products, one softmax, one weighted sum of L
# values. The bias is read where it lives: a table over distances (entry t0 + a - j) or a dense
# PE's rows, so no (n, L) bias is ever built. k and v may be views of the cache's longer buffers
# (strided memoryviews), so nothing is copied either.
# Shape letters: B batch, H heads, n new queries, L keys, D head dim, W table width (>= L).


# The row's two products go to pyx/tiles.h's copy for this CPU in float32 (the extension itself is
# compiled for the baseline, SSE2, where a 16-long dot product per key is mostly loop overhead);
# float64, the gradient checks' type, takes the plain loops.

cdef inline void _rowdots(Py_ssize_t L, Py_ssize_t D, floating alpha, const floating* q, const floating* K,
                          Py_ssize_t ks, floating* s) noexcept nogil:
    """s[j] = alpha * q . K[j] for j < L (K's rows ks apart)."""
    cdef Py_ssize_t j, d
    cdef floating acc
    if floating is float:
        if _cpu_path == 2:
            tp_rowdots_avx512(L, D, alpha, q, K, ks, s)
            return
        if _cpu_path == 1:
            tp_rowdots_avx2(L, D, alpha, q, K, ks, s)
            return
        if TP_HAVE_BASE:
            tp_rowdots_base(L, D, alpha, q, K, ks, s)
            return
    for j in range(L):
        acc = 0
        for d in range(D):
            acc = acc + q[d] * K[j * ks + d]
        s[j] = acc * alpha


cdef inline void _wsum(Py_ssize_t L, Py_ssize_t D, const floating* w, const floating* V, Py_ssize_t vs,
                       floating* o) noexcept nogil:
    """o[d] = sum_j w[j] V[j, d] for d < D (V's rows vs apart); o is overwritten."""
    cdef Py_ssize_t j, d
    if floating is float:
        if _cpu_path == 2:
            tp_wsum_avx512(L, D, w, V, vs, o)
            return
        if _cpu_path == 1:
            tp_wsum_avx2(L, D, w, V, vs, o)
            return
        if TP_HAVE_BASE:
            tp_wsum_base(L, D, w, V, vs, o)
            return
    for d in range(D):
        o[d] = 0
    for j in range(L):
        for d in range(D):
            o[d] = o[d] + w[j] * V[j * vs + d]


cdef void _decode_head(const floating[:, :, :, ::1] q, const floating[:, :, :, :] k,
                       const floating[:, :, :, :] v, const floating[:, ::1] table,
                       const floating[:, :, ::1] rows, const floating[::1] lscale, double scale,
                       int bias_kind, bint has_lscale, floating[:, :, :, ::1] out,
                       Py_ssize_t b, Py_ssize_t h, floating* s) noexcept nogil:
    """The new queries of one (batch, head) pair; s: scratch for L logits. Rows of k and v are read
    through raw pointers (their last axis is contiguous, checked by the wrapper), so the D-long
    inner loops and the exp loop vectorise."""
    cdef Py_ssize_t n = q.shape[2], D = q.shape[3], L = k.shape[2]
    cdef Py_ssize_t t0 = L - n, a, i, j, d
    cdef Py_ssize_t ks = k.strides[2] // sizeof(floating), vs = v.strides[2] // sizeof(floating)
    cdef const floating* kr = &k[b, h, 0, 0]
    cdef const floating* vr = &v[b, h, 0, 0]
    cdef const floating* qa
    cdef const floating* bt
    cdef floating* o
    cdef floating mult, m, z, acc, w
    cdef floating low = -87 if floating is float else -700
    cdef floating tiny = <floating>(1e-20 if floating is float else 1e-200)
    for a in range(n):
        i = t0 + a                                       # the query's absolute position
        qa = &q[b, h, a, 0]
        o = &out[b, h, a, 0]
        mult = <floating> scale
        if has_lscale:
            mult = mult * lscale[a]
        _rowdots(i + 1, D, mult, qa, kr, ks, s)          # s_j = mult q.k_j
        if bias_kind == 1:                               # + table[h, i - j]: the distance's entry
            bt = &table[h, 0]
            for j in range(i + 1):
                s[j] = s[j] + bt[i - j]
        elif bias_kind == 2:                             # + the dense PE's row
            bt = &rows[h, a, 0]
            for j in range(i + 1):
                s[j] = s[j] + bt[j]
        m = s[0]
        for j in range(1, i + 1):
            if s[j] > m:
                m = s[j]
        z = 0
        # floor, exp and flush as the training kernel's _row_weights (attention.pxi) does: no lane
        # underflows in the vector exp, and no subnormal weight reaches the weighted sum
        for j in range(i + 1):
            s[j] = s[j] - m
            s[j] = low if s[j] < low else s[j]
        for j in range(i + 1):                           # one vectorised exp loop
            s[j] = _exp(s[j])
        for j in range(i + 1):
            s[j] = 0 if s[j] < tiny else s[j]
            z = z + s[j]
        _wsum(i + 1, D, s, vr, vs, o)                    # out = sum_j w_j v_j / sum_j w_j
        for d in range(D):
            o[d] = o[d] / z


def _decode_loop(const floating[:, :, :, ::1] q, const floating[:, :, :, :] k,
                 const floating[:, :, :, :] v, const floating[:, ::1] table,
                 const floating[:, :, ::1] rows, const floating[::1] lscale, double scale,
                 int bias_kind, bint has_lscale, bint parallel, floating[:, :, :, ::1] out):
    cdef Py_ssize_t B = q.shape[0], H = q.shape[1], L = k.shape[2], bh
    cdef floating* s
    if parallel:         # one (batch, head) pair per task: each writes only its own rows of out
        for bh in prange(B * H, schedule="static", nogil=True):
            s = <floating*> malloc(L * sizeof(floating))
            _decode_head(q, k, v, table, rows, lscale, scale, bias_kind, has_lscale, out, bh // H, bh % H, s)
            free(s)
    else:
        with nogil:
            s = <floating*> malloc(L * sizeof(floating))
            for bh in range(B * H):
                _decode_head(q, k, v, table, rows, lscale, scale, bias_kind, has_lscale, out, bh // H, bh % H, s)
            free(s)


def attention_decode(q, k, v, scale, bias=None, logit_scale=None):
    """out (B, H, n, D): the n newest queries q (B, H, n, D) against every key and value so far,
    k, v (B, H, L, D) (views of longer buffers are fine: only the last axis must be contiguous).
    bias: None, a causal table over distances (H, W >= L), or dense rows (H, n, L); logit_scale:
    None or (n,). Twin: reference.attention_decode."""
    _checks.decode(q, k, v, bias, logit_scale)
    dt = q.dtype
    dummy2 = np.zeros((1, 1), dt)
    dummy3 = np.zeros((1, 1, 1), dt)
    kind = 0 if bias is None else (1 if bias.ndim == 2 else 2)
    out = np.empty(q.shape, dt)
    # waking a second thread costs more than a few hundred thousand multiply-adds: one new byte of
    # the quick model (4 heads x 16 dims) against 4096 cached ones is 0.26 M, so stay serial below 1 M
    B, H, n, D = q.shape
    parallel = B * H * n * k.shape[2] * D >= (1 << 20)
    _decode_loop(q, k, v, bias if kind == 1 else dummy2, bias if kind == 2 else dummy3,
                 logit_scale if logit_scale is not None else np.ones(1, dt), float(scale), kind,
                 logit_scale is not None, parallel, out)
    return out
