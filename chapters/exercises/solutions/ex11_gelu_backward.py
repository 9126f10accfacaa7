"""Reference solution of exercise 11 (warm-up): gelu_backward.

Read first: chapters/ch3_algorithm.py, section "GELU backward"
Grade it:   python chapters/exercises/grade.py ex11
Plugs into: the MLP's activation backward (tinype.layers.gelu_backward)
"""
import numpy as np


def gelu_backward(dout, x):
    """The backward of GELU, tanh approximation (GPT-2's).

    gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
    dout, x: the same shape.  Returns dx = dout * gelu'(x), that shape.

    Steps:
      1. t = tanh(u)
      2. the product rule on 0.5 x (1 + t): one term from d(x)/dx, one from dt/dx
      3. dt/dx = (1 - t^2) du/dx, and du/dx from the cubic
    """
    c = np.sqrt(2 / np.pi)
    t = np.tanh(c * (x + 0.044715 * x ** 3))
    return dout * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x))
