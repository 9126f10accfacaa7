"""Training, checkpoints, resume, generation and the command line, on tiny budgets."""
import json
import os
import sys

import numpy as np
import pytest

from tinype import Corpus, ModelConfig, TrainConfig, generate, load_model, train
from tinype.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tinype.cli import main

CFG = ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=16)


def tcfg(**kw):
    base = dict(batch_size=4, steps=12, lr=3e-3, warmup=2, eval_every=5, eval_windows=4, ckpt_every=4)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def corpus():
    return Corpus.default()


def test_training_lowers_the_loss(corpus):
    res = train(CFG, tcfg(steps=60, batch_size=8, eval_every=0), corpus, progress=False, log=lambda *_: None)
    first = np.mean([h["loss"] for h in res.history[:5]])
    last = np.mean([h["loss"] for h in res.history[-5:]])
    assert first > 5.0 and last < first - 1.0
    assert res.val["nll"] < 4.5 and res.val["windows"] > 100


def test_resume_reaches_the_same_weights(corpus, tmp_path, monkeypatch):
    quiet = lambda *_: None
    full = train(CFG, tcfg(), corpus, out=str(tmp_path / "a"), progress=False, log=quiet)
    # Interrupt a second run right after its second checkpoint (step 8), as Ctrl-C would ...
    train_module = sys.modules["tinype.train"]
    real_save, saves = train_module._save, []

    def save_then_interrupt(*args, **kw):
        real_save(*args, **kw)
        saves.append(1)
        if len(saves) == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(train_module, "_save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(CFG, tcfg(), corpus, out=str(tmp_path / "b"), progress=False, log=quiet)
    monkeypatch.setattr(train_module, "_save", real_save)
    _, meta = load_checkpoint(str(tmp_path / "b" / "ckpt.npz"))
    assert meta["step"] == 8
    # ... then rerun the same command with resume: the final weights are bit-identical.
    resumed = train(CFG, tcfg(), corpus, out=str(tmp_path / "b"), resume=True, progress=False, log=quiet)
    assert resumed.resumed_from == 8
    for k, v in full.model.parameters().items():
        np.testing.assert_array_equal(resumed.model.parameters()[k], v, err_msg=k)
    assert [h["step"] for h in resumed.history] == list(range(1, 13))


def test_existing_run_needs_resume(corpus, tmp_path):
    quiet = lambda *_: None
    train(CFG, tcfg(steps=2), corpus, out=str(tmp_path), progress=False, log=quiet)
    with pytest.raises(FileExistsError, match="--resume"):
        train(CFG, tcfg(steps=2), corpus, out=str(tmp_path), progress=False, log=quiet)
    with pytest.raises(CheckpointError, match="steps: checkpoint 2, now 3"):
        train(CFG, tcfg(steps=3), corpus, out=str(tmp_path), resume=True, progress=False, log=quiet)


def test_checkpoint_roundtrip_and_tamper_detection(tmp_path):
    path = str(tmp_path / "c.npz")
    arrays = {"param/w": np.arange(6.0).reshape(2, 3), "m/w": np.zeros((2, 3), np.float32)}
    save_checkpoint(path, arrays, {"step": 3})
    got, meta = load_checkpoint(path)
    assert meta["step"] == 3 and np.array_equal(got["param/w"], arrays["param/w"])
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]     # no temporary left
    raw = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)
    save_checkpoint(path, {"param/w": np.ones(3)}, {"step": 1})
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    data["param/w"] = data["param/w"] * 2
    np.savez(path, **data)
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(str(tmp_path / "missing.npz"))


def test_generate_is_seeded_and_valid(corpus, tmp_path):
    train(CFG, tcfg(steps=5), corpus, out=str(tmp_path), progress=False, log=lambda *_: None)
    model, meta = load_model(str(tmp_path / "ckpt.npz"))
    a = generate(model, "The ", 40, temperature=0.8, top_k=20, seed=3)
    b = generate(model, "The ", 40, temperature=0.8, top_k=20, seed=3)
    assert a == b and len(a.encode("utf-8", errors="replace")) >= 1
    greedy = generate(model, "The ", 30, temperature=0)            # longer than T_train=16: context crops
    assert greedy == generate(model, "The ", 30, temperature=0, seed=99)
    with pytest.raises(ValueError, match="top_k"):
        generate(model, "x", 5, top_k=0)


def test_cli_train_generate_and_errors(tmp_path, capsys):
    out = str(tmp_path / "run")
    rc = main(["train", "--steps", "3", "--out", out, "--no-progress", "--eval-every", "0"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "perplexity" in text and "tokens/s" in text
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["steps"] == 3 and metrics["val_ppl"] > 1
    assert main(["generate", "--checkpoint", os.path.join(out, "ckpt.npz"), "--prompt", "def ",
                 "--max-new-tokens", "10", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("def ")
    assert main(["generate", "--checkpoint", str(tmp_path / "nothing.npz")]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--pe", "bogus"])
    assert "unknown positional encoding 'bogus'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--steps", "-4"])
    empty = tmp_path / "e.txt"
    empty.write_text("")
    assert main(["train", "--text", str(empty), "--out", str(tmp_path / "r2")]) == 1
    assert "empty" in capsys.readouterr().err


def test_killed_run_resumes_to_identical_weights(tmp_path):
    """SIGKILL a real `tinype train` process after its first checkpoint, rerun with --resume, and
    compare with an uninterrupted run: no step lost or repeated, the same final weights."""
    import signal
    import subprocess
    import time
    args = ["-m", "tinype.cli", "train", "--steps", "40", "--ckpt-every", "5", "--eval-every", "0",
            "--no-progress", "--batch-size", "8"]
    full = str(tmp_path / "full")
    r = subprocess.run([sys.executable, *args, "--out", full], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    cut = str(tmp_path / "cut")
    proc = subprocess.Popen([sys.executable, *args, "--out", cut], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt = os.path.join(cut, "ckpt.npz")
    deadline = time.time() + 120
    while not os.path.exists(ckpt) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, meta = load_checkpoint(ckpt)                                  # the checkpoint on disk is whole
    assert 5 <= meta["step"] <= 40 and meta["step"] % 5 == 0
    r = subprocess.run([sys.executable, *args, "--out", cut, "--resume"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    a, ma = load_checkpoint(os.path.join(full, "ckpt.npz"))
    b, mb = load_checkpoint(ckpt)
    assert [h["step"] for h in mb["history"]] == list(range(1, 41))
    for name in a:
        if name.startswith("param/"):
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(corpus, tmp_path, monkeypatch):
    from tinype.model import Transformer
    from tinype.train import TrainingDiverged
    real_loss, calls = Transformer.loss, []

    def loss_turning_nan(self, *args, **kw):
        calls.append(1)
        value = real_loss(self, *args, **kw)
        return float("nan") if len(calls) == 6 else value            # the 6th step (0-based step 5)
    monkeypatch.setattr(Transformer, "loss", loss_turning_nan)
    out = str(tmp_path / "run")
    with pytest.raises(TrainingDiverged) as err:
        train(CFG, tcfg(steps=12, ckpt_every=4, eval_every=0), corpus, out=out, progress=False,
              log=lambda *_: None)
    msg = str(err.value)
    assert "loss became nan at step 5" in msg and "ckpt.npz" in msg and "--lr 0.0015" in msg
    _, meta = load_checkpoint(os.path.join(out, "ckpt.npz"))
    assert meta["step"] == 4                                          # the last good checkpoint, untouched


def test_cli_rejects_impossible_shapes_before_any_work(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["train", "--d-model", "60", "--n-head", "8", "--out", str(out)]) == 1
    assert "not divisible by n_head=8" in capsys.readouterr().err
    assert main(["train", "--pe", "rope", "--d-model", "12", "--n-head", "4", "--out", str(out)]) == 1
    assert "even head dimension" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--context", "0"])
    assert ">= 1" in capsys.readouterr().err
    assert not out.exists()
