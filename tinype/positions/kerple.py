"""KERPLE (Chi et al. 2022, "KERPLE: Kernelized Relative Positional Embedding for Length
Extrapolation"): conditionally positive definite kernels of the distance, learned per head.

    logarithmic:  bias[h, i, j] = -r1_h * ln(1 + r2_h * |i - j|)
    power:        bias[h, i, j] = -r1_h * |i - j| ^ r2_h          (r2 in (0, 2])
r1, r2 are learned, initialised to 1, and kept >= 0.01 (the authors clamp them after each step;
here the forward uses max(r, 0.01), whose gradient is zero below the floor).
The table and its gradient are compiled kernels (kernels.kerple_table, twin in reference.py).
"""
import numpy as np

from .. import kernels
from .base import PositionalEncoding

FLOOR = 0.01


class _Kerple(PositionalEncoding):
    def __init__(self, init=1.0):
        self.init = float(init)

    def init_params(self, rng):
        return {"kerple_r1": np.full(self.n_head, self.init, dtype=self.dtype),
                "kerple_r2": np.full(self.n_head, self.init, dtype=self.dtype)}

    def effective(self, params):
        """The parameters as used: r1 >= 0.01; r2 in [0.01, r2_max]."""
        r1 = np.maximum(params["kerple_r1"].astype(np.float64), FLOOR)
        r2 = np.clip(params["kerple_r2"].astype(np.float64), FLOOR, self.r2_max)
        return r1, r2

    def bias(self, params, T, positions):
        r1, r2 = self.effective(params)
        return kernels.kerple_table(r1, r2, T, self.causal, self.power).astype(self.dtype), T

    def bias_backward(self, params, dtable, T):
        r1, r2 = self.effective(params)
        dr1, dr2 = kernels.kerple_table_backward(dtable.astype(np.float64), r1, r2, T, self.causal, self.power)
        # the floor and ceiling pass no gradient (max/clip are flat there)
        dr1 *= params["kerple_r1"] > FLOOR
        dr2 *= (params["kerple_r2"] > FLOOR) & (params["kerple_r2"] < self.r2_max)
        return {"kerple_r1": dr1.astype(self.dtype), "kerple_r2": dr2.astype(self.dtype)}

    def bias_over_distance(self, params, T):
        return self.bias(params, T, None)[0]


class KerpleLog(_Kerple):
    """-r1 ln(1 + r2 |i - j|)."""

    name = "kerple_log"
    power = False
    r2_max = np.inf


class KerplePower(_Kerple):
    """-r1 |i - j|^r2, r2 in (0, 2]."""

    name = "kerple_power"
    power = True
    r2_max = 2.0
