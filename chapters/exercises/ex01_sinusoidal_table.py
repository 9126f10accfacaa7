"""Exercise 01 (warm-up): sinusoidal_table.

Read first: chapters/ch4_math.py, section "Sinusoidal encoding"
Grade it:   python chapters/exercises/grade.py ex01
Plugs into: the sinusoidal table (tinype.kernels.sinusoidal_table), so `pe="sinusoidal"` adds YOUR table
"""


def sinusoidal_table(positions, dim, base=10000.0):
    """The sinusoidal position table of "Attention Is All You Need", interleaved layout.

    positions: (N,) real-valued positions (0, 1, 2, ... or fractions); dim: the width C (even or odd).
    Returns:   (N, dim) float64; even channels 2i hold a sine and odd channels 2i+1 a cosine of the
               same angle; the angle of pair i falls from p (i = 0) to p / base^(~1) (the last pair).
    Article 000 section 4.1 swaps p and i and drops the cosine: the chapter section shows why that is wrong.

    Steps:
      1. the even channel indices 2i = 0, 2, 4, ... (ceil(dim / 2) of them)
      2. the angle of position p in pair i: p times a frequency that falls geometrically with i,
         from 1 (i = 0) towards 1/base (the last pair); shape (N, ceil(dim/2))
      3. an (N, dim) output: sines into the even columns, cosines into the odd columns
         (an odd dim has one cosine fewer than sines)
    """
    raise NotImplementedError("exercise ex01 (sinusoidal_table) is not done yet: write it in chapters/exercises/ex01_sinusoidal_table.py")
