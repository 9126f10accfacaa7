/* Vectorised exp for tinype's kernels.
 *
 * glibc ships SIMD versions of expf/exp (libmvec), but its math.h declares them only under
 * -ffast-math, which also assumes no NaN or inf ever occurs. tinype compiles with
 * -ffast-math -fno-finite-math-only so that NaN and inf keep their meaning, and declares the
 * SIMD variants itself. libmvec's functions return the same special values as libm (exp(-inf) = 0,
 * exp(nan) = nan) with at most 4 ulp of error; they only skip setting errno, which nothing reads.
 * setup.py defines TINYPE_NO_MVEC where libmvec cannot be linked, leaving scalar libm calls.
 */
#ifndef TINYPE_SIMD_MATH_H
#define TINYPE_SIMD_MATH_H
#include <math.h>
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__FAST_MATH__) \
    && !defined(TINYPE_NO_MVEC)
__attribute__((__simd__("notinbranch"))) extern float expf(float);
__attribute__((__simd__("notinbranch"))) extern double exp(double);
#endif
#endif
