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


def _limits_now():
    from threadpoolctl import threadpool_info
    return {(i["user_api"], i["filepath"]): i["num_threads"] for i in threadpool_info()}


def test_each_shard_runs_on_one_thread_and_the_limits_come_back(monkeypatch):
    """Inside a shard, BLAS and OpenMP run on one thread; after the step, and after a step whose
    shard failed, the caller's thread counts are what they were (and the pool still works)."""
    model = Transformer(tiny_config(), seed=1)
    x, y = _batch()
    before = _limits_now()
    seen = []
    with ShardedStep(model, 2, threads=2) as step:
        for replica in step.replicas:
            plain = replica.loss

            def spy(*a, _plain=plain, **k):
                seen.append({api for (api, _), n in _limits_now().items() if n != 1})
                return _plain(*a, **k)
            replica.loss = spy
        step(x, y)
        assert len(seen) == 2 and seen == [set(), set()]          # every library at 1 thread in both shards
        assert _limits_now() == before

        def broken(*a, **k):
            raise FloatingPointError("shard 1 failed")
        step.replicas[1].loss = broken
        with pytest.raises(FloatingPointError, match="shard 1 failed"):
            step(x, y)
        assert _limits_now() == before
        del step.replicas[1].loss                                   # back to the class's method
        loss, _ = step(x, y)
        assert loss == pytest.approx(Transformer(tiny_config(), seed=1).loss(x, y), rel=1e-12)


@pytest.mark.parametrize("shards", [5, 8])
def test_more_shards_than_sequences(shards):
    model = Transformer(tiny_config(), seed=1)
    x, y = _batch()
    loss = model.loss(x, y)
    full = _copy(model.backward())
    with ShardedStep(model, shards, threads=2) as step:
        got, grads = step(x, y)
    assert got == pytest.approx(loss, rel=1e-12)
    for k in full:
        np.testing.assert_allclose(grads[k], full[k], rtol=1e-9, atol=1e-13, err_msg=k)


def test_a_shard_without_counted_targets_weighs_nothing():
    model = Transformer(tiny_config(), seed=1)
    x, y = _batch(B=4)
    y[:2] = -1                                   # the first shard counts nothing, the second everything
    loss = model.loss(x, y)
    full = _copy(model.backward())
    with ShardedStep(model, 2) as step:
        got, grads = step(x, y)
    assert got == pytest.approx(loss, rel=1e-12)
    for k in full:
        np.testing.assert_allclose(grads[k], full[k], rtol=1e-9, atol=1e-13, err_msg=k)


def test_float32_shards_match_the_full_batch_to_float_rounding():
    model = Transformer(tiny_config(dtype="float32", d_model=32, n_head=4, T_train=16), seed=1)
    x, y = _batch(B=6, T=16)
    loss = model.loss(x, y)
    full = _copy(model.backward())
    with ShardedStep(model, 2) as step:
        got, grads = step(x, y)
    assert got == pytest.approx(loss, rel=1e-6)
    for k in full:
        scale = np.abs(full[k]).max() + 1e-30
        assert np.abs(grads[k] - full[k]).max() / scale < 1e-5, k


def test_one_sequence_and_1d_input_take_the_plain_step():
    model = Transformer(tiny_config(), seed=1)
    x, y = _batch()
    for idx, tgt in ((x[:1], y[:1]), (x[1], y[1])):
        loss = model.loss(idx, tgt)
        plain = _copy(model.backward())
        with ShardedStep(model, 2) as step:
            got, grads = step(idx, tgt)
        assert got == loss
        assert all(np.array_equal(grads[k], plain[k]) for k in plain)


def test_replica_keeps_a_swapped_encoding():
    """A model whose encoding object was replaced (as the lab's evaluation-time variants do) gets
    replicas with that encoding, not one rebuilt from the configuration."""
    from tinype import positions
    model = Transformer(tiny_config(pe="rope", d_model=32, n_head=4), seed=1)
    model.pe = positions.get("rope_pi", factor=4.0)
    model.pe.setup(model.config)
    twin = model.replica()
    assert type(twin.pe) is type(model.pe) and twin.pe is not model.pe
    x, y = _batch()
    assert twin.loss(x, y) == model.loss(x, y)


def test_a_run_made_with_one_shard_resumes_only_with_one(tmp_path):
    cfg = tiny_config(dtype="float32")
    tc = TrainConfig(batch_size=4, steps=3, warmup=1, eval_every=0, ckpt_every=1)
    train(cfg, tc, out=str(tmp_path), progress=False, log=lambda *a: None)
    from tinype.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match=r"shards: checkpoint 1, now 2[\s\S]*--shards 1"):
        train(cfg, TrainConfig(**{**tc.to_dict(), "shards": 2}), out=str(tmp_path), resume=True,
              progress=False, log=lambda *a: None)
    again = train(cfg, tc, out=str(tmp_path), resume=True, progress=False, log=lambda *a: None)
    assert again.resumed_from == 3


def test_memory_estimate_counts_the_shards_gradients():
    from tinype.config import parameter_count, training_memory
    mc = tiny_config(dtype="float32")
    one = training_memory(mc, TrainConfig(batch_size=4))
    two = training_memory(mc, TrainConfig(batch_size=4, shards=2))
    assert two - one == 2 * parameter_count(mc) * 4        # two shards' gradients and their sum, not one set
