"""No traceback for a user's error, a traceback for a bug (issue 13, point 4), and a clean shutdown
on SIGTERM (point 5). Every case runs through tinype.cli.main, as the command does."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tinype.checkpoint import load_checkpoint
from tinype.cli import main
from tinype.data import default_corpus_text
from tinype.errors import UserError


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    p = tmp_path_factory.mktemp("text") / "a.txt"
    p.write_text(default_corpus_text()[:30000], encoding="utf-8")
    return str(p)


def run(capsys, *argv):
    """main(argv) -> (exit code, stderr); argparse's own refusals (exit 2) included."""
    try:
        rc = main(list(argv))
    except SystemExit as stop:
        rc = stop.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


TRAIN = ["train", "--steps", "2", "--no-progress", "--eval-every", "0"]


def test_out_under_a_file(tmp_path, text, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    rc, err = run(capsys, *TRAIN, "--text", text, "--out", str(f / "run"))
    assert rc == 1 and "lies under a file, not a folder" in err
    rc, err = run(capsys, *TRAIN, "--text", text, "--out", str(f))
    assert rc == 1 and "is a file, not a folder" in err
    rc, err = run(capsys, "lab", "--pe", "nope", "--steps", "2", "--lengths", "1", "--no-progress", "--text", text,
                  "--out", str(f / "lab"))
    assert rc == 1 and "lies under a file" in err


def test_out_unwritable(tmp_path, text, capsys, monkeypatch):
    # tests run as root, who may write anywhere: make the folder's creation fail as it would for a user
    real = os.makedirs

    def denied(path, *a, **k):
        if "locked" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *a, **k)
    monkeypatch.setattr(os, "makedirs", denied)
    rc, err = run(capsys, *TRAIN, "--text", text, "--out", str(tmp_path / "locked" / "run"))
    assert rc == 1 and "cannot be written (Permission denied)" in err
    monkeypatch.undo()
    rc, err = run(capsys, *TRAIN, "--text", text, "--out", "/proc/tinype-cannot-be-here")
    assert rc == 1 and "cannot be written" in err


def test_out_empty(text, capsys):
    rc, err = run(capsys, *TRAIN, "--text", text, "--out", "")
    assert rc == 1 and "--out is empty" in err
    rc, err = run(capsys, "lab", "--out", "", "--text", text)
    assert rc == 1 and "--out is empty" in err


def test_text_unreadable_folder_empty_binary(tmp_path, capsys, monkeypatch):
    p = tmp_path / "locked.txt"
    p.write_text("some text " * 100)
    import builtins
    real = builtins.open

    def denied(path, *a, **k):                   # root reads every file: simulate a user without permission
        if str(path) == str(p):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *a, **k)
    monkeypatch.setattr(builtins, "open", denied)
    rc, err = run(capsys, *TRAIN, "--text", str(p), "--out", str(tmp_path / "r"))
    assert rc == 1 and "cannot be read: Permission denied" in err
    monkeypatch.undo()
    rc, err = run(capsys, *TRAIN, "--text", str(tmp_path), "--out", str(tmp_path / "r"))
    assert rc == 1 and "expects a file, got the folder" in err
    (tmp_path / "bin").write_bytes(b"\x00\x01" * 100)
    rc, err = run(capsys, *TRAIN, "--text", str(tmp_path / "bin"), "--out", str(tmp_path / "r"))
    assert rc == 1 and "looks binary" in err
    rc, err = run(capsys, *TRAIN, "--text", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "r"))
    assert rc == 1 and "text file not found" in err
    assert not (tmp_path / "r").exists()


def test_text_fifo_is_refused_not_read(tmp_path):
    """A FIFO with no writer blocks open() forever: it must be refused before it is opened."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for cmd in (["train", "--steps", "2"], ["lab", "--steps", "2", "--lengths", "1"]):
        r = subprocess.run([sys.executable, "-m", "tinype.cli", *cmd, "--text", str(fifo), "--no-progress",
                            "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, r.stderr
        assert "is a FIFO (named pipe)" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("flag,value,words", [
    ("--batch-size", "1e12", ["batch of 1,000,000,000,000 x 64", "PiB of memory"]),
    ("--batch-size", "1000000000000", ["PiB of memory"]),
    ("--d-model", "1e6", ["width 1,000,000", "TiB of memory"]),
    ("--n-layer", "100000", ["of memory", "Lower --batch-size, --d-model"]),
])
def test_absurd_sizes_are_refused_with_the_memory_they_need(tmp_path, text, capsys, monkeypatch, flag, value, words):
    import tinype.model

    def refuse(*a, **k):
        raise AssertionError("a model was allocated")
    monkeypatch.setattr(tinype.model.Transformer, "__init__", refuse)
    args = [*TRAIN, "--text", text, "--out", str(tmp_path / "r"), flag, value]
    if flag == "--d-model":
        args += ["--n-head", "4"]
    rc, err = run(capsys, *args)
    assert rc == 1 and "needs about" in err and "this machine has" in err, err
    for w in words:
        assert w in err
    assert not (tmp_path / "r" / "ckpt.npz").exists()


def test_steps_too_many_or_not_whole(tmp_path, text, capsys):
    rc, err = run(capsys, *TRAIN[:1], "--steps", "1e23", "--text", text, "--out", str(tmp_path / "r"))
    assert rc == 1 and "at most 10,000,000" in err
    rc, err = run(capsys, "train", "--steps", "2.5")
    assert rc == 2 and "expected a whole number, got '2.5'" in err
    rc, err = run(capsys, "lab", "--steps", "1e23", "--text", text, "--out", str(tmp_path / "lab"))
    assert rc == 1 and "at most 10,000,000" in err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, text):
    out = str(tmp_path_factory.mktemp("ck"))
    assert main([*TRAIN, "--text", text, "--out", out]) == 0
    return os.path.join(out, "ckpt.npz")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "x"])
def test_temperature_must_be_finite_and_non_negative(checkpoint, capsys, value):
    rc, err = run(capsys, "generate", "--checkpoint", checkpoint, f"--temperature={value}", "--max-new-tokens", "2")
    assert rc in (1, 2) and "temperature" in err


def test_a_tiny_temperature_is_greedy_not_nan(checkpoint, capsys):
    from tinype import generate, load_model
    model, _ = load_model(checkpoint)
    assert generate(model, "The ", 5, temperature=1e-300) == generate(model, "The ", 5, temperature=0)


def test_lengths_too_large_are_refused_before_training(tmp_path, text, capsys):
    out = tmp_path / "lab"
    rc, err = run(capsys, "lab", "--pe", "nope", "--steps", "2", "--lengths", "1,64", "--text", text,
                  "--no-progress", "--out", str(out))
    assert rc == 1 and "--lengths 64 asks for windows of 4,096 bytes" in err and "--lengths up to 46" in err
    assert not (out / "train").exists()


def test_other_lab_input_errors(tmp_path, text, capsys):
    for argv, words in [(["--pe", "rope,bogus"], "unknown positional encoding 'bogus'"),
                        (["--lengths", "1,x"], "--lengths"), (["--lengths", "0"], ">= 1"),
                        (["--seeds", "-1"], "--seeds"), (["--tasks", "multiply"], "unknown task 'multiply'"),
                        (["--stride", "1000"], "--stride 1000 is longer"),
                        (["--preset", "quick", "--jobs", "0"], "expected a number >= 1"),
                        (["--tasks-only"], "--tasks-only needs --tasks"),
                        (["--tasks-only", "--tasks", "copy", "--lengths", "1,2"], "--lengths, --text set the language models"),
                        (["--tasks-only", "--tasks", "copy", "--extend", "4"], "--tasks-only leaves out")]:
        rc, err = run(capsys, "lab", *argv, "--text", text, "--out", str(tmp_path / "x"))
        assert rc in (1, 2) and words in err, (argv, err)
    assert not (tmp_path / "x").exists()


def test_a_bug_keeps_its_traceback(tmp_path, text, monkeypatch):
    """A ValueError from inside tinype is a bug: main() lets it through (today's one-line message hid it)."""
    train_module = sys.modules["tinype.train"]          # tinype.train is also the function's name

    def broken(*a, **k):
        raise ValueError("an internal bug")
    monkeypatch.setattr(train_module, "_validate", broken)
    with pytest.raises(ValueError, match="an internal bug"):
        main([*TRAIN, "--text", text, "--out", str(tmp_path / "r")])
    monkeypatch.setattr(train_module, "_validate", lambda *a, **k: (_ for _ in ()).throw(KeyError("x")))
    with pytest.raises(KeyError):
        main([*TRAIN, "--text", text, "--out", str(tmp_path / "r2")])


def test_user_errors_are_still_the_builtin_kinds():
    from tinype.checkpoint import CheckpointError
    from tinype.errors import FolderInUse, InvalidValue, MissingFile
    assert issubclass(InvalidValue, ValueError) and issubclass(MissingFile, FileNotFoundError)
    assert issubclass(FolderInUse, FileExistsError) and issubclass(CheckpointError, UserError)


# clean shutdown ------------------------------------------------------------------------------------

def test_sigterm_stops_like_ctrl_c_and_the_run_resumes_to_identical_weights(tmp_path):
    args = [sys.executable, "-m", "tinype.cli", "train", "--steps", "40", "--ckpt-every", "5", "--eval-every", "0",
            "--no-progress", "--batch-size", "8"]
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    r = subprocess.run(args + ["--out", full], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    proc = subprocess.Popen(args + ["--out", cut], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = os.path.join(cut, "ckpt.npz")
    deadline = time.time() + 120
    while not os.path.exists(ckpt) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before SIGTERM arrived")
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM); rerun with --resume" in err and "Traceback" not in err
    _, meta = load_checkpoint(ckpt)                                   # intact
    assert meta["step"] % 5 == 0
    assert not [f for f in os.listdir(cut) if f.startswith(".tmp-")]
    r = subprocess.run(args + ["--out", cut, "--resume"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    a, _ = load_checkpoint(os.path.join(full, "ckpt.npz"))
    b, mb = load_checkpoint(ckpt)
    assert [h["step"] for h in mb["history"]] == list(range(1, 41))
    for name in a:
        if name.startswith("param/"):
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_sigterm_stops_a_lab_with_its_message(tmp_path, text):
    args = [sys.executable, "-m", "tinype.cli", "lab", "--pe", "nope,alibi", "--steps", "300", "--lengths", "1",
            "--text", text, "--no-progress", "--out", str(tmp_path / "lab")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "lab" / "train" / "alibi-s0" / "ckpt.npz"
    deadline = time.time() + 600                  # a loaded machine starts slowly
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the lab finished before SIGTERM arrived")
    assert proc.returncode == 143 and "terminated (SIGTERM); rerun the same command" in err, err
    load_checkpoint(str(ckpt))


def test_an_orphan_temporary_is_removed_by_the_next_run(tmp_path, text, capsys):
    out = tmp_path / "run"
    out.mkdir()
    orphan = out / ".tmp-k1ll3dckpt.npz"
    orphan.write_bytes(b"half a checkpoint")
    assert main([*TRAIN, "--text", text, "--out", str(out)]) == 0
    assert not orphan.exists()
    lab = tmp_path / "lab"
    cmd = ["lab", "--pe", "nope", "--steps", "2", "--lengths", "1", "--max-windows", "1", "--no-progress",
           "--text", text, "--out", str(lab)]
    assert main(cmd) == 0
    orphans = [lab / ".tmp-xresults.json", lab / "eval" / ".tmp-ynope-s0.json", lab / "train" / "nope-s0" / ".tmp-z"]
    for o in orphans:
        o.write_text("{")
    assert main(cmd) == 0
    assert not any(o.exists() for o in orphans)
    assert "removed" in capsys.readouterr().out


def test_metrics_json_never_holds_a_bare_nan(tmp_path, text, monkeypatch):
    train_module = sys.modules["tinype.train"]
    real = train_module.evaluate_lm
    monkeypatch.setattr(train_module, "evaluate_lm", lambda *a, **k: dict(real(*a, **k), nll=float("nan"),
                                                                          ppl=float("inf")))
    assert main([*TRAIN, "--text", text, "--out", str(tmp_path)]) == 0
    raw = (tmp_path / "metrics.json").read_text()

    def strict(c):
        raise ValueError(f"bare {c}")
    m = json.loads(raw, parse_constant=strict)
    assert m["val_nll"] is None and m["val_ppl"] is None and m["steps"] == 2
