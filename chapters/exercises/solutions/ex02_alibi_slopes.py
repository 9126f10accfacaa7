"""Reference solution of exercise 02 (warm-up): alibi_slopes.

Read first: chapters/ch4_math.py, section "ALiBi slopes"
Grade it:   python chapters/exercises/grade.py ex02
Plugs into: the slopes of `pe="alibi"` (tinype.positions.alibi.alibi_slopes)
"""
import math

import numpy as np


def alibi_slopes(n_heads):
    """ALiBi's per-head slopes m_h, as in the ALiBi authors' get_slopes (any number of heads).

    n_heads: int >= 1.   Returns: (n_heads,) float64, the slope of each head.

    Steps:
      1. for n a power of two the slopes are a geometric sequence that starts at 2^(-8/n) and has
         ratio 2^(-8/n) (so the last one is 2^(-8))
      2. otherwise: take the sequence of the largest power of two p below n ...
      3. ... and append every other slope of the sequence for 2p (indices 0, 2, 4, ...) until you
         have n. For 12 heads the result is not monotone: that is by design.
    """
    def power_of_two(n):
        return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]

    if math.log2(n_heads).is_integer():
        return np.array(power_of_two(n_heads))
    p = 2 ** math.floor(math.log2(n_heads))
    extra = power_of_two(2 * p)[0::2][: n_heads - p]
    return np.array(power_of_two(p) + extra)
