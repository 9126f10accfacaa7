"""Reference solution of exercise 06: softmax_backward."""
import numpy as np


def softmax_backward(dout, y):
    """The backward of y = softmax(x) along the last axis (chapter 4).

    Given dout = dL/dy and y itself, return dL/dx = y * (dout - sum(dout * y, axis=-1, keepdims=True)).
    """
    return y * (dout - (dout * y).sum(axis=-1, keepdims=True))
