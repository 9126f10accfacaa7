"""Exercise 07: layernorm_backward. Grade it with `python chapters/exercises/grade.py ex07`."""
import numpy as np


def layernorm_backward(dout, x, w, eps=1e-5):
    """The backward of LayerNorm over the last axis (chapter 4).

    Forward: xhat = (x - mean) / sqrt(var + eps); out = xhat * w + b.
    Returns (dx, dw, db); dw and db sum over every leading axis.
    """
    raise NotImplementedError("exercise ex07 (layernorm_backward) is not done yet: write it in chapters/exercises/ex07_layernorm_backward.py")
