"""Exercise 01: sinusoidal_table. Grade it with `python chapters/exercises/grade.py ex01`."""
import numpy as np


def sinusoidal_table(positions, dim, base=10000.0):
    """The sinusoidal position table of "Attention Is All You Need" (chapter 4).

    positions: (T,) real-valued positions; dim: an even width.
    Returns (T, dim) with  PE[p, 2i] = sin(p / base^(2i/dim)),  PE[p, 2i+1] = cos(p / base^(2i/dim)).
    (Article 000 §4.1 swaps p and i and drops the cosine: do not copy it.)
    """
    raise NotImplementedError("exercise ex01 (sinusoidal_table) is not done yet: write it in chapters/exercises/ex01_sinusoidal_table.py")
