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

    def save_then_interrupt(*args, **kw):    # checkpoints at 3 (start 0), then 0 (the drop), 3 and 6 of start 1
        real_save(*args, **kw)
        saves.append(1)
        if len(saves) == 4:
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


def test_the_check_averages_the_last_100_steps_only():
    """With the check at step 120 the mean is over steps 21..120, not over all 120: a threshold
    between the two means decides differently from one that read the whole history."""
    cfg = dict(steps=130, batch_size=2, warmup=1, ckpt_every=0)
    run = train(CFG, tcfg(**cfg), source(), progress=False, log=quiet)
    losses = [h["loss"] for h in run.history[:120]]
    last, whole = float(np.mean(losses[20:])), float(np.mean(losses))
    assert whole > last * 1.01                      # the early steps are higher: the two means differ
    between = (last + whole) / 2
    kept = train(CFG, tcfg(**cfg, restarts=1, restart_step=120, restart_loss=between), source(), progress=False,
                 log=quiet)
    assert kept.starts == 1
    dropped = train(CFG, tcfg(**cfg, restarts=1, restart_step=120, restart_loss=last * 0.999), source(),
                    progress=False, log=quiet)
    assert dropped.starts == 2


def test_a_stop_right_after_a_drop_resumes_the_new_start(tmp_path):
    """The drop writes the new start's step-0 checkpoint before anything else, so a stop right
    after it (here: in the message) resumes the new start and never replays the dropped one."""
    cfg = tcfg(restarts=1, restart_step=6, restart_loss=1e-6, ckpt_every=3)
    full = train(CFG, cfg, source(), out=str(tmp_path / "a"), progress=False, log=quiet)

    def stop_on_drop(msg):
        if "stuck on a plateau" in msg:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train(CFG, cfg, source(), out=str(tmp_path / "b"), progress=False, log=stop_on_drop)
    _, meta = load_checkpoint(str(tmp_path / "b" / "ckpt.npz"))
    assert meta["step"] == 0 and meta["starts"]["start"] == 1 and meta["history"] == []
    msgs = []
    resumed = train(CFG, cfg, source(), out=str(tmp_path / "b"), resume=True, progress=False, log=msgs.append)
    assert not any("stuck" in m for m in msgs) and resumed.starts == 2
    assert same_weights(resumed.model, full.model)


def test_a_dropped_start_leaves_no_checkpoint_at_its_check_step(tmp_path, monkeypatch):
    train_module = sys.modules["tinype.train"]
    real_save, saved = train_module._save, []

    def record(path, model, opt, step, *args):
        saved.append((step, args[-1]["start"] if args[-1] else None))
        real_save(path, model, opt, step, *args)
    monkeypatch.setattr(train_module, "_save", record)
    train(CFG, tcfg(restarts=1, restart_step=6, restart_loss=1e-6, ckpt_every=6), source(), out=str(tmp_path / "r"),
          progress=False, log=quiet)
    assert (6, 0) not in saved and (0, 1) in saved and saved[-1] == (12, 1)


def test_the_lab_reads_the_starts_from_metrics(tmp_path):
    from tinype.checkpoint import write_json
    from tinype.lab.jobs import _starts
    assert _starts(str(tmp_path)) == 1                              # no metrics.json yet
    write_json(str(tmp_path / "metrics.json"), {"starts": 3})
    assert _starts(str(tmp_path)) == 3
    for bad in ({"starts": "3"}, {"starts": 0}, [1, 2]):
        write_json(str(tmp_path / "metrics.json"), bad)
        assert _starts(str(tmp_path)) == 1


def test_restart_fields_without_restarts_are_refused():
    with pytest.raises(InvalidValue, match="restarts = 0"):
        tcfg(restart_step=5, restart_loss=0.5)


def test_the_command_line_fine_tunes_a_model_trained_with_restarts(tmp_path):
    """A fine-tune starts from the source's weights: the source's restarts are not carried over."""
    from tinype.cli import main
    from tinype.tasks import START
    src = str(tmp_path / "src")
    task = get_task("addition", START)
    cfg = ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=task.length(2) - 1)
    train(cfg, tcfg(restarts=1, restart_step=5, restart_loss=1e6), TaskSet(task, largest=2), out=src,
          progress=False, log=quiet)
    _, meta = load_checkpoint(src + "/ckpt.npz")
    assert meta["train_config"]["restarts"] == 1
    out = str(tmp_path / "ft")
    assert main(["train", "--init-from", src, "--steps", "3", "--out", out, "--no-progress"]) == 0
    _, ft = load_checkpoint(out + "/ckpt.npz")
    assert "restarts" not in ft["train_config"] and ft["step"] == 3


def test_the_lab_fine_tunes_without_the_source_restarts():
    """The context extension fine-tunes a task model in its own shape: a source trained with
    restarts gives a fine-tune without them, whose key is that of a plain fine-tune."""
    from tinype.lab.extend import finetune_configs
    from tinype.lab.sweep import LabConfig
    lab = LabConfig(extend=4)
    plain = tcfg(steps=6000)
    with_restarts = tcfg(steps=6000, restarts=4, restart_step=3600, restart_loss=0.6)
    _, ft, _ = finetune_configs(lab, CFG, with_restarts, "rope")
    _, ft_plain, _ = finetune_configs(lab, CFG, plain, "rope")
    assert ft.restarts == 0 and ft.to_dict() == ft_plain.to_dict()
