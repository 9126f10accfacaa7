"""The one switch between tinype's compiled kernels and their NumPy references.

    BACKEND = "cython"   the extension tinype._ext was built by `pip install -e .`
    BACKEND = "numpy"    TINYPE_BACKEND=numpy was set, or the extension is missing (warned once)

Everything else in tinype calls kernels through this module, never tinype._ext directly, so a
missing extension means a warning and the NumPy twin, never a NameError later on.

Kernels: sinusoidal_table; the bias tables over distances alibi_table, kerple_table(_backward),
sandwich_table, bucket_table(_backward); the fused layer kernels gelu_*, layernorm_*, softmax_cross_entropy and
embedding_backward; attention_forward/backward (fused, flash-style: no T x T matrix). The compiled
`def` wrappers insist on C-contiguous arrays of one float dtype; the functions here make them so.
A dense (H, T, T) bias (FIRE) always takes the NumPy reference, which is the only one that holds
a T x T matrix anyway.

Shape letters: B batch, H heads, T time, D head dim, N positions.
"""
import os
import warnings

import numpy as np

from . import reference

BUILD_COMMAND = "pip install -e ."

_requested = os.environ.get("TINYPE_BACKEND", "cython").strip().lower() or "cython"
if _requested not in ("cython", "numpy"):
    raise ValueError(f"TINYPE_BACKEND must be 'cython' or 'numpy', got {_requested!r}")

# OpenMP threads that spin after a parallel region steal the 2 cores from OpenBLAS's threads,
# which run the GEMMs between our kernels: measured on the quick preset, spinning (the default)
# gives 12.5k training tokens/s and passive waiting 44-48k. libgomp reads this when the
# extension loads it, so it is set here, before the import; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_ext = None
if _requested == "cython":
    try:
        from . import _ext  # noqa: F811  (compiled by setup.py)
    except ImportError as err:
        warnings.warn(
            f"tinype's compiled kernels are not built ({err}); using the NumPy references, which "
            f"are slower. Build them from the project folder with: {BUILD_COMMAND}",
            RuntimeWarning,
            stacklevel=2,
        )

BACKEND = "cython" if _ext is not None else "numpy"


def _as_positions(positions):
    """Positions as a C-contiguous float array (float64 unless already float32)."""
    positions = np.asarray(positions)
    if positions.ndim != 1:
        raise ValueError(f"positions must be 1-D (N,), got shape {positions.shape}")
    if positions.dtype != np.float32:
        if not (np.issubdtype(positions.dtype, np.number) and not np.iscomplexobj(positions)):
            raise TypeError(f"positions must be real numbers, got dtype {positions.dtype}")
        positions = positions.astype(np.float64)
    return np.ascontiguousarray(positions)


def sinusoidal_table(positions, dim, base=10000.0):
    """(N, dim) sinusoidal table at real-valued positions; see reference.sinusoidal_table."""
    positions = _as_positions(positions)
    dim = int(dim)
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if not base > 0:
        raise ValueError(f"base must be > 0, got {base}")
    if BACKEND == "cython":
        return _ext.sinusoidal_table(positions, dim, float(base))
    return reference.sinusoidal_table(positions, dim, base)


def _check_attention_inputs(q, k, v, bias, logit_scale, causal):
    for name, a in (("q", q), ("k", k), ("v", v)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
        if a.ndim != 4:
            raise ValueError(f"{name} must be (B, H, T, D), got shape {a.shape}")
        if a.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
    if not (q.shape == k.shape == v.shape):
        raise ValueError(f"q, k, v shapes differ: {q.shape}, {k.shape}, {v.shape}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    _, H, T, _ = q.shape
    if bias is not None:
        dense = bias.ndim == 3 and bias.shape == (H, T, T)
        if not dense and (bias.ndim != 2 or bias.shape[0] != H or bias.shape[1] not in (T, 2 * T - 1)):
            raise ValueError(f"bias must be (H, T)=({H}, {T}), (H, 2T-1)=({H}, {2 * T - 1}) or dense "
                             f"(H, T, T), got {bias.shape}")
        if not dense and bias.shape[1] == T and T > 1 and not causal:
            raise ValueError("a one-sided (H, T) bias table needs causal=True; pass (H, 2T-1) otherwise")
    if logit_scale is not None and np.shape(logit_scale) != (T,):
        raise ValueError(f"logit_scale must be (T,)=({T},), got {np.shape(logit_scale)}")
    for name, a in (("q", q), ("k", k), ("v", v), ("bias", bias), ("logit_scale", logit_scale)):
        if a is not None and not np.isfinite(a).all():           # O(T D): nothing next to O(T^2 D)
            raise ValueError(f"attention input {name} holds NaN or inf; the layer before it diverged "
                             f"(a lower learning rate usually helps)")


def attention_forward(q, k, v, scale, causal=True, bias=None, logit_scale=None):
    """Attention with optional distance bias and per-query logit scaling. Returns (out, lse).

    q, k, v: (B, H, T, D); see reference.attention_forward for the formula.
    """
    _check_attention_inputs(q, k, v, bias, logit_scale, causal)
    if _compiled_attention(bias):
        dt = q.dtype
        return _ext.attention_forward(_c(q), _c(k, dtype=dt), _c(v, dtype=dt), float(scale), bool(causal),
                                      None if bias is None else _c(bias, dtype=dt),
                                      None if logit_scale is None else _c(logit_scale, dtype=dt))
    return reference.attention_forward(q, k, v, scale, causal, bias, logit_scale)


def attention_backward(dout, q, k, v, out, lse, scale, causal=True, bias=None, logit_scale=None):
    """Returns dq, dk, dv and dbias (None without a bias); see reference.attention_backward."""
    if _compiled_attention(bias):
        dt = q.dtype
        return _ext.attention_backward(_c(dout, dtype=dt), _c(q), _c(k, dtype=dt), _c(v, dtype=dt),
                                       _c(out, dtype=dt), _c(lse, dtype=dt), float(scale), bool(causal),
                                       None if bias is None else _c(bias, dtype=dt),
                                       None if logit_scale is None else _c(logit_scale, dtype=dt))
    return reference.attention_backward(dout, q, k, v, out, lse, scale, causal, bias, logit_scale)


def _compiled_attention(bias):
    return BACKEND == "cython" and (bias is None or bias.ndim == 2)


# Fused layer kernels: see reference.py for the formulas. ---------------------------------------------

def _impl(name):
    return getattr(_ext if BACKEND == "cython" else reference, name)


_c = np.ascontiguousarray


def gelu_forward(x):
    """(out, t) with t = tanh(sqrt(2/pi) (x + 0.044715 x^3)) kept for the backward."""
    return _impl("gelu_forward")(_c(x))


def gelu_backward(dout, x, t):
    return _impl("gelu_backward")(_c(dout, dtype=x.dtype), _c(x), _c(t))


def layernorm_forward(x, w, b, eps=1e-5):
    """x: (N, C). Returns out, xhat (N, C), rstd (N,)."""
    return _impl("layernorm_forward")(_c(x), _c(w, dtype=x.dtype), _c(b, dtype=x.dtype), eps)


def layernorm_backward(dout, xhat, rstd, w):
    """Returns dx (N, C), dw (C,), db (C,)."""
    return _impl("layernorm_backward")(_c(dout, dtype=xhat.dtype), xhat, rstd, _c(w, dtype=xhat.dtype))


def softmax_cross_entropy(logits, targets, weights):
    """Returns nll (N,) float64 and dlogits (N, V) = (softmax - onehot) * weights."""
    logits = _c(logits)
    return _impl("softmax_cross_entropy")(logits, _c(targets, dtype=np.int64), _c(weights, dtype=logits.dtype))


def embedding_backward(idx, dout, vocab_size):
    """dwte (V, C) with dwte[idx[n]] += dout[n]; idx: (N,), dout: (N, C)."""
    return _impl("embedding_backward")(_c(idx, dtype=np.int64), _c(dout), int(vocab_size))


def apply_rotary(x, cos, sin, interleaved=False):
    """Rotate channel pairs of x (..., T, D) by angles with cos, sin (T, D/2); see reference.apply_rotary.

    The backward is apply_rotary(dy, cos, -sin)."""
    if BACKEND == "cython":
        x = _c(x)
        return _ext.apply_rotary(x, _c(cos, dtype=x.dtype), _c(sin, dtype=x.dtype), bool(interleaved))
    return reference.apply_rotary(x, cos, sin, interleaved)


# Bias tables over distances: (H, T) causal or (H, 2T-1) two-sided; see reference.py. ----------------

def _f(a):
    """A float parameter vector or table as the compiled kernels take it (float64 unless float32)."""
    a = np.asarray(a)
    return _c(a if a.dtype == np.float32 else a.astype(np.float64))


def alibi_table(slopes, T, causal):
    return _impl("alibi_table")(_f(slopes), int(T), bool(causal))


def kerple_table(r1, r2, T, causal, power):
    r1 = _f(r1)
    return _impl("kerple_table")(r1, _c(r2, dtype=r1.dtype), int(T), bool(causal), bool(power))


def kerple_table_backward(dtable, r1, r2, T, causal, power):
    r1 = _f(r1)
    return _impl("kerple_table_backward")(_c(dtable, dtype=r1.dtype), r1, _c(r2, dtype=r1.dtype), int(T),
                                          bool(causal), bool(power))


def sandwich_table(head_scale, dim, T, causal):
    return _impl("sandwich_table")(_f(head_scale), int(dim), int(T), bool(causal))


def bucket_table(values, buckets):
    return _impl("bucket_table")(_f(values), _c(buckets, dtype=np.int64))


def bucket_table_backward(dtable, buckets, n_buckets):
    return _impl("bucket_table_backward")(_f(dtable), _c(buckets, dtype=np.int64), int(n_buckets))
