"""KERPLE (Chi et al. 2022, "KERPLE: Kernelized Relative Positional Embedding for Length
Extrapolation"): conditionally positive definite kernels of the distance, learned per head.

    logarithmic:  bias[h, i, j] = -r1_h * ln(1 + r2_h * |i - j|)
    power:        bias[h, i, j] = -r1_h * |i - j| ^ r2_h          (r2 in (0, 2])
r1, r2 are learned, initialised to 1, and kept >= 0.01 (the authors clamp them after each step;
here the forward uses max(r, 0.01), whose gradient is zero below the floor).
"""
import numpy as np

from .alibi import distances
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
        d = np.abs(distances(T, self.causal))                    # (n_table,)
        r1, r2 = self.effective(params)
        g, dg_dr2 = self.kernel(d[None, :], r2[:, None])         # (H, n_table) each
        return (-r1[:, None] * g).astype(self.dtype), (d, g, dg_dr2)

    def bias_backward(self, params, dtable, cache):
        d, g, dg_dr2 = cache
        r1, r2 = self.effective(params)
        dt = dtable.astype(np.float64)
        dr1 = -(dt * g).sum(axis=1)
        dr2 = -(dt * r1[:, None] * dg_dr2).sum(axis=1)
        # the floor and ceiling pass no gradient (max/clip are flat there)
        dr1 *= params["kerple_r1"] > FLOOR
        dr2 *= (params["kerple_r2"] > FLOOR) & (params["kerple_r2"] < self.r2_max)
        return {"kerple_r1": dr1.astype(self.dtype), "kerple_r2": dr2.astype(self.dtype)}

    def bias_over_distance(self, params, T):
        return self.bias(params, T, None)[0]


class KerpleLog(_Kerple):
    """-r1 ln(1 + r2 |i - j|)."""

    name = "kerple_log"
    r2_max = np.inf

    @staticmethod
    def kernel(d, r2):
        return np.log1p(r2 * d), d / (1.0 + r2 * d)


class KerplePower(_Kerple):
    """-r1 |i - j|^r2, r2 in (0, 2]."""

    name = "kerple_power"
    r2_max = 2.0

    @staticmethod
    def kernel(d, r2):
        g = d ** r2
        with np.errstate(divide="ignore"):
            dg = np.where(d > 0, g * np.log(np.where(d > 0, d, 1.0)), 0.0)   # d/dr2 d^r2 = d^r2 ln d
        return g, dg
