"""Reference solution of exercise 15: gelu_backward."""
import numpy as np


def gelu_backward(dout, x):
    """The backward of GELU, tanh approximation (GPT-2's), chapter 4.

    gelu(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). Return dout * gelu'(x).
    """
    c = np.sqrt(2 / np.pi)
    t = np.tanh(c * (x + 0.044715 * x ** 3))
    return dout * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x))
