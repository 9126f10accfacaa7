"""Exercise 12: interpolate_positions. Grade it with `python chapters/exercises/grade.py ex12`."""
import numpy as np


def interpolate_positions(positions, T_train, L):
    """Position Interpolation (Chen et al. 2023), chapter 8: squeeze L positions into the trained range.

    positions: (L,) = 0..L-1. When L > T_train return positions * T_train / L; otherwise unchanged
    (as floats). RoPE at the squeezed positions equals RoPE with every inv_freq divided by L/T_train.
    """
    raise NotImplementedError("exercise ex12 (interpolate_positions) is not done yet: write it in chapters/exercises/ex12_position_interpolation.py")
