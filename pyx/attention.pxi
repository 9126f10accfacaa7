# Fused attention, forward and backward. Included by _ext.pyx. NumPy twin: tinype/reference.py.
#
#   s[i, j] = mult[i] * scale * q_i . k_j + bias[h, i - j]      (j <= i when causal)
#   out_i   = sum_j softmax_j(s[i, :]) v_j,     lse_i = log sum_j exp(s[i, j])
#
# Shape letters: B batch, H heads, T time, D head dim. BQ x BK tiles of queries and keys.
#
# How it runs:
# - One OpenMP task per (batch, head): every gradient of a head (dq, dk, dv, and its row of the
#   bias-table gradient) has a single writer, so the backward needs no atomics or reductions.
# - Online softmax over key blocks (the flash-attention recurrence): a row keeps its running max m,
#   its running sum l and its unnormalised output; a new block rescales them by exp(m_old - m_new).
#   Memory is O(T D) per head; no T x T matrix ever exists.
# - Causal attention visits only key columns j <= i: whole blocks above the diagonal are skipped
#   and the diagonal block stops each row at its own position.
# - Every inner loop is an axpy over a contiguous row (q_i . K^T through a transposed key block,
#   p V, dS K, dS^T Q): the form gcc vectorises, exp included (simd_math.h).

from libc.stdlib cimport malloc, free
from libc.string cimport memset

cdef extern from "math.h" nogil:
    float INFINITY

cdef enum:
    BQ = 64          # query rows per tile (forward)
    BK = 64          # keys per tile


cdef inline void _transpose_block(const floating* src, floating* dst, Py_ssize_t n, Py_ssize_t D) noexcept nogil:
    """dst[d * BK + c] = src[c * D + d]: a key block laid out so a query row meets it as axpys."""
    cdef Py_ssize_t c, d
    for c in range(n):
        for d in range(D):
            dst[d * BK + c] = src[c * D + d]


cdef inline void _row_scores(const floating* qi, const floating* kt, floating* srow, Py_ssize_t n,
                             Py_ssize_t D) noexcept nogil:
    """srow[c] = q_i . k_c for the n keys of the transposed block kt (D x BK)."""
    cdef Py_ssize_t c, d
    cdef floating qd
    for c in range(n):
        srow[c] = 0
    for d in range(D):
        qd = qi[d]
        for c in range(n):
            srow[c] += qd * kt[d * BK + c]


cdef inline void _axpy(floating a, const floating* x, floating* y, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t d
    for d in range(n):
        y[d] += a * x[d]


cdef void _attn_fwd_head(const floating* q, const floating* k, const floating* v, floating* out,
                         floating* lse, Py_ssize_t T, Py_ssize_t D, floating scale, bint causal,
                         const floating* bias, Py_ssize_t offset, const floating* mult) noexcept nogil:
    cdef floating* kt = <floating*>malloc(D * BK * sizeof(floating))
    cdef floating* s = <floating*>malloc(BK * sizeof(floating))
    cdef floating* acc = <floating*>malloc(BQ * D * sizeof(floating))
    cdef floating* m = <floating*>malloc(BQ * sizeof(floating))
    cdef floating* l = <floating*>malloc(BQ * sizeof(floating))
    cdef Py_ssize_t qb, kb, qs, qe, ks, ke, nk, r, i, c, ncol, d
    cdef floating a, rowmax, m_new, corr, psum, inv
    for qb in range((T + BQ - 1) // BQ):
        qs = qb * BQ
        qe = min(qs + BQ, T)
        for r in range(qe - qs):
            m[r] = -INFINITY
            l[r] = 0
        memset(acc, 0, BQ * D * sizeof(floating))
        for kb in range(((qe if causal else T) + BK - 1) // BK):
            ks = kb * BK
            ke = min(ks + BK, T)
            nk = ke - ks
            _transpose_block(k + ks * D, kt, nk, D)
            for r in range(qe - qs):
                i = qs + r
                ncol = min(nk, i - ks + 1) if causal else nk      # causal: keys j <= i only
                if ncol <= 0:
                    continue
                _row_scores(q + i * D, kt, s, ncol, D)
                a = scale * (mult[i] if mult != NULL else 1)
                rowmax = -INFINITY
                for c in range(ncol):
                    s[c] = s[c] * a + (bias[i - ks - c + offset] if bias != NULL else 0)
                    if s[c] > rowmax:
                        rowmax = s[c]
                m_new = max(m[r], rowmax)
                # rescale what this row gathered so far to the new max (exp(-inf) = 0 at the start)
                corr = _exp(m[r] - m_new)
                psum = 0
                for c in range(ncol):
                    s[c] = _exp(s[c] - m_new)
                    psum += s[c]
                l[r] = l[r] * corr + psum
                for d in range(D):
                    acc[r * D + d] *= corr
                for c in range(ncol):
                    _axpy(s[c], v + (ks + c) * D, acc + r * D, D)
                m[r] = m_new
        for r in range(qe - qs):
            i = qs + r
            inv = 1 / l[r]
            for d in range(D):
                out[i * D + d] = acc[r * D + d] * inv
            lse[i] = m[r] + _log(l[r])
    free(kt)
    free(s)
    free(acc)
    free(m)
    free(l)


cdef void _attn_bwd_head(const floating* q, const floating* k, const floating* v, const floating* out,
                         const floating* lse, const floating* dout, floating* dq, floating* dk, floating* dv,
                         double* dbias, Py_ssize_t T, Py_ssize_t D, floating scale, bint causal,
                         const floating* bias, Py_ssize_t offset, const floating* mult) noexcept nogil:
    cdef floating* kt = <floating*>malloc(D * BK * sizeof(floating))
    cdef floating* vt = <floating*>malloc(D * BK * sizeof(floating))
    cdef floating* p = <floating*>malloc(BK * sizeof(floating))
    cdef floating* dp = <floating*>malloc(BK * sizeof(floating))
    cdef floating* rowdot = <floating*>malloc(T * sizeof(floating))
    cdef Py_ssize_t kb, ks, ke, nk, i, c, d, ncol
    cdef floating a, acc
    # rowdot_i = dout_i . out_i = sum_j p_ij dp_ij: the softmax backward's row term
    for i in range(T):
        acc = 0
        for d in range(D):
            acc += dout[i * D + d] * out[i * D + d]
        rowdot[i] = acc
    memset(dq, 0, T * D * sizeof(floating))
    memset(dk, 0, T * D * sizeof(floating))
    memset(dv, 0, T * D * sizeof(floating))
    for kb in range((T + BK - 1) // BK):
        ks = kb * BK
        ke = min(ks + BK, T)
        nk = ke - ks
        _transpose_block(k + ks * D, kt, nk, D)
        _transpose_block(v + ks * D, vt, nk, D)
        for i in range(ks if causal else 0, T):
            ncol = min(nk, i - ks + 1) if causal else nk
            a = scale * (mult[i] if mult != NULL else 1)
            # rebuild p_ij = exp(s_ij - lse_i) for this row and key block
            _row_scores(q + i * D, kt, p, ncol, D)
            for c in range(ncol):
                p[c] = _exp(p[c] * a + (bias[i - ks - c + offset] if bias != NULL else 0) - lse[i])
            # in the forward pass this was: out_i = sum_j p_ij v_j;  so dv_j += p_ij dout_i
            for c in range(ncol):
                _axpy(p[c], dout + i * D, dv + (ks + c) * D, D)
            # dp_ij = dout_i . v_j;  ds_ij = p_ij (dp_ij - rowdot_i)   (stored back into p)
            _row_scores(dout + i * D, vt, dp, ncol, D)
            for c in range(ncol):
                p[c] = p[c] * (dp[c] - rowdot[i])
            if dbias != NULL:
                for c in range(ncol):
                    dbias[i - ks - c + offset] += p[c]
            # s_ij = a q_i . k_j + b:  dq_i += a ds_ij k_j,  dk_j += a ds_ij q_i
            for c in range(ncol):
                _axpy(a * p[c], k + (ks + c) * D, dq + i * D, D)
                _axpy(a * p[c], q + i * D, dk + (ks + c) * D, D)
    free(kt)
    free(vt)
    free(p)
    free(dp)
    free(rowdot)


def _check_attention(q, k, v, bias, logit_scale, causal):
    for name, a in (("q", q), ("k", k), ("v", v)):
        _check(name, a, 4, None if name == "q" else q.dtype)
    if k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"q, k, v shapes differ: {q.shape}, {k.shape}, {v.shape}")
    T = q.shape[2]
    if q.shape[3] < 1 or T < 1:
        raise ValueError(f"q has an empty axis: {q.shape}")
    offset = 0
    if bias is not None:
        _check("bias", bias, 2, q.dtype)
        if bias.shape[0] != q.shape[1] or bias.shape[1] not in (T, 2 * T - 1):
            raise ValueError(f"bias must be (H, T) or (H, 2T-1) = ({q.shape[1]}, {T} or {2 * T - 1}), got {bias.shape}")
        if bias.shape[1] == 2 * T - 1:
            offset = T - 1
        elif T > 1 and not causal:
            raise ValueError("a one-sided (H, T) bias table needs causal=True; pass (H, 2T-1) otherwise")
    if logit_scale is not None:
        _check("logit_scale", logit_scale, 1, q.dtype)
        if logit_scale.shape[0] != T:
            raise ValueError(f"logit_scale must be (T,)=({T},), got {logit_scale.shape}")
    return offset


def attention_forward(q, k, v, double scale, bint causal=True, bias=None, logit_scale=None):
    """Fused attention; returns out (B, H, T, D) and lse (B, H, T). Twin: reference.attention_forward.

    q, k, v: C-contiguous (B, H, T, D), float32 or float64; bias: None, (H, T) or (H, 2T-1);
    logit_scale: None or (T,); all of one dtype.
    """
    cdef Py_ssize_t offset = _check_attention(q, k, v, bias, logit_scale, causal)
    out = np.empty_like(q)
    lse = np.empty(q.shape[:3], dtype=q.dtype)
    if q.dtype == np.float32:
        _attn_fwd[float](q, k, v, out, lse, scale, causal, bias, offset, logit_scale)
    else:
        _attn_fwd[double](q, k, v, out, lse, scale, causal, bias, offset, logit_scale)
    return out, lse


cdef void _attn_fwd(floating[:, :, :, ::1] q, floating[:, :, :, ::1] k, floating[:, :, :, ::1] v,
                    floating[:, :, :, ::1] out, floating[:, :, ::1] lse, double scale, bint causal,
                    object bias, Py_ssize_t offset, object logit_scale):
    cdef Py_ssize_t B = q.shape[0], H = q.shape[1], T = q.shape[2], D = q.shape[3], bh, b, h
    cdef floating[:, ::1] bias_v
    cdef floating[::1] mult_v
    cdef const floating* bias_p = NULL
    cdef const floating* mult_p = NULL
    cdef Py_ssize_t n_table = 0
    if bias is not None:
        bias_v = bias
        bias_p = &bias_v[0, 0]
        n_table = bias_v.shape[1]
    if logit_scale is not None:
        mult_v = logit_scale
        mult_p = &mult_v[0]
    with nogil:
        for bh in prange(B * H, schedule="dynamic"):
            b = bh // H
            h = bh % H
            _attn_fwd_head(&q[b, h, 0, 0], &k[b, h, 0, 0], &v[b, h, 0, 0], &out[b, h, 0, 0], &lse[b, h, 0],
                           T, D, <floating>scale, causal, (bias_p + h * n_table) if bias_p != NULL else NULL,
                           offset, mult_p)


def attention_backward(dout, q, k, v, out, lse, double scale, bint causal=True, bias=None, logit_scale=None):
    """Returns dq, dk, dv (B, H, T, D) and dbias (bias's shape, or None). Twin: reference.attention_backward."""
    cdef Py_ssize_t offset = _check_attention(q, k, v, bias, logit_scale, causal)
    _check("dout", dout, 4, q.dtype)
    _check("out", out, 4, q.dtype)
    _check("lse", lse, 3, q.dtype)
    if dout.shape != q.shape or out.shape != q.shape or lse.shape != q.shape[:3]:
        raise ValueError(f"dout {dout.shape}, out {out.shape}, lse {lse.shape} do not fit q {q.shape}")
    dq = np.empty_like(q)
    dk = np.empty_like(q)
    dv = np.empty_like(q)
    # one bias-gradient row per (batch, head): each task writes only its own, summed over B below
    dbias = None if bias is None else np.zeros((q.shape[0], q.shape[1], bias.shape[1]), dtype=np.float64)
    if q.dtype == np.float32:
        _attn_bwd[float](dout, q, k, v, out, lse, dq, dk, dv, dbias, scale, causal, bias, offset, logit_scale)
    else:
        _attn_bwd[double](dout, q, k, v, out, lse, dq, dk, dv, dbias, scale, causal, bias, offset, logit_scale)
    if dbias is not None:
        dbias = dbias.sum(axis=0).astype(q.dtype)
    return dq, dk, dv, dbias


cdef void _attn_bwd(floating[:, :, :, ::1] dout, floating[:, :, :, ::1] q, floating[:, :, :, ::1] k,
                    floating[:, :, :, ::1] v, floating[:, :, :, ::1] out, floating[:, :, ::1] lse,
                    floating[:, :, :, ::1] dq, floating[:, :, :, ::1] dk, floating[:, :, :, ::1] dv,
                    object dbias, double scale, bint causal, object bias, Py_ssize_t offset,
                    object logit_scale):
    cdef Py_ssize_t B = q.shape[0], H = q.shape[1], T = q.shape[2], D = q.shape[3], bh, b, h
    cdef floating[:, ::1] bias_v
    cdef floating[::1] mult_v
    cdef double[:, :, ::1] dbias_v
    cdef const floating* bias_p = NULL
    cdef const floating* mult_p = NULL
    cdef double* dbias_p = NULL
    cdef Py_ssize_t n_table = 0
    if bias is not None:
        bias_v = bias
        bias_p = &bias_v[0, 0]
        n_table = bias_v.shape[1]
        dbias_v = dbias
        dbias_p = &dbias_v[0, 0, 0]
    if logit_scale is not None:
        mult_v = logit_scale
        mult_p = &mult_v[0]
    with nogil:
        for bh in prange(B * H, schedule="dynamic"):
            b = bh // H
            h = bh % H
            _attn_bwd_head(&q[b, h, 0, 0], &k[b, h, 0, 0], &v[b, h, 0, 0], &out[b, h, 0, 0], &lse[b, h, 0],
                           &dout[b, h, 0, 0], &dq[b, h, 0, 0], &dk[b, h, 0, 0], &dv[b, h, 0, 0],
                           (dbias_p + bh * n_table) if dbias_p != NULL else NULL, T, D, <floating>scale,
                           causal, (bias_p + h * n_table) if bias_p != NULL else NULL, offset, mult_p)
