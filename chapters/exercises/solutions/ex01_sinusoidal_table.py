"""Reference solution of exercise 01: sinusoidal_table."""
import numpy as np


def sinusoidal_table(positions, dim, base=10000.0):
    """The sinusoidal position table of "Attention Is All You Need" (chapter 4).

    positions: (T,) real-valued positions; dim: an even width.
    Returns (T, dim) with  PE[p, 2i] = sin(p / base^(2i/dim)),  PE[p, 2i+1] = cos(p / base^(2i/dim)).
    (Article 000 §4.1 swaps p and i and drops the cosine: do not copy it.)
    """
    positions = np.asarray(positions, dtype=np.float64)
    inv = base ** (-np.arange(0, dim, 2) / dim)               # (dim/2,) 1 / base^(2i/dim)
    angles = positions[:, None] * inv[None, :]                 # (T, dim/2)
    out = np.empty((len(positions), dim))
    out[:, 0::2] = np.sin(angles)
    out[:, 1::2] = np.cos(angles)
    return out
