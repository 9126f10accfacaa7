"""The exercises' switch (tinype.use_exercises / TINYPE_EXERCISES): with the reference solutions,
tinype gives the same numbers on the learner's pieces as on its own; every piece is really called
(a perturbed piece changes the model and check_piece names it); unfinished and broken pieces stay
tinype's own; the switch restores; and the capstone compares two loss curves and names a wrong piece."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tinype
from tinype import AdamW, ModelConfig, Transformer, exercises, kernels, layers
from tinype.gradcheck import rel_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOLUTIONS = os.path.join(ROOT, "chapters", "exercises", "solutions")
STUBS = os.path.join(ROOT, "chapters", "exercises")
SMALL = {"d_model": 32, "T_train": 32}          # the capstone's model, smaller for the tests


@pytest.fixture(autouse=True)
def tinype_own_afterwards():
    yield
    tinype.use_exercises(None)


def one_step(pe, T=8, dtype="float64", T_train=8):
    model = Transformer(ModelConfig(n_layer=2, d_model=16, n_head=2, T_train=T_train, pe=pe, dtype=dtype), seed=0)
    r = np.random.default_rng(1)
    for name, p in model.parameters().items():
        if name.startswith("pe."):                       # off their (often zero) initial values
            p += (0.1 * r.standard_normal(p.shape)).astype(p.dtype)
    x, y = r.integers(0, 256, (3, T)), r.integers(0, 256, (3, T))
    loss = model.loss(x, y)
    grads = {k: v.copy() for k, v in model.backward().items()}
    AdamW(model.parameters(), lr=0.01).step(grads, 0.01)
    return [("loss", np.array(loss))] + [("d" + k, g) for k, g in grads.items()] + \
           [(k, p.copy()) for k, p in model.parameters().items()]


def worst(a, b):
    errs = []
    for (name, x), (_, y) in zip(a, b):
        if np.linalg.norm(x - y) > 1e-10:                # exactly-zero gradients are rounding noise
            errs.append((rel_error(x, y), name))
    return max(errs, default=(0.0, None))


def test_the_report_names_the_learners_pieces():
    report = tinype.use_exercises(SOLUTIONS)
    assert sorted(report.yours) == sorted(exercises.PIECES) and not report.unfinished and not report.broken
    assert "p_rope" in report.encodings or "p_rope" in tinype.positions.available()
    assert f"yours ({len(exercises.PIECES)})" in str(report)
    stubs = tinype.use_exercises(STUBS)
    assert stubs.yours == [] and sorted(stubs.unfinished) == sorted(exercises.PIECES)
    assert "none yet" in str(stubs)


@pytest.mark.parametrize("pe,T", [("rope", 8), ("sinusoidal", 8), ("alibi", 8), ("t5", 8), ("kerple_log", 8),
                                  ("fire", 8), ("rope+logn", 16), ("rope_ntk", 16), ("rope_llama3", 16),
                                  ("xpos", 8), ("learned", 8), ("sandwich", 16)])
def test_the_solutions_give_tinypes_own_numbers(pe, T):
    own = one_step(pe, T)
    with tinype.use_exercises(SOLUTIONS):
        yours = one_step(pe, T)
    err, name = worst(yours, own)
    assert err < 1e-10, (pe, name, err)
    assert len(own) == len(yours)


def test_float32_models_agree_within_float32_tolerance():
    own = one_step("rope", dtype="float32")
    with tinype.use_exercises(SOLUTIONS):
        yours = one_step("rope", dtype="float32")
    assert rel_error(yours[0][1], own[0][1]) < 1e-6                          # the loss
    assert all(y.dtype == o.dtype for (_, y), (_, o) in zip(yours, own))    # dtypes kept
    assert worst(yours[1:], own[1:])[0] < 1e-3


def test_unfinished_pieces_stay_tinypes_own_bit_for_bit():
    own = one_step("t5")
    with tinype.use_exercises(STUBS) as report:
        assert report.yours == []
        stubs = one_step("t5")
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(own, stubs))


def test_the_switch_restores_tinypes_own():
    originals = (kernels.attention_forward, layers.gelu_backward, tinype.positions.rope.Rotary.rotate,
                 AdamW.step, tinype.model.layernorm_forward)
    with tinype.use_exercises(SOLUTIONS):
        assert kernels.attention_forward is not originals[0] and AdamW.step is not originals[3]
        with tinype.use_exercises(SOLUTIONS, pieces=["gelu_backward"]):    # nested: only one piece
            assert kernels.attention_forward is originals[0] and layers.gelu_backward is not originals[1]
        assert kernels.attention_forward is not originals[0]               # the outer state is back
    now = (kernels.attention_forward, layers.gelu_backward, tinype.positions.rope.Rotary.rotate,
           AdamW.step, tinype.model.layernorm_forward)
    assert all(a is b for a, b in zip(now, originals))
    tinype.use_exercises(SOLUTIONS)
    tinype.use_exercises(None)
    assert kernels.attention_forward is originals[0] and exercises.current().folder is None


def test_a_broken_piece_is_reported_and_left_to_tinype(tmp_path):
    (tmp_path / "ex11_gelu_backward.py").write_text("def gelu_backward(dout, x):\n    raise ValueError('oops')\n")
    (tmp_path / "ex12_softmax_backward.py").write_text("def softmax_backward(dout, y:\n")     # a syntax error
    report = tinype.use_exercises(tmp_path)
    assert report.yours == [] and "gelu_backward" in report.broken and "softmax_backward" in report.broken
    assert "ValueError: oops" in str(report) and "SyntaxError" in str(report)
    assert layers.gelu_backward is exercises._own(layers, "gelu_backward")
    with pytest.raises(ValueError, match="no folder"):
        tinype.use_exercises(tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown pieces"):
        tinype.use_exercises(SOLUTIONS, pieces=["softmax"])


def test_the_environment_variable_switches_at_import(tmp_path):
    code = "import tinype; print(len(tinype.exercises.current().yours))"
    env = dict(os.environ, TINYPE_EXERCISES=SOLUTIONS)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == str(len(exercises.PIECES)), r.stderr
    assert "tinype uses your pieces from" in r.stderr                    # said once, on stderr
    env["TINYPE_EXERCISES"] = str(tmp_path / "missing")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "0" and "Traceback" not in r.stderr
    assert "TINYPE_EXERCISES" in r.stderr and "no folder" in r.stderr


# Every piece is really called: a slightly wrong piece changes the model, and check_piece names it.

PERTURB = {   # piece -> how to spoil its output a little
    "t5_bucket": "np.minimum(out + (np.abs(args[0]) > 3), 31)",
    "adamw_step": "(out[0] * 1.001, out[1], out[2])",
    "linear_backward": "(out[0], out[1] * 1.001, out[2])",
    "layernorm_backward": "(out[0] * 1.001, out[1], out[2])",
    "attention_backward": "(out[0] * 1.001, out[1], out[2], out[3])",
}


def spoiled_folder(folder, piece):
    stem, fname = exercises.PIECES[piece]
    src = [f for f in os.listdir(SOLUTIONS) if f.endswith(f"_{stem}.py")][0]
    expr = PERTURB.get(piece, "out * 1.001")
    (folder / src).write_text(textwrap.dedent(f"""
        import importlib.util
        import numpy as np
        _spec = importlib.util.spec_from_file_location("_solution", {os.path.join(SOLUTIONS, src)!r})
        _m = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(_m)

        def {fname}(*args, **kwargs):
            out = _m.{fname}(*args, **kwargs)
            return {expr}
        """))
    return folder


@pytest.mark.parametrize("piece", sorted(exercises.PIECES))
def test_each_piece_is_called_and_a_wrong_one_is_named(tmp_path, piece):
    right, _ = exercises.check_piece(SOLUTIONS, piece, overrides=SMALL)
    assert right is None, (piece, right)
    tensor, err = exercises.check_piece(spoiled_folder(tmp_path, piece), piece, overrides=SMALL)
    assert tensor is not None and err > 1e-6, (piece, tensor, err)


def test_capstone_curves_agree_with_the_solutions(tmp_path):
    result = exercises.compare_training(SOLUTIONS, steps=15, batch_size=2, figure=str(tmp_path / "c.png"),
                                        overrides=SMALL)
    assert result.agree and result.loop == "yours", str(result)
    assert max(abs(a - b) / b for a, b in zip(result.yours, result.own)) < 1e-5
    assert result.own[-1] < result.own[0]                                 # it did train
    assert os.path.getsize(result.figure) > 10_000
    assert "the two loss curves agree" in str(result)


def test_capstone_names_the_wrong_piece_and_the_step(tmp_path):
    import shutil
    for f in os.listdir(SOLUTIONS):
        if f.startswith("ex"):
            shutil.copy(os.path.join(SOLUTIONS, f), tmp_path)
    text = (tmp_path / "ex11_gelu_backward.py").read_text()
    (tmp_path / "ex11_gelu_backward.py").write_text(text.replace("0.5 * (1 + t) + ", "0.5 * (1 - t) + "))
    result = exercises.compare_training(tmp_path, steps=6, batch_size=2, figure=str(tmp_path / "c.png"),
                                        overrides=SMALL)
    assert not result.agree
    assert result.first_step == 1                 # a backward: the first loss is right, the update is not
    assert [c[0] for c in result.culprits] == ["gelu_backward"], result.culprits
    assert result.culprits[0][1] == "the gradient of h1.mlp.b_fc", result.culprits   # just below GELU
    text = str(result)
    assert "the loss curves differ from step 1" in text and "piece gelu_backward differs" in text, text
    assert os.path.exists(result.figure)


def test_capstone_without_the_loop_uses_tinypes_and_says_so(tmp_path):
    (tmp_path / "ex11_gelu_backward.py").write_text(open(os.path.join(SOLUTIONS, "ex11_gelu_backward.py")).read())
    result = exercises.compare_training(tmp_path, steps=3, batch_size=2, overrides=SMALL)
    assert result.agree and result.pieces == ["gelu_backward"] and result.loop.startswith("tinype's")
