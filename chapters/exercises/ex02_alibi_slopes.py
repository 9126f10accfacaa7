"""Exercise 02: alibi_slopes. Grade it with `python chapters/exercises/grade.py ex02`."""
import numpy as np


def alibi_slopes(n_heads):
    """ALiBi's per-head slopes m_h (chapter 4), as in the ALiBi authors' get_slopes.

    For n a power of two: m_h = 2^(-8h/n), h = 1..n. Otherwise take the slopes of the largest power of
    two p below n, then every other slope of 2p (the odd-indexed ones) until there are n.
    Returns (n_heads,) float64.
    """
    raise NotImplementedError("exercise ex02 (alibi_slopes) is not done yet: write it in chapters/exercises/ex02_alibi_slopes.py")
