"""Every compiled kernel equals its NumPy twin, float32 and float64, and rejects bad input clearly."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinype import kernels, reference

ext = kernels._ext
pytestmark = pytest.mark.skipif(ext is None, reason="compiled extension not built")

TOL = {np.float64: 1e-12, np.float32: 1e-5}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dim", [1, 2, 7, 16, 64])
def test_sinusoidal_matches_reference(dtype, dim):
    pos = np.concatenate([np.arange(0, 300), [0.5, 1.25, 4095.75, 1e4 / 3]]).astype(dtype)
    fast = ext.sinusoidal_table(pos, dim)
    ref = reference.sinusoidal_table(pos, dim)
    assert fast.dtype == ref.dtype == dtype
    assert fast.shape == (len(pos), dim)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=TOL[dtype])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 50), dim=st.integers(1, 40), base=st.floats(2.0, 1e6),
       f32=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_sinusoidal_property(n, dim, base, f32, seed):
    dtype = np.float32 if f32 else np.float64
    pos = (np.random.default_rng(seed).random(n) * 5000).astype(dtype)
    np.testing.assert_allclose(ext.sinusoidal_table(pos, dim, base), reference.sinusoidal_table(pos, dim, base),
                               rtol=0, atol=TOL[dtype])


def test_sinusoidal_formula_values():
    # The convention of DESIGN.md, checked by hand at real-valued positions.
    p, d = np.array([0.0, 1.0, 2.5, 100.0]), 6
    t = kernels.sinusoidal_table(p, d)
    for i in range(3):
        w = 1.0 / 10000 ** (2 * i / d)
        np.testing.assert_allclose(t[:, 2 * i], np.sin(p * w), atol=1e-15)
        np.testing.assert_allclose(t[:, 2 * i + 1], np.cos(p * w), atol=1e-15)


@pytest.mark.parametrize("bad, err, msg", [
    (np.zeros((2, 2)), ValueError, "1-D"),
    (np.arange(3, dtype=np.int64), TypeError, "float32 or float64"),
    (np.arange(6.0)[::2], ValueError, "C-contiguous"),
    ([1.0, 2.0], TypeError, "numpy array"),
])
def test_sinusoidal_kernel_rejects_bad_input(bad, err, msg):
    with pytest.raises(err, match=msg):
        ext.sinusoidal_table(bad, 4)


def test_sinusoidal_kernel_rejects_bad_dim_and_base():
    with pytest.raises(ValueError, match="dim"):
        ext.sinusoidal_table(np.arange(3.0), 0)
    with pytest.raises(ValueError, match="base"):
        ext.sinusoidal_table(np.arange(3.0), 4, -1.0)


def test_switch_accepts_lists_and_ints():
    # The public switch converts what a user naturally passes; the kernel itself stays strict.
    t = kernels.sinusoidal_table([0, 1, 2], 4)
    assert t.dtype == np.float64 and t.shape == (3, 4)
    np.testing.assert_allclose(t, reference.sinusoidal_table(np.arange(3.0), 4), atol=1e-15)
    with pytest.raises(TypeError, match="real numbers"):
        kernels.sinusoidal_table(np.array(["a"]), 4)


def test_every_kernel_has_both_twins():
    # the compiled module and the NumPy specification list the same kernels (two helpers are
    # reference-only: the dense logits that the fused kernel never forms, and the distance axis)
    def public(module, home):
        return {n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))
                and getattr(getattr(module, n), "__module__", home) == home}
    compiled = public(ext, "tinype._ext")
    spec = public(reference, "tinype.reference")
    assert spec - compiled == {"attention_logits", "table_distances"}
    assert compiled - spec == set()
    assert len(compiled) >= 16


# Bias tables over distances ------------------------------------------------------------------------

def _table_params(H, dtype, seed):
    g = np.random.default_rng(seed)
    r1 = (0.05 + 2 * g.random(H)).astype(dtype)
    r2 = (0.05 + 1.9 * g.random(H)).astype(dtype)           # inside KERPLE-power's (0, 2]
    return r1, r2, g


def _check_tables(H, T, causal, dtype, seed):
    r1, r2, g = _table_params(H, dtype, seed)
    n = T if causal else 2 * T - 1
    for name, args in (("alibi_table", (r1, T, causal)),
                       ("kerple_table", (r1, r2, T, causal, False)),
                       ("kerple_table", (r1, r2, T, causal, True)),
                       ("sandwich_table", (r2, 2 * (H + 3), T, causal))):
        fast, ref = getattr(ext, name)(*args), getattr(reference, name)(*args)
        assert fast.dtype == dtype and fast.shape == ref.shape == (H, n)
        assert_parity(fast, ref, dtype, name)
    dtable = g.standard_normal((H, n)).astype(dtype)
    for power in (False, True):
        for a, r, what in zip(ext.kerple_table_backward(dtable, r1, r2, T, causal, power),
                              reference.kerple_table_backward(dtable, r1, r2, T, causal, power), ("dr1", "dr2")):
            assert a.dtype == dtype
            assert_parity(a, r, dtype, what)
    values = g.standard_normal((7, H)).astype(dtype)
    buckets = g.integers(0, 7, n)
    assert_parity(ext.bucket_table(values, buckets), reference.bucket_table(values, buckets), dtype, "buckets")
    assert_parity(ext.bucket_table_backward(dtable, buckets, 7), reference.bucket_table_backward(dtable, buckets, 7),
                  dtype, "dbuckets")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [True, False])
def test_bias_tables_match_reference(dtype, causal):
    _check_tables(5, 300, causal, dtype, seed=0)


@settings(max_examples=40, deadline=None)
@given(H=st.integers(1, 6), T=st.integers(1, 120), causal=st.booleans(), f32=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_bias_tables_property(H, T, causal, f32, seed):
    _check_tables(H, T, causal, np.float32 if f32 else np.float64, seed)


@pytest.mark.parametrize("power", [False, True])
def test_kerple_table_backward_is_the_gradient(power):
    # central differences of L = sum(dtable * table) in float64, parameter by parameter
    r1, r2, g = _table_params(3, np.float64, 5)
    T, causal = 40, False
    dtable = g.standard_normal((3, 2 * T - 1))
    dr1, dr2 = ext.kerple_table_backward(dtable, r1, r2, T, causal, power)
    for p, grad in ((r1, dr1), (r2, dr2)):
        for h in range(3):
            old = p[h]
            p[h] = old + 1e-6
            up = np.sum(dtable * ext.kerple_table(r1, r2, T, causal, power))
            p[h] = old - 1e-6
            down = np.sum(dtable * ext.kerple_table(r1, r2, T, causal, power))
            p[h] = old
            assert abs((up - down) / 2e-6 - grad[h]) <= 1e-6 * max(1.0, abs(grad[h]))


def test_bucket_table_backward_is_the_gradient():
    # the table is linear in the values: its gradient is the scatter-add, entry by entry
    g = np.random.default_rng(2)
    values, buckets, dtable = g.standard_normal((6, 2)), g.integers(0, 6, 30), g.standard_normal((2, 30))
    grad = ext.bucket_table_backward(dtable, buckets, 6)
    for b in range(6):
        for h in range(2):
            e = np.zeros_like(values)
            e[b, h] = 1.0
            assert np.isclose(np.sum(dtable * ext.bucket_table(e, buckets)), grad[b, h], rtol=1e-12, atol=1e-12)
    assert np.count_nonzero(grad) > 0


@pytest.mark.parametrize("call, err, msg", [
    (lambda: ext.alibi_table(np.arange(3), 5, True), TypeError, "float32 or float64"),
    (lambda: ext.alibi_table(np.ones((2, 2)), 5, True), ValueError, "1 dimensions"),
    (lambda: ext.alibi_table(np.ones(4)[::2], 5, True), ValueError, "C-contiguous"),
    (lambda: ext.alibi_table(np.ones(3), 0, True), ValueError, "T must be >= 1"),
    (lambda: ext.kerple_table(np.ones(3), np.ones(2), 5, True, False), ValueError, "shapes differ"),
    (lambda: ext.kerple_table(np.ones(3), np.ones(3, np.float32), 5, True, False), TypeError, "float64"),
    (lambda: ext.kerple_table_backward(np.ones((3, 4)), np.ones(3), np.ones(3), 5, True, False), ValueError,
     r"dtable must be \(H, 5\)"),
    (lambda: ext.sandwich_table(np.ones(3), -2, 5, True), ValueError, "dim must be"),
    (lambda: ext.bucket_table(np.ones((4, 2)), np.array([0, 4])), ValueError, r"in \[0, 4\)"),
    (lambda: ext.bucket_table(np.ones((4, 2)), np.array([0, -1])), ValueError, r"in \[0, 4\)"),
    (lambda: ext.bucket_table(np.ones((4, 2)), np.array([0, 1], np.int32)), TypeError, "int64"),
    (lambda: ext.bucket_table_backward(np.ones((2, 3)), np.array([0, 1]), 4), ValueError, "2 entries"),
])
def test_bias_table_kernels_reject_bad_input(call, err, msg):
    with pytest.raises(err, match=msg):
        call()


# Layer kernels ---------------------------------------------------------------------------------------

def assert_parity(fast, ref, dtype, what, scale=0.0):
    """Relative (norm-wise) agreement: 1e-12 in float64, 1e-5 in float32.

    scale: a floor for the denominator where the output can be far smaller than the input it was
    computed from (GELU's tail: the reference's 0.5 x (1 + tanh u) loses digits to cancellation
    there, the kernel's x * sigmoid(2u) does not), so errors are measured against the input's size.
    """
    fast, ref = np.asarray(fast, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    err = np.linalg.norm(fast - ref) / max(np.linalg.norm(ref), scale, 1e-300)
    assert err <= TOL[dtype], f"{what}: relative error {err:.2e} > {TOL[dtype]:.0e}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (7,), (5000,), (3, 4099), (2, 33, 65)])
def test_gelu_matches_reference(dtype, shape):
    g = np.random.default_rng(0)
    x = (g.standard_normal(shape) * 3).astype(dtype)
    out, t = ext.gelu_forward(x)
    rout, rt = reference.gelu_forward(x)
    assert out.dtype == dtype and out.shape == shape
    assert_parity(out, rout, dtype, "gelu out", np.linalg.norm(x))
    assert_parity(t, rt, dtype, "gelu t")
    dout = g.standard_normal(shape).astype(dtype)
    assert_parity(ext.gelu_backward(dout, x, t), reference.gelu_backward(dout, x, rt), dtype, "gelu dx")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N, C", [(1, 1), (5, 3), (64, 64), (17, 255)])
def test_layernorm_matches_reference(dtype, N, C):
    g = np.random.default_rng(1)
    x = (g.standard_normal((N, C)) * 2 + 0.5).astype(dtype)
    w, b = g.standard_normal(C).astype(dtype), g.standard_normal(C).astype(dtype)
    fast, ref = ext.layernorm_forward(x, w, b, 1e-5), reference.layernorm_forward(x, w, b, 1e-5)
    for a, r, name in zip(fast, ref, ("out", "xhat", "rstd")):
        assert a.dtype == dtype
        assert_parity(a, r, dtype, name)
    dout = g.standard_normal((N, C)).astype(dtype)
    for a, r, name in zip(ext.layernorm_backward(dout, *fast[1:], w),
                          reference.layernorm_backward(dout, *ref[1:], w), ("dx", "dw", "db")):
        if C == 1 and name == "dx":
            # one channel: dx is exactly 0 in theory; float32 rounding of (dout w - mean) is ~1e-8,
            # which rstd = 1/sqrt(eps) ~ 316 amplifies (more so with fused multiply-adds)
            np.testing.assert_allclose(a, 0, atol=1e-4 if dtype == np.float32 else 1e-10)
            continue
            continue
        assert_parity(a, r, dtype, name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N, V", [(1, 1), (3, 2), (100, 256), (7, 1000)])
def test_softmax_cross_entropy_matches_reference(dtype, N, V):
    g = np.random.default_rng(2)
    logits = (g.standard_normal((N, V)) * 4).astype(dtype)
    targets = g.integers(0, V, N)
    weights = g.random(N).astype(dtype)
    nll, d = ext.softmax_cross_entropy(logits, targets, weights)
    rnll, rd = reference.softmax_cross_entropy(logits, targets, weights)
    assert nll.dtype == np.float64 and d.dtype == dtype
    assert_parity(nll, rnll, dtype, "nll")
    assert_parity(d, rd, dtype, "dlogits")


def test_softmax_cross_entropy_huge_logits_stay_finite():
    for dtype in (np.float32, np.float64):
        logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], dtype=dtype)
        nll, d = ext.softmax_cross_entropy(logits, np.array([1, 2]), np.ones(2, dtype))
        assert np.all(np.isfinite(nll)) and np.all(np.isfinite(d))
        np.testing.assert_allclose(nll, [2e4, np.log(3)], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedding_backward_matches_reference(dtype):
    g = np.random.default_rng(3)
    idx = g.integers(0, 10, 500)
    dout = g.standard_normal((500, 6)).astype(dtype)
    assert_parity(ext.embedding_backward(idx, dout, 10), reference.embedding_backward(idx, dout, 10), dtype, "dwte")


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), c=st.integers(1, 70), f32=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_layer_kernels_property(n, c, f32, seed):
    dtype = np.float32 if f32 else np.float64
    g = np.random.default_rng(seed)
    x = (g.standard_normal((n, c)) * 5).astype(dtype)
    assert_parity(ext.gelu_forward(x)[0], reference.gelu_forward(x)[0], dtype, "gelu", np.linalg.norm(x))
    targets = g.integers(0, c, n)
    w = np.full(n, 1 / n, dtype)
    # a row's gradient is w (p - onehot): where p is near 1 the float32 reference's p - 1 keeps only
    # the digits of eps * w, so the errors are measured against |w| at least
    assert_parity(ext.softmax_cross_entropy(x, targets, w)[1], reference.softmax_cross_entropy(x, targets, w)[1],
                  dtype, "xent", np.linalg.norm(w))
    if c > 1:
        ones, zeros = np.ones(c, dtype), np.zeros(c, dtype)
        assert_parity(ext.layernorm_forward(x, ones, zeros)[0], reference.layernorm_forward(x, ones, zeros)[0],
                      dtype, "ln")


@pytest.mark.parametrize("call, err, msg", [
    (lambda: ext.gelu_forward(np.arange(4)), TypeError, "float32 or float64"),
    (lambda: ext.gelu_forward(np.zeros((4, 4))[:, ::2]), ValueError, "C-contiguous"),
    (lambda: ext.gelu_backward(np.zeros(3), np.zeros(4), np.zeros(4)), ValueError, "shapes differ"),
    (lambda: ext.gelu_backward(np.zeros(4, np.float32), np.zeros(4), np.zeros(4)), TypeError, "float64"),
    (lambda: ext.layernorm_forward(np.zeros(4), np.ones(4), np.zeros(4)), ValueError, "2 dimensions"),
    (lambda: ext.layernorm_forward(np.zeros((2, 4)), np.ones(3), np.zeros(4)), ValueError, "must be"),
    (lambda: ext.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]), np.ones(2)), ValueError, r"\[0, 3\)"),
    (lambda: ext.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1], np.int32), np.ones(2)), TypeError, "int64"),
    (lambda: ext.embedding_backward(np.array([0, 5]), np.zeros((2, 3)), 4), ValueError, "token ids"),
])
def test_layer_kernels_reject_bad_input(call, err, msg):
    with pytest.raises(err, match=msg):
        call()


def test_numpy_backend_trains_to_the_same_losses():
    """The whole training step under TINYPE_BACKEND=numpy gives the same losses as the compiled one."""
    import subprocess
    import sys
    code = ("from tinype import *; import numpy as np\n"
            "cfg = ModelConfig(n_layer=1, d_model=32, n_head=2, T_train=32)\n"
            "r = train(cfg, TrainConfig(batch_size=4, steps=8, warmup=2, eval_every=0), progress=False,"
            " log=lambda *a: None)\n"
            "print(' '.join(repr(h['loss']) for h in r.history), r.val['nll'])")
    outs = {}
    for backend in ("numpy", "cython"):
        import os
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, TINYPE_BACKEND=backend))
        assert r.returncode == 0, r.stderr
        outs[backend] = np.array(r.stdout.split(), dtype=float)
    np.testing.assert_allclose(outs["cython"], outs["numpy"], rtol=2e-5)
    assert not np.array_equal(outs["cython"][:1], [np.log(256)])   # it trained


# Fused attention -----------------------------------------------------------------------------------------

def _attention_case(B, H, T, D, dtype, causal, table, with_mult, seed):
    g = np.random.default_rng(seed)
    q, k, v = [(g.standard_normal((B, H, T, D)) * 1.5).astype(dtype) for _ in range(3)]
    bias = None
    if table == "causal":
        bias = g.standard_normal((H, T)).astype(dtype)
    elif table == "two-sided":
        bias = g.standard_normal((H, 2 * T - 1)).astype(dtype)
    mult = (1 + g.random(T)).astype(dtype) if with_mult else None
    return q, k, v, bias, mult, g.standard_normal((B, H, T, D)).astype(dtype)


def _check_attention_parity(B, H, T, D, dtype, causal, table, with_mult, seed=0):
    q, k, v, bias, mult, dout = _attention_case(B, H, T, D, dtype, causal, table, with_mult, seed)
    out, lse = ext.attention_forward(q, k, v, 0.3, causal, bias, mult)
    rout, rlse = reference.attention_forward(q, k, v, 0.3, causal, bias, mult)
    assert out.dtype == lse.dtype == dtype
    assert_parity(out, rout, dtype, "out")
    assert_parity(lse, rlse, dtype, "lse")
    fast = ext.attention_backward(dout, q, k, v, out, lse, 0.3, causal, bias, mult)
    ref = reference.attention_backward(dout, q, k, v, rout, rlse, 0.3, causal, bias, mult)
    # Gradients are measured against |dout| at least (dv = p^T dout is that size): where the true
    # gradient is zero (T = 1: one key, a constant softmax, dq = dk = 0) both sides hold only the
    # rounding noise of p (dp - rowdot), a difference of two terms of size |dout| |v|.
    floor = np.linalg.norm(dout)
    for a, r, name in zip(fast, ref, ("dq", "dk", "dv", "dbias")):
        if r is None:
            assert a is None
            continue
        assert a.dtype == dtype and a.shape == r.shape
        assert_parity(a, r, dtype, name, floor)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal, table, with_mult", [
    (True, None, False), (False, None, False), (True, "causal", False), (True, "two-sided", True),
    (False, "two-sided", False), (True, None, True)])
def test_attention_matches_reference(dtype, causal, table, with_mult):
    # T = 150 spans two 96-key tiles with a ragged last one; D = 7 is not a multiple of 8
    _check_attention_parity(2, 3, 150, 7, dtype, causal, table, with_mult)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T, D", [(250, 64), (97, 40), (6, 16)])
@pytest.mark.parametrize("causal, table, with_mult", [(True, "causal", True), (False, "two-sided", False)])
def test_attention_register_tiles_match_reference(dtype, T, D, causal, table, with_mult):
    # float32 products run 6 x 16 register tiles: D = 64 is all tiles, D = 40 leaves an 8-column
    # edge, T = 250 and 97 leave ragged row edges (250 = 2 x 96 + 58, 58 = 9 x 6 + 4), T = 6 is one tile
    _check_attention_parity(1, 2, T, D, dtype, causal, table, with_mult, seed=T)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_attention_flushes_tiny_weights_without_changing_results(dtype):
    # A steep ALiBi-like bias (slope 0.5 per byte of distance): beyond ~90 keys back the weights sit
    # between float32's underflow floor e^-87 and the flush threshold 1e-20 (e^-46), where the
    # kernel sets them to exactly 0 so that no subnormal product reaches its GEMMs. The reference
    # keeps them. Both must agree to the usual tolerance in the forward and in every gradient.
    # (That the flush makes the backward fast is a speed property: benchmarks/bench_kernels.py.)
    B, H, T, D = 1, 2, 300, 16
    g = np.random.default_rng(7)
    q, k, v, dout = [g.standard_normal((B, H, T, D)).astype(dtype) for _ in range(4)]
    slopes = np.array([0.5, 1.0])
    bias = reference.alibi_table(slopes, T, True).astype(dtype)
    out, lse = ext.attention_forward(q, k, v, 0.25, True, bias)
    rout, rlse = reference.attention_forward(q, k, v, 0.25, True, bias)
    assert_parity(out, rout, dtype, "out")
    fast = ext.attention_backward(dout, q, k, v, out, lse, 0.25, True, bias)
    ref = reference.attention_backward(dout, q, k, v, rout, rlse, 0.25, True, bias)
    for a, r, name in zip(fast, ref, ("dq", "dk", "dv", "dbias")):
        assert_parity(a, r, dtype, name, np.linalg.norm(dout))
    # every output is a normal number or zero: no subnormal escaped into the results either
    tiny = np.finfo(dtype).tiny
    for a in (out,) + tuple(fast[:3]):
        assert not np.any((a != 0) & (np.abs(a) < tiny))


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 2), H=st.integers(1, 3), T=st.integers(1, 200), D=st.integers(1, 40),
       f32=st.booleans(), causal=st.booleans(), table=st.sampled_from([None, "causal", "two-sided"]),
       with_mult=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_attention_property(B, H, T, D, f32, causal, table, with_mult, seed):
    if table == "causal" and not causal:
        table = "two-sided"
    _check_attention_parity(B, H, T, D, np.float32 if f32 else np.float64, causal, table, with_mult, seed)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_attention_kernel_keeps_nan_in_its_row(dtype):
    # tinype.kernels refuses NaN inputs; the kernel itself must not hide one either (its exponent
    # floor is written so that a NaN logit stays NaN): exactly the rows the reference poisons
    g = np.random.default_rng(4)
    q, k, v = (g.standard_normal((1, 2, 200, 16)).astype(dtype) for _ in range(3))
    q[0, 1, 150, 3] = np.nan
    out, _ = ext.attention_forward(q, k, v, 0.25, True)
    rout, _ = reference.attention_forward(q, k, v, 0.25, True)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(rout))
    assert np.isnan(out[0, 1, 150]).all() and np.isnan(out).sum() == 16


@pytest.mark.parametrize("call, err, msg", [
    (lambda q: ext.attention_forward(q.astype(np.float16), q, q, 1.0), TypeError, "float32 or float64"),
    (lambda q: ext.attention_forward(q, q.astype(np.float32), q, 1.0), TypeError, "float64"),
    (lambda q: ext.attention_forward(q[0], q[0], q[0], 1.0), ValueError, "4 dimensions"),
    (lambda q: ext.attention_forward(q, np.zeros((1, 2, 3, 4)), q, 1.0), ValueError, "shapes differ"),
    (lambda q: ext.attention_forward(q.transpose(0, 2, 1, 3), q.transpose(0, 2, 1, 3), q.transpose(0, 2, 1, 3), 1.0),
     ValueError, "C-contiguous"),
    (lambda q: ext.attention_forward(q, q, q, 1.0, True, np.zeros((2, 3))), ValueError, "bias must be"),
    (lambda q: ext.attention_forward(q, q, q, 1.0, False, np.zeros((2, 4))), ValueError, "causal=True"),
    (lambda q: ext.attention_forward(q, q, q, 1.0, True, None, np.ones(5)), ValueError, "logit_scale"),
    (lambda q: ext.attention_forward(np.zeros((1, 2, 0, 4)), np.zeros((1, 2, 0, 4)), np.zeros((1, 2, 0, 4)), 1.0),
     ValueError, "empty"),
    (lambda q: ext.attention_backward(np.zeros((1, 2, 2, 4)), q, q, q, q, np.zeros((1, 2, 4)), 1.0), ValueError,
     "do not fit"),
    (lambda q: ext.attention_forward([1.0], q, q, 1.0), TypeError, "numpy array"),
])
def test_attention_kernel_rejects_bad_input(call, err, msg):
    with pytest.raises(err, match=msg):
        call(np.zeros((1, 2, 4, 4)))


def test_attention_memory_grows_linearly_in_T():
    import os
    """No T x T matrix: at T = 8192 one head's scores would be 256 MiB in float32; the fused kernel's
    forward + backward must stay far below that (the benchmark measures T = 16384, H = 4, D = 64)."""
    import subprocess
    import sys
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc/self/status (Linux) for the peak resident memory")
    # VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's peak, which would make the
    # difference below zero whatever the kernel allocated.
    code = """
import numpy as np
from tinype import _ext
def peak_mib():
    line = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
    return int(line.split()[1]) / 1024
T, D = 8192, 8
g = np.random.default_rng(0)
q, k, v = [g.standard_normal((1, 1, T, D)).astype(np.float32) for _ in range(3)]
bias = -np.arange(T, dtype=np.float32)[None, :] * 0.01
dout = np.ones_like(q)
before = peak_mib()
out, lse = _ext.attention_forward(q, k, v, 0.35, True, bias)
grads = _ext.attention_backward(dout, q, k, v, out, lse, 0.35, True, bias)
print(peak_mib() - before)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    grew_mib = float(r.stdout.strip())
    assert grew_mib > 0.5                  # out, lse and the four gradients (~1.3 MiB) must show up
    assert grew_mib < 32, f"attention at T=8192 grew the process by {grew_mib:.0f} MiB; a T x T float32 is 256 MiB"


# Rotary --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("shape", [(5, 2), (3, 4, 17, 8), (1, 1, 1, 64), (2, 33, 6)])
def test_rotary_matches_reference(dtype, interleaved, shape):
    g = np.random.default_rng(4)
    x = g.standard_normal(shape).astype(dtype)
    T, D = shape[-2], shape[-1]
    theta = g.random((T, D // 2)) * 50
    amp = 1 + g.random((T, D // 2))                       # an attention factor or xPos scale
    c, s = (np.cos(theta) * amp).astype(dtype), (np.sin(theta) * amp).astype(dtype)
    y = ext.apply_rotary(x, c, s, interleaved)
    assert y.dtype == dtype and y.shape == x.shape
    assert_parity(y, reference.apply_rotary(x, c, s, interleaved), dtype, "rotary")
    # the backward is the rotation by -theta: with unit amplitude it undoes the forward
    cu, su = np.cos(theta).astype(dtype), np.sin(theta).astype(dtype)
    back = ext.apply_rotary(ext.apply_rotary(x, cu, su, interleaved), cu, -su, interleaved)
    assert_parity(back, x, dtype, "inverse rotation")


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 3), T=st.integers(1, 40), half=st.integers(1, 20), f32=st.booleans(),
       interleaved=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_rotary_property(n, T, half, f32, interleaved, seed):
    dtype = np.float32 if f32 else np.float64
    g = np.random.default_rng(seed)
    x = g.standard_normal((n, T, 2 * half)).astype(dtype)
    c, s = (g.standard_normal((T, half)).astype(dtype) for _ in range(2))
    assert_parity(ext.apply_rotary(x, c, s, interleaved), reference.apply_rotary(x, c, s, interleaved), dtype, "rotary")


@pytest.mark.parametrize("args, err, msg", [
    ((np.zeros((2, 3, 5)), np.zeros((3, 2)), np.zeros((3, 2))), ValueError, "even head dimension"),
    ((np.zeros((2, 3, 4)), np.zeros((3, 3)), np.zeros((3, 2))), ValueError, r"\(T, D/2\)"),
    ((np.zeros((2, 3, 4), np.float32), np.zeros((3, 2)), np.zeros((3, 2))), TypeError, "float32"),
    ((np.zeros(4), np.zeros((1, 2)), np.zeros((1, 2))), ValueError, r"\(\.\.\., T, D\)"),
    ((np.zeros((3, 8))[:, ::2], np.zeros((3, 2)), np.zeros((3, 2))), ValueError, "C-contiguous"),
])
def test_rotary_rejects_bad_input(args, err, msg):
    with pytest.raises(err, match=msg):
        ext.apply_rotary(*args)


# Read-only inputs ------------------------------------------------------------------------------------

def _kernel_cases(dtype):
    """One call of every compiled kernel: name -> (arrays, other arguments)."""
    g = np.random.default_rng(11)
    f = lambda *shape: g.standard_normal(shape).astype(dtype)         # noqa: E731
    B, H, T, D = 1, 2, 20, 8
    q, k, v, dout = f(B, H, T, D), f(B, H, T, D), f(B, H, T, D), f(B, H, T, D)
    bias, mult = f(H, 2 * T - 1), (1 + g.random(T)).astype(dtype)
    out, lse = reference.attention_forward(q, k, v, 0.3, True, bias, mult)
    x, w, b = f(6, 5), f(5), f(5)
    _, xhat, rstd = reference.layernorm_forward(x, w, b)
    gx = f(3, 7)
    r1, r2 = (0.1 + g.random(H)).astype(dtype), (0.1 + g.random(H)).astype(dtype)
    buckets = g.integers(0, 4, 2 * T - 1)
    return {
        "sinusoidal_table": ((np.arange(7.0).astype(dtype),), (6,)),
        "alibi_table": ((r1,), (T, False)),
        "kerple_table": ((r1, r2), (T, False, True)),
        "kerple_table_backward": ((f(H, 2 * T - 1), r1, r2), (T, False, True)),
        "sandwich_table": ((r1,), (6, T, False)),
        "bucket_table": ((f(4, H), buckets), ()),
        "bucket_table_backward": ((f(H, 2 * T - 1), buckets), (4,)),
        "gelu_forward": ((gx,), ()),
        "gelu_backward": ((f(3, 7), gx, np.tanh(gx)), ()),
        "layernorm_forward": ((x, w, b), ()),
        "layernorm_backward": ((f(6, 5), xhat, rstd, w), ()),
        "softmax_cross_entropy": ((f(4, 9), g.integers(0, 9, 4), g.random(4).astype(dtype)), ()),
        "embedding_backward": ((g.integers(0, 5, 6), f(6, 3)), (5,)),
        "apply_rotary": ((f(2, T, D), f(T, D // 2), f(T, D // 2)), (False,)),
        "attention_forward": ((q, k, v), (0.3, True, bias, mult)),
        "attention_backward": ((dout, q, k, v, out, lse), (0.3, True, bias, mult)),
        "attention_decode": ((q[:, :, -2:].copy(), k, v), (0.3, bias, mult[-2:].copy())),
    }


def _read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_kernel_accepts_read_only_inputs(dtype):
    # const memoryviews: a read-only array (a memory map, np.broadcast_to, a frozen parameter) is
    # valid input to every kernel, and the result equals the twin's on the same, writeable, data
    cases = _kernel_cases(dtype)
    assert set(cases) == {n for n in dir(ext) if not n.startswith("_") and callable(getattr(ext, n))
                          and getattr(getattr(ext, n), "__module__", "") == "tinype._ext"}
    for name, (arrays, rest) in cases.items():
        frozen = [_read_only(a) for a in arrays]
        # bias and logit_scale of the attention kernels are in `rest`: freeze those too
        rest = tuple(_read_only(a) if isinstance(a, np.ndarray) else a for a in rest)
        fast = getattr(ext, name)(*frozen, *rest)
        ref = getattr(reference, name)(*arrays, *rest)
        fast = fast if isinstance(fast, tuple) else (fast,)
        ref = ref if isinstance(ref, tuple) else (ref,)
        assert len(fast) == len(ref), name
        for a, r in zip(fast, ref):
            assert_parity(a, r, dtype, name, scale=1.0)


# Every CPU path of the attention tiles ---------------------------------------------------------------

@pytest.fixture(params=kernels.cpu_paths() or ["none"])
def cpu_path(request):
    if request.param == "none":
        pytest.skip("no compiled kernels")
    old = kernels.set_cpu_path(request.param)
    yield request.param
    kernels.set_cpu_path(old)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T, D", [(250, 64), (150, 7), (97, 40), (6, 16), (1, 3), (130, 16), (21, 24)])
@pytest.mark.parametrize("causal, table, with_mult", [(True, "causal", True), (False, "two-sided", False),
                                                      (True, None, False)])
def test_attention_matches_reference_on_every_cpu_path(cpu_path, dtype, T, D, causal, table, with_mult):
    # avx512 holds 6 x 32 tiles, avx2 6 x 16, portable 6 x 8: D = 64 and 40 leave different edges on
    # each. An edge at least one vector wide takes the one-vector tiles (tp_narrow): D = 16 and 24 on
    # avx512 (16 of the 24, and 8 plain), D = 40 and 24 on avx2 (8 columns), T = 130 and 21 with
    # several row blocks and a ragged last one
    assert kernels.CPU_PATH == cpu_path and ext._get_cpu_path() == cpu_path
    _check_attention_parity(1, 2, T, D, dtype, causal, table, with_mult, seed=T + D)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("L, D", [(39, 16), (23, 20), (130, 64), (5, 4), (1, 8)])
@pytest.mark.parametrize("kind", ["none", "table"])
def test_decode_kernel_matches_reference_on_every_cpu_path(cpu_path, dtype, L, D, kind):
    # a decoding query's two products run in vectors of 4 (portable), 8 (avx2) or 16 (avx512)
    # floats, four keys at a time: D = 16 and 64 take the vector loops on every path, D = 20 and 4
    # the plain ones on some; L = 39 and 23 leave a ragged group of keys. k, v: views of longer buffers
    assert kernels.CPU_PATH == cpu_path
    g = np.random.default_rng(L + D)
    k = g.standard_normal((1, 3, L + 5, D)).astype(dtype)[:, :, :L]
    v = g.standard_normal((1, 3, L + 5, D)).astype(dtype)[:, :, :L]
    q = g.standard_normal((1, 3, 1, D)).astype(dtype)
    bias = g.standard_normal((3, L + 2)).astype(dtype) if kind == "table" else None
    assert_parity(ext.attention_decode(q, k, v, 0.3, bias, None), reference.attention_decode(q, k, v, 0.3, bias),
                  dtype, "decode out")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 4096 + 33])
def test_gelu_matches_reference_on_every_cpu_path(cpu_path, dtype, n):
    # float32 GELU runs a C loop compiled per path (pyx/elementwise.h: 4-, 8- or 16-wide exp; n = 15,
    # 17 and 4129 leave ragged tails). Element by element, with large, tiny, infinite and NaN inputs
    assert kernels.CPU_PATH == cpu_path
    g = np.random.default_rng(n)
    x = (g.standard_normal(n) * 4).astype(dtype)
    special = np.array([0.0, -0.0, 30.0, -30.0, 1e30, -1e30, 1e-30, np.inf, -np.inf, np.nan], dtype)
    x[:min(n, special.size)] = special[:n]
    out, t = ext.gelu_forward(x)
    rout, rt = reference.gelu_forward(x)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out, rout, equal_nan=True, **tol)
    np.testing.assert_allclose(t, rt, equal_nan=True, **tol)
    # the backward reads 1 + t where t is near -1 for x << 0: each side's float32 t leaves it a few
    # units of 1e-6 apart (next to a |dout| of about 1), so float32 gets an absolute 1e-5 there
    dout = g.standard_normal(n).astype(dtype)
    if dtype == np.float32:
        tol["atol"] = 1e-5
    np.testing.assert_allclose(ext.gelu_backward(dout, x, t), reference.gelu_backward(dout, x, rt),
                               equal_nan=True, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N, V", [(1, 1), (5, 17), (40, 256), (3, 1000)])
def test_softmax_cross_entropy_matches_reference_on_every_cpu_path(cpu_path, dtype, N, V):
    # float32 rows run a C loop compiled per path (pyx/elementwise.h); V = 17 and 1000 leave ragged
    # tails. Row by row: each row's nll and every dlogit, one row's logits huge (a max of 1e30)
    assert kernels.CPU_PATH == cpu_path
    g = np.random.default_rng(N + V)
    logits = (g.standard_normal((N, V)) * 4).astype(dtype)
    logits[0, -1] = 1e30
    targets = g.integers(0, V, N)
    weights = g.random(N).astype(dtype)
    nll, d = ext.softmax_cross_entropy(logits, targets, weights)
    rnll, rd = reference.softmax_cross_entropy(logits, targets, weights)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(nll, rnll, **tol)
    np.testing.assert_allclose(d, rd, **tol)


def test_cpu_paths_give_nearly_the_same_float32_attention():
    # the paths differ only in the order of float32 sums: far below the twin tolerance, not zero
    q, k, v, bias, mult, dout = _attention_case(1, 2, 200, 64, np.float32, True, "causal", True, 3)
    outs = {}
    for path in kernels.cpu_paths():
        old = kernels.set_cpu_path(path)
        try:
            outs[path] = ext.attention_forward(q, k, v, 0.3, True, bias, mult)[0]
        finally:
            kernels.set_cpu_path(old)
    base = outs["portable"]
    for path, out in outs.items():
        assert np.linalg.norm(out - base) <= 1e-5 * np.linalg.norm(base), path
