"""The exercise grader: one test per exercise of chapters/exercises/ (marker exNN), each checking the
learner's function against tinype (every backward against central differences in float64).

    python chapters/exercises/grade.py              # grade your work, every exercise
    python chapters/exercises/grade.py ex06         # one exercise
    python chapters/exercises/grade.py --dir DIR    # the files in another folder

The test suite itself grades the reference solutions (chapters/exercises/solutions/), so it stays
green; TINYPE_GRADE_DIR=<folder> points the tests at another folder (grade.py sets it).

A failure teaches: it prints the relative error and the tolerance, a one-line command that
reproduces the failing call exactly (every input is built from a seed and shapes in that line),
the worst entry, and a hint when the answer matches a classic mistake: the forward instead of the
backward, a transposed result, the opposite sign, a missing scale factor such as 1/sqrt(D), two
outputs swapped, or a mistake specific to the exercise (e.g. sine and cosine swapped).
"""
import glob
import importlib.util
import math
import os
import traceback

import numpy as np
import pytest

from tinype.gradcheck import numerical_gradient, rel_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER = os.path.abspath(os.environ.get("TINYPE_GRADE_DIR")
                         or os.path.join(ROOT, "chapters", "exercises", "solutions"))
HINT_TOL = 1e-6          # how close the answer must be to a known mistake for its hint to show


def stem_of(ex):
    hits = sorted(glob.glob(os.path.join(ROOT, "chapters", "exercises", f"{ex}_*.py")))
    return os.path.basename(hits[0])[:-3]


class Exercise:
    """The learner's function `func` of exercise `ex` (e.g. "ex12"), called on inputs built by
    `setup`, a line of Python that the failure message repeats so the learner can rerun it."""

    def __init__(self, ex, func):
        self.ex, self.func, self.stem = ex, func, stem_of(ex)
        self.path = os.path.join(FOLDER, self.stem + ".py")
        if not os.path.exists(self.path):
            pytest.fail(f"{self.ex}: {self.path} is missing", pytrace=False)
        spec = importlib.util.spec_from_file_location(f"exercise_{self.stem}", self.path)
        self.module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(self.module)
        except Exception as err:
            pytest.fail(f"{self.ex}: {self.path} does not import: {type(err).__name__}: {err}", pytrace=False)
        self.fn = getattr(self.module, func.split(".")[0], None)
        if self.fn is None:
            pytest.fail(f"{self.ex}: {self.path} defines no {func.split('.')[0]}", pytrace=False)

    def inputs(self, setup):
        ns = {"np": np, self.func.split(".")[0]: self.fn}     # a setup may build the learner's class
        message = None
        try:
            exec(setup, ns)
        except NotImplementedError as err:
            message = f"{self.ex}: not done yet ({err})"
        if message:                                  # failed outside the except: no chained traceback
            pytest.fail(message, pytrace=False)
        return ns

    def call(self, setup, call):
        """Run `call` (an expression using the names of `setup` and the learner's function).
        Returns (result, the inputs)."""
        self.setup, self.expr = setup, call
        ns = self.inputs(setup)
        message = None
        try:
            with np.errstate(all="ignore"):
                return eval(call, ns), ns
        except NotImplementedError as err:
            message = f"{self.ex}: not done yet ({err})"
        except Exception as err:
            frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == self.path]
            where = f" (your line {frames[-1].lineno}: {frames[-1].line})" if frames else ""
            message = (f"{self.ex}: {call} raised {type(err).__name__}: {err}{where}\n"
                       f"  reproduce: {self.snippet()}")
        pytest.fail(message, pytrace=False)

    def snippet(self, pick=""):
        name = self.func.split(".")[0]
        return (f'cd {FOLDER} && python -c "import numpy as np; from {self.stem} import {name}; '
                f'{self.setup}; print({self.expr}{pick})"')

    def expect(self, what, received, expected, tol=1e-9, pick="", forward=None, scales=None,
               others=None, mistakes=None):
        """Fail, and teach, unless `received` matches `expected` to a norm-wise relative error tol.

        forward: what the forward computes on these inputs (the hint "forward, not backward");
        scales: {name: value} factors a learner may drop (the hint "a factor 1/name is missing");
        others: {name: array} the exercise's other outputs (the hint "outputs swapped");
        mistakes: {hint: array} what a known mistake of this exercise returns.
        """
        expected = np.asarray(expected)
        kind = np.float64 if expected.dtype.kind == "f" else None
        try:
            received = np.asarray(received, dtype=kind) if received is not None else None
        except (TypeError, ValueError):
            received = None
        head = f"{self.ex}: {what}"
        if received is None or received.dtype == object:
            pytest.fail(f"{head}: received {type(received).__name__}, expected an array of shape "
                        f"{expected.shape}\n  reproduce: {self.snippet(pick)}", pytrace=False)
        if received.shape != expected.shape:
            hint = ""
            if received.ndim >= 2 and received.shape == expected.swapaxes(-1, -2).shape:
                hint = ("\n  hint: your shape is the expected one transposed: check the order of a matrix "
                        "product (A.T @ B versus B.T @ A)")
            pytest.fail(f"{head} has shape {received.shape}, expected {expected.shape}\n"
                        f"  reproduce: {self.snippet(pick)}{hint}", pytrace=False)
        if expected.dtype.kind != "f":
            err = float(np.mean(received != expected))
            ok = err == 0
            measure = f"{int(np.sum(received != expected))} of {expected.size} entries differ"
        else:
            if not np.all(np.isfinite(received)):
                err, ok = float("inf"), False
                measure = f"{int(np.sum(~np.isfinite(received)))} entries are NaN or inf (overflow?)"
            else:
                err = rel_error(received, expected)
                ok = err <= tol
                measure = f"relative error {err:.2e} > tolerance {tol:.0e}"
        if ok:
            return err
        diff = np.abs(received.astype(np.float64) - expected.astype(np.float64))
        diff = np.where(np.isnan(diff), np.inf, diff)
        at = tuple(int(i) for i in np.unravel_index(np.argmax(diff), diff.shape)) if diff.ndim else ()
        lines = [f"{head} is wrong: {measure}",
                 f"  reproduce: {self.snippet(pick)}",
                 f"  worst entry {at}: expected {expected[at].item()!r}, received {received[at].item()!r}"]
        with np.printoptions(precision=5, threshold=16, edgeitems=3, linewidth=100, suppress=True):
            if expected.size <= 24:
                lines += [f"  expected: {np.array2string(expected)}".replace("\n", "\n            "),
                          f"  received: {np.array2string(received)}".replace("\n", "\n            ")]
            elif expected.ndim >= 2:                 # the row of the worst entry
                row = at[:-1]
                lines += [f"  row {row}, expected: {np.array2string(expected[row])}",
                          f"  row {row}, received: {np.array2string(received[row])}"]
        lines += ["  hint: " + h for h in hints(received, expected, forward, scales, others, mistakes, what)]
        pytest.fail("\n".join(lines), pytrace=False)


def _close(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and np.all(np.isfinite(a)) and rel_error(a, b) <= HINT_TOL


def hints(received, expected, forward=None, scales=None, others=None, mistakes=None, what="your answer"):
    """The classic mistakes `received` matches, as sentences."""
    if expected.dtype.kind != "f":
        out = []
    elif np.linalg.norm(expected) > 0 and _close(received, -expected):
        out = ["your answer is exactly the expected one with the opposite sign: a minus is missing or "
               "one too many (check the sign of each step)"]
    else:
        out = []
    if forward is not None and _close(received, forward):
        out.append("your answer equals the FORWARD (what the layer computes), not the backward: the backward "
                   "takes dout and returns the gradient of the input, dx")
    if received.ndim >= 2 and received.shape[-1] == received.shape[-2] and \
            not _close(expected, expected.swapaxes(-1, -2)) and _close(received, expected.swapaxes(-1, -2)):
        out.append("your answer is the expected one transposed: check the order of a matrix product "
                   "(A.T @ B versus B.T @ A)")
    e, r = np.asarray(expected, np.float64), np.asarray(received, np.float64)
    if not out and e.dtype.kind == "f" and np.dot(e.ravel(), e.ravel()) > 0 and np.all(np.isfinite(r)):
        c = float(np.dot(r.ravel(), e.ravel()) / np.dot(e.ravel(), e.ravel()))
        if abs(c - 1) > 1e-6 and abs(c) > 1e-12 and _close(r, c * e):
            named = None
            for name, value in (scales or {}).items():
                if abs(c - value) <= 1e-6 * abs(value):
                    named = (f"your answer is {name} = {value:g} times the expected one: a factor 1/{name} "
                             f"is missing")
                elif abs(c * value - 1) <= 1e-6:
                    named = (f"your answer is the expected one divided by {name} = {value:g}: you divide by "
                             f"{name} once too often")
            out.append(named or f"your answer is {c:.6g} times the expected one: a constant factor is wrong")
    for name, other in (others or {}).items():
        if _close(received, other):
            out.append(f"your {what} equals the expected {name}: are two of your outputs swapped?")
    for text, value in (mistakes or {}).items():
        if value is not None and _close(received, value):
            out.append(text)
    return out


def rope_freq(D, base=10000.0):
    return 1.0 / base ** (np.arange(0, D, 2) / D)


# Positional encodings ----------------------------------------------------------------------------

@pytest.mark.ex01
def test_ex01_sinusoidal_table():
    from tinype.positions import sinusoidal_table
    ex = Exercise("ex01", "sinusoidal_table")
    for setup, call in [("positions = np.arange(5.0); dim = 4", "sinusoidal_table(positions, dim)"),
                        ("positions = np.array([0.0, 1.5, 100.0, 2047.0]); dim = 8", "sinusoidal_table(positions, dim)"),
                        ("positions = np.arange(6.0); dim = 7", "sinusoidal_table(positions, dim)"),
                        ("positions = np.arange(4.0); dim = 4", "sinusoidal_table(positions, dim, base=100.0)")]:
        got, ns = ex.call(setup, call)
        want = sinusoidal_table(ns["positions"], ns["dim"], base=100.0 if "base=" in call else 10000.0)
        swapped = want.copy()
        n = want.shape[1] // 2
        swapped[:, 0:2 * n:2], swapped[:, 1:2 * n:2] = want[:, 1:2 * n:2], want[:, 0:2 * n:2]
        ex.expect("the table", got, want, tol=1e-12, mistakes={
            "your sines and cosines are swapped: the even channels 2i hold the sine, the odd ones the cosine":
                swapped})


@pytest.mark.ex02
def test_ex02_alibi_slopes():
    from tinype.positions import alibi_slopes
    ex = Exercise("ex02", "alibi_slopes")
    for n in [1, 2, 4, 8, 16, 3, 5, 6, 12, 24]:
        got, _ = ex.call(f"n_heads = {n}", "alibi_slopes(n_heads)")
        ex.expect("the slopes", got, alibi_slopes(n), tol=1e-12, mistakes={
            "you used 2^(-8h/n) for a head count that is not a power of two: take the largest power of two "
            "below n, then every other slope of twice that power (step 2 of the stub)":
                np.array([2.0 ** (-8.0 * h / n) for h in range(1, n + 1)])})


@pytest.mark.ex03
def test_ex03_logn_factor():
    from tinype.positions.logn import logn_scale
    ex = Exercise("ex03", "logn_factor")
    for T, T_train in [(8, 8), (100, 16), (4096, 64)]:
        got, _ = ex.call(f"T = {T}; T_train = {T_train}", "logn_factor(T, T_train)")
        raw = np.log(np.arange(1, T + 1)) / np.log(T_train)
        ex.expect("the factors", got, logn_scale(T, T_train), tol=1e-12, mistakes={
            "inside the training length the factor must be 1, not below it: take the max with 1": raw,
            "query i sees i + 1 keys (0-based positions): use ln(i + 1), not ln(i)":
                np.maximum(1.0, np.log(np.maximum(np.arange(T), 1)) / np.log(T_train))})


@pytest.mark.ex04
def test_ex04_t5_bucket():
    from tinype.positions import t5_relative_bucket
    ex = Exercise("ex04", "t5_bucket")
    for bidirectional in (True, False):
        for nb, md in [(32, 128), (16, 64)]:
            got, ns = ex.call(f"relative_position = np.arange(-300, 301); bidirectional = {bidirectional}; "
                              f"num_buckets = {nb}; max_distance = {md}",
                              "t5_bucket(relative_position, bidirectional, num_buckets, max_distance)")
            rel = ns["relative_position"]
            ex.expect(f"the buckets (bidirectional={bidirectional}, num_buckets={nb})", got,
                      t5_relative_bucket(rel, bidirectional, nb, md), mistakes={
                          "causal attention looks at the past: the distance is i - j = -relative_position":
                              t5_relative_bucket(-rel, bidirectional, nb, md)})


@pytest.mark.ex05
def test_ex05_apply_rope():
    from tinype.positions import apply_rope
    ex = Exercise("ex05", "apply_rope")
    for shape in [(5, 2), (2, 3, 7, 8)]:
        D = shape[-1]
        got, ns = ex.call(f"x = np.random.default_rng(5).normal(size={shape}); positions = np.arange({shape[-2]}) * 1.5; "
                          f"inv_freq = 1.0 / 10000.0 ** (np.arange(0, {D}, 2) / {D})",
                          "apply_rope(x, positions, inv_freq)")
        x, pos, inv = ns["x"], ns["positions"], ns["inv_freq"]
        ex.expect("the rotated x", got, apply_rope(x, pos, inv), tol=1e-12, mistakes={
            "you rotate the other way (by minus the angle): the minus of rotate_half belongs on the second half, "
            "rotate_half([x1, x2]) = [-x2, x1]": apply_rope(x, -pos, inv),
            "you used the interleaved layout (pairs 2i, 2i+1); tinype and transformers pair channel i with "
            "i + D/2 (rotate-half)": apply_rope(x, pos, inv, interleaved=True)})


@pytest.mark.ex06
def test_ex06_rope_backward():
    from tinype.positions import apply_rope
    ex = Exercise("ex06", "rope_backward")
    got, ns = ex.call("r = np.random.default_rng(6); dout = r.normal(size=(2, 5, 8)); positions = np.arange(5.0) * 1.5; "
                      "inv_freq = 1.0 / 10000.0 ** (np.arange(0, 8, 2) / 8)",
                      "rope_backward(dout, positions, inv_freq)")
    dout, pos, inv = ns["dout"], ns["positions"], ns["inv_freq"]
    x = np.random.default_rng(60).normal(size=dout.shape)
    want = numerical_gradient(lambda: apply_rope(x, pos, inv), x, dout)
    ex.expect("dx", got, want, tol=1e-8, forward=apply_rope(dout, pos, inv))


@pytest.mark.ex07
def test_ex07_position_interpolation():
    from tinype.positions import apply_rope, rope_inv_freq
    ex = Exercise("ex07", "interpolate_positions")
    x = np.random.default_rng(7).normal(size=(256, 8))
    inv = rope_freq(8)
    for L, T in [(256, 64), (100, 64), (48, 64)]:
        got, ns = ex.call(f"positions = np.arange({L}); T_train = {T}; L = {L}",
                          "interpolate_positions(positions, T_train, L)")
        linear, _ = rope_inv_freq(8, scaling={"rope_type": "linear", "factor": max(1.0, L / T)})
        ex.expect(f"the interpolated positions (L={L}, T_train={T})", got, np.arange(L) * min(1.0, T / L),
                  tol=1e-12, mistakes={"you multiply by L / T_train: positions must shrink, by T_train / L":
                                       np.arange(L) * max(1.0, L / T)})
        assert rel_error(apply_rope(x[:L], got, inv), apply_rope(x[:L], np.arange(L), linear)) < 1e-12


@pytest.mark.ex08
def test_ex08_ntk_base():
    from tinype.positions import rope_inv_freq
    ex = Exercise("ex08", "ntk_base")
    for D, s in [(16, 4.0), (64, 8.0), (8, 2.0)]:
        got, _ = ex.call(f"base = 10000.0; head_dim = {D}; factor = {s}", "ntk_base(base, head_dim, factor)")
        want, _ = rope_inv_freq(D, 10000.0, {"rope_type": "ntk", "factor": s})
        ex.expect(f"the base (head_dim={D}, factor={s})", got, 10000.0 * s ** (D / (D - 2)), tol=1e-12, mistakes={
            "the exponent is upside down: the lowest frequency has exponent -(D-2)/D, so the base grows by "
            "factor^(D/(D-2))": 10000.0 * s ** ((D - 2) / D),
            "base * factor slows the lowest frequency by less than factor: solve step 2 for the base":
                10000.0 * s})
        assert rel_error(float(got) ** (-np.arange(0, D, 2) / D), want) < 1e-12


@pytest.mark.ex09
def test_ex09_llama3_inv_freq():
    from tinype.positions import rope_inv_freq
    ex = Exercise("ex09", "llama3_inv_freq")
    for D, s, T in [(64, 8.0, 64), (32, 4.0, 128), (128, 8.0, 8192)]:
        got, ns = ex.call(f"inv_freq = 1.0 / 10000.0 ** (np.arange(0, {D}, 2) / {D}); factor = {s}; original_max = {T}",
                          "llama3_inv_freq(inv_freq, factor, original_max)")
        want, _ = rope_inv_freq(D, 10000.0, {"rope_type": "llama3", "factor": s,
                                             "original_max_position_embeddings": T})
        inv = ns["inv_freq"]
        wl = 2 * np.pi / inv
        ex.expect(f"the frequencies (D={D}, factor={s}, original_max={T})", got, want, tol=1e-12, mistakes={
            "long wavelengths are interpolated (frequency / factor), short ones kept: you swapped the two bands":
                np.where(wl > T, inv, inv / s),
            "the band between the thresholds blends the two: step 4 is missing": np.where(wl > T, inv / s, inv)})


# Layers: every backward against central differences ------------------------------------------------

@pytest.mark.ex10
def test_ex10_linear_backward():
    ex = Exercise("ex10", "linear_backward")
    got, ns = ex.call("r = np.random.default_rng(10); dout = r.normal(size=(2, 3, 5)); x = r.normal(size=(2, 3, 4)); "
                      "w = r.normal(size=(4, 5))", "linear_backward(dout, x, w)")
    dout, x, w = ns["dout"], ns["x"], ns["w"]
    b = np.random.default_rng(100).normal(size=5)
    f = lambda: x @ w + b
    want = [numerical_gradient(f, x, dout), numerical_gradient(f, w, dout), numerical_gradient(f, b, dout)]
    for i, name in enumerate(("dx", "dw", "db")):
        ex.expect(name, got[i], want[i], tol=1e-8, pick=f"[{i}]", others={n: v for n, v in zip(("dx", "dw", "db"), want)
                                                                          if n != name})


@pytest.mark.ex11
def test_ex11_gelu_backward():
    from tinype.layers import gelu_forward
    ex = Exercise("ex11", "gelu_backward")
    got, ns = ex.call("x = np.linspace(-6, 6, 25); dout = np.random.default_rng(11).normal(size=25)",
                      "gelu_backward(dout, x)")
    x, dout = ns["x"], ns["dout"]
    want = numerical_gradient(lambda: gelu_forward(x)[0], x, dout)
    ex.expect("dx", got, want, tol=1e-8, forward=gelu_forward(x)[0], mistakes={
        "you returned gelu'(x) without multiplying by dout (the chain rule)": want / dout,
        "your answer equals the forward times dout, not the derivative": gelu_forward(x)[0] * dout})


@pytest.mark.ex12
def test_ex12_softmax_backward():
    from tinype.layers import softmax
    ex = Exercise("ex12", "softmax_backward")
    got, ns = ex.call("r = np.random.default_rng(12); x = r.normal(size=(3, 5)); dout = r.normal(size=(3, 5)); "
                      "e = np.exp(x - x.max(axis=-1, keepdims=True)); y = e / e.sum(axis=-1, keepdims=True)",
                      "softmax_backward(dout, y)")
    x, dout, y = ns["x"], ns["dout"], ns["y"]
    want = numerical_gradient(lambda: softmax(x), x, dout)
    ex.expect("dx", got, want, tol=1e-8, forward=y, mistakes={
        "you kept only the diagonal of the Jacobian (y * dout): the sum over the row, sum(dout * y), "
        "is missing": y * dout})


@pytest.mark.ex13
def test_ex13_layernorm_forward():
    from tinype.layers import layernorm_forward
    ex = Exercise("ex13", "layernorm_forward")
    got, ns = ex.call("r = np.random.default_rng(13); x = r.normal(size=(2, 3, 6)) * 3 + 1; w = r.normal(size=6); "
                      "b = r.normal(size=6)", "layernorm_forward(x, w, b)")
    x, w, b = ns["x"], ns["w"], ns["b"]
    mean = x.mean(-1, keepdims=True)
    unbiased = (x - mean) / np.sqrt(x.var(-1, ddof=1, keepdims=True) + 1e-5) * w + b
    ex.expect("out", got, layernorm_forward(x, w, b)[0], tol=1e-10, mistakes={
        "you used the unbiased variance (divide by C - 1); LayerNorm divides by C": unbiased})


@pytest.mark.ex14
def test_ex14_layernorm_backward():
    from tinype.layers import layernorm_forward
    ex = Exercise("ex14", "layernorm_backward")
    got, ns = ex.call("r = np.random.default_rng(14); dout = r.normal(size=(2, 3, 6)); x = r.normal(size=(2, 3, 6)); "
                      "w = r.normal(size=6)", "layernorm_backward(dout, x, w)")
    dout, x, w = ns["dout"], ns["x"], ns["w"]
    b = np.random.default_rng(140).normal(size=6)
    f = lambda: layernorm_forward(x, w, b)[0]
    want = [numerical_gradient(f, x, dout), numerical_gradient(f, w, dout), numerical_gradient(f, b, dout)]
    rstd = 1 / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    for i, name in enumerate(("dx", "dw", "db")):
        ex.expect(name, got[i], want[i], tol=1e-7, pick=f"[{i}]",
                  others={n: v for n, v in zip(("dw", "db"), want[1:]) if n != name and i > 0},
                  mistakes={"you differentiated only through xhat's direct path (dout * w * rstd): the mean and the "
                            "variance depend on x too (step 4)": dout * w * rstd} if i == 0 else None)


def _attention_inputs(seed, causal, with_bias):
    bias = "; bias = r.normal(size=(2, 6, 6))" if with_bias else "; bias = None"
    return (f"r = np.random.default_rng({seed}); q = r.normal(size=(2, 6, 4)); k = r.normal(size=(2, 6, 4)); "
            f"v = r.normal(size=(2, 6, 4)); dout = r.normal(size=(2, 6, 4)){bias}; causal = {causal}")


def _reference_attention(q, k, v, causal, bias, scale=None):
    from tinype import reference
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    return reference.attention_forward(q[None], k[None], v[None], scale, causal, bias)[0][0]


@pytest.mark.ex15
def test_ex15_attention_forward():
    ex = Exercise("ex15", "attention_forward")
    for seed, causal, with_bias in [(15, True, False), (16, False, False), (17, True, True), (18, False, True)]:
        got, ns = ex.call(_attention_inputs(seed, causal, with_bias), "attention_forward(q, k, v, causal, bias)")
        q, k, v, bias = ns["q"], ns["k"], ns["v"], ns["bias"]
        ex.expect(f"out (causal={causal}, bias={'yes' if with_bias else 'None'})", got,
                  _reference_attention(q, k, v, causal, bias), tol=1e-10, mistakes={
                      "your output is attention WITHOUT the 1/sqrt(D) scale of the logits (step 1)":
                          _reference_attention(q, k, v, causal, bias, scale=1.0),
                      "your output ignores the causal mask: keys after the query must get probability 0":
                          _reference_attention(q, k, v, False, bias) if causal else None})
    huge, ns = ex.call("q = np.full((1, 3, 2), 100.0); k = np.full((1, 3, 2), 100.0); v = np.eye(3)[None, :, :2]",
                       "attention_forward(q, k, v, True, None)")
    ex.expect("out for logits of 1e4 (subtract the row max before exp)", huge,
              _reference_attention(ns["q"], ns["k"], ns["v"], True, None), tol=1e-10)


@pytest.mark.ex16
def test_ex16_attention_backward():
    ex = Exercise("ex16", "attention_backward")
    for seed, causal, with_bias in [(16, True, False), (17, False, False), (18, True, True), (19, False, True)]:
        got, ns = ex.call(_attention_inputs(seed, causal, with_bias), "attention_backward(dout, q, k, v, causal, bias)")
        q, k, v, dout, bias = ns["q"], ns["k"], ns["v"], ns["dout"], ns["bias"]
        f = lambda: _reference_attention(q, k, v, causal, bias)
        names = ["dq", "dk", "dv"] + (["dbias"] if with_bias else [])
        want = [numerical_gradient(f, a, dout) for a in (q, k, v)]
        if with_bias:
            want.append(numerical_gradient(f, bias, dout))
        if not isinstance(got, tuple) or len(got) != 4:
            pytest.fail(f"ex16: attention_backward must return four values (dq, dk, dv, dbias), got "
                        f"{type(got).__name__} of length {len(got) if isinstance(got, tuple) else '-'}", pytrace=False)
        if not with_bias and got[3] is not None:
            pytest.fail("ex16: without a bias, dbias must be None", pytrace=False)
        label = f" (causal={causal}, bias={'yes' if with_bias else 'None'})"
        for i, name in enumerate(names):
            ex.expect(name + label, got[i], want[i], tol=1e-7, pick=f"[{i}]", scales={"sqrt(D)": 2.0},
                      others={n: w for n, w in zip(names, want) if n != name})


@pytest.mark.ex17
def test_ex17_cross_entropy_backward():
    ex = Exercise("ex17", "cross_entropy_backward")
    got, ns = ex.call("logits = np.random.default_rng(17).normal(size=(4, 7)); targets = np.array([0, 6, 3, 3])",
                      "cross_entropy_backward(logits, targets)")
    z, t = ns["logits"], ns["targets"]

    def loss():
        m = z.max(-1, keepdims=True)
        lse = np.log(np.exp(z - m).sum(-1)) + m[:, 0]
        return np.mean(lse - z[np.arange(4), t])
    want = numerical_gradient(loss, z)
    ex.expect("dlogits", got, want, tol=1e-8, scales={"N": 4.0})
    huge, _ = ex.call("logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]]); targets = np.array([1, 1])",
                      "cross_entropy_backward(logits, targets)")
    ex.expect("dlogits of +-1e4 logits (subtract the row max before exp)", huge,
              [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], tol=1e-12)


@pytest.mark.ex18
def test_ex18_adamw_step():
    from tinype.optim import AdamW
    ex = Exercise("ex18", "adamw_step")
    setup = ("r = np.random.default_rng(18); p = r.normal(size=(3, 4)); g = r.normal(size=(3, 4)); "
             "m = 0.1 * r.normal(size=(3, 4)); v = 0.1 * r.normal(size=(3, 4)) ** 2; t = 3; lr = 0.01")
    got, ns = ex.call(setup, "adamw_step(p, g, m, v, t, lr)")
    p, g, m, v = (ns[n].copy() for n in "pgmv")
    ref = {"w": p.copy()}
    opt = AdamW(ref, lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    opt.t, opt.m["w"][...], opt.v["w"][...] = 2, m, v
    opt.step({"w": g}, 0.01)
    m2, v2 = 0.9 * m + 0.1 * g, 0.95 * v + 0.05 * g * g
    no_correction = p * (1 - 0.001) - 0.01 * m2 / (np.sqrt(v2) + 1e-8)
    coupled = p - 0.01 * (0.9 * m + 0.1 * (g + 0.1 * p)) / (1 - 0.9 ** 3) / (
        np.sqrt((0.95 * v + 0.05 * (g + 0.1 * p) ** 2) / (1 - 0.95 ** 3)) + 1e-8)
    if not isinstance(got, tuple) or len(got) != 3:
        pytest.fail("ex18: adamw_step must return (p, m, v)", pytrace=False)
    ex.expect("p", got[0], ref["w"], tol=1e-12, pick="[0]", mistakes={
        "the bias correction is missing: divide m by 1 - beta1^t and v by 1 - beta2^t (step 3)": no_correction,
        "that is Adam with L2 regularisation (the decay added to the gradient); AdamW decays p directly, "
        "decoupled from the gradient (step 1)": coupled})
    ex.expect("m", got[1], opt.m["w"], tol=1e-12, pick="[1]")
    ex.expect("v", got[2], opt.v["w"], tol=1e-12, pick="[2]")
    assert np.array_equal(ns["p"], p), "ex18: adamw_step modified its input p in place"


@pytest.mark.ex19
def test_ex19_nonoverlap_perplexity():
    from tinype import evaluate_lm
    ex = Exercise("ex19", "nonoverlap_perplexity")
    for T in (8, 16):
        got, ns = ex.call("from tinype import ModelConfig, Transformer; model = Transformer(ModelConfig(n_layer=1, "
                          "d_model=16, n_head=2, T_train=8, pe='alibi', dtype='float64')); "
                          f"data = np.random.default_rng(19).integers(0, 256, 61).astype(np.uint8); T = {T}",
                          "nonoverlap_perplexity(model, data, T)")
        want = evaluate_lm(ns["model"], ns["data"], T)["ppl"]
        ex.expect(f"the perplexity at T={T}", got, want, tol=1e-9, mistakes={
            "that is the mean negative log-likelihood: the perplexity is its exponential": math.log(want)})


@pytest.mark.ex20
def test_ex20_lstm_step():
    from tinype.classify import lstm_forward
    ex = Exercise("ex20", "lstm_step")
    setup = ("r = np.random.default_rng(20); x = r.normal(size=(2, 4)); h = r.normal(size=(2, 3)); "
             "c = r.normal(size=(2, 3)); wx = r.normal(size=(4, 12)); wh = r.normal(size=(3, 12)); b = r.normal(size=12)")
    got, ns = ex.call(setup, "lstm_step(x, h, c, wx, wh, b)")
    x, h, c, wx, wh, b = (ns[n] for n in ("x", "h", "c", "wx", "wh", "b"))
    sig = lambda a: 1 / (1 + np.exp(-a))
    z = x @ wx + h @ wh + b
    i, f, g, o = sig(z[:, :3]), sig(z[:, 3:6]), np.tanh(z[:, 6:9]), sig(z[:, 9:])
    c2 = f * c + i * g
    ex.expect("h'", got[0], o * np.tanh(c2), tol=1e-12, pick="[0]")
    ex.expect("c'", got[1], c2, tol=1e-12, pick="[1]")
    # and the steps chained from a zero state reproduce tinype's LSTM
    xs = np.random.default_rng(21).normal(size=(2, 3, 4))
    hh, cc = np.zeros((2, 3)), np.zeros((2, 3))
    for t in range(3):
        hh, cc = ex.fn(xs[:, t], hh, cc, wx, wh, b)
    ex.expect("h after 3 steps from zeros (tinype.classify.lstm_forward)", hh, lstm_forward(xs, wx, wh, b)[0], tol=1e-12)


# The capstones -----------------------------------------------------------------------------------

@pytest.mark.ex21
def test_ex21_train_your_tinype(tmp_path):
    from tinype import AdamW, ModelConfig, Transformer
    from tinype.exercises import _own_train_steps, compare_training
    ex = Exercise("ex21", "train_steps")
    setup = ("import tinype; model = tinype.Transformer(tinype.ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=8, "
             "dtype='float64')); opt = tinype.AdamW(model.parameters(), lr=0.01); "
             "x = np.random.default_rng(21).integers(0, 256, (3, 2, 8)); batches = [(a, np.roll(a, -1, axis=1)) for a in x]; "
             "lrs = [0.01, 0.005, 0.001]")
    got, ns = ex.call(setup, "train_steps(model, opt, batches, lrs)")
    ref = Transformer(ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=8, dtype="float64"))
    want = _own_train_steps(ref, AdamW(ref.parameters(), lr=0.01), ns["batches"], ns["lrs"])
    ex.expect("the losses", got, want, tol=1e-12)
    name = next(iter(ref.parameters()))
    ex.expect(f"{name} after the three steps", ns["model"].parameters()[name], ref.parameters()[name], tol=1e-12)
    # the capstone itself: the quick model (smaller and shorter here, to stay fast) on every finished piece
    result = compare_training(FOLDER, steps=12, batch_size=2, figure=str(tmp_path / "curves.png"),
                              overrides={"d_model": 32, "T_train": 32})
    if not result.agree:
        pytest.fail(f"ex21: trained on your pieces, the quick model does not follow tinype's:\n{result}",
                    pytrace=False)
    assert os.path.getsize(result.figure) > 0


@pytest.mark.ex22
def test_ex22_your_own_encoding():
    from tinype import AdamW, ModelConfig, Transformer, positions
    from tinype.gradcheck import check_encoding
    ex = Exercise("ex22", "PartialRoPE.rotate")
    path = ex.path + ":PartialRoPE"
    base = ("import tinype; from tinype import ModelConfig; "
            "cfg = ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=8, dtype='float64'); "
            "r = np.random.default_rng(22); q = r.normal(size=(1, 2, 8, 8)); k = r.normal(size=(1, 2, 8, 8)); "
            "positions = np.arange(8.0)")
    rope = positions.get("rope")
    rope.setup(ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=8, dtype="float64"))
    for fraction in (1.0, 0.5, 0.0):
        got, ns = ex.call(base + f"; pe = PartialRoPE(fraction={fraction}); pe.setup(cfg)",
                          "pe.rotate(q, k, positions)[0][0]")
        q, pos = ns["q"], ns["positions"]
        want = rope.rotate(q, ns["k"], pos)[0][0].copy()
        keep = int(round(fraction * 4))
        for pair in range(keep, 4):                    # the slow pairs are left as they are
            want[..., pair], want[..., pair + 4] = q[..., pair], q[..., pair + 4]
        fastest_kept = rope.rotate(q, ns["k"], pos)[0][0].copy()
        for pair in range(0, 4 - keep):                # the mistake: the fast pairs left alone
            fastest_kept[..., pair], fastest_kept[..., pair + 4] = q[..., pair], q[..., pair + 4]
        ex.expect(f"q' (fraction={fraction})", got, want, tol=1e-12, mistakes={
            "you left the FASTEST pairs unrotated: p-RoPE removes the lowest frequencies (the last pairs)":
                fastest_kept if 0 < keep < 4 else None})
    message = None
    try:
        errors = check_encoding(path)                  # the one-call gradient check, by module path
    except NotImplementedError as err:
        message = f"ex22: not done yet ({err})"
    except AssertionError as err:
        message = f"ex22: tinype.gradcheck.check_encoding({path!r}) fails: {err}"
    if message:
        pytest.fail(message, pytrace=False)
    assert max(errors.values()) < 1e-6 and "rotate: dq" in errors
    # it trains through the model, by module path and by its registered name
    for pe in (path, "p_rope"):
        model = Transformer(ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=8, pe=pe), seed=0)
        opt = AdamW(model.parameters(), lr=1e-2)
        x = np.random.default_rng(23).integers(0, 256, (4, 8))
        losses = []
        for _ in range(5):
            losses.append(model.loss(x, np.roll(x, -1, axis=1)))
            opt.step(model.backward())
        assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
