"""The interface every positional encoding implements: four hooks, all off by default.

A PE can act in four places (see DESIGN.md); a subclass overrides the hooks it needs:
  1. embed      a (T, C) table added to the token embeddings     (sinusoidal, learned, ...)
  2. rotate     a transform of q and k before the dot product     (RoPE and its scalings, xPos)
  3. bias       a per-head table over distances i - j, added to the attention logits
                (ALiBi, T5, KERPLE, Sandwich); the attention kernel adds it on the fly
  4. logit_scale  a (T,) multiplier of each query's logits        (log-n scaling)
Every hook that depends on learned parameters has a backward returning their gradients as a dict
keyed like init_params. Parameters live in the model's dict under "pe.<name>"; the hooks receive
the PE's own sub-dict with the prefix stripped.

Writing your own (the public extension API; exercise 22 is a worked example):
    @tinype.positions.register("my_pe")          # or register("my_pe", MyPE) after the class
    class MyPE(tinype.positions.PositionalEncoding):
        def rotate(self, q, k, positions): ...   # override only the hooks you need, each with
        def rotate_backward(self, dq, dk, cache): ...   # its backward when it has one
    tinype.gradcheck.check_encoding("my_pe")     # every gradient, in one call
    tinype.ModelConfig(pe="my_pe")               # or pe="path/to/my_pe.py:MyPE" without registering
    tinype lab --pe my_pe   /   tinype lab --pe path/to/my_pe.py:MyPE
Options given to get(name, **options) reach __init__; setup(config) sees the model's dimensions
before init_params. A rotate hook receives q and k in the model's dtype and must return that dtype.

Shape letters: B batch, H heads, T time, D head dim, C model width.
"""
import numpy as np


class PositionalEncoding:
    """Base class: no positional information at all (every hook returns None)."""

    name = "base"
    #: the largest number of positions the PE can encode, or None when it has no limit
    max_positions = None
    #: True when rotate() turns position p the same way whatever the window's length, so that a key
    #: rotated once can be cached (plain RoPE). False (the safe default) makes incremental decoding
    #: cache keys before rotation and rotate them again at every step, as a length-dependent
    #: rotation needs (dynamic NTK; scalings whose factor is L / T_train; xPos's centring).
    length_independent_rotation = False

    def __init__(self, **options):
        if options:
            raise TypeError(f"{self.name} takes no options, got {sorted(options)}")

    def setup(self, config):
        """Bind the model's dimensions (called once by the model before init_params)."""
        self.d_model = config.d_model
        self.n_head = config.n_head
        self.head_dim = config.d_model // config.n_head
        self.T_train = config.T_train
        self.dtype = np.dtype(config.dtype)
        self.causal = config.causal

    def init_params(self, rng):
        """Learned parameters, {local name: array}. rng: np.random.Generator."""
        return {}

    def positions(self, T, train=False, rng=None):
        """(T,) float64 positions of a window; randomized PEs draw other ones during training."""
        return np.arange(T, dtype=np.float64)

    def check_length(self, T):
        """Raise a clear error when the PE cannot encode T positions."""

    # 1. added to the token embeddings
    def embed(self, params, positions):
        """Returns ((T, C) table, cache), or None when the PE adds nothing."""
        return None

    def embed_backward(self, params, dtable, cache):
        """dtable: (T, C), the gradient of the added table. Returns {local name: gradient}."""
        return {}

    # 2. rotating q and k
    def rotate(self, q, k, positions):
        """q, k: (B, H, T, D). Returns ((q', k'), cache), or None when the PE does not rotate."""
        return None

    def rotate_backward(self, dq, dk, cache):
        """Returns (dq, dk) with respect to the unrotated q and k."""
        raise NotImplementedError(f"{self.name} does not rotate q and k")

    # 3. a bias over distances added to the logits
    def bias(self, params, T, positions):
        """Returns ((H, T) or (H, 2T-1) table, cache), or None when the PE adds no bias."""
        return None

    def bias_backward(self, params, dtable, cache):
        """dtable: the gradient of the table, summed over layers. Returns {local name: gradient}."""
        return {}

    def bias_rows(self, params, t0, L, positions):
        """For a dense bias (one that depends on i as well as i - j, like FIRE): the rows of the
        queries at t0..L-1 against keys 0..L-1, (H, L - t0, L), for incremental decoding. This
        default slices bias(params, L, positions), O(L^2); a dense PE should compute only its rows
        (FIRE does). A bias over distances never needs it: decoding reads its table directly."""
        return self.bias(params, L, positions)[0][:, t0:L, :]

    # 4. scaling the logits of each query
    def logit_scale(self, positions):
        """Returns a (T,) multiplier of the logits of query i, or None."""
        return None

    def describe(self):
        """A one-line description for logs and tables."""
        return self.name

    def figure_data(self, T, params=None):
        """What this PE does to a window of T positions, ready to plot (the chapters use it).

        params: the PE's own parameters ({local name: array}; a trained model's, or fresh ones
        from init_params when None). Returns a dict with the keys that apply:
          "positions" (T,)   the positions used (evaluation mode)
          "table"     (T, C) the table added to the embeddings
          "cos", "sin" (T, D/2) the rotation angles' cosines and sines (amplitudes included)
          "bias"      (H, T) bias over distances 0..T-1 (causal), (H, 2T-1) two-sided, or dense (H, T, T)
          "logit_scale" (T,) the per-query multiplier
        """
        self.check_length(T)
        if params is None:
            params = self.init_params(np.random.default_rng(0))
        pos = self.positions(T)
        out = {"positions": pos}
        emb = self.embed(params, pos)
        if emb is not None:
            out["table"] = np.asarray(emb[0])
        # rotate unit vectors: channel pair k of e_a comes back as (cos, sin) of pair k's angle
        half = self.head_dim // 2
        basis = np.zeros((1, 1, T, self.head_dim), dtype=np.float64)
        if getattr(self, "interleaved", False):
            basis[..., 0::2] = 1.0
            first, second = slice(0, None, 2), slice(1, None, 2)
        else:
            basis[..., :half] = 1.0
            first, second = slice(0, half), slice(half, None)
        rot = self.rotate(basis, basis, pos)
        if rot is not None:
            q = rot[0][0]
            out["cos"], out["sin"] = q[0, 0][:, first], q[0, 0][:, second]
        bias = self.bias(params, T, pos)
        if bias is not None:
            out["bias"] = np.asarray(bias[0])
        scale = self.logit_scale(pos)
        if scale is not None:
            out["logit_scale"] = scale
        return out
