"""The exercises' switch: make tinype call a learner's own pieces instead of its own.

    report = tinype.use_exercises("chapters/exercises")    # your finished pieces, from now on
    print(report)                                          # which pieces are yours, which tinype's
    tinype.use_exercises(None)                             # tinype's own again
    with tinype.use_exercises("my_folder"):                # ... or only inside a block
        model.loss(x, y)
    TINYPE_EXERCISES=my_folder python train.py             # the same, read when tinype is imported

A piece is the learner's function in FOLDER/exNN_<name>.py (e.g. ex12_softmax_backward.py). It is
used when it is *finished*: called once on a tiny input, it returns without raising
NotImplementedError. An unfinished piece stays tinype's own; a piece that raises anything else is
reported (with its error) and stays tinype's own too.

How it plugs in: this module is the only place that knows. It replaces attributes at the layer /
kernel boundary (tinype.kernels.attention_forward, tinype.layers.gelu_backward, Rotary.rotate,
AdamW.step, ...) with adapters that call the learner's functions and convert between tinype's
internal forms (fused kernels, tables over distances, caches) and the plain dense forms the
exercises ask for. The adapters give the same numbers as tinype's own code when the pieces are
right (tests/test_exercises_switch.py holds them to it), only slower: the learner's attention is
dense (T x T), tinype's kernel is not.

The capstone (exercise 21): compare_training(folder) trains the quick model with tinype's pieces and
with the learner's, plots both loss curves, and names the first piece that differs.

Shape letters: B batch, H heads, T time, D head dim, C model width.
"""
import glob
import importlib.util
import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from . import attention as attention_mod
from . import kernels, layers, optim, positions, reference
from . import model as model_mod
from .positions import alibi as alibi_mod
from .positions import logn as logn_mod
from .positions import rope as rope_mod
from .positions import t5 as t5_mod

# Loading the learner's files ---------------------------------------------------------------------

def _load(folder, stem):
    """The module FOLDER/<exNN>_<stem>.py (any number), or None when there is no such file."""
    hits = sorted(glob.glob(os.path.join(folder, f"ex[0-9][0-9]_{stem}.py")))
    if not hits:
        return None
    path = hits[0]
    name = f"_tinype_exercise_{abs(hash(os.path.abspath(path)))}_{stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)             # a learner's file may import a sibling exercise
    try:
        spec.loader.exec_module(module)
    finally:
        if added:
            sys.path.remove(folder)
    return module


# The pieces: (file stem, function, a tiny probe call) --------------------------------------------

def _r(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


_PROBES = {
    "sinusoidal_table": lambda f: f(np.arange(3.0), 4),
    "alibi_slopes": lambda f: f(4),
    "logn_factor": lambda f: f(4, 2),
    "t5_bucket": lambda f: f(np.arange(-3, 4), False, 8, 16),
    "apply_rope": lambda f: f(_r(3, 4), np.arange(3.0), np.array([1.0, 0.1])),
    "rope_backward": lambda f: f(_r(3, 4), np.arange(3.0), np.array([1.0, 0.1])),
    "ntk_base": lambda f: f(10000.0, 8, 2.0),
    "llama3_inv_freq": lambda f: f(np.array([1.0, 0.1, 0.01, 0.001]), 4.0, 64),
    "linear_backward": lambda f: f(_r(2, 3), _r(2, 4), _r(4, 3)),
    "gelu_backward": lambda f: f(_r(3), _r(3)),
    "softmax_backward": lambda f: f(_r(2, 3), np.full((2, 3), 1 / 3)),
    "layernorm_forward": lambda f: f(_r(2, 4), np.ones(4), np.zeros(4)),
    "layernorm_backward": lambda f: f(_r(2, 4), _r(2, 4), np.ones(4)),
    "attention_forward": lambda f: f(_r(1, 3, 2), _r(1, 3, 2), _r(1, 3, 2)),
    "attention_backward": lambda f: f(_r(1, 3, 2), _r(1, 3, 2), _r(1, 3, 2), _r(1, 3, 2)),
    "cross_entropy_backward": lambda f: f(_r(2, 3), np.array([0, 2])),
    "adamw_step": lambda f: f(_r(3), _r(3), np.zeros(3), np.zeros(3), 1, 0.01),
}

#: piece -> (file stem without its number, function name)
PIECES = {
    "sinusoidal_table": ("sinusoidal_table", "sinusoidal_table"),
    "alibi_slopes": ("alibi_slopes", "alibi_slopes"),
    "logn_factor": ("logn_factor", "logn_factor"),
    "t5_bucket": ("t5_bucket", "t5_bucket"),
    "apply_rope": ("apply_rope", "apply_rope"),
    "rope_backward": ("rope_backward", "rope_backward"),
    "ntk_base": ("ntk_base", "ntk_base"),
    "llama3_inv_freq": ("llama3_inv_freq", "llama3_inv_freq"),
    "linear_backward": ("linear_backward", "linear_backward"),
    "gelu_backward": ("gelu_backward", "gelu_backward"),
    "softmax_backward": ("softmax_backward", "softmax_backward"),
    "layernorm_forward": ("layernorm_forward", "layernorm_forward"),
    "layernorm_backward": ("layernorm_backward", "layernorm_backward"),
    "attention_forward": ("attention_forward", "attention_forward"),
    "attention_backward": ("attention_backward", "attention_backward"),
    "cross_entropy_backward": ("cross_entropy_backward", "cross_entropy_backward"),
    "adamw_step": ("adamw_step", "adamw_step"),
}

#: graded exercises that have no place in the model (they are checked on their own)
STANDALONE = ("interpolate_positions", "nonoverlap_perplexity", "lstm_step")


@dataclass
class ExercisesReport:
    """What use_exercises did. Also a context manager that restores the state before it."""
    folder: object
    yours: list = field(default_factory=list)          # pieces now served by the learner's code
    unfinished: list = field(default_factory=list)     # raise NotImplementedError: tinype's own
    missing: list = field(default_factory=list)        # no file: tinype's own
    broken: dict = field(default_factory=dict)         # piece -> the error its probe raised
    encodings: list = field(default_factory=list)      # PE names the folder registered
    _previous: object = None

    def __str__(self):
        if self.folder is None:
            return "tinype uses its own pieces (no exercises folder)"
        lines = [f"tinype uses your pieces from {self.folder}:",
                 f"  yours ({len(self.yours)}): {', '.join(self.yours) or 'none yet'}",
                 f"  not done yet, tinype's own ({len(self.unfinished)}): {', '.join(self.unfinished) or 'none'}"]
        if self.missing:
            lines.append(f"  no file, tinype's own: {', '.join(self.missing)}")
        for piece, err in self.broken.items():
            lines.append(f"  {piece}: your function raised {err}; tinype's own is used until it runs")
        if self.encodings:
            lines.append(f"  positional encodings you registered: {', '.join(self.encodings)}")
        return "\n".join(lines)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _restore_report(self._previous if self._previous is not None else ExercisesReport(None))
        return False


_ORIGINALS = {}          # (object, attribute) -> tinype's own value, saved before the first patch
_CURRENT = ExercisesReport(None)


def _patch(obj, attr, value):
    key = (obj, attr)
    if key not in _ORIGINALS:
        _ORIGINALS[key] = obj.__dict__[attr] if isinstance(obj, type) else getattr(obj, attr)
    setattr(obj, attr, value)


def _own(obj, attr):
    """tinype's own value of a patched attribute (the current one when it is not patched)."""
    return _ORIGINALS.get((obj, attr), obj.__dict__[attr] if isinstance(obj, type) else getattr(obj, attr))


def _restore():
    for (obj, attr), value in _ORIGINALS.items():
        setattr(obj, attr, value)
    _ORIGINALS.clear()
    # tables that Rotary memoises were computed by whichever code was active
    rope_mod.Rotary._memo = None


def current():
    """The report of the switch as it stands."""
    return _CURRENT


def use_exercises(folder, pieces=None, quiet=True):
    """Make tinype call the finished pieces in `folder` (None: tinype's own everywhere).

    pieces: only these piece names (default: every finished one); see PIECES.
    Returns an ExercisesReport, which is also a context manager restoring the previous state.
    """
    global _CURRENT
    previous = _CURRENT
    _restore()
    if folder is None:
        _CURRENT = ExercisesReport(None, _previous=previous)
        return _CURRENT
    folder = os.path.abspath(os.fspath(folder))
    if not os.path.isdir(folder):
        raise ValueError(f"use_exercises: no folder {folder}")
    if pieces is not None:
        unknown = sorted(set(pieces) - set(PIECES))
        if unknown:
            raise ValueError(f"use_exercises: unknown pieces {unknown}; known: {', '.join(PIECES)}")
    report = ExercisesReport(folder, _previous=previous)
    fns = {}
    modules = {}
    for piece, (stem, fname) in PIECES.items():
        if pieces is not None and piece not in pieces:
            continue
        if stem not in modules:
            try:
                modules[stem] = _load(folder, stem)
            except Exception as err:                     # a syntax error in the learner's file
                report.broken[piece] = f"{type(err).__name__} on import: {err}"
                modules[stem] = None
                continue
        module = modules[stem]
        fn = getattr(module, fname, None) if module is not None else None
        if fn is None:
            report.missing.append(piece)
            continue
        try:
            with np.errstate(all="ignore"):
                _PROBES[piece](fn)
        except NotImplementedError:
            report.unfinished.append(piece)
            continue
        except Exception as err:
            report.broken[piece] = f"{type(err).__name__}: {err}"
            continue
        fns[piece] = fn
        report.yours.append(piece)
    _install(fns)
    before = set(positions.available())
    try:
        _load(folder, "your_own_encoding")              # its decorator registers the learner's PE
    except Exception as err:
        report.broken["your_own_encoding"] = f"{type(err).__name__} on import: {err}"
    report.encodings = sorted(set(positions.available()) - before)
    _CURRENT = report
    if not quiet:
        print(report, file=sys.stderr)
    return report


# Adapters ----------------------------------------------------------------------------------------

def _like(a, ref):
    return np.asarray(a, dtype=ref.dtype)


def _install(fns):
    if "sinusoidal_table" in fns:
        f_sinusoidal_table = fns["sinusoidal_table"]

        def sinusoidal_table(positions_, dim, base=10000.0):
            p = np.asarray(positions_)
            dt = np.float32 if p.dtype == np.float32 else np.float64
            return np.ascontiguousarray(f_sinusoidal_table(p.astype(np.float64), int(dim), base=float(base)), dtype=dt)
        _patch(kernels, "sinusoidal_table", sinusoidal_table)
        _patch(positions, "sinusoidal_table", sinusoidal_table)

    if "alibi_slopes" in fns:
        f_alibi_slopes = fns["alibi_slopes"]

        def alibi_slopes(n_heads):
            return np.asarray(f_alibi_slopes(int(n_heads)), dtype=np.float64)
        _patch(alibi_mod, "alibi_slopes", alibi_slopes)
        _patch(positions, "alibi_slopes", alibi_slopes)

    if "logn_factor" in fns:
        f_logn_factor = fns["logn_factor"]

        def logn_scale(T, T_train):
            return np.asarray(f_logn_factor(int(T), int(T_train)), dtype=np.float64)
        _patch(logn_mod, "logn_scale", logn_scale)
        _patch(positions, "logn_scale", logn_scale)

    if "t5_bucket" in fns:
        f_t5_bucket = fns["t5_bucket"]

        def t5_relative_bucket(relative_position, bidirectional, num_buckets=32, max_distance=128):
            return np.asarray(f_t5_bucket(np.asarray(relative_position, dtype=np.int64), bool(bidirectional),
                                int(num_buckets), int(max_distance)), dtype=np.int64)
        _patch(t5_mod, "t5_relative_bucket", t5_relative_bucket)
        _patch(positions, "t5_relative_bucket", t5_relative_bucket)

    if "apply_rope" in fns or "rope_backward" in fns:
        _install_rope(fns.get("apply_rope"), fns.get("rope_backward"))

    if "ntk_base" in fns or "llama3_inv_freq" in fns:
        _install_rope_scalings(fns.get("ntk_base"), fns.get("llama3_inv_freq"))

    if "linear_backward" in fns:
        f_linear_backward = fns["linear_backward"]

        def linear_backward(dout, cache):
            dx, dw, db = f_linear_backward(dout, cache.x, cache.w)
            return _like(dx, cache.x).reshape(cache.x.shape), _like(dw, cache.w), _like(db, cache.w)
        _patch(layers, "linear_backward", linear_backward)
        _patch(attention_mod, "linear_backward", linear_backward)

    if "gelu_backward" in fns:
        f_gelu_backward = fns["gelu_backward"]

        def gelu_backward(dout, cache):
            return _like(f_gelu_backward(dout, cache.x), cache.x)
        _patch(layers, "gelu_backward", gelu_backward)

    if "layernorm_forward" in fns or "layernorm_backward" in fns:
        _install_layernorm(fns.get("layernorm_forward"), fns.get("layernorm_backward"))

    if {"attention_forward", "attention_backward", "softmax_backward"} & set(fns):
        _install_attention(fns.get("attention_forward"), fns.get("attention_backward"),
                           fns.get("softmax_backward"))

    if "cross_entropy_backward" in fns:
        _install_cross_entropy(fns["cross_entropy_backward"])

    if "adamw_step" in fns:
        _install_adamw(fns["adamw_step"])


class _RopeCache:
    """The rotation's cache when the learner's RoPE is on: tinype's tables and what yours needs."""

    def __init__(self, tables, positions_, inv_freq, factor):
        self.tables, self.positions, self.inv_freq, self.factor = tables, positions_, inv_freq, factor


def _install_rope(apply, backward):
    Rotary = rope_mod.Rotary
    own_rotate, own_backward = _own(Rotary, "rotate"), _own(Rotary, "rotate_backward")
    plain_rotation = _own(Rotary, "_rotation")

    def served(self):
        # the learner's RoPE is the plain rotate-half rotation; xPos and interleaved stay tinype's
        return not self.interleaved and type(self)._rotation is plain_rotation

    def rotate(self, q, k, positions_):
        if not served(self):
            return own_rotate(self, q, k, positions_)
        inv_freq, factor = self.frequencies(len(positions_))
        if apply is None:
            (q2, k2), tables = own_rotate(self, q, k, positions_)
        else:
            tables = None
            q2 = _like(factor * np.asarray(apply(q, positions_, inv_freq)), q)
            k2 = _like(factor * np.asarray(apply(k, positions_, inv_freq)), k)
        return (q2, k2), _RopeCache(tables, positions_, inv_freq, factor)

    def rotate_backward(self, dq, dk, cache):
        if not isinstance(cache, _RopeCache):
            return own_backward(self, dq, dk, cache)
        if backward is None:
            tables = cache.tables if cache.tables is not None else self.rotation(cache.positions, dq.dtype)
            return own_backward(self, dq, dk, tables)
        f = cache.factor
        return (_like(f * np.asarray(backward(dq, cache.positions, cache.inv_freq)), dq),
                _like(f * np.asarray(backward(dk, cache.positions, cache.inv_freq)), dk))

    _patch(Rotary, "rotate", rotate)
    _patch(Rotary, "rotate_backward", rotate_backward)
    if apply is not None:
        own_apply = _own(rope_mod, "apply_rope")

        def apply_rope(x, positions_, inv_freq, attention_factor=1.0, interleaved=False):
            if interleaved:
                return own_apply(x, positions_, inv_freq, attention_factor, interleaved)
            return _like(attention_factor * np.asarray(apply(x, np.asarray(positions_, np.float64),
                                                                   np.asarray(inv_freq, np.float64))), x)
        _patch(rope_mod, "apply_rope", apply_rope)
        _patch(positions, "apply_rope", apply_rope)
    Rotary._memo = None


def _install_rope_scalings(ntk, llama3):
    own = _own(rope_mod, "rope_inv_freq")

    def rope_inv_freq(head_dim, base=10000.0, scaling=None, seq_len=None):
        s = dict(scaling or {})
        kind = s.get("rope_type", s.get("type", "default"))
        plain = rope_mod._default_inv_freq
        if kind == "ntk" and ntk is not None and head_dim >= 4 and head_dim % 2 == 0:
            return plain(head_dim, float(ntk(float(base), int(head_dim), float(s.get("factor", 1.0))))), 1.0
        if kind == "llama3" and llama3 is not None and s.get("original_max_position_embeddings"):
            inv = np.asarray(llama3(plain(head_dim, base), float(s.get("factor", 1.0)),
                                    s["original_max_position_embeddings"], s.get("low_freq_factor", 1.0),
                                    s.get("high_freq_factor", 4.0)), dtype=np.float64)
            return inv, 1.0
        return own(head_dim, base, scaling, seq_len)
    _patch(rope_mod, "rope_inv_freq", rope_inv_freq)
    _patch(positions, "rope_inv_freq", rope_inv_freq)


class _LNCache:
    """LayerNorm's cache when a learner's LayerNorm piece is on."""

    def __init__(self, x, w, eps, own):
        self.x, self.w, self.eps, self.own = x, w, eps, own


def _install_layernorm(forward, backward):
    own_forward, own_backward = _own(layers, "layernorm_forward"), _own(layers, "layernorm_backward")

    def layernorm_forward(x, w, b, eps=1e-5):
        if forward is None:
            out, own = own_forward(x, w, b, eps)
        else:
            out, own = _like(forward(x, w, b, eps), x), None
        return out, _LNCache(x, w, eps, own)

    def layernorm_backward(dout, cache):
        if not isinstance(cache, _LNCache):
            return own_backward(dout, cache)
        if backward is None:
            own = cache.own if cache.own is not None else own_forward(cache.x, cache.w, cache.w, cache.eps)[1]
            return own_backward(dout, own)
        dx, dw, db = backward(dout, cache.x, cache.w, cache.eps)
        return _like(dx, cache.x), _like(dw, cache.w), _like(db, cache.w)

    for module in (layers, model_mod):
        _patch(module, "layernorm_forward", layernorm_forward)
        _patch(module, "layernorm_backward", layernorm_backward)


def _dense(q, scale, causal, bias, logit_scale):
    """What the learner's dense attention takes: q scaled so that q k^T / sqrt(D) is tinype's
    logit_scale[i] * scale * q k^T, the bias as a dense (H, T, T) array, and the multiplier."""
    D, T = q.shape[-1], q.shape[-2]
    mult = scale * math.sqrt(D)
    if logit_scale is not None:
        mult = mult * logit_scale.astype(np.float64)[:, None]               # (T, 1): per query
    dense = None
    if bias is not None:
        dense = bias if bias.ndim == 3 else bias[:, reference._distance_index(T, bias.shape[1])]
    return np.asarray(q * mult, dtype=q.dtype), mult, dense


def _table_gradient(dbias, bias, T, causal):
    """The gradient of tinype's bias (a table over distances, or dense) from the dense one."""
    d = np.asarray(dbias, dtype=np.float64)
    while d.ndim > 3:
        d = d.sum(axis=0)                                                  # (H, T, T): sum over B
    if causal:
        d = np.tril(d)                                                     # masked logits carry none
    if bias.ndim == 3:
        return d.astype(bias.dtype)
    H, n_table = bias.shape
    idx = reference._distance_index(T, n_table)
    flat = (idx[None] + n_table * np.arange(H)[:, None, None]).ravel()
    return np.bincount(flat, weights=d.ravel(), minlength=H * n_table).reshape(H, n_table).astype(bias.dtype)


def _install_attention(forward, backward, softmax_backward):
    own_forward, own_backward = _own(kernels, "attention_forward"), _own(kernels, "attention_backward")

    def attention_forward(q, k, v, scale, causal=True, bias=None, logit_scale=None):
        if forward is None:
            return own_forward(q, k, v, scale, causal, bias, logit_scale)
        kernels._check_attention_inputs(q, k, v, bias, logit_scale, causal)
        qs, _, dense = _dense(q, scale, causal, bias, logit_scale)
        out = _like(forward(qs, k, v, causal, dense), q)
        s = reference._logits(q, k, scale, causal, bias, logit_scale)      # lse: for the backward
        m = s.max(axis=-1, keepdims=True)
        lse = (m + np.log(np.exp(s - m).sum(axis=-1, keepdims=True)))[..., 0]
        return out, lse.astype(q.dtype)

    def attention_backward(dout, q, k, v, out, lse, scale, causal=True, bias=None, logit_scale=None):
        T = q.shape[-2]
        if backward is not None:
            qs, mult, dense = _dense(q, scale, causal, bias, logit_scale)
            dq, dk, dv, dbias = backward(dout, qs, k, v, causal, dense)
            dq = _like(np.asarray(dq) * mult, q)                           # qs = mult * q
            table = None if bias is None else _table_gradient(dbias, bias, T, causal)
            return dq, _like(dk, k), _like(dv, v), table
        if softmax_backward is None:
            return own_backward(dout, q, k, v, out, lse, scale, causal, bias, logit_scale)
        # tinype's dense backward, with the learner's softmax backward in the middle
        s = reference._logits(q, k, scale, causal, bias, logit_scale)
        with np.errstate(under="ignore"):
            p = np.exp(s - lse[..., None])
        dv = p.swapaxes(-1, -2) @ dout
        dp = dout @ v.swapaxes(-1, -2)
        ds = _like(softmax_backward(dp, p), q)
        table = None if bias is None else _table_gradient(ds, bias, T, causal)
        mult = scale if logit_scale is None else scale * logit_scale.astype(q.dtype)[:, None]
        ds = ds * mult
        return _like(ds @ k, q), _like(ds.swapaxes(-1, -2) @ q, k), _like(dv, v), table

    _patch(kernels, "attention_forward", attention_forward)
    _patch(kernels, "attention_backward", attention_backward)


class _CECache:
    """Cross-entropy's cache with the logits and targets the learner's backward needs."""

    def __init__(self, dlogits, logits, targets, keep):
        self.dlogits, self.logits, self.targets, self.keep = dlogits, logits, targets, keep


def _install_cross_entropy(f):
    own_forward, own_backward = _own(layers, "cross_entropy_forward"), _own(layers, "cross_entropy_backward")

    def cross_entropy_forward(logits, targets, ignore_index=-1):
        loss, cache = own_forward(logits, targets, ignore_index)
        return loss, _CECache(cache.dlogits, logits, targets, targets != ignore_index)

    def cross_entropy_backward(dloss, cache):
        if not isinstance(cache, _CECache):
            return own_backward(dloss, cache)
        d = np.zeros(cache.logits.shape, dtype=cache.logits.dtype)
        if cache.keep.any():
            d[cache.keep] = f(cache.logits[cache.keep], cache.targets[cache.keep])
        return d * dloss if dloss != 1.0 else d

    for module in (layers, model_mod):
        _patch(module, "cross_entropy_forward", cross_entropy_forward)
        _patch(module, "cross_entropy_backward", cross_entropy_backward)


def _install_adamw(f):
    def step(self, grads, lr=None):
        lr = self.lr if lr is None else lr
        b1, b2 = self.betas
        self.t += 1
        for name, p in self.params.items():
            wd = self.weight_decay if self.decay[name] else 0.0
            new_p, new_m, new_v = f(p.copy(), grads[name].copy(), self.m[name].copy(), self.v[name].copy(),
                                    self.t, lr, b1, b2, self.eps, wd)
            p[...] = new_p
            self.m[name][...] = new_m
            self.v[name][...] = new_v
    _patch(optim.AdamW, "step", step)


# The capstone: train on your pieces, compare with tinype's own -------------------------------------

#: each piece, the encoding whose model exercises it, and the window length of its one-step check
#: (log-n, NTK and Llama 3 change nothing inside T_train, so they are checked at 2 T_train)
_PIECE_CHECKS = {
    "sinusoidal_table": ("sinusoidal", 1), "alibi_slopes": ("alibi", 1), "logn_factor": ("logn", 2),
    "t5_bucket": ("t5", 1), "apply_rope": ("rope", 1), "rope_backward": ("rope", 1),
    "ntk_base": ("rope_ntk", 2), "llama3_inv_freq": ("rope_llama3", 2), "linear_backward": ("rope", 1),
    "gelu_backward": ("rope", 1), "softmax_backward": ("alibi", 1), "layernorm_forward": ("rope", 1),
    "layernorm_backward": ("rope", 1), "attention_forward": ("alibi", 1),
    "attention_backward": ("t5", 1), "cross_entropy_backward": ("rope", 1), "adamw_step": ("rope", 1),
}


def _own_train_steps(model, optimizer, batches, lrs, grad_clip=1.0):
    from .optim import clip_grad_norm
    losses = []
    for (x, y), lr in zip(batches, lrs):
        losses.append(model.loss(x, y))
        grads = model.backward()
        clip_grad_norm(grads, grad_clip)
        optimizer.step(grads, lr)
    return losses


def _setup(pe, steps, batch_size, seed, T=None, overrides=None):
    from .config import ModelConfig, preset
    from .data import Corpus, get_batch
    from .optim import lr_at
    mcfg, tcfg = preset("quick", pe=pe)
    mcfg = ModelConfig(**{**mcfg.to_dict(), "dtype": "float64", **(overrides or {})})
    T = T or mcfg.T_train
    rng = np.random.default_rng(seed)
    data = Corpus.default().train
    batches = [get_batch(data, batch_size, T, rng) for _ in range(steps)]
    lrs = [lr_at(s, tcfg.lr, steps, min(tcfg.warmup, max(1, steps // 5))) for s in range(steps)]
    return mcfg, tcfg, batches, lrs


def _fresh(mcfg, tcfg, seed):
    from .model import Transformer
    model = Transformer(mcfg, seed=seed)
    opt = optim.AdamW(model.parameters(), lr=tcfg.lr, betas=(tcfg.beta1, tcfg.beta2), eps=tcfg.eps,
                      weight_decay=tcfg.weight_decay)
    return model, opt


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    denom = max(np.linalg.norm(a), np.linalg.norm(b))
    if not np.all(np.isfinite(a)):
        return float("inf")
    return 0.0 if denom == 0 else float(np.linalg.norm(a - b) / denom)


def check_piece(folder, piece, seed=0, tol=1e-6, overrides=None):
    """One forward + backward + AdamW step of a small quick-model batch with only `piece` from
    `folder`, against tinype's own. Returns (None, 0.0) when they agree, else (first tensor that
    differs, its relative error), the tensors in the order: the loss, the gradients (in the order
    the backward computes them), the parameters after the step."""
    pe, mult = _PIECE_CHECKS[piece]
    mcfg, tcfg, batches, lrs = _setup(pe, 1, 4, seed, overrides=overrides)
    x, y = batches[0]
    if mult > 1:                                    # the pieces that act beyond T_train only
        from .data import Corpus, get_batch
        x, y = get_batch(Corpus.default().train, 2, mult * mcfg.T_train, np.random.default_rng(seed))

    def run():
        model, opt = _fresh(mcfg, tcfg, seed)
        out = [("the loss", np.array(model.loss(x, y)))]
        grads = {k: v.copy() for k, v in model.backward().items()}
        # in the order the backward computes them (the loss end first), so the first one that
        # differs sits just below the piece that made it differ
        out += [(f"the gradient of {k}", grads[k]) for k in reversed(list(grads))]
        opt.step(grads, lrs[0])
        out += [(f"{k} after one AdamW step", p.copy()) for k, p in model.parameters().items()]
        return out

    saved = current()
    try:
        use_exercises(None)
        want = run()
        use_exercises(folder, pieces=[piece])
        try:
            with np.errstate(all="ignore"):
                got = run()
        except Exception as err:                     # the learner's piece broke the model
            return f"an error inside the model ({type(err).__name__}: {err})", float("inf")
    finally:
        _restore_report(saved)
    for (name, a), (_, b) in zip(got, want):
        err = _rel(a, b)
        # atol: a gradient that is zero in exact arithmetic (FIRE's output bias) is rounding noise
        if not (err <= tol or np.linalg.norm(np.asarray(a, np.float64) - b) <= 1e-10):
            return name, err
    return None, 0.0


def _restore_report(report):
    """Put the switch back as `report` left it."""
    global _CURRENT
    _restore()
    _CURRENT = ExercisesReport(None)
    if report.folder is not None:
        previous = report._previous
        use_exercises(report.folder, pieces=report.yours)
        _CURRENT._previous = previous


@dataclass
class Comparison:
    """compare_training's result."""
    steps: int
    own: list                       # tinype's losses, one per step
    yours: list                     # the learner's
    pieces: list                    # the learner's pieces that were used
    loop: str                       # "yours" (exercise 21 done) or "tinype's"
    first_step: object = None       # the first step whose losses differ, or None
    culprits: list = field(default_factory=list)    # [(piece, first tensor, rel. error)]
    figure: object = None
    tol: float = 1e-5
    folder: str = ""

    @property
    def agree(self):
        return self.first_step is None and not self.culprits

    def __str__(self):
        worst = max((abs(a - b) / abs(b) for a, b in zip(self.yours, self.own)), default=0.0)
        lines = [f"{self.steps} steps of the quick model (float64), your pieces ({len(self.pieces)}): "
                 f"{', '.join(self.pieces) or 'none'}; the training loop: {self.loop}"]
        if self.first_step is None:
            lines.append(f"the two loss curves agree: largest relative difference {worst:.1e} "
                         f"(tolerance {self.tol:g}, float32's); final loss {self.yours[-1]:.4f}")
        else:
            s = self.first_step
            rel = abs(self.yours[s] - self.own[s]) / abs(self.own[s])
            lines.append(f"the loss curves differ from step {s}: yours {self.yours[s]:.6f}, tinype's "
                         f"{self.own[s]:.6f} (relative difference {rel:.1e} > {self.tol:g})")
        for piece, tensor, err in self.culprits:
            lines.append(f"piece {piece} differs from tinype's: first at {tensor} (relative error {err:.1e}); "
                         f"grade it: python chapters/exercises/grade.py {PIECES[piece][0]} --dir {self.folder}")
        if self.first_step is not None and not self.culprits:
            lines.append("every piece agrees on its own, so the difference is in the training loop "
                         "(exercise 21, train_steps)")
        if self.figure:
            lines.append(f"figure: {self.figure}")
        return "\n".join(lines)


def compare_training(folder, steps=80, batch_size=8, pe="rope", seed=0, figure=None, tol=1e-5, overrides=None):
    """Exercise 21's capstone: train the quick model (float64, `steps` steps) with tinype's own
    pieces, then with every finished piece in `folder` and its train_steps (when done), and
    compare the loss curves step by step; check every piece on its own too (check_piece) to name
    the ones that differ. figure: a PNG path for the two curves (None: no figure).
    overrides: ModelConfig fields to change (the tests use a smaller model to stay fast)."""
    folder = os.path.abspath(folder)
    mcfg, tcfg, batches, lrs = _setup(pe, steps, batch_size, seed, overrides=overrides)
    saved = current()
    try:
        use_exercises(None)
        model, opt = _fresh(mcfg, tcfg, seed)
        own = [float(v) for v in _own_train_steps(model, opt, batches, lrs, tcfg.grad_clip)]
        report = use_exercises(folder)
        loop_fn, loop = _own_train_steps, "tinype's (exercise 21 is not done yet)"
        module = _load(folder, "train_your_tinype")
        fn = getattr(module, "train_steps", None) if module is not None else None
        model, opt = _fresh(mcfg, tcfg, seed)
        if fn is not None:
            try:
                fn(model, opt, [], [])
                loop_fn, loop = fn, "yours"
            except NotImplementedError:
                pass
        try:
            with np.errstate(all="ignore"):
                yours = [float(v) for v in loop_fn(model, opt, batches, lrs, tcfg.grad_clip)]
        except Exception as err:
            yours = [float("nan")] * steps
            loop += f" (stopped: {type(err).__name__}: {err})"
        pieces = list(report.yours)
    finally:
        _restore_report(saved)
    yours = (yours + [float("nan")] * steps)[:steps]
    result = Comparison(steps, own, yours, pieces, loop, tol=tol, folder=folder)
    for s, (a, b) in enumerate(zip(yours, own)):
        if not abs(a - b) <= tol * abs(b):
            result.first_step = s
            break
    for piece in pieces:
        tensor, err = check_piece(folder, piece, seed=seed, overrides=overrides)
        if tensor is not None:
            result.culprits.append((piece, tensor, err))
    if figure:
        result.figure = _plot(result, figure)
    return result


def _plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    steps = np.arange(result.steps)
    ax.plot(steps, result.own, lw=2.5, color="0.6", label="tinype's own pieces")
    ax.plot(steps, result.yours, lw=1.2, ls="--", color="C3",
            label=f"your pieces ({len(result.pieces)}), loop: {result.loop.split(' (')[0]}")
    own, yours = np.asarray(result.own), np.asarray(result.yours)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(yours - own) / np.abs(own)
    ax2.semilogy(steps, np.maximum(rel, 1e-17), color="C3", lw=1.2, label="|yours - tinype's| / tinype's")
    ax2.axhline(result.tol, color="k", lw=0.8, ls="--", label=f"tolerance {result.tol:g} (float32)")
    if result.first_step is not None:
        for a in (ax, ax2):
            a.axvline(result.first_step, color="k", lw=0.8, ls=":",
                      label=f"first step that differs ({result.first_step})" if a is ax else None)
    ax.set_ylabel("training loss (nats per byte)")
    ax.set_title("The quick model trained on your pieces vs tinype's" +
                 (": the same curve" if result.agree else ": they differ"))
    ax.legend()
    ax2.set_xlabel("training step")
    ax2.set_ylabel("relative difference")
    ax2.legend(fontsize=8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def main_compare(folder, steps=80):
    """What `python ex21_train_your_tinype.py` runs. Returns 0 when the curves agree."""
    path = os.path.join(folder, "figures", "ex21_loss_curves.png")
    result = compare_training(folder, steps=steps, figure=path)
    print(result)
    return 0 if result.agree else 1
