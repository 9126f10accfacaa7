"""Reference solution of exercise 05: rope_backward."""
import numpy as np


def rope_backward(dout, positions, inv_freq):
    """The backward of apply_rope with respect to x (chapter 4).

    RoPE is a rotation R(t) at each position, out = R(t) x; so dx = R(t)^T dout, the rotation by
    the opposite angle. dout: (..., T, D). Returns dx, the same shape.
    """
    angles = -np.asarray(positions, dtype=np.float64)[:, None] * inv_freq[None, :]   # R^T = R(-t)
    cos = np.concatenate([np.cos(angles)] * 2, axis=-1)
    sin = np.concatenate([np.sin(angles)] * 2, axis=-1)
    h = dout.shape[-1] // 2
    rotated = np.concatenate([-dout[..., h:], dout[..., :h]], axis=-1)
    return dout * cos + rotated * sin
