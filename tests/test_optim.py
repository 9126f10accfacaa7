"""AdamW, clipping and the schedule, against their formulas."""
import math

import numpy as np
import pytest

from tinype.optim import AdamW, clip_grad_norm, decays, lr_at


def test_decay_mask():
    assert decays("wte", np.zeros((4, 4)))
    assert decays("h0.attn.w_qkv", np.zeros((4, 12)))
    assert not decays("h0.attn.b_qkv", np.zeros(12))
    assert not decays("h0.ln_1.w", np.zeros(4))
    assert not decays("pe.wpe", np.zeros((8, 4)))            # PE parameters are never decayed


def test_adamw_matches_formula_over_steps():
    g = np.random.default_rng(0)
    params = {"w": g.standard_normal((3, 2)), "b": g.standard_normal(2)}
    ref = {k: v.copy() for k, v in params.items()}
    opt = AdamW(params, lr=0.1, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    m = {k: np.zeros_like(v) for k, v in ref.items()}
    v2 = {k: np.zeros_like(v) for k, v in ref.items()}
    for t in range(1, 4):
        grads = {k: g.standard_normal(v.shape) for k, v in ref.items()}
        lr = 0.1 / t
        opt.step(grads, lr)
        for k in ref:
            if k == "w":
                ref[k] = ref[k] * (1 - lr * 0.1)
            m[k] = 0.9 * m[k] + 0.1 * grads[k]
            v2[k] = 0.95 * v2[k] + 0.05 * grads[k] ** 2
            mhat, vhat = m[k] / (1 - 0.9 ** t), v2[k] / (1 - 0.95 ** t)
            ref[k] = ref[k] - lr * mhat / (np.sqrt(vhat) + 1e-8)
    for k in ref:
        np.testing.assert_allclose(params[k], ref[k], rtol=1e-12)


def test_state_dict_roundtrip():
    params = {"w": np.ones((2, 2))}
    opt = AdamW(params, lr=0.1)
    opt.step({"w": np.full((2, 2), 0.5)})
    arrays, meta = opt.state_dict()
    opt2 = AdamW({"w": np.ones((2, 2))}, lr=0.1)
    opt2.load_state_dict(arrays, meta)
    assert opt2.t == 1 and np.array_equal(opt2.m["w"], opt.m["w"]) and np.array_equal(opt2.v["w"], opt.v["w"])


def test_clip_grad_norm():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    norm = clip_grad_norm(grads, 1.0)
    assert norm == pytest.approx(5.0)
    total = math.sqrt(sum(float(np.sum(g ** 2)) for g in grads.values()))
    assert total == pytest.approx(1.0, rel=1e-6)
    small = {"a": np.array([0.3, 0.4])}
    clip_grad_norm(small, 1.0)
    np.testing.assert_array_equal(small["a"], [0.3, 0.4])    # under the limit: untouched


def test_schedule_shape():
    lr, steps, warm = 1.0, 100, 10
    values = [lr_at(s, lr, steps, warm) for s in range(steps)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(values[:10], values[1:10]))        # warmup increases
    assert all(a >= b for a, b in zip(values[10:], values[11:]))          # cosine decreases
    assert values[-1] == pytest.approx(0.1)                               # ends at 0.1 x lr
    mid = 10 + (steps - 1 - 10) / 2
    assert lr_at(mid, lr, steps, warm) == pytest.approx(0.55)             # halfway down the cosine
