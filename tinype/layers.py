"""Layers as forward/backward pairs, written by hand.

Each layer is `x_forward(inputs...) -> (out, cache)` and `x_backward(dout, cache) -> gradients`,
named d<input> and returned in the forward's order. The cache is a small NamedTuple holding
exactly what the backward needs. Where a layer is a chain of elementwise passes (GELU, LayerNorm,
softmax cross-entropy, the embedding's scatter-add), the arithmetic lives in a fused kernel:
tinype/reference.py holds the NumPy version that reads like the formula, pyx/layers.pxi the
compiled twin, and tinype.kernels picks one. Every pair works in float32 and float64 and is checked against
central differences by tests/test_layers.py (see tinype.gradcheck).

Shape letters: B batch, T time, C channels (model width), V vocabulary, N = B*T rows.
"""
from typing import NamedTuple

import numpy as np

from . import kernels

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
    return kernels.embedding_backward(cache.idx.reshape(-1), dout.reshape(-1, C), cache.vocab_size)


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
    xhat: np.ndarray         # (N, C) normalised input, rows flattened
    rstd: np.ndarray         # (N,) 1 / sqrt(var + eps)
    w: np.ndarray            # (C,)


def layernorm_forward(x, w, b, eps=1e-5):
    """out = (x - mean) / sqrt(var + eps) * w + b over the last axis (biased variance, as PyTorch).

    x: (..., C); w, b: (C,). The rows are flattened to (N, C) for the kernel.
    """
    C = x.shape[-1]
    out, xhat, rstd = kernels.layernorm_forward(x.reshape(-1, C), w, b, eps)
    return out.reshape(x.shape), LayerNormCache(xhat, rstd, w)


def layernorm_backward(dout, cache):
    """Returns dx, dw, db.

    in the forward pass this was: out = xhat * w + b, xhat = (x - mean) * rstd; so
        dxhat = dout * w,  dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    """
    xhat, rstd, w = cache
    dx, dw, db = kernels.layernorm_backward(dout.reshape(xhat.shape), xhat, rstd, w)
    return dx.reshape(dout.shape), dw, db


# GELU (tanh approximation, as GPT-2) -------------------------------------------------------------

class GeluCache(NamedTuple):
    x: np.ndarray
    t: np.ndarray            # tanh(sqrt(2/pi) (x + 0.044715 x^3))


def gelu_forward(x):
    """out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    out, t = kernels.gelu_forward(x)
    return out, GeluCache(x, t)


def gelu_backward(dout, cache):
    """d/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)."""
    return kernels.gelu_backward(dout, cache.x, cache.t)


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
    dlogits: np.ndarray      # (N, V) (softmax - onehot) * row weight: the gradient for dloss = 1


def softmax(logits, axis=-1):
    """Numerically stable softmax (the max is subtracted first, so +-1e4 logits stay finite)."""
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def cross_entropy_forward(logits, targets, ignore_index=-1):
    """Mean negative log-likelihood of `targets` under softmax(logits).

    logits: (N, V); targets: (N,) ints in [0, V), or `ignore_index` for rows that do not count.
    Returns the loss (a 0-d array in the logits' dtype) and the cache. The kernel computes the
    gradient in the same pass (it needs the same softmax), so the backward is a multiplication.
    """
    keep = targets != ignore_index
    count = max(int(keep.sum()), 1)
    weights = keep.astype(logits.dtype) / count              # each counted row weighs 1/count
    nll, dlogits = kernels.softmax_cross_entropy(logits, np.where(keep, targets, 0), weights)
    loss = np.asarray(np.dot(nll, weights), dtype=logits.dtype)
    return loss, CrossEntropyCache(dlogits)


def cross_entropy_backward(dloss, cache):
    """in the forward pass this was: loss = sum_n w_n (logsumexp(z_n) - z_n[t_n]);
    so dlogits = (softmax(z) - onehot(t)) * w_n * dloss."""
    return cache.dlogits * dloss if dloss != 1.0 else cache.dlogits.copy()
