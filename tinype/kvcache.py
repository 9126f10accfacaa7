"""The keys and values of the bytes read so far, per layer, for incremental decoding.

Without a cache, generating byte L+1 recomputes attention over all L bytes in every layer, so a
byte costs O(L^2) and a whole text O(L^3). With it, each layer keeps its keys and values, and a new
byte costs one query against them: O(L) per byte. What is cached depends on the encoding:
- keys after rotation when the encoding rotates position p the same way at every length (plain
  RoPE); before rotation otherwise (dynamic NTK, scalings by L / T_train, xPos), and rotated again
  at every step. Caching rotated keys under dynamic NTK is transformers' issue #25104: the base
  changes with the length, and old keys keep the old one.
- the positions the encoding gave the context: if the encoding gives the first t0 bytes other
  positions once a byte is added (randomized positions drawn per length), the cache is no longer
  valid and decoding says so (CacheInvalid) instead of returning numbers under the wrong positions.

Shape letters: B batch, H heads, L bytes cached, D head dim.
"""
import numpy as np


class CacheInvalid(ValueError):
    """The encoding cannot extend this cache (its positions for the cached bytes changed)."""


class ContextLimit(ValueError):
    """The encoding cannot encode the new length at all (learned positions past their table)."""


class KVCache:
    """Per-layer key and value buffers (B, H, capacity, D) that grow by doubling; .length bytes are valid."""

    def __init__(self, n_layer, batch_size, n_head, head_dim, dtype, capacity=256):
        shape = (batch_size, n_head, max(1, int(capacity)), head_dim)
        self.k = [np.empty(shape, dtype) for _ in range(n_layer)]
        self.v = [np.empty(shape, dtype) for _ in range(n_layer)]
        self.length = 0
        self.positions = np.zeros(0)                   # (length,) the positions the cached bytes got
        self.rotated = True                            # keys stored after rotation (set by the model)
        self.bias_kind = None                          # None, "table" (over distances) or "dense"
        self.bias_table = None                         # (H, W) the table over distances, W >= length

    @property
    def capacity(self):
        return self.k[0].shape[2]

    def reserve(self, L):
        """Make room for L bytes in every layer (copying what is cached into buffers twice as long)."""
        if L <= self.capacity:
            return
        cap = self.capacity
        while cap < L:
            cap *= 2
        for bufs in (self.k, self.v):
            for l, old in enumerate(bufs):
                new = np.empty(old.shape[:2] + (cap,) + old.shape[3:], old.dtype)
                new[:, :, :self.length] = old[:, :, :self.length]
                bufs[l] = new

    def write(self, layer, k, v):
        """Store the new keys and values (B, H, n, D) of one layer after the cached ones; returns
        views (B, H, length + n, D) of everything cached in that layer, the new ones included."""
        t0, n = self.length, k.shape[2]
        self.k[layer][:, :, t0:t0 + n] = k
        self.v[layer][:, :, t0:t0 + n] = v
        return self.k[layer][:, :, :t0 + n], self.v[layer][:, :, :t0 + n]
