"""Files from anywhere (issue 13, point 3): checkpoints whose metadata lies (with a recomputed
checksum), non-finite or complex weights, missing metadata keys, malformed JSON the lab reads
back, and a server at the --dask address that is not a Dask scheduler."""
import json
import os
import socket
import threading

import numpy as np
import pytest

from tinype import ModelConfig, TrainConfig, train
from tinype.checkpoint import CheckpointError, _checksum, load_checkpoint, load_model, read_json, write_json
from tinype.cli import main
from tinype.data import Corpus, default_corpus_text, encode
from tinype.errors import InvalidFile, InvalidValue, UserError


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run"))
    corpus = Corpus(encode(default_corpus_text()[:20000]), name="small")
    train(ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=16, pe="learned"),
          TrainConfig(steps=2, batch_size=2, warmup=0), corpus, out=out, progress=False, log=lambda m: None)
    return os.path.join(out, "ckpt.npz")


def rewrite(src, dst, arrays=None, meta=None):
    """Edit a checkpoint's arrays or metadata and recompute its checksum, as a forger would."""
    with np.load(src) as z:
        d = {k: z[k] for k in z.files}
    m = json.loads(str(d.pop("__meta__")))
    d.pop("__checksum__")
    if arrays:
        arrays(d)
    if meta:
        meta(m)
    mj = json.dumps(m, sort_keys=True)
    np.savez(dst, __meta__=np.array(mj), __checksum__=np.array(_checksum(d, mj)), **d)
    return dst


def _no_model_allowed(monkeypatch):
    import tinype.model

    def refuse(*a, **k):
        raise AssertionError("a model was allocated")
    monkeypatch.setattr(tinype.model.Transformer, "__init__", refuse)


@pytest.mark.parametrize("field,value,match", [
    ("d_model", 10 ** 7, r"wte has shape \(256, 10000000\).*the file holds \(256, 16\)"),
    ("n_layer", 50, r"parameter h1\.ln_1\.w .* which the file lacks"),
    ("vocab_size", 10 ** 9, r"wte has shape \(1000000000, 16\)"),
    ("T_train", 10 ** 9, r"learned table of 1000000000 positions"),
    ("n_head", 0, r"n_head = 0 is not a positive integer"),
])
def test_lying_metadata_is_refused_before_any_allocation(ckpt, tmp_path, monkeypatch, field, value, match):
    def edit(m):
        m["model_config"][field] = value
    path = rewrite(ckpt, str(tmp_path / "forged.npz"), meta=edit)
    load_checkpoint(path)                                   # the checksum holds: it was recomputed
    _no_model_allowed(monkeypatch)
    with pytest.raises(CheckpointError, match=match):
        load_model(path)


def test_generate_refuses_the_d_model_forgery_in_one_line(ckpt, tmp_path, capsys):
    def edit(m):
        m["model_config"]["d_model"] = 10 ** 7
        m["model_config"]["n_head"] = 1
    path = rewrite(ckpt, str(tmp_path / "forged.npz"), meta=edit)
    assert main(["generate", "--checkpoint", path, "--max-new-tokens", "3"]) == 1
    err = capsys.readouterr().err
    assert "its metadata says wte has shape (256, 10000000)" in err and "Traceback" not in err


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused(ckpt, tmp_path, bad):
    def edit(d):
        d["param/h0.attn.w_qkv"][0, 1] = bad
    path = rewrite(ckpt, str(tmp_path / "bad.npz"), arrays=edit)
    with pytest.raises(CheckpointError, match=r"param/h0\.attn\.w_qkv holds 1 NaN or infinite"):
        load_checkpoint(path)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_weights_are_refused(ckpt, tmp_path, dtype):
    def edit(d):
        d["param/wte"] = d["param/wte"].astype(dtype)
    path = rewrite(ckpt, str(tmp_path / "c.npz"), arrays=edit)
    with pytest.raises(CheckpointError, match="dtype complex"):
        load_checkpoint(path)


def test_a_string_array_is_refused(ckpt, tmp_path):
    def edit(d):
        d["param/ln_f.b"] = np.array(["x"] * 16)
    with pytest.raises(CheckpointError, match="real numbers only"):
        load_checkpoint(rewrite(ckpt, str(tmp_path / "s.npz"), arrays=edit))


@pytest.mark.parametrize("drop", ["model_config", "model_config.d_model", "model_config.pe", "step", "optimizer"])
def test_a_missing_metadata_key_is_named(ckpt, tmp_path, drop, capsys):
    def edit(m):
        if "." in drop:
            del m["model_config"][drop.split(".")[1]]
        else:
            del m[drop]
    path = rewrite(ckpt, str(tmp_path / "ckpt.npz"), meta=edit)
    if drop.startswith("model_config"):
        with pytest.raises(CheckpointError, match=drop.split(".")[-1]):
            load_model(path)
    else:                                                   # what resuming needs
        with pytest.raises(CheckpointError, match=f"cannot be resumed: its metadata lacks {drop}"):
            train(ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=16, pe="learned"),
                  TrainConfig(steps=2, batch_size=2, warmup=0), Corpus(encode(default_corpus_text()[:20000]),
                                                                       name="small"),
                  out=str(tmp_path), resume=True, progress=False, log=lambda m: None)


def test_malformed_json_names_the_file(tmp_path):
    p = tmp_path / "r.json"
    p.write_text('{"pe": "nope", "lengths": {')
    with pytest.raises(InvalidFile, match=r"r\.json is not valid JSON"):
        read_json(str(p))
    p.write_text('{"nll": NaN}')                            # Python's json would accept it; JSON does not
    with pytest.raises(InvalidFile, match="NaN is not JSON"):
        read_json(str(p))
    with pytest.raises(UserError, match="not found"):
        read_json(str(tmp_path / "none.json"))


@pytest.mark.parametrize("where", ["eval/nope-s0.json", "tasks/copy/eval/nope-s0.json"])
def test_malformed_lab_records_are_named(tmp_path, where, capsys):
    from tinype.lab import LabConfig, run_lab
    corpus = Corpus(encode(default_corpus_text()[:30000]), name="small")
    cfg = LabConfig(pes=["nope"], mults=[1], steps=2, max_windows=1, tasks=["copy"], task_steps=2,
                    task_examples=1, task_factors=[1], out=str(tmp_path))
    run_lab(cfg, progress=False, log=lambda m: None, corpus=corpus)
    (tmp_path / where).write_text("{not json")
    with pytest.raises(InvalidFile, match=where.replace("/", ".") + " is not valid JSON"):
        run_lab(cfg, progress=False, log=lambda m: None, corpus=corpus)
    (tmp_path / where).write_text("[1, 2]")
    with pytest.raises(InvalidFile, match="is not a tinype lab record"):
        run_lab(cfg, progress=False, log=lambda m: None, corpus=corpus)
    os.remove(tmp_path / where)                               # deleted: recomputed, as the message says
    run_lab(cfg, progress=False, log=lambda m: None, corpus=corpus)
    assert json.loads((tmp_path / where).read_text())["pe"] == "nope"


def test_write_json_never_writes_a_bare_nan(tmp_path):
    p = str(tmp_path / "m.json")
    write_json(p, {"a": float("nan"), "b": [1.0, float("inf")], "c": np.float32("-inf"), "d": 2.5})
    assert read_json(p) == {"a": None, "b": [1.0, None], "c": None, "d": 2.5}


class _Server:
    """A TCP server on a free local port that is not a Dask scheduler: silent, or greeting wrongly."""

    def __init__(self, greeting=None):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.greeting, self.conns = greeting, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            if self.greeting:
                c.sendall(self.greeting)

    def close(self):
        for c in self.conns:
            c.close()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)             # wakes the accept() of the thread
        except OSError:
            pass
        self.sock.close()


@pytest.mark.parametrize("greeting,match", [(None, "did not greet like a Dask scheduler"),
                                            (b"SSH-2.0-OpenSSH_9.6\r\n", "is not a Dask scheduler"),
                                            (b"HTTP/1.0 400 Bad\r\n\r\n", "is not a Dask scheduler")])
def test_a_server_that_is_not_dask_is_named(tmp_path, greeting, match, monkeypatch):
    from tinype.lab import executors
    server = _Server(greeting)
    try:
        with pytest.raises(InvalidValue, match=match):
            executors.check_dask_address(f"tcp://127.0.0.1:{server.port}", timeout=1.0)
    finally:
        server.close()
    free = socket.socket()
    free.bind(("127.0.0.1", 0))                              # a port nobody listens on
    port = free.getsockname()[1]
    free.close()
    with pytest.raises(InvalidValue, match="cannot reach"):
        executors.check_dask_address(f"tcp://127.0.0.1:{port}", timeout=1.0)
    with pytest.raises(InvalidValue, match="not a scheduler address"):
        executors.check_dask_address("http://", timeout=1.0)


def test_the_lab_refuses_a_non_dask_server_before_work(tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed")
    from tinype.lab import executors
    real = executors.check_dask_address
    monkeypatch.setattr(executors, "check_dask_address", lambda a, timeout=5.0: real(a, timeout=1.0))
    server = _Server(None)
    try:
        rc = main(["lab", "--pe", "nope", "--steps", "2", "--lengths", "1", "--no-progress",
                   "--dask", f"tcp://127.0.0.1:{server.port}", "--out", str(tmp_path / "x")])
    finally:
        server.close()
    assert rc == 1
    assert "did not greet like a Dask scheduler" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
