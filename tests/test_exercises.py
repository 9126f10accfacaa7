"""The exercise grader: one test per exercise in chapters/exercises/, each checked against tinype's own
implementation (or an identity it must satisfy) with a message that names the input, the expected and
the received values.

    python chapters/exercises/grade.py            # grade your work, every exercise
    python chapters/exercises/grade.py ex04       # one exercise
The test suite itself grades the reference solutions (chapters/exercises/solutions/), so main stays
green; TINYPE_EXERCISES=<folder> points the grader at another folder (grade.py sets it).
"""
import importlib.util
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER = os.environ.get("TINYPE_EXERCISES") or os.path.join(ROOT, "chapters", "exercises", "solutions")


def student(stem, name):
    """The function `name` from FOLDER/stem.py, wrapped so a stub fails with a clear message."""
    path = os.path.join(FOLDER, stem + ".py")
    if not os.path.exists(path):
        pytest.fail(f"{stem}: {path} is missing", pytrace=False)
    spec = importlib.util.spec_from_file_location(f"exercise_{stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = getattr(module, name, None)
    if fn is None:
        pytest.fail(f"{stem}: {path} defines no function {name}", pytrace=False)

    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NotImplementedError as err:
            message = str(err)
        pytest.fail(f"{stem}: not done yet ({message})", pytrace=False)
    return call


def _short(value):
    with np.printoptions(precision=4, threshold=12, edgeitems=2, linewidth=100):
        if isinstance(value, dict):
            return ", ".join(f"{k}={_short(v)}" for k, v in value.items())
        return np.array2string(value) if isinstance(value, np.ndarray) else repr(value)


def expect(stem, what, received, expected, inputs, rtol=1e-9, atol=1e-12):
    """Fail with the input, the expected and the received values when they differ."""
    expected = np.asarray(expected)
    try:
        received = np.asarray(received, dtype=expected.dtype if expected.dtype.kind != "O" else None)
    except (TypeError, ValueError):
        pytest.fail(f"{stem}: {what}: received {type(received).__name__}, expected an array like "
                    f"{_short(expected)}", pytrace=False)
    if received.shape != expected.shape:
        pytest.fail(f"{stem}: {what} has shape {received.shape}, expected {expected.shape}\n"
                    f"  input: {_short(inputs)}", pytrace=False)
    if not np.allclose(received, expected, rtol=rtol, atol=atol, equal_nan=False):
        diff = np.abs(received.astype(np.float64) - expected.astype(np.float64))
        diff = np.where(np.isnan(diff), np.inf, diff)
        at = tuple(int(i) for i in np.unravel_index(np.argmax(diff), diff.shape)) if diff.ndim else ()
        pytest.fail(f"{stem}: {what} is wrong\n  input: {_short(inputs)}\n"
                    f"  at index {at}: expected {expected[at].item()!r}, received {received[at].item()!r}\n"
                    f"  expected: {_short(expected)}\n  received: {_short(received)}", pytrace=False)


rng = np.random.default_rng


@pytest.mark.ex01
def test_ex01_sinusoidal_table():
    from tinype.positions import sinusoidal_table
    f = student("ex01_sinusoidal_table", "sinusoidal_table")
    for pos, dim in [(np.arange(5.0), 2), (np.array([0.0, 1.5, 100.0, 2047.0]), 8), (np.arange(9.0), 16)]:
        expect("ex01", "the table", f(pos, dim), sinusoidal_table(pos, dim), {"positions": pos, "dim": dim})
    pos = np.arange(4.0)
    expect("ex01", "the table with base 100", f(pos, 4, base=100.0), sinusoidal_table(pos, 4, base=100.0),
           {"positions": pos, "dim": 4, "base": 100.0})


@pytest.mark.ex02
def test_ex02_alibi_slopes():
    from tinype.positions import alibi_slopes
    f = student("ex02_alibi_slopes", "alibi_slopes")
    for n in [1, 2, 4, 8, 16, 3, 5, 6, 12, 24]:
        expect("ex02", "the slopes", f(n), alibi_slopes(n), {"n_heads": n})


@pytest.mark.ex03
def test_ex03_t5_bucket():
    from tinype.positions import t5_relative_bucket
    f = student("ex03_t5_bucket", "t5_bucket")
    rel = np.arange(-300, 301)
    for bidirectional in (True, False):
        for nb, md in [(32, 128), (16, 64)]:
            expect("ex03", "the buckets", f(rel, bidirectional, nb, md),
                   t5_relative_bucket(rel, bidirectional, nb, md),
                   {"relative_position": rel, "bidirectional": bidirectional, "num_buckets": nb,
                    "max_distance": md}, atol=0)


@pytest.mark.ex04
def test_ex04_apply_rope():
    from tinype.positions import apply_rope, rope_inv_freq
    f = student("ex04_apply_rope", "apply_rope")
    for shape in [(5, 2), (2, 3, 7, 8)]:
        x = rng(4).normal(size=shape)
        pos = np.arange(shape[-2]) * 1.5
        inv, _ = rope_inv_freq(shape[-1])
        expect("ex04", "the rotated x", f(x, pos, inv), apply_rope(x, pos, inv), {"x": x, "positions": pos})


@pytest.mark.ex05
def test_ex05_rope_backward():
    from tinype.positions import apply_rope, rope_inv_freq
    f = student("ex05_rope_backward", "rope_backward")
    dout = rng(5).normal(size=(2, 6, 8))
    pos = np.arange(6.0)
    inv, _ = rope_inv_freq(8)
    # RoPE is a rotation, so its transpose is the rotation by the opposite angle
    expect("ex05", "dx", f(dout, pos, inv), apply_rope(dout, -pos, inv), {"dout": dout, "positions": pos})


@pytest.mark.ex06
def test_ex06_softmax_backward():
    from tinype.gradcheck import numerical_gradient
    from tinype.layers import softmax
    f = student("ex06_softmax_backward", "softmax_backward")
    x = rng(6).normal(size=(3, 5))
    dout = rng(7).normal(size=(3, 5))
    num = numerical_gradient(lambda: softmax(x), x, dout)
    expect("ex06", "dx", f(dout, softmax(x)), num, {"x": x, "dout": dout}, rtol=1e-6, atol=1e-9)


@pytest.mark.ex07
def test_ex07_layernorm_backward():
    from tinype.layers import layernorm_backward, layernorm_forward
    f = student("ex07_layernorm_backward", "layernorm_backward")
    r = rng(8)
    x, w, b, dout = r.normal(size=(2, 3, 6)), r.normal(size=6), r.normal(size=6), r.normal(size=(2, 3, 6))
    _, cache = layernorm_forward(x, w, b)
    got = f(dout, x, w)
    for name, a, e in zip(("dx", "dw", "db"), got, layernorm_backward(dout, cache)):
        expect("ex07", name, a, e, {"x": x, "w": w, "dout": dout})


@pytest.mark.ex08
def test_ex08_attention_backward():
    from tinype import reference
    f = student("ex08_attention_backward", "attention_backward")
    r = rng(9)
    T, D = 6, 4
    q, k, v, dout = (r.normal(size=(T, D)) for _ in range(4))
    for causal in (True, False):
        out, lse = reference.attention_forward(q[None, None], k[None, None], v[None, None], 1 / np.sqrt(D), causal)
        want = reference.attention_backward(dout[None, None], q[None, None], k[None, None], v[None, None], out,
                                            lse, 1 / np.sqrt(D), causal)
        for name, a, e in zip(("dq", "dk", "dv"), f(dout, q, k, v, causal), want):
            expect("ex08", f"{name} (causal={causal})", a, e[0, 0], {"q": q, "k": k, "v": v}, rtol=1e-8)


@pytest.mark.ex09
def test_ex09_cross_entropy_backward():
    from tinype.layers import cross_entropy_backward, cross_entropy_forward
    f = student("ex09_cross_entropy_backward", "cross_entropy_backward")
    logits = rng(10).normal(size=(4, 7))
    t = np.array([0, 6, 3, 3])
    _, cache = cross_entropy_forward(logits, t)
    expect("ex09", "dlogits", f(logits, t), cross_entropy_backward(1.0, cache), {"logits": logits, "targets": t})
    huge = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]])
    got = np.asarray(f(huge, np.array([1, 1])))
    expect("ex09", "dlogits of +-1e4 logits", got, [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]],
           {"logits": huge, "targets": np.array([1, 1])}, atol=1e-12)


@pytest.mark.ex10
def test_ex10_adamw_step():
    from tinype.optim import AdamW
    f = student("ex10_adamw_step", "adamw_step")
    r = rng(11)
    p0 = r.normal(size=(3, 4))
    ref = {"w": p0.copy()}
    opt = AdamW(ref, lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    for t in range(1, 4):
        g = r.normal(size=p0.shape)
        before = p.copy()
        p, m, v = f(p, g, m, v, t, 0.01)
        opt.step({"w": g}, 0.01)
        expect("ex10", f"p after step {t}", p, ref["w"], {"p": before, "g": g, "t": t, "lr": 0.01})


@pytest.mark.ex11
def test_ex11_logn_factor():
    from tinype.positions.logn import logn_scale
    f = student("ex11_logn_factor", "logn_factor")
    for T, T_train in [(8, 8), (100, 16), (4096, 64)]:
        expect("ex11", "the factors", f(T, T_train), logn_scale(T, T_train), {"T": T, "T_train": T_train})


@pytest.mark.ex12
def test_ex12_position_interpolation():
    from tinype.positions import apply_rope, rope_inv_freq
    f = student("ex12_position_interpolation", "interpolate_positions")
    x = rng(12).normal(size=(256, 8))
    inv, _ = rope_inv_freq(8)
    for L, T in [(256, 64), (100, 64)]:
        pos = np.arange(L)
        linear, _ = rope_inv_freq(8, scaling={"rope_type": "linear", "factor": max(1.0, L / T)})
        expect("ex12", f"RoPE at the interpolated positions (L={L}, T_train={T})",
               apply_rope(x[:L], f(pos, T, L), inv), apply_rope(x[:L], pos, linear),
               {"positions": pos, "T_train": T, "L": L})


@pytest.mark.ex13
def test_ex13_ntk_base():
    from tinype.positions import rope_inv_freq
    f = student("ex13_ntk_base", "ntk_base")
    for D, s in [(16, 4.0), (64, 8.0), (8, 2.0)]:
        want, _ = rope_inv_freq(D, 10000.0, {"rope_type": "ntk", "factor": s})
        got = float(f(10000.0, D, s)) ** (-np.arange(0, D, 2) / D)
        expect("ex13", "the inverse frequencies from your base", got, want,
               {"base": 10000.0, "head_dim": D, "factor": s})


@pytest.mark.ex14
def test_ex14_nonoverlap_perplexity():
    from tinype import ModelConfig, Transformer, evaluate_lm
    f = student("ex14_nonoverlap_perplexity", "nonoverlap_perplexity")
    model = Transformer(ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=8, pe="alibi", dtype="float64"))
    data = rng(14).integers(0, 256, 61).astype(np.uint8)
    for T in (8, 16):
        expect("ex14", f"the perplexity at T={T}", f(model, data, T), evaluate_lm(model, data, T)["ppl"],
               {"len(data)": len(data), "T": T}, rtol=1e-9)


@pytest.mark.ex15
def test_ex15_gelu_backward():
    from tinype.layers import gelu_backward, gelu_forward
    f = student("ex15_gelu_backward", "gelu_backward")
    x = np.linspace(-6, 6, 25)
    dout = rng(15).normal(size=25)
    _, cache = gelu_forward(x)
    expect("ex15", "dx", f(dout, x), gelu_backward(dout, cache), {"x": x, "dout": dout})


@pytest.mark.ex16
def test_ex16_lstm_step():
    from tinype.classify import lstm_forward
    f = student("ex16_lstm_step", "lstm_step")
    r = rng(16)
    x = r.normal(size=(2, 3, 4))
    wx, wh, b = r.normal(size=(4, 12)), r.normal(size=(3, 12)), r.normal(size=12)
    h, c = np.zeros((2, 3)), np.zeros((2, 3))
    for t in range(3):
        h, c = f(x[:, t], h, c, wx, wh, b)
        want, _ = lstm_forward(x[:, :t + 1], wx, wh, b)
        expect("ex16", f"h after step {t + 1}", h, want, {"x": x[:, :t + 1]})
