"""Rotary position embedding, RoPE (Su et al. 2021, "RoFormer"), and its context-extension scalings.

q and k are rotated pair by pair by angles proportional to their position, so q_i . k_j depends on
i - j only:
    theta_{p,k} = p * inv_freq_k,  inv_freq_k = base^(-2k/D),  k = 0 .. D/2 - 1
    (a, b) -> (a cos theta - b sin theta, b cos theta + a sin theta)
Layout: Hugging Face transformers' rotate-half (pair k = channels k and k + D/2) by default; the
paper's interleaved layout (pair k = channels 2k, 2k+1) with interleaved=True. The two are the same
rotation after a permutation of the q/k channels.

Scalings extend a RoPE model to L > T_train at evaluation time, with s = L / T_train (transformers'
modeling_rope_utils conventions):
    linear (position interpolation, Chen et al. 2023):  inv_freq / s
    ntk    (NTK-aware, bloc97 2023):                    base' = base * s^(D/(D-2))
    dynamic (dynamic NTK, transformers):                base' = base * (f L / T_train - (f - 1))^(D/(D-2))
    yarn   (Peng et al. 2023): NTK-by-parts ramp between interpolation and extrapolation over
           the pairs whose wavelength fits beta_slow..beta_fast rotations in T_train, and an
           attention factor 0.1 ln s + 1 multiplied into cos and sin
    llama3 (Meta 2024): wavelength bands; long ones interpolated, short ones kept, smooth between
"""
from __future__ import annotations

import math

import numpy as np

from .. import kernels
from .base import PositionalEncoding

SCALINGS = ("default", "linear", "ntk", "dynamic", "yarn", "llama3")


def _default_inv_freq(head_dim, base):
    return 1.0 / base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)   # (D/2,)


def _yarn(head_dim, base, factor, original_max, beta_fast=32.0, beta_slow=1.0, attention_factor=None,
          truncate=True):
    def correction_dim(rotations):
        # the pair index whose wavelength makes `rotations` full turns over original_max positions
        return head_dim * math.log(original_max / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    if low == high:
        high += 0.001                                       # avoid a zero-width ramp
    ramp = np.clip((np.arange(head_dim // 2, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    extrapolate = 1.0 - ramp                                # 1: keep the pair's frequency (fast pairs)
    inv = _default_inv_freq(head_dim, base)
    inv_freq = (inv / factor) * (1.0 - extrapolate) + inv * extrapolate
    if attention_factor is None:
        attention_factor = 1.0 if factor <= 1 else 0.1 * math.log(factor) + 1.0
    return inv_freq, float(attention_factor)


def _llama3(head_dim, base, factor, original_max, low_freq_factor=1.0, high_freq_factor=4.0):
    inv = _default_inv_freq(head_dim, base)
    low_wavelen = original_max / low_freq_factor
    high_wavelen = original_max / high_freq_factor
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > low_wavelen, inv / factor, inv)        # long wavelengths: interpolate
    smooth = (original_max / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(medium, smoothed, scaled)


def rope_inv_freq(head_dim: int, base: float = 10000.0, scaling: dict | None = None,
                  seq_len: int | None = None) -> tuple[np.ndarray, float]:
    """Inverse frequencies (D/2,) and the attention factor, as transformers' ROPE_INIT_FUNCTIONS.

    scaling: None, or a dict like transformers' rope_scaling, e.g.
        {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128}
    rope_type "linear", "dynamic" (needs seq_len; original_max_position_embeddings is the trained
    length), "yarn" (beta_fast, beta_slow, attention_factor optional), "llama3" (low_freq_factor,
    high_freq_factor), and tinype's "ntk" (static NTK-aware: base * factor^(D/(D-2))).
    """
    if head_dim < 2 or head_dim % 2:
        raise ValueError(f"RoPE needs an even head dimension >= 2, got {head_dim}")
    scaling = dict(scaling or {})
    kind = scaling.pop("rope_type", scaling.pop("type", "default"))
    if kind not in SCALINGS:
        raise ValueError(f"unknown rope_type {kind!r}; available: {', '.join(SCALINGS)}")
    if kind == "default":
        return _default_inv_freq(head_dim, base), 1.0
    factor = float(scaling.get("factor", 1.0))
    if not factor > 0:
        raise ValueError(f"rope scaling factor must be > 0, got {factor}")
    original = scaling.get("original_max_position_embeddings")
    if kind == "linear":
        return _default_inv_freq(head_dim, base) / factor, 1.0
    if kind == "ntk":
        return _default_inv_freq(head_dim, base * factor ** (head_dim / (head_dim - 2))), 1.0
    if original is None:
        raise ValueError(f"rope_type {kind!r} needs original_max_position_embeddings")
    if kind == "dynamic":
        L = max(seq_len or original, original)
        new_base = base * ((factor * L / original) - (factor - 1)) ** (head_dim / (head_dim - 2))
        return _default_inv_freq(head_dim, new_base), 1.0
    if kind == "yarn":
        return _yarn(head_dim, base, factor, original, scaling.get("beta_fast") or 32.0,
                     scaling.get("beta_slow") or 1.0, scaling.get("attention_factor"),
                     scaling.get("truncate", True))
    return _llama3(head_dim, base, factor, original, scaling.get("low_freq_factor", 1.0),
                   scaling.get("high_freq_factor", 4.0)), 1.0


def rope_tables(positions: np.ndarray, inv_freq: np.ndarray,
                attention_factor: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin (T, D/2) of theta = positions x inv_freq, times the attention factor."""
    theta = np.outer(np.asarray(positions, dtype=np.float64), inv_freq)
    return np.cos(theta) * attention_factor, np.sin(theta) * attention_factor


def apply_rope(x: np.ndarray, positions: np.ndarray, inv_freq: np.ndarray, attention_factor: float = 1.0,
               interleaved: bool = False) -> np.ndarray:
    """Rotate x (..., T, D) at `positions` (T,): the public one-call form of the rotation."""
    cos, sin = rope_tables(positions, inv_freq, attention_factor)
    return kernels.apply_rotary(x, cos.astype(x.dtype), sin.astype(x.dtype), interleaved)


class Rotary(PositionalEncoding):
    """RoPE; with scaling != "default", the evaluation-time extensions (s = max(1, L / T_train)).

    Training a rope_* model is training plain RoPE (s = 1 at T_train); the lab evaluates a rope
    checkpoint under each scaling without retraining.
    """

    name = "rope"
    scaling_kind = "default"

    def __init__(self, base=10000.0, interleaved=False, factor=None, dynamic_factor=2.0,
                 beta_fast=32.0, beta_slow=1.0, low_freq_factor=1.0, high_freq_factor=4.0):
        self.base = float(base)
        self.interleaved = bool(interleaved)
        self.factor = factor                        # None: s = max(1, L / T_train) for each length
        self.dynamic_factor = float(dynamic_factor)
        self.extra = {"beta_fast": beta_fast, "beta_slow": beta_slow,
                      "low_freq_factor": low_freq_factor, "high_freq_factor": high_freq_factor}

    def setup(self, config):
        super().setup(config)
        if self.head_dim % 2:
            raise ValueError(f"{self.name} needs an even head dimension, got d_model/n_head = {self.head_dim}")

    def frequencies(self, T):
        """(inv_freq (D/2,), attention_factor) used for a window of T positions."""
        s = float(self.factor) if self.factor is not None else max(1.0, T / self.T_train)
        kind = self.scaling_kind
        if kind == "default":
            return rope_inv_freq(self.head_dim, self.base)
        scaling = {"rope_type": kind, "factor": s, "original_max_position_embeddings": self.T_train}
        if kind == "dynamic":
            scaling["factor"] = self.dynamic_factor
            return rope_inv_freq(self.head_dim, self.base, scaling, seq_len=T)
        if kind == "yarn":
            scaling.update(beta_fast=self.extra["beta_fast"], beta_slow=self.extra["beta_slow"])
        if kind == "llama3":
            scaling.update(low_freq_factor=self.extra["low_freq_factor"],
                           high_freq_factor=self.extra["high_freq_factor"])
        return rope_inv_freq(self.head_dim, self.base, scaling)

    @property
    def length_independent_rotation(self):
        """Plain RoPE, or a scaling with a fixed factor, turns position p the same way at every
        window length, so incremental decoding may cache rotated keys. With factor=None the scale
        s = L / T_train grows with the context, and dynamic NTK recomputes its base from L: their
        keys are cached before rotation (caching rotated keys is transformers' bug #25104)."""
        return self.scaling_kind == "default" or (self.factor is not None and self.scaling_kind != "dynamic")

    def tables(self, positions):
        """cos, sin (T, D/2) at `positions`, the figure helper too."""
        inv_freq, af = self.frequencies(len(positions))
        return rope_tables(positions, inv_freq, af)

    def rotation(self, positions, dtype):
        """The tables rotate() applies: (cos_q, sin_q, cos_k, sin_k), each (T, D/2) in `dtype`.

        Every layer of a forward rotates at the same positions, so the last tables are kept and
        reused while the positions array is the same object (the model passes one per forward)."""
        memo = getattr(self, "_memo", None)
        if memo is not None and memo[0] is positions and memo[1] == dtype:
            return memo[2]
        tables = self._rotation(positions, np.dtype(dtype))
        self._memo = (positions, dtype, tables)
        return tables

    def _rotation(self, positions, dtype):
        cos, sin = self.tables(positions)
        cos, sin = cos.astype(dtype), sin.astype(dtype)
        return cos, sin, cos, sin                                   # q and k turn alike

    def rotate(self, q, k, positions):
        cq, sq, ck, sk = self.rotation(positions, q.dtype)
        q2 = kernels.apply_rotary(q, cq, sq, self.interleaved)
        k2 = kernels.apply_rotary(k, ck, sk, self.interleaved)
        return (q2, k2), (cq, sq, ck, sk)

    def rotate_backward(self, dq, dk, cache):
        cq, sq, ck, sk = cache
        # a rotation's transpose is the rotation by -theta (the amplitude factor stays)
        return (kernels.apply_rotary(dq, cq, -sq, self.interleaved),
                kernels.apply_rotary(dk, ck, -sk, self.interleaved))

    def describe(self):
        return f"{self.name}(base={self.base:g}{', interleaved' if self.interleaved else ''})"


def _scaled(kind, label):
    cls = type(f"Rotary_{kind}", (Rotary,), {"name": label, "scaling_kind": kind,
                                              "__doc__": f"RoPE with {kind} scaling at evaluation time."})
    return cls


RopePI = _scaled("linear", "rope_pi")
RopeNTK = _scaled("ntk", "rope_ntk")
RopeDynamic = _scaled("dynamic", "rope_dynamic")
RopeYaRN = _scaled("yarn", "rope_yarn")
RopeLlama3 = _scaled("llama3", "rope_llama3")


class XPos(Rotary):
    """xPos (Sun et al. 2022, "A Length-Extrapolatable Transformer"): RoPE plus an exponential decay.

        zeta_k = (2k + 0.4 D) / (1.4 D),   q_p scaled by zeta_k^(p'/512), k_p by zeta_k^(-p'/512)
    so q_i . k_j picks up zeta^((i - j)/512) < 1: attention decays with distance. p' = p - T//2
    centres the exponent (as torchscale does), which leaves every q_i . k_j unchanged but keeps the
    two scales near 1 for long windows.
    """

    name = "xpos"
    length_independent_rotation = False          # the exponent is centred on the window's middle

    def __init__(self, base=10000.0, scale_base=512.0, interleaved=False):
        super().__init__(base=base, interleaved=interleaved)
        self.scale_base = float(scale_base)

    def _rotation(self, positions, dtype):
        cos, sin = self.tables(positions)
        D = self.head_dim
        zeta = (np.arange(0, D, 2, dtype=np.float64) + 0.4 * D) / (1.4 * D)        # (D/2,)
        p = np.asarray(positions, dtype=np.float64) - (len(positions) // 2)
        scale = zeta[None, :] ** (p[:, None] / self.scale_base)                     # (T, D/2)
        return ((cos * scale).astype(dtype), (sin * scale).astype(dtype),
                (cos / scale).astype(dtype), (sin / scale).astype(dtype))
