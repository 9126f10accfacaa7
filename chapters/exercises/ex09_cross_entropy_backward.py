"""Exercise 09: cross_entropy_backward. Grade it with `python chapters/exercises/grade.py ex09`."""
import numpy as np


def cross_entropy_backward(logits, targets):
    """The gradient of the mean cross-entropy loss with respect to the logits (chapter 4).

    logits: (N, V); targets: (N,) ints. loss = mean_n (logsumexp(z_n) - z_n[t_n]).
    Returns dlogits (N, V) = (softmax(z) - onehot(t)) / N. Stay finite for logits of +-1e4.
    """
    raise NotImplementedError("exercise ex09 (cross_entropy_backward) is not done yet: write it in chapters/exercises/ex09_cross_entropy_backward.py")
