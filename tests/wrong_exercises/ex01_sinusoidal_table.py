"""A deliberately wrong answer to exercise 01, the one article 000 §4.1 gives: sine everywhere, no cosine.
The grader must reject it (tests/test_grader.py)."""
import numpy as np


def sinusoidal_table(positions, dim, base=10000.0):
    positions = np.asarray(positions, dtype=np.float64)
    i = np.arange(dim) // 2 * 2
    return np.sin(positions[:, None] / base ** (i[None, :] / dim))
