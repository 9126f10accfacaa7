"""Exercise 17 (core): cross_entropy_backward.

Read first: chapters/ch3_algorithm.py, section "Cross-entropy backward"
Grade it:   python chapters/exercises/grade.py ex17
Plugs into: the loss's backward (tinype.layers.cross_entropy_backward), the first gradient of every step
"""


def cross_entropy_backward(logits, targets):
    """The gradient of the MEAN cross-entropy loss with respect to the logits.

    logits: (N, V);  targets: (N,) ints in [0, V).
    loss = mean over n of (logsumexp(z_n) - z_n[t_n]).   Returns dlogits (N, V).

    Steps:
      1. the softmax of each row, stably (subtract the row max: logits of +-1e4 must stay finite)
      2. the derivative of logsumexp(z) is softmax(z); of z[t] it is a one-hot row
      3. the mean over N rows divides every row's gradient by N
    """
    raise NotImplementedError("exercise ex17 (cross_entropy_backward) is not done yet: write it in chapters/exercises/ex17_cross_entropy_backward.py")
