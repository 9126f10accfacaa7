"""Incremental decoding with a KV cache equals recomputing the whole context, for every encoding."""
import numpy as np
import pytest

from tinype import ModelConfig, Transformer, generate, positions
from tinype.kvcache import CacheInvalid, ContextLimit
from tinype.reference import attention_decode, attention_forward

# Scalings whose frequencies follow the current length L (s = L / T_train, or dynamic NTK's base):
# recomputing the context at length L changes every earlier byte's hidden state in the layers above
# the first, which a cache (any cache) keeps as they were computed. Their keys are cached unrotated and
# rotated again at each length, so one layer is exact; deeper models are held to it with a fixed factor.
LENGTH_DEPENDENT = {"rope_pi", "rope_ntk", "rope_yarn", "rope_llama3", "rope_dynamic"}
ALL = positions.available() + ["rope+logn", "alibi+logn"]


def model_for(pe, n_layer=2, dtype="float32", **pe_options):
    cfg = ModelConfig(n_layer=n_layer, d_model=32, n_head=4, T_train=16, pe=pe, pe_options=pe_options,
                      dtype=dtype)
    m = Transformer(cfg, seed=1)
    rng = np.random.default_rng(2)
    for k, v in m.params.items():           # move the PE's parameters off their init, so that they matter
        if k.startswith("pe."):
            m.params[k] = (v + 0.1 * rng.normal(size=v.shape)).astype(v.dtype)
    return m


def cached_vs_full(m, ids, prompt=5):
    """Largest |cached logits - full-recompute logits| over every step, and the last length reached."""
    cache = m.new_cache(capacity=4)                      # small: the buffers must grow on the way
    worst = np.abs(m.decode(ids[None, :prompt], cache) - m.forward(ids[None, :prompt])).max()
    for L in range(prompt + 1, len(ids) + 1):
        try:
            lg = m.decode(ids[None, L - 1:L], cache)[0, -1]
        except (ContextLimit, CacheInvalid):
            return worst, L - 1
        worst = max(worst, np.abs(lg - m.forward(ids[None, :L])[0, -1]).max())
    return worst, len(ids)


@pytest.mark.parametrize("pe", ALL)
def test_cached_logits_equal_full_recomputation_past_T_train(pe):
    ids = np.random.default_rng(0).integers(0, 256, 70)           # 70 bytes: past 4 x T_train = 64
    m = model_for(pe, n_layer=1 if pe in LENGTH_DEPENDENT else 2)
    worst, reached = cached_vs_full(m, ids)
    assert worst < 1e-5, f"{pe}: cached logits differ by {worst:.2e}"
    if pe == "learned":
        assert reached == 16                              # its table has T_train rows
    elif pe.startswith("randomized"):
        assert reached == 16                              # one draw up to T_train, per length past it
    else:
        assert reached == 70


@pytest.mark.parametrize("pe", ["rope_pi", "rope_ntk", "rope_yarn", "rope_llama3"])
def test_fixed_factor_scalings_are_exact_in_deep_models(pe):
    m = model_for(pe, n_layer=2, factor=4.0)
    assert m.new_cache().rotated                          # a fixed factor: keys are cached rotated
    worst, reached = cached_vs_full(m, np.random.default_rng(3).integers(0, 256, 70))
    assert reached == 70 and worst < 1e-5


def test_length_dependent_rotations_cache_keys_before_rotation():
    for pe in LENGTH_DEPENDENT | {"xpos"}:
        assert not model_for(pe).new_cache().rotated, pe
    for pe in ("rope", "alibi", "nope", "rope+logn", "t5"):
        assert model_for(pe).new_cache().rotated, pe


def test_caching_rotated_keys_under_dynamic_ntk_would_be_wrong():
    """The bug of transformers #25104, reproduced: keys rotated with the base of their own step
    differ from the cache-before-rotation path, which equals full recomputation (one layer)."""
    m = model_for("rope_dynamic", n_layer=1, dtype="float64")
    ids = np.random.default_rng(4).integers(0, 256, 48)
    wrong = m.new_cache()
    wrong.rotated = True                                  # force the buggy path
    m.decode(ids[None, :5], wrong)
    for L in range(6, 49):
        bad = m.decode(ids[None, L - 1:L], wrong)[0, -1]
    full = m.forward(ids[None, :48])[0, -1]
    worst, _ = cached_vs_full(m, ids)
    assert worst < 1e-12 and np.abs(bad - full).max() > 1e-6


@pytest.mark.parametrize("pe", ALL)
def test_greedy_generation_is_the_same_with_and_without_the_cache(pe, capsys):
    m = model_for(pe, n_layer=1 if pe in LENGTH_DEPENDENT else 2)
    notes = []
    fast = generate(m, "def f(x):", max_new_tokens=60, temperature=0, log=notes.append)
    slow = generate(m, "def f(x):", max_new_tokens=60, temperature=0, use_cache=False, log=notes.append)
    assert fast == slow
    if pe == "learned":
        assert len(notes) == 1 and "sliding window of the last 16 bytes" in notes[0]


def test_sampling_with_the_cache_draws_the_same_bytes():
    m = model_for("alibi")
    a = generate(m, "x = ", max_new_tokens=40, temperature=0.8, top_k=20, seed=5)
    b = generate(m, "x = ", max_new_tokens=40, temperature=0.8, top_k=20, seed=5, use_cache=False)
    assert a == b


def test_decode_refuses_a_cache_of_another_batch_size():
    m = model_for("rope")
    with pytest.raises(ValueError, match="batch of 2"):
        m.decode(np.zeros((1, 3), dtype=np.int64), m.new_cache(batch_size=2))


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("dense", [False, True])
def test_attention_decode_equals_the_last_rows_of_full_attention(n, dense):
    rng = np.random.default_rng(5)
    B, H, L, D = 2, 3, 11, 8
    q, k, v = (rng.normal(size=(B, H, L, D)) for _ in range(3))
    scale = rng.uniform(0.5, 2.0, L)
    if dense:
        bias = rng.normal(size=(H, L, L))
        rows = bias[:, L - n:]
    else:
        bias = rng.normal(size=(H, L + 5))                 # a table wider than the context, as the cache keeps it
        rows = bias
        bias = bias[:, :L]
    full, _ = attention_forward(q, k, v, 0.3, True, bias, scale)
    out = attention_decode(q[:, :, L - n:], k, v, 0.3, rows, scale[L - n:])
    np.testing.assert_allclose(out, full[:, :, L - n:], rtol=1e-12, atol=1e-12)


def test_fire_bias_rows_are_rows_of_its_dense_bias():
    m = model_for("fire", dtype="float64")
    params = {k[3:]: v for k, v in m.params.items() if k.startswith("pe.")}
    L, t0 = 40, 37
    full, _ = m.pe.bias(params, L, m.pe.positions(L))
    rows = m.pe.bias_rows(params, t0, L, m.pe.positions(L))
    np.testing.assert_allclose(rows, full[:, t0:], rtol=1e-12, atol=1e-12)
    assert m.new_cache().bias_kind == "dense" and model_for("alibi").new_cache().bias_kind == "table"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["none", "table", "dense"])
@pytest.mark.parametrize("n", [1, 4])
def test_compiled_decode_kernel_equals_its_twin(dtype, kind, n):
    """Views of longer buffers (as the cache hands them over), every bias form, one and several queries;
    and a product big enough to take the parallel loop."""
    from tinype import kernels
    if kernels.BACKEND != "cython":
        pytest.skip("the compiled kernels are not built (NumPy backend)")
    rng = np.random.default_rng(7)
    for B, H, L, D in ((2, 3, 37, 8), (1, 8, 2100, 64)):
        k = rng.normal(size=(B, H, L + 9, D)).astype(dtype)[:, :, :L]
        v = rng.normal(size=(B, H, L + 9, D)).astype(dtype)[:, :, :L]
        q = rng.normal(size=(B, H, n, D)).astype(dtype)
        bias = {"none": None, "table": rng.normal(size=(H, L + 4)).astype(dtype),
                "dense": rng.normal(size=(H, n, L)).astype(dtype)}[kind]
        ls = rng.uniform(0.5, 2.0, n).astype(dtype)
        got = kernels.attention_decode(q, k, v, 0.3, bias, ls)
        want = attention_decode(q, k, v, 0.3, bias, ls)
        # float32 sums of 2100 terms: held to 1e-5 of the output's scale, float64 to 1e-12
        tol = 1e-5 if dtype == "float32" else 1e-12
        assert np.abs(got - want).max() <= tol * np.abs(want).max()


def test_decode_kernel_refuses_bad_input():
    from tinype import kernels
    q = np.zeros((1, 2, 1, 4), np.float32)
    k = np.zeros((1, 2, 5, 4), np.float32)
    with pytest.raises(ValueError, match="bias must be"):
        kernels.attention_decode(q, k, k, 1.0, np.zeros((2, 3), np.float32))       # table narrower than L
    with pytest.raises(TypeError, match="float32 or float64"):
        kernels.attention_decode(q.astype(np.int32), k, k, 1.0)
    with pytest.raises(ValueError, match="k and v"):
        kernels.attention_decode(q, k[:, :1], k, 1.0)
    with pytest.raises(ValueError, match="last axis"):
        kernels.attention_decode(q, np.zeros((1, 2, 5, 8), np.float32)[..., ::2], k, 1.0)



def _blas_threads():
    """The thread count of every BLAS threadpoolctl finds (skips the test where it finds none)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    found = [d["num_threads"] for d in threadpoolctl.threadpool_info() if d["user_api"] == "blas"]
    if not found:
        pytest.skip("threadpoolctl finds no BLAS under NumPy here")
    return found


def _two_blas_threads():
    """The BLAS at two threads, so that generate() has threads to take and give back."""
    limits = pytest.importorskip("threadpoolctl").threadpool_limits(limits=2, user_api="blas")
    if _blas_threads() == [1] * len(_blas_threads()):
        limits.restore_original_limits()
        pytest.skip("this BLAS runs one thread only")
    return limits


def test_generation_runs_numpy_blas_on_one_thread_and_gives_the_threads_back():
    # each new byte's products are tiny: OpenBLAS's second thread costs more than it saves, and far more
    # when another program holds the other core, so generate() holds the BLAS at one thread (and only then)
    before = _blas_threads()
    m = model_for("rope")
    seen = []
    decode = m.decode

    def watched(idx, cache):
        seen.append(_blas_threads())
        return decode(idx, cache)

    m.decode = watched
    with _two_blas_threads():                                            # two threads to give back
        outside = _blas_threads()
        text = generate(m, "def ", max_new_tokens=5, temperature=0)
        assert _blas_threads() == outside
    assert len(text) == 5 and len(seen) == 5
    assert all(s == [1] * len(before) for s in seen), seen
    m.decode = decode
    assert text == generate(m, "def ", max_new_tokens=5, temperature=0, use_cache=False)


def test_generation_gives_the_blas_threads_back_when_it_leaves_the_cache():
    # the learned table runs out of positions: generation goes on by recomputing a window, whose products
    # are matrices, with the caller's BLAS threads again; and an error inside restores them too
    m = model_for("learned")                                   # T_train 16: the cache ends at 16 bytes
    seen = []
    forward = m.forward

    def watched(idx, *args, **kwargs):
        seen.append(_blas_threads())
        return forward(idx, *args, **kwargs)

    m.forward = watched
    with _two_blas_threads():
        outside = _blas_threads()
        generate(m, "abc", max_new_tokens=20, temperature=0, log=lambda _: None)
        assert seen and all(s == outside for s in seen), (seen, outside)
        m.forward = forward

        def broken(idx, cache):
            assert _blas_threads() == [1] * len(outside)
            raise RuntimeError("a failing step")

        m.decode = broken
        with pytest.raises(RuntimeError, match="a failing step"):
            generate(m, "abc", max_new_tokens=3)
        assert _blas_threads() == outside
