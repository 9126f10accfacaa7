"""Multi-head self-attention: fused qkv projection, PE hooks, the attention kernel, output projection.

The positional encoding reaches attention through a PEContext built once per forward by the model:
the rotation hook is applied to q and k here, while the distance-bias table and the per-query logit
multipliers are handed to the kernel, which adds them on the fly (tinype.kernels).

Shape letters: B batch, T time, C model width, H heads, D = C / H head dim.
"""
import math
from typing import NamedTuple

import numpy as np

from . import kernels
from .layers import LinearCache, linear_backward, linear_forward


class PEContext(NamedTuple):
    """What attention needs from the positional encoding, shared by every layer of one forward."""
    pe: object                          # the PositionalEncoding (for its rotate hook)
    positions: np.ndarray               # (T,) float64
    bias: np.ndarray | None          # (H, T) or (H, 2T-1) table over distances, or None
    logit_scale: np.ndarray | None   # (T,) multiplier of query i's logits, or None
    causal: bool


class AttentionCache(NamedTuple):
    qkv: LinearCache
    q: np.ndarray                       # (B, H, T, D) after any rotation: what the kernel saw
    k: np.ndarray
    v: np.ndarray
    y: np.ndarray                       # (B, H, T, D) kernel output
    lse: np.ndarray                     # (B, H, T) row log-sum-exp, for the kernel's backward
    rot: object                         # the rotation hook's cache, or None
    proj: LinearCache


def self_attention_forward(x, w_qkv, b_qkv, w_proj, b_proj, n_head, ctx):
    """x: (B, T, C); w_qkv: (C, 3C); b_qkv: (3C,); w_proj: (C, C); b_proj: (C,). Returns (B, T, C)."""
    B, T, C = x.shape
    D = C // n_head
    qkv, qkv_cache = linear_forward(x, w_qkv, b_qkv)                    # (B, T, 3C)
    # (3, B, H, T, D) in one copy, contiguous once here, so neither the kernel's forward nor its
    # backward has to copy q, k or v again (each is a C-contiguous view of the copy)
    q, k, v = np.ascontiguousarray(qkv.reshape(B, T, 3, n_head, D).transpose(2, 0, 3, 1, 4))
    rot = ctx.pe.rotate(q, k, ctx.positions)
    rot_cache = None
    if rot is not None:
        (q, k), rot_cache = rot
    scale = 1.0 / math.sqrt(D)
    y, lse = kernels.attention_forward(q, k, v, scale, ctx.causal, ctx.bias, ctx.logit_scale)
    y2 = y.transpose(0, 2, 1, 3).reshape(B, T, C)                       # (B, T, C) heads side by side
    out, proj_cache = linear_forward(y2, w_proj, b_proj)
    return out, AttentionCache(qkv_cache, q, k, v, y, lse, rot_cache, proj_cache)


def self_attention_backward(dout, cache, n_head, ctx):
    """Returns dx, dw_qkv, db_qkv, dw_proj, db_proj, and dbias (the bias table's gradient, or None)."""
    B, T, C = dout.shape
    D = C // n_head
    dy2, dw_proj, db_proj = linear_backward(dout, cache.proj)
    dy = dy2.reshape(B, T, n_head, D).transpose(0, 2, 1, 3)            # (B, H, T, D)
    scale = 1.0 / math.sqrt(D)
    dq, dk, dv, dbias = kernels.attention_backward(
        dy, cache.q, cache.k, cache.v, cache.y, cache.lse, scale, ctx.causal, ctx.bias, ctx.logit_scale)
    if cache.rot is not None:
        dq, dk = ctx.pe.rotate_backward(dq, dk, cache.rot)
    # back to the qkv layout (B, T, 3, H, D) = (B, T, 3C): one pass that writes each gradient in place
    dqkv = np.empty((B, T, 3, n_head, D), dtype=dq.dtype)
    for j, d in enumerate((dq, dk, dv)):
        dqkv[:, :, j] = d.transpose(0, 2, 1, 3)
    dqkv = dqkv.reshape(B, T, 3 * C)
    dx, dw_qkv, db_qkv = linear_backward(dqkv, cache.qkv)
    return dx, dw_qkv, db_qkv, dw_proj, db_proj, dbias


class DecodeContext(NamedTuple):
    """What one incremental-decoding step needs from the PE, shared by every layer: the step reads
    the n new bytes at absolute positions t0..L-1 after L - n cached ones."""
    pe: object
    positions: np.ndarray               # (L,) positions of every byte, cached and new
    t0: int                             # bytes already cached
    rotated_cache: bool                 # the cache holds rotated keys (else unrotated, rotated per step)
    bias: np.ndarray | None          # prefill (t0 = 0): the (H, T) table or dense bias; later: the
                                        # (H, W >= L) table over distances, or a dense PE's (H, n, L) rows
    logit_scale: np.ndarray | None   # prefill: (T,); else (n,) the new queries' multipliers
    new_positions: np.ndarray | None = None   # positions[t0:], one array for every layer (so a
                                        # rotary encoding's table memo recognises it)


def self_attention_step(x, w_qkv, b_qkv, w_proj, b_proj, n_head, ctx, kv, layer):
    """Attention of n new bytes x (B, n, C) against the cached ones, storing their keys and values
    in kv (a tinype.kvcache.KVCache) for layer `layer`. Returns (B, n, C), equal (to float rounding)
    to the last n rows of self_attention_forward over the whole context."""
    B, n, C = x.shape
    D = C // n_head
    qkv = x.reshape(B * n, C) @ w_qkv                                   # (B n, 3C): one GEMM (a GEMV
    qkv += b_qkv                                                        # for one new byte)
    # (3, B, H, n, D), one copy; q, k, v are C-contiguous views of it
    q, k, v = np.ascontiguousarray(qkv.reshape(B, n, 3, n_head, D).transpose(2, 0, 3, 1, 4))
    t0, pos = ctx.t0, ctx.positions
    if ctx.rotated_cache:
        # position p turns the same way at any length: rotate only the new bytes, cache them rotated
        rot = ctx.pe.rotate(q, k, ctx.new_positions if ctx.new_positions is not None else pos[t0:])
        if rot is not None:
            (q, k), _ = rot
        keys, values = kv.write(layer, k, v)
    else:
        # a length-dependent rotation: cache keys as they are, rotate all of them at this length
        keys, values = kv.write(layer, k, v)
        q_all = np.zeros_like(keys)                                     # (B, H, L, D): only the new rows matter
        q_all[:, :, t0:] = q
        rot = ctx.pe.rotate(q_all, np.ascontiguousarray(keys), pos)
        if rot is not None:
            (q_all, keys), _ = rot
            q = np.ascontiguousarray(q_all[:, :, t0:])
    scale = 1.0 / math.sqrt(D)
    if t0 == 0:      # the prompt: the fused kernel, exactly as a full forward computes it
        y, _ = kernels.attention_forward(q, np.ascontiguousarray(keys), np.ascontiguousarray(values),
                                         scale, True, ctx.bias, ctx.logit_scale)
    else:            # new bytes against the cache: n rows of attention, O(n L)
        y = kernels.attention_decode(q, keys, values, scale, ctx.bias, ctx.logit_scale)
    out = y.transpose(0, 2, 1, 3).reshape(B * n, C) @ w_proj             # heads side by side, then
    out += b_proj                                                       # the output projection
    return out.reshape(B, n, C)
