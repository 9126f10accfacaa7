"""Sinusoidal absolute positions (Vaswani et al. 2017, "Attention Is All You Need", section 3.5).

    PE[p, 2i] = sin(p / 10000^(2i/C)),  PE[p, 2i+1] = cos(p / 10000^(2i/C))
    x_p = wte[token_p] + scale * PE[p],  scale = 1/sqrt(C) by default

The paper multiplies the embeddings by sqrt(C) instead; dividing the table by sqrt(C) is the same
up to an overall factor and keeps the 0.02-std embedding init. At scale 1 the unit-amplitude table
swamps the embeddings and the model trains worse than with no PE at all (chapter 4 shows it).
"""
import numpy as np

from .. import kernels
from .base import PositionalEncoding


class Sinusoidal(PositionalEncoding):
    """The fixed sinusoidal table, scaled, added to the token embeddings. No parameters."""

    name = "sinusoidal"

    def __init__(self, base=10000.0, scale=None):
        self.base = float(base)
        self.scale = scale                                    # None: 1/sqrt(d_model)

    def setup(self, config):
        super().setup(config)
        self.amplitude = 1.0 / np.sqrt(self.d_model) if self.scale is None else float(self.scale)

    def table(self, positions):
        """The scaled (T, C) table at `positions`, in the model's dtype (the figure helper too)."""
        t = kernels.sinusoidal_table(positions, self.d_model, self.base)
        return (t * self.amplitude).astype(self.dtype, copy=False)

    def embed(self, params, positions):
        return self.table(positions), None

    def describe(self):
        return f"{self.name}(base={self.base:g}, scale={self.amplitude:.4g})"
