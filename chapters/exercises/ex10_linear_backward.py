"""Exercise 10 (warm-up): linear_backward.

Read first: chapters/ch3_algorithm.py, section "Linear layer backward"
Grade it:   python chapters/exercises/grade.py ex10
Plugs into: every linear layer's backward (attention's qkv and projection, the MLP)
"""


def linear_backward(dout, x, w):
    """The backward of out = x @ w + b.

    dout: (..., Cout); x: (..., Cin) the forward's input; w: (Cin, Cout).
    Returns (dx (..., Cin), dw (Cin, Cout), db (Cout,)); dw and db sum over every leading axis.

    Steps:
      1. flatten the leading axes: x2 (N, Cin), dout2 (N, Cout)
      2. dx: dout2 times w, in the order (and orientation) that gives (N, Cin); reshape to x's shape
      3. dw: the product of x2 and dout2 that gives (Cin, Cout)
      4. db: b was added to every row
    """
    raise NotImplementedError("exercise ex10 (linear_backward) is not done yet: write it in chapters/exercises/ex10_linear_backward.py")
