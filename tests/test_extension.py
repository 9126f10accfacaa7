"""The public extension API: register a positional encoding (call or decorator), build it by name or
by module path (what `tinype lab --pe` and ModelConfig(pe=...) accept), and check all its gradients
with one call (tinype.gradcheck.check_encoding), which fails on a wrong backward."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tinype import AdamW, ModelConfig, Transformer, positions
from tinype.gradcheck import check_encoding
from tinype.positions import PositionalEncoding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
P_ROPE = os.path.join(ROOT, "chapters", "exercises", "solutions", "ex22_your_own_encoding.py")

LEARNED_SLOPE = textwrap.dedent('''
    import numpy as np
    from tinype.positions import PositionalEncoding

    class LearnedSlope(PositionalEncoding):
        """ALiBi with one learned slope per head: bias[h, d] = -slope[h] * d (causal table)."""
        def __init__(self, init=0.5, sign=1.0):
            self.init, self.sign = float(init), float(sign)
        def init_params(self, rng):
            return {"slope": np.full(self.n_head, self.init)}
        def bias(self, params, T, positions):
            d = np.arange(T, dtype=np.float64)
            return (-params["slope"][:, None] * d[None, :]).astype(self.dtype), d
        def bias_backward(self, params, dtable, d):
            return {"slope": self.sign * -(dtable * d[None, :]).sum(axis=1)}
    ''')


@pytest.fixture
def user_pe(tmp_path):
    path = tmp_path / "my_slopes.py"
    path.write_text(LEARNED_SLOPE)
    yield path
    sys.modules.pop("my_slopes", None)
    for name in ("my_slope", "slope2"):
        positions.unregister(name)


def test_register_by_call_and_by_decorator(user_pe):
    cls = positions.get(f"{user_pe}:LearnedSlope").__class__
    assert positions.register("my_slope", cls) is cls
    assert "my_slope" in positions.available()
    assert isinstance(positions.get("MY_SLOPE", init=0.25), cls) and positions.get("my_slope", init=0.25).init == 0.25

    @positions.register("slope2")
    class Slope2(cls):
        pass
    assert positions.get("slope2").__class__ is Slope2 and Slope2.name == "slope2"
    model = Transformer(ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=8, pe="my_slope"))
    assert "pe.slope" in model.parameters()


def test_register_refuses_what_it_cannot_serve():
    with pytest.raises(ValueError, match="one of tinype's own"):
        positions.register("rope", type("Mine", (PositionalEncoding,), {}))
    with pytest.raises(TypeError, match="subclass of tinype.positions.PositionalEncoding"):
        positions.register("plain", object)
    for bad in ("a+b", "x:y", "", "with space"):
        with pytest.raises(ValueError, match="PE name"):
            positions.register(bad, type("Mine", (PositionalEncoding,), {}))


def test_get_by_module_path_and_file_path(user_pe, monkeypatch):
    by_file = positions.get(f"{user_pe}:LearnedSlope", init=0.3)
    assert by_file.init == 0.3
    monkeypatch.syspath_prepend(str(user_pe.parent))
    by_module = positions.get("my_slopes:LearnedSlope")
    assert type(by_module).__name__ == "LearnedSlope"
    combo = positions.get(f"{user_pe}:LearnedSlope+logn")                 # combines like a name
    assert combo.describe().endswith("logn")
    model = Transformer(ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=8, pe=f"{user_pe}:LearnedSlope"))
    x = np.random.default_rng(0).integers(0, 256, (2, 8))
    assert np.isfinite(model.loss(x, x))


def test_get_says_what_is_wrong_with_a_module_path(tmp_path, user_pe):
    (tmp_path / "broken_pe.py").write_text("import numpy as np\nraise RuntimeError('half written')\n")
    (tmp_path / "not_pe.py").write_text("class Thing:\n    pass\n")
    cases = {f"{tmp_path}/nowhere.py:X": "no file",
             f"{user_pe}:Missing": "defines no 'Missing'",
             f"{tmp_path}/not_pe.py:Thing": "not a subclass of tinype.positions.PositionalEncoding",
             f"{tmp_path}/broken_pe.py:X": "importing .* failed: RuntimeError: half written",
             "no_such_module_xyz:X": "cannot import module 'no_such_module_xyz'",
             f"{user_pe}:": "a module path is",
             "unknown_name": "unknown positional encoding 'unknown_name'.*path/to/file.py:Class"}
    for spec, message in cases.items():
        with pytest.raises(ValueError, match=message):
            positions.get(spec)
    with pytest.raises(ValueError, match="bad options"):
        positions.get(f"{user_pe}:LearnedSlope", slope=3)


@pytest.mark.parametrize("name", ["rope", "t5", "kerple_power", "learned", "fire", "xpos", "alibi+logn"])
def test_check_encoding_passes_tinypes_own(name):
    errors = check_encoding(name)
    assert errors and max(errors.values()) < 1e-6
    assert any(k.startswith("model: ") for k in errors)


def test_check_encoding_checks_a_users_encoding_and_catches_a_wrong_backward(user_pe):
    errors = check_encoding(f"{user_pe}:LearnedSlope")
    assert errors["bias: slope"] < 1e-8 and errors["model: pe.slope"] < 1e-6
    wrong = positions.get(f"{user_pe}:LearnedSlope", sign=-1.0)         # the opposite sign in the backward
    with pytest.raises(AssertionError, match="bias -> slope: relative error 2"):
        check_encoding(wrong, model=False)

    class ForwardAsBackward(positions.Rotary):
        def rotate_backward(self, dq, dk, cache):
            (q, k), _ = self.rotate(dq, dk, self._last)
            return q, k

        def rotate(self, q, k, pos):
            self._last = pos
            return super().rotate(q, k, pos)
    with pytest.raises(AssertionError, match="rotate -> dq"):
        check_encoding(ForwardAsBackward, model=False)


def test_the_worked_example_trains_and_is_not_tinypes(tmp_path):
    assert "p_rope" not in {c.name for c in positions._FAMILIES}
    errors = check_encoding(f"{P_ROPE}:PartialRoPE")
    assert errors["rotate: dq"] < 1e-9 and errors["rotate: dk"] < 1e-9
    model = Transformer(ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=16, pe=f"{P_ROPE}:PartialRoPE"), seed=0)
    opt = AdamW(model.parameters(), lr=1e-2)
    x = np.random.default_rng(0).integers(0, 256, (4, 16))
    losses = []
    for _ in range(6):
        losses.append(model.loss(x, np.roll(x, -1, axis=1)))
        opt.step(model.backward())
    assert losses[-1] < losses[0] - 0.05, losses
    # and it differs from plain RoPE (the slow pairs do not turn) but equals it at fraction 1
    pe = positions.get(f"{P_ROPE}:PartialRoPE", fraction=0.5)
    rope = positions.get("rope")
    cfg = ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=16)
    pe.setup(cfg)
    rope.setup(cfg)
    q = np.random.default_rng(1).normal(size=(1, 2, 16, 8)).astype(np.float32)
    a, b = pe.rotate(q, q, np.arange(16.0))[0][0], rope.rotate(q, q, np.arange(16.0))[0][0]
    assert not np.allclose(a, b) and np.allclose(a[..., :2], b[..., :2]) and np.array_equal(a[..., 2:4], q[..., 2:4])
    assert a.dtype == np.float32


def test_canonical_keeps_the_case_of_module_paths():
    # what the command line should store: `tinype lab --pe path/To/My.py:MyPE` must keep its case
    assert positions.canonical(" ROPE+LogN ") == "rope+logn"
    assert positions.canonical(f"{P_ROPE}:PartialRoPE+LOGN") == f"{P_ROPE}:PartialRoPE+logn"
    assert type(positions.get(positions.canonical(f"{P_ROPE}:PartialRoPE"))).__name__ == "PartialRoPE"
    # and a class name that a command line lower-cased is still found (when the match is unique)
    assert type(positions.get(f"{P_ROPE}:partialrope")).__name__ == "PartialRoPE"


def test_the_command_line_trains_an_encoding_given_by_module_path(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tinype.cli", "train", "--pe", f"{P_ROPE}:PartialRoPE", "--steps", "2",
                        "--n-layer", "1", "--d-model", "16", "--n-head", "2", "--context", "8", "--batch-size", "2",
                        "--eval-every", "0", "--ckpt-every", "0", "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.path.exists(tmp_path / "run" / "ckpt.npz")
    r = subprocess.run([sys.executable, "-m", "tinype.cli", "train", "--pe", f"{tmp_path}/nope.py:X", "--steps", "1"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode != 0 and "no file" in r.stderr and "Traceback" not in r.stderr


def test_run_folders_of_module_path_encodings_stay_inside_the_lab_folder(tmp_path):
    """A module path holds slashes (an absolute one starts with one): the lab's run folders and records
    must still be names inside --out, not paths of their own (which would land beside the user's file)."""
    from tinype.lab.results import folder_name
    assert folder_name("rope+logn", 2) == "rope+logn-s2"
    name = folder_name(f"{P_ROPE}:PartialRoPE", 0)
    assert "/" not in name and name.startswith("user-partialrope-") and name.endswith("-s0")
    assert folder_name("a/b.py:PartialRoPE", 0) != name               # the hash tells two files apart
    before = set(os.listdir(os.path.dirname(P_ROPE)))
    out = tmp_path / "lab"
    r = subprocess.run([sys.executable, "-m", "tinype.cli", "lab", "--pe", f"{P_ROPE}:PartialRoPE", "--steps", "2",
                        "--lengths", "1,2", "--max-windows", "1", "--no-progress", "--out", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert set(os.listdir(os.path.dirname(P_ROPE))) == before
    assert os.listdir(out / "train") == [name] and os.listdir(out / "eval") == [name + ".json"]


def test_a_checkpoint_naming_outside_code_is_loaded_only_when_trusted(tmp_path):
    """Building a module-path encoding imports its file: a checkpoint (data, from anyone) may do that
    only with --trust-code."""
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "tinype.cli", "train", "--pe", f"{P_ROPE}:PartialRoPE", "--steps", "2",
                        "--n-layer", "1", "--d-model", "16", "--n-head", "2", "--context", "8", "--batch-size", "2",
                        "--eval-every", "0", "--ckpt-every", "0", "--out", str(run)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    gen = [sys.executable, "-m", "tinype.cli", "generate", "--checkpoint", str(run / "ckpt.npz"), "--prompt", "ab",
           "--max-new-tokens", "5"]
    r = subprocess.run(gen, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 1 and "--trust-code" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(gen + ["--trust-code"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("ab") and "bytes/s" in r.stderr, r.stderr
