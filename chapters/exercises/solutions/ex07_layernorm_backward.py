"""Reference solution of exercise 07: layernorm_backward."""
import numpy as np


def layernorm_backward(dout, x, w, eps=1e-5):
    """The backward of LayerNorm over the last axis (chapter 4).

    Forward: xhat = (x - mean) / sqrt(var + eps); out = xhat * w + b.
    Returns (dx, dw, db); dw and db sum over every leading axis.
    """
    mean = x.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(x.var(axis=-1, keepdims=True) + eps)
    xhat = (x - mean) * rstd
    lead = tuple(range(x.ndim - 1))
    dw = (dout * xhat).sum(axis=lead)
    db = dout.sum(axis=lead)
    dxhat = dout * w
    dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    return dx, dw, db
