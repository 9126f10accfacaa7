"""Learned absolute positions (BERT, Devlin et al. 2019; GPT-2, Radford et al. 2019).

    x_t = wte[token_t] + wpe[t],   wpe: (T_train, C) learned, init normal(0, 0.02)

A table of T_train rows has nothing to say about position T_train or later: the model cannot run
there at all. That wall is nanoGPT's `assert t <= block_size`, and the first lesson of length
extrapolation.
"""
import numpy as np

from .base import PositionalEncoding


class Learned(PositionalEncoding):
    """A learned (T_train, C) table added to the token embeddings."""

    name = "learned"

    def __init__(self, init_std=0.02):
        self.init_std = float(init_std)

    def setup(self, config):
        super().setup(config)
        self.max_positions = config.T_train

    def init_params(self, rng):
        w = rng.normal(0.0, self.init_std, size=(self.max_positions, self.d_model))
        return {"wpe": w.astype(self.dtype)}

    def check_length(self, T):
        if T > self.max_positions:
            raise ValueError(
                f"learned positions: trained for {self.max_positions} positions, got {T}; "
                f"use a PE that extrapolates, e.g. --pe alibi")

    def embed(self, params, positions):
        pos = positions.astype(np.int64)
        if pos.size and (pos.min() < 0 or pos.max() >= self.max_positions):
            raise ValueError(
                f"learned positions: trained for {self.max_positions} positions, got position "
                f"{int(pos.max())}; use a PE that extrapolates, e.g. --pe alibi")
        return params["wpe"][pos], pos                        # (T, C)

    def embed_backward(self, params, dtable, pos):
        dwpe = np.zeros_like(params["wpe"])
        np.add.at(dwpe, pos, dtable)                          # positions may repeat when randomized
        return {"wpe": dwpe}
