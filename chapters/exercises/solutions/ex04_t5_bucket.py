"""Reference solution of exercise 04 (core): t5_bucket.

Read first: chapters/ch4_math.py, section "T5 buckets"
Grade it:   python chapters/exercises/grade.py ex04
Plugs into: the distance buckets of `pe="t5"`
"""
import math

import numpy as np


def t5_bucket(relative_position, bidirectional, num_buckets=32, max_distance=128):
    """T5's relative-position buckets, as transformers' T5Attention._relative_position_bucket.

    relative_position: int array of any shape, j - i (key minus query).
    Returns: int64 array of the same shape, bucket ids in [0, num_buckets).

    Steps:
      1. bidirectional: half the buckets per direction; keys after the query (j > i) are offset by
         num_buckets // 2; continue with |j - i| and the halved bucket count.
         causal: only the past counts; the distance is i - j, and future keys get distance 0
      2. max_exact = (remaining buckets) // 2: a distance below it is its own bucket
      3. larger distances share the buckets left, spaced logarithmically: log(d / max_exact), scaled
         so that d = max_distance reaches the last bucket; truncate to an int, cap at the last bucket.
         Take the log in float32, as transformers does, or a few distances land one bucket off.
    """
    rp = np.asarray(relative_position, dtype=np.int64)
    out = np.zeros_like(rp)
    if bidirectional:
        num_buckets //= 2
        out += (rp > 0) * num_buckets
        rp = np.abs(rp)
    else:
        rp = -np.minimum(rp, 0)
    max_exact = num_buckets // 2
    with np.errstate(divide="ignore"):
        log_part = (np.log(rp.astype(np.float32) / np.float32(max_exact))
                    / np.float32(math.log(max_distance / max_exact)) * np.float32(num_buckets - max_exact))
    large = np.minimum(max_exact + np.where(rp < max_exact, 0, log_part).astype(np.int64), num_buckets - 1)
    return out + np.where(rp < max_exact, rp, large)
