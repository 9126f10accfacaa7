"""Data-parallel training steps (tinype.parallel): the batch in shards, the gradients added.

What must hold: the sharded step is the full batch's loss and gradient (to float rounding, with the
shards weighted by their counted targets); it does not depend on the number of threads (bit for
bit); one shard is exactly model.loss + model.backward; and the configuration field keeps the keys
of earlier runs.
"""
import numpy as np
import pytest
from conftest import tiny_config

from tinype import TrainConfig, Transformer, preset
from tinype import positions as pe_registry
from tinype.errors import InvalidValue
from tinype.parallel import ShardedStep, shard_slices, thread_budget
from tinype.train import train


def _batch(B=5, T=8, seed=0):
    r = np.random.default_rng(seed)
    x, y = r.integers(0, 256, (B, T)), r.integers(0, 256, (B, T))
    y[0, :5] = -1                            # uneven counted targets: the shards must weigh by them
    y[3, :] = -1
    return x, y


def _copy(grads):
    return {k: v.copy() for k, v in grads.items()}


def test_shard_slices_cover_the_batch_in_order():
    assert shard_slices(5, 2) == [slice(0, 2), slice(2, 5)]
    assert shard_slices(32, 2) == [slice(0, 16), slice(16, 32)]
    assert shard_slices(2, 3) == [slice(0, 1), slice(1, 2)]          # never an empty shard
    for B in range(1, 12):
        for n in range(1, 6):
            parts = shard_slices(B, n)
            assert len(parts) == min(B, n)
            assert [i for s in parts for i in range(s.start, s.stop)] == list(range(B))
            sizes = [s.stop - s.start for s in parts]
            assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("pe", pe_registry.available())
@pytest.mark.parametrize("shards", [2, 3])
def test_sharded_step_is_the_full_batch(pe, shards):
    """float64: loss and every gradient equal the full batch's to rounding, for every encoding
    (the randomized ones draw their training positions once for all shards)."""
    model = Transformer(tiny_config(pe=pe), seed=1)
    x, y = _batch()
    loss = model.loss(x, y, train=True, rng=np.random.default_rng(7))
    full = _copy(model.backward())
    with ShardedStep(model, shards, threads=2) as step:
        got, grads = step(x, y, train=True, rng=np.random.default_rng(7))
    assert got == pytest.approx(loss, rel=1e-12)
    assert set(grads) == set(full)
    for k in full:
        np.testing.assert_allclose(grads[k], full[k], rtol=1e-9, atol=1e-13, err_msg=k)
    assert model.gradients() is grads


def test_unweighted_shards_would_be_wrong():
    """The check above can fail: the plain mean of the two shards' losses is not the batch's."""
    model = Transformer(tiny_config(), seed=1)
    x, y = _batch()
    loss = model.loss(x, y)
    halves = [model.loss(x[s], y[s]) for s in shard_slices(5, 2)]
    assert abs(np.mean(halves) - loss) > 1e-3


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("pe", ["learned", "rope", "alibi", "randomized_rope"])
def test_threads_do_not_change_a_bit(pe, dtype):
    model = Transformer(tiny_config(pe=pe, dtype=dtype, d_model=32, n_head=4, T_train=16), seed=2)
    x, y = _batch(B=6, T=16, seed=3)
    out = []
    for threads in (1, 2, 1):
        with ShardedStep(model, 2, threads=threads) as step:
            assert step.threads == threads
            loss, grads = step(x, y, train=True, rng=np.random.default_rng(5))
            out.append((loss, _copy(grads)))
    for loss, grads in out[1:]:
        assert loss == out[0][0]
        for k in grads:
            assert np.array_equal(grads[k], out[0][1][k]), k


def test_one_shard_is_the_plain_step():
    model = Transformer(tiny_config(dtype="float32"), seed=1)
    x, y = _batch()
    loss = model.loss(x, y)
    plain = _copy(model.backward())
    step = ShardedStep(model, 1)
    assert step.threads == 1
    got, grads = step(x, y)
    assert got == loss
    assert all(np.array_equal(grads[k], plain[k]) for k in plain)


def test_no_counted_target_gives_zero():
    model = Transformer(tiny_config(), seed=1)
    x, _ = _batch()
    y = np.full_like(x, -1)
    with ShardedStep(model, 2) as step:
        loss, grads = step(x, y)
    assert loss == 0.0
    assert all(not g.any() for g in grads.values())


def test_replicas_share_the_parameters():
    model = Transformer(tiny_config(), seed=1)
    twin = model.replica()
    assert twin.params is model.params
    model.params["wte"][0, 0] += 1.0                   # as the optimizer updates them, in place
    x, y = _batch()
    assert twin.loss(x, y) == model.loss(x, y)


def test_bad_input_is_refused():
    model = Transformer(tiny_config(), seed=1)
    with pytest.raises(ValueError, match="shards"):
        ShardedStep(model, 0)
    with pytest.raises(ValueError, match="shards"):
        ShardedStep(model, 1.5)
    x, y = _batch()
    with ShardedStep(model, 2) as step:
        with pytest.raises(ValueError, match="targets shape"):
            step(x, y[:, :4])
        with pytest.raises(ValueError, match="token id"):
            step(x + 1000, y)


def test_thread_budget_follows_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert thread_budget() == 1
    assert ShardedStep(Transformer(tiny_config()), 2).threads == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_budget() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert thread_budget() >= 1


def test_config_field_keeps_old_keys():
    assert "shards" not in TrainConfig().to_dict()
    assert TrainConfig(shards=2).to_dict()["shards"] == 2
    assert TrainConfig.from_dict(TrainConfig(shards=2).to_dict()).shards == 2
    for name in ("quick", "standard"):
        assert preset(name)[1].shards == 2
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InvalidValue, match="shards"):
            TrainConfig(shards=bad)


def test_training_does_not_depend_on_the_threads(monkeypatch):
    """Two shards on one thread and on two end at the same weights, bit for bit."""
    cfg = tiny_config(dtype="float32", d_model=32, n_head=4, T_train=16)
    tc = TrainConfig(batch_size=6, steps=4, warmup=1, eval_every=0, ckpt_every=0, shards=2)
    weights = []
    for threads in ("1", "2"):
        monkeypatch.setenv("OMP_NUM_THREADS", threads)
        result = train(cfg, tc, progress=False, log=lambda *a: None)
        weights.append(result.model.parameters())
    for k in weights[0]:
        assert np.array_equal(weights[0][k], weights[1][k]), k
    one = train(cfg, TrainConfig(**{**tc.to_dict(), "shards": 1}), progress=False, log=lambda *a: None)
    assert not all(np.array_equal(weights[0][k], one.model.parameters()[k]) for k in weights[0])
