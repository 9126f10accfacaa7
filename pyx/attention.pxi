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
# - _tile_mm computes float32 products 6 rows x 16 columns at a time with the 12 partial sums held
#   in AVX registers (gcc's vector types): each loaded row of B feeds 6 fused multiply-adds, which
#   is what lifts a matrix product from memory speed to arithmetic speed (~4x the plain loop here).
#   float64 (the gradient checks), the ragged edges of a tile and CPUs without AVX (a
#   TINYPE_PORTABLE=1 build) take the plain loop.
# - Causal attention visits only key blocks with j <= i; the diagonal tile masks its upper half.
# - Forward: one OpenMP task per (batch, head, query tile). Backward: one per (batch, head), so that
#   dq, dk, dv and the bias-table gradient of a head each have a single writer (no atomics).

from libc.stdlib cimport malloc, free
from libc.string cimport memset

cdef extern from "math.h" nogil:
    float INFINITY

cdef extern from *:
    """
    /* Eight floats in one 256-bit register (gcc/clang vector extension). aligned(4): a load or
       store through this type may sit at any float address. Without AVX (TINYPE_PORTABLE=1
       builds, other CPUs) gcc would emulate the type through memory, 20x slower than the plain
       loop, and other compilers lack the extension: there the register tile is left out, and the
       type is a plain float only so that the unused tile function still compiles. */
    #if defined(__GNUC__) && defined(__AVX__)
    typedef float tp_f8 __attribute__((vector_size(32), aligned(4)));
    static inline tp_f8 tp_f8_zero(void) { tp_f8 z = {0}; return z; }
    #define TP_REGISTER_TILES 1
    #else
    typedef float tp_f8;
    static inline tp_f8 tp_f8_zero(void) { return 0; }
    #define TP_REGISTER_TILES 0
    #endif
    """
    ctypedef float f8 "tp_f8"
    f8 f8_zero "tp_f8_zero"() nogil
    const bint REGISTER_TILES "TP_REGISTER_TILES"

# True when this build multiplies float32 tiles in AVX registers (see above); the benchmark prints it.
ATTENTION_REGISTER_TILES = bool(REGISTER_TILES)

cdef enum:
    BQ = 96          # query rows per tile
    BK = 96          # keys per tile
    MR = 6           # micro-tile rows (float32 fast path)
    NR = 16          # micro-tile columns: two registers of 8 floats


cdef void _micro_6x16(Py_ssize_t K, float alpha, const float* A, Py_ssize_t a_rs, Py_ssize_t a_ks,
                      const float* B, Py_ssize_t ldb, float* C, Py_ssize_t ldc) noexcept nogil:
    """C[0:6, 0:16] += alpha * A[0:6, 0:K] B[0:K, 0:16]; A[m, k] = A[m * a_rs + k * a_ks]."""
    cdef f8 c00 = f8_zero(), c01 = f8_zero(), c10 = f8_zero(), c11 = f8_zero()
    cdef f8 c20 = f8_zero(), c21 = f8_zero(), c30 = f8_zero(), c31 = f8_zero()
    cdef f8 c40 = f8_zero(), c41 = f8_zero(), c50 = f8_zero(), c51 = f8_zero()
    cdef f8 b0, b1
    cdef float a
    cdef Py_ssize_t kk
    for kk in range(K):
        b0 = (<f8*>(B + kk * ldb))[0]               # B[kk, 0:8] and B[kk, 8:16]
        b1 = (<f8*>(B + kk * ldb + 8))[0]
        a = A[kk * a_ks]                            # each A[m, kk] is broadcast against both
        c00 += a * b0
        c01 += a * b1
        a = A[a_rs + kk * a_ks]
        c10 += a * b0
        c11 += a * b1
        a = A[2 * a_rs + kk * a_ks]
        c20 += a * b0
        c21 += a * b1
        a = A[3 * a_rs + kk * a_ks]
        c30 += a * b0
        c31 += a * b1
        a = A[4 * a_rs + kk * a_ks]
        c40 += a * b0
        c41 += a * b1
        a = A[5 * a_rs + kk * a_ks]
        c50 += a * b0
        c51 += a * b1
    (<f8*>C)[0] += alpha * c00
    (<f8*>(C + 8))[0] += alpha * c01
    (<f8*>(C + ldc))[0] += alpha * c10
    (<f8*>(C + ldc + 8))[0] += alpha * c11
    (<f8*>(C + 2 * ldc))[0] += alpha * c20
    (<f8*>(C + 2 * ldc + 8))[0] += alpha * c21
    (<f8*>(C + 3 * ldc))[0] += alpha * c30
    (<f8*>(C + 3 * ldc + 8))[0] += alpha * c31
    (<f8*>(C + 4 * ldc))[0] += alpha * c40
    (<f8*>(C + 4 * ldc + 8))[0] += alpha * c41
    (<f8*>(C + 5 * ldc))[0] += alpha * c50
    (<f8*>(C + 5 * ldc + 8))[0] += alpha * c51


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
    cdef Py_ssize_t mf = 0, nf = 0, mb, nb
    if floating is float and REGISTER_TILES:
        mf = M - M % MR
        nf = N - N % NR
        for mb in range(mf // MR):
            for nb in range(nf // NR):
                _micro_6x16(K, alpha, A + mb * MR * a_rs, a_rs, a_ks, B + nb * NR, ldb,
                            C + mb * MR * ldc + nb * NR, ldc)
    # the ragged edges: columns nf.. of the first mf rows, then the rows mf..
    _plain_mm(mf, N - nf, K, alpha, A, a_rs, a_ks, B + nf, ldb, C + nf, ldc)
    _plain_mm(M - mf, N, K, alpha, A + mf * a_rs, a_rs, a_ks, B, ldb, C + mf * ldc, ldc)


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
    logits underflow (~15% of the backward went there). A weight of 1.6e-38 instead of 0, beside
    the row's largest weight 1, changes nothing measurable. The floor is its own loop: within one
    expression gcc rewrites exp(max(x, a)) into x > a ? exp(x) : exp(a), calling exp on x anyway."""
    cdef Py_ssize_t c
    cdef floating total = 0
    cdef floating low = -87 if floating is float else -700
    for c in range(ncol):
        srow[c] = srow[c] - shift
        srow[c] = low if srow[c] < low else srow[c]      # so written, a NaN stays NaN
    for c in range(ncol):
        srow[c] = _exp(srow[c])
        total += srow[c]
    for c in range(ncol, nk):
        srow[c] = 0
    return total


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
        memset(s, 0, BQ * BK * sizeof(floating))
        _tile_mm(nq, nk, D, scale, q + qs * D, D, 1, kt + kb * D * BK, BK, s, BK)
        for r in range(nq):
            i = qs + r
            srow = s + r * BK
            ncol = _visible(i, ks, nk, causal)
            _row_logits(srow, ncol, mult[i] if mult != NULL else 1, bias, offset + i - ks)
            m_new = max(m[r], _row_max(srow, ncol))
            if m_new == -INFINITY:                     # nothing visible yet: the row stays empty
                memset(srow, 0, nk * sizeof(floating))
                continue
            # rescale what this row gathered so far to the new max (exp(-inf) = 0 at the start)
            corr = _exp(m[r] - m_new)
            psum = _row_weights(srow, ncol, nk, m_new)
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
            memset(p, 0, BQ * BK * sizeof(floating))
            _tile_mm(nq, nk, D, scale, q + qs * D, D, 1, kt + kb * D * BK, BK, p, BK)
            for r in range(nq):
                i = qs + r
                prow = p + r * BK
                ncol = _visible(i, ks, nk, causal)
                _row_logits(prow, ncol, mult[i] if mult != NULL else 1, bias, offset + i - ks)
                _row_weights(prow, ncol, nk, lse[i])
            # in the forward pass this was: out_i = sum_j p_ij v_j;  so dv_j += p_ij dout_i
            _tile_mm(nk, D, nq, <floating>1, p, 1, BK, dout + qs * D, D, dv + ks * D, D)
            # dp_ij = dout_i . v_j;  ds_ij = p_ij (dp_ij - rowdot_i)
            memset(ds, 0, BQ * BK * sizeof(floating))
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


def _packed(x):
    """K^T or V^T block by block (B, H, blocks, D, BK), zero-padded: the B operand of S = Q K^T."""
    B, H, T, D = x.shape
    xt = np.empty((B, H, (T + BK - 1) // BK, D, BK), dtype=x.dtype)
    if x.dtype == np.float32:
        _pack_all[float](x, xt)
    else:
        _pack_all[double](x, xt)
    return xt


cdef void _pack_all(floating[:, :, :, ::1] x, floating[:, :, :, :, ::1] xt):
    cdef Py_ssize_t H = x.shape[1], T = x.shape[2], D = x.shape[3], bh
    with nogil:
        for bh in prange(x.shape[0] * H, schedule="static"):
            _pack_transposed(&x[bh // H, bh % H, 0, 0], &xt[bh // H, bh % H, 0, 0, 0], T, D)


def attention_forward(q, k, v, double scale, bint causal=True, bias=None, logit_scale=None):
    """Fused attention; returns out (B, H, T, D) and lse (B, H, T). Twin: reference.attention_forward.

    q, k, v: C-contiguous (B, H, T, D), float32 or float64; bias: None, (H, T) or (H, 2T-1);
    logit_scale: None or (T,); all of one dtype.
    """
    cdef Py_ssize_t offset = _check_attention(q, k, v, bias, logit_scale, causal)
    out = np.empty_like(q)
    lse = np.empty(q.shape[:3], dtype=q.dtype)
    kt = _packed(k)
    if q.dtype == np.float32:
        _attn_fwd[float](q, kt, v, out, lse, scale, causal, bias, offset, logit_scale)
    else:
        _attn_fwd[double](q, kt, v, out, lse, scale, causal, bias, offset, logit_scale)
    return out, lse


cdef void _attn_fwd(floating[:, :, :, ::1] q, floating[:, :, :, :, ::1] kt, floating[:, :, :, ::1] v,
                    floating[:, :, :, ::1] out, floating[:, :, ::1] lse, double scale, bint causal,
                    object bias, Py_ssize_t offset, object logit_scale):
    cdef Py_ssize_t B = q.shape[0], H = q.shape[1], T = q.shape[2], D = q.shape[3], b, h, task
    cdef Py_ssize_t tiles = (T + BQ - 1) // BQ, qb
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
    cdef Py_ssize_t offset = _check_attention(q, k, v, bias, logit_scale, causal)
    _check("dout", dout, 4, q.dtype)
    _check("out", out, 4, q.dtype)
    _check("lse", lse, 3, q.dtype)
    if dout.shape != q.shape or out.shape != q.shape or lse.shape != q.shape[:3]:
        raise ValueError(f"dout {dout.shape}, out {out.shape}, lse {lse.shape} do not fit q {q.shape}")
    dq = np.empty_like(q)
    dk = np.empty_like(q)
    dv = np.empty_like(q)
    kt, vt = _packed(k), _packed(v)
    # one bias-gradient row per (batch, head): each task writes only its own, summed over B below
    dbias = None if bias is None else np.zeros((q.shape[0], q.shape[1], bias.shape[1]), dtype=np.float64)
    if q.dtype == np.float32:
        _attn_bwd[float](dout, q, k, kt, vt, out, lse, dq, dk, dv, dbias, scale, causal, bias, offset, logit_scale)
    else:
        _attn_bwd[double](dout, q, k, kt, vt, out, lse, dq, dk, dv, dbias, scale, causal, bias, offset, logit_scale)
    if dbias is not None:
        dbias = dbias.sum(axis=0).astype(q.dtype)
    return dq, dk, dv, dbias


cdef void _attn_bwd(floating[:, :, :, ::1] dout, floating[:, :, :, ::1] q, floating[:, :, :, ::1] k,
                    floating[:, :, :, :, ::1] kt, floating[:, :, :, :, ::1] vt,
                    floating[:, :, :, ::1] out, floating[:, :, ::1] lse,
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
            _attn_bwd_head(&q[b, h, 0, 0], &k[b, h, 0, 0], &kt[b, h, 0, 0, 0], &vt[b, h, 0, 0, 0],
                           &out[b, h, 0, 0], &lse[b, h, 0], &dout[b, h, 0, 0], &dq[b, h, 0, 0], &dk[b, h, 0, 0],
                           &dv[b, h, 0, 0], (dbias_p + bh * n_table) if dbias_p != NULL else NULL, n_table, T, D,
                           <floating>scale, causal, (bias_p + h * n_table) if bias_p != NULL else NULL, offset, mult_p)
