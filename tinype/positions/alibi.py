"""ALiBi (Press et al. 2022, "Train Short, Test Long: Attention with Linear Biases").

No position vectors at all: each head h adds a fixed linear penalty to its logits,
    bias[h, i, j] = -m_h * (i - j)          (j <= i; not divided by sqrt(D))
with slopes m_h a geometric sequence. For n a power of two, m_h = 2^(-8h/n), h = 1..n; otherwise
the slopes of the nearest lower power of two are followed by every other slope of the next power
(the authors' get_slopes): for 12 heads the sequence is not monotone, by design. In bidirectional
attention (the classifier) the penalty is -m_h |i - j|.
"""
from __future__ import annotations

import math

import numpy as np

from .. import kernels, reference
from .base import PositionalEncoding


def _power_of_two_slopes(n):
    start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))          # = 2^(-8/n)
    return [start * start ** i for i in range(n)]


def alibi_slopes(n_heads: int) -> np.ndarray:
    """(n_heads,) slopes, as in the ALiBi authors' get_slopes (any number of heads)."""
    if n_heads < 1:
        raise ValueError(f"n_heads must be >= 1, got {n_heads}")
    if math.log2(n_heads).is_integer():
        return np.array(_power_of_two_slopes(n_heads))
    closest = 2 ** math.floor(math.log2(n_heads))
    extra = alibi_slopes(2 * closest)[0::2][: n_heads - closest]
    return np.array(_power_of_two_slopes(closest) + list(extra))


def distances(T, causal):
    """The distances a bias table is indexed by: 0..T-1 (causal) or -(T-1)..T-1 (i - j)."""
    return reference.table_distances(T, causal)


class ALiBi(PositionalEncoding):
    """A fixed per-head linear bias over distances."""

    name = "alibi"

    def bias_over_distance(self, T):
        """(H, T) causal or (H, 2T-1) two-sided table: -m_h |i - j| (the figure helper too)."""
        return kernels.alibi_table(alibi_slopes(self.n_head), T, self.causal).astype(self.dtype)

    def bias(self, params, T, positions):
        return self.bias_over_distance(T), None
