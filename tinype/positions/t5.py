"""T5's relative position bias (Raffel et al. 2020), as in transformers' T5Attention.

A learned scalar per (bucket, head) added to the logits. Distances are bucketed: exact below
max_exact = num_buckets/2, then logarithmically up to max_distance, and everything beyond shares
the last bucket (which is why T5 can run at any length, and why it cannot tell 200 from 2000).
Bidirectional attention spends half the buckets on each direction. One table is shared by all
layers (as in T5, where only the first layer owns it), initialised to zero.
"""
from __future__ import annotations

import math

import numpy as np

from .. import kernels
from .alibi import distances
from .base import PositionalEncoding


def t5_relative_bucket(relative_position: np.ndarray, bidirectional: bool, num_buckets: int = 32,
                       max_distance: int = 128) -> np.ndarray:
    """Bucket ids for relative_position = j - i (key minus query), as transformers'
    T5Attention._relative_position_bucket. The log is taken in float32, as there, so bucket
    boundaries fall on the same distances."""
    rp = np.asarray(relative_position, dtype=np.int64)
    buckets = np.zeros_like(rp)
    if bidirectional:
        num_buckets //= 2
        buckets += (rp > 0).astype(np.int64) * num_buckets
        rp = np.abs(rp)
    else:
        rp = -np.minimum(rp, 0)                               # the past: i - j >= 0; the future -> 0
    max_exact = num_buckets // 2
    is_small = rp < max_exact
    with np.errstate(divide="ignore"):
        scaled = (np.log(rp.astype(np.float32) / np.float32(max_exact))
                  / np.float32(math.log(max_distance / max_exact)) * np.float32(num_buckets - max_exact))
    large = max_exact + np.where(is_small, 0, scaled).astype(np.int64)
    large = np.minimum(large, num_buckets - 1)
    return buckets + np.where(is_small, rp, large)


class T5Bias(PositionalEncoding):
    """Learned bias per (bucket, head), shared by the layers."""

    name = "t5"

    def __init__(self, num_buckets=32, max_distance=128):
        self.num_buckets = int(num_buckets)
        self.max_distance = int(max_distance)

    def init_params(self, rng):
        return {"t5_bias": np.zeros((self.num_buckets, self.n_head), dtype=self.dtype)}

    def buckets(self, T):
        """Bucket of each distance in the kernel's table: (T,) causal or (2T-1,) two-sided."""
        d = distances(T, self.causal).astype(np.int64)        # d = i - j
        return t5_relative_bucket(-d, bidirectional=not self.causal, num_buckets=self.num_buckets,
                                  max_distance=self.max_distance)

    def bias(self, params, T, positions):
        b = self.buckets(T)
        return kernels.bucket_table(params["t5_bias"], b).astype(self.dtype, copy=False), b   # (H, n_table)

    def bias_backward(self, params, dtable, b):
        # in the forward pass this was: table[h, d] = t5_bias[bucket[d], h]; so sum over each bucket
        grad = kernels.bucket_table_backward(dtable, b, self.num_buckets)
        return {"t5_bias": grad.astype(params["t5_bias"].dtype, copy=False)}
