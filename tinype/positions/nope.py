"""NoPE: no positional encoding at all.

A causal decoder can still infer position from the mask (Haviv et al. 2022, "Transformer Language
Models without Positional Encodings Still Learn Positional Information"; Kazemnejad et al. 2023).
"""
from .base import PositionalEncoding


class NoPE(PositionalEncoding):
    """Every hook off: the attention mask is the only source of order."""

    name = "nope"
