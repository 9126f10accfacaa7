"""NumPy references of tinype's kernels: the readable specification.

Every function here has a compiled twin of the same name and signature in tinype._ext (where the
kernel has been written) and tinype.kernels picks one of the two. The tests hold them equal, so
when in doubt about what a kernel computes, read it here.

Shape letters: B batch, H heads, T time, D head dim, N positions, C channels.
"""
from functools import lru_cache

import numpy as np


def sinusoidal_table(positions, dim, base=10000.0):
    """The sinusoidal table of Vaswani et al. (2017), interleaved, at any real positions.

        PE[p, 2i]   = sin(p / base^(2i/dim))
        PE[p, 2i+1] = cos(p / base^(2i/dim))

    positions: (N,) float32 or float64. Returns (N, dim) in the dtype of `positions`.
    Angles are formed in float64 whatever the dtype (a float32 angle at p = 4096 is off by ~1e-3).
    """
    i2 = np.arange(0, dim, 2, dtype=np.float64)               # the even channel indices 2i
    inv_freq = base ** (-i2 / dim)                            # (ceil(dim/2),)
    angles = positions.astype(np.float64)[:, None] * inv_freq  # (N, ceil(dim/2))
    out = np.empty((positions.shape[0], dim), dtype=positions.dtype)
    out[:, 0::2] = np.sin(angles)
    out[:, 1::2] = np.cos(angles[:, : dim // 2])             # an odd dim has no last cosine
    return out


@lru_cache(maxsize=64)
def _distance_index(T, n_table):
    """(T, T) index into a bias table over distances i - j.

    n_table == T: causal table b[h, i - j], distances 0..T-1 (j > i clipped to 0; masked anyway).
    n_table == 2T - 1: two-sided table b[h, i - j + T - 1].
    """
    i = np.arange(T)[:, None]
    j = np.arange(T)[None, :]
    if n_table == T:
        idx = np.maximum(i - j, 0)
    elif n_table == 2 * T - 1:
        idx = i - j + T - 1
    else:
        raise ValueError(f"bias table must have T={T} (causal) or 2T-1={2 * T - 1} columns, got {n_table}")
    idx.setflags(write=False)
    return idx


@lru_cache(maxsize=64)
def _causal_mask(T):
    """(T, T) additive mask: 0 where j <= i, -inf above the diagonal."""
    mask = np.triu(np.full((T, T), -np.inf), k=1)
    mask.setflags(write=False)
    return mask


def _logits(q, k, scale, causal, bias, logit_scale):
    """s[b,h,i,j] = logit_scale[i] * scale * (q_i . k_j) + bias[h, i - j], masked if causal."""
    T = q.shape[2]
    s = np.matmul(q, k.swapaxes(-1, -2))                      # (B, H, T, T)
    mult = scale if logit_scale is None else scale * logit_scale.astype(q.dtype)[:, None]
    s *= mult
    if bias is not None:
        s += bias[:, _distance_index(T, bias.shape[1])]     # (H, T, T) broadcast over B
    if causal:
        s += _causal_mask(T).astype(q.dtype, copy=False)
    return s


def attention_forward(q, k, v, scale, causal=True, bias=None, logit_scale=None):
    """Softmax attention with an optional bias over distances and per-query logit multipliers.

        s[b,h,i,j] = logit_scale[i] * scale * q[b,h,i] . k[b,h,j] + bias[h, i - j]
        p = softmax_j(s)  (j <= i when causal);   out[b,h,i] = sum_j p[b,h,i,j] v[b,h,j]

    q, k, v: (B, H, T, D).  bias: None, (H, T) causal table or (H, 2T-1) two-sided table.
    logit_scale: None or (T,).  Returns out (B, H, T, D) and lse (B, H, T), the log-sum-exp
    of each row, which is all the backward needs to rebuild p.
    """
    s = _logits(q, k, scale, causal, bias, logit_scale)
    m = s.max(axis=-1, keepdims=True)                         # (B, H, T, 1)
    p = np.exp(s - m)
    l = p.sum(axis=-1, keepdims=True)
    p /= l
    out = np.matmul(p, v)                                     # (B, H, T, D)
    lse = (m + np.log(l))[..., 0]                             # (B, H, T)
    return out, lse


def attention_backward(dout, q, k, v, out, lse, scale, causal=True, bias=None, logit_scale=None):
    """Gradients of attention_forward. Returns dq, dk, dv (B, H, T, D) and dbias (bias's shape, or None).

    p is rebuilt from lse, as the flash-attention backward does:
        in the forward pass this was: out = p @ v;  so dv = p^T @ dout and dp = dout @ v^T
        softmax: ds = p * (dp - sum_j p dp) and sum_j p dp = dout . out (row-wise)
        s = mult * q k^T + bias:  dq = (mult ds) @ k,  dk = (mult ds)^T @ q,  dbias = sums of ds
        along each diagonal i - j.
    """
    s = _logits(q, k, scale, causal, bias, logit_scale)
    p = np.exp(s - lse[..., None])                            # (B, H, T, T)
    dv = np.matmul(p.swapaxes(-1, -2), dout)
    dp = np.matmul(dout, v.swapaxes(-1, -2))
    rowdot = np.sum(dout * out, axis=-1, keepdims=True)       # (B, H, T, 1)
    ds = p * (dp - rowdot)
    dbias = None
    if bias is not None:
        H, n_table = bias.shape
        T = q.shape[2]
        idx = _distance_index(T, n_table)
        ds_h = ds.sum(axis=0)                                 # (H, T, T)
        if causal:
            ds_h = np.tril(ds_h)                              # clipped j > i entries carry no gradient
        flat = (idx[None] + n_table * np.arange(H)[:, None, None]).ravel()
        dbias = np.bincount(flat, weights=ds_h.ravel(), minlength=H * n_table)
        dbias = dbias.reshape(H, n_table).astype(bias.dtype)
    mult = scale if logit_scale is None else scale * logit_scale.astype(q.dtype)[:, None]
    ds *= mult
    dq = np.matmul(ds, k)
    dk = np.matmul(ds.swapaxes(-1, -2), q)
    return dq, dk, dv, dbias
