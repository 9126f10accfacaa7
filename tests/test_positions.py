"""Positional encodings: golden values against the references, their defining properties, and the
gradient of the whole model for every encoding."""
import math

import numpy as np
import pytest
from conftest import tiny_model

from tinype import ModelConfig, Transformer, gradcheck, positions
from tinype.positions import alibi_slopes, apply_rope, log_positions, logn_scale, rope_inv_freq, t5_relative_bucket

ALL = positions.available()
COMBOS = ["rope+logn", "alibi+logn", "t5+logn", "rope+alibi"]


def setup_pe(name, **cfg):
    kw = dict(n_layer=1, d_model=32, n_head=4, T_train=16)
    kw.update(cfg)
    pe = positions.get(name)
    pe.setup(ModelConfig(**kw))
    return pe


# Golden values ---------------------------------------------------------------------------------------

def test_alibi_slopes_golden():
    # The ALiBi authors' get_slopes: 2^(-8h/n) for n a power of two; otherwise the nearest lower
    # power's slopes, then every other slope of the next power. Exponents of 2:
    golden = {
        1: [-8], 2: [-4, -8], 3: [-4, -8, -2], 4: [-2, -4, -6, -8], 5: [-2, -4, -6, -8, -1],
        6: [-2, -4, -6, -8, -1, -3], 7: [-2, -4, -6, -8, -1, -3, -5],
        8: [-1, -2, -3, -4, -5, -6, -7, -8],
        12: [-1, -2, -3, -4, -5, -6, -7, -8, -0.5, -1.5, -2.5, -3.5],
        16: [-0.5 * k for k in range(1, 17)],
    }
    for n in range(9, 16):
        if n != 12:
            golden[n] = golden[8] + [-0.5 - k for k in range(n - 8)]
    for n, exps in golden.items():
        np.testing.assert_allclose(alibi_slopes(n), 2.0 ** np.array(exps), rtol=1e-14, err_msg=f"{n} heads")
    s12 = alibi_slopes(12)
    assert not np.all(np.diff(s12) < 0)                           # 12 heads: not monotone, by design


def test_t5_buckets_golden():
    d = np.arange(4096)
    # Bucket histograms over distances 0..4095, taken from transformers' T5Attention (5.23):
    causal_past = [1] * 16 + [3, 2, 3, 3, 4, 4, 5, 6, 6, 7, 8, 10, 10, 12, 14, 3983]
    bidir_future = [1] + [0] * 16 + [1] * 7 + [4, 4, 7, 9, 14, 18, 27, 4005]
    bidir_past = [1] * 8 + [4, 4, 7, 9, 14, 18, 27, 4005]
    assert np.bincount(t5_relative_bucket(-d, False)).tolist() == causal_past
    assert np.bincount(t5_relative_bucket(d, True)).tolist() == bidir_future
    assert np.bincount(t5_relative_bucket(-d, True)).tolist() == bidir_past
    assert np.all(t5_relative_bucket(d, False) == 0)               # causal: the future is bucket 0
    # hand-computed points: 16 + floor(ln(d/16) / ln 8 * 16)
    pts = {0: 0, 15: 15, 16: 16, 32: 21, 45: 23, 46: 24, 64: 26, 100: 30, 127: 31, 128: 31, 4095: 31}
    for dist, b in pts.items():
        assert t5_relative_bucket(-dist, False) == b, dist


GOLDEN_ROPE = {   # transformers 5.23 ROPE_INIT_FUNCTIONS (float32), head_dim 16, base 10000, trained length 64
    "linear": ({"factor": 4.0}, None,
               [0.25, 0.079056941, 0.0250000004, 0.00790569466, 0.00249999994, 0.000790569466, 0.000250000012,
                7.90569466e-05], 1.0),
    "dynamic": ({"factor": 2.0}, 256,
                [1, 0.239481375, 0.057351321, 0.0137345716, 0.00328917382, 0.00078769587, 0.000188638471,
                 4.51753949e-05], 1.0),
    "yarn": ({"factor": 4.0}, None,
             [1, 0.237170815, 0.049999997, 0.00790569466, 0.00249999994, 0.000790569466, 0.000250000012,
              7.90569466e-05], 1.138629436111989),
    "llama3": ({"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}, None,
               [1, 0.244384587, 0.0130422562, 0.00395284733, 0.00124999997, 0.000395284733, 0.000125000006,
                3.95284733e-05], 1.0),
}


@pytest.mark.parametrize("kind", list(GOLDEN_ROPE))
def test_rope_scalings_golden(kind):
    extra, seq_len, inv, af = GOLDEN_ROPE[kind]
    scaling = dict(extra, rope_type=kind, original_max_position_embeddings=64)
    ours, oaf = rope_inv_freq(16, 10000.0, scaling, seq_len=seq_len)
    np.testing.assert_allclose(ours, inv, rtol=2e-7)              # the golden values are float32
    assert oaf == pytest.approx(af, rel=1e-12)


def test_rope_default_and_ntk():
    inv, af = rope_inv_freq(16)
    np.testing.assert_allclose(inv, 10000.0 ** (-np.arange(0, 16, 2) / 16), rtol=1e-15)
    assert af == 1.0
    ntk, _ = rope_inv_freq(16, scaling={"rope_type": "ntk", "factor": 4.0})
    np.testing.assert_allclose(ntk, (10000.0 * 4 ** (16 / 14)) ** (-np.arange(0, 16, 2) / 16), rtol=1e-14)
    assert ntk[0] == 1.0 and ntk[-1] == pytest.approx(inv[-1] / 4, rel=1e-12)   # NTK: the slowest pair / s
    with pytest.raises(ValueError, match="even head dimension"):
        rope_inv_freq(15)
    with pytest.raises(ValueError, match="unknown rope_type"):
        rope_inv_freq(16, scaling={"rope_type": "magic"})


def test_against_transformers_when_installed():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    from transformers.models.t5.modeling_t5 import T5Attention
    D, H = 16, 4
    for kind, (extra, seq_len, _, _) in GOLDEN_ROPE.items():
        scaling = dict(extra, rope_type=kind)
        if kind in ("yarn", "llama3"):
            scaling["original_max_position_embeddings"] = 64
        maxpos = {"yarn": 256, "llama3": 512}.get(kind, 64)
        cfg = LlamaConfig(hidden_size=D * H, num_attention_heads=H, head_dim=D, max_position_embeddings=maxpos,
                          rope_theta=10000.0, rope_scaling=scaling)
        kw = {"seq_len": seq_len} if seq_len else {}
        inv, af = ROPE_INIT_FUNCTIONS[kind](cfg, "cpu", **kw)
        ours, oaf = rope_inv_freq(D, 10000.0, dict(scaling, original_max_position_embeddings=64), seq_len=seq_len)
        np.testing.assert_allclose(ours, inv.numpy(), rtol=2e-7, err_msg=kind)
        assert oaf == pytest.approx(af)
    rp = torch.arange(-4095, 4096)
    for bidir in (True, False):
        ref = T5Attention._relative_position_bucket(rp, bidirectional=bidir, num_buckets=32, max_distance=128)
        np.testing.assert_array_equal(t5_relative_bucket(rp.numpy(), bidir), ref.numpy())


# RoPE ------------------------------------------------------------------------------------------------

def rope_scores(q, k, pos, interleaved):
    inv, _ = rope_inv_freq(q.shape[-1])
    return apply_rope(q, pos, inv, interleaved=interleaved) @ apply_rope(k, pos, inv, interleaved=interleaved).T


def test_rope_layouts_agree_after_permuting_channels():
    g = np.random.default_rng(0)
    D, T = 8, 6
    q, k = g.standard_normal((T, D)), g.standard_normal((T, D))
    pos = np.arange(T, dtype=float)
    # interleaved pair k = channels (2k, 2k+1); rotate-half pair k = channels (k, k + D/2)
    perm = np.concatenate([np.arange(0, D, 2), np.arange(1, D, 2)])
    np.testing.assert_allclose(rope_scores(q[:, perm], k[:, perm], pos, False), rope_scores(q, k, pos, True),
                               rtol=1e-12)
    assert not np.allclose(rope_scores(q, k, pos, False), rope_scores(q, k, pos, True))


def test_rope_scores_depend_on_distance_only():
    g = np.random.default_rng(1)
    q, k = g.standard_normal((5, 8)), g.standard_normal((5, 8))
    pos = np.arange(5, dtype=float)
    np.testing.assert_allclose(rope_scores(q, k, pos, False), rope_scores(q, k, pos + 1000.5, False), rtol=1e-9)


def test_rope_variants_equal_rope_within_training_length():
    base = setup_pe("rope")
    for name in positions.EVAL_TIME_VARIANTS:
        pe = setup_pe(name)
        for a, b in zip(pe.tables(np.arange(16.0)), base.tables(np.arange(16.0))):
            np.testing.assert_allclose(a, b, rtol=1e-15, err_msg=name)
    # beyond it they differ, each in its own way
    cos = {name: setup_pe(name).tables(np.arange(64.0))[0] for name in positions.EVAL_TIME_VARIANTS}
    names = list(cos)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            assert not np.allclose(cos[names[i]], cos[names[j]]), (names[i], names[j])


def test_yarn_attention_factor_and_pi_interpolation():
    yarn = setup_pe("rope_yarn")                                    # T_train 16
    inv, af = yarn.frequencies(64)
    assert af == pytest.approx(0.1 * math.log(4) + 1)
    pi = setup_pe("rope_pi")
    c64, _ = pi.tables(np.arange(64.0))
    c16, _ = setup_pe("rope").tables(np.arange(64.0) / 4)
    np.testing.assert_allclose(c64, c16, rtol=1e-12)               # PI: position p reads as p / s


def test_xpos_decays_with_distance_and_ignores_the_centre():
    pe = setup_pe("xpos", d_model=16, n_head=2)
    g = np.random.default_rng(2)
    q = np.abs(g.standard_normal((1, 1, 8, 8)))
    (qa, ka), _ = pe.rotate(q, q, np.arange(8.0))
    (qr, kr), _ = setup_pe("rope", d_model=16, n_head=2).rotate(q, q, np.arange(8.0))
    # per pair k, xPos multiplies q_i . k_j by zeta_k^((i - j)/512): check on one pair's contribution
    zeta = (np.arange(0, 8, 2) + 0.4 * 8) / (1.4 * 8)
    assert np.all(zeta < 1)
    sa, sr = qa[0, 0] @ ka[0, 0].T, qr[0, 0] @ kr[0, 0].T
    assert not np.allclose(sa, sr) and np.allclose(np.diag(sa), np.diag(sr))   # distance 0: no decay
    # shifting every position leaves the scores unchanged (the exponent is relative)
    (qb, kb), _ = pe.rotate(q, q, np.arange(8.0) + 37)
    np.testing.assert_allclose(qb[0, 0] @ kb[0, 0].T, sa, rtol=1e-9)


def test_rope_needs_an_even_head_dim():
    with pytest.raises(ValueError, match="even head dimension"):
        Transformer(ModelConfig(d_model=12, n_head=4, pe="rope"))


# Biases ----------------------------------------------------------------------------------------------

def test_alibi_bias_table():
    pe = setup_pe("alibi")
    b = pe.figure_data(6)["bias"]
    np.testing.assert_allclose(b, -alibi_slopes(4)[:, None] * np.arange(6)[None, :], rtol=1e-7)
    two = setup_pe("alibi", causal=False).bias_over_distance(4)
    assert two.shape == (4, 7)
    np.testing.assert_allclose(two[:, 3], 0)
    np.testing.assert_allclose(two[:, 0], two[:, 6])                # -m |i - j|: symmetric


def test_t5_bias_is_a_lookup_of_shared_buckets():
    pe = setup_pe("t5", T_train=200)
    params = {"t5_bias": np.arange(32 * 4, dtype=np.float32).reshape(32, 4)}
    table, b = pe.bias(params, 200, None)
    assert table.shape == (4, 200)
    np.testing.assert_array_equal(table[:, 150], params["t5_bias"][31])   # far distances share the last bucket
    np.testing.assert_array_equal(table[:, 3], params["t5_bias"][3])


def test_kerple_formulas_and_floor():
    pe = setup_pe("kerple_log")
    params = {"kerple_r1": np.array([1.0, 2.0, 0.5, 0.001], np.float32), "kerple_r2": np.ones(4, np.float32)}
    b = pe.bias_over_distance(params, 5)
    np.testing.assert_allclose(b[1], -2 * np.log1p(np.arange(5)), rtol=1e-6)
    np.testing.assert_allclose(b[3], -0.01 * np.log1p(np.arange(5)), rtol=1e-6)      # r1 floored at 0.01
    pw = setup_pe("kerple_power")
    b = pw.bias_over_distance({"kerple_r1": np.ones(4, np.float32), "kerple_r2": np.full(4, 3.0, np.float32)}, 4)
    np.testing.assert_allclose(b[0], -np.arange(4.0) ** 2, rtol=1e-6)                 # r2 capped at 2


def test_sandwich_is_zero_at_distance_zero_and_negative_beyond():
    pe = setup_pe("sandwich")
    b = pe.bias_over_distance(50)
    np.testing.assert_allclose(b[:, 0], 0, atol=1e-5)
    assert np.all(b[:, 1:] < 0)
    np.testing.assert_allclose(b[0, 1:] / b[3, 1:], 4.0, rtol=1e-5)  # head h is divided by 8h/H


def test_fire_normalised_distance_is_in_unit_interval():
    pe = setup_pe("fire")
    params = pe.init_params(np.random.default_rng(0))
    *_, u = pe._normalised(params, 100)
    assert u.min() >= 0 and u.max() <= 1 + 1e-12
    dense = pe.figure_data(20, params)["bias"]
    assert dense.shape == (4, 20, 20) and np.all(dense[:, 0, 1:] == 0)    # causal: upper triangle unused


def test_logn_and_log_positions():
    s = logn_scale(200, 64)
    np.testing.assert_array_equal(s[:64], 1.0)
    assert s[127] == pytest.approx(math.log(128) / math.log(64))
    p = log_positions(np.array([0.0, 64.0, 512.0]), 64)
    np.testing.assert_allclose(p[:2], [0.0, 64.0])
    assert p[2] < 2 * 64                                            # 8x the length lands below 2x


def test_randomized_positions():
    pe = setup_pe("randomized_sinusoidal")                           # L_max = 8 * 16
    rng = np.random.default_rng(0)
    p = pe.positions(16, train=True, rng=rng)
    assert np.all(np.diff(p) > 0) and p.min() >= 0 and p.max() < 128
    assert not np.array_equal(p, pe.positions(16, train=True, rng=rng))
    np.testing.assert_array_equal(pe.positions(40), pe.positions(40))   # evaluation is reproducible
    # a window shorter than T_train gets what it gets in training: the first t of T_train positions
    full = pe.positions(16)
    np.testing.assert_array_equal(pe.positions(5), full[:5])
    assert full[4] < 0.6 * 128                      # not 5 positions spread over the whole [0, L_max)
    longer = pe.positions(40)
    assert len(longer) == 40 and np.all(np.diff(longer) > 0) and longer.max() < 128 and longer[39] > 100
    with pytest.raises(ValueError, match="cannot hold"):
        pe.check_length(129)
    learned = setup_pe("randomized_learned")
    assert learned.init_params(np.random.default_rng(0))["wpe"].shape == (128, 32)
    ranged = positions.get("randomized_rope", eval_positions="range")
    ranged.setup(ModelConfig(n_layer=1, d_model=32, n_head=4, T_train=16))
    np.testing.assert_array_equal(ranged.positions(10), np.arange(10))


def test_combinations():
    pe = setup_pe("rope+logn")
    d = pe.figure_data(40)
    assert {"cos", "sin", "logit_scale"} <= set(d)
    with pytest.raises(ValueError, match="both use the embed hook"):
        positions.get("learned+sinusoidal")
    with pytest.raises(ValueError, match="unknown positional encoding"):
        positions.get("rope+wat")
    with pytest.raises(ValueError, match="options cannot be given"):
        positions.get("rope+logn", base=500)


def test_every_encoding_has_figure_data():
    for name in ALL + COMBOS:
        d = setup_pe(name).figure_data(16)
        assert d["positions"].shape == (16,)
        if name != "nope":
            assert set(d) - {"positions"}, name


# The whole model, every encoding ------------------------------------------------------------------------

@pytest.mark.parametrize("pe", ALL + COMBOS)
def test_whole_model_gradients_every_encoding(pe, tiny_batch):
    model = tiny_model(pe=pe)
    errors = gradcheck.check_model(model, *tiny_batch, max_entries=8)
    assert max(errors.values()) <= 1e-6, errors
    pe_params = [k for k in model.parameters() if k.startswith("pe.")]
    assert all(k in errors for k in pe_params)


@pytest.mark.parametrize("pe", ["alibi", "t5", "fire", "kerple_log", "sandwich"])
def test_bidirectional_bias_gradients(pe, tiny_batch):
    model = tiny_model(pe=pe, causal=False)
    assert max(gradcheck.check_model(model, *tiny_batch, max_entries=12).values()) <= 1e-6


def test_extrapolating_encodings_run_past_training_length():
    for pe in ALL + COMBOS:
        if pe in ("learned",):
            continue
        model = tiny_model(pe=pe, dtype="float32")                  # T_train 8
        logits = model.forward(np.zeros((1, 40), dtype=int))
        assert np.all(np.isfinite(logits)), pe
