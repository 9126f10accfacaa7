"""Exercise 04: apply_rope. Grade it with `python chapters/exercises/grade.py ex04`."""
import numpy as np


def apply_rope(x, positions, inv_freq):
    """Rotary position embedding, rotate-half layout (Hugging Face's), chapter 4.

    x: (..., T, D); positions: (T,); inv_freq: (D/2,).
    angle[t, i] = positions[t] * inv_freq[i]; cos, sin are repeated to width D as [c, c];
    out = x * cos + rotate_half(x) * sin, with rotate_half([x1, x2]) = [-x2, x1].
    """
    raise NotImplementedError("exercise ex04 (apply_rope) is not done yet: write it in chapters/exercises/ex04_apply_rope.py")
