"""Combinations such as `rope+logn` or `alibi+logn`: each part acts through its own hooks.

At most one part may use each of the embed, rotate and bias hooks (two rotations or two biases
would need an order or a sum that no paper defines); logit scales multiply. Parameter names are
unique per family (wpe, t5_bias, kerple_r1, fire_*), so the parts' dicts merge without clashes.
"""
import numpy as np

from .base import PositionalEncoding


def _uses(pe, hook):
    return getattr(type(pe), hook) is not getattr(PositionalEncoding, hook)


class Combined(PositionalEncoding):
    def __init__(self, parts):
        self.parts = list(parts)
        self.name = "+".join(p.name for p in self.parts)
        for hook in ("embed", "rotate", "bias"):
            users = [p.name for p in self.parts if _uses(p, hook)]
            if len(users) > 1:
                raise ValueError(f"{self.name}: {' and '.join(users)} both use the {hook} hook; "
                                 f"combine at most one of them with scaling encodings like logn")
        self._owner = {hook: next((p for p in self.parts if _uses(p, hook)), None)
                       for hook in ("embed", "rotate", "bias", "positions")}

    def setup(self, config):
        super().setup(config)
        for p in self.parts:
            p.setup(config)
        limits = [p.max_positions for p in self.parts if p.max_positions is not None]
        self.max_positions = min(limits) if limits else None

    def init_params(self, rng):
        params = {}
        for p in self.parts:
            params.update(p.init_params(rng))
        return params

    def positions(self, T, train=False, rng=None):
        owner = self._owner["positions"]
        return owner.positions(T, train, rng) if owner else super().positions(T, train, rng)

    def check_length(self, T):
        for p in self.parts:
            p.check_length(T)

    def embed(self, params, positions):
        owner = self._owner["embed"]
        return owner.embed(params, positions) if owner else None

    def embed_backward(self, params, dtable, cache):
        return self._owner["embed"].embed_backward(params, dtable, cache)

    def rotate(self, q, k, positions):
        owner = self._owner["rotate"]
        return owner.rotate(q, k, positions) if owner else None

    def rotate_backward(self, dq, dk, cache):
        return self._owner["rotate"].rotate_backward(dq, dk, cache)

    def bias(self, params, T, positions):
        owner = self._owner["bias"]
        return owner.bias(params, T, positions) if owner else None

    def bias_backward(self, params, dtable, cache):
        return self._owner["bias"].bias_backward(params, dtable, cache)

    @property
    def length_independent_rotation(self):
        owner = self._owner["rotate"]
        return owner.length_independent_rotation if owner else True

    def bias_rows(self, params, t0, L, positions):
        owner = self._owner["bias"]
        return owner.bias_rows(params, t0, L, positions) if owner else None

    def logit_scale(self, positions):
        scales = [s for s in (p.logit_scale(positions) for p in self.parts) if s is not None]
        return np.prod(scales, axis=0) if scales else None

    def describe(self):
        return " + ".join(p.describe() for p in self.parts)
