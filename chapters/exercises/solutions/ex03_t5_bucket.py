"""Reference solution of exercise 03: t5_bucket."""
import numpy as np


def t5_bucket(relative_position, bidirectional, num_buckets=32, max_distance=128):
    """T5's relative-position buckets (chapter 4), as transformers' _relative_position_bucket.

    relative_position = j - i (key minus query), an int array. Half the buckets (all of them when
    causal) hold exact small distances, the rest grow logarithmically up to max_distance.
    Bidirectional: positive distances go to the upper half. Causal: only j <= i, distance i - j.
    """
    rel = np.asarray(relative_position, dtype=np.int64)
    buckets = np.zeros_like(rel)
    if bidirectional:
        num_buckets //= 2
        buckets += (rel > 0).astype(np.int64) * num_buckets
        n = np.abs(rel)
    else:
        n = -np.minimum(rel, 0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    with np.errstate(divide="ignore"):
        large = max_exact + (np.log(np.maximum(n, 1) / max_exact) / np.log(max_distance / max_exact)
                             * (num_buckets - max_exact)).astype(np.int64)
    large = np.minimum(large, num_buckets - 1)
    return buckets + np.where(is_small, n, large)
