# Fused attention, forward and backward. Included by _ext.pyx. NumPy twin: tinype/reference.py.
#
#   s[i, j] = mult[i] * scale * q_i . k_j + bias[h, i - j]      (j <= i when causal)
#   out_i   = sum_j softmax_j(s[i, :]) v_j,     lse_i = log sum_j exp(s[i, j])
#
# Shape letters: B batch, H heads, T time, D head dim. BQ x BK tiles of queries and keys.
#
# How it runs:
# - Online softmax over key blocks (the flash-attention recurrence): a row keeps its running max m,
#   its running sum l and its unnormalised output; a new block rescales them by exp(m_old - m_new).
#   Memory is O(T D) per head; no T x T matrix ever exists, only one BQ x BK tile per thread.
# - Each tile is a handful of small matrix products (S = Q K^T, O += P V; in the backward also
#   dV += P^T dO, dP = dO V^T, dQ += dS K, dK += dS^T Q), all of the one form of _tile_mm below.
#   K^T and V^T are packed once per call (block by block), so no product transposes anything.
# - _tile_mm computes float32 products in register tiles (pyx/tiles.h: 6 x 16 floats in AVX2
#   registers, or 6 x 32 in AVX-512 ones), each loaded row of B feeding 12 fused multiply-adds,
#   which lifts a matrix product from memory speed to arithmetic speed (~4x the plain loop here).
#   The extension itself is compiled for any x86-64; only those tile functions carry AVX2 / AVX-512,
#   and the CPU path (_common.pxi) picks one at run time. The portable path (older CPUs, aarch64,
#   TINYPE_CPU_PATH=portable) has 6 x 8 tiles in the 128-bit vectors every x86-64 and aarch64 has;
#   float64 (the gradient checks) takes the plain loop.
# - Causal attention visits only key blocks with j <= i; the diagonal tile masks its upper half.
# - Forward: one OpenMP task per (batch, head, query tile). Backward: one per (batch, head), so that
#   dq, dk, dv and the bias-table gradient of a head each have a single writer (no atomics).

# True when this build on this CPU multiplies float32 tiles in vector registers.
ATTENTION_REGISTER_TILES = _cpu_best > 0 or bool(TP_HAVE_BASE)

cdef enum:
    BQ = 96          # query rows per tile
    BK = 96          # keys per tile


cdef void _plain_mm(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, floating alpha, const floating* A,
                    Py_ssize_t a_rs, Py_ssize_t a_ks, const floating* B, Py_ssize_t ldb, floating* C,
                    Py_ssize_t ldc) noexcept nogil:
    """_tile_mm as three plain loops; the innermost is an axpy over a row of B and of C."""
    cdef Py_ssize_t m, kk, n
    cdef floating a
    for m in range(M):
        for kk in range(K):
            a = alpha * A[m * a_rs + kk * a_ks]
            for n in range(N):
                C[m * ldc + n] += a * B[kk * ldb + n]


cdef void _tile_mm(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, floating alpha, const floating* A,
                   Py_ssize_t a_rs, Py_ssize_t a_ks, const floating* B, Py_ssize_t ldb, floating* C,
                   Py_ssize_t ldc) noexcept nogil:
    """C[m, n] += alpha * sum_k A[m, k] B[k, n], with A[m, k] = A[m * a_rs + k * a_ks] (a_ks = 1: A
    is row-major; a_rs = 1: A is stored transposed), B row-major with row stride ldb, C with ldc."""
    if floating is float:
        if _cpu_path == 2:
            tp_mm_avx512(M, N, K, alpha, A, a_rs, a_ks, B, ldb, C, ldc)
            return
        if _cpu_path == 1:
            tp_mm_avx2(M, N, K, alpha, A, a_rs, a_ks, B, ldb, C, ldc)
            return
        if TP_HAVE_BASE:
            tp_mm_base(M, N, K, alpha, A, a_rs, a_ks, B, ldb, C, ldc)
            return
    _plain_mm(M, N, K, alpha, A, a_rs, a_ks, B, ldb, C, ldc)


cdef void _pack_transposed(const floating* x, floating* xt, Py_ssize_t T, Py_ssize_t D) noexcept nogil:
    """xt[blk, d, c] = x[blk * BK + c, d]: each key block as a D x BK row-major matrix (zero-padded)."""
    cdef Py_ssize_t blk, c, d, n
    for blk in range((T + BK - 1) // BK):
        n = min(BK, T - blk * BK)
        for d in range(D):
            for c in range(n):
                xt[(blk * D + d) * BK + c] = x[(blk * BK + c) * D + d]
            for c in range(n, BK):
                xt[(blk * D + d) * BK + c] = 0


cdef inline Py_ssize_t _visible(Py_ssize_t i, Py_ssize_t ks, Py_ssize_t nk, bint causal) noexcept nogil:
    """How many of the keys ks .. ks+nk-1 query i sees: all, or (causal) those with j <= i."""
    if not causal:
        return nk
    return max(0, min(nk, i - ks + 1))


cdef inline void _row_logits(floating* srow, Py_ssize_t ncol, floating a, const floating* bias,
                             Py_ssize_t diag) noexcept nogil:
    """srow[c] = a * srow[c] + bias[diag - c] for the ncol visible keys (diag: the table index of
    the tile's first key, offset + i - ks): the row's multiplier, then the bias at distance i - j."""
    cdef Py_ssize_t c
    if a != 1:
        for c in range(ncol):
            srow[c] *= a
    if bias != NULL:
        for c in range(ncol):
            srow[c] += bias[diag - c]


cdef inline floating _row_max(const floating* x, Py_ssize_t n) noexcept nogil:
    """max(x[0:n]) (-inf for n = 0), as 8 running maxima: one serial max is a chain of dependent
    instructions (gcc keeps NaN-aware max reductions in order), eight independent ones vectorise."""
    cdef floating lanes[8]
    cdef floating best = -INFINITY
    cdef Py_ssize_t c, j
    for j in range(8):
        lanes[j] = -INFINITY
    for c in range(n // 8):
        for j in range(8):
            lanes[j] = max(lanes[j], x[c * 8 + j])
    for j in range(8):
        best = max(best, lanes[j])
    for c in range(n - n % 8, n):
        best = max(best, x[c])
    return best


cdef inline floating _row_weights(floating* srow, Py_ssize_t ncol, Py_ssize_t nk, floating shift) noexcept nogil:
    """srow[c] = exp(srow[c] - shift) for the ncol visible keys and 0 for the masked rest of the
    tile's nk (they weigh nothing in P V); returns the sum of the weights.

    The exponent is floored at -87 (float32; -700 in float64): libmvec's vector exp handles an
    underflowing lane by a scalar call, and a distance bias such as ALiBi's makes most far-away
    logits underflow (~15% of the backward went there). The floor is its own loop: within one
    expression gcc rewrites exp(max(x, a)) into x > a ? exp(x) : exp(a), calling exp on x anyway.

    Weights below TINY (1e-20 in float32, 1e-200 in float64) are then set to exactly 0. Next to
    the row's largest weight, 1, they are far below the float's resolution, so no sum changes; but
    left in place, a weight of 1.6e-38 times a gradient of 1e-3 is a subnormal number, and on x86
    every arithmetic operation on a subnormal takes a slow microcode path: with ALiBi, whose far
    keys all sit at the floor, that made the backward 5-8x slower than without a bias."""
    cdef Py_ssize_t c
    cdef floating total = 0
    cdef floating low = -87 if floating is float else -700
    cdef floating tiny = <floating>(1e-20 if floating is float else 1e-200)
    for c in range(ncol):
        srow[c] = srow[c] - shift
        srow[c] = low if srow[c] < low else srow[c]      # so written, a NaN stays NaN
    for c in range(ncol):
        srow[c] = _exp(srow[c])
    for c in range(ncol):
        srow[c] = 0 if srow[c] < tiny else srow[c]       # (a NaN stays NaN here too)
        total += srow[c]
    for c in range(ncol, nk):
        srow[c] = 0
    return total


cdef inline floating _logits_max(floating* srow, Py_ssize_t ncol, floating a, const floating* bias,
                                 Py_ssize_t diag, bint with_max=True) noexcept nogil:
    """_row_logits, then (with_max) _row_max; float32 takes this CPU path's copy (pyx/elementwise.h),
    whose loops are vectorised at its width (16 floats under AVX-512, where this file's are 4)."""
    if floating is float:
        return tp_row_logits(_cpu_path, srow, ncol, a, bias, diag, with_max)
    _row_logits(srow, ncol, a, bias, diag)
    return _row_max(srow, ncol) if with_max else -INFINITY


cdef inline floating _weights(floating* srow, Py_ssize_t ncol, Py_ssize_t nk, floating shift) noexcept nogil:
    """_row_weights; float32 takes this CPU path's copy (pyx/elementwise.h), which calls the 16-wide
    exp under AVX-512 (this file's loops call the 4-wide one)."""
    if floating is float:
        return tp_row_weights(_cpu_path, srow, ncol, nk, shift)
    return _row_weights(srow, ncol, nk, shift)


cdef inline void _add_diagonals(floating* dg, const floating* dsrow, Py_ssize_t e0, Py_ssize_t ncol) noexcept nogil:
    """dg[e0 - c] += dsrow[c] for c < ncol: a row's share of the tile's sums along diagonals i - j.
    Written with dg indexed forwards: gcc vectorises it so (a reversed store does not)."""
    cdef const floating* src = dsrow + e0
    cdef Py_ssize_t e
    for e in range(e0 - ncol + 1, e0 + 1):
        dg[e] += src[-e]


cdef void _attn_fwd_tile(const floating* q, const floating* kt, const floating* v, floating* out,
                         floating* lse, Py_ssize_t T, Py_ssize_t D, Py_ssize_t qs, floating scale,
                         bint causal, const floating* bias, Py_ssize_t offset, const floating* mult) noexcept nogil:
    """Rows qs .. qs+BQ-1 of one head: out and lse, one key block at a time."""
    cdef Py_ssize_t nq = min(BQ, T - qs)
    cdef floating* s = <floating*>malloc(BQ * BK * sizeof(floating))
    cdef floating* acc = <floating*>malloc(BQ * D * sizeof(floating))
    cdef floating* m = <floating*>malloc(BQ * sizeof(floating))
    cdef floating* l = <floating*>malloc(BQ * sizeof(floating))
    cdef Py_ssize_t kb, ks, nk, r, i, c, d, ncol
    cdef floating m_new, corr, psum, inv
    cdef floating* srow
    for r in range(nq):
        m[r] = -INFINITY
        l[r] = 0
    memset(acc, 0, BQ * D * sizeof(floating))
    for kb in range(((qs + nq if causal else T) + BK - 1) // BK):
        ks = kb * BK
        nk = min(BK, T - ks)
        # S = scale * Q K^T for this tile (kt holds the block as D x BK)
        memset(s, 0, nq * BK * sizeof(floating))        # the rows in use
        _tile_mm(nq, nk, D, scale, q + qs * D, D, 1, kt + kb * D * BK, BK, s, BK)
        for r in range(nq):
            i = qs + r
            srow = s + r * BK
            ncol = _visible(i, ks, nk, causal)
            m_new = max(m[r], _logits_max(srow, ncol, mult[i] if mult != NULL else 1, bias, offset + i - ks))
            if m_new == -INFINITY:                     # nothing visible yet: the row stays empty
                memset(srow, 0, nk * sizeof(floating))
                continue
            # rescale what this row gathered so far to the new max (exp(-inf) = 0 at the start)
            corr = _exp(m[r] - m_new)
            psum = _weights(srow, ncol, nk, m_new)
            l[r] = l[r] * corr + psum
            m[r] = m_new
            if corr != 1:
                for d in range(D):
                    acc[r * D + d] *= corr
        # acc += P V for this tile
        _tile_mm(nq, D, nk, <floating>1, s, BK, 1, v + ks * D, D, acc, D)
    for r in range(nq):
        i = qs + r
        inv = 1 / l[r]
        for d in range(D):
            out[i * D + d] = acc[r * D + d] * inv
        lse[i] = m[r] + _log(l[r])
    free(s)
    free(acc)
    free(m)
    free(l)


cdef void _attn_bwd_head(const floating* q, const floating* k, const floating* kt,
                         const floating* vt, const floating* out, const floating* lse, const floating* dout,
                         floating* dq, floating* dk, floating* dv, double* dbias, Py_ssize_t n_table,
                         Py_ssize_t T, Py_ssize_t D, floating scale, bint causal, const floating* bias, Py_ssize_t offset,
                         const floating* mult) noexcept nogil:
    """dq, dk, dv (and this head's bias-table gradient) of one head, key block by key block."""
    cdef floating* p = <floating*>malloc(BQ * BK * sizeof(floating))
    cdef floating* ds = <floating*>malloc(BQ * BK * sizeof(floating))
    cdef floating* rowdot = <floating*>malloc(T * sizeof(floating))
    cdef floating* dg = <floating*>malloc((BQ + BK - 1) * sizeof(floating))
    cdef Py_ssize_t kb, ks, nk, qb, qs, nq, r, i, c, d, ncol, diag
    cdef floating acc, a
    cdef floating* prow
    cdef floating* dsrow
    # rowdot_i = dout_i . out_i = sum_j p_ij dp_ij: the softmax backward's row term
    for i in range(T):
        acc = 0
        for d in range(D):
            acc += dout[i * D + d] * out[i * D + d]
        rowdot[i] = acc
    memset(dq, 0, T * D * sizeof(floating))
    memset(dk, 0, T * D * sizeof(floating))
    memset(dv, 0, T * D * sizeof(floating))
    memset(dg, 0, (BQ + BK - 1) * sizeof(floating))
    for kb in range((T + BK - 1) // BK):
        ks = kb * BK
        nk = min(BK, T - ks)
        for qb in range((ks // BQ) if causal else 0, (T + BQ - 1) // BQ):
            qs = qb * BQ
            nq = min(BQ, T - qs)
            # rebuild P = exp(S - lse) for the tile
            memset(p, 0, nq * BK * sizeof(floating))
            _tile_mm(nq, nk, D, scale, q + qs * D, D, 1, kt + kb * D * BK, BK, p, BK)
            for r in range(nq):
                i = qs + r
                prow = p + r * BK
                ncol = _visible(i, ks, nk, causal)
                _logits_max(prow, ncol, mult[i] if mult != NULL else 1, bias, offset + i - ks, False)
                _weights(prow, ncol, nk, lse[i])
            # in the forward pass this was: out_i = sum_j p_ij v_j;  so dv_j += p_ij dout_i
            _tile_mm(nk, D, nq, <floating>1, p, 1, BK, dout + qs * D, D, dv + ks * D, D)
            # dp_ij = dout_i . v_j;  ds_ij = p_ij (dp_ij - rowdot_i)
            memset(ds, 0, nq * BK * sizeof(floating))
            _tile_mm(nq, nk, D, <floating>1, dout + qs * D, D, 1, vt + kb * D * BK, BK, ds, BK)
            for r in range(nq):
                i = qs + r
                prow = p + r * BK
                dsrow = ds + r * BK
                for c in range(nk):
                    dsrow[c] = prow[c] * (dsrow[c] - rowdot[i])
                if dbias != NULL:                      # s_ij = ... + bias[i - j]
                    _add_diagonals(dg, dsrow, r + BK - 1, _visible(i, ks, nk, causal))
                if mult != NULL:
                    a = mult[i]
                    for c in range(nk):
                        dsrow[c] *= a
            if dbias != NULL:
                # tile diagonal e = r - c + BK - 1 is table entry offset + qs - ks + r - c
                diag = offset + qs - ks - (BK - 1)
                for c in range(max(0, -diag), min(BQ + BK - 1, n_table - diag)):
                    dbias[diag + c] += dg[c]
                memset(dg, 0, (BQ + BK - 1) * sizeof(floating))
            # s_ij = scale mult_i q_i . k_j + b:  dq_i += scale mult_i ds_ij k_j,  dk_j += scale mult_i ds_ij q_i
            _tile_mm(nq, D, nk, scale, ds, BK, 1, k + ks * D, D, dq + qs * D, D)
            _tile_mm(nk, D, nq, scale, ds, 1, BK, q + qs * D, D, dk + ks * D, D)
    free(p)
    free(ds)
    free(rowdot)
    free(dg)


def _packed(x):
    """K^T or V^T block by block (B, H, blocks, D, BK), zero-padded: the B operand of S = Q K^T."""
    B, H, T, D = x.shape
    xt = np.empty((B, H, (T + BK - 1) // BK, D, BK), dtype=x.dtype)
    _pack_all(x, xt)
    return xt


def _pack_all(const floating[:, :, :, ::1] x, floating[:, :, :, :, ::1] xt):
    cdef Py_ssize_t H = x.shape[1], T = x.shape[2], D = x.shape[3], bh
    with nogil:
        for bh in prange(x.shape[0] * H, schedule="static"):
            _pack_transposed(&x[bh // H, bh % H, 0, 0], &xt[bh // H, bh % H, 0, 0, 0], T, D)


def attention_forward(q, k, v, double scale, bint causal=True, bias=None, logit_scale=None):
    """Fused attention; returns out (B, H, T, D) and lse (B, H, T). Twin: reference.attention_forward.

    q, k, v: C-contiguous (B, H, T, D), float32 or float64; bias: None, (H, T) or (H, 2T-1);
    logit_scale: None or (T,); all of one dtype.
    """
    cdef Py_ssize_t offset = _checks.attention(q, k, v, bias, logit_scale, causal)
    out = np.empty_like(q)
    lse = np.empty(q.shape[:3], dtype=q.dtype)
    # empty stand-ins for an absent bias or logit_scale: the loops pass NULL for them
    none2, none1 = np.zeros((0, 0), q.dtype), np.zeros(0, q.dtype)
    _attn_fwd(q, _packed(k), v, out, lse, scale, causal, none2 if bias is None else bias, bias is not None, offset,
              none1 if logit_scale is None else logit_scale, logit_scale is not None)
    return out, lse


def _attn_fwd(const floating[:, :, :, ::1] q, const floating[:, :, :, :, ::1] kt, const floating[:, :, :, ::1] v,
              floating[:, :, :, ::1] out, floating[:, :, ::1] lse, double scale, bint causal,
              const floating[:, ::1] bias, bint with_bias, Py_ssize_t offset,
              const floating[::1] logit_scale, bint with_mult):
    cdef Py_ssize_t B = q.shape[0], H = q.shape[1], T = q.shape[2], D = q.shape[3], b, h, task
    cdef Py_ssize_t tiles = (T + BQ - 1) // BQ, qb
    cdef const floating* bias_p = &bias[0, 0] if with_bias else NULL
    cdef const floating* mult_p = &logit_scale[0] if with_mult else NULL
    cdef Py_ssize_t n_table = bias.shape[1]
    with nogil:
        # the last query tiles of a causal head have the most keys: hand them out first
        for task in prange(B * H * tiles, schedule="dynamic"):
            qb = tiles - 1 - task % tiles
            b = task // tiles // H
            h = task // tiles % H
            _attn_fwd_tile(&q[b, h, 0, 0], &kt[b, h, 0, 0, 0], &v[b, h, 0, 0], &out[b, h, 0, 0], &lse[b, h, 0],
                           T, D, qb * BQ, <floating>scale, causal, (bias_p + h * n_table) if bias_p != NULL else NULL,
                           offset, mult_p)


def attention_backward(dout, q, k, v, out, lse, double scale, bint causal=True, bias=None, logit_scale=None):
    """Returns dq, dk, dv (B, H, T, D) and dbias (bias's shape, or None). Twin: reference.attention_backward."""
    cdef Py_ssize_t offset = _checks.attention(q, k, v, bias, logit_scale, causal)
    _checks.attention_saved(q, dout, out, lse)
    dq = np.empty_like(q)
    dk = np.empty_like(q)
    dv = np.empty_like(q)
    # one bias-gradient row per (batch, head): each task writes only its own, summed over B below
    dbias = np.zeros((q.shape[0], q.shape[1], 0 if bias is None else bias.shape[1]), dtype=np.float64)
    none2, none1 = np.zeros((0, 0), q.dtype), np.zeros(0, q.dtype)
    _attn_bwd(dout, q, k, _packed(k), _packed(v), out, lse, dq, dk, dv, dbias, scale, causal,
              none2 if bias is None else bias, bias is not None, offset,
              none1 if logit_scale is None else logit_scale, logit_scale is not None)
    return dq, dk, dv, None if bias is None else dbias.sum(axis=0).astype(q.dtype)


def _attn_bwd(const floating[:, :, :, ::1] dout, const floating[:, :, :, ::1] q, const floating[:, :, :, ::1] k,
              const floating[:, :, :, :, ::1] kt, const floating[:, :, :, :, ::1] vt,
              const floating[:, :, :, ::1] out, const floating[:, :, ::1] lse,
              floating[:, :, :, ::1] dq, floating[:, :, :, ::1] dk, floating[:, :, :, ::1] dv,
              double[:, :, ::1] dbias, double scale, bint causal, const floating[:, ::1] bias, bint with_bias,
              Py_ssize_t offset, const floating[::1] logit_scale, bint with_mult):
    cdef Py_ssize_t B = q.shape[0], H = q.shape[1], T = q.shape[2], D = q.shape[3], bh, b, h
    cdef const floating* bias_p = &bias[0, 0] if with_bias else NULL
    cdef const floating* mult_p = &logit_scale[0] if with_mult else NULL
    cdef double* dbias_p = &dbias[0, 0, 0] if with_bias else NULL
    cdef Py_ssize_t n_table = bias.shape[1]
    with nogil:
        for bh in prange(B * H, schedule="dynamic"):
            b = bh // H
            h = bh % H
            _attn_bwd_head(&q[b, h, 0, 0], &k[b, h, 0, 0], &kt[b, h, 0, 0, 0], &vt[b, h, 0, 0, 0],
                           &out[b, h, 0, 0], &lse[b, h, 0], &dout[b, h, 0, 0], &dq[b, h, 0, 0], &dk[b, h, 0, 0],
                           &dv[b, h, 0, 0], (dbias_p + bh * n_table) if dbias_p != NULL else NULL, n_table, T, D,
                           <floating>scale, causal, (bias_p + h * n_table) if bias_p != NULL else NULL, offset, mult_p)
