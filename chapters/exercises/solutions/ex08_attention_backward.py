"""Reference solution of exercise 08: attention_backward."""
import numpy as np


def attention_backward(dout, q, k, v, causal=True):
    """The backward of single-head attention (chapter 4).

    q, k, v: (T, D). Forward: s = q k^T / sqrt(D) (masked to -inf above the diagonal when causal),
    p = softmax(s, axis=-1), out = p v. Given dout (T, D), return (dq, dk, dv).
    """
    T, D = q.shape
    s = q @ k.T / np.sqrt(D)
    if causal:
        s = np.where(np.tril(np.ones((T, T), dtype=bool)), s, -np.inf)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    dv = p.T @ dout
    dp = dout @ v.T
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True)) / np.sqrt(D)
    return ds @ k, ds.T @ q, dv
