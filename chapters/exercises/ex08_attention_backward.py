"""Exercise 08: attention_backward. Grade it with `python chapters/exercises/grade.py ex08`."""
import numpy as np


def attention_backward(dout, q, k, v, causal=True):
    """The backward of single-head attention (chapter 4).

    q, k, v: (T, D). Forward: s = q k^T / sqrt(D) (masked to -inf above the diagonal when causal),
    p = softmax(s, axis=-1), out = p v. Given dout (T, D), return (dq, dk, dv).
    """
    raise NotImplementedError("exercise ex08 (attention_backward) is not done yet: write it in chapters/exercises/ex08_attention_backward.py")
