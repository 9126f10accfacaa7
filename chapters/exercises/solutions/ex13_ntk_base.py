"""Reference solution of exercise 13: ntk_base."""
import numpy as np


def ntk_base(base, head_dim, factor):
    """The NTK-aware RoPE base (bloc97, 2023), chapter 8: stretch the low frequencies, keep the high ones.

    base' = base * factor^(head_dim / (head_dim - 2)); the lowest frequency then rotates factor
    times slower while the highest is unchanged.
    """
    return base * factor ** (head_dim / (head_dim - 2))
