"""Positional encodings, selectable by name; `a+b` combines them (e.g. "rope+logn").

    tinype.positions.available()            -> sorted names
    tinype.positions.get("alibi", **opts)   -> a PositionalEncoding
    sinusoidal_table, alibi_slopes, rope_inv_freq, apply_rope, t5_relative_bucket: the formulas

Each family lives in its own module with its paper cited; base.py defines the four hooks.
"""
from ..kernels import sinusoidal_table
from .alibi import ALiBi, alibi_slopes
from .base import PositionalEncoding
from .combined import Combined
from .fire import FIRE
from .kerple import KerpleLog, KerplePower
from .learned import Learned
from .log_sinusoidal import LogSinusoidal, log_positions
from .logn import LogN, logn_scale
from .nope import NoPE
from .randomized import RandomizedLearned, RandomizedRope, RandomizedSinusoidal
from .rope import (Rotary, RopeDynamic, RopeLlama3, RopeNTK, RopePI, RopeYaRN, XPos, apply_rope,
                   rope_inv_freq, rope_tables)
from .sandwich import Sandwich
from .sinusoidal import Sinusoidal
from .t5 import T5Bias, t5_relative_bucket

_FAMILIES = (NoPE, Sinusoidal, Learned, LogSinusoidal, RandomizedSinusoidal, RandomizedLearned,
             RandomizedRope, Rotary, RopePI, RopeNTK, RopeDynamic, RopeYaRN, RopeLlama3, XPos, ALiBi,
             T5Bias, KerpleLog, KerplePower, Sandwich, FIRE, LogN)
_REGISTRY = {cls.name: cls for cls in _FAMILIES}

#: RoPE variants that only change evaluation: a model trained with "rope" is evaluated with them
EVAL_TIME_VARIANTS = {"rope_pi": "rope", "rope_ntk": "rope", "rope_dynamic": "rope",
                      "rope_yarn": "rope", "rope_llama3": "rope"}


def available():
    """Names accepted by get() and by ModelConfig(pe=...), sorted ("a+b" combines two)."""
    return sorted(_REGISTRY)


def get(name, **options):
    """A new positional encoding by name, e.g. get("sinusoidal", scale=1.0) or get("rope+logn").

    Options go to a single encoding; a combination takes none (configure its parts separately).
    """
    if not isinstance(name, str):
        raise TypeError(f"a PE name must be a string, got {type(name).__name__}")
    keys = [k.strip().lower() for k in name.split("+")]
    for key in keys:
        if key not in _REGISTRY:
            raise ValueError(f"unknown positional encoding {key!r}; available: {', '.join(available())}")
    if len(keys) == 1:
        try:
            return _REGISTRY[keys[0]](**options)
        except TypeError as err:
            raise ValueError(f"{keys[0]}: bad options {sorted(options)}: {err}") from None
    if options:
        raise ValueError(f"options cannot be given to a combination ({name}); got {sorted(options)}")
    if len(set(keys)) != len(keys):
        raise ValueError(f"{name} names an encoding twice")
    return Combined([_REGISTRY[k]() for k in keys])


__all__ = ["available", "get", "sinusoidal_table", "alibi_slopes", "rope_inv_freq", "rope_tables", "apply_rope",
           "t5_relative_bucket", "logn_scale", "log_positions", "PositionalEncoding", "EVAL_TIME_VARIANTS"] + \
          [cls.__name__ for cls in _FAMILIES] + ["Combined"]
