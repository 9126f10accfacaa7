/* One instruction set's copy of the register-tiled product: included by tiles.h with
 *   TP_SUFFIX (avx2, avx512), TP_TARGET (its target attribute), TP_VW (floats per vector register).
 * No include guard: it is meant to be included once per instruction set. */

#define TP_CAT2(a, b) a##_##b
#define TP_CAT(a, b) TP_CAT2(a, b)
#define TP_VEC TP_CAT(tp_vec, TP_SUFFIX)
#define TP_NR (2 * TP_VW)         /* columns of the register tile: two vector registers */

typedef float TP_VEC __attribute__((vector_size(4 * TP_VW), aligned(4), may_alias));

/* C[0:6, 0:NR] += alpha * A[0:6, 0:K] B[0:K, 0:NR]: 12 vector accumulators. Each A[m, kk] is
 * broadcast against both halves of B's row kk. */
TP_TARGET static void TP_CAT(tp_micro, TP_SUFFIX)(ptrdiff_t K, float alpha, const float *A, ptrdiff_t a_rs,
                                                  ptrdiff_t a_ks, const float *B, ptrdiff_t ldb, float *C,
                                                  ptrdiff_t ldc)
{
    TP_VEC c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0};
    TP_VEC c30 = {0}, c31 = {0}, c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0};
    for (ptrdiff_t kk = 0; kk < K; kk++) {
        const TP_VEC b0 = *(const TP_VEC *)(B + kk * ldb);
        const TP_VEC b1 = *(const TP_VEC *)(B + kk * ldb + TP_VW);
        const float *a = A + kk * a_ks;
        float x;
        x = a[0];        c00 += x * b0; c01 += x * b1;
        x = a[a_rs];     c10 += x * b0; c11 += x * b1;
        x = a[2 * a_rs]; c20 += x * b0; c21 += x * b1;
        x = a[3 * a_rs]; c30 += x * b0; c31 += x * b1;
        x = a[4 * a_rs]; c40 += x * b0; c41 += x * b1;
        x = a[5 * a_rs]; c50 += x * b0; c51 += x * b1;
    }
#define TP_STORE(r, c0, c1)                                                      \
    *(TP_VEC *)(C + (r) * ldc) += alpha * c0;                                     \
    *(TP_VEC *)(C + (r) * ldc + TP_VW) += alpha * c1;
    TP_STORE(0, c00, c01) TP_STORE(1, c10, c11) TP_STORE(2, c20, c21)
    TP_STORE(3, c30, c31) TP_STORE(4, c40, c41) TP_STORE(5, c50, c51)
#undef TP_STORE
}

/* The ragged edges: three plain loops, the innermost an axpy over a row of B and of C (compiled
 * for this instruction set too, so it vectorises at this width). */
TP_TARGET static void TP_CAT(tp_plain, TP_SUFFIX)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, float alpha, const float *A,
                                                  ptrdiff_t a_rs, ptrdiff_t a_ks, const float *B, ptrdiff_t ldb,
                                                  float *C, ptrdiff_t ldc)
{
    for (ptrdiff_t m = 0; m < M; m++)
        for (ptrdiff_t kk = 0; kk < K; kk++) {
            const float a = alpha * A[m * a_rs + kk * a_ks];
            const float *b = B + kk * ldb;
            float *c = C + m * ldc;
            for (ptrdiff_t n = 0; n < N; n++)
                c[n] += a * b[n];
        }
}

/* C[0:6, 0:W] += alpha * A[0:6, 0:K] B[0:K, 0:W]: a column block one vector wide (a head dimension
 * of 16 under AVX-512, whose full tiles are 32 wide). The same arithmetic as tp_plain, in the same
 * order (each C element gets c += (alpha * a) * b, kk = 0, 1, ...), so the result is bit-identical;
 * but the six rows of C stay in registers across the K loop instead of going through memory at every
 * kk, six independent chains of fused multiply-adds instead of one. */
TP_TARGET static void TP_CAT(tp_narrow, TP_SUFFIX)(ptrdiff_t K, float alpha, const float *A, ptrdiff_t a_rs,
                                                   ptrdiff_t a_ks, const float *B, ptrdiff_t ldb, float *C,
                                                   ptrdiff_t ldc)
{
    TP_VEC c0 = *(TP_VEC *)C, c1 = *(TP_VEC *)(C + ldc), c2 = *(TP_VEC *)(C + 2 * ldc);
    TP_VEC c3 = *(TP_VEC *)(C + 3 * ldc), c4 = *(TP_VEC *)(C + 4 * ldc), c5 = *(TP_VEC *)(C + 5 * ldc);
    for (ptrdiff_t kk = 0; kk < K; kk++) {
        const TP_VEC b = *(const TP_VEC *)(B + kk * ldb);
        const float *a = A + kk * a_ks;
        c0 += (alpha * a[0]) * b;
        c1 += (alpha * a[a_rs]) * b;
        c2 += (alpha * a[2 * a_rs]) * b;
        c3 += (alpha * a[3 * a_rs]) * b;
        c4 += (alpha * a[4 * a_rs]) * b;
        c5 += (alpha * a[5 * a_rs]) * b;
    }
    *(TP_VEC *)C = c0;
    *(TP_VEC *)(C + ldc) = c1;
    *(TP_VEC *)(C + 2 * ldc) = c2;
    *(TP_VEC *)(C + 3 * ldc) = c3;
    *(TP_VEC *)(C + 4 * ldc) = c4;
    *(TP_VEC *)(C + 5 * ldc) = c5;
}

/* The last rows of C (fewer than 6), with tp_plain's arithmetic in tp_plain's order again: one row
 * at a time, up to four vectors of it held in registers across the K loop (four independent chains),
 * then one vector, then the last columns (fewer than W) exactly as tp_plain writes them. */
TP_TARGET static void TP_CAT(tp_rows, TP_SUFFIX)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, float alpha, const float *A,
                                                 ptrdiff_t a_rs, ptrdiff_t a_ks, const float *B, ptrdiff_t ldb,
                                                 float *C, ptrdiff_t ldc)
{
    for (ptrdiff_t m = 0; m < M; m++) {
        const float *a = A + m * a_rs;
        float *c = C + m * ldc;
        ptrdiff_t n = 0;
        for (; n + 4 * TP_VW <= N; n += 4 * TP_VW) {
            TP_VEC c0 = *(TP_VEC *)(c + n), c1 = *(TP_VEC *)(c + n + TP_VW);
            TP_VEC c2 = *(TP_VEC *)(c + n + 2 * TP_VW), c3 = *(TP_VEC *)(c + n + 3 * TP_VW);
            for (ptrdiff_t kk = 0; kk < K; kk++) {
                const float x = alpha * a[kk * a_ks];
                const float *b = B + kk * ldb + n;
                c0 += x * *(const TP_VEC *)b;
                c1 += x * *(const TP_VEC *)(b + TP_VW);
                c2 += x * *(const TP_VEC *)(b + 2 * TP_VW);
                c3 += x * *(const TP_VEC *)(b + 3 * TP_VW);
            }
            *(TP_VEC *)(c + n) = c0;
            *(TP_VEC *)(c + n + TP_VW) = c1;
            *(TP_VEC *)(c + n + 2 * TP_VW) = c2;
            *(TP_VEC *)(c + n + 3 * TP_VW) = c3;
        }
        for (; n + TP_VW <= N; n += TP_VW) {
            TP_VEC c0 = *(TP_VEC *)(c + n);
            for (ptrdiff_t kk = 0; kk < K; kk++)
                c0 += (alpha * a[kk * a_ks]) * *(const TP_VEC *)(B + kk * ldb + n);
            *(TP_VEC *)(c + n) = c0;
        }
        if (n < N)
            TP_CAT(tp_plain, TP_SUFFIX)(1, N - n, K, alpha, a, a_rs, a_ks, B + n, ldb, c + n, ldc);
    }
}

TP_TARGET static void TP_CAT(tp_mm, TP_SUFFIX)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, float alpha, const float *A,
                                               ptrdiff_t a_rs, ptrdiff_t a_ks, const float *B, ptrdiff_t ldb,
                                               float *C, ptrdiff_t ldc)
{
    const ptrdiff_t mf = M - M % TP_MR, nf = N - N % TP_NR;
    for (ptrdiff_t mb = 0; mb < mf; mb += TP_MR)
        for (ptrdiff_t nb = 0; nb < nf; nb += TP_NR)
            TP_CAT(tp_micro, TP_SUFFIX)(K, alpha, A + mb * a_rs, a_rs, a_ks, B + nb, ldb, C + mb * ldc + nb, ldc);
    /* columns nf.. of the first mf rows: one vector wide if there are that many, then the rest
     * (fewer than W) plainly; then the rows mf.. (tp_rows) */
    const ptrdiff_t nv = N - nf >= TP_VW ? nf + TP_VW : nf;
    if (nv > nf)
        for (ptrdiff_t mb = 0; mb < mf; mb += TP_MR)
            TP_CAT(tp_narrow, TP_SUFFIX)(K, alpha, A + mb * a_rs, a_rs, a_ks, B + nf, ldb, C + mb * ldc + nf, ldc);
    TP_CAT(tp_plain, TP_SUFFIX)(mf, N - nv, K, alpha, A, a_rs, a_ks, B + nv, ldb, C + nv, ldc);
    TP_CAT(tp_rows, TP_SUFFIX)(M - mf, N, K, alpha, A + mf * a_rs, a_rs, a_ks, B, ldb, C + mf * ldc, ldc);
}


/* The two halves of a decoding query's attention row (pyx/decode.pxi), for this instruction set:
 *   tp_rowdots:  s[j] = alpha * sum_d q[d] K[j * ks + d]          j < L    (the logits)
 *   tp_wsum:     o[d] = sum_j w[j] V[j * vs + d]                   d < D    (the weighted values)
 * Both keep four independent vector accumulators (four keys at a time) and handle D in vectors
 * of W floats; a D that is not a multiple of W takes plain loops, compiled for this set too. */
TP_TARGET static inline float TP_CAT(tp_hsum, TP_SUFFIX)(TP_VEC v)
{
    float t = 0;
    for (int i = 0; i < TP_VW; i++)
        t += v[i];
    return t;
}

TP_TARGET static void TP_CAT(tp_rowdots, TP_SUFFIX)(ptrdiff_t L, ptrdiff_t D, float alpha, const float *q,
                                                    const float *K, ptrdiff_t ks, float *s)
{
    ptrdiff_t j = 0;
    if (D % TP_VW == 0) {
        const ptrdiff_t nv = D / TP_VW;
        for (; j + 4 <= L; j += 4) {
            TP_VEC a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
            const float *k0 = K + j * ks;
            for (ptrdiff_t c = 0; c < nv; c++) {
                const TP_VEC qv = *(const TP_VEC *)(q + c * TP_VW);
                a0 += qv * *(const TP_VEC *)(k0 + c * TP_VW);
                a1 += qv * *(const TP_VEC *)(k0 + ks + c * TP_VW);
                a2 += qv * *(const TP_VEC *)(k0 + 2 * ks + c * TP_VW);
                a3 += qv * *(const TP_VEC *)(k0 + 3 * ks + c * TP_VW);
            }
            s[j] = alpha * TP_CAT(tp_hsum, TP_SUFFIX)(a0);
            s[j + 1] = alpha * TP_CAT(tp_hsum, TP_SUFFIX)(a1);
            s[j + 2] = alpha * TP_CAT(tp_hsum, TP_SUFFIX)(a2);
            s[j + 3] = alpha * TP_CAT(tp_hsum, TP_SUFFIX)(a3);
        }
    }
    for (; j < L; j++) {
        float t = 0;
        for (ptrdiff_t d = 0; d < D; d++)
            t += q[d] * K[j * ks + d];
        s[j] = alpha * t;
    }
}

TP_TARGET static void TP_CAT(tp_wsum, TP_SUFFIX)(ptrdiff_t L, ptrdiff_t D, const float *w, const float *V,
                                                 ptrdiff_t vs, float *o)
{
    if (D % TP_VW == 0) {
        for (ptrdiff_t c = 0; c < D; c += TP_VW) {
            TP_VEC a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
            const float *v0 = V + c;
            ptrdiff_t j = 0;
            for (; j + 4 <= L; j += 4) {
                a0 += w[j] * *(const TP_VEC *)(v0 + j * vs);
                a1 += w[j + 1] * *(const TP_VEC *)(v0 + (j + 1) * vs);
                a2 += w[j + 2] * *(const TP_VEC *)(v0 + (j + 2) * vs);
                a3 += w[j + 3] * *(const TP_VEC *)(v0 + (j + 3) * vs);
            }
            for (; j < L; j++)
                a0 += w[j] * *(const TP_VEC *)(v0 + j * vs);
            *(TP_VEC *)(o + c) = (a0 + a1) + (a2 + a3);
        }
        return;
    }
    for (ptrdiff_t d = 0; d < D; d++)
        o[d] = 0;
    for (ptrdiff_t j = 0; j < L; j++)
        for (ptrdiff_t d = 0; d < D; d++)
            o[d] += w[j] * V[j * vs + d];
}

#undef TP_NR
#undef TP_VEC
#undef TP_CAT
#undef TP_CAT2
