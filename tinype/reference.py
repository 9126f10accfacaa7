"""NumPy references of tinype's kernels: the readable specification.

Every function here has a compiled twin of the same name and signature in tinype._ext (where the
kernel has been written) and tinype.kernels picks one of the two. The tests hold them equal, so
when in doubt about what a kernel computes, read it here.

Shape letters: B batch, H heads, T time, D head dim, N positions, C channels.
"""
import math
from functools import lru_cache

import numpy as np


def sinusoidal_table(positions, dim, base=10000.0):
    """The sinusoidal table of Vaswani et al. (2017), interleaved, at any real positions.

        PE[p, 2i]   = sin(p / base^(2i/dim))
        PE[p, 2i+1] = cos(p / base^(2i/dim))

    positions: (N,) float32 or float64. Returns (N, dim) in the dtype of `positions`.
    Angles are formed in float64 whatever the dtype (a float32 angle at p = 4096 is off by ~1e-3).
    """
    positions = np.asarray(positions)
    if positions.dtype != np.float32:                         # integer positions give a float64 table
        positions = positions.astype(np.float64)
    i2 = np.arange(0, dim, 2, dtype=np.float64)               # the even channel indices 2i
    inv_freq = base ** (-i2 / dim)                            # (ceil(dim/2),)
    angles = positions.astype(np.float64)[:, None] * inv_freq  # (N, ceil(dim/2))
    out = np.empty((positions.shape[0], dim), dtype=positions.dtype)
    out[:, 0::2] = np.sin(angles)
    out[:, 1::2] = np.cos(angles[:, : dim // 2])             # an odd dim has no last cosine
    return out


def table_distances(T, causal):
    """The distances i - j a bias table is indexed by: 0..T-1 (causal) or -(T-1)..T-1 (two-sided)."""
    return np.arange(T, dtype=np.float64) if causal else np.arange(-(T - 1), T, dtype=np.float64)


def alibi_table(slopes, T, causal):
    """ALiBi's bias over distances: table[h, d] = -slopes[h] |d|. (H, T) or (H, 2T-1), slopes' dtype."""
    d = np.abs(table_distances(T, causal))
    return (-slopes.astype(np.float64)[:, None] * d[None, :]).astype(slopes.dtype)


def _kerple_kernel(d, r2, power):
    """g(d) and dg/dr2 for KERPLE: ln(1 + r2 d) (logarithmic) or d^r2 (power); d >= 0."""
    if not power:
        return np.log1p(r2 * d), d / (1.0 + r2 * d)
    g = d ** r2
    with np.errstate(divide="ignore"):
        dg = np.where(d > 0, g * np.log(np.where(d > 0, d, 1.0)), 0.0)      # d/dr2 d^r2 = d^r2 ln d
    return g, dg


def kerple_table(r1, r2, T, causal, power):
    """KERPLE's bias over distances: table[h, d] = -r1[h] g(|d|; r2[h]), g = ln(1 + r2 d) or d^r2.

    r1, r2: (H,) parameters as used (already floored). Computed in float64, returned in r1's dtype.
    """
    d = np.abs(table_distances(T, causal))[None, :]
    g, _ = _kerple_kernel(d, r2.astype(np.float64)[:, None], power)
    return (-r1.astype(np.float64)[:, None] * g).astype(r1.dtype)


def kerple_table_backward(dtable, r1, r2, T, causal, power):
    """Gradients of sum(dtable * kerple_table(r1, r2, ...)) with respect to r1 and r2: (H,) each."""
    d = np.abs(table_distances(T, causal))[None, :]
    g, dg = _kerple_kernel(d, r2.astype(np.float64)[:, None], power)
    dt = dtable.astype(np.float64)
    dr1 = -(dt * g).sum(axis=1)
    dr2 = -r1.astype(np.float64) * (dt * dg).sum(axis=1)
    return dr1.astype(r1.dtype), dr2.astype(r1.dtype)


def sandwich_table(head_scale, dim, T, causal):
    """Sandwich's bias over distances: the inner product of the sinusoidal vectors at i and j minus
    its value at i = j, per head divided by head_scale[h]:

        table[h, d] = (sum_{k=1..dim/2} cos(d / 10000^(2k/dim)) - dim/2) / head_scale[h]

    (H,) head_scale; returns (H, T) or (H, 2T-1) in its dtype."""
    d = table_distances(T, causal)
    inv_freq = 1.0 / 10000 ** (2 * np.arange(1, dim // 2 + 1, dtype=np.float64) / dim)
    inner = np.cos(d[:, None] * inv_freq[None, :]).sum(axis=1) - dim / 2     # (n_table,) <= 0
    return (inner[None, :] / head_scale.astype(np.float64)[:, None]).astype(head_scale.dtype)


def bucket_table(values, buckets):
    """A learned bias per bucket of distance (T5): table[h, d] = values[buckets[d], h].

    values: (n_buckets, H) float; buckets: (n_table,) int64. Returns (H, n_table) in values' dtype."""
    return np.ascontiguousarray(values[buckets].T)


def bucket_table_backward(dtable, buckets, n_buckets):
    """The gradient of values in bucket_table: dvalues[b, h] = sum of dtable[h, d] over d in bucket b."""
    grad = np.zeros((n_buckets, dtable.shape[0]), dtype=dtable.dtype)
    np.add.at(grad, buckets, dtable.T)
    return grad


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
def _causal_mask(T, dtype):
    """(T, T) additive mask in `dtype`: 0 where j <= i, -inf above the diagonal."""
    mask = np.triu(np.full((T, T), -np.inf, dtype=dtype), k=1)
    mask.setflags(write=False)
    return mask


def _logits(q, k, scale, causal, bias, logit_scale):
    """s[b,h,i,j] = logit_scale[i] * scale * (q_i . k_j) + bias[h, i - j], masked if causal."""
    T = q.shape[2]
    s = np.matmul(q, k.swapaxes(-1, -2))                      # (B, H, T, T)
    mult = scale if logit_scale is None else scale * logit_scale.astype(q.dtype)[:, None]
    s *= mult
    if bias is not None:
        if bias.ndim == 3:
            s += bias                                         # dense (H, T, T): FIRE
        else:
            s += bias[:, _distance_index(T, bias.shape[1])]  # (H, T, T) broadcast over B
    if causal:
        s += _causal_mask(T, q.dtype.str)
    return s


def attention_forward(q, k, v, scale, causal=True, bias=None, logit_scale=None):
    """Softmax attention with an optional bias over distances and per-query logit multipliers.

        s[b,h,i,j] = logit_scale[i] * scale * q[b,h,i] . k[b,h,j] + bias[h, i - j]
        p = softmax_j(s)  (j <= i when causal);   out[b,h,i] = sum_j p[b,h,i,j] v[b,h,j]

    q, k, v: (B, H, T, D).  bias: None, (H, T) causal table, (H, 2T-1) two-sided table, or a dense
    (H, T, T) bias (FIRE, whose bias depends on i as well as i - j).
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


def attention_decode(q, k, v, scale, bias=None, logit_scale=None):
    """Attention of the n newest queries against every cached key (incremental decoding).

        s[b,h,a,j] = logit_scale[a] * scale * q[b,h,a] . k[b,h,j] + bias,   j <= t0 + a
        out[b,h,a] = sum_j softmax_j(s)[b,h,a,j] v[b,h,j]

    q: (B, H, n, D), the queries at absolute positions t0..L-1 with t0 = L - n; k, v: (B, H, L, D),
    every key and value read so far (the new ones last). bias: None; a causal table over distances
    (H, W) with W >= L, whose entry d is the bias of i - j = d (query t0 + a reads entries t0 + a - j);
    or dense rows (H, n, L) (FIRE). logit_scale: None or (n,). Query a sees keys 0..t0+a. Returns
    out (B, H, n, D). Work and memory are O(n L), not O(L^2): one new byte costs one row.
    """
    n, L = q.shape[2], k.shape[2]
    s = np.matmul(q, k.swapaxes(-1, -2))                      # (B, H, n, L)
    mult = scale if logit_scale is None else scale * logit_scale.astype(q.dtype)[:, None]
    s *= mult
    dist = (L - n + np.arange(n))[:, None] - np.arange(L)[None, :]             # (n, L): i - j
    if bias is not None:
        if bias.ndim == 3:
            s += bias                                         # dense rows (H, n, L)
        else:
            s += bias[:, np.maximum(dist, 0)]                 # (H, n, L) gathered from the table
    if n > 1:                                                 # the new queries must not see each other's future
        s = np.where(dist < 0, np.array(-np.inf, dtype=s.dtype), s)
    m = s.max(axis=-1, keepdims=True)
    p = np.exp(s - m)
    p /= p.sum(axis=-1, keepdims=True)
    return np.matmul(p, v)                                    # (B, H, n, D)


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
        ds_h = ds.sum(axis=0)                                 # (H, T, T)
        if causal:
            ds_h = np.tril(ds_h)                              # clipped j > i entries carry no gradient
    if bias is not None and bias.ndim == 3:
        dbias = ds_h.astype(bias.dtype)
    elif bias is not None:
        H, n_table = bias.shape
        T = q.shape[2]
        idx = _distance_index(T, n_table)
        flat = (idx[None] + n_table * np.arange(H)[:, None, None]).ravel()
        dbias = np.bincount(flat, weights=ds_h.ravel(), minlength=H * n_table)
        dbias = dbias.reshape(H, n_table).astype(bias.dtype)
    mult = scale if logit_scale is None else scale * logit_scale.astype(q.dtype)[:, None]
    ds *= mult
    dq = np.matmul(ds, k)
    dk = np.matmul(ds.swapaxes(-1, -2), q)
    return dq, dk, dv, dbias


# Layer kernels (twins of pyx/layers.pxi) ------------------------------------------------------------

GELU_K = math.sqrt(2.0 / math.pi)   # a Python float: np.float64 would promote float32 arrays


def gelu_forward(x):
    """out = 0.5 x (1 + t), t = tanh(sqrt(2/pi) (x + 0.044715 x^3)). Returns (out, t)."""
    t = np.tanh(GELU_K * (x + 0.044715 * x * x * x))
    return 0.5 * x * (1.0 + t), t


def gelu_backward(dout, x, t):
    """d/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)."""
    dudx = GELU_K * (1.0 + 3 * 0.044715 * x * x)
    return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dudx)


def layernorm_forward(x, w, b, eps=1e-5):
    """x: (N, C). out = xhat * w + b, xhat = (x - mean) * rstd, rstd = 1/sqrt(var + eps) (biased var).
    Returns out (N, C), xhat (N, C), rstd (N,).
    The mean and variance are accumulated in float64 whatever the dtype (x^2 of a float32 1e20
    would overflow), then rounded to x's dtype, as the compiled kernel does."""
    x64 = x.astype(np.float64)
    mean64 = x64.mean(axis=-1, keepdims=True)
    var64 = np.mean((x64 - mean64) ** 2, axis=-1, keepdims=True)
    mean, rstd = mean64.astype(x.dtype), (1.0 / np.sqrt(var64 + eps)).astype(x.dtype)
    xhat = (x - mean) * rstd
    return xhat * w + b, xhat, rstd[:, 0]


def layernorm_backward(dout, xhat, rstd, w):
    """dxhat = dout * w;  dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)).
    Returns dx (N, C), dw (C,), db (C,)."""
    dxhat = dout * w
    dx = rstd[:, None] * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                          - xhat * np.mean(dxhat * xhat, axis=-1, keepdims=True))
    return dx, np.sum(dout * xhat, axis=0), dout.sum(axis=0)


def softmax_cross_entropy(logits, targets, weights):
    """Weighted softmax cross-entropy, forward and backward together.

    logits: (N, V); targets: (N,) int64; weights: (N,).
    nll[n] = logsumexp(logits[n]) - logits[n, targets[n]]            (float64)
    dlogits[n] = (softmax(logits[n]) - onehot(targets[n])) * weights[n]
    """
    N = logits.shape[0]
    z = logits - logits.max(axis=-1, keepdims=True)       # the max first: +-1e4 logits stay finite
    lse = np.log(np.exp(z).sum(axis=-1, keepdims=True))   # (N, 1)
    nll = (lse[:, 0] - z[np.arange(N), targets]).astype(np.float64)
    dlogits = np.exp(z - lse)
    dlogits[np.arange(N), targets] -= 1.0
    dlogits *= weights[:, None]
    return nll, dlogits


def embedding_backward(idx, dout, vocab_size):
    """dwte[idx[n]] += dout[n]. idx: (N,) int64; dout: (N, C). Returns dwte (V, C)."""
    dwte = np.zeros((vocab_size, dout.shape[1]), dtype=dout.dtype)
    np.add.at(dwte, idx, dout)
    return dwte


# Rotary (twin of the kernels issue's rotary kernel) ----------------------------------------------------

def apply_rotary(x, cos, sin, interleaved=False):
    """Rotate channel pairs of x by the angles whose cos/sin are given (amplitudes included).

    x: (..., T, D); cos, sin: (T, D/2), one angle per pair k.
      rotate-half layout (Hugging Face): pair k is (x[k], x[k + D/2])
      interleaved layout (RoFormer paper): pair k is (x[2k], x[2k+1])
    y_a = x_a cos - x_b sin,  y_b = x_b cos + x_a sin.
    The transposed rotation, the backward, is apply_rotary(dy, cos, -sin).
    """
    half = x.shape[-1] // 2
    if interleaved:
        a, b = x[..., 0::2], x[..., 1::2]
    else:
        a, b = x[..., :half], x[..., half:]
    ya = a * cos - b * sin
    yb = b * cos + a * sin
    out = np.empty_like(x)
    if interleaved:
        out[..., 0::2], out[..., 1::2] = ya, yb
    else:
        out[..., :half], out[..., half:] = ya, yb
    return out


attention_logits = _logits          # public name: the model's attention_maps() rebuilds p from it
