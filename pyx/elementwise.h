/* GELU's float32 forward and backward and one row of the softmax cross-entropy, one copy per
 * instruction set, chosen at run time like the attention tiles (tiles.h: the same paths,
 * 0 portable, 1 avx2, 2 avx512, the same CPU test).
 *
 * Why: the extension is compiled for the baseline of its architecture (x86-64: SSE2), so the GELU
 * loop that gcc vectorises calls libmvec's 4-wide SSE exp. Compiled for AVX2 the same loop calls
 * its 8-wide exp, for AVX-512 the 16-wide one (simd_math.h declares all of them): the forward over
 * 512k floats drops from about 0.8 to 0.25 ms on one core. The float64 kernels stay in
 * layers.pxi (which calls these); they serve the gradient checks, not speed.
 *
 * Every operation is in float (1.0f, never 1.0): a double literal would turn the division and
 * the products around it into double arithmetic, with a conversion each way per element.
 */
#ifndef TINYPE_ELEMENTWISE_H
#define TINYPE_ELEMENTWISE_H
#include <stddef.h>
#include "simd_math.h"
#include "tiles.h"                 /* TP_HAVE_AVX2, TP_HAVE_AVX512 */

#define TP_GELU_K 0.7978845608028654f                 /* sqrt(2 / pi) */
#define TP_GELU_A 0.044715f

/* out = x sigmoid(2u), t = tanh(u) = 2 sigmoid(2u) - 1, u = sqrt(2/pi) (x + 0.044715 x^3): one exp
 * per element, and no cancellation in 1 + tanh(u) for large negative x.
 * dx = dout (0.5 (1 + t) + 0.5 x (1 - t)(1 + t) sqrt(2/pi) (1 + 3 * 0.044715 x^2)). */
#define TP_GELU_FUNCS(SUFFIX, TARGET)                                                                  \
TARGET static void tp_gelu_fwd_##SUFFIX(const float *x, float *out, float *t, ptrdiff_t n)          \
{                                                                                                   \
    for (ptrdiff_t i = 0; i < n; i++) {                                                             \
        const float xi = x[i];                                                                      \
        const float sig = 1.0f / (1.0f + expf(-2.0f * TP_GELU_K * (xi + TP_GELU_A * xi * xi * xi))); \
        t[i] = 2.0f * sig - 1.0f;                                                                   \
        out[i] = xi * sig;                                                                          \
    }                                                                                               \
}                                                                                                   \
TARGET static void tp_gelu_bwd_##SUFFIX(const float *dout, const float *x, const float *t, float *dx, \
                                        ptrdiff_t n)                                                \
{                                                                                                   \
    for (ptrdiff_t i = 0; i < n; i++) {                                                             \
        const float xi = x[i], ti = t[i];                                                           \
        dx[i] = dout[i] * (0.5f * (1.0f + ti) + 0.5f * xi * ((1.0f - ti) * (1.0f + ti))           \
                           * TP_GELU_K * (1.0f + 3.0f * TP_GELU_A * xi * xi));                       \
    }                                                                                               \
}

/* max(x[0:n]) (-inf for n = 0), as W running maxima in one vector register of the path (W = 4, 8,
 * 16 floats): written as one running max, or lane by lane, gcc leaves the loop scalar. A NaN never
 * wins a comparison, so it is skipped (the softmax or cross-entropy of a row with a NaN is NaN
 * anyway, through its exp). */
#define TP_MAX_FUNC(SUFFIX, TARGET, W)                                                                 \
typedef float tp_row_vec_##SUFFIX __attribute__((vector_size(4 * W), aligned(4), may_alias));         \
typedef int tp_row_mask_##SUFFIX __attribute__((vector_size(4 * W), aligned(4), may_alias));          \
TARGET static float tp_max_##SUFFIX(const float *x, ptrdiff_t n)                                     \
{                                                                                                   \
    tp_row_vec_##SUFFIX lanes = (tp_row_vec_##SUFFIX){0} - INFINITY;                                \
    float best = -INFINITY;                                                                         \
    const ptrdiff_t full = n - n % W;                                                               \
    for (ptrdiff_t c = 0; c < full; c += W) {                                                       \
        const tp_row_vec_##SUFFIX v = *(const tp_row_vec_##SUFFIX *)(x + c);                        \
        const tp_row_mask_##SUFFIX gt = v > lanes;                                                  \
        lanes = (tp_row_vec_##SUFFIX)(((tp_row_mask_##SUFFIX)v & gt) | ((tp_row_mask_##SUFFIX)lanes & ~gt)); \
    }                                                                                               \
    for (int j = 0; j < W; j++)                                                                     \
        best = lanes[j] > best ? lanes[j] : best;                                                   \
    for (ptrdiff_t c = full; c < n; c++)                                                            \
        best = x[c] > best ? x[c] : best;                                                           \
    return best;                                                                                    \
}

/* One row of softmax cross-entropy: d = (softmax(z) - onehot(target)) * weight; returns the row's
 * nll. The exponentials go straight into d and are normalised in place; their sum is kept in
 * double, as layers.pxi's float64 twin of this loop does. */
#define TP_XENT_FUNCS(SUFFIX, TARGET)                                                                  \
TARGET static double tp_xent_row_##SUFFIX(const float *z, ptrdiff_t target, float weight, float *d,   \
                                          ptrdiff_t V)                                               \
{                                                                                                   \
    const float mx = tp_max_##SUFFIX(z, V);                                                         \
    double s = 0.0;                                                                                 \
    for (ptrdiff_t v = 0; v < V; v++) {                                                             \
        const float e = expf(z[v] - mx);                                                            \
        d[v] = e;                                                                                   \
        s += e;                                                                                     \
    }                                                                                               \
    const float inv = (float)(weight / s);                                                          \
    for (ptrdiff_t v = 0; v < V; v++)                                                               \
        d[v] *= inv;                                                                                \
    d[target] -= weight;                                                                            \
    return log(s) - (double)(z[target] - mx);                                                       \
}

/* One row of an attention tile (pyx/attention.pxi), in two passes: the float32 twins of its
 * _row_logits + _row_max and of _row_weights, which say why each step is there.
 * tp_row_logits: s[c] = a s[c] + bias[diag - c] (bias may be NULL) for the ncol visible keys;
 * returns their max if with_max (else -inf; -inf for none too).
 * tp_row_weights: s[c] = exp(max(s[c] - shift, -87)), flushed to 0 below 1e-20, for the visible
 * keys and 0 for the rest of the tile's nk; returns the sum of the weights. */
#define TP_ROW_FUNCS(SUFFIX, TARGET)                                                                   \
TARGET static float tp_row_logits_##SUFFIX(float *s, ptrdiff_t ncol, float a, const float *bias,     \
                                           ptrdiff_t diag, int with_max)                             \
{                                                                                                   \
    if (a != 1.0f)                                                                                  \
        for (ptrdiff_t c = 0; c < ncol; c++)                                                        \
            s[c] *= a;                                                                              \
    if (bias && ncol > 0) {                 /* (a fully masked tile's diag may be negative) */      \
        const float *b = bias + diag;                                                               \
        for (ptrdiff_t c = 0; c < ncol; c++)                                                        \
            s[c] += b[-c];                                                                          \
    }                                                                                               \
    return with_max ? tp_max_##SUFFIX(s, ncol) : -INFINITY;                                         \
}                                                                                                   \
TARGET static float tp_row_weights_##SUFFIX(float *s, ptrdiff_t ncol, ptrdiff_t nk, float shift)    \
{                                                                                                   \
    float total = 0.0f;                                                                             \
    for (ptrdiff_t c = 0; c < ncol; c++) {                                                          \
        const float x = s[c] - shift;                                                               \
        s[c] = x < -87.0f ? -87.0f : x;                   /* so written, a NaN stays NaN */         \
    }                                                                                               \
    for (ptrdiff_t c = 0; c < ncol; c++)                                                            \
        s[c] = expf(s[c]);                                                                          \
    for (ptrdiff_t c = 0; c < ncol; c++) {                                                          \
        s[c] = s[c] < 1e-20f ? 0.0f : s[c];                                                         \
        total += s[c];                                                                              \
    }                                                                                               \
    for (ptrdiff_t c = ncol; c < nk; c++)                                                           \
        s[c] = 0.0f;                                                                                \
    return total;                                                                                   \
}

TP_MAX_FUNC(base, , 4)
TP_GELU_FUNCS(base, )
TP_XENT_FUNCS(base, )
TP_ROW_FUNCS(base, )
#if TP_HAVE_AVX2
TP_MAX_FUNC(avx2, __attribute__((target("avx2,fma"))), 8)
TP_GELU_FUNCS(avx2, __attribute__((target("avx2,fma"))))
TP_XENT_FUNCS(avx2, __attribute__((target("avx2,fma"))))
TP_ROW_FUNCS(avx2, __attribute__((target("avx2,fma"))))
#else
#define tp_gelu_fwd_avx2 tp_gelu_fwd_base      /* never selected: tp_cpu_best() returns 0 */
#define tp_gelu_bwd_avx2 tp_gelu_bwd_base
#define tp_xent_row_avx2 tp_xent_row_base
#define tp_row_logits_avx2 tp_row_logits_base
#define tp_row_weights_avx2 tp_row_weights_base
#endif
#if TP_HAVE_AVX512
TP_MAX_FUNC(avx512, __attribute__((target("avx512f,avx2,fma"))), 16)
TP_GELU_FUNCS(avx512, __attribute__((target("avx512f,avx2,fma"))))
TP_XENT_FUNCS(avx512, __attribute__((target("avx512f,avx2,fma"))))
TP_ROW_FUNCS(avx512, __attribute__((target("avx512f,avx2,fma"))))
#else
#define tp_gelu_fwd_avx512 tp_gelu_fwd_base
#define tp_gelu_bwd_avx512 tp_gelu_bwd_base
#define tp_xent_row_avx512 tp_xent_row_base
#define tp_row_logits_avx512 tp_row_logits_base
#define tp_row_weights_avx512 tp_row_weights_base
#endif

/* The callers' entry points: the copy for CPU path `path` (the extension's _cpu_path). */
static inline void tp_gelu_fwd(int path, const float *x, float *out, float *t, ptrdiff_t n)
{
    if (path == 2) tp_gelu_fwd_avx512(x, out, t, n);
    else if (path == 1) tp_gelu_fwd_avx2(x, out, t, n);
    else tp_gelu_fwd_base(x, out, t, n);
}

static inline void tp_gelu_bwd(int path, const float *dout, const float *x, const float *t, float *dx,
                               ptrdiff_t n)
{
    if (path == 2) tp_gelu_bwd_avx512(dout, x, t, dx, n);
    else if (path == 1) tp_gelu_bwd_avx2(dout, x, t, dx, n);
    else tp_gelu_bwd_base(dout, x, t, dx, n);
}

static inline float tp_row_logits(int path, float *s, ptrdiff_t ncol, float a, const float *bias, ptrdiff_t diag,
                                  int with_max)
{
    if (path == 2) return tp_row_logits_avx512(s, ncol, a, bias, diag, with_max);
    if (path == 1) return tp_row_logits_avx2(s, ncol, a, bias, diag, with_max);
    return tp_row_logits_base(s, ncol, a, bias, diag, with_max);
}

static inline float tp_row_weights(int path, float *s, ptrdiff_t ncol, ptrdiff_t nk, float shift)
{
    if (path == 2) return tp_row_weights_avx512(s, ncol, nk, shift);
    if (path == 1) return tp_row_weights_avx2(s, ncol, nk, shift);
    return tp_row_weights_base(s, ncol, nk, shift);
}

static inline double tp_xent_row(int path, const float *z, ptrdiff_t target, float weight, float *d,
                                 ptrdiff_t V)
{
    if (path == 2) return tp_xent_row_avx512(z, target, weight, d, V);
    if (path == 1) return tp_xent_row_avx2(z, target, weight, d, V);
    return tp_xent_row_base(z, target, weight, d, V);
}

#endif
