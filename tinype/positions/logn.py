"""log-n scaling of the attention logits: the second article's log(n+1), read as a logit scale.

    logits of the query at 0-based position i  *=  max(1, ln(i + 1) / ln(T_train))

Beyond the training length a query attends over more keys, and its softmax flattens (its entropy
grows like ln n); multiplying the logits by ln n / ln T_train keeps the entropy near its trained
value (Chiang & Cholak 2022; Su 2021; used by Qwen's long-context inference). Inside T_train the
factor is 1, so training is untouched. Composable: `rope+logn`, `alibi+logn`.
"""
import math

import numpy as np

from .base import PositionalEncoding


def logn_scale(T, T_train):
    """(T,) multipliers max(1, ln(i+1)/ln(T_train)), i = 0..T-1."""
    if T_train < 2:
        raise ValueError(f"log-n scaling needs T_train >= 2, got {T_train}")
    return np.maximum(1.0, np.log(np.arange(1, T + 1, dtype=np.float64)) / math.log(T_train))


class LogN(PositionalEncoding):
    """Per-query logit multiplier; no position vectors (alone it is NoPE plus the scale)."""

    name = "logn"

    def logit_scale(self, positions):
        return logn_scale(len(positions), self.T_train)
