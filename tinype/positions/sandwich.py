"""Sandwich (Chi et al. 2023, "Dissecting Transformer Length Extrapolation via the Lens of
Receptive Field Analysis"): the parameter-free bias hidden in the sinusoidal encoding.

The inner product of two sinusoidal vectors depends on their distance only:
    p_i . p_j = sum_{k=1}^{d'/2} cos((i - j) / 10000^(2k/d'))
Sandwich adds it to the logits directly, shifted so the bias is 0 at distance 0 and compressed per
head like ALiBi's slopes:
    bias[h, i, j] = (sum_k cos((i - j) / 10000^(2k/d')) - d'/2) / (8h / H),   h = 1..H
d' (`dim`) defaults to the model width, as in the authors' code.
"""
import numpy as np

from .. import kernels
from .base import PositionalEncoding


class Sandwich(PositionalEncoding):
    """Fixed bias from inner products of sinusoidal vectors, scaled per head."""

    name = "sandwich"

    def __init__(self, dim=None):
        self.dim = dim

    def bias_over_distance(self, T):
        heads = np.arange(1, self.n_head + 1, dtype=np.float64)
        table = kernels.sandwich_table(8 * heads / self.n_head, self.dim or self.d_model, T, self.causal)
        return table.astype(self.dtype)

    def bias(self, params, T, positions):
        return self.bias_over_distance(T), None
