"""Restarts from a plateau (train.py, "Restarts"; TrainConfig.restarts): which start is kept, that a
kept start is the training from scratch with its seed, resume across a restart, the refusals, and
the task preset and lab outputs that carry the number of starts."""
import sys

import numpy as np
import pytest

from tinype import ModelConfig, TrainConfig, train
from tinype.checkpoint import load_checkpoint, read_json
from tinype.errors import InvalidValue
from tinype.lab import tasklab
from tinype.tasks import TaskSet, get_task
from tinype.train import start_seed

TASK = get_task("copy")
CFG = ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=TASK.length(4) - 1)


def source():
    return TaskSet(TASK, largest=4)


def tcfg(**kw):
    base = dict(batch_size=4, steps=12, lr=3e-3, warmup=1, eval_every=0, ckpt_every=3)
    base.update(kw)
    return TrainConfig(**base)


def quiet(*_):
    pass


def same_weights(a, b):
    pa, pb = a.parameters(), b.parameters()
    return pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)


def test_start_seeds_differ_and_start_zero_is_the_seed():
    assert start_seed(7, 0) == 7
    seeds = {start_seed(s, k) for s in range(4) for k in range(1, 4)}
    assert len(seeds) == 12 and all(0 <= x < 2 ** 63 for x in seeds)


def test_a_stuck_start_is_dropped_and_the_kept_one_is_the_run_from_its_seed(tmp_path):
    """restart_loss below any loss a 12-step model reaches: both restarts are spent; the last
    start trains to the end and is exactly the training from scratch with start_seed(0, 2)."""
    msgs = []
    res = train(CFG, tcfg(restarts=2, restart_step=5, restart_loss=1e-6), source(), out=str(tmp_path / "r"),
                progress=False, log=msgs.append)
    assert res.starts == 3
    stuck = [m for m in msgs if "stuck on a plateau" in m]
    assert len(stuck) == 2 and stuck[0].startswith("start 1 of at most 3: mean training loss")
    alone = train(CFG, tcfg(seed=start_seed(0, 2)), source(), progress=False, log=quiet)
    assert same_weights(res.model, alone.model)
    assert [h["step"] for h in res.history] == list(range(1, 13))      # the kept start's history only
    metrics = read_json(str(tmp_path / "r" / "metrics.json"))
    assert metrics["starts"] == 3 and [d["start"] for d in metrics["dropped_starts"]] == [0, 1]
    assert all(d["step"] == 5 and d["mean_loss"] > 1e-6 for d in metrics["dropped_starts"])
    assert metrics["dropped_starts"][1]["seed"] == start_seed(0, 1)
    _, meta = load_checkpoint(str(tmp_path / "r" / "ckpt.npz"))
    assert meta["starts"]["start"] == 2 and meta["train_config"]["restarts"] == 2


def test_a_start_below_the_threshold_is_kept_and_is_the_plain_run():
    res = train(CFG, tcfg(restarts=3, restart_step=6, restart_loss=1e6), source(), progress=False, log=quiet)
    plain = train(CFG, tcfg(), source(), progress=False, log=quiet)
    assert res.starts == 1 and plain.starts == 1
    assert same_weights(res.model, plain.model)


def test_the_check_reads_the_mean_of_the_last_steps():
    """Start 0 is the plain run up to the check (same seed, batches and schedule), so the check
    reads its mean loss over steps 1..5: a threshold just above it keeps the start, just below drops it."""
    run = train(CFG, tcfg(), source(), progress=False, log=quiet)
    mean = float(np.mean([h["loss"] for h in run.history[:5]]))
    kept = train(CFG, tcfg(restarts=1, restart_step=5, restart_loss=mean * 1.001), source(), progress=False, log=quiet)
    dropped = train(CFG, tcfg(restarts=1, restart_step=5, restart_loss=mean * 0.999), source(), progress=False,
                    log=quiet)
    assert kept.starts == 1 and dropped.starts == 2


def test_resume_across_a_restart_reaches_the_same_weights(tmp_path, monkeypatch):
    cfg = tcfg(restarts=1, restart_step=5, restart_loss=1e-6)
    full = train(CFG, cfg, source(), out=str(tmp_path / "a"), progress=False, log=quiet)
    train_module = sys.modules["tinype.train"]
    real_save, saves = train_module._save, []

    def save_then_interrupt(*args, **kw):             # checkpoints at 3 (start 0), then 3 and 6 of start 1
        real_save(*args, **kw)
        saves.append(1)
        if len(saves) == 3:
            raise KeyboardInterrupt
    monkeypatch.setattr(train_module, "_save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(CFG, cfg, source(), out=str(tmp_path / "b"), progress=False, log=quiet)
    monkeypatch.setattr(train_module, "_save", real_save)
    _, meta = load_checkpoint(str(tmp_path / "b" / "ckpt.npz"))
    assert meta["step"] == 6 and meta["starts"]["start"] == 1 and len(meta["starts"]["dropped"]) == 1
    resumed = train(CFG, cfg, source(), out=str(tmp_path / "b"), resume=True, progress=False, log=quiet)
    assert resumed.resumed_from == 6 and resumed.starts == 2
    assert same_weights(resumed.model, full.model)


def test_a_checkpoint_without_its_start_is_not_resumed(tmp_path):
    from tinype.checkpoint import CheckpointError, save_checkpoint
    cfg = tcfg(restarts=1, restart_step=5, restart_loss=1e6)
    train(CFG, tcfg(steps=12), source(), out=str(tmp_path / "a"), progress=False, log=quiet)
    arrays, meta = load_checkpoint(str(tmp_path / "a" / "ckpt.npz"))
    meta["train_config"] = cfg.to_dict()
    meta["step"] = 6
    save_checkpoint(str(tmp_path / "a" / "ckpt.npz"), arrays, meta)
    with pytest.raises(CheckpointError, match="which start"):
        train(CFG, cfg, source(), out=str(tmp_path / "a"), resume=True, progress=False, log=quiet)


@pytest.mark.parametrize("kw, match", [
    (dict(restarts=1, restart_step=0, restart_loss=0.5), "restart_step"),
    (dict(restarts=1, restart_step=12, restart_loss=0.5), "restart_step"),
    (dict(restarts=1, restart_step=6, restart_loss=0.0), "restart_loss"),
    (dict(restarts=1, restart_step=6, restart_loss=float("nan")), "restart_loss"),
    (dict(restarts=1, restart_step=6, restart_loss=True), "restart_loss"),
    (dict(restarts=-1), "restarts"),
    (dict(restarts=1.5), "restarts"),
])
def test_bad_restart_settings_are_refused(kw, match):
    with pytest.raises(InvalidValue, match=match):
        tcfg(**kw)


def test_restarts_refuse_a_fine_tune_and_snapshots(tmp_path):
    train(CFG, tcfg(steps=3), source(), out=str(tmp_path / "src"), progress=False, log=quiet)
    cfg = tcfg(restarts=1, restart_step=5, restart_loss=0.5)
    with pytest.raises(InvalidValue, match="from scratch"):
        train(None, cfg, source(), out=str(tmp_path / "ft"), init_from=str(tmp_path / "src"), progress=False,
              log=quiet)
    with pytest.raises(InvalidValue, match="from scratch"):
        train(CFG, cfg, source(), out=str(tmp_path / "s"), snapshots=(0, 4), progress=False, log=quiet)


def test_without_restarts_the_configuration_is_what_it_always_was():
    """Runs made before restarts existed keep their run keys: the fields are left out at 0."""
    d = tcfg().to_dict()
    assert not {"restarts", "restart_step", "restart_loss"} & set(d)
    assert TrainConfig.from_dict(d) == tcfg()
    r = tcfg(restarts=2, restart_step=4, restart_loss=0.3)
    assert TrainConfig.from_dict(r.to_dict()) == r and r.to_dict()["restarts"] == 2


def test_task_preset_restarts_reach_the_training_configuration():
    tp = tasklab.TaskPreset(largest=5, steps=6000, restarts=2, restart_at=0.5, restart_loss=0.4)
    assert tp.restart_fields(6000) == {"restarts": 2, "restart_step": 3000, "restart_loss": 0.4}
    assert tp.restart_fields(600) == {}                   # --task-steps: the threshold is the preset's budget's
    assert tasklab.TaskPreset(largest=5, steps=10).restart_fields(10) == {}
    with pytest.raises(InvalidValue, match="restart_at"):
        tasklab.TaskPreset(largest=5, steps=10, restarts=1, restart_at=1.0, restart_loss=0.4)
    with pytest.raises(InvalidValue, match="restart_loss"):
        tasklab.TaskPreset(largest=5, steps=10, restarts=1, restart_loss=0.0)
    for name, tp in tasklab.TASK_PRESETS["paper"].items():
        plan = tasklab.task_plans([name])[name]
        fields = tp.restart_fields(tp.steps)
        assert {k: getattr(plan.train_cfg, k) for k in fields} == fields
        assert plan.train_cfg.restarts == tp.restarts
        assert tasklab.task_plans([name], steps=tp.steps // 2)[name].train_cfg.restarts == 0
    assert tasklab.TASK_PRESETS["paper"]["addition"].restarts > 0

def test_the_lab_outputs_name_the_restarted_models(tmp_path):
    def record(pe, starts):
        rec = {"task": "copy", "pe": pe, "seed": 0, "accuracy": {"2": 1.0, "8": 0.5}, "counts": {"2": [10, 10],
               "8": [5, 10]}, "train_sizes": [1, 4], "lengths": {"2": 4, "8": 10}, "examples": 10}
        if starts is not None:
            rec["starts"] = starts
        return rec
    records = [record("nope", 3), record("alibi", None)]
    rows = tasklab.rows(records)
    assert {r["pe"]: r["starts"] for r in rows} == {"nope": 3, "alibi": 1}
    text = tasklab.summary_section(records)
    assert "copy nope seed 0: 3 starts (1 of 2 models)" in text
    assert "restarts from a plateau" not in tasklab.summary_section([record("alibi", 1)])
    tasklab.write_csv(str(tmp_path / "tasks.csv"), records)
    head, first = open(tmp_path / "tasks.csv").read().splitlines()[:2]
    assert head.endswith(",bytes,starts") and first.endswith(",3")
