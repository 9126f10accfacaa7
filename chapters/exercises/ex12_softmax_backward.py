"""Exercise 12 (core): softmax_backward.

Read first: chapters/ch3_algorithm.py, section "Softmax backward"
Grade it:   python chapters/exercises/grade.py ex12
Plugs into: the softmax inside attention's backward (used when exercise 16 is not done yet)
"""


def softmax_backward(dout, y):
    """The backward of y = softmax(x) along the last axis.

    dout: (..., N) = dL/dy;  y: (..., N) the forward's output (each row sums to 1).
    Returns dx = dL/dx, (..., N).

    Steps:
      1. the Jacobian of one row: dy_i/dx_j = y_i (delta_ij - y_j)
      2. contract it with dout row by row, without building the N x N matrix: one row-wise
         sum of dout * y appears
      3. the result of every row sums to zero (adding a constant to x changes nothing): check it
    """
    raise NotImplementedError("exercise ex12 (softmax_backward) is not done yet: write it in chapters/exercises/ex12_softmax_backward.py")
