"""Proof that the exercise grader grades and teaches: it passes the reference solutions, fails every
untouched stub with a "not done yet" message naming the exercise, fails deliberately wrong answers
with the relative error, the tolerance and a reproduction command, and each hint fires on the
mistake it names. Also: every stub points at a chapter section by one of the fixed titles."""
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXERCISES = os.path.join(ROOT, "chapters", "exercises")
SOLUTIONS = os.path.join(EXERCISES, "solutions")
GRADE = os.path.join(EXERCISES, "grade.py")
N_EXERCISES = 22

# The section titles the chapters carry verbatim (/work/helpers/COURSE-BRIEF.md); the pointer names one.
FIXED_TITLES = {
    "ch2_concepts.py": ["Perplexity over non-overlapping windows"],
    "ch3_algorithm.py": ["Linear layer backward", "GELU backward", "Softmax backward", "LayerNorm backward",
                         "Attention backward", "Cross-entropy backward", "The AdamW update"],
    "ch4_math.py": ["Sinusoidal encoding", "RoPE", "RoPE backward", "ALiBi slopes", "T5 buckets", "KERPLE",
                    "Sandwich", "FIRE", "Position interpolation", "NTK-aware scaling", "Dynamic NTK", "YaRN",
                    "Llama 3 scaling", "Log-n scaling"],
    "ch5_practice.py": ["The LSTM step"],
}
POINTER = re.compile(r'^Read first: chapters/(ch\d_[a-z0-9_]+\.py), section "([^"]+)"$', re.M)
LEVEL = re.compile(r'^"""Exercise (\d\d) \((warm-up|core|challenge)\): ', re.M)


def grade(*args):
    env = {k: v for k, v in os.environ.items() if k not in ("TINYPE_EXERCISES", "TINYPE_GRADE_DIR")}
    r = subprocess.run([sys.executable, GRADE, *args], capture_output=True, text=True, timeout=600, env=env)
    return r.returncode, r.stdout + r.stderr


def sections(out):
    """{"ex12": the failure text of ex12, ...} from grade.py's output."""
    return {m.group(1): m.group(2) for m in re.finditer(r"\n--- (ex\d\d)_\w+ \([^\n]*\) ---\n(.*?)(?=\n--- ex|\n\d+ of \d+ )",
                                                        out, flags=re.S)}


def stubs():
    return sorted(f for f in os.listdir(EXERCISES) if re.fullmatch(r"ex\d\d_\w+\.py", f))


def test_one_numbered_path_with_levels_and_a_chapter_pointer_each():
    files = stubs()
    assert len(files) == N_EXERCISES >= 20
    assert [f[:4] for f in files] == [f"ex{i:02d}" for i in range(1, N_EXERCISES + 1)]       # ex01..exNN, no gap
    assert files == sorted(f for f in os.listdir(SOLUTIONS) if f.startswith("ex"))
    for f in files:
        text = open(os.path.join(EXERCISES, f), encoding="utf-8").read()
        level = LEVEL.search(text)
        assert level and level.group(1) == f[2:4], f"{f}: the first line must be '\"\"\"Exercise NN (level): name.'"
        pointers = POINTER.findall(text)
        assert len(pointers) == 1, f"{f}: exactly one 'Read first: chapters/chN_x.py, section \"Title\"' line"
        chapter, title = pointers[0]
        assert os.path.exists(os.path.join(ROOT, "chapters", chapter)), f"{f}: no chapter {chapter}"
        assert title in FIXED_TITLES.get(chapter, []), f"{f}: {title!r} is not a fixed title of {chapter}"


def test_each_stub_scaffolds_and_raises_naming_itself():
    for f in stubs():
        text = open(os.path.join(EXERCISES, f), encoding="utf-8").read()
        assert f"raise NotImplementedError(\"exercise {f[:4]}" in text, f
        assert "Steps:" in text and re.search(r"^\s+1\. ", text, re.M), f"{f}: the steps as a numbered list"
        assert "Returns" in text, f"{f}: the shapes of the outputs"


def test_grader_passes_the_reference_solutions():
    rc, out = grade("--dir", SOLUTIONS)
    assert rc == 0, out
    assert f"{N_EXERCISES} of {N_EXERCISES} exercises pass" in out


def test_grader_fails_every_untouched_stub():
    rc, out = grade()
    assert rc == 1, out
    assert f"0 of {N_EXERCISES} exercises pass" in out
    assert out.count(": not done yet (exercise ") == N_EXERCISES
    assert "During handling" not in out and "Traceback" not in out


def _wrong(folder, stem, old, new):
    """Copy the solution `stem` into folder with `old` replaced by `new` (which must occur)."""
    text = open(os.path.join(SOLUTIONS, stem + ".py"), encoding="utf-8").read()
    assert old in text, (stem, old)
    with open(os.path.join(folder, stem + ".py"), "w", encoding="utf-8") as f:
        f.write(text.replace(old, new))


MISTAKES = [
    # (exercise stem, what to replace, the mistake, the words its hint must say)
    ("ex12_softmax_backward", "return y * (dout - (dout * y).sum(axis=-1, keepdims=True))",
     "return y * ((dout * y).sum(axis=-1, keepdims=True) - dout)", "with the opposite sign"),
    ("ex06_rope_backward", "rotated = np.concatenate([dout[..., h:], -dout[..., :h]], axis=-1)",
     "rotated = np.concatenate([-dout[..., h:], dout[..., :h]], axis=-1)", "equals the FORWARD"),
    ("ex10_linear_backward", "x2.T @ d2, d2.sum(axis=0)", "d2.T @ x2, d2.sum(axis=0)",
     "your shape is the expected one transposed"),
    ("ex16_attention_backward", "    ds = ds / np.sqrt(D)", "    ds = ds", "a factor 1/sqrt(D) is missing"),
    ("ex17_cross_entropy_backward", "return p / len(targets)", "return p", "a factor 1/N is missing"),
    ("ex01_sinusoidal_table", "out[:, 0::2] = np.sin(angles)\n    out[:, 1::2] = np.cos(angles[:, : dim // 2])",
     "out[:, 0::2] = np.cos(angles)\n    out[:, 1::2] = np.sin(angles[:, : dim // 2])",
     "sines and cosines are swapped"),
    ("ex18_adamw_step", "p = p - lr * (m / (1 - beta1 ** t)) / (np.sqrt(v / (1 - beta2 ** t)) + eps)",
     "p = p - lr * m / (np.sqrt(v) + eps)", "the bias correction is missing"),
    ("ex05_apply_rope", "rotated = np.concatenate([-x[..., h:], x[..., :h]], axis=-1)",
     "rotated = np.concatenate([x[..., h:], -x[..., :h]], axis=-1)", "you rotate the other way"),
    ("ex15_attention_forward", "s = q @ k.swapaxes(-1, -2) / np.sqrt(D)", "s = q @ k.swapaxes(-1, -2)",
     "WITHOUT the 1/sqrt(D) scale"),
]


@pytest.fixture(scope="module")
def wrong_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wrong")
    for stem, old, new, _ in MISTAKES:
        _wrong(str(folder), stem, old, new)
    # two more mistakes in a second folder (one file per exercise and folder)
    folder2 = tmp_path_factory.mktemp("wrong2")
    _wrong(str(folder2), "ex16_attention_backward", "return ds @ k, ds.swapaxes(-1, -2) @ q, dv, dbias",
           "return ds.swapaxes(-1, -2) @ q, ds @ k, dv, dbias")
    _wrong(str(folder2), "ex14_layernorm_backward", "    return dx, dw, db", "    return dx, db, dw")
    _wrong(str(folder2), "ex12_softmax_backward", "return y * (dout - (dout * y).sum(axis=-1, keepdims=True))",
           "return y * dout")
    _wrong(str(folder2), "ex10_linear_backward", "(d2 @ w.T).reshape(x.shape)", "(d2 @ w.T).reshape(x.shape) + 1e-3")
    names = sorted({m[0][:4] for m in MISTAKES})
    rc1, out1 = grade(*names, "--dir", str(folder))
    rc2, out2 = grade("ex16", "ex14", "ex12", "ex10", "--dir", str(folder2))
    return (rc1, out1, sections(out1), str(folder)), (rc2, out2, sections(out2))


@pytest.mark.parametrize("stem,old,new,hint", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_hint_fires_on_the_mistake_it_names(wrong_run, stem, old, new, hint):
    (rc, out, by_ex, folder), _ = wrong_run
    assert rc == 1, out
    text = by_ex.get(stem[:4], "")
    assert hint in text, f"{stem}: expected the hint {hint!r} in:\n{text or out}"
    assert "is wrong" in text or "has shape" in text
    assert f"reproduce: cd {folder} && python -c \"import numpy as np; from {stem} import " in text


def test_a_wrong_answer_shows_the_error_the_tolerance_and_a_snippet_that_reproduces_it(wrong_run):
    (rc, out, by_ex, folder), _ = wrong_run
    text = by_ex["ex12"]
    assert re.search(r"relative error 2\.00e\+00 > tolerance 1e-08", text), text
    assert "worst entry" in text and "expected" in text and "received" in text
    snippet = re.search(r'reproduce: cd (\S+) && python -c "(.*)"', text)
    code = "import numpy as np; np.set_printoptions(threshold=10**6, floatmode='unique'); " + snippet.group(2)
    r = subprocess.run([sys.executable, "-c", code], cwd=snippet.group(1), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    worst = re.search(r"worst entry \((\d+), (\d+)\): expected \S+, received (\S+)", text)
    printed = [float(x) for x in re.findall(r"-?\d+\.\d*(?:e[+-]\d+)?", r.stdout)]
    # the snippet prints the very array the grader received
    assert len(printed) == 15
    assert printed[5 * int(worst.group(1)) + int(worst.group(2))] == float(worst.group(3))


def test_hints_for_swapped_outputs_and_specific_mistakes(wrong_run):
    _, (rc, out, by_ex) = wrong_run
    assert rc == 1 and "0 of 4 exercises pass" in out, out
    assert "your dq (causal=True, bias=None) equals the expected dk" in by_ex["ex16"], by_ex["ex16"]
    assert "your dw equals the expected db" in by_ex["ex14"], by_ex["ex14"]
    assert "the sum over the row, sum(dout * y), is missing" in by_ex["ex12"], by_ex["ex12"]
    # an error without a recognisable pattern gets the measurement and no invented hint
    assert "is wrong" in by_ex["ex10"] and "hint:" not in by_ex["ex10"], by_ex["ex10"]


def test_grader_fails_the_old_wrong_answer_and_says_why():
    rc, out = grade("ex01", "--dir", os.path.join(ROOT, "tests", "wrong_exercises"))
    assert rc == 1, out
    assert "the table is wrong" in out and "expected" in out and "received" in out and "reproduce:" in out
    assert "0 of 1 exercises pass" in out


def test_grader_lists_the_path_and_rejects_an_unknown_exercise():
    rc, out = grade("--list")
    assert rc == 0 and len(out.strip().splitlines()) == N_EXERCISES
    assert re.search(r'ex06_rope_backward\s+core\s+chapters/ch4_math.py, section "RoPE backward"', out), out
    rc, out = grade("ex99")
    assert rc != 0 and "unknown or ambiguous exercise" in out
    rc, out = grade("--dir", "/no/such/folder")
    assert rc != 0 and "no folder" in out and "Traceback" not in out


def test_a_broken_file_is_reported_not_crashed(tmp_path):
    shutil.copy(os.path.join(SOLUTIONS, "ex02_alibi_slopes.py"), tmp_path)
    with open(tmp_path / "ex03_logn_factor.py", "w") as f:
        f.write("def logn_factor(T, T_train):\n    return undefined_name\n")
    rc, out = grade("2", "3", "--dir", str(tmp_path))
    assert rc == 1 and "1 of 2 exercises pass" in out, out
    assert "raised NameError" in out and "your line 2: return undefined_name" in out, out
