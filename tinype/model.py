"""The decoder-only Transformer language model, forward and backward by hand.

GPT-2 style: token embedding (+ the PE's table, if it adds one), n_layer pre-LN blocks
    x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))
a final LayerNorm, and the lm_head tied to the token embedding (logits = ln_f(x) @ wte^T).

Parameters are one flat dict of arrays; gradients() has the same keys:
    wte (V, C); pe.* (the PE's own); h{l}.ln_1.w/b (C,); h{l}.attn.w_qkv (C, 3C), b_qkv (3C,);
    h{l}.attn.w_proj (C, C), b_proj (C,); h{l}.ln_2.w/b; h{l}.mlp.w_fc (C, 4C), b_fc (4C,);
    h{l}.mlp.w_proj (4C, C), b_proj (C,); ln_f.w/b.
Weights are stored (C_in, C_out), so a layer is x @ w + b.

Shape letters: B batch, T time, C model width, V vocabulary, H heads.
"""
from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np

from . import positions as pe_registry
from .attention import DecodeContext, PEContext, self_attention_backward, self_attention_forward, self_attention_step
from .config import ModelConfig
from .kvcache import CacheInvalid, ContextLimit, KVCache
from .layers import (
    cross_entropy_backward,
    cross_entropy_forward,
    embedding_backward,
    embedding_forward,
    layernorm_backward,
    layernorm_forward,
    mlp_backward,
    mlp_forward,
)
from .reference import attention_logits


class BlockCache(NamedTuple):
    ln_1: object
    attn: object
    ln_2: object
    mlp: object


class ForwardCache(NamedTuple):
    ctx: PEContext
    emb: object                 # embedding cache
    pe_embed: object            # (the PE's embed cache,), or None when it adds no table
    pe_bias: object             # (the PE's bias cache,), or None when it adds no bias
    blocks: list
    ln_f: object
    hf: np.ndarray              # (B, T, C) final normalised activations, for dwte of the head
    ce: object                  # cross-entropy cache (None from forward())


class Transformer:
    """A causal byte-level language model. `Transformer(ModelConfig(pe="learned"), seed=0)`."""

    def __init__(self, config: ModelConfig | None = None, seed: int = 0) -> None:
        self.config = config if config is not None else ModelConfig()
        if not isinstance(self.config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(self.config).__name__}")
        self.pe = pe_registry.get(self.config.pe, **self.config.pe_options)
        self.pe.setup(self.config)
        self.params = self._init_params(np.random.default_rng(seed))
        self.grads = None
        self._cache = None

    # parameters ----------------------------------------------------------------------------------

    def _init_params(self, rng):
        cfg = self.config
        C, V, dt = cfg.d_model, cfg.vocab_size, np.dtype(cfg.dtype)
        std = 0.02
        std_proj = 0.02 / np.sqrt(2 * cfg.n_layer)           # residual projections, as GPT-2

        def normal(shape, s=std):
            return rng.normal(0.0, s, size=shape).astype(dt)

        p = {"wte": normal((V, C))}
        for name, value in self.pe.init_params(rng).items():
            p[f"pe.{name}"] = value.astype(dt)
        for l in range(cfg.n_layer):
            h = f"h{l}."
            p[h + "ln_1.w"] = np.ones(C, dt)
            p[h + "ln_1.b"] = np.zeros(C, dt)
            p[h + "attn.w_qkv"] = normal((C, 3 * C))
            p[h + "attn.b_qkv"] = np.zeros(3 * C, dt)
            p[h + "attn.w_proj"] = normal((C, C), std_proj)
            p[h + "attn.b_proj"] = np.zeros(C, dt)
            p[h + "ln_2.w"] = np.ones(C, dt)
            p[h + "ln_2.b"] = np.zeros(C, dt)
            p[h + "mlp.w_fc"] = normal((C, 4 * C))
            p[h + "mlp.b_fc"] = np.zeros(4 * C, dt)
            p[h + "mlp.w_proj"] = normal((4 * C, C), std_proj)
            p[h + "mlp.b_proj"] = np.zeros(C, dt)
        p["ln_f.w"] = np.ones(C, dt)
        p["ln_f.b"] = np.zeros(C, dt)
        return p

    def parameters(self) -> dict[str, np.ndarray]:
        """{name: array}, the live arrays (the optimizer updates them in place)."""
        return self.params

    def gradients(self) -> dict[str, np.ndarray]:
        """{name: gradient} with the keys of parameters(), from the last backward()."""
        if self.grads is None:
            raise RuntimeError("no gradients yet: call model.loss(idx, targets) then model.backward()")
        return self.grads

    def replica(self) -> Transformer:
        """Another model over the same parameter arrays (shared, not copied), with its own copy of
        the encoding object (whatever it is, with its memo tables) and its own forward cache and
        gradients: a data-parallel shard runs on it beside this one (tinype.parallel)."""
        twin = copy.copy(self)
        twin.pe = copy.deepcopy(self.pe)
        twin.grads = twin._cache = twin._trunk_cache = None
        return twin

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def load_parameters(self, params: dict[str, np.ndarray]) -> None:
        """Copy arrays into the model, checking names and shapes."""
        missing = set(self.params) - set(params)
        extra = set(params) - set(self.params)
        if missing or extra:
            raise ValueError(f"parameter names differ: missing {sorted(missing)}, unexpected {sorted(extra)}")
        for name, value in params.items():
            if np.shape(value) != self.params[name].shape:
                raise ValueError(f"parameter {name}: expected shape {self.params[name].shape}, "
                                 f"got {np.shape(value)}")
        for name, value in params.items():
            self.params[name][...] = value

    # forward / backward --------------------------------------------------------------------------

    def _check_idx(self, idx, what="idx", ignore=None):
        if not isinstance(idx, np.ndarray):
            idx = np.asarray(idx)
        if idx.ndim == 1:
            idx = idx[None, :]
        if idx.ndim != 2:
            raise ValueError(f"{what} must be (B, T) token ids, got shape {idx.shape}")
        if not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"{what} must hold integer token ids, got dtype {idx.dtype}")
        if idx.shape[1] < 1 or idx.shape[0] < 1:
            raise ValueError(f"{what} is empty: shape {idx.shape}")
        V = self.config.vocab_size
        low = 0 if ignore is None else ignore
        if idx.size and (idx.min() < low or idx.max() >= V):
            bad = idx[((idx < 0) & (idx != low)) | (idx >= V)].ravel()[0]
            raise ValueError(f"{what} holds token id {int(bad)}, outside 0..{V - 1}")
        return idx

    def _trunk(self, idx, pos=None, train=False, rng=None):
        """Embeddings, blocks and the final LayerNorm: hf (B, T, C) and the cache."""
        cfg, p = self.config, self.params
        B, T = idx.shape
        self.pe.check_length(T)
        if pos is None:
            pos = self.pe.positions(T, train=train, rng=rng)
        pe_params = self._pe_params()

        x, emb_cache = embedding_forward(idx, p["wte"])                  # (B, T, C)
        pe_embed = self.pe.embed(pe_params, pos)
        embed_cache = None
        if pe_embed is not None:
            table, embed_cache = pe_embed
            x = x + table                                                # (T, C) broadcast over B
        pe_bias = self.pe.bias(pe_params, T, pos)
        bias, bias_cache = pe_bias if pe_bias is not None else (None, None)
        ctx = PEContext(self.pe, pos, bias, self.pe.logit_scale(pos), cfg.causal)

        blocks = []
        for l in range(cfg.n_layer):
            h = f"h{l}."
            a_in, ln1 = layernorm_forward(x, p[h + "ln_1.w"], p[h + "ln_1.b"], cfg.ln_eps)
            a, attn = self_attention_forward(a_in, p[h + "attn.w_qkv"], p[h + "attn.b_qkv"],
                                             p[h + "attn.w_proj"], p[h + "attn.b_proj"], cfg.n_head, ctx)
            x = x + a
            m_in, ln2 = layernorm_forward(x, p[h + "ln_2.w"], p[h + "ln_2.b"], cfg.ln_eps)
            m, mlp = mlp_forward(m_in, p[h + "mlp.w_fc"], p[h + "mlp.b_fc"],
                                 p[h + "mlp.w_proj"], p[h + "mlp.b_proj"])
            x = x + m
            blocks.append(BlockCache(ln1, attn, ln2, mlp))
        hf, lnf = layernorm_forward(x, p["ln_f.w"], p["ln_f.b"], cfg.ln_eps)
        cache = ForwardCache(ctx, emb_cache,
                             (embed_cache,) if pe_embed is not None else None,
                             (bias_cache,) if pe_bias is not None else None,
                             blocks, lnf, hf, None)
        return hf, cache

    def _forward(self, idx, pos=None, train=False, rng=None):
        """Shared forward. Returns logits (B, T, V) and the cache (ce left None)."""
        hf, cache = self._trunk(idx, pos, train, rng)
        return hf @ self.params["wte"].T, cache                          # (B, T, V) tied lm_head

    def attention_maps(self, idx: np.ndarray) -> np.ndarray:
        """Attention probabilities (n_layer, B, H, T, T) for token ids idx (B, T), rebuilt from the
        kernel's row log-sum-exp. Dense T x T per head: for pictures of short windows, not for long
        evaluation."""
        idx = self._check_idx(idx)
        _, cache = self._trunk(idx)
        ctx, scale = cache.ctx, 1.0 / np.sqrt(self.config.head_dim)
        maps = []
        for block in cache.blocks:
            a = block.attn
            with np.errstate(under="ignore"):
                s = attention_logits(a.q, a.k, scale, ctx.causal, ctx.bias, ctx.logit_scale)
                maps.append(np.exp(s - a.lse[..., None]))              # masked logits are -inf: 0
        return np.stack(maps)

    def features(self, idx: np.ndarray, positions: np.ndarray | None = None, train: bool = False,
                 rng: np.random.Generator | None = None) -> np.ndarray:
        """The final normalised activations (B, T, C) that the lm_head reads (a classifier reads them
        too). Keeps the cache for trunk_backward()."""
        idx = self._check_idx(idx)
        hf, self._trunk_cache = self._trunk(idx, positions, train, rng)
        return hf

    def trunk_backward(self, dhf: np.ndarray) -> dict[str, np.ndarray]:
        """Gradients of every parameter given d(loss)/d(features) (B, T, C), after features()."""
        if getattr(self, "_trunk_cache", None) is None:
            raise RuntimeError("trunk_backward() needs features() first")
        self.grads = self._backward(dhf, self._trunk_cache, np.zeros_like(self.params["wte"]))
        return self.grads

    def forward(self, idx: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
        """Logits (B, T, V) for token ids idx (B, T); evaluation mode, keeps no state for backward."""
        idx = self._check_idx(idx)
        logits, _ = self._forward(idx, positions)
        return logits

    # incremental decoding ------------------------------------------------------------------------

    def new_cache(self, batch_size: int = 1, capacity: int = 256) -> KVCache:
        """An empty KVCache for decode(): per layer, keys and values of up to `capacity` bytes (it grows)."""
        cfg = self.config
        cache = KVCache(cfg.n_layer, batch_size, cfg.n_head, cfg.head_dim, np.dtype(cfg.dtype), capacity)
        probe = np.zeros((1, 1, 1, cfg.head_dim), dtype=cfg.dtype)
        rotates = self.pe.rotate(probe, probe, np.zeros(1)) is not None
        # keys can be cached rotated unless the rotation of a position changes with the length
        cache.rotated = not rotates or bool(self.pe.length_independent_rotation)
        bias = self.pe.bias(self._pe_params(), 1, np.zeros(1))
        cache.bias_kind = None if bias is None else ("dense" if bias[0].ndim == 3 else "table")
        return cache

    def _pe_params(self):
        """The PE's own parameters, {local name: array}: the "pe." entries with the prefix stripped."""
        return {k[3:]: v for k, v in self.params.items() if k.startswith("pe.")}

    def _decode_bias(self, cache, t0, L, pos):
        """The bias a decoding step hands to attention: the table over distances (computed once for
        the cache's capacity: a distance's entry does not depend on the window), or a dense PE's rows."""
        if cache.bias_kind == "dense":
            return self.pe.bias_rows(self._pe_params(), t0, L, pos)
        if cache.bias_table is None or cache.bias_table.shape[1] < L:
            W = cache.capacity
            cache.bias_table = self.pe.bias(self._pe_params(), W, np.arange(W, dtype=np.float64))[0]
        return cache.bias_table

    def decode(self, idx: np.ndarray, cache: KVCache) -> np.ndarray:
        """Logits (B, n, V) of n new token ids idx (B, n) that follow the cache's bytes; the cache
        then holds them too. The first call (an empty cache) reads the prompt with the same fused
        kernel as forward(); later calls cost one row of attention per new byte. The logits equal
        the last n rows of forward() over the whole context, to float rounding (tests hold them
        within 1e-5 in float32 for every encoding).

        Raises kvcache.ContextLimit when the encoding cannot encode the new length (learned
        positions past their table: generate() then slides a window), and kvcache.CacheInvalid when
        the encoding would give the cached bytes other positions at the new length (randomized
        positions drawn per length). Neither changes the cache.
        """
        idx = self._check_idx(idx)
        cfg, p = self.config, self.params
        B, n = idx.shape
        if B != cache.k[0].shape[0]:
            raise ValueError(f"this cache holds a batch of {cache.k[0].shape[0]}, got {B} rows")
        t0 = cache.length
        L = t0 + n
        try:
            self.pe.check_length(L)
        except ValueError as err:
            raise ContextLimit(str(err)) from None
        pos = self.pe.positions(L)
        if t0 and not np.array_equal(pos[:t0], cache.positions):
            raise CacheInvalid(f"{self.pe.name} gives the first {t0} bytes other positions at length {L}; "
                               "the cache cannot be extended (recompute the whole context)")
        pe_params = self._pe_params()
        x, _ = embedding_forward(idx, p["wte"])                          # (B, n, C)
        pe_embed = self.pe.embed(pe_params, pos[t0:])
        if pe_embed is not None:
            x = x + pe_embed[0]                                          # (n, C): the new positions' rows
        scale = self.pe.logit_scale(pos)
        cache.reserve(L)
        if t0 == 0:
            out = self.pe.bias(pe_params, L, pos)
            bias = out[0] if out is not None else None
        else:
            bias = self._decode_bias(cache, t0, L, pos) if cache.bias_kind else None
            scale = scale[t0:] if scale is not None else None
        ctx = DecodeContext(self.pe, pos, t0, cache.rotated, bias, scale, pos[t0:])
        for l in range(cfg.n_layer):
            h = f"h{l}."
            a_in, _ = layernorm_forward(x, p[h + "ln_1.w"], p[h + "ln_1.b"], cfg.ln_eps)
            x = x + self_attention_step(a_in, p[h + "attn.w_qkv"], p[h + "attn.b_qkv"], p[h + "attn.w_proj"],
                                        p[h + "attn.b_proj"], cfg.n_head, ctx, cache, l)
            m_in, _ = layernorm_forward(x, p[h + "ln_2.w"], p[h + "ln_2.b"], cfg.ln_eps)
            m, _ = mlp_forward(m_in, p[h + "mlp.w_fc"], p[h + "mlp.b_fc"], p[h + "mlp.w_proj"], p[h + "mlp.b_proj"])
            x = x + m
        cache.length, cache.positions = L, pos
        hf, _ = layernorm_forward(x, p["ln_f.w"], p["ln_f.b"], cfg.ln_eps)
        return hf @ p["wte"].T                                           # (B, n, V)

    def loss(self, idx: np.ndarray, targets: np.ndarray, train: bool = False, rng: np.random.Generator | None = None,
             positions: np.ndarray | None = None) -> float:
        """Mean cross-entropy (nats per token) of next-token targets (B, T); ready for backward().

        Targets of -1 do not count (a task grades only its answer). train=True lets a randomized PE
        draw its training positions from rng.
        """
        idx = self._check_idx(idx)
        targets = self._check_idx(targets, "targets", ignore=-1)
        if targets.shape != idx.shape:
            raise ValueError(f"targets shape {targets.shape} differs from idx shape {idx.shape}")
        logits, cache = self._forward(idx, positions, train=train, rng=rng)
        B, T, V = logits.shape
        loss, ce = cross_entropy_forward(logits.reshape(B * T, V), targets.reshape(B * T))
        self._cache = cache._replace(ce=ce)
        return float(loss)

    def backward(self) -> dict[str, np.ndarray]:
        """Gradients of the last loss() with respect to every parameter (see gradients())."""
        if self._cache is None:
            raise RuntimeError("backward() needs a loss(): call model.loss(idx, targets) first")
        p, c = self.params, self._cache
        B, T, C = c.hf.shape
        dlogits = cross_entropy_backward(1.0, c.ce)                      # (B*T, V)
        # in the forward pass this was: logits = hf @ wte^T
        hf2 = c.hf.reshape(B * T, C)
        dwte = dlogits.T @ hf2                                           # (V, C) from the head
        dhf = (dlogits @ p["wte"]).reshape(B, T, C)
        self.grads = self._backward(dhf, c, dwte)
        return self.grads

    def _backward(self, dhf, c, dwte):
        """Backward from the final activations; dwte: the head's share of wte's gradient."""
        cfg, p = self.config, self.params
        g = {}
        dx, g["ln_f.w"], g["ln_f.b"] = layernorm_backward(dhf, c.ln_f)
        dbias_total = None
        for l in reversed(range(cfg.n_layer)):
            h, bc = f"h{l}.", c.blocks[l]
            # x = x + mlp(ln_2(x)): the residual passes dx through, the branch adds its own
            dm_in, g[h + "mlp.w_fc"], g[h + "mlp.b_fc"], g[h + "mlp.w_proj"], g[h + "mlp.b_proj"] = \
                mlp_backward(dx, bc.mlp)
            d, g[h + "ln_2.w"], g[h + "ln_2.b"] = layernorm_backward(dm_in, bc.ln_2)
            dx = dx + d
            # x = x + attn(ln_1(x))
            da_in, g[h + "attn.w_qkv"], g[h + "attn.b_qkv"], g[h + "attn.w_proj"], g[h + "attn.b_proj"], \
                dbias = self_attention_backward(dx, bc.attn, cfg.n_head, c.ctx)
            if dbias is not None:                                        # one table shared by layers
                dbias_total = dbias if dbias_total is None else dbias_total + dbias
            d, g[h + "ln_1.w"], g[h + "ln_1.b"] = layernorm_backward(da_in, bc.ln_1)
            dx = dx + d
        pe_params = self._pe_params()
        pe_grads = {}
        if c.pe_embed is not None:                                      # x = wte[idx] + table
            pe_grads.update(self.pe.embed_backward(pe_params, dx.sum(axis=0), c.pe_embed[0]))
        if dbias_total is not None:
            for name, grad in self.pe.bias_backward(pe_params, dbias_total, c.pe_bias[0]).items():
                pe_grads[name] = pe_grads.get(name, 0) + grad
        g["wte"] = dwte + embedding_backward(dx, c.emb)
        for name in pe_params:
            g[f"pe.{name}"] = pe_grads.get(name, np.zeros_like(pe_params[name]))
        return {name: g[name] for name in p}                             # the order of parameters()
