"""The lab on a tiny budget: what it trains, what it reuses, what it writes, and that reruns skip."""
import csv
import json
import os

import numpy as np
import pytest

from tinype.checkpoint import load_checkpoint
from tinype.cli import main
from tinype.data import Corpus, default_corpus_text, encode
from tinype.lab import LabConfig, run_lab, trained_name


def test_trained_name():
    assert trained_name("rope_yarn") == "rope"
    assert trained_name("alibi+logn") == "alibi"
    assert trained_name("rope_ntk+logn") == "rope"
    assert trained_name("logn") == "nope"
    assert trained_name("kerple_log") == "kerple_log"


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("lab"))
    cfg = LabConfig(pes=["learned", "rope", "rope_yarn", "alibi+logn"], seeds=[0], mults=[1, 2, 4],
                    out=out, steps=4, max_windows=3)
    logs = []
    corpus = Corpus(encode(default_corpus_text()[:60000]), name="topics[:60000]")   # 6 kB of validation
    results, summary = run_lab(cfg, progress=False, log=logs.append, corpus=corpus)
    return out, cfg, results, summary, logs, corpus


def test_lab_trains_once_per_checkpoint_and_reuses_it(lab_run):
    out, cfg, results, summary, logs, corpus = lab_run
    assert sorted(os.listdir(os.path.join(out, "train"))) == ["alibi-s0", "learned-s0", "rope-s0"]
    rec = {r["pe"]: r for r in results["records"]}
    assert rec["rope_yarn"]["trained"] == "rope"
    # at L = T_train YaRN's scale factor is 1: exactly RoPE
    assert rec["rope_yarn"]["lengths"]["64"]["nonoverlap"] == pytest.approx(rec["rope"]["lengths"]["64"]["nonoverlap"],
                                                                            rel=1e-12)
    assert rec["rope_yarn"]["lengths"]["256"]["nonoverlap"] != rec["rope"]["lengths"]["256"]["nonoverlap"]
    assert rec["learned"]["lengths"]["128"] is None                  # learned cannot run past its table
    assert rec["rope"]["lengths"]["64"]["beyond"] is None            # nothing lies beyond at L = T_train
    assert rec["rope"]["lengths"]["256"]["beyond"] > 0
    assert len(rec["rope"]["position_curve"]["nll"]) == 256


def test_lab_outputs(lab_run):
    out, cfg, results, summary, logs, corpus = lab_run
    data = json.load(open(os.path.join(out, "results.json")))
    assert data["corpus_sha256"] == results["corpus_sha256"] and data["config"]["seeds"] == [0]
    rows = list(csv.DictReader(open(os.path.join(out, "results.csv"))))
    assert len(rows) == 4 * 3 * 3                                    # pes x lengths x protocols
    learned_long = [r for r in rows if r["pe"] == "learned" and r["L"] == "256"]
    assert all(r["nll"] == "" for r in learned_long)
    assert "n/a" in summary and "| rope_yarn |" in summary and "## beyond" in summary
    for png in ("ppl_vs_length.png", "position_loss.png"):
        path = os.path.join(out, png)
        assert os.path.getsize(path) > 10_000
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    ppl = float(rows[0]["ppl"]) if rows[0]["ppl"] else None
    assert ppl is None or ppl > 1


def test_lab_rerun_skips_finished_work(lab_run):
    out, cfg, results, summary, _, corpus = lab_run
    logs = []
    again, _ = run_lab(cfg, progress=False, log=logs.append, corpus=corpus)
    assert sum("skipped" in line for line in logs) == 3
    assert not any(line.startswith("lab: evaluated") for line in logs)
    assert again["records"] == results["records"]


def test_lab_cli_rejects_bad_input_before_work(tmp_path, capsys):
    assert main(["lab", "--pe", "rope,bogus", "--out", str(tmp_path)]) == 1
    assert "unknown positional encoding 'bogus'" in capsys.readouterr().err
    assert main(["lab", "--lengths", "1,x", "--out", str(tmp_path)]) == 1
    assert "--lengths" in capsys.readouterr().err
    assert not os.listdir(tmp_path)


def _numbers(records):
    """Every NLL of the records, without the timings (which differ from run to run)."""
    return {(r["pe"], r["seed"], L, k): v for r in records for L, row in r["lengths"].items() if row
            for k, v in row.items() if k != "seconds" and v is not None}


@pytest.fixture(scope="module")
def small_corpus():
    return Corpus(encode(default_corpus_text()[:30000]), name="topics[:30000]")


def test_lab_jobs_runs_in_processes_with_the_same_numbers(tmp_path, small_corpus):
    """--jobs 2 trains and evaluates in two spawned processes; the numbers match a serial run (to float32
    rounding: a worker uses one BLAS thread, so sums may be ordered differently)."""
    base = dict(pes=["nope", "alibi", "rope_ntk"], seeds=[0], mults=[1, 2], steps=3, max_windows=2, stride=16)
    serial, _ = run_lab(LabConfig(out=str(tmp_path / "serial"), **base), progress=False, log=lambda m: None,
                        corpus=small_corpus)
    logs = []
    parallel, summary = run_lab(LabConfig(out=str(tmp_path / "par"), jobs=2, **base), progress=False,
                                log=logs.append, corpus=small_corpus)
    assert sorted(os.listdir(tmp_path / "par" / "train")) == ["alibi-s0", "nope-s0", "rope-s0"]
    assert sum(": trained" in m for m in logs) == 3
    a, b = _numbers(serial["records"]), _numbers(parallel["records"])
    assert a.keys() == b.keys()
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-4), k
    assert all(row["stride"] == 16 for r in parallel["records"] for row in r["lengths"].values())
    assert "stride 16 bytes" in summary and "tokens/s" in summary
    # the trainings themselves do not depend on the threads (two shards, each on one thread,
    # tinype.parallel): a worker's one core and the serial run's two end at the same weights
    for run in ("alibi-s0", "nope-s0", "rope-s0"):
        w1, _ = load_checkpoint(str(tmp_path / "serial" / "train" / run / "ckpt.npz"))
        w2, _ = load_checkpoint(str(tmp_path / "par" / "train" / run / "ckpt.npz"))
        params = [k for k in w1 if k.startswith("param/")]
        assert params and all(np.array_equal(w1[k], w2[k]) for k in params), run


def test_lab_rejects_a_stride_longer_than_the_window(tmp_path, small_corpus):
    with pytest.raises(ValueError, match="stride"):
        run_lab(LabConfig(pes=["nope"], mults=[1, 2], stride=65, out=str(tmp_path)), progress=False,
                corpus=small_corpus)
    with pytest.raises(ValueError, match="jobs"):
        LabConfig(jobs=0)


def test_lab_on_a_local_dask_cluster(tmp_path, small_corpus):
    """The --dask path end to end, with a two-process local cluster standing in for a real one."""
    distributed = pytest.importorskip("distributed")
    base = dict(pes=["nope", "alibi"], seeds=[0, 1], mults=[1, 2], steps=3, max_windows=2)
    serial, _ = run_lab(LabConfig(out=str(tmp_path / "serial"), **base), progress=False, log=lambda m: None,
                        corpus=small_corpus)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        logs = []
        res, _ = run_lab(LabConfig(out=str(tmp_path / "dask"), dask=cluster.scheduler_address, **base),
                         progress=False, log=logs.append, corpus=small_corpus)
    assert sum(": trained" in m for m in logs) == 4 and sum("evaluated" in m for m in logs) == 4
    a, b = _numbers(serial["records"]), _numbers(res["records"])
    assert a.keys() == b.keys()
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-4), k


def test_lab_dask_unreachable_fails_before_work(tmp_path, small_corpus):
    pytest.importorskip("distributed")
    with pytest.raises(ValueError, match="Dask scheduler"):
        run_lab(LabConfig(pes=["nope"], dask="tcp://127.0.0.1:9", out=str(tmp_path / "x")), progress=False,
                corpus=small_corpus)
    assert not os.path.exists(tmp_path / "x")


def test_killed_lab_sweep_resumes_to_the_same_numbers(tmp_path):
    """SIGKILL a real `tinype lab` sweep once its first run is on disk, rerun the same command: the
    finished work is kept, nothing is duplicated, and the numbers equal an uninterrupted sweep's."""
    import signal
    import subprocess
    import sys
    import time
    text = tmp_path / "text.txt"
    text.write_text(default_corpus_text()[:30000], encoding="utf-8")
    args = [sys.executable, "-m", "tinype.cli", "lab", "--pe", "nope,rope,alibi", "--steps", "6",
            "--lengths", "1,2", "--max-windows", "2", "--text", str(text), "--no-progress"]
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    r = subprocess.run(args + ["--out", full], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    proc = subprocess.Popen(args + ["--out", cut], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = os.path.join(cut, "train", "alibi-s0", "metrics.json")
    deadline = time.time() + 120
    while not os.path.exists(first) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(cut, "results.json"))     # it really was cut short
    r = subprocess.run(args + ["--out", cut], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "alibi seed 0: trained already, skipped" in r.stdout
    a = json.load(open(os.path.join(full, "results.json")))["records"]
    b = json.load(open(os.path.join(cut, "results.json")))["records"]
    assert [(x["pe"], x["seed"]) for x in b] == [(x["pe"], x["seed"]) for x in a]
    assert _numbers(a) == _numbers(b)
    assert sorted(os.listdir(os.path.join(cut, "eval"))) == ["alibi-s0.json", "nope-s0.json", "rope-s0.json"]
