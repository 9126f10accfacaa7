"""Reference solution of exercise 02: alibi_slopes."""
import numpy as np


def alibi_slopes(n_heads):
    """ALiBi's per-head slopes m_h (chapter 4), as in the ALiBi authors' get_slopes.

    For n a power of two: m_h = 2^(-8h/n), h = 1..n. Otherwise take the slopes of the largest power of
    two p below n, then every other slope of 2p (the odd-indexed ones) until there are n.
    Returns (n_heads,) float64.
    """
    def power_of_two(n):
        start = 2.0 ** (-8.0 / n)
        return [start ** (h + 1) for h in range(n)]
    if n_heads & (n_heads - 1) == 0:
        return np.array(power_of_two(n_heads))
    p = 2 ** int(np.floor(np.log2(n_heads)))
    extra = power_of_two(2 * p)[0::2][:n_heads - p]
    return np.array(power_of_two(p) + extra)
