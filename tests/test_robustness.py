"""Property-based robustness: every compiled kernel (through tinype.kernels) and the model's public
entry points, fed random shapes, dtypes, memory layouts and values, including huge numbers, +-inf and
NaN. Each case must end in one of two ways: a result equal to the NumPy twin's (NaN where the twin has
NaN), or a ValueError/TypeError that says what is wrong. Anything else (another exception, a crash,
a silent mismatch) fails. Run with --hypothesis-show-statistics to see how many cases ran."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinype import ModelConfig, Transformer, kernels, reference

pytestmark = pytest.mark.skipif(kernels.BACKEND != "cython", reason="compares the compiled kernels with the twins")

SPECIAL = [0.0, 1.0, -1.0, 1e4, -1e4, 1e30, -1e30, np.inf, -np.inf, np.nan]
# attention's products of two 1e30 overflow float32 in a different order in each implementation,
# so its cases keep to +-1e4 among the huge values; NaN and inf inputs must be refused
SPECIAL_ATTENTION = [0.0, 1.0, -1.0, 1e4, -1e4, np.inf, -np.inf, np.nan]
DTYPES = [np.float32, np.float64, np.float16, np.int64]


@st.composite
def arrays(draw, shape, dtypes=DTYPES, special=SPECIAL):
    """An array of `shape` with a drawn dtype, a few special values, and maybe non-contiguous."""
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.default_rng(seed)
    a = rng.normal(size=shape) * draw(st.sampled_from([1.0, 1e3]))
    if a.size and draw(st.booleans()):
        for _ in range(draw(st.integers(1, 3))):
            a.flat[rng.integers(0, a.size)] = draw(st.sampled_from(special))
    with np.errstate(over="ignore", invalid="ignore"):
        a = a.astype(dtype)
    if a.ndim >= 2 and draw(st.booleans()):                    # same values, another memory layout
        a = np.asfortranarray(a)
    return a


def same_outcome(fast, slow, rtol):
    """Run both; they agree, or the compiled one raises a clear error."""
    try:
        with np.errstate(all="ignore"):
            got = fast()
    except (ValueError, TypeError) as err:
        assert str(err), "an exception without a message"
        return "refused"
    with np.errstate(all="ignore"):
        want = slow()
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if g is None or w is None:
            assert g is None and w is None
            continue
        g, w = np.asarray(g, dtype=np.float64), np.asarray(w, dtype=np.float64)
        assert g.shape == w.shape
        finite = np.isfinite(w) & (np.abs(w) < 1e25)            # beyond that float32 rounding dominates
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        np.testing.assert_allclose(g[finite], w[finite], rtol=rtol, atol=rtol * (1 + np.abs(w[finite]).max(initial=0)))
    return "computed"


def rtol_of(*arrays_):
    return 1e-9 if all(getattr(a, "dtype", np.float64) == np.float64 for a in arrays_) else 2e-3


# derandomize: the same cases on every run, so the suite stays deterministic
common = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@common
@given(data=st.data(), N=st.integers(0, 6), C=st.integers(1, 9))
def test_gelu_and_layernorm(data, N, C):
    x = data.draw(arrays((N, C)))
    same_outcome(lambda: kernels.gelu_forward(x), lambda: reference.gelu_forward(x), rtol_of(x))
    w, b = data.draw(arrays((C,))), data.draw(arrays((data.draw(st.sampled_from([C, C + 1])),)))
    same_outcome(lambda: kernels.layernorm_forward(x, w, b), lambda: reference.layernorm_forward(x, w, b),
                 1e-2 if x.dtype != np.float64 else 1e-7)


@common
@given(data=st.data(), N=st.integers(0, 6), V=st.integers(1, 9))
def test_softmax_cross_entropy(data, N, V):
    logits = data.draw(arrays((N, V)))
    targets = np.asarray(data.draw(st.lists(st.integers(-2, V + 1), min_size=N, max_size=N)), dtype=np.int64)
    weights = np.full(N, 1.0 / max(N, 1))
    outcome = same_outcome(lambda: kernels.softmax_cross_entropy(logits, targets, weights),
                           lambda: reference.softmax_cross_entropy(logits, targets, weights), 1e-3)
    if outcome == "computed" and np.isfinite(logits).all() and N:
        nll, dlogits = kernels.softmax_cross_entropy(logits, targets, weights)
        assert np.isfinite(nll).all() and np.isfinite(dlogits).all()      # +-1e30 logits stay finite


@common
@given(data=st.data(), N=st.integers(0, 6), C=st.integers(1, 5), V=st.integers(1, 6))
def test_embedding_backward(data, N, C, V):
    idx = np.asarray(data.draw(st.lists(st.integers(-1, V), min_size=N, max_size=N)), dtype=np.int64)
    dout = data.draw(arrays((N, C), [np.float32, np.float64]))
    same_outcome(lambda: kernels.embedding_backward(idx, dout, V), lambda: reference.embedding_backward(idx, dout, V),
                 rtol_of(dout))


@common
@given(data=st.data(), T=st.integers(1, 6), half=st.integers(1, 4), interleaved=st.booleans())
def test_apply_rotary(data, T, half, interleaved):
    x = data.draw(arrays((2, T, data.draw(st.sampled_from([2 * half, 2 * half + 1])))))
    cos, sin = data.draw(arrays((T, half))), data.draw(arrays((T, half)))
    same_outcome(lambda: kernels.apply_rotary(x, cos, sin, interleaved),
                 lambda: reference.apply_rotary(x, cos, sin, interleaved), rtol_of(x, cos, sin))


@common
@given(data=st.data(), N=st.integers(0, 6), dim=st.integers(-1, 9))
def test_sinusoidal_table(data, N, dim):
    pos = data.draw(arrays((N,), [np.float64, np.float32, np.int64]))
    base = data.draw(st.sampled_from([10000.0, 2.0, 0.0, -1.0, np.inf, np.nan]))
    same_outcome(lambda: kernels.sinusoidal_table(pos, dim, base), lambda: reference.sinusoidal_table(pos, dim, base),
                 1e-6)


@common
@given(data=st.data(), H=st.integers(0, 4), T=st.integers(-1, 9), causal=st.booleans(), power=st.booleans(),
       dim=st.integers(-2, 8))
def test_bias_tables(data, H, T, causal, power, dim):
    # any dtype and special values in the parameters; the twin gets them as the kernel does (_f)
    r1, r2, hs = (data.draw(arrays((H,))) for _ in range(3))
    n = max(T if causal else 2 * T - 1, 0)
    dtable = data.draw(arrays((H, n)))
    values = data.draw(arrays((3, H)))
    buckets = data.draw(st.lists(st.integers(-1, 3), min_size=n, max_size=n).map(lambda b: np.array(b, np.int64)))
    f = kernels._f
    for fast, slow in (
            (lambda: kernels.alibi_table(r1, T, causal), lambda: reference.alibi_table(f(r1), T, causal)),
            (lambda: kernels.kerple_table(r1, r2, T, causal, power),
             lambda: reference.kerple_table(f(r1), f(r2).astype(f(r1).dtype), T, causal, power)),
            (lambda: kernels.kerple_table_backward(dtable, r1, r2, T, causal, power),
             lambda: reference.kerple_table_backward(f(dtable).astype(f(r1).dtype), f(r1), f(r2).astype(f(r1).dtype),
                                                     T, causal, power)),
            (lambda: kernels.sandwich_table(hs, dim, T, causal), lambda: reference.sandwich_table(f(hs), dim, T, causal)),
            (lambda: kernels.bucket_table(values, buckets), lambda: reference.bucket_table(f(values), buckets)),
            (lambda: kernels.bucket_table_backward(dtable, buckets, 3),
             lambda: reference.bucket_table_backward(f(dtable), buckets, 3))):
        same_outcome(fast, slow, rtol_of(f(r1), f(values), f(dtable)))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(data=st.data(), T=st.integers(1, 9), D=st.integers(1, 5), causal=st.booleans(),
       with_bias=st.booleans(), with_scale=st.booleans())
def test_attention(data, T, D, causal, with_bias, with_scale):
    dts, sp = [np.float32, np.float64], SPECIAL_ATTENTION
    q = data.draw(arrays((1, 2, T, D), dts, sp))
    k = data.draw(arrays((1, 2, T, data.draw(st.sampled_from([D, D + 1]))), dts, sp))
    v = data.draw(arrays((1, 2, T, D), dts, sp))
    width = T if causal else 2 * T - 1
    bias = data.draw(arrays((2, data.draw(st.sampled_from([width, width + 1]))), dts, sp)) if with_bias else None
    scale = data.draw(arrays((T,), dts, sp)) if with_scale else None
    args = (q, k, v, D ** -0.5, causal, bias, scale)
    finite = all(a is None or np.isfinite(a).all() for a in (q, k, v, bias, scale))
    outcome = same_outcome(lambda: kernels.attention_forward(*args), lambda: reference.attention_forward(*args),
                           rtol_of(q, k, v) * 10)
    assert finite or outcome == "refused", "NaN or inf inputs must be refused"
    if outcome == "computed" and q.dtype == k.dtype == v.dtype:
        out, lse = reference.attention_forward(*args)
        dout = np.ones_like(out)
        same_outcome(lambda: kernels.attention_backward(dout, q, k, v, out, lse, D ** -0.5, causal, bias, scale),
                     lambda: reference.attention_backward(dout, q, k, v, out, lse, D ** -0.5, causal, bias, scale),
                     rtol_of(q, k, v) * 10)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(pe=st.sampled_from(["learned", "rope", "alibi", "t5", "kerple_log", "sinusoidal", "fire"]),
       idx=st.lists(st.lists(st.integers(-3, 300), min_size=1, max_size=10), min_size=1, max_size=3),
       as_float=st.booleans())
def test_model_forward_and_loss_on_arbitrary_ids(pe, idx, as_float):
    """Ragged, negative, too-large, float ids, or too long for the learned table: a clear error or a result."""
    model = Transformer(ModelConfig(n_layer=1, d_model=8, n_head=2, T_train=8, pe=pe), seed=0)
    try:
        arr = np.array(idx, dtype=np.float64 if as_float else np.int64)
    except ValueError:
        return                                                  # ragged lists are not an array at all
    try:
        logits = model.forward(arr)
    except (ValueError, TypeError) as err:
        assert str(err)
        return
    assert logits.shape == arr.shape + (256,) and np.isfinite(logits).all()
    loss = model.loss(arr, np.zeros_like(arr))
    assert np.isfinite(loss)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.data(), name=st.sampled_from(["apply_rope", "rope_inv_freq", "t5_relative_bucket", "alibi_slopes",
                                             "get", "generate"]))
def test_public_position_functions_and_generate(data, name):
    """The positions API and generate() with odd arguments: a finite result or a clear error."""
    from tinype import generate, positions
    try:
        with np.errstate(all="ignore"):
            if name == "apply_rope":
                D = data.draw(st.integers(1, 9))
                x = data.draw(arrays((2, data.draw(st.integers(1, 5)), D), [np.float32, np.float64]))
                out = positions.apply_rope(x, np.arange(x.shape[-2]), positions.rope_inv_freq(D)[0])
                assert out.shape == x.shape
            elif name == "rope_inv_freq":
                kind = data.draw(st.sampled_from(["linear", "ntk", "dynamic", "yarn", "llama3", "bogus"]))
                factor = data.draw(st.sampled_from([4.0, 1.0, 0.0, -2.0, np.nan]))
                inv, att = positions.rope_inv_freq(data.draw(st.integers(0, 66)), 10000.0,
                                                   {"rope_type": kind, "factor": factor,
                                                    "original_max_position_embeddings": 64}, seq_len=256)
                assert np.isfinite(inv).all() and np.isfinite(att)
            elif name == "t5_relative_bucket":
                rel = np.asarray(data.draw(st.lists(st.integers(-10 ** 6, 10 ** 6), max_size=20)), dtype=np.int64)
                b = positions.t5_relative_bucket(rel, data.draw(st.booleans()))
                assert b.shape == rel.shape and (b >= 0).all() and (b < 32).all()
            elif name == "alibi_slopes":
                n = data.draw(st.integers(-2, 70))
                assert np.all(positions.alibi_slopes(n) > 0)
            elif name == "get":
                positions.get(data.draw(st.sampled_from(["rope", "ROPE ", "rope+alibi", "", "x+", "t5+logn"])))
            else:
                model = Transformer(ModelConfig(n_layer=1, d_model=8, n_head=2, T_train=8, pe="alibi"), seed=0)
                text = generate(model, data.draw(st.text(max_size=5)), data.draw(st.integers(-1, 4)),
                                data.draw(st.sampled_from([0.0, 0.8, -1.0, np.inf])),
                                data.draw(st.sampled_from([None, 1, 0, 300])))
                assert isinstance(text, str)
    except (ValueError, TypeError) as err:
        assert str(err)
