"""Reference solution of exercise 13 (warm-up): layernorm_forward.

Read first: chapters/ch3_algorithm.py, section "LayerNorm backward"
Grade it:   python chapters/exercises/grade.py ex13
Plugs into: every LayerNorm of the model (tinype.layers.layernorm_forward)
"""
import numpy as np


def layernorm_forward(x, w, b, eps=1e-5):
    """LayerNorm over the last axis, as PyTorch's nn.LayerNorm.

    x: (..., C); w, b: (C,) gain and bias.  Returns out, (..., C).

    Steps:
      1. mean and variance of each row over C (the biased variance: divide by C, not C - 1)
      2. xhat: the row centred, divided by sqrt(var + eps)
      3. scale by w and shift by b
    """
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)        # biased, as PyTorch
    return (x - mean) / np.sqrt(var + eps) * w + b
