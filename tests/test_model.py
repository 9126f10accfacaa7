"""The whole model: gradients of every parameter, the reference configuration, clear input errors."""
import numpy as np
import pytest
from conftest import tiny_model

from tinype import ModelConfig, Transformer, gradcheck, preset


@pytest.mark.parametrize("pe", ["nope", "learned", "sinusoidal"])
def test_whole_model_gradients(pe, tiny_batch):
    model = tiny_model(pe=pe)
    errors = gradcheck.check_model(model, *tiny_batch, max_entries=24)
    assert set(errors) == set(model.parameters())
    assert max(errors.values()) <= 1e-6


def test_every_entry_of_a_small_model():
    # No sampling: every entry of every parameter, on a model with a 16-byte vocabulary.
    model = tiny_model(pe="learned", vocab_size=16, d_model=8, n_head=2, T_train=4, n_layer=1)
    g = np.random.default_rng(5)
    idx, tg = g.integers(0, 16, (2, 4)), g.integers(0, 16, (2, 4))
    assert max(gradcheck.check_model(model, idx, tg).values()) <= 1e-6


def test_gradients_keys_match_parameters(tiny_batch):
    model = tiny_model()
    with pytest.raises(RuntimeError, match="loss"):
        model.gradients()
    model.loss(*tiny_batch)
    grads = model.backward()
    assert list(grads) == list(model.parameters())
    for k in grads:
        assert grads[k].shape == model.parameters()[k].shape and grads[k].dtype == np.float64


def test_reference_configuration_init():
    cfg, _ = preset("quick")
    model = Transformer(cfg, seed=0)
    p = model.parameters()
    C, L = 64, 2
    assert p["h0.attn.w_qkv"].shape == (C, 3 * C) and p["h0.mlp.w_fc"].shape == (C, 4 * C)
    assert p["pe.wpe"].shape == (64, C)
    assert abs(p["wte"].std() - 0.02) < 0.001
    assert abs(p["h0.mlp.w_fc"].std() - 0.02) < 0.001
    assert abs(p["h1.attn.w_proj"].std() - 0.02 / np.sqrt(2 * L)) < 0.001
    assert abs(p["h1.mlp.w_proj"].std() - 0.02 / np.sqrt(2 * L)) < 0.001
    assert np.all(p["h0.attn.b_qkv"] == 0) and np.all(p["ln_f.w"] == 1)
    assert all(v.dtype == np.float32 for v in p.values())
    assert not any("lm_head" in k for k in p)                  # tied to wte


def test_lm_head_is_tied_to_the_embedding():
    model = tiny_model(n_layer=1)
    idx = np.array([[3, 1, 4, 1]])
    logits = model.forward(idx)
    # Recompute the head by hand from the last LayerNorm: logits = ln_f(x) @ wte^T.
    _, cache = model._forward(idx)
    np.testing.assert_allclose(logits, cache.hf @ model.parameters()["wte"].T)


def test_forward_is_causal():
    model = tiny_model(pe="learned")
    a = np.array([[5, 6, 7, 8, 9, 10]])
    b = a.copy()
    b[0, 4:] = [200, 201]
    np.testing.assert_allclose(model.forward(a)[:, :4], model.forward(b)[:, :4], rtol=1e-12)


def test_loss_at_init_is_near_uniform():
    model = Transformer(ModelConfig(), seed=0)
    g = np.random.default_rng(0)
    loss = model.loss(g.integers(0, 256, (4, 64)), g.integers(0, 256, (4, 64)))
    assert abs(loss - np.log(256)) < 0.05


@pytest.mark.parametrize("idx, msg", [
    (np.array([[1, 300]]), "token id 300, outside 0..255"),
    (np.array([[-1, 2]]), "token id -1"),
    (np.array([[1.5, 2.0]]), "integer token ids"),
    (np.zeros((1, 2, 3), dtype=int), r"\(B, T\)"),
])
def test_bad_token_ids(idx, msg):
    with pytest.raises((ValueError, TypeError), match=msg):
        tiny_model().forward(idx)


def test_learned_table_wall_message():
    model = tiny_model(pe="learned", T_train=8)
    with pytest.raises(ValueError, match="trained for 8 positions, got 20; use a PE that extrapolates"):
        model.forward(np.zeros((1, 20), dtype=int))


def test_targets_shape_must_match():
    with pytest.raises(ValueError, match="targets shape"):
        tiny_model().loss(np.zeros((2, 4), dtype=int), np.zeros((2, 5), dtype=int))


@pytest.mark.parametrize("kw, msg", [
    (dict(d_model=30, n_head=4), "not divisible"),
    (dict(pe="nonsense"), "unknown positional encoding"),
    (dict(n_layer=0), "positive integer"),
    (dict(dtype="float16"), "float32"),
])
def test_bad_config(kw, msg):
    with pytest.raises(ValueError, match=msg):
        ModelConfig(**kw)


def test_float32_model_runs_in_float32():
    model = Transformer(ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=8))
    logits = model.forward(np.zeros((1, 8), dtype=int))
    assert logits.dtype == np.float32
    model.loss(np.zeros((1, 8), dtype=int), np.ones((1, 8), dtype=int))
    assert all(g.dtype == np.float32 for g in model.backward().values())


def test_sinusoidal_scale_option():
    m1 = tiny_model(pe="sinusoidal")
    m2 = tiny_model(pe="sinusoidal", pe_options={"scale": 1.0})
    t1 = m1.pe.table(np.arange(4.0))
    t2 = m2.pe.table(np.arange(4.0))
    np.testing.assert_allclose(t1 * np.sqrt(16), t2)


def test_attention_maps_are_the_kernels_probabilities():
    """Rows sum to 1, the causal mask is respected, and p @ v reproduces the layer-0 kernel output."""
    import tinype.reference as ref
    for pe in ("alibi", "rope", "nope"):
        model = Transformer(ModelConfig(n_layer=2, d_model=16, n_head=2, T_train=8, pe=pe, dtype="float64"))
        idx = np.random.default_rng(0).integers(0, 256, (2, 8))
        maps = model.attention_maps(idx)
        assert maps.shape == (2, 2, 2, 8, 8)
        np.testing.assert_allclose(maps.sum(axis=-1), 1.0, rtol=1e-12)
        assert np.all(np.triu(maps[0, 0, 0], 1) == 0)
        _, cache = model._trunk(idx)
        a = cache.blocks[0].attn
        np.testing.assert_allclose(maps[0] @ a.v, a.y, rtol=1e-10, atol=1e-12)
        assert ref.attention_logits is not None
