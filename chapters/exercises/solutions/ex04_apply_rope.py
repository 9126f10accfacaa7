"""Reference solution of exercise 04: apply_rope."""
import numpy as np


def apply_rope(x, positions, inv_freq):
    """Rotary position embedding, rotate-half layout (Hugging Face's), chapter 4.

    x: (..., T, D); positions: (T,); inv_freq: (D/2,).
    angle[t, i] = positions[t] * inv_freq[i]; cos, sin are repeated to width D as [c, c];
    out = x * cos + rotate_half(x) * sin, with rotate_half([x1, x2]) = [-x2, x1].
    """
    angles = np.asarray(positions, dtype=np.float64)[:, None] * inv_freq[None, :]
    cos = np.concatenate([np.cos(angles)] * 2, axis=-1)
    sin = np.concatenate([np.sin(angles)] * 2, axis=-1)
    h = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., h:], x[..., :h]], axis=-1)
    return x * cos + rotated * sin
