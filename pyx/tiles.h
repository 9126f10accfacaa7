/* Register-tiled float32 matrix products for the attention kernel, one copy per instruction set,
 * chosen at run time.
 *
 *     C[m, n] += alpha * sum_k A[m, k] B[k, n]     A[m, k] = A[m * a_rs + k * a_ks]
 *                                                  B row-major (row stride ldb), C row stride ldc
 * and the two products of one decoding query (tp_rowdots, tp_wsum; see tiles_impl.h).
 *
 * The extension is compiled for the baseline of its architecture (x86-64: SSE2), so that a wheel
 * runs on any machine. Only the functions below (and elementwise.h's GELU and cross-entropy loops,
 * on the same paths) carry wider instruction sets, through gcc/clang's
 * function-level target attribute: tp_mm_avx2 (AVX2 + FMA) and tp_mm_avx512 (AVX-512F). The
 * attention kernel asks tp_cpu_best() once which of them this CPU (and its operating system, which
 * must save the wide registers) supports, and branches on that number; the caller may lower it
 * (TINYPE_CPU_PATH=portable) but never raise it.
 *
 * Each copy holds a 6 x (2 W) tile of C in registers (W floats per vector register: 8 for AVX2,
 * 16 for AVX-512): each loaded row of B feeds 6 x 2 fused multiply-adds, which lifts a small matrix
 * product from memory speed to arithmetic speed. The ragged edges take a plain loop compiled for
 * the same instruction set. The vector types are gcc's vector extension; aligned(4) lets a load or
 * store through them sit at any float address, may_alias lets them read float arrays.
 *
 * The portable path has a copy too, tp_mm_base, with 128-bit vectors (6 x 8 tiles): every x86-64
 * has them (SSE2) and so does every aarch64 (NEON), so it needs no target attribute at all.
 *
 * Paths: 0 portable (tp_mm_base, or the caller's plain loop where TP_HAVE_BASE is 0), 1 avx2,
 * 2 avx512.
 * Not x86, or a compiler without the target attribute (setup.py probes it and defines
 * TINYPE_NO_X86_TILES, or TINYPE_NO_AVX512 when only AVX-512 fails): those functions are stubs
 * that are never called, and tp_cpu_best() returns 0.
 */
#ifndef TINYPE_TILES_H
#define TINYPE_TILES_H
#include <stddef.h>

#define TP_MR 6                   /* rows of the register tile */

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(TINYPE_NO_X86_TILES)
#define TP_HAVE_AVX2 1
#if !defined(TINYPE_NO_AVX512)
#define TP_HAVE_AVX512 1
#else
#define TP_HAVE_AVX512 0
#endif
#else
#define TP_HAVE_AVX2 0
#define TP_HAVE_AVX512 0
#endif

#if defined(__GNUC__) && (defined(__SSE2__) || defined(__aarch64__) || defined(__ARM_NEON)) \
    && !defined(TINYPE_NO_BASE_TILES)
#define TP_HAVE_BASE 1
#define TP_SUFFIX base
#define TP_TARGET
#define TP_VW 4
#include "tiles_impl.h"
#undef TP_SUFFIX
#undef TP_TARGET
#undef TP_VW
#else
#define TP_HAVE_BASE 0
static void tp_rowdots_base(ptrdiff_t L, ptrdiff_t D, float alpha, const float *q, const float *K, ptrdiff_t ks, float *s)
{ (void)L; (void)D; (void)alpha; (void)q; (void)K; (void)ks; (void)s; }
static void tp_wsum_base(ptrdiff_t L, ptrdiff_t D, const float *w, const float *V, ptrdiff_t vs, float *o)
{ (void)L; (void)D; (void)w; (void)V; (void)vs; (void)o; }
static void tp_mm_base(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, float alpha, const float *A, ptrdiff_t a_rs,
                       ptrdiff_t a_ks, const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc)
{ (void)M; (void)N; (void)K; (void)alpha; (void)A; (void)a_rs; (void)a_ks; (void)B; (void)ldb; (void)C; (void)ldc; }
#endif

#if TP_HAVE_AVX2
/* The same template twice, once per instruction set (tiles_impl.h is written for one vector width). */
#define TP_SUFFIX avx2
#define TP_TARGET __attribute__((target("avx2,fma")))
#define TP_VW 8
#include "tiles_impl.h"
#undef TP_SUFFIX
#undef TP_TARGET
#undef TP_VW
#endif

#if TP_HAVE_AVX512
#define TP_SUFFIX avx512
#define TP_TARGET __attribute__((target("avx512f,avx2,fma")))
#define TP_VW 16
#include "tiles_impl.h"
#undef TP_SUFFIX
#undef TP_TARGET
#undef TP_VW
#endif

/* Stubs where a copy is not compiled: tp_cpu_best() never selects them. */
#if !TP_HAVE_AVX2
static void tp_rowdots_avx2(ptrdiff_t L, ptrdiff_t D, float alpha, const float *q, const float *K, ptrdiff_t ks, float *s)
{ (void)L; (void)D; (void)alpha; (void)q; (void)K; (void)ks; (void)s; }
static void tp_wsum_avx2(ptrdiff_t L, ptrdiff_t D, const float *w, const float *V, ptrdiff_t vs, float *o)
{ (void)L; (void)D; (void)w; (void)V; (void)vs; (void)o; }
static void tp_mm_avx2(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, float alpha, const float *A, ptrdiff_t a_rs,
                       ptrdiff_t a_ks, const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc)
{ (void)M; (void)N; (void)K; (void)alpha; (void)A; (void)a_rs; (void)a_ks; (void)B; (void)ldb; (void)C; (void)ldc; }
#endif
#if !TP_HAVE_AVX512
static void tp_rowdots_avx512(ptrdiff_t L, ptrdiff_t D, float alpha, const float *q, const float *K, ptrdiff_t ks, float *s)
{ (void)L; (void)D; (void)alpha; (void)q; (void)K; (void)ks; (void)s; }
static void tp_wsum_avx512(ptrdiff_t L, ptrdiff_t D, const float *w, const float *V, ptrdiff_t vs, float *o)
{ (void)L; (void)D; (void)w; (void)V; (void)vs; (void)o; }
static void tp_mm_avx512(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, float alpha, const float *A, ptrdiff_t a_rs,
                         ptrdiff_t a_ks, const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc)
{ (void)M; (void)N; (void)K; (void)alpha; (void)A; (void)a_rs; (void)a_ks; (void)B; (void)ldb; (void)C; (void)ldc; }
#endif

/* The best path this CPU runs, among those compiled in. __builtin_cpu_supports also checks that
 * the operating system saves the AVX / AVX-512 registers (XCR0), not only the CPUID bits. */
static int tp_cpu_best(void)
{
#if TP_HAVE_AVX2
    __builtin_cpu_init();
#if TP_HAVE_AVX512
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return 2;
#endif
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return 1;
#endif
    return 0;
}

/* The highest path compiled into this build (whatever the CPU): 2, 1 or 0. */
#define TP_COMPILED_BEST (TP_HAVE_AVX512 ? 2 : TP_HAVE_AVX2 ? 1 : 0)

/* What built the extension, for tinype.kernels.build_info(). setup.py passes the flags. */
#ifndef TINYPE_BUILD_FLAGS
#define TINYPE_BUILD_FLAGS ""
#endif
#ifdef _OPENMP
#define TP_OPENMP 1
#else
#define TP_OPENMP 0
#endif
#if defined(__VERSION__)
#define TP_COMPILER __VERSION__
#else
#define TP_COMPILER "unknown"
#endif

#endif
