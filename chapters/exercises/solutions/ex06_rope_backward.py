"""Reference solution of exercise 06 (core): rope_backward.

Read first: chapters/ch4_math.py, section "RoPE backward"
Grade it:   python chapters/exercises/grade.py ex06
Plugs into: the backward of the rotation (Rotary.rotate_backward): your gradients train the model
"""
import numpy as np


def rope_backward(dout, positions, inv_freq):
    """The backward of apply_rope with respect to x.

    dout:      (..., T, D) the gradient of apply_rope's output
    positions: (T,);  inv_freq: (D/2,)  (the same as in the forward)
    Returns:   dx, (..., T, D)

    Steps:
      1. the forward is linear in x: out_t = R_t x_t with R_t a rotation matrix per position
      2. so dx_t = (R_t)^T dout_t; what is the transpose of a rotation by an angle?
      3. write it with the same cos / sin / rotate_half pieces as exercise 05 (no matrix needed)
    """
    angles = np.asarray(positions, dtype=np.float64)[:, None] * inv_freq[None, :]
    cos = np.concatenate([np.cos(angles)] * 2, axis=-1)
    sin = np.concatenate([np.sin(angles)] * 2, axis=-1)
    h = dout.shape[-1] // 2
    # out = x cos + rotate_half(x) sin; the transpose of rotate_half is minus rotate_half
    rotated = np.concatenate([dout[..., h:], -dout[..., :h]], axis=-1)
    return dout * cos + rotated * sin
