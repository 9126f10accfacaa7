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

/* One row of softmax cross-entropy: d = (softmax(z) - onehot(target)) * weight; returns the row's
 * nll. The exponentials go straight into d and are normalised in place; their sum is kept in
 * double, as layers.pxi's float64 twin of this loop does. */
#define TP_XENT_FUNCS(SUFFIX, TARGET)                                                                  \
TARGET static double tp_xent_row_##SUFFIX(const float *z, ptrdiff_t target, float weight, float *d,   \
                                          ptrdiff_t V)                                               \
{                                                                                                   \
    float mx = z[0];                                                                                \
    double s = 0.0;                                                                                 \
    for (ptrdiff_t v = 1; v < V; v++)                                                               \
        mx = z[v] > mx ? z[v] : mx;                                                                 \
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

TP_GELU_FUNCS(base, )
TP_XENT_FUNCS(base, )
#if TP_HAVE_AVX2
TP_GELU_FUNCS(avx2, __attribute__((target("avx2,fma"))))
TP_XENT_FUNCS(avx2, __attribute__((target("avx2,fma"))))
#else
#define tp_gelu_fwd_avx2 tp_gelu_fwd_base      /* never selected: tp_cpu_best() returns 0 */
#define tp_gelu_bwd_avx2 tp_gelu_bwd_base
#define tp_xent_row_avx2 tp_xent_row_base
#endif
#if TP_HAVE_AVX512
TP_GELU_FUNCS(avx512, __attribute__((target("avx512f,avx2,fma"))))
TP_XENT_FUNCS(avx512, __attribute__((target("avx512f,avx2,fma"))))
#else
#define tp_gelu_fwd_avx512 tp_gelu_fwd_base
#define tp_gelu_bwd_avx512 tp_gelu_bwd_base
#define tp_xent_row_avx512 tp_xent_row_base
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

static inline double tp_xent_row(int path, const float *z, ptrdiff_t target, float weight, float *d,
                                 ptrdiff_t V)
{
    if (path == 2) return tp_xent_row_avx512(z, target, weight, d, V);
    if (path == 1) return tp_xent_row_avx2(z, target, weight, d, V);
    return tp_xent_row_base(z, target, weight, d, V);
}

#endif
