"""Fine-tuning from a checkpoint (issue 16, point 1): train(init_from=...) and `tinype train --init-from`."""
import json
import os

import numpy as np
import pytest

from tinype import Corpus, ModelConfig, TrainConfig, load_model, train
from tinype.checkpoint import CheckpointError, load_checkpoint
from tinype.cli import main
from tinype.errors import InvalidValue, UserError
from tinype.positions import rope_inv_freq
from tinype.train import file_sha256, snapshot_path

CFG = ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=16, pe="rope")
QUIET = dict(progress=False, log=lambda *_: None)


def tcfg(**kw):
    base = dict(batch_size=4, steps=6, lr=3e-3, warmup=2, eval_every=0, eval_windows=4, ckpt_every=3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def corpus():
    return Corpus.default()


@pytest.fixture(scope="module")
def source(tmp_path_factory, corpus):
    """A finished 6-step rope run, and a learned-PE one."""
    root = tmp_path_factory.mktemp("src")
    train(CFG, tcfg(), corpus, out=str(root / "rope"), **QUIET)
    train(ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=16, pe="learned"), tcfg(), corpus,
          out=str(root / "learned"), **QUIET)
    return root


def test_weights_start_equal_and_the_optimizer_is_fresh(source, corpus, tmp_path):
    src_model, src_meta = load_model(str(source / "rope" / "ckpt.npz"))
    out = str(tmp_path / "ft")
    ft = ModelConfig(**{**CFG.to_dict(), "pe": "rope_yarn", "pe_options": {"factor": 4.0}})
    res = train(ft, tcfg(steps=5, batch_size=2), corpus, out=out, init_from=str(source / "rope"), context=64,
                snapshots=[0, 5], **QUIET)
    snap0, meta0 = load_model(snapshot_path(out, 0))
    for k, v in src_model.parameters().items():
        np.testing.assert_array_equal(snap0.parameters()[k], v, err_msg=k)      # step 0: the source's weights
    assert meta0["step"] == 0 and meta0["model_config"]["pe"] == "rope_yarn"
    arrays, meta = load_checkpoint(os.path.join(out, "ckpt.npz"))
    assert meta["optimizer"]["t"] == 5 != src_meta["optimizer"]["t"] + 5          # AdamW restarted at t = 0
    assert [h["step"] for h in meta["history"]] == [1, 2, 3, 4, 5]               # a fresh history ...
    assert res.history[0]["lr"] == pytest.approx(3e-3 / 2)                         # ... and a fresh warmup
    # the weights moved: 5 steps were taken from the source's
    moved = max(float(np.abs(res.model.parameters()[k] - v).max()) for k, v in src_model.parameters().items())
    assert moved > 1e-4
    snap5, _ = load_model(snapshot_path(out, 5))
    for k, v in res.model.parameters().items():
        np.testing.assert_array_equal(snap5.parameters()[k], v, err_msg=k)


def test_a_short_finetune_at_a_longer_context_records_its_origin(source, corpus, tmp_path):
    out = str(tmp_path / "ft")
    ckpt = str(source / "rope" / "ckpt.npz")
    ft = ModelConfig(**{**CFG.to_dict(), "pe": "rope_pi", "pe_options": {"factor": 4.0}})
    res = train(ft, tcfg(steps=5, batch_size=2), corpus, out=out, init_from=ckpt, context=64, **QUIET)
    assert res.val["windows"] == len(corpus.val) // 64 - (len(corpus.val) % 64 == 0)   # validated at 64
    origin = {"path": os.path.abspath(ckpt), "sha256": file_sha256(ckpt), "step": 6, "pe": "rope", "pe_options": {}}
    for record in (res.finetune, json.load(open(os.path.join(out, "metrics.json")))["finetune"],
                   json.load(open(os.path.join(out, "config.json")))["finetune"],
                   load_checkpoint(os.path.join(out, "ckpt.npz"))[1]["finetune"]):
        assert record == {"init_from": origin, "context": 64}
    # the scaled model keeps the trained length as its reference: PI divides every frequency by 4
    model, meta = load_model(os.path.join(out, "ckpt.npz"))
    assert model.config.T_train == 16
    inv, _ = model.pe.frequencies(64)
    np.testing.assert_allclose(inv, rope_inv_freq(8)[0] / 4)
    # a plain training records no origin at all
    assert "finetune" not in load_checkpoint(ckpt)[1]


@pytest.mark.parametrize("field, value", [("n_layer", 2), ("d_model", 32), ("n_head", 4), ("vocab_size", 128),
                                          ("T_train", 64)])
def test_every_shape_change_is_refused_by_name(source, corpus, field, value):
    cfg = ModelConfig(**{**CFG.to_dict(), field: value})
    with pytest.raises(InvalidValue) as err:
        train(cfg, tcfg(steps=1), corpus, init_from=str(source / "rope"), **QUIET)
    msg = str(err.value)
    assert f"{field} would change from {getattr(CFG, field)} (checkpoint) to {value}" in msg and "\n" not in msg


def test_an_encoding_with_other_parameters_and_a_learned_table_too_short_are_refused(source, corpus):
    with pytest.raises(InvalidValue, match=r"pe would change from 'rope' \(parameters: none\) to 'learned' "
                                           r"\(parameters: pe.wpe \(16, 16\)\)"):
        train(ModelConfig(**{**CFG.to_dict(), "pe": "learned"}), tcfg(steps=1), corpus,
              init_from=str(source / "rope"), **QUIET)
    with pytest.raises(InvalidValue, match="context would change from 16 to 64, which learned cannot run at"):
        train(None, tcfg(steps=1), corpus, init_from=str(source / "learned"), context=64, **QUIET)
    # the same table at its own length fine-tunes (the encoding's parameters are carried over)
    res = train(None, tcfg(steps=1), corpus, init_from=str(source / "learned"), **QUIET)
    assert res.finetune["init_from"]["pe"] == "learned"
    with pytest.raises(InvalidValue, match="context .* is for fine-tuning"):
        train(CFG, tcfg(steps=1), corpus, context=64, **QUIET)


def test_resume_continues_the_finetune_and_refuses_another_origin(source, corpus, tmp_path, monkeypatch):
    import sys
    out = str(tmp_path / "ft")
    args = dict(init_from=str(source / "rope"), context=32, **QUIET)
    full = train(None, tcfg(steps=6, batch_size=2), corpus, out=str(tmp_path / "full"), **args)
    train_module = sys.modules["tinype.train"]
    real_save, saves = train_module._save, []

    def save_then_interrupt(*a, **kw):
        real_save(*a, **kw)
        saves.append(1)
        if len(saves) == 1:
            raise KeyboardInterrupt
    monkeypatch.setattr(train_module, "_save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(None, tcfg(steps=6, batch_size=2), corpus, out=out, **args)
    monkeypatch.setattr(train_module, "_save", real_save)
    resumed = train(None, tcfg(steps=6, batch_size=2), corpus, out=out, resume=True, **args)
    assert resumed.resumed_from == 3
    for k, v in full.model.parameters().items():
        np.testing.assert_array_equal(resumed.model.parameters()[k], v, err_msg=k)
    with pytest.raises(CheckpointError, match="start: checkpoint a fine-tune of .* now a fine-tune of"):
        train(None, tcfg(steps=6, batch_size=2), corpus, out=out, resume=True, init_from=str(source / "learned"),
              context=16, **QUIET)
    with pytest.raises(CheckpointError, match="now a training from scratch"):
        train(CFG, tcfg(steps=6, batch_size=2), corpus, out=out, resume=True, **QUIET)


def run(capsys, *argv):
    try:
        rc = main(list(argv))
    except SystemExit as stop:
        rc = stop.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def test_cli_finetune_and_its_one_line_errors(source, tmp_path, capsys):
    base = ["train", "--init-from", str(source / "rope"), "--steps", "2", "--batch-size", "2", "--no-progress",
            "--eval-every", "0"]
    out = str(tmp_path / "ft")
    rc, _ = run(capsys, *base, "--pe", "rope_yarn", "--pe-option", "factor=4", "--pe-option", "beta_fast=16",
                "--context", "64", "--out", out)
    assert rc == 0
    meta = load_checkpoint(os.path.join(out, "ckpt.npz"))[1]
    assert meta["model_config"]["pe_options"] == {"factor": 4, "beta_fast": 16}
    assert meta["finetune"]["context"] == 64 and meta["train_config"]["steps"] == 2
    assert meta["train_config"]["lr"] == 3e-3 and meta["train_config"]["warmup"] == 0    # the source's lr
    for argv, words in [(["--pe", "rope_yarn", "--pe-option", "factr=4"], "rope_yarn: bad options ['factr']"),
                        (["--d-model", "32"], "d_model would change from 16 (checkpoint) to 32"),
                        (["--n-layer", "3"], "n_layer would change from 1 (checkpoint) to 3"),
                        (["--n-head", "4"], "n_head would change from 2 (checkpoint) to 4"),
                        (["--pe", "learned"], "pe would change from 'rope'"),
                        (["--init-from", str(tmp_path / "none")], "no checkpoint at"),
                        (["--out", out], "already holds a run")]:
        rc, err = run(capsys, *base, *argv)
        assert rc == 1 and words in err and err.count("\n") == 1, (argv, err)
    rc, err = run(capsys, "train", "--init-from", str(source / "learned"), "--context", "64", "--steps", "1",
                  "--out", str(tmp_path / "x"), "--no-progress")
    assert rc == 1 and "context would change from 16 to 64" in err and err.count("\n") == 1
    rc, err = run(capsys, *base, "--pe-option", "factor")
    assert rc == 2 and "expected key=value" in err
    # --resume continues the fine-tune in --out
    rc, _ = run(capsys, *base, "--pe", "rope_yarn", "--pe-option", "factor=4", "--pe-option", "beta_fast=16",
                "--context", "64", "--out", out, "--resume")
    assert rc == 0


def test_pe_option_values_are_typed():
    from tinype.cli import _pe_option
    assert _pe_option("factor=4") == ("factor", 4)
    assert _pe_option("factor=2.5") == ("factor", 2.5)
    assert _pe_option("interleaved=true") == ("interleaved", True)
    assert _pe_option("name=abc") == ("name", "abc")
    import argparse
    with pytest.raises(argparse.ArgumentTypeError, match="expected key=value"):
        _pe_option("=3")
    assert issubclass(InvalidValue, UserError)
