"""Input checks of the kernels, written once: the compiled wrappers (pyx/*.pxi) and tinype.kernels
on the NumPy backend both call these, so a bad argument gets the same message on either backend.

The compiled wrappers pass contiguous=True (their loops read raw C-ordered memory); the NumPy
references take any layout. Shape letters: B batch, H heads, T time, D head dim.
"""
import numpy as np


def array(name, a, ndim, dtype=None, contiguous=True):
    """A float32/float64 numpy array of ndim dimensions (and of `dtype`, when given)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    if dtype is None:
        if a.dtype != np.float32 and a.dtype != np.float64:
            raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
    elif a.dtype != dtype:
        raise TypeError(f"{name} must be {np.dtype(dtype).name} like the other inputs, got {a.dtype}")
    if contiguous and not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use np.ascontiguousarray)")


def attention(q, k, v, bias, logit_scale, causal, contiguous=True):
    """q, k, v (B, H, T, D) of one float dtype; bias None, (H, T) (causal only) or (H, 2T-1);
    logit_scale None or (T,). Returns the bias table's offset: the column of distance 0."""
    for name, a in (("q", q), ("k", k), ("v", v)):
        if isinstance(a, np.ndarray) and a.ndim != 4:
            raise ValueError(f"{name} must have 4 dimensions (B, H, T, D), got shape {a.shape}")
        array(name, a, 4, None, contiguous)
    if not (q.shape == k.shape == v.shape):
        raise ValueError(f"q, k, v shapes differ: {q.shape}, {k.shape}, {v.shape}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    H, T = q.shape[1], q.shape[2]
    if q.shape[3] < 1 or T < 1:
        raise ValueError(f"q has an empty axis: {q.shape}")
    offset = 0
    if bias is not None:
        array("bias", bias, bias.ndim if isinstance(bias, np.ndarray) else 2, q.dtype, contiguous)
        if bias.ndim != 2 or bias.shape[0] != H or bias.shape[1] not in (T, 2 * T - 1):
            raise ValueError(f"bias must be (H, T) or (H, 2T-1) = ({H}, {T} or {2 * T - 1}), got {bias.shape}")
        if bias.shape[1] == 2 * T - 1:
            offset = T - 1
        elif T > 1 and not causal:
            raise ValueError("a one-sided (H, T) bias table needs causal=True; pass (H, 2T-1) otherwise")
    if logit_scale is not None:
        array("logit_scale", logit_scale, 1, q.dtype, contiguous)
        if logit_scale.shape[0] != T:
            raise ValueError(f"logit_scale must be (T,)=({T},), got {logit_scale.shape}")
    return offset


def attention_saved(q, dout, out, lse, contiguous=True):
    """The backward's extra inputs: dout and out like q, lse (B, H, T)."""
    array("dout", dout, 4, q.dtype, contiguous)
    array("out", out, 4, q.dtype, contiguous)
    array("lse", lse, 3, q.dtype, contiguous)
    if dout.shape != q.shape or out.shape != q.shape or lse.shape != q.shape[:3]:
        raise ValueError(f"dout {dout.shape}, out {out.shape}, lse {lse.shape} do not fit q {q.shape}")


def sinusoidal(positions, dim, base, contiguous=True):
    if not isinstance(positions, np.ndarray):
        raise TypeError(f"positions must be a numpy array, got {type(positions).__name__}")
    if positions.ndim != 1:
        raise ValueError(f"positions must be 1-D (N,), got shape {positions.shape}")
    if positions.dtype != np.float32 and positions.dtype != np.float64:
        raise TypeError(f"positions must be float32 or float64, got {positions.dtype}")
    if contiguous and not positions.flags.c_contiguous:
        raise ValueError("positions must be C-contiguous (use np.ascontiguousarray)")
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if not base > 0.0:
        raise ValueError(f"base must be > 0, got {base}")


def decode(q, k, v, bias, logit_scale):
    """One decoding step: q (B, H, n, D) C-contiguous; k, v (B, H, L, D) with L >= n whose last axis
    is contiguous (views of a cache's buffers); bias None, (H, W >= L) or (H, n, L); logit_scale None
    or (n,); all of q's float dtype."""
    array("q", q, 4)
    for name, a in (("k", k), ("v", v)):
        array(name, a, 4, q.dtype, contiguous=False)
        if a.shape[3] > 1 and a.strides[3] != a.itemsize:
            raise ValueError(f"{name}'s last axis must be contiguous")
    B, H, n, D = q.shape
    if k.shape != v.shape or k.shape[:2] != (B, H) or k.shape[3] != D or k.shape[2] < n:
        raise ValueError(f"k and v must be (B, H, L >= n, D) = ({B}, {H}, >= {n}, {D}), got {k.shape} and {v.shape}")
    L = k.shape[2]
    if n < 1:
        raise ValueError("no new query to decode (q has n = 0)")
    if bias is not None:
        array("bias", bias, bias.ndim if isinstance(bias, np.ndarray) else 2, q.dtype)
        if not ((bias.ndim == 2 and bias.shape[0] == H and bias.shape[1] >= L)
                or (bias.ndim == 3 and bias.shape == (H, n, L))):
            raise ValueError(f"bias must be a table (H, W >= L) = ({H}, >= {L}) or rows (H, n, L) = "
                             f"({H}, {n}, {L}), got {bias.shape}")
    if logit_scale is not None:
        array("logit_scale", logit_scale, 1, q.dtype)
        if logit_scale.shape[0] != n:
            raise ValueError(f"logit_scale must be (n,) = ({n},), got {logit_scale.shape}")
