"""Exercise 05: rope_backward. Grade it with `python chapters/exercises/grade.py ex05`."""
import numpy as np


def rope_backward(dout, positions, inv_freq):
    """The backward of apply_rope with respect to x (chapter 4).

    RoPE is a rotation R(t) at each position, out = R(t) x; so dx = R(t)^T dout, the rotation by
    the opposite angle. dout: (..., T, D). Returns dx, the same shape.
    """
    raise NotImplementedError("exercise ex05 (rope_backward) is not done yet: write it in chapters/exercises/ex05_rope_backward.py")
