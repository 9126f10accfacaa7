"""Layers as forward/backward pairs, written by hand.

Each layer is `x_forward(inputs...) -> (out, cache)` and `x_backward(dout, cache) -> gradients`,
named d<input> and returned in the forward's order. The cache is a small NamedTuple holding
exactly what the backward needs. Every pair works in float32 and float64 and is checked against
central differences by tests/test_layers.py (see tinype.gradcheck).

Shape letters: B batch, T time, C channels (model width), V vocabulary, N = B*T rows.
"""
import math
from typing import NamedTuple

import numpy as np


# Embedding ---------------------------------------------------------------------------------------

class EmbeddingCache(NamedTuple):
    idx: np.ndarray          # (B, T) token ids
    vocab_size: int


def embedding_forward(idx, wte):
    """idx: (B, T) ints in [0, V); wte: (V, C). Returns out (B, T, C)."""
    return wte[idx], EmbeddingCache(idx, wte.shape[0])


def embedding_backward(dout, cache):
    """dout: (B, T, C). Returns dwte (V, C): each row sums the gradients of its occurrences."""
    C = dout.shape[-1]
    dwte = np.zeros((cache.vocab_size, C), dtype=dout.dtype)
    np.add.at(dwte, cache.idx.ravel(), dout.reshape(-1, C))
    return dwte


# Linear ------------------------------------------------------------------------------------------

class LinearCache(NamedTuple):
    x: np.ndarray            # (..., Cin) the input, for dw
    w: np.ndarray            # (Cin, Cout) the weight, for dx


def linear_forward(x, w, b=None):
    """out = x @ w + b.  x: (..., Cin), w: (Cin, Cout), b: (Cout,) or None. Returns (..., Cout)."""
    out = (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[1])   # one GEMM over N rows
    if b is not None:
        out += b
    return out, LinearCache(x, w)


def linear_backward(dout, cache):
    """Returns dx (..., Cin), dw (Cin, Cout), db (Cout,)."""
    x, w = cache
    dout2 = dout.reshape(-1, dout.shape[-1])                  # (N, Cout)
    dx = (dout2 @ w.T).reshape(x.shape)                       # (..., Cin)
    dw = x.reshape(-1, x.shape[-1]).T @ dout2                 # (Cin, Cout)
    db = dout2.sum(axis=0)
    return dx, dw, db


# LayerNorm ---------------------------------------------------------------------------------------

class LayerNormCache(NamedTuple):
    xhat: np.ndarray         # (..., C) normalised input
    rstd: np.ndarray         # (..., 1) 1 / sqrt(var + eps)
    w: np.ndarray            # (C,)


def layernorm_forward(x, w, b, eps=1e-5):
    """out = (x - mean) / sqrt(var + eps) * w + b over the last axis (biased variance, as PyTorch)."""
    mean = x.mean(axis=-1, keepdims=True)
    xc = x - mean
    var = np.mean(xc * xc, axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = xc * rstd
    return xhat * w + b, LayerNormCache(xhat, rstd, w)


def layernorm_backward(dout, cache):
    """Returns dx, dw, db.

    in the forward pass this was: out = xhat * w + b, xhat = (x - mean) * rstd; so
        dxhat = dout * w,  dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    """
    xhat, rstd, w = cache
    C = xhat.shape[-1]
    dw = np.sum((dout * xhat).reshape(-1, C), axis=0)
    db = np.sum(dout.reshape(-1, C), axis=0)
    dxhat = dout * w
    dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                 - xhat * np.mean(dxhat * xhat, axis=-1, keepdims=True))
    return dx, dw, db


# GELU (tanh approximation, as GPT-2) -------------------------------------------------------------

# A Python float, not np.float64: NumPy 2 would promote float32 activations to float64.
_GELU_K = math.sqrt(2.0 / math.pi)


class GeluCache(NamedTuple):
    x: np.ndarray
    t: np.ndarray            # tanh(k (x + 0.044715 x^3))


def gelu_forward(x):
    """out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    t = np.tanh(_GELU_K * (x + 0.044715 * x * x * x))
    return 0.5 * x * (1.0 + t), GeluCache(x, t)


def gelu_backward(dout, cache):
    """d/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)."""
    x, t = cache
    dudx = _GELU_K * (1.0 + 3 * 0.044715 * x * x)
    return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dudx)


# MLP ---------------------------------------------------------------------------------------------

class MLPCache(NamedTuple):
    fc: LinearCache
    act: GeluCache
    proj: LinearCache


def mlp_forward(x, w_fc, b_fc, w_proj, b_proj):
    """Linear(C -> 4C) -> GELU -> Linear(4C -> C).  x: (..., C)."""
    h, fc = linear_forward(x, w_fc, b_fc)
    a, act = gelu_forward(h)
    out, proj = linear_forward(a, w_proj, b_proj)
    return out, MLPCache(fc, act, proj)


def mlp_backward(dout, cache):
    """Returns dx, dw_fc, db_fc, dw_proj, db_proj."""
    da, dw_proj, db_proj = linear_backward(dout, cache.proj)
    dh = gelu_backward(da, cache.act)
    dx, dw_fc, db_fc = linear_backward(dh, cache.fc)
    return dx, dw_fc, db_fc, dw_proj, db_proj


# Softmax cross-entropy ---------------------------------------------------------------------------

class CrossEntropyCache(NamedTuple):
    probs: np.ndarray        # (N, V) softmax of the logits
    targets: np.ndarray      # (N,)
    weights: np.ndarray      # (N,) 1/count for counted rows, 0 for ignored ones


def softmax(logits, axis=-1):
    """Numerically stable softmax (the max is subtracted first, so +-1e4 logits stay finite)."""
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def cross_entropy_forward(logits, targets, ignore_index=-1):
    """Mean negative log-likelihood of `targets` under softmax(logits).

    logits: (N, V); targets: (N,) ints in [0, V), or `ignore_index` for rows that do not count.
    Returns the loss (a 0-d array in the logits' dtype) and the cache.
    """
    N = logits.shape[0]
    z = logits - logits.max(axis=-1, keepdims=True)
    logsumexp = np.log(np.exp(z).sum(axis=-1))
    keep = targets != ignore_index
    count = max(int(keep.sum()), 1)
    safe_t = np.where(keep, targets, 0)
    nll = logsumexp - z[np.arange(N), safe_t]                 # (N,)
    weights = keep.astype(logits.dtype) / count
    loss = np.sum(nll * weights)
    probs = np.exp(z - logsumexp[:, None])
    return loss, CrossEntropyCache(probs, safe_t, weights)


def cross_entropy_backward(dloss, cache):
    """dlogits = (softmax - onehot(targets)) * weight of the row * dloss."""
    probs, targets, weights = cache
    dlogits = probs.copy()
    dlogits[np.arange(len(targets)), targets] -= 1.0
    dlogits *= (weights * dloss)[:, None]
    return dlogits
