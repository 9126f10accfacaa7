"""Every layer's backward against central differences in float64; float32 keeps its dtype."""
import numpy as np
import pytest

from tinype import layers as L
from tinype.gradcheck import check_layer, numerical_gradient, rel_error


def r(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_linear():
    errs = check_layer(L.linear_forward, L.linear_backward, [r(2, 3, 5), r(5, 4, seed=1), r(4, seed=2)])
    assert len(errs) == 3 and max(errs.values()) <= 1e-6


def test_linear_without_bias():
    x, w = r(3, 5), r(5, 2, seed=1)
    out, cache = L.linear_forward(x, w, None)
    np.testing.assert_allclose(out, x @ w)
    dx, dw, _ = L.linear_backward(np.ones_like(out), cache)
    assert dx.shape == x.shape and dw.shape == w.shape


def test_layernorm():
    x = r(2, 3, 6) * 3 + 1
    errs = check_layer(L.layernorm_forward, L.layernorm_backward, [x, r(6, seed=1), r(6, seed=2)])
    assert max(errs.values()) <= 1e-6
    out, _ = L.layernorm_forward(x, np.ones(6), np.zeros(6))
    np.testing.assert_allclose(out.mean(-1), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(-1), 1, rtol=1e-4)    # eps=1e-5 against var ~9


def test_gelu_matches_formula_and_gradient():
    x = np.linspace(-6, 6, 41)
    out, _ = L.gelu_forward(x)
    expected = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    # atol, not rtol: at x = -6, 1 + tanh(u) ~ 3e-11 and any tanh rounding is a large relative error
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-15)
    assert check_layer(L.gelu_forward, L.gelu_backward, [r(3, 7)])[0] <= 1e-6


def test_mlp():
    C = 4
    args = [r(2, 3, C), r(C, 4 * C, seed=1), r(4 * C, seed=2), r(4 * C, C, seed=3), r(C, seed=4)]
    errs = check_layer(L.mlp_forward, L.mlp_backward, args)
    assert len(errs) == 5 and max(errs.values()) <= 1e-6


def test_embedding_gradient_accumulates_repeats():
    idx = np.array([[1, 2, 1], [0, 1, 3]])
    wte = r(5, 3)
    out, cache = L.embedding_forward(idx, wte)
    dout = r(2, 3, 3, seed=1)
    dwte = L.embedding_backward(dout, cache)
    num = numerical_gradient(lambda: L.embedding_forward(idx, wte)[0], wte, dout)
    assert rel_error(dwte, num) <= 1e-6
    np.testing.assert_allclose(dwte[1], dout[0, 0] + dout[0, 2] + dout[1, 1])
    np.testing.assert_array_equal(dwte[4], 0)


def test_cross_entropy():
    logits, targets = r(6, 5), np.array([0, 4, 2, 2, 1, 3])
    loss, cache = L.cross_entropy_forward(logits, targets)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(loss, -np.mean(np.log(p[np.arange(6), targets])), rtol=1e-13)
    dl = L.cross_entropy_backward(1.0, cache)
    num = numerical_gradient(lambda: L.cross_entropy_forward(logits, targets)[0], logits)
    assert rel_error(dl, num) <= 1e-6


def test_cross_entropy_ignore_index_and_huge_logits():
    logits = np.array([[1e4, -1e4, 0.0], [0.0, 1.0, 2.0]])
    loss, cache = L.cross_entropy_forward(logits, np.array([1, -1]))
    assert np.isfinite(loss) and loss == pytest.approx(2e4)    # only the first row counts
    d = L.cross_entropy_backward(1.0, cache)
    assert np.all(np.isfinite(d)) and np.all(d[1] == 0)


def test_softmax_is_stable():
    s = L.softmax(np.array([1e4, 1e4 - 1, -1e4]))
    assert np.all(np.isfinite(s)) and s.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("fwd, args", [
    (L.linear_forward, lambda: [r(2, 5), r(5, 3), r(3)]),
    (L.layernorm_forward, lambda: [r(2, 5), r(5), r(5)]),
    (L.gelu_forward, lambda: [r(2, 5)]),
])
def test_float32_stays_float32(fwd, args):
    a = [x.astype(np.float32) for x in args()]
    out, _ = fwd(*a)
    assert out.dtype == np.float32
