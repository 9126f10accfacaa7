"""Run identity: a rerun reuses a result only under an equal run key; otherwise it recomputes it or
refuses by name. Never old numbers under new settings (issue 13, point 1)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tinype.checkpoint import load_checkpoint
from tinype.cli import main
from tinype.data import Corpus, default_corpus_text, encode
from tinype.errors import UserError
from tinype.lab import LabConfig, LabError, run_lab
from tinype.lab import jobs as lab_jobs

QUIET = dict(progress=False, log=lambda m: None)
BASE = dict(pes=["nope", "alibi"], seeds=[0], mults=[1, 2], steps=3, max_windows=2)


@pytest.fixture(scope="module")
def texts():
    t = default_corpus_text()
    return (Corpus(encode(t[:30000]), name="first"), Corpus(encode(t[30000:60000]), name="second"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, texts):
    """A finished lab folder (text 1, 3 steps, lengths 1-2, 2 windows) to copy for each case."""
    out = str(tmp_path_factory.mktemp("finished"))
    results, _ = run_lab(LabConfig(out=out, **BASE), corpus=texts[0], **QUIET)
    return out, results


def _copy(finished, tmp_path):
    out = str(tmp_path / "lab")
    shutil.copytree(finished[0], out)
    return out


def _nll(results, pe="nope", L="64"):
    return next(r for r in results["records"] if r["pe"] == pe)["lengths"][L]["nonoverlap"]


def test_an_identical_rerun_reuses_everything(finished, tmp_path, texts):
    out = _copy(finished, tmp_path)
    logs = []
    again, _ = run_lab(LabConfig(out=out, **BASE), corpus=texts[0], progress=False, log=logs.append)
    assert sum("trained already, skipped" in m for m in logs) == 2
    assert not any("evaluat" in m and "skipped" not in m for m in logs), logs
    assert again["records"] == finished[1]["records"]


def test_another_text_is_refused_naming_the_flag(finished, tmp_path, texts):
    out = _copy(finished, tmp_path)
    with pytest.raises(LabError) as err:
        run_lab(LabConfig(out=out, **BASE), corpus=texts[1], **QUIET)
    msg = str(err.value)
    assert "source_sha256" in msg and "(--text)" in msg and "--recompute" in msg
    assert "train/nope-s0" in msg and "train/alibi-s0" in msg
    # nothing was mixed: the old results are untouched, no new evaluation was written
    assert json.load(open(os.path.join(out, "results.json")))["corpus"] == "first"


def test_recompute_retrains_and_the_numbers_equal_a_fresh_run(finished, tmp_path, texts):
    out = _copy(finished, tmp_path)
    logs = []
    res, _ = run_lab(LabConfig(out=out, recompute=True, **BASE), corpus=texts[1], progress=False, log=logs.append)
    assert sum("discarded (--recompute)" in m for m in logs) == 2
    fresh, _ = run_lab(LabConfig(out=str(tmp_path / "fresh"), **BASE), corpus=texts[1], **QUIET)
    assert res["corpus"] == "second" and res["corpus_sha256"] == texts[1].sha256
    assert _nll(res) == _nll(fresh) and _nll(res, "alibi") == _nll(fresh, "alibi")
    assert _nll(res) != _nll(finished[1])


@pytest.mark.parametrize("steps", [2, 5])
def test_other_steps_are_refused(finished, tmp_path, texts, steps):
    """Fewer steps than on disk used to be 'finished already' and silently reused."""
    out = _copy(finished, tmp_path)
    with pytest.raises(LabError, match=rf"train\.steps: 3 on disk, {steps} asked \(--steps\)"):
        run_lab(LabConfig(out=out, **dict(BASE, steps=steps)), corpus=texts[0], **QUIET)


def test_other_lengths_are_evaluated_again(finished, tmp_path, texts):
    out = _copy(finished, tmp_path)
    logs = []
    res, summary = run_lab(LabConfig(out=out, **dict(BASE, mults=[1, 2, 4])), corpus=texts[0], progress=False,
                           log=logs.append)
    assert sum("trained already, skipped" in m for m in logs) == 2           # trainings kept
    assert sum("evaluating again" in m and "lengths" in m for m in logs) == 2
    for r in res["records"]:
        assert sorted(r["lengths"], key=int) == ["64", "128", "256"]
    assert "L=256 (4x)" in summary
    assert _nll(res) == _nll(finished[1])                                    # same model, same L=64 numbers


def test_other_max_windows_are_evaluated_again(finished, tmp_path, texts):
    out = _copy(finished, tmp_path)
    logs = []
    res, _ = run_lab(LabConfig(out=out, **dict(BASE, max_windows=1)), corpus=texts[0], progress=False,
                     log=logs.append)
    assert sum("max_windows: 2 on disk, 1 asked (--max-windows)" in m for m in logs) == 2
    row = next(r for r in res["records"] if r["pe"] == "nope")["lengths"]["64"]
    assert row["tokens"] == 64                                               # one window of 64, not two
    fresh, _ = run_lab(LabConfig(out=str(tmp_path / "fresh"), **dict(BASE, max_windows=1)), corpus=texts[0], **QUIET)
    assert _nll(res) == _nll(fresh)


def test_repeated_seeds_or_encodings_are_refused(tmp_path, capsys):
    with pytest.raises(LabError, match="--seeds names 0 twice"):
        LabConfig(seeds=[0, 0])
    with pytest.raises(LabError, match="--pe names 'rope' twice"):
        LabConfig(pes=["rope", "ROPE"])
    assert main(["lab", "--seeds", "0,0", "--out", str(tmp_path / "x")]) == 1
    assert "--seeds names 0 twice" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_foreign_checkpoint_is_never_evaluated_under_the_lab_label(finished, tmp_path, texts):
    """A `tinype train --pe learned` run copied into the lab's alibi folder: refused at planning, and
    the evaluation job refuses it too when it appears after planning."""
    from tinype import ModelConfig, TrainConfig, train
    foreign = str(tmp_path / "foreign")
    train(ModelConfig(pe="learned"), TrainConfig(steps=3, warmup=0), texts[0], out=foreign, progress=False,
          log=lambda m: None)
    out = _copy(finished, tmp_path)
    for f in ("ckpt.npz", "metrics.json"):
        shutil.copy(os.path.join(foreign, f), os.path.join(out, "train", "alibi-s0", f))
    with pytest.raises(LabError, match=r'alibi-s0: model\.pe: "learned" on disk, "alibi" asked \(--pe\)'):
        run_lab(LabConfig(out=out, **BASE), corpus=texts[0], **QUIET)
    # the job level: plan against the real checkpoint, then swap the foreign one in before evaluating
    good = _copy(finished, tmp_path / "second")
    keys = {}
    real = lab_jobs.eval_job

    def swap_then_evaluate(job):
        shutil.copy(os.path.join(foreign, "ckpt.npz"), os.path.join(job["run_dir"], "ckpt.npz"))
        keys[job["pe"]] = job["key"]
        return real(job)
    os.remove(os.path.join(good, "eval", "alibi-s0.json"))                   # so alibi is evaluated again
    lab_jobs.eval_job, saved = swap_then_evaluate, real
    try:
        with pytest.raises(LabError, match="is not evaluated as alibi seed 0"):
            run_lab(LabConfig(out=good, **BASE), corpus=texts[0], **QUIET)
    finally:
        lab_jobs.eval_job = saved
    assert not os.path.exists(os.path.join(good, "eval", "alibi-s0.json"))


def test_killed_sweep_rerun_with_changed_settings(tmp_path):
    """SIGKILL a real sweep after its first training, then rerun with other --steps: refused, naming
    the folder and --steps; with --recompute the results equal an uninterrupted run's with the new
    settings. Rerun with other --max-windows instead: trainings kept, evaluations redone."""
    text = tmp_path / "text.txt"
    text.write_text(default_corpus_text()[:30000], encoding="utf-8")
    base = [sys.executable, "-m", "tinype.cli", "lab", "--pe", "nope,rope,alibi", "--lengths", "1,2",
            "--text", str(text), "--no-progress"]
    cut = str(tmp_path / "cut")
    proc = subprocess.Popen(base + ["--steps", "6", "--max-windows", "2", "--out", cut],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = os.path.join(cut, "train", "alibi-s0", "metrics.json")
    deadline = time.time() + 120
    while not os.path.exists(first) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert os.path.exists(first) and not os.path.exists(os.path.join(cut, "results.json"))
    r = subprocess.run(base + ["--steps", "5", "--max-windows", "2", "--out", cut], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "alibi-s0: train.steps: 6 on disk, 5 asked (--steps)" in r.stderr and "--recompute" in r.stderr
    r = subprocess.run(base + ["--steps", "5", "--max-windows", "2", "--out", cut, "--recompute"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    full = str(tmp_path / "full")
    r = subprocess.run(base + ["--steps", "5", "--max-windows", "2", "--out", full], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    a = json.load(open(os.path.join(full, "results.json")))
    b = json.load(open(os.path.join(cut, "results.json")))
    strip = lambda recs: [{L: {k: v for k, v in row.items() if k != "seconds"} for L, row in x["lengths"].items()}
                          for x in recs]
    assert strip(a["records"]) == strip(b["records"]) and b["train"]["steps"] == 5
    for pe in ("nope", "rope", "alibi"):
        assert load_checkpoint(os.path.join(cut, "train", f"{pe}-s0", "ckpt.npz"))[1]["step"] == 5
    # now only an evaluation setting changes: trainings reused, every evaluation redone
    r = subprocess.run(base + ["--steps", "5", "--max-windows", "1", "--out", cut], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("trained already, skipped") == 3 and r.stdout.count("evaluating again") == 3
    c = json.load(open(os.path.join(cut, "results.json")))
    assert all(row["tokens"] == int(L) for x in c["records"] for L, row in x["lengths"].items()), \
        "one window of L per length"


def test_the_record_and_results_carry_their_keys(finished):
    out, results = finished
    rec = json.load(open(os.path.join(out, "eval", "nope-s0.json")))
    fields = rec["key_fields"]
    assert len(rec["key"]) == 64 and fields["format"] == results["format"]
    for name in ("train_key", "pe", "pe_options", "lengths", "protocols", "stride", "max_windows", "val_sha256"):
        assert name in fields, name
    assert fields["train_key"] == results["training_keys"]["nope-s0"]
    assert isinstance(LabError("x"), UserError)


def test_a_damaged_checkpoint_in_the_lab_is_named_and_recompute_replaces_it(finished, tmp_path, texts):
    out = _copy(finished, tmp_path)
    ckpt = os.path.join(out, "train", "nope-s0", "ckpt.npz")
    raw = open(ckpt, "rb").read()
    open(ckpt, "wb").write(raw[: len(raw) // 2])
    with pytest.raises(LabError, match=r"nope-s0: its checkpoint cannot be used \(.*truncated or corrupt"):
        run_lab(LabConfig(out=out, **BASE), corpus=texts[0], **QUIET)
    res, _ = run_lab(LabConfig(out=out, recompute=True, **BASE), corpus=texts[0], **QUIET)
    assert _nll(res) == _nll(finished[1])                    # retrained from the same seed: the same numbers
