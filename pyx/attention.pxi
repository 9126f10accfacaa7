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
from libc.string cimport memcpy, memset

cdef extern from "math.h" nogil:
    float INFINITY

cdef enum:
    BQ = 64          # query rows per tile (forward)
    BK = 64          # keys per tile (a multiple of 8: the micro-kernel's vector width)
    R = 4            # query rows per micro-tile: each key element loaded feeds R multiply-adds


cdef inline void _transpose_block(const floating* src, floating* dst, Py_ssize_t n, Py_ssize_t D) noexcept nogil:
    """dst[d * BK + c] = src[c * D + d], zero past the n keys: a key block laid out so that R query
    rows meet it as fixed-width vector loads."""
    cdef Py_ssize_t c, d
    memset(dst, 0, D * BK * sizeof(floating))
    for c in range(n):
        for d in range(D):
            dst[d * BK + c] = src[c * D + d]


cdef inline void _scores_rx(const floating* rows, Py_ssize_t D, const floating* kt, floating* S) noexcept nogil:
    """S[r * BK + c] = rows[r] . k_c for R consecutive rows and all BK (zero-padded) keys.

    For each group of 8 keys the R x 8 accumulators live in registers across the whole D loop:
    one load of kt feeds R multiply-adds (the loops have constant trip counts, so gcc unrolls the
    r and w loops and vectorises over w)."""
    cdef Py_ssize_t c0, d, w
    cdef floating a0[8]
    cdef floating a1[8]
    cdef floating a2[8]
    cdef floating a3[8]
    cdef floating q0, q1, q2, q3, kv
    for c0 in range(0, BK, 8):
        for w in range(8):
            a0[w] = 0
            a1[w] = 0
            a2[w] = 0
            a3[w] = 0
        for d in range(D):
            q0 = rows[d]
            q1 = rows[D + d]
            q2 = rows[2 * D + d]
            q3 = rows[3 * D + d]
            for w in range(8):
                kv = kt[d * BK + c0 + w]
                a0[w] += q0 * kv
                a1[w] += q1 * kv
                a2[w] += q2 * kv
                a3[w] += q3 * kv
        for w in range(8):
            S[c0 + w] = a0[w]
            S[BK + c0 + w] = a1[w]
            S[2 * BK + c0 + w] = a2[w]
            S[3 * BK + c0 + w] = a3[w]


cdef inline const floating* _rows(const floating* x, Py_ssize_t i0, Py_ssize_t T, Py_ssize_t D,
                                  floating* pad) noexcept nogil:
    """R consecutive rows of x from i0: in place when all exist, else copied into pad (zeros beyond T)."""
    cdef Py_ssize_t n = min(<Py_ssize_t>R, T - i0)
    if n == R:
        return x + i0 * D
    memset(pad, 0, R * D * sizeof(floating))
    memcpy(pad, x + i0 * D, n * D * sizeof(floating))
    return pad


cdef inline void _axpy(floating a, const floating* x, floating* y, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t d
    for d in range(n):
        y[d] += a * x[d]


cdef void _attn_fwd_head(const floating* q, const floating* k, const floating* v, floating* out,
                         floating* lse, Py_ssize_t T, Py_ssize_t D, floating scale, bint causal,
                         const floating* bias, Py_ssize_t offset, const floating* mult) noexcept nogil:
    cdef floating* kt = <floating*>malloc(D * BK * sizeof(floating))
    cdef floating* S = <floating*>malloc(R * BK * sizeof(floating))
    cdef floating* pad = <floating*>malloc(R * D * sizeof(floating))
    cdef floating* acc = <floating*>malloc(BQ * D * sizeof(floating))
    cdef floating* m = <floating*>malloc(BQ * sizeof(floating))
    cdef floating* l = <floating*>malloc(BQ * sizeof(floating))
    cdef Py_ssize_t qb, kb, qs, qe, ks, ke, nk, r0, rr, r, i, c, ncol, d
    cdef floating a, rowmax, m_new, corr, psum, inv
    cdef floating* s
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
            for r0 in range(0, qe - qs, 4):
                _scores_rx(_rows(q, qs + r0, qe, D, pad), D, kt, S)
                for rr in range(min(<Py_ssize_t>R, qe - qs - r0)):
                    r = r0 + rr
                    i = qs + r
                    ncol = min(nk, i - ks + 1) if causal else nk      # causal: keys j <= i only
                    if ncol <= 0:
                        continue
                    s = S + rr * BK
                    a = scale * (mult[i] if mult != NULL else 1)
                    rowmax = -INFINITY
                    for c in range(ncol):
                        s[c] = s[c] * a + (bias[i - ks - c + offset] if bias != NULL else 0)
                        if s[c] > rowmax:
                            rowmax = s[c]
                    m_new = max(m[r], rowmax)
                    # rescale what the row gathered so far to the new max (exp(-inf) = 0 at the start)
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
    free(S)
    free(pad)
    free(acc)
    free(m)
    free(l)


cdef void _attn_bwd_head(const floating* q, const floating* k, const floating* v, const floating* out,
                         const floating* lse, const floating* dout, floating* dq, floating* dk, floating* dv,
                         double* dbias, Py_ssize_t T, Py_ssize_t D, floating scale, bint causal,
                         const floating* bias, Py_ssize_t offset, const floating* mult) noexcept nogil:
    cdef floating* kt = <floating*>malloc(D * BK * sizeof(floating))
    cdef floating* vt = <floating*>malloc(D * BK * sizeof(floating))
    cdef floating* P = <floating*>malloc(R * BK * sizeof(floating))
    cdef floating* DS = <floating*>malloc(R * BK * sizeof(floating))
    cdef floating* qpad = <floating*>malloc(R * D * sizeof(floating))
    cdef floating* dpad = <floating*>malloc(R * D * sizeof(floating))
    cdef floating* rowdot = <floating*>malloc(T * sizeof(floating))
    cdef Py_ssize_t kb, ks, ke, nk, i0, rr, i, c, d, ncol, nrows, cmax
    cdef floating a, accum, p0, p1, p2, p3, s0, s1, s2, s3
    cdef const floating* qr
    cdef const floating* dr
    cdef floating* dkr
    cdef floating* dvr
    # rowdot_i = dout_i . out_i = sum_j p_ij dp_ij: the softmax backward's row term
    for i in range(T):
        accum = 0
        for d in range(D):
            accum += dout[i * D + d] * out[i * D + d]
        rowdot[i] = accum
    memset(dq, 0, T * D * sizeof(floating))
    memset(dk, 0, T * D * sizeof(floating))
    memset(dv, 0, T * D * sizeof(floating))
    for kb in range((T + BK - 1) // BK):
        ks = kb * BK
        ke = min(ks + BK, T)
        nk = ke - ks
        _transpose_block(k + ks * D, kt, nk, D)
        _transpose_block(v + ks * D, vt, nk, D)
        for i0 in range(ks if causal else 0, T, 4):
            nrows = min(<Py_ssize_t>R, T - i0)
            qr = _rows(q, i0, T, D, qpad)
            dr = _rows(dout, i0, T, D, dpad)
            # rebuild s = q k^T (into P) and dp = dout v^T (into DS) for R rows at once
            _scores_rx(qr, D, kt, P)
            _scores_rx(dr, D, vt, DS)
            cmax = 0
            for rr in range(R):
                i = i0 + rr
                ncol = 0
                if rr < nrows:
                    ncol = min(nk, i - ks + 1) if causal else nk
                cmax = max(cmax, ncol)
                a = scale * (mult[i] if (mult != NULL and rr < nrows) else 1)
                for c in range(ncol):
                    # p = exp(s - lse);  ds = p (dp - rowdot);  stored pre-multiplied by a for dq, dk
                    P[rr * BK + c] = _exp(P[rr * BK + c] * a + (bias[i - ks - c + offset] if bias != NULL else 0)
                                          - lse[i])
                    DS[rr * BK + c] = P[rr * BK + c] * (DS[rr * BK + c] - rowdot[i])
                if dbias != NULL:
                    for c in range(ncol):
                        dbias[i - ks - c + offset] += DS[rr * BK + c]
                for c in range(ncol):
                    DS[rr * BK + c] *= a
                for c in range(ncol, BK):        # masked keys and padding rows contribute nothing
                    P[rr * BK + c] = 0
                    DS[rr * BK + c] = 0
            # in the forward pass this was: out_i = sum_j p_ij v_j;  so dv_j += sum_i p_ij dout_i,
            # and s_ij = a q_i . k_j gives dk_j += sum_i a ds_ij q_i: R rows per load/store of dv_j, dk_j
            for c in range(cmax):
                p0 = P[c]
                p1 = P[BK + c]
                p2 = P[2 * BK + c]
                p3 = P[3 * BK + c]
                s0 = DS[c]
                s1 = DS[BK + c]
                s2 = DS[2 * BK + c]
                s3 = DS[3 * BK + c]
                dvr = dv + (ks + c) * D
                dkr = dk + (ks + c) * D
                for d in range(D):
                    dvr[d] += p0 * dr[d] + p1 * dr[D + d] + p2 * dr[2 * D + d] + p3 * dr[3 * D + d]
                    dkr[d] += s0 * qr[d] + s1 * qr[D + d] + s2 * qr[2 * D + d] + s3 * qr[3 * D + d]
            # dq_i += sum_j a ds_ij k_j
            for rr in range(nrows):
                for c in range(cmax):
                    if DS[rr * BK + c] != 0:
                        _axpy(DS[rr * BK + c], k + (ks + c) * D, dq + (i0 + rr) * D, D)
    free(kt)
    free(vt)
    free(P)
    free(DS)
    free(qpad)
    free(dpad)
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
