"""Positional encodings, selectable by name.

    tinype.positions.available()            -> ["learned", "nope", "sinusoidal", ...]
    tinype.positions.get("learned", **opts) -> a PositionalEncoding
    tinype.positions.sinusoidal_table(positions, dim, base=10000.0) -> (N, dim)

Each family lives in its own module with its paper cited; base.py defines the four hooks.
"""
from ..kernels import sinusoidal_table
from .base import PositionalEncoding
from .learned import Learned
from .nope import NoPE
from .sinusoidal import Sinusoidal

_REGISTRY = {cls.name: cls for cls in (NoPE, Learned, Sinusoidal)}


def available():
    """Names accepted by get() and by ModelConfig(pe=...), sorted."""
    return sorted(_REGISTRY)


def get(name, **options):
    """A new positional encoding by name, e.g. get("sinusoidal", scale=1.0)."""
    if not isinstance(name, str):
        raise TypeError(f"a PE name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown positional encoding {name!r}; available: {', '.join(available())}")
    return _REGISTRY[key](**options)


__all__ = ["available", "get", "sinusoidal_table", "PositionalEncoding", "NoPE", "Learned", "Sinusoidal"]
