"""Model and training configurations, and the two reference presets.

The presets are the reference configuration that the lab's published comparisons depend on:
change them and every table in the README changes too.
"""
import hashlib
import inspect
import os
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from .errors import InvalidValue

#: How tinype computes and stores a result. Part of every run key: bump it when the same
#: configuration would give other numbers (a fixed bug, a changed protocol), so old results are redone.
RESULT_FORMAT = 2

#: The most steps a training may ask for: each step keeps a record in the checkpoint's history
#: (about 100 bytes of JSON), so 10 million steps already mean a 1 GB checkpoint.
MAX_STEPS = 10_000_000
RESTART_FIELDS = ("restarts", "restart_step", "restart_loss")   # TrainConfig's, left out of to_dict at 0


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
                raise InvalidValue(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_head:
            raise InvalidValue(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype not in (np.float32, np.float64):
            raise InvalidValue(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        self.dtype = dtype.name
        if not isinstance(self.pe_options, dict):
            raise TypeError(f"pe_options must be a dict, got {type(self.pe_options).__name__}")
        from . import positions  # here, not at import time: positions imports kernels only
        try:
            pe = positions.get(self.pe, **self.pe_options)    # fails early on an unknown name/option
            pe.setup(self)                                    # ... and on dimensions it cannot use
        except ValueError as err:
            raise InvalidValue(str(err)) from None

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
            raise InvalidValue(f"unknown ModelConfig fields: {sorted(unknown)}")
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
    # Restarts from a plateau (train.py, "Restarts"): at step restart_step, a start whose mean
    # training loss over its last min(100, restart_step) steps is above restart_loss is dropped and
    # training begins again from step 0 with a new initialisation and batches, at most `restarts`
    # times. 0: never (and the three fields are left out of to_dict, so earlier runs keep their keys).
    restarts: int = 0
    restart_step: int = 0
    restart_loss: float = 0.0
    # Data parallelism (tinype.parallel): each step's batch is cut into min(shards, batch_size)
    # shards whose gradients are computed on their own cores and added. The result depends on the
    # shards (float rounding: the sums run in another order), not on the threads. 1: the whole
    # batch at once (and the field is left out of to_dict, so earlier runs keep their keys).
    shards: int = 1

    def __post_init__(self):
        for name in ("batch_size", "steps", "warmup", "eval_every", "eval_windows", "ckpt_every", "seed", "restarts",
                     "restart_step", "shards"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise InvalidValue(f"TrainConfig.{name} must be a whole number, got {value!r}")
        for name in ("batch_size", "steps", "shards"):
            if getattr(self, name) < 1:
                raise InvalidValue(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup", "eval_every", "ckpt_every", "seed", "restarts", "restart_step"):
            if getattr(self, name) < 0:
                raise InvalidValue(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.steps > MAX_STEPS:
            raise InvalidValue(f"steps = {self.steps:.3g} is more than tinype trains: at most {MAX_STEPS:,} "
                               f"(each step keeps a record in the checkpoint's history)")
        if self.seed >= 2 ** 63:
            raise InvalidValue(f"seed must be below 2**63, got {self.seed}")
        if not (self.lr > 0 and np.isfinite(self.lr)):
            raise InvalidValue(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise InvalidValue(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise InvalidValue(f"betas must be in [0, 1), got ({self.beta1}, {self.beta2})")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.eps <= 0:
            raise InvalidValue("weight_decay and grad_clip must be >= 0 and eps > 0")
        if not self.restarts and (self.restart_step or self.restart_loss):
            raise InvalidValue(f"restart_step and restart_loss set ({self.restart_step}, {self.restart_loss}) but "
                               f"restarts = 0: set restarts (how many times a start may be dropped) too")
        if self.restarts:
            if not 1 <= self.restart_step < self.steps:
                raise InvalidValue(f"with restarts, restart_step (the step of the plateau check) must be in "
                                   f"1..{self.steps - 1} (steps - 1), got {self.restart_step}")
            loss = self.restart_loss
            if isinstance(loss, bool) or not isinstance(loss, (int, float, np.floating)) or \
                    not (np.isfinite(loss) and loss > 0):
                raise InvalidValue(f"with restarts, restart_loss (the loss above which a start counts as stuck) "
                                   f"must be a positive number, got {self.restart_loss!r}")

    def to_dict(self):
        d = asdict(self)
        if not self.restarts:                # the keys and configs of runs without restarts stay as they were
            for name in RESTART_FIELDS:
                del d[name]
        if self.shards == 1:
            del d["shards"]
        return d

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InvalidValue(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**d)


PRESETS = {
    "quick": (ModelConfig(n_layer=2, d_model=64, n_head=4, T_train=64),
              TrainConfig(batch_size=32, steps=600, lr=3e-3, warmup=50, shards=2)),
    "standard": (ModelConfig(n_layer=4, d_model=128, n_head=4, T_train=128),
                 TrainConfig(batch_size=32, steps=2000, lr=2e-3, warmup=100, shards=2)),
}


def preset(name, **model_overrides):
    """(ModelConfig, TrainConfig) of a preset, e.g. preset("quick", pe="alibi")."""
    if name not in PRESETS:
        raise InvalidValue(f"unknown preset {name!r}; available: {', '.join(sorted(PRESETS))}")
    model_cfg, train_cfg = PRESETS[name]
    return replace(model_cfg, **model_overrides), replace(train_cfg)


def parameter_count(model_cfg):
    """Parameters of the model, from its configuration alone (nothing is allocated)."""
    V, C, L = model_cfg.vocab_size, model_cfg.d_model, model_cfg.n_layer
    per_block = 2 * C + (3 * C * C + 3 * C) + (C * C + C) + 2 * C + (4 * C * C + 4 * C) + (4 * C * C + C)
    from . import positions
    pe = positions.get(model_cfg.pe, **model_cfg.pe_options)
    pe.setup(model_cfg)
    table = (getattr(pe, "max_positions", None) or 0) * C          # learned tables (T_train, C)
    return V * C + L * per_block + 2 * C + table


def training_memory(model_cfg, train_cfg):
    """Bytes a training step needs, roughly: weights, gradients (one set per shard, and their sum)
    and AdamW's two moments, plus the activations the backward keeps (about 20 C floats per token per
    layer, and the logits)."""
    item = np.dtype(model_cfg.dtype).itemsize
    B, T, C, V = train_cfg.batch_size, model_cfg.T_train, model_cfg.d_model, model_cfg.vocab_size
    tokens = B * T
    activations = tokens * (model_cfg.n_layer * 20 * C + 4 * C + 3 * V) + B * model_cfg.n_head * T
    parts = min(train_cfg.shards, B)
    copies = 4 if parts == 1 else 4 + parts
    return (copies * parameter_count(model_cfg) + activations) * item


def machine_memory():
    """Physical memory in bytes (None when the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def human_bytes(n):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024


def check_memory(model_cfg, train_cfg, what="this training"):
    """Refuse, before anything is allocated, a configuration that needs more memory than the machine has."""
    need, have = training_memory(model_cfg, train_cfg), machine_memory()
    if have is not None and need > have:
        raise InvalidValue(
            f"{what} needs about {human_bytes(need)} of memory (weights, gradients, AdamW state and "
            f"activations of a batch of {train_cfg.batch_size:,} x {model_cfg.T_train:,} bytes at width "
            f"{model_cfg.d_model:,}); this machine has {human_bytes(have)}. Lower --batch-size, "
            f"--d-model, --n-layer or --context")
    return need


def pe_identity(name, options=None):
    """What determines an encoding's numbers: its name, its options, and, for an encoding defined
    outside tinype (a user's module or file), a SHA-256 of the file that defines it; for a tinype
    encoding whose numbers changed since its first version (KERPLE's initialisation), that version."""
    from . import positions
    pe = positions.get(name, **(options or {}))
    parts = getattr(pe, "parts", [pe])
    code = {}
    for part in parts:
        # a tinype encoding whose numbers changed (a new initialisation, a fixed formula) says so
        # with numbers_version; only versions past 1 enter the key, so other run keys stay as they were
        version = getattr(part, "numbers_version", 1)
        if version != 1:
            code[f"{part.name} (tinype)"] = f"numbers version {version}"
    for part in parts:
        module = inspect.getmodule(type(part))
        if module is None or module.__name__.split(".")[0] == "tinype":
            continue
        try:
            with open(inspect.getsourcefile(type(part)), "rb") as f:
                code[type(part).__qualname__] = hashlib.sha256(f.read()).hexdigest()
        except (OSError, TypeError):
            code[type(part).__qualname__] = None
    return {"pe": name, "pe_options": dict(options or {}), "pe_code": code or None}
