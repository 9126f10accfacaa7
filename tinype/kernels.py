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

CPU path: the attention kernel's float32 register tiles are compiled for AVX2 + FMA and AVX-512
beside the portable build of everything else, and the best one this CPU supports runs:

    CPU_PATH = "avx512" | "avx2" | "portable"     (None on the NumPy backend)
    TINYPE_CPU_PATH=avx2 or =portable lowers it at import; set_cpu_path(name) at run time
    build_info()                                  how the extension was compiled, and the path

Input checks live in tinype/_checks.py, written once: the compiled wrappers run them, and the NumPy
backend runs the same ones here, so both give the same messages.

Shape letters: B batch, H heads, T time, D head dim, N positions.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from . import _checks, reference

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

CPU_PATH = _ext._get_cpu_path() if _ext is not None else None


def cpu_paths() -> list[str]:
    """The CPU paths this build can run on this machine, best first ([] on the NumPy backend)."""
    return _ext._cpu_paths() if _ext is not None else []


def set_cpu_path(name: str) -> str:
    """Run the attention tiles on CPU path `name` ("avx512", "avx2" or "portable") from now on; one
    of cpu_paths(). Returns the previous path. For tests and benchmarks: the default is the best."""
    global CPU_PATH
    if _ext is None:
        raise RuntimeError("no compiled kernels (NumPy backend): there is no CPU path to choose")
    old = _ext._set_cpu_path(name)
    CPU_PATH = name
    return old


def build_info() -> dict:
    """How the kernels were built and which path runs: backend, cpu_path, cpu_paths (those this
    CPU runs), compiled_paths, openmp, compiler, compiler_flags."""
    if _ext is None:
        return {"backend": "numpy", "cpu_path": None, "cpu_paths": [], "compiled_paths": [], "openmp": False,
                "compiler": None, "compiler_flags": None}
    return {"backend": "cython", "cpu_path": CPU_PATH, "cpu_paths": cpu_paths(), **_ext._build_info()}


def blas_info() -> str:
    """NumPy's BLAS as one line: library, version and kernels (threadpoolctl's view), and the
    OPENBLAS_CORETYPE that chose the kernels when the environment sets it. The GEMMs are most of a
    training step, so a speed figure means little without this: OpenBLAS picks its kernels for the
    CPU when it loads, unless OPENBLAS_CORETYPE names a set (Haswell's AVX2 kernels run on an AVX-512
    CPU too, at about half the float32 speed; README, "NumPy's BLAS: which kernels run the GEMMs")."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl is not installed)"
    libs = [d for d in threadpool_info() if d.get("user_api") == "blas"]
    if not libs:
        return "none found"
    # NumPy's own BLAS, where another library (SciPy's, torch's) loaded one too
    lib = next((d for d in libs if "numpy" in os.path.dirname(d.get("filepath") or "")), libs[0])
    text = " ".join(str(part) for part in (lib.get("internal_api"), lib.get("version")) if part)
    arch = lib.get("architecture")
    if arch:
        text += f", {arch} kernels"
    if lib.get("internal_api") == "openblas":
        chosen = os.environ.get("OPENBLAS_CORETYPE")
        if not chosen:
            text += " (chosen by OpenBLAS for this CPU)"
        elif arch and chosen.strip().lower() == arch.lower():
            text += f" (OPENBLAS_CORETYPE={chosen} in the environment)"
        else:
            text += f" (OPENBLAS_CORETYPE={chosen} is set, but OpenBLAS chose {arch or 'its own kernels'})"
        if arch in ("Haswell", "Zen") and "avx512" in cpu_paths():
            text += ("; this CPU has AVX-512, which these AVX2 kernels leave unused (OpenBLAS's SkylakeX kernels "
                     "use it: 1.8x the float32 GEMM speed on the machine of README, \"NumPy's BLAS\")")
    return text


_forced = os.environ.get("TINYPE_CPU_PATH", "").strip().lower()
if _forced and _ext is not None:
    if _forced not in ("avx512", "avx2", "portable"):
        raise ValueError(f"TINYPE_CPU_PATH must be 'avx512', 'avx2' or 'portable', got {_forced!r}")
    if _forced in cpu_paths():
        set_cpu_path(_forced)
    else:
        warnings.warn(f"TINYPE_CPU_PATH={_forced} is not available here (this build on this CPU runs: "
                      f"{', '.join(cpu_paths())}); using {CPU_PATH}", RuntimeWarning, stacklevel=2)


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


def sinusoidal_table(positions: np.ndarray, dim: int, base: float = 10000.0) -> np.ndarray:
    """(N, dim) sinusoidal table at real-valued positions; see reference.sinusoidal_table."""
    positions = _as_positions(positions)
    if BACKEND == "cython":
        return _ext.sinusoidal_table(positions, int(dim), float(base))
    _checks.sinusoidal(positions, int(dim), base)
    return reference.sinusoidal_table(positions, int(dim), base)


def _check_attention_inputs(q, k, v, bias, logit_scale, causal):
    """What only this layer checks: a dense (H, T, T) bias (FIRE), which only the NumPy reference
    takes, and finite inputs. The rest is _checks.attention, which the compiled wrapper runs (or,
    on the NumPy path, this function)."""
    if _dense(bias):
        _checks.attention(q, k, v, None, logit_scale, causal, contiguous=False)
        H, T = q.shape[1], q.shape[2]
        if bias.shape != (H, T, T):
            raise ValueError(f"bias must be (H, T)=({H}, {T}), (H, 2T-1)=({H}, {2 * T - 1}) or dense "
                             f"(H, T, T), got {bias.shape}")
    elif not _compiled_attention(bias):
        _checks.attention(q, k, v, bias, logit_scale, causal, contiguous=False)
    for name, a in (("q", q), ("k", k), ("v", v), ("bias", bias), ("logit_scale", logit_scale)):
        # O(T D): nothing next to attention's O(T^2 D)
        if isinstance(a, np.ndarray) and a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ValueError(f"attention input {name} holds NaN or inf; the layer before it diverged "
                             f"(a lower learning rate usually helps)")


def _dense(bias):
    return isinstance(bias, np.ndarray) and bias.ndim == 3


def _a(x):
    """An array made C-contiguous for the compiled kernels; anything else goes on to their checks."""
    return np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x


def _like_q(q, x):
    """x in q's dtype (a bias table or logit_scale: the PE families may build them in float64)."""
    if x is None or _dense(x) or not (isinstance(q, np.ndarray) and q.dtype.kind == "f"):
        return x
    return np.asarray(x, dtype=q.dtype)


def attention_forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float, causal: bool = True,
                      bias: np.ndarray | None = None,
                      logit_scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Attention with optional distance bias and per-query logit scaling. Returns (out, lse).

    q, k, v: (B, H, T, D); see reference.attention_forward for the formula.
    """
    bias, logit_scale = _like_q(q, bias), _like_q(q, logit_scale)
    _check_attention_inputs(q, k, v, bias, logit_scale, causal)
    if _compiled_attention(bias):
        return _ext.attention_forward(_a(q), _a(k), _a(v), float(scale), bool(causal), _a(bias), _a(logit_scale))
    return reference.attention_forward(q, k, v, scale, causal, bias, logit_scale)


def attention_backward(dout: np.ndarray, q: np.ndarray, k: np.ndarray, v: np.ndarray, out: np.ndarray,
                       lse: np.ndarray, scale: float, causal: bool = True, bias: np.ndarray | None = None,
                       logit_scale: np.ndarray | None = None) -> tuple:
    """Returns dq, dk, dv and dbias (None without a bias); see reference.attention_backward."""
    # the saved and incoming arrays in q's dtype, as the forward made them
    dout, k, v, out, lse, bias, logit_scale = (_like_q(q, a) for a in (dout, k, v, out, lse, bias, logit_scale))
    if _compiled_attention(bias):
        return _ext.attention_backward(_a(dout), _a(q), _a(k), _a(v), _a(out), _a(lse), float(scale), bool(causal),
                                       _a(bias), _a(logit_scale))
    _checks.attention(q, k, v, None if _dense(bias) else bias, logit_scale, causal, contiguous=False)
    _checks.attention_saved(q, dout, out, lse, contiguous=False)
    return reference.attention_backward(dout, q, k, v, out, lse, scale, causal, bias, logit_scale)


def _compiled_attention(bias):
    return BACKEND == "cython" and not _dense(bias)


def attention_decode(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float, bias: np.ndarray | None = None,
                     logit_scale: np.ndarray | None = None) -> np.ndarray:
    """The n newest queries q (B, H, n, D) against the cached keys and values k, v (B, H, L, D), for
    incremental decoding; bias None, a table over distances (H, W >= L) or dense rows (H, n, L).
    See reference.attention_decode. k and v may be views of a cache's longer buffers."""
    bias, logit_scale = _like_q(q, bias), _like_q(q, logit_scale)
    if BACKEND == "cython":
        k, v = _like_q(q, k), _like_q(q, v)
        return _ext.attention_decode(_a(q), k, v, float(scale), _a(bias), _a(logit_scale))
    _checks.decode(q, k, v, bias, logit_scale)
    return reference.attention_decode(q, k, v, scale, bias, logit_scale)


# Fused layer kernels: see reference.py for the formulas. ---------------------------------------------

def _impl(name):
    return getattr(_ext if BACKEND == "cython" else reference, name)


_c = np.ascontiguousarray


def gelu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(out, t) with t = tanh(sqrt(2/pi) (x + 0.044715 x^3)) kept for the backward."""
    return _impl("gelu_forward")(_c(x))


def gelu_backward(dout: np.ndarray, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    return _impl("gelu_backward")(_c(dout, dtype=x.dtype), _c(x), _c(t))


def layernorm_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray,
                      eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x: (N, C). Returns out, xhat (N, C), rstd (N,)."""
    return _impl("layernorm_forward")(_c(x), _c(w, dtype=x.dtype), _c(b, dtype=x.dtype), eps)


def layernorm_backward(dout: np.ndarray, xhat: np.ndarray, rstd: np.ndarray,
                       w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns dx (N, C), dw (C,), db (C,)."""
    return _impl("layernorm_backward")(_c(dout, dtype=xhat.dtype), xhat, rstd, _c(w, dtype=xhat.dtype))


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> tuple:
    """Returns nll (N,) float64 and dlogits (N, V) = (softmax - onehot) * weights."""
    logits = _c(logits)
    return _impl("softmax_cross_entropy")(logits, _c(targets, dtype=np.int64), _c(weights, dtype=logits.dtype))


def embedding_backward(idx: np.ndarray, dout: np.ndarray, vocab_size: int) -> np.ndarray:
    """dwte (V, C) with dwte[idx[n]] += dout[n]; idx: (N,), dout: (N, C)."""
    return _impl("embedding_backward")(_c(idx, dtype=np.int64), _c(dout), int(vocab_size))


def apply_rotary(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, interleaved: bool = False) -> np.ndarray:
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


def alibi_table(slopes: np.ndarray, T: int, causal: bool) -> np.ndarray:
    return _impl("alibi_table")(_f(slopes), int(T), bool(causal))


def kerple_table(r1: np.ndarray, r2: np.ndarray, T: int, causal: bool, power: bool) -> np.ndarray:
    r1 = _f(r1)
    return _impl("kerple_table")(r1, _c(r2, dtype=r1.dtype), int(T), bool(causal), bool(power))


def kerple_table_backward(dtable: np.ndarray, r1: np.ndarray, r2: np.ndarray, T: int, causal: bool,
                          power: bool) -> tuple[np.ndarray, np.ndarray]:
    r1 = _f(r1)
    return _impl("kerple_table_backward")(_c(dtable, dtype=r1.dtype), r1, _c(r2, dtype=r1.dtype), int(T),
                                          bool(causal), bool(power))


def sandwich_table(head_scale: np.ndarray, dim: int, T: int, causal: bool) -> np.ndarray:
    return _impl("sandwich_table")(_f(head_scale), int(dim), int(T), bool(causal))


def bucket_table(values: np.ndarray, buckets: np.ndarray) -> np.ndarray:
    return _impl("bucket_table")(_f(values), _c(buckets, dtype=np.int64))


def bucket_table_backward(dtable: np.ndarray, buckets: np.ndarray, n_buckets: int) -> np.ndarray:
    return _impl("bucket_table_backward")(_f(dtable), _c(buckets, dtype=np.int64), int(n_buckets))
