"""Reference solution of exercise 10 (warm-up): linear_backward.

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
    x2 = x.reshape(-1, x.shape[-1])                       # (N, Cin)
    d2 = dout.reshape(-1, dout.shape[-1])                 # (N, Cout)
    return (d2 @ w.T).reshape(x.shape), x2.T @ d2, d2.sum(axis=0)
