"""Exercise 02 (warm-up): alibi_slopes.

Read first: chapters/ch4_math.py, section "ALiBi slopes"
Grade it:   python chapters/exercises/grade.py ex02
Plugs into: the slopes of `pe="alibi"` (tinype.positions.alibi.alibi_slopes)
"""


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
    raise NotImplementedError("exercise ex02 (alibi_slopes) is not done yet: write it in chapters/exercises/ex02_alibi_slopes.py")
