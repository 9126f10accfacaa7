"""Exercise 15: gelu_backward. Grade it with `python chapters/exercises/grade.py ex15`."""
import numpy as np


def gelu_backward(dout, x):
    """The backward of GELU, tanh approximation (GPT-2's), chapter 4.

    gelu(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). Return dout * gelu'(x).
    """
    raise NotImplementedError("exercise ex15 (gelu_backward) is not done yet: write it in chapters/exercises/ex15_gelu_backward.py")
