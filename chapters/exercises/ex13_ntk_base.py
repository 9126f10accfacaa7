"""Exercise 13: ntk_base. Grade it with `python chapters/exercises/grade.py ex13`."""
import numpy as np


def ntk_base(base, head_dim, factor):
    """The NTK-aware RoPE base (bloc97, 2023), chapter 8: stretch the low frequencies, keep the high ones.

    base' = base * factor^(head_dim / (head_dim - 2)); the lowest frequency then rotates factor
    times slower while the highest is unchanged.
    """
    raise NotImplementedError("exercise ex13 (ntk_base) is not done yet: write it in chapters/exercises/ex13_ntk_base.py")
