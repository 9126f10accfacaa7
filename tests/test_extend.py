"""The lab's extension protocol (issue 16, point 2): fine-tune at F x T_train, snapshots, extend.csv."""
import csv
import json
import os

import numpy as np
import pytest

from tinype.checkpoint import load_model
from tinype.cli import main
from tinype.data import Corpus, default_corpus_text, encode
from tinype.lab import LabConfig, LabError, run_lab
from tinype.lab.extend import METHODS, steps_to_within
from tinype.positions import rope_inv_freq
from tinype.train import snapshot_path


def config(out, **kw):
    base = dict(pes=["rope", "alibi"], seeds=[0], mults=[1, 2], out=out, steps=3, max_windows=2, extend=2,
                finetune_steps=[0, 2, 3], passkey_examples=1)
    base.update(kw)
    return LabConfig(**base)


@pytest.fixture(scope="module")
def corpus():
    return Corpus(encode(default_corpus_text()[:60000]), name="topics[:60000]")   # 6 kB of validation


@pytest.fixture(scope="module")
def ext_run(tmp_path_factory, corpus):
    out = str(tmp_path_factory.mktemp("ext"))
    logs = []
    results, summary = run_lab(config(out), progress=False, log=logs.append, corpus=corpus)
    return out, results, summary, logs


def test_one_finetune_per_method_with_its_snapshots(ext_run):
    out, results, summary, logs = ext_run
    folder = os.path.join(out, "extend", "F2")
    assert sorted(d for d in os.listdir(folder) if d != "eval") == sorted(f"{m}-s0" for m in METHODS)
    for method, (base, pe, scaled) in METHODS.items():
        run_dir = os.path.join(folder, f"{method}-s0")
        model, meta = load_model(snapshot_path(run_dir, 0))
        src, _ = load_model(os.path.join(out, "train", f"{base}-s0", "ckpt.npz"))
        for k, v in src.parameters().items():                       # step 0: the lab's trained model
            np.testing.assert_array_equal(model.parameters()[k], v, err_msg=k)
        assert meta["model_config"]["pe"] == pe and meta["finetune"]["context"] == 128
        assert model.config.T_train == 64 and model.config.pe_options == ({"factor": 2.0} if scaled else {})
        assert meta["train_config"]["steps"] == 3 and meta["train_config"]["weight_decay"] == 0.0
        assert meta["train_config"]["lr"] == pytest.approx(0.3 * results["train"]["lr"])
        assert meta["train_config"]["batch_size"] == results["train"]["batch_size"] // 2
        for n in (2, 3):
            assert load_model(snapshot_path(run_dir, n))[1]["step"] == n
    # YaRN's ramp is computed over the original length 64 with s = 2, whatever the window
    yarn, _ = load_model(snapshot_path(os.path.join(folder, "rope_yarn-s0"), 2))
    want, af = rope_inv_freq(16, scaling={"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 64})
    for T in (64, 128, 256):
        got, got_af = yarn.pe.frequencies(T)
        np.testing.assert_allclose(got, want)
        assert got_af == pytest.approx(af) and af > 1


def test_extend_csv_summary_and_figure(ext_run):
    out, results, summary, logs = ext_run
    rows = list(csv.DictReader(open(os.path.join(out, "extend.csv"))))
    assert list(rows[0]) == ["method", "seed", "finetune_steps", "L", "protocol", "nll", "ppl", "accuracy"]
    ppl = [r for r in rows if r["protocol"] == "nonoverlap"]
    assert len(ppl) == 5 * 3 * 3                                   # methods x snapshots x lengths 64, 128, 256
    assert {(r["method"], r["finetune_steps"], r["L"]) for r in ppl} == \
        {(m, s, L) for m in METHODS for s in ("0", "2", "3") for L in ("64", "128", "256")}
    passkey = [r for r in rows if r["protocol"] == "passkey"]
    assert len(passkey) == 5 * 3 and all(r["L"] == "128" and 0 <= float(r["accuracy"]) <= 1 for r in passkey)
    assert all(float(r["nll"]) > 0 for r in passkey)
    gains = [r for r in rows if r["protocol"] == "passkey_gain"]
    assert len(gains) == 5 * 3 and all(r["L"] == "128" and r["nll"] != "" for r in gains)
    assert len({r["nll"] for r in gains}) > 1                       # a measured difference, not a constant
    # at step 0 plain rope is the lab's rope model: the same number as the lab's own table at 1x and 2x
    lab = {(r["pe"], r["lengths"]["128"]["nonoverlap"]) for r in results["records"]}
    rope0 = next(r for r in ppl if r["method"] == "rope" and r["finetune_steps"] == "0" and r["L"] == "128")
    assert any(pe == "rope" and float(rope0["nll"]) == pytest.approx(v, abs=1e-6) for pe, v in lab)
    # fine-tuning at 128 lowers the loss at 128 (3 steps of a 3-step model: a large move)
    rope3 = next(r for r in ppl if r["method"] == "rope" and r["finetune_steps"] == "3" and r["L"] == "128")
    assert float(rope3["nll"]) < float(rope0["nll"])
    assert "## extension: fine-tuning at 2 x T_train = 128 bytes" in summary
    assert "| rope_yarn | 3 |" in summary and "Steps to reach within 10%" in summary
    assert summary == open(os.path.join(out, "summary.md")).read()
    assert open(os.path.join(out, "extend_ppl.png"), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert json.load(open(os.path.join(out, "results.json")))["extend"]["methods"] == list(METHODS)
    within = steps_to_within(results["extend"])
    assert set(within) == set(METHODS)


def test_rerun_reuses_and_changed_settings_are_refused(ext_run, corpus, monkeypatch):
    out, results, summary, logs = ext_run
    from tinype.lab import extend
    calls = []
    real = extend.eval_job
    monkeypatch.setattr(extend, "eval_job", lambda job: calls.append(job) or real(job))
    logs2 = []
    again, _ = run_lab(config(out), progress=False, log=logs2.append, corpus=corpus)
    assert sum("fine-tuned already, skipped" in m for m in logs2) == 5 and not calls
    assert again["extend"]["records"] == results["extend"]["records"]
    # another lr or steps list: refused by name, as the lab's trainings are
    with pytest.raises(LabError, match=r"train.lr: .* on disk, .* asked"):
        run_lab(config(out, finetune_lr=0.1), progress=False, log=lambda *_: None, corpus=corpus)
    with pytest.raises(LabError, match=r"snapshots: \[0, 2, 3\] on disk, \[0, 1, 3\] asked \(--finetune-steps\)"):
        run_lab(config(out, finetune_steps=[0, 1, 3]), progress=False, log=lambda *_: None, corpus=corpus)
    # another evaluation setting re-evaluates without fine-tuning again
    logs3 = []
    run_lab(config(out, extend_mults=[1, 2]), progress=False, log=logs3.append, corpus=corpus)
    assert sum("fine-tuned already" in m for m in logs3) == 5 and len(calls) == 15


def test_methods_follow_the_trainings_in_the_lab(tmp_path, corpus):
    logs = []
    results, summary = run_lab(config(str(tmp_path / "a"), pes=["alibi"], finetune_steps=[0, 1]),
                               progress=False, log=logs.append, corpus=corpus)
    assert results["extend"]["methods"] == ["alibi"]
    assert results["extend"]["skipped"] == ["rope", "rope_pi", "rope_ntk", "rope_yarn"]
    assert "Skipped (their base training is not among --pe): rope, rope_pi" in summary
    with pytest.raises(LabError, match="add rope .* or alibi to --pe"):
        run_lab(config(str(tmp_path / "b"), pes=["nope"]), progress=False, log=lambda *_: None, corpus=corpus)
    assert not os.path.exists(tmp_path / "b" / "train")                 # refused before any training


@pytest.mark.parametrize("kw, words", [(dict(extend=1), "extend must be a whole number >= 2"),
                                       (dict(finetune_steps=[]), "--finetune-steps is empty"),
                                       (dict(finetune_steps=[0]), "must include a count >= 1"),
                                       (dict(finetune_steps=[5, 5]), "names 5 twice"),
                                       (dict(finetune_lr=0), "--finetune-lr"),
                                       (dict(extend_methods=["rope_llama9"]), "choose among"),
                                       (dict(extend=400), None)])
def test_extension_settings_are_checked_before_any_work(tmp_path, corpus, kw, words):
    with pytest.raises(LabError, match=words or "validation split of topics"):
        run_lab(config(str(tmp_path / "x"), **kw), progress=False, log=lambda *_: None, corpus=corpus)
    assert not os.path.exists(tmp_path / "x" / "train")


def test_cli_extension_flags(tmp_path, capsys):
    rc = main(["lab", "--pe", "nope", "--finetune-steps", "0,5", "--out", str(tmp_path / "x"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "only apply with --extend F" in err and err.count("\n") == 1
    rc = main(["lab", "--pe", "nope", "--steps", "2", "--extend", "2", "--out", str(tmp_path / "y"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "add rope" in err and err.count("\n") == 1


def test_passkey_models_are_extended_too_when_the_lab_trains_them(tmp_path, corpus):
    out = str(tmp_path / "t")
    results, summary = run_lab(config(out, pes=["rope"], tasks=["passkey"], task_steps=2, task_examples=1,
                                      finetune_steps=[0, 1], extend_methods=["rope_pi"]),
                               progress=False, log=lambda *_: None, corpus=corpus)
    ext = results["extend"]
    assert [(r["method"], r["step"]) for r in ext["task_records"]] == [("rope_pi", 0), ("rope_pi", 1)]
    assert sorted(ext["task_records"][0]["accuracy"]) == ["128", "256", "64"]   # ^ + 64, 128, 256 bytes + 1
    model, meta = load_model(snapshot_path(os.path.join(out, "extend", "F2", "passkey", "rope_pi-s0"), 0))
    src, _ = load_model(os.path.join(out, "tasks", "passkey", "rope-s0", "ckpt.npz"))
    for k, v in src.parameters().items():
        np.testing.assert_array_equal(model.parameters()[k], v, err_msg=k)
    assert meta["corpus"] == "task:passkey" and meta["finetune"]["context"] == 128
    rows = list(csv.DictReader(open(os.path.join(out, "extend.csv"))))
    assert {r["L"] for r in rows if r["protocol"] == "passkey_task"} == {"64", "128", "256"}
    assert "Passkey models (the lab's --tasks passkey trainings) fine-tuned" in summary


def test_a_passkey_model_of_its_own_shape_and_start_byte_is_extended_as_trained(tmp_path, corpus, monkeypatch):
    from tinype.lab import tasklab
    from tinype.tasks import START, TaskSet, get_task
    own = tasklab.TaskPreset(largest=64, steps=2, T_train=64, n_layer=1, start=START)
    monkeypatch.setitem(tasklab.TASK_PRESETS["paper"], "passkey", own)
    out = str(tmp_path / "t")
    results, summary = run_lab(config(out, pes=["rope"], tasks=["passkey"], task_steps=2, task_examples=1,
                                      finetune_steps=[0, 1], extend_methods=["rope_pi"]),
                               progress=False, log=lambda *_: None, corpus=corpus)
    model, meta = load_model(snapshot_path(os.path.join(out, "extend", "F2", "passkey", "rope_pi-s0"), 1))
    assert model.config.n_layer == 1 and model.config.pe == "rope_pi"                 # the passkey model's shape
    key = json.load(open(os.path.join(out, "extend", "F2", "passkey", "rope_pi-s0", "key.json")))
    assert key["key_fields"]["corpus_sha256"] == TaskSet(get_task("passkey", START)).sha256 != TaskSet("passkey").sha256
    records = results["extend"]["task_records"]
    assert [r["key_fields"].get("start") for r in records] == ["^", "^"]
    assert sorted(records[0]["accuracy"]) == ["128", "256", "64"]       # with ^: 65, 129, 257 bytes, 64.. read
    assert "| 64 B | 128 B | 256 B |" in summary


def test_passkey_models_of_another_window_are_not_extended_and_the_log_says_so(tmp_path, corpus, monkeypatch):
    from tinype.lab import tasklab
    monkeypatch.setitem(tasklab.TASK_PRESETS["paper"], "passkey", tasklab.TaskPreset(largest=33, steps=2, T_train=32))
    logs = []
    results, _ = run_lab(config(str(tmp_path / "t"), pes=["rope"], tasks=["passkey"], task_steps=2, task_examples=1,
                                finetune_steps=[0, 1], extend_methods=["rope_pi"]),
                         progress=False, log=logs.append, corpus=corpus)
    assert results["extend"]["task_records"] == []
    assert any("passkey models are not fine-tuned" in m and "T_train = 32" in m for m in logs)


def test_an_interrupted_extension_resumes_to_the_same_weights(ext_run, tmp_path, corpus, monkeypatch):
    import shutil
    import sys
    out, results, _, _ = ext_run
    mine = str(tmp_path / "cut")
    shutil.copytree(os.path.join(out, "train"), os.path.join(mine, "train"))      # the same trainings
    train_module = sys.modules["tinype.train"]
    real_save = train_module._save

    def save_then_interrupt(path, *a, **kw):
        real_save(path, *a, **kw)
        if "rope_pi-s0" in path and path.endswith("step-000002.npz"):
            raise KeyboardInterrupt                                  # Ctrl-C in the middle of rope_pi
    monkeypatch.setattr(train_module, "_save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_lab(config(mine), progress=False, log=lambda *_: None, corpus=corpus)
    monkeypatch.setattr(train_module, "_save", real_save)
    assert not os.path.exists(os.path.join(mine, "extend.csv"))
    logs = []
    run_lab(config(mine), progress=False, log=logs.append, corpus=corpus)
    assert any("extend: rope seed 0: fine-tuned already" in m for m in logs)       # finished before the cut
    for method in METHODS:
        for name in ("ckpt.npz", os.path.join("snapshots", "step-000002.npz")):
            a, _ = load_model(os.path.join(out, "extend", "F2", f"{method}-s0", name))
            b, _ = load_model(os.path.join(mine, "extend", "F2", f"{method}-s0", name))
            for k, v in a.parameters().items():
                np.testing.assert_array_equal(b.parameters()[k], v, err_msg=f"{method} {name} {k}")
    rows = list(csv.DictReader(open(os.path.join(mine, "extend.csv"))))
    assert len([r for r in rows if r["protocol"] == "nonoverlap"]) == 5 * 3 * 3


def test_the_passkey_contrast_keeps_the_prompt_and_changes_the_key():
    from tinype.lab.extend import other_keys, passkey_examples
    ex = passkey_examples(129, 4)[0.5]
    other = other_keys(ex, 129, 2)
    assert [p for p, _ in other] == [p for p, _ in ex]
    assert all(o != k and len(o) == 5 and o.isdigit() for (_, k), (_, o) in zip(ex, other))
    assert other == other_keys(ex, 129, 2)                           # seeded: the same every time
