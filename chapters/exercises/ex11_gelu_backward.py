"""Exercise 11 (warm-up): gelu_backward.

Read first: chapters/ch3_algorithm.py, section "GELU backward"
Grade it:   python chapters/exercises/grade.py ex11
Plugs into: the MLP's activation backward (tinype.layers.gelu_backward)
"""


def gelu_backward(dout, x):
    """The backward of GELU, tanh approximation (GPT-2's).

    gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
    dout, x: the same shape.  Returns dx = dout * gelu'(x), that shape.

    Steps:
      1. t = tanh(u)
      2. the product rule on 0.5 x (1 + t): one term from d(x)/dx, one from dt/dx
      3. dt/dx = (1 - t^2) du/dx, and du/dx from the cubic
    """
    raise NotImplementedError("exercise ex11 (gelu_backward) is not done yet: write it in chapters/exercises/ex11_gelu_backward.py")
