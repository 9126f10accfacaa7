"""Gradient checking by central differences, for tinype's own tests and for learners.

    numerical_gradient(f, x)             the gradient of sum(f() * dout) w.r.t. x, entry by entry
    check_layer(forward, backward, args) every analytic gradient of a forward/backward pair
    check_model(model, idx, targets)     every parameter gradient of a whole model
    check_encoding("my_pe")              every gradient of a positional encoding, in one call
    assert_close(name, analytic, numerical, tol)   a failure message that says where and by how much

Use float64: with h = 1e-5 the truncation error of central differences is O(h^2) ~ 1e-10 and the
rounding error ~ eps * |f| / h ~ 1e-11, so a correct backward agrees to a relative error of about
1e-8 or better, and tinype's tests ask for <= 1e-6.

The relative error is norm-wise: ||a - n|| / max(||a||, ||n||), which does not blow up on the
many entries whose gradient is (correctly) almost zero.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

DEFAULT_TOL = 1e-6


def rel_error(analytic: np.ndarray, numerical: np.ndarray) -> float:
    """||a - n||_2 / max(||a||_2, ||n||_2); 0 when both are exactly zero."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numerical, dtype=np.float64)
    denom = max(np.linalg.norm(a), np.linalg.norm(n))
    return 0.0 if denom == 0 else float(np.linalg.norm(a - n) / denom)


def numerical_gradient(f: Callable[[], np.ndarray], x: np.ndarray, dout: np.ndarray | None = None, h: float = 1e-5,
                       indices: Iterable[int] | None = None, order: int = 2) -> np.ndarray:
    """Central differences of sum(f() * dout) with respect to the array x, perturbed in place.

    f: a callable of no arguments that reads x and returns an array (or a scalar: dout = 1).
    indices: flat indices of x to check (default all); the result is zero elsewhere.
    order 2:  (f(x+h) - f(x-h)) / 2h, error O(h^2)
    order 4:  (8 (f(x+h) - f(x-h)) - (f(x+2h) - f(x-2h))) / 12h, error O(h^4), twice the cost
    """
    if order not in (2, 4):
        raise ValueError(f"order must be 2 or 4, got {order}")
    if x.dtype != np.float64:
        raise TypeError(f"gradient checks need float64 inputs (got {x.dtype}): float32 rounding "
                        f"swamps central differences")
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError("x must be contiguous so it can be perturbed in place")
    for i in (range(x.size) if indices is None else indices):
        old = flat[i]

        def f_at(step, i=i, old=old):           # f with entry i moved by step (bound now, called at once)
            flat[i] = old + step
            return np.asarray(f(), dtype=np.float64)

        if order == 2:
            diff = (f_at(h) - f_at(-h)) / (2 * h)
        else:
            diff = (8 * (f_at(h) - f_at(-h)) - (f_at(2 * h) - f_at(-2 * h))) / (12 * h)
        flat[i] = old
        gflat[i] = np.sum(diff * dout) if dout is not None else np.sum(diff)
    return grad


def assert_close(name: str, analytic: np.ndarray, numerical: np.ndarray, tol: float = DEFAULT_TOL,
                 atol: float = 0.0) -> float:
    """Raise AssertionError naming the worst entry when the relative error exceeds tol.

    atol: gradients that agree to this absolute norm pass whatever their relative error. It is
    for gradients that are exactly zero (e.g. a bias added to every logit of a softmax row), where
    the relative error compares two kinds of rounding noise. Returns the relative error, or 0.0 when
    the absolute test passed.
    """
    err = rel_error(analytic, numerical)
    diff = float(np.linalg.norm(np.asarray(analytic, np.float64) - np.asarray(numerical, np.float64)))
    if atol and diff <= atol:
        return 0.0
    if not err <= tol:
        a = np.asarray(analytic, dtype=np.float64)
        n = np.asarray(numerical, dtype=np.float64)
        worst = np.unravel_index(np.argmax(np.abs(a - n)), a.shape) if a.ndim else ()
        raise AssertionError(
            f"gradient of {name}: relative error {err:.3e} > {tol:.0e}; worst entry {tuple(map(int, worst))}: "
            f"backward gave {a[worst]:.8g}, central differences expected {n[worst]:.8g}")
    return err


def check_layer(forward, backward, args, wrt=None, seed=0, h=1e-5, tol=DEFAULT_TOL, **kwargs):
    """Check a forward/backward pair on float64 inputs.

    forward(*args, **kwargs) -> (out, cache); backward(dout, cache) -> gradients of the inputs
    listed in `wrt` (indices into args, default: every float array), in that order, either as one
    array or a tuple. A random dout stands in for the upstream gradient, so no loss is needed.
    Returns {index: relative error}; raises AssertionError (via assert_close) above tol.
    """
    rng = np.random.default_rng(seed)
    args = list(args)
    if wrt is None:
        wrt = [i for i, a in enumerate(args) if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
    out, cache = forward(*args, **kwargs)
    dout = rng.standard_normal(np.shape(out))
    grads = backward(dout, cache)
    if not isinstance(grads, tuple):
        grads = (grads,)
    grads = [g for g in grads if g is not None]
    if len(grads) < len(wrt):
        raise ValueError(f"backward returned {len(grads)} gradients for {len(wrt)} inputs")
    errors = {}
    for g, i in zip(grads, wrt):
        num = numerical_gradient(lambda: forward(*args, **kwargs)[0], args[i], dout, h)
        errors[i] = assert_close(f"argument {i}", g, num, tol)
    return errors


def check_model(model, idx, targets, max_entries=None, h=3e-4, order=4, tol=DEFAULT_TOL, atol=1e-9, seed=0):
    """Check every parameter gradient of model.loss(idx, targets) against central differences.

    The model must be float64. max_entries: check at most this many random entries per
    parameter (None: all of them). Returns {name: relative error}.
    Whole models use the fourth-order stencil with h = 3e-4: the loss is O(1) while some gradients
    (LayerNorm gains behind 0.02-std weights) are O(1e-4), so the classic stencil at h = 1e-5 loses
    ~5e-7 of relative error to rounding (eps |f| / h), and at larger h to truncation (the tied
    embedding's third derivative is large). The fourth-order stencil lets h grow without the
    truncation error: measured worst errors are ~2e-8 on the tiny test models.
    atol: a gradient whose analytic and numerical values differ by less than this in norm passes
    (reported as 0.0): the rounding noise of the differences is ~1e-11, and any real gradient here
    is above 1e-5, so only exactly-zero gradients (FIRE's output bias) use it.
    """
    rng = np.random.default_rng(seed)
    model.loss(idx, targets)
    grads = {k: v.copy() for k, v in model.backward().items()}
    errors = {}
    for name, p in model.parameters().items():
        indices = None
        if max_entries is not None and p.size > max_entries:
            indices = rng.choice(p.size, size=max_entries, replace=False)
        num = numerical_gradient(lambda: model.loss(idx, targets), p, h=h, indices=indices, order=order)
        analytic = grads[name]
        if indices is not None:
            analytic, num = analytic.reshape(-1)[indices], num.reshape(-1)[indices]
        errors[name] = assert_close(name, analytic, num, tol, atol)
    return errors


def check_encoding(pe, T=6, d_model=8, n_head=2, causal=True, seed=0, tol=DEFAULT_TOL, model=True,
                   max_entries=24):
    """Check every gradient of a positional encoding in one call (float64, central differences).

    pe: a registered name or module path ("rope", "my_pe", "path/to/my_pe.py:MyPE"), a
    PositionalEncoding class, or an instance (it is set up for a tiny model here).
    Checks each hook the encoding implements, against a random upstream gradient:
      embed        embed_backward's gradients of the PE's parameters
      rotate       rotate_backward's dq and dk
      bias         bias_backward's gradients of the PE's parameters
    and then (model=True) every parameter gradient of a 1-layer float64 Transformer that uses it
    (check_model, at most max_entries random entries per parameter).
    Returns {what: relative error}; raises AssertionError naming the hook and the worst entry.
    """
    from . import positions as registry
    from .config import ModelConfig
    from .model import Transformer

    if isinstance(pe, str):
        pe = registry.get(pe)
    elif isinstance(pe, type):
        pe = pe()
    if not isinstance(pe, registry.PositionalEncoding):
        raise TypeError(f"check_encoding needs a PE name, class or instance, got {type(pe).__name__}")
    config = ModelConfig(n_layer=1, d_model=d_model, n_head=n_head, T_train=T, pe="nope", dtype="float64",
                         causal=causal)
    pe.setup(config)
    rng = np.random.default_rng(seed)
    # parameters moved off their initial values, so that a zero-initialised table is no easy case
    params = {k: np.asarray(v, np.float64) + 0.1 * rng.standard_normal(np.shape(v))
              for k, v in pe.init_params(np.random.default_rng(seed)).items()}
    pos = pe.positions(T)
    errors = {}
    label = pe.describe()

    emb = pe.embed(params, pos)
    if emb is not None:
        dtable = rng.standard_normal(np.shape(emb[0]))
        grads = pe.embed_backward(params, dtable, emb[1])
        for name, p in params.items():
            num = numerical_gradient(lambda: pe.embed(params, pos)[0], p, dtable)
            errors[f"embed: {name}"] = assert_close(f"{label} embed -> {name}", grads.get(name, 0 * p), num, tol,
                                                    atol=1e-10)
    D = d_model // n_head
    q = rng.standard_normal((1, n_head, T, D))
    k = rng.standard_normal((1, n_head, T, D))
    rot = pe.rotate(q, k, pos)
    if rot is not None:
        dq2, dk2 = rng.standard_normal(q.shape), rng.standard_normal(k.shape)
        dq, dk = pe.rotate_backward(dq2, dk2, rot[1])
        dout = np.concatenate([dq2.ravel(), dk2.ravel()])

        def rotated():
            (a, b), _ = pe.rotate(q, k, pos)
            return np.concatenate([np.ravel(a), np.ravel(b)])
        errors["rotate: dq"] = assert_close(f"{label} rotate -> dq", dq, numerical_gradient(rotated, q, dout), tol)
        errors["rotate: dk"] = assert_close(f"{label} rotate -> dk", dk, numerical_gradient(rotated, k, dout), tol)
    bias = pe.bias(params, T, pos)
    if bias is not None and params:
        dtable = rng.standard_normal(np.shape(bias[0]))
        grads = pe.bias_backward(params, dtable, bias[1])
        for name, p in params.items():
            num = numerical_gradient(lambda: pe.bias(params, T, pos)[0], p, dtable)
            errors[f"bias: {name}"] = assert_close(f"{label} bias -> {name}", grads.get(name, 0 * p), num, tol,
                                                   atol=1e-10)
    if model:
        m = Transformer(config, seed=seed)
        m.pe = pe
        m.params = m._init_params(np.random.default_rng(seed))
        idx = rng.integers(0, config.vocab_size, size=(2, T))
        targets = rng.integers(0, config.vocab_size, size=(2, T))
        for name, err in check_model(m, idx, targets, max_entries=max_entries, tol=tol).items():
            errors[f"model: {name}"] = err
    return errors
