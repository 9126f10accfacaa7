"""KERPLE (Chi et al. 2022, "KERPLE: Kernelized Relative Positional Embedding for Length
Extrapolation"): conditionally positive definite kernels of the distance, learned per head.

    logarithmic:  bias[h, i, j] = -r1_h * ln(1 + r2_h * |i - j|)
    power:        bias[h, i, j] = -r1_h * |i - j| ^ r2_h          (r2 in (0, 2])
r1, r2 are learned, per head, and kept >= 0.01 (the authors clamp them after each step; here the
forward uses max(r, 0.01), whose gradient is zero below the floor). They start as the authors' code
(GPT-NeoX's ParallelKerpleLog / ParallelKerplePower) draws them, uniformly and differently in each
head: logarithmic r1 in (0, 2), r2 in (0, 1); power r1 in (0, 1), r2 in (0, 2) (here from the floor
up, so that no head starts dead at it). The spread matters: with r1 = r2 = 1 in every head (tinype's
first initialisation) all heads start equally local, ln(1 + d) nats at distance d, none becomes the
long-range head a retrieval needs, and a 2000-step passkey training stayed at 0% where the spread
initialisation reaches 100% (chapters and README: "KERPLE and passkey"). init=<number> starts every
head at that value instead.
The table and its gradient are compiled kernels (kernels.kerple_table, twin in reference.py).
"""
import numpy as np

from .. import kernels
from .base import PositionalEncoding

FLOOR = 0.01


class _Kerple(PositionalEncoding):
    #: the numbers a kerple model gives changed with the initialisation (version 2: the authors'
    #: uniform draws): part of every run key, so the lab redoes trainings made before
    numbers_version = 2
    r1_high = r2_high = 1.0        # the upper ends of the authors' uniform draws (set per kernel)

    def __init__(self, init=None):
        self.init = None if init is None else float(init)

    def init_params(self, rng):
        H = self.n_head
        if self.init is not None:
            return {"kerple_r1": np.full(H, self.init, dtype=self.dtype),
                    "kerple_r2": np.full(H, self.init, dtype=self.dtype)}
        # a stream of its own (spawned, not drawn from rng), so the other weights of the model start
        # exactly as they do for every other encoding with the same seed
        own = rng.spawn(1)[0]
        r1 = FLOOR + (self.r1_high - FLOOR) * own.random(H)
        r2 = FLOOR + (self.r2_high - FLOOR) * own.random(H)
        return {"kerple_r1": r1.astype(self.dtype), "kerple_r2": r2.astype(self.dtype)}

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
    r1_high, r2_high = 2.0, 1.0    # the authors: bias_p ~ U(0, 2) (our r1), bias_a ~ U(0, 1) (our r2)


class KerplePower(_Kerple):
    """-r1 |i - j|^r2, r2 in (0, 2]."""

    name = "kerple_power"
    power = True
    r2_max = 2.0
    r1_high, r2_high = 1.0, 2.0    # the authors: bias_a ~ U(0, 1) (our r1), bias_p ~ U(0, 2) (our r2)
