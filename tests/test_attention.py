"""The attention reference (the kernels' specification) and the attention layer, gradient-checked."""
import numpy as np
import pytest

from tinype import kernels, reference
from tinype.attention import PEContext, self_attention_backward, self_attention_forward
from tinype.gradcheck import numerical_gradient, rel_error
from tinype.positions import NoPE


def qkv(B=2, H=3, T=5, D=4, seed=0):
    g = np.random.default_rng(seed)
    return [g.standard_normal((B, H, T, D)) for _ in range(3)]


def naive_attention(q, k, v, scale, causal, bias_dense, mult):
    """Loops over i, j: the formula as written, nothing vectorised."""
    B, H, T, D = q.shape
    out = np.zeros_like(q)
    for b in range(B):
        for h in range(H):
            for i in range(T):
                js = range(i + 1) if causal else range(T)
                s = np.array([mult[i] * scale * q[b, h, i] @ k[b, h, j] + bias_dense[h, i, j] for j in js])
                p = np.exp(s - s.max())
                p /= p.sum()
                out[b, h, i] = sum(p[n] * v[b, h, j] for n, j in enumerate(js))
    return out


@pytest.mark.parametrize("causal, table", [(True, None), (False, None), (True, "causal"), (True, "two"),
                                           (False, "two")])
def test_reference_forward_matches_naive(causal, table):
    q, k, v = qkv()
    H, T = 3, 5
    g = np.random.default_rng(1)
    bias = None if table is None else g.standard_normal((H, T if table == "causal" else 2 * T - 1))
    mult = 1 + g.random(T)
    dense = np.zeros((H, T, T))
    if bias is not None:
        for i in range(T):
            for j in range(T):
                d = i - j
                if table == "causal":
                    dense[:, i, j] = bias[:, d] if d >= 0 else 0
                else:
                    dense[:, i, j] = bias[:, d + T - 1]
    out, lse = reference.attention_forward(q, k, v, 0.5, causal, bias, mult)
    np.testing.assert_allclose(out, naive_attention(q, k, v, 0.5, causal, dense, mult), rtol=1e-12, atol=1e-13)
    assert lse.shape == (2, 3, 5)


@pytest.mark.parametrize("causal, n_table, with_mult", [(True, None, False), (False, None, True),
                                                        (True, 5, True), (True, 9, False), (False, 9, True)])
def test_reference_backward(causal, n_table, with_mult):
    q, k, v = qkv()
    g = np.random.default_rng(2)
    bias = None if n_table is None else g.standard_normal((3, n_table))
    mult = (1 + g.random(5)) if with_mult else None
    out, lse = reference.attention_forward(q, k, v, 0.7, causal, bias, mult)
    dout = g.standard_normal(out.shape)
    grads = reference.attention_backward(dout, q, k, v, out, lse, 0.7, causal, bias, mult)
    f = lambda: reference.attention_forward(q, k, v, 0.7, causal, bias, mult)[0]
    for name, x, gx in (("q", q, grads[0]), ("k", k, grads[1]), ("v", v, grads[2])):
        assert rel_error(gx, numerical_gradient(f, x, dout)) <= 1e-6, name
    if bias is None:
        assert grads[3] is None
    else:
        assert rel_error(grads[3], numerical_gradient(f, bias, dout)) <= 1e-6


def test_causal_attention_ignores_the_future():
    q, k, v = qkv(T=6)
    out1, _ = kernels.attention_forward(q, k, v, 1.0)
    k2, v2 = k.copy(), v.copy()
    k2[:, :, 4:] += 10
    v2[:, :, 4:] -= 5
    out2, _ = kernels.attention_forward(q, k2, v2, 1.0)
    np.testing.assert_allclose(out1[:, :, :4], out2[:, :, :4], rtol=1e-13)
    assert not np.allclose(out1[:, :, 4:], out2[:, :, 4:])


@pytest.mark.parametrize("kwargs, msg", [
    (dict(q=np.zeros((2, 3, 4))), r"\(B, H, T, D\)"),
    (dict(k=np.zeros((1, 2, 5, 4))), "shapes differ"),
    (dict(v=np.zeros((1, 2, 4, 4), dtype=np.float32)), "dtypes differ"),
    (dict(bias=np.zeros((3, 4))), "bias must be"),
    (dict(logit_scale=np.ones(3)), "logit_scale"),
    (dict(q=np.zeros((1, 2, 4, 4), dtype=np.int64)), "float32 or float64"),
])
def test_attention_rejects_bad_input(kwargs, msg):
    a = dict(q=np.zeros((1, 2, 4, 4)), k=np.zeros((1, 2, 4, 4)), v=np.zeros((1, 2, 4, 4)),
             bias=None, logit_scale=None)
    a.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=msg):
        kernels.attention_forward(a["q"], a["k"], a["v"], 1.0, True, a["bias"], a["logit_scale"])


def test_one_sided_table_needs_causal():
    q, k, v = qkv(T=4)
    with pytest.raises(ValueError, match="causal"):
        kernels.attention_forward(q, k, v, 1.0, False, np.zeros((3, 4)))


@pytest.mark.parametrize("with_bias", [False, True])
def test_attention_layer_backward(with_bias):
    g = np.random.default_rng(3)
    B, T, C, H = 2, 5, 6, 2
    x = g.standard_normal((B, T, C))
    w_qkv, b_qkv = g.standard_normal((C, 3 * C)) * 0.5, g.standard_normal(3 * C)
    w_proj, b_proj = g.standard_normal((C, C)) * 0.5, g.standard_normal(C)
    bias = g.standard_normal((H, T)) if with_bias else None
    pe = NoPE()
    ctx = PEContext(pe, np.arange(T, dtype=float), bias, 1 + g.random(T), True)
    out, cache = self_attention_forward(x, w_qkv, b_qkv, w_proj, b_proj, H, ctx)
    dout = g.standard_normal(out.shape)
    dx, dwq, dbq, dwp, dbp, dbias = self_attention_backward(dout, cache, H, ctx)
    f = lambda: self_attention_forward(x, w_qkv, b_qkv, w_proj, b_proj, H, ctx)[0]
    for a, ga in ((x, dx), (w_qkv, dwq), (b_qkv, dbq), (w_proj, dwp), (b_proj, dbp)):
        assert rel_error(ga, numerical_gradient(f, a, dout)) <= 1e-6
    if with_bias:
        assert rel_error(dbias, numerical_gradient(f, bias, dout)) <= 1e-6
