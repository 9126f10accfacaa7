"""Exercise 14 (core): layernorm_backward.

Read first: chapters/ch3_algorithm.py, section "LayerNorm backward"
Grade it:   python chapters/exercises/grade.py ex14
Plugs into: every LayerNorm's backward (tinype.layers.layernorm_backward)
"""


def layernorm_backward(dout, x, w, eps=1e-5):
    """The backward of layernorm_forward.

    dout, x: (..., C); w: (C,).  Returns (dx (..., C), dw (C,), db (C,)); dw, db sum over leading axes.

    Steps:
      1. recompute mean, rstd = 1/sqrt(var + eps) and xhat from x (the forward's steps)
      2. dw and db from out = xhat * w + b
      3. dxhat = dout * w
      4. dx: xhat depends on x directly and through the mean and the variance of the row; each of
         the two indirect paths contributes a term with a row mean in it: derive both (the chapter
         section does it step by step), then collect the rstd factor.
    """
    raise NotImplementedError("exercise ex14 (layernorm_backward) is not done yet: write it in chapters/exercises/ex14_layernorm_backward.py")
