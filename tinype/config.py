"""Model and training configurations, and the two reference presets.

The presets are the reference configuration that the lab's published comparisons depend on:
change them and every table in the README changes too.
"""
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np


@dataclass
class ModelConfig:
    """A GPT-2 style decoder: pre-LayerNorm blocks, fused qkv, MLP 4x wide, tied lm_head."""
    vocab_size: int = 256          # bytes
    n_layer: int = 2
    d_model: int = 64              # C, the model width
    n_head: int = 4                # H; head_dim D = d_model / n_head
    T_train: int = 64              # training context length (the learned PE's table size)
    pe: str = "learned"            # a name from tinype.positions.available()
    pe_options: dict = field(default_factory=dict)
    causal: bool = True
    ln_eps: float = 1e-5
    dtype: str = "float32"         # float32 to train, float64 for gradient checks

    def __post_init__(self):
        for name in ("vocab_size", "n_layer", "d_model", "n_head", "T_train"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")
        if np.dtype(self.dtype) not in (np.float32, np.float64):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        self.dtype = np.dtype(self.dtype).name
        if not isinstance(self.pe_options, dict):
            raise TypeError(f"pe_options must be a dict, got {type(self.pe_options).__name__}")
        from . import positions  # here, not at import time: positions imports kernels only
        pe = positions.get(self.pe, **self.pe_options)        # fails early on an unknown name/option
        pe.setup(self)                                        # ... and on dimensions it cannot use

    @property
    def head_dim(self):
        return self.d_model // self.n_head

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return cls(**d)


@dataclass
class TrainConfig:
    """Optimisation settings: AdamW, clipping, warmup then cosine decay to min_lr_ratio * lr."""
    batch_size: int = 32
    steps: int = 600
    lr: float = 3e-3
    warmup: int = 50
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    seed: int = 0
    eval_every: int = 100          # validation loss every N steps (0: only at the end)
    eval_windows: int = 64         # windows of T_train used by the periodic validation
    ckpt_every: int = 100          # checkpoint every N steps (0: only at the end)

    def __post_init__(self):
        for name in ("batch_size", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup", "eval_every", "ckpt_every", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not (self.lr > 0 and np.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"betas must be in [0, 1), got ({self.beta1}, {self.beta2})")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.eps <= 0:
            raise ValueError("weight_decay and grad_clip must be >= 0 and eps > 0")

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


PRESETS = {
    "quick": (ModelConfig(n_layer=2, d_model=64, n_head=4, T_train=64),
              TrainConfig(batch_size=32, steps=600, lr=3e-3, warmup=50)),
    "standard": (ModelConfig(n_layer=4, d_model=128, n_head=4, T_train=128),
                 TrainConfig(batch_size=32, steps=2000, lr=2e-3, warmup=100)),
}


def preset(name, **model_overrides):
    """(ModelConfig, TrainConfig) of a preset, e.g. preset("quick", pe="alibi")."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(sorted(PRESETS))}")
    model_cfg, train_cfg = PRESETS[name]
    return replace(model_cfg, **model_overrides), replace(train_cfg)
