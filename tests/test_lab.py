"""The lab on a tiny budget: what it trains, what it reuses, what it writes, and that reruns skip."""
import csv
import json
import os

import numpy as np
import pytest

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
