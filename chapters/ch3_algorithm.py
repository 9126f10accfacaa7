# %% [markdown]
# # Chapter 3. Algorithm steps (核心算法原理具体操作步骤)
#
# Article 000 §3 lists three steps: pretrain a language model (self-supervised), apply the
# positional encoding to the input, fine-tune on the task. Article 002 §3 lists another three:
# train a large model, design a new positional encoding, apply it and **retrain**. Both leave out
# what a training step *is*. This chapter fills that in, on tinype, in the order the computer runs
# it:
#
# 1. a batch of windows of bytes goes **forward** through the model to a loss;
# 2. the loss goes **backward**: every gradient by the chain rule, layer by layer, written by hand;
# 3. the gradients are clipped and **AdamW** moves every parameter.
#
# Sections 3.2 to 3.7 derive the backward pass of each layer tinype has, in the order a learner can
# follow (each one uses the previous), next to the tinype line that computes it, and check each
# against central differences. Section 3.9 writes out AdamW. Sections 3.10 and 3.11 then run the
# articles' steps: pretrain a RoPE model, and test 002 §3.3's claim that a new encoding must be
# retrained.
#
# Notation: B batch, T time, C model width, H heads, D = C / H head dimension, V vocabulary (256
# bytes), N = B·T rows. For a scalar loss $\mathcal{L}$ and any array $a$, $da$ means
# $\partial \mathcal{L} / \partial a$, an array of the shape of $a$ (the "upstream gradient" when
# $a$ is a layer's output).

# %%
import os
from dataclasses import replace

import numpy as np
from common import check, corpus, done, figure_dir, fmt, heading, ppl, pyplot, savefig

import tinype
from tinype import kernels, layers, optim, positions, reference

FIG = figure_dir("ch3")
SRC_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(tinype.__file__)))


def show_source(module, *needles):
    """Print the line of tinype's source holding each needle (file:line: text). Returns True when
    every needle is found, so a quoted line that no longer exists shows up as [NO ]."""
    lines = open(module.__file__, encoding="utf-8").read().splitlines()
    rel = os.path.relpath(module.__file__, SRC_ROOT)
    found = True
    for needle in needles:
        hits = [n for n, line in enumerate(lines, 1) if needle in line
                and not line.strip().startswith(('"""', '#'))]      # code, not its docstring
        for n in hits:
            print(f"    {rel}:{n}:  {lines[n - 1].strip()}")
        found &= bool(hits)
    return check("the lines quoted above are in tinype's source", found)


def grad_errors(forward, backward, args, wrt, seed=0):
    """Relative error of each analytic gradient against central differences (float64).

    forward(*args) -> (out, cache); backward(dout, cache) -> gradients of args[i] for i in wrt.
    A random dout stands in for the upstream gradient, so L = sum(out * dout)."""
    rng = np.random.default_rng(seed)
    out, cache = forward(*args)
    dout = rng.standard_normal(np.shape(out))
    grads = backward(dout, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    errors = []
    for g, i in zip(grads, wrt):
        num = tinype.gradcheck.numerical_gradient(lambda: forward(*args)[0], args[i], dout)
        errors.append(tinype.gradcheck.rel_error(g, num))
    return errors


def report(name, names, errors, tol=1e-6):
    print("    " + ", ".join(f"d{n}: {e:.1e}" for n, e in zip(names, errors)))
    return check(f"{name}: every gradient matches central differences (relative error < {tol:g})",
                 max(errors) < tol, f"worst {max(errors):.1e}")


rng = np.random.default_rng(0)

# %% [markdown]
# ## 3.1 How a gradient is checked
#
# A backward pass is a formula; a gradient check tests it against the definition of a derivative.
# For an input $x$ and a random upstream gradient $dy$, define the scalar
# $\mathcal{L}(x) = \sum y(x) \odot dy$. Its gradient is exactly what the backward pass returns for
# that $dy$. Central differences estimate it entry by entry:
#
# $$
# \frac{\partial \mathcal{L}}{\partial x_k} \approx \frac{\mathcal{L}(x + h e_k) - \mathcal{L}(x - h e_k)}{2h},
# \qquad h = 10^{-5}.
# $$
#
# The Taylor expansion of $\mathcal{L}(x \pm h e_k)$ shows that the even terms cancel, so the error
# is $O(h^2) \approx 10^{-10}$; rounding adds about $\epsilon_{64} |\mathcal{L}| / h \approx 10^{-11}$
# in float64 (in float32, $\epsilon_{32}/h \approx 10^{-2}$: useless, which is why every check here
# is float64). We compare the analytic gradient $a$ with the numerical one $n$ by the norm-wise
# **relative error** (`tinype.gradcheck.rel_error`), used in every check of this chapter:
#
# $$
# \mathrm{rel}(a, n) = \frac{\lVert a - n \rVert_2}{\max(\lVert a \rVert_2, \lVert n \rVert_2)}.
# $$
#
# **What size means a bug:** a correct backward gives about $10^{-8}$ or less. A wrong one (a
# missing term, a transposed matrix, the wrong sign) gives $10^{-2}$ to $1$, because the error is
# then as large as a part of the gradient itself. tinype's tests, and this chapter, fail anything
# above $10^{-6}$. Section 3.5 shows a wrong backward caught this way.

# %% [markdown]
# ## 3.2 Linear layer backward
#
# Forward: $y = x W + b$ with $x \in \mathbb{R}^{N \times C_{in}}$, $W \in \mathbb{R}^{C_{in} \times C_{out}}$,
# $b \in \mathbb{R}^{C_{out}}$ (tinype stores weights as (C_in, C_out), so a layer is `x @ w + b`).
# In index form $y_{nj} = \sum_i x_{ni} W_{ij} + b_j$. Each partial derivative is one term:
#
# $$
# \frac{\partial y_{nj}}{\partial x_{ni}} = W_{ij}, \qquad
# \frac{\partial y_{nj}}{\partial W_{ij}} = x_{ni}, \qquad
# \frac{\partial y_{nj}}{\partial b_j} = 1 .
# $$
#
# The chain rule sums over every output that an input touches: $x_{ni}$ reaches $y_{nj}$ for all
# $j$; $W_{ij}$ reaches $y_{nj}$ for all rows $n$; $b_j$ too. So
#
# $$
# dx_{ni} = \sum_j dy_{nj} W_{ij} \;\Rightarrow\; dx = dy\, W^\top, \qquad
# dW_{ij} = \sum_n x_{ni}\, dy_{nj} \;\Rightarrow\; dW = x^\top dy, \qquad
# db = \sum_n dy_{n,:} .
# $$
#
# A shape check catches most mistakes: $dy$ is (N, C_out), $W^\top$ is (C_out, C_in), so $dx$ is
# (N, C_in) like $x$; $x^\top dy$ is (C_in, C_out) like $W$. Worked example: $x = (1, 2)$, one row,
# and $dy = (1, 0, 0)$: then $dW = x^\top dy$ has the column $(1, 2)^\top$ in place 0 and zeros
# elsewhere, and $dx$ is the first row of $W^\top$, i.e. $W$'s first column.
#
# tinype (`tinype/layers.py`, `linear_backward`) computes exactly these three lines:

# %%
heading("3.2 Linear layer backward")
show_source(layers, "dx = (dout2 @ w.T)", "dw = x.reshape(-1, x.shape[-1]).T @ dout2", "db = dout2.sum(axis=0)")
W = rng.standard_normal((2, 3))
_, cache = layers.linear_forward(np.array([[1.0, 2.0]]), W, np.zeros(3))
dx, dW, db = layers.linear_backward(np.array([[1.0, 0.0, 0.0]]), cache)
print(f"    worked example: dW = {dW.tolist()}, dx = {np.round(dx, 4).tolist()}, W[:, 0] = {np.round(W[:, 0], 4).tolist()}")
check("worked example: dW holds x in column 0, dx is W's first column",
      np.array_equal(dW, [[1, 0, 0], [2, 0, 0]]) and np.allclose(dx[0], W[:, 0]))
report("linear", ["x", "W", "b"], grad_errors(layers.linear_forward, layers.linear_backward,
       [rng.standard_normal((2, 3, 5)), rng.standard_normal((5, 4)), rng.standard_normal(4)], [0, 1, 2]))

# %% [markdown]
# ## 3.3 GELU backward
#
# tinype's MLP uses GELU in GPT-2's **tanh approximation** (not the exact $x\,\Phi(x)$ with the error
# function):
#
# $$
# u = k\,(x + 0.044715\, x^3), \quad k = \sqrt{2/\pi}, \qquad t = \tanh u, \qquad y = \tfrac12\, x\, (1 + t).
# $$
#
# It is elementwise, so $dx = dy \odot y'(x)$. The product rule on $\tfrac12 x (1+t)$, then
# $\tanh' = 1 - \tanh^2$ and the chain rule through $u$:
#
# $$
# y'(x) = \tfrac12 (1 + t) + \tfrac12\, x\, \frac{dt}{dx}, \qquad
# \frac{dt}{dx} = (1 - t^2)\,\frac{du}{dx} = (1 - t^2)\, k\, (1 + 3 \cdot 0.044715\, x^2).
# $$
#
# The forward keeps $t$ in its cache, so the backward needs no second tanh. Worked example: at
# $x = 0$, $t = 0$ and $y'(0) = \tfrac12$; for large positive $x$, $t \to 1$ and $y' \to 1$ (GELU
# becomes the identity); for large negative $x$, $y' \to 0$. tinype (`tinype/reference.py`, the
# NumPy twin of the compiled kernel):

# %%
heading("3.3 GELU backward")
show_source(reference, "dudx = GELU_K * (1.0 + 3 * 0.044715 * x * x)",
            "return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dudx)")
xs = np.array([-6.0, 0.0, 6.0])
_, cache = layers.gelu_forward(xs)
slope = layers.gelu_backward(np.ones(3), cache)
print(f"    y'(x) at x = -6, 0, 6: {np.round(slope, 6).tolist()}")
check("worked example: y'(0) = 1/2 exactly, y'(-6) ~ 0, y'(6) ~ 1",
      slope[1] == 0.5 and abs(slope[0]) < 1e-6 and abs(slope[2] - 1) < 1e-6)
report("GELU", ["x"], grad_errors(layers.gelu_forward, layers.gelu_backward, [rng.standard_normal((4, 6)) * 2], [0]))

# %% [markdown]
# ## 3.4 Softmax backward
#
# Attention turns each row of logits $s$ into probabilities $p = \mathrm{softmax}(s)$,
# $p_i = e^{s_i} / \sum_k e^{s_k}$. Differentiate the quotient. For $j = i$ the numerator and the
# denominator both depend on $s_i$; for $j \ne i$ only the denominator does:
#
# $$
# \frac{\partial p_i}{\partial s_j} = \frac{\delta_{ij} e^{s_i} \sum_k e^{s_k} - e^{s_i} e^{s_j}}{\left(\sum_k e^{s_k}\right)^2}
# = p_i\,(\delta_{ij} - p_j), \qquad\text{i.e.}\quad J = \mathrm{diag}(p) - p\,p^\top .
# $$
#
# The backward multiplies the upstream gradient by this (symmetric) Jacobian:
#
# $$
# ds_j = \sum_i dp_i\, p_i (\delta_{ij} - p_j) = p_j\, dp_j - p_j \sum_i dp_i p_i
# \quad\Rightarrow\quad ds = p \odot \left(dp - \langle dp, p \rangle\right).
# $$
#
# Two facts follow. Each row of $J$ sums to zero, so $\sum_j ds_j = 0$: adding a constant to every
# logit of a row changes nothing (softmax is shift invariant), so that direction gets no gradient.
# And the backward never builds $J$ (T × T per row); it needs one dot product per row.
#
# **Worked example by hand.** $s = (0, \ln 2, \ln 5)$ gives $e^s = (1, 2, 5)$, sum 8, so
# $p = (1/8, 2/8, 5/8)$. Then $64\,J = 64\,\mathrm{diag}(p) - 64\,p p^\top$:
#
# $$
# 64\,J = \begin{pmatrix} 8 & 0 & 0 \\ 0 & 16 & 0 \\ 0 & 0 & 40 \end{pmatrix}
# - \begin{pmatrix} 1 & 2 & 5 \\ 2 & 4 & 10 \\ 5 & 10 & 25 \end{pmatrix}
# = \begin{pmatrix} 7 & -2 & -5 \\ -2 & 12 & -10 \\ -5 & -10 & 15 \end{pmatrix},
# $$
#
# and for $dp = (1, 0, 0)$, $ds = p \odot (dp - p_1) = (7, -2, -5)/64$: the first column, summing
# to zero. The cell below measures $J$ of tinype's softmax by central differences and compares.
#
# In tinype the softmax backward lives inside the attention backward (section 3.6), as
# `ds = p * (dp - rowdot)`; section 3.6 shows why `rowdot` is $\langle dp, p\rangle$.

# %%
heading("3.4 Softmax backward")
show_source(reference, "ds = p * (dp - rowdot)")
s = np.log([1.0, 2.0, 5.0])
J = np.stack([tinype.gradcheck.numerical_gradient(lambda: layers.softmax(s), s, dout=np.eye(3)[i])
              for i in range(3)])                                   # row i: d p_i / d s
print("    64 J measured by central differences:")
for row in 64 * J:
    print("      " + "  ".join(f"{v:8.4f}" for v in row))
check("worked example: 64 J = [[7,-2,-5],[-2,12,-10],[-5,-10,15]]",
      np.allclose(64 * J, [[7, -2, -5], [-2, 12, -10], [-5, -10, 15]], atol=1e-7))


def softmax_backward(dp, p):
    """ds = p * (dp - <dp, p>) over the last axis: the formula above, one line."""
    return p * (dp - np.sum(dp * p, axis=-1, keepdims=True))


def softmax_fwd(x):
    p = layers.softmax(x)
    return p, p


report("softmax (the formula above, against tinype's softmax)", ["s"],
       grad_errors(softmax_fwd, softmax_backward, [rng.standard_normal((3, 7)) * 3], [0]))

# %% [markdown]
# ## 3.5 LayerNorm backward
#
# Forward, over the C channels of one row (biased variance, as PyTorch; $\varepsilon = 10^{-5}$):
#
# $$
# \mu = \frac1C \sum_k x_k, \qquad \sigma^2 = \frac1C \sum_k (x_k - \mu)^2, \qquad
# \hat x_j = \frac{x_j - \mu}{\sqrt{\sigma^2 + \varepsilon}}, \qquad y_j = w_j \hat x_j + b_j .
# $$
#
# Write $\sigma$ for $\sqrt{\sigma^2 + \varepsilon}$ (tinype keeps `rstd` = $1/\sigma$). The gain
# and bias are a linear layer's diagonal: $dw = \sum_{\text{rows}} dy \odot \hat x$,
# $db = \sum_{\text{rows}} dy$, and $d\hat x = dy \odot w$. The work is $\partial \hat x_j / \partial x_i$,
# because $\mu$ and $\sigma$ depend on every $x_i$. Step by step:
#
# $$
# \frac{\partial \mu}{\partial x_i} = \frac1C, \qquad
# \frac{\partial \sigma^2}{\partial x_i} = \frac2C \sum_k (x_k - \mu)\Big(\delta_{ki} - \frac1C\Big)
# = \frac2C (x_i - \mu) \quad\Big(\text{since } \sum_k (x_k - \mu) = 0\Big),
# $$
#
# $$
# \frac{\partial \sigma}{\partial x_i} = \frac{1}{2\sigma} \frac{\partial \sigma^2}{\partial x_i}
# = \frac{x_i - \mu}{C\,\sigma} = \frac{\hat x_i}{C} .
# $$
#
# Now the quotient rule on $\hat x_j = (x_j - \mu) / \sigma$:
#
# $$
# \frac{\partial \hat x_j}{\partial x_i} = \frac{\delta_{ij} - \frac1C}{\sigma} - \frac{x_j - \mu}{\sigma^2}\,\frac{\hat x_i}{C}
# = \frac1\sigma \Big(\delta_{ij} - \frac1C - \frac{\hat x_j\, \hat x_i}{C}\Big).
# $$
#
# Sum against the upstream gradient, $dx_i = \sum_j d\hat x_j\, \partial \hat x_j / \partial x_i$:
#
# $$
# dx_i = \frac1\sigma \Big( d\hat x_i - \frac1C \sum_j d\hat x_j - \hat x_i\, \frac1C \sum_j d\hat x_j \hat x_j \Big),
# \qquad
# dx = \frac1\sigma \Big( d\hat x - \mathrm{mean}(d\hat x) - \hat x \odot \mathrm{mean}(d\hat x \odot \hat x) \Big).
# $$
#
# The two subtracted terms remove from $d\hat x$ the two directions that normalisation erases:
# a shift of the whole row (the mean) and a stretch of it along $\hat x$ (the scale).
#
# **Worked example by hand** (with $\varepsilon = 0$ to keep it exact): $x = (1, 1, 3, 3)$ has
# $\mu = 2$, $\sigma = 1$, $\hat x = (-1, -1, 1, 1)$. With $w = 1$ and $dy = (1, 0, 0, 0)$:
# $\mathrm{mean}(d\hat x) = 1/4$, $\mathrm{mean}(d\hat x \odot \hat x) = -1/4$, so
# $dx = (1 - \tfrac14 - \tfrac14,\; -\tfrac14 - \tfrac14,\; -\tfrac14 + \tfrac14,\; -\tfrac14 + \tfrac14) = (\tfrac12, -\tfrac12, 0, 0)$.
#
# tinype (`tinype/reference.py`, twin of the compiled kernel that actually runs):

# %%
heading("3.5 LayerNorm backward")
show_source(reference, "dxhat = dout * w", "dx = rstd[:, None] * (dxhat - dxhat.mean(axis=-1, keepdims=True)",
            "- xhat * np.mean(dxhat * xhat, axis=-1, keepdims=True))",
            "return dx, np.sum(dout * xhat, axis=0), dout.sum(axis=0)")
_, cache = layers.layernorm_forward(np.array([[1.0, 1.0, 3.0, 3.0]]), np.ones(4), np.zeros(4), eps=0.0)
dx_ex = layers.layernorm_backward(np.array([[1.0, 0.0, 0.0, 0.0]]), cache)[0]
print(f"    worked example: dx = {dx_ex[0].tolist()}")
check("worked example: dx = (1/2, -1/2, 0, 0)", np.allclose(dx_ex, [[0.5, -0.5, 0, 0]], atol=1e-15))
ln_args = [rng.standard_normal((2, 3, 8)), 1 + 0.1 * rng.standard_normal(8), 0.1 * rng.standard_normal(8)]
report("LayerNorm", ["x", "w", "b"], grad_errors(layers.layernorm_forward, layers.layernorm_backward, ln_args, [0, 1, 2]))
# The compiled kernel and its NumPy twin, on the same inputs
d_in = rng.standard_normal((5, 8))
_, c5 = layers.layernorm_forward(rng.standard_normal((5, 8)), ln_args[1], ln_args[2])
twin = max(np.abs(a - b).max() for a, b in zip(kernels.layernorm_backward(d_in, c5.xhat, c5.rstd, c5.w),
                                               reference.layernorm_backward(d_in, c5.xhat, c5.rstd, c5.w)))
check(f"the kernel that runs ({kernels.BACKEND}) equals the NumPy lines above", twin < 1e-12, f"max diff {twin:.1e}")

# %% [markdown]
# What a bug looks like. Drop the last term (forgetting that $\sigma$ depends on $x$) and run the
# same gradient check on it. A correct backward gives about $10^{-11}$ here; this wrong one should
# give an error of the size of the missing term, of order $10^{-1}$. The check below asks whether
# the gradient check *catches* it (error above $10^{-6}$); it would print `[NO ]` only if the
# dropped term happened to be negligible for these inputs, which it is not for random rows.

# %%
def layernorm_backward_wrong(dout, cache):
    dxhat = dout.reshape(cache.xhat.shape) * cache.w
    dx = cache.rstd[:, None] * (dxhat - dxhat.mean(axis=-1, keepdims=True))      # scale term missing
    return (dx.reshape(dout.shape),)


wrong = grad_errors(layers.layernorm_forward, layernorm_backward_wrong, ln_args, [0])[0]
check("the gradient check catches a LayerNorm backward without the x-hat term", wrong > 1e-6,
      f"relative error of the wrong backward {wrong:.1e}")

# %% [markdown]
# ## 3.6 Attention backward
#
# One head, one batch element, with $Q, K, V \in \mathbb{R}^{T \times D}$. The forward is four steps
# (tinype's kernel fuses them and never stores the T × T matrices, but the algebra is the same):
#
# $$
# S = \frac{Q K^\top}{\sqrt D} + B + M, \qquad P = \mathrm{softmax}_{\text{rows}}(S), \qquad O = P V,
# $$
#
# where $B_{ij} = b_h(i - j)$ is the positional encoding's bias (ALiBi, T5, KERPLE, ...; zero
# without one) and $M_{ij} = -\infty$ for $j > i$ is the causal mask. Backward, last step first.
#
# **1. $O = PV$** is a linear layer with two inputs (section 3.2, no bias):
#
# $$
# dV = P^\top dO, \qquad dP = dO\, V^\top .
# $$
#
# **2. Softmax, row by row** (section 3.4): $dS = P \odot (dP - r)$ with
# $r_i = \sum_j P_{ij}\, dP_{ij}$. The kernel never forms $dP$ to get $r$:
#
# $$
# r_i = \sum_j P_{ij} \sum_d dO_{id} V_{jd} = \sum_d dO_{id} \sum_j P_{ij} V_{jd} = \sum_d dO_{id}\, O_{id},
# $$
#
# a dot product of two rows it has anyway (`rowdot`, the flash-attention identity). Masked entries
# have $P_{ij} = 0$, so $dS_{ij} = 0$ there: the mask needs no backward.
#
# **3. $S = QK^\top / \sqrt D + B$** is again a product:
#
# $$
# dQ = \frac{dS\, K}{\sqrt D}, \qquad dK = \frac{dS^\top Q}{\sqrt D}, \qquad
# db_h(d) = \sum_{i - j = d} dS_{ij}
# $$
#
# (the bias table's gradient sums $dS$ along each diagonal, since one entry $b_h(d)$ is added to
# every logit at distance $d$). tinype multiplies $dS$ by the scale once (`ds *= mult`, where
# `mult` is $1/\sqrt D$, times the log-n factor of chapter 4 when there is one) and then forms both
# products. In `tinype/reference.py` (`attention_backward`):

# %%
heading("3.6 Attention backward")
show_source(reference, "dv = np.matmul(p.swapaxes(-1, -2), dout)", "dp = np.matmul(dout, v.swapaxes(-1, -2))",
            "rowdot = np.sum(dout * out, axis=-1, keepdims=True)", "ds = p * (dp - rowdot)",
            "ds *= mult", "dq = np.matmul(ds, k)", "dk = np.matmul(ds.swapaxes(-1, -2), q)")

# %% [markdown]
# The same four products, written here directly from the formulas with dense matrices, against
# the kernel tinype runs (compiled when built). Then the kernel against central differences, for
# $Q$, $K$, $V$ and a bias table over distances.

# %%
Bt, Hh, Tt, Dd = 2, 2, 6, 4
scale = 1.0 / np.sqrt(Dd)
q, k, v = (rng.standard_normal((Bt, Hh, Tt, Dd)) for _ in range(3))
table = 0.5 * rng.standard_normal((Hh, Tt))                   # b_h(d), d = i - j = 0..T-1 (causal)
dO = rng.standard_normal((Bt, Hh, Tt, Dd))

i_, j_ = np.arange(Tt)[:, None], np.arange(Tt)[None, :]
S = q @ k.swapaxes(-1, -2) * scale + table[:, np.maximum(i_ - j_, 0)] + np.where(j_ > i_, -np.inf, 0.0)
P = layers.softmax(S)                                         # (B, H, T, T)
O = P @ v
dV = P.swapaxes(-1, -2) @ dO                                  # 1. dV = P^T dO
dP = dO @ v.swapaxes(-1, -2)                                  #    dP = dO V^T
dS = P * (dP - np.sum(dO * O, axis=-1, keepdims=True))        # 2. softmax backward, r = rowdot
dQ = dS @ k * scale                                           # 3. dQ = dS K / sqrt(D)
dK = dS.swapaxes(-1, -2) @ q * scale                          #    dK = dS^T Q / sqrt(D)
dtable = np.stack([[np.trace(dS.sum(axis=0)[h], offset=-d) for d in range(Tt)] for h in range(Hh)])

out_k, lse_k = kernels.attention_forward(q, k, v, scale, True, table)
dq_k, dk_k, dv_k, dtab_k = kernels.attention_backward(dO, q, k, v, out_k, lse_k, scale, True, table)
diff = max(np.abs(a - b).max() for a, b in ((O, out_k), (dQ, dq_k), (dK, dk_k), (dV, dv_k), (dtable, dtab_k)))
check(f"the formulas above equal tinype's attention kernel ({kernels.BACKEND}) for O, dQ, dK, dV and the table",
      diff < 1e-12, f"max |formula - kernel| = {diff:.1e}")


def attention_fwd(q, k, v, table):
    out, lse = kernels.attention_forward(q, k, v, scale, True, table)
    return out, (q, k, v, out, lse, table)


def attention_bwd(dout, c):
    return kernels.attention_backward(dout, c[0], c[1], c[2], c[3], c[4], scale, True, c[5])


report("attention", ["Q", "K", "V", "bias table"], grad_errors(attention_fwd, attention_bwd, [q, k, v, table], [0, 1, 2, 3]))

# %% [markdown]
# ## 3.7 Cross-entropy backward
#
# The language model's loss (chapter 2 writes the objective out) is the **mean** over the $N$
# predicted positions of the negative log-probability of the true next byte $t_n$, with
# $p_n = \mathrm{softmax}(z_n)$ over the $V$ logits of row $n$:
#
# $$
# \mathcal{L} = \frac1N \sum_{n=1}^{N} -\ln p_{n, t_n} = \frac1N \sum_{n=1}^{N} \Big( \ln \sum_{v} e^{z_{n,v}} - z_{n, t_n} \Big).
# $$
#
# The derivative of the log-sum-exp is the softmax, $\partial/\partial z_{n,v} \ln \sum_u e^{z_{n,u}} = p_{n,v}$,
# and $\partial z_{n,t_n} / \partial z_{n,v} = \mathbb{1}[v = t_n]$. So the softmax Jacobian of
# section 3.4 never appears; the two collapse into
#
# $$
# \frac{\partial \mathcal{L}}{\partial z_{n,v}} = \frac{p_{n,v} - \mathbb{1}[v = t_n]}{N},
# \qquad dz = \frac{p - \mathrm{onehot}(t)}{N}.
# $$
#
# Each row of $dz$ sums to zero (the shift invariance again) and its size is at most $2/N$, which
# is why a mean, not a sum, keeps the gradient's scale independent of the batch size. tinype
# computes the softmax once, in the forward, and keeps $dz$ (a row whose target is `ignore_index`
# gets weight 0, the others $1/N$ with N the count of kept rows). Worked example: logits
# $(0, \ln 2, \ln 5)$ and target 2 give $p = (1/8, 2/8, 5/8)$, loss $\ln(8/5) \approx 0.4700$, and
# $dz = (1/8, 2/8, 5/8 - 1) = (0.125, 0.25, -0.375)$. In tinype (`reference.py`, then `layers.py`):

# %%
heading("3.7 Cross-entropy backward")
show_source(reference, "dlogits = np.exp(z - lse)", "dlogits[np.arange(N), targets] -= 1.0", "dlogits *= weights[:, None]")
show_source(layers, "weights = keep.astype(logits.dtype) / count")
loss_ex, cache = layers.cross_entropy_forward(np.log([[1.0, 2.0, 5.0]]), np.array([2]))
dz_ex = layers.cross_entropy_backward(1.0, cache)
print(f"    worked example: loss = {float(loss_ex):.6f} (ln 8/5 = {np.log(8 / 5):.6f}), dz = {np.round(dz_ex[0], 12).tolist()}")
check("worked example: loss = ln(8/5), dz = (1/8, 1/4, -3/8)",
      abs(float(loss_ex) - np.log(1.6)) < 1e-12 and np.allclose(dz_ex, [[0.125, 0.25, -0.375]], atol=1e-15))
targets = rng.integers(0, 7, 6)
report("cross-entropy", ["logits"], grad_errors(lambda z: layers.cross_entropy_forward(z, targets),
       layers.cross_entropy_backward, [rng.standard_normal((6, 7)) * 2], [0]))

# %% [markdown]
# ## 3.8 The whole model, checked
#
# The model chains the pieces: embedding (its backward adds each row's gradient into the row of its
# byte), then per block $x \leftarrow x + \mathrm{attn}(\mathrm{LN}(x))$ and
# $x \leftarrow x + \mathrm{MLP}(\mathrm{LN}(x))$ (a residual sends $dx$ through unchanged and adds
# the branch's gradient), a final LayerNorm, and logits $z = h W_{te}^\top$ tied to the embedding,
# so $dW_{te}$ gets both the head's $dz^\top h$ and the embedding's scatter. With RoPE, $q$ and $k$
# are rotated before attention, and the backward rotates $dq$, $dk$ back by $-\theta$ (chapter 4
# derives it). Below, 8 random entries of every parameter of a tiny float64 RoPE model are
# perturbed and the loss's change compared with `model.backward()`, as
# `tinype.gradcheck.check_model` does: the fourth-order stencil
# $\big(8(\mathcal{L}_{+h} - \mathcal{L}_{-h}) - (\mathcal{L}_{+2h} - \mathcal{L}_{-2h})\big)/12h$ with $h = 3\cdot 10^{-4}$,
# because a whole model's loss is $O(1)$ while some gradients (LayerNorm gains) are $O(10^{-4})$, and
# a larger $h$ keeps rounding small.

# %%
heading("3.8 The whole model, checked")
m64 = tinype.Transformer(tinype.ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=8, pe="rope",
                                            dtype="float64"), seed=0)
x_small, y_small = rng.integers(0, 256, (2, 8)), rng.integers(0, 256, (2, 8))
m64.loss(x_small, y_small)
analytic = {n: g.copy() for n, g in m64.backward().items()}
model_errors = {}
for name, p in m64.parameters().items():                      # 8 random entries of each parameter
    pick = rng.choice(p.size, size=min(8, p.size), replace=False)
    num = tinype.gradcheck.numerical_gradient(lambda: m64.loss(x_small, y_small), p, h=3e-4, indices=pick, order=4)
    model_errors[name] = tinype.gradcheck.rel_error(analytic[name].reshape(-1)[pick], num.reshape(-1)[pick])
worst_name = max(model_errors, key=model_errors.get)
check("every parameter's gradient equals central differences (float64)", model_errors[worst_name] < 1e-6,
      f"{len(model_errors)} parameters, worst relative error {model_errors[worst_name]:.1e} ({worst_name})")

# %% [markdown]
# ## 3.9 The AdamW update
#
# With the gradients $g_t$ of step $t = 1, 2, \dots$ in hand, AdamW (Adam, Kingma & Ba 2015, with
# weight decay *decoupled* from the gradient, Loshchilov & Hutter 2019) updates each parameter
# $\theta$ elementwise. tinype's order of operations, which is torch.optim.AdamW's:
#
# $$
# \theta \leftarrow \theta\,(1 - \eta_t \lambda) \qquad \text{(decay-eligible parameters only)}
# $$
#
# $$
# m_t = \beta_1 m_{t-1} + (1 - \beta_1)\, g_t, \qquad v_t = \beta_2 v_{t-1} + (1 - \beta_2)\, g_t^2, \qquad m_0 = v_0 = 0,
# $$
#
# $$
# \hat m_t = \frac{m_t}{1 - \beta_1^t}, \qquad \hat v_t = \frac{v_t}{1 - \beta_2^t}, \qquad
# \theta \leftarrow \theta - \eta_t\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}.
# $$
#
# Why each piece. $m$ and $v$ are running means of the gradient and of its square; started at zero
# they are biased toward zero early on, and dividing by $1 - \beta^t$ removes exactly that bias
# (if $g_t = g$ for all $t$, $m_t = (1 - \beta_1^t) g$). Dividing by $\sqrt{\hat v}$ gives every
# parameter a step of about $\eta$ whatever its gradient's scale. *Decoupled* decay shrinks
# $\theta$ directly; adding $\lambda\theta$ to $g$ instead (L2 regularisation) would then be divided
# by $\sqrt{\hat v}$ and decay parameters with large gradients less. tinype writes the last line as
# `denom = sqrt(v)/sqrt(1 - b2^t) + eps; p -= (lr / (1 - b1^t)) * m / denom`, the same number:
# $\sqrt{v_t / (1-\beta_2^t)} = \sqrt{v_t} / \sqrt{1-\beta_2^t}$.
#
# **Which parameters decay** (`tinype.optim.decays`): 2-D weight matrices, including the tied
# embedding $W_{te}$; never biases, LayerNorm gains, or the positional encoding's own parameters
# (names starting with `pe.`, such as T5's bucket values or KERPLE's $r_1, r_2$: a decay would pull
# a learned distance bias toward zero).
#
# **Worked example by hand**, the first step ($t = 1$) of one weight $\theta = 1$ with $g = 0.5$,
# $\eta = 0.1$, $\lambda = 0.1$, $\beta = (0.9, 0.95)$: decay gives $1 \cdot (1 - 0.01) = 0.99$;
# $m_1 = 0.05$, $v_1 = 0.05 \cdot 0.25 = 0.0125$; $\hat m_1 = 0.05 / 0.1 = 0.5$,
# $\hat v_1 = 0.0125 / 0.05 = 0.25$; the step is $0.1 \cdot 0.5 / (0.5 + 10^{-8}) \approx 0.1$, so
# $\theta = 0.89$. At $t = 1$ every parameter moves by almost exactly $\eta$ (here $\hat m_1 / \sqrt{\hat v_1} = \pm 1$).
#
# In `tinype/optim.py`:

# %%
heading("3.9 The AdamW update")
show_source(optim, "return param.ndim == 2 and not name.startswith(\"pe.\")", "p *= 1.0 - lr * self.weight_decay",
            "m += (1.0 - b1) * g", "v += (1.0 - b2) * (g * g)", "denom = np.sqrt(v) / math.sqrt(bc2) + self.eps",
            "p -= (lr / bc1) * m / denom")
one = {"w": np.array([[1.0]])}
tinype.AdamW(one, lr=0.1, betas=(0.9, 0.95), weight_decay=0.1).step({"w": np.array([[0.5]])})
check("worked example: theta = 1, g = 0.5 -> 0.89 after one step", abs(one["w"][0, 0] - 0.89) < 1e-8,
      f"tinype gives {one['w'][0, 0]:.10f}")


def adamw_by_hand(theta, grads, lrs, betas=(0.9, 0.95), eps=1e-8, wd=0.1):
    """The formulas above, literally: returns every parameter after len(grads) steps."""
    b1, b2 = betas
    out = {}
    for name, p in theta.items():
        p, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
        for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
            if p.ndim == 2 and not name.startswith("pe."):
                p = p * (1 - lr * wd)
            m = b1 * m + (1 - b1) * g[name]
            v = b2 * v + (1 - b2) * g[name] ** 2
            m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
            p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        out[name] = p
    return out


# a parameter of each kind: a weight matrix, a LayerNorm gain, a PE parameter (2-D, yet not decayed)
theta0 = {"h0.attn.w_qkv": rng.standard_normal((4, 3)), "h0.ln_1.w": rng.standard_normal(4),
          "pe.values": rng.standard_normal((5, 2))}
steps_g = [{n: rng.standard_normal(p.shape) for n, p in theta0.items()} for _ in range(5)]
lrs = [optim.lr_at(s, 3e-3, 5, 2) for s in range(5)]
live = {n: p.copy() for n, p in theta0.items()}
opt = tinype.AdamW(live, lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
for g, lr in zip(steps_g, lrs):
    opt.step({n: a.copy() for n, a in g.items()}, lr)
hand = adamw_by_hand(theta0, steps_g, lrs)
gap = max(np.abs(live[n] - hand[n]).max() for n in theta0)
check("five AdamW steps by hand equal tinype.AdamW", gap < 1e-14, f"max difference {gap:.1e}")
# With zero gradients, m = v = 0 and only the decay moves a parameter: by exactly (1 - lr wd)
frozen = {n: p.copy() for n, p in theta0.items()}
tinype.AdamW(frozen, lr=0.5, weight_decay=0.1).step({n: np.zeros_like(p) for n, p in frozen.items()})
moved = {n: bool(np.allclose(frozen[n], theta0[n] * (1 - 0.5 * 0.1))) and not np.allclose(frozen[n], theta0[n])
         for n in theta0}
print(f"    with zero gradients, which parameters shrank by (1 - lr wd): {moved}")
check("only the 2-D weight matrix decays (not the gain, not pe.*)", moved == {"h0.attn.w_qkv": True,
      "h0.ln_1.w": False, "pe.values": False})

# %% [markdown]
# Two more pieces run before AdamW in every step of `tinype.train`. **Clipping**: all gradients
# are scaled together so that their global norm is at most $c = 1$,
# $g \leftarrow g \cdot \min\big(1, c / (\lVert g \rVert_2 + 10^{-6})\big)$, which bounds the step
# after a rare large gradient. **The learning rate** warms up linearly for $w$ steps and then
# follows a cosine from $\eta$ down to $\eta_{\min} = 0.1\,\eta$ at the last step $S - 1$:
#
# $$
# \eta_s = \eta\, \frac{s + 1}{w} \;\; (s < w), \qquad
# \eta_s = \eta_{\min} + \tfrac12 (\eta - \eta_{\min}) \Big(1 + \cos\big(\pi\, \tfrac{s - w}{S - 1 - w}\big)\Big) \;\; (s \ge w).
# $$

# %%
S_, w_, lr_ = 100, 10, 3e-3
by_formula = [lr_ * (s + 1) / w_ if s < w_ else 0.1 * lr_ + 0.45 * lr_ * (1 + np.cos(np.pi * (s - w_) / (S_ - 1 - w_)))
              for s in range(S_)]
gap = max(abs(optim.lr_at(s, lr_, S_, w_) - f) for s, f in enumerate(by_formula))
check("tinype.lr_at equals the schedule's formula at every step", gap < 1e-15, f"max difference {gap:.1e}")
g_big = {"a": np.full(4, 3.0)}                                # norm 6
norm = optim.clip_grad_norm(g_big, 1.0)
check("clipping a gradient of norm 6 to 1 scales it by 1/(6 + 1e-6)", abs(norm - 6) < 1e-12 and
      abs(np.linalg.norm(g_big["a"]) - 6 / (6 + 1e-6)) < 1e-12, f"norm after: {np.linalg.norm(g_big['a']):.8f}")

# %% [markdown]
# ## 3.10 Pretraining: the language-model objective
#
# 000 §3.1 pretrains BERT with masked-language modelling; the models whose context length this
# course studies (GPT-style decoders) are pretrained on the **next-token objective** instead,
# which is what tinype trains: minimise over the parameters $\theta$ the cross-entropy of section
# 3.7 on random windows of $T_{\text{train}} = 64$ bytes,
#
# $$
# \min_\theta \; \mathbb{E}_{x \sim \text{corpus}} \Big[ \frac{1}{T} \sum_{t=1}^{T} -\ln p_\theta(x_{t+1} \mid x_{1..t}) \Big],
# $$
#
# estimated on a batch of 32 windows per step, with every step: forward, backward (3.2 to 3.8),
# clip, AdamW (3.9). Here: the quick preset (2 layers, width 64, 4 heads) with RoPE, 400 steps.
# A loss of $\ln 256 \approx 5.55$ nats per byte is a uniform guess; the check below asks that
# training bring the loss below 60% of its first value. It would print `[NO ]` if the learning
# rate were too small for 400 steps, or if a gradient above were wrong in a way that slows descent.

# %%
heading("3.10 Pretraining: the language-model objective")
model_cfg, train_cfg = tinype.preset("quick", pe="rope")
train_cfg = replace(train_cfg, steps=400, warmup=40, eval_every=100, ckpt_every=0)
result = tinype.train(model_cfg, train_cfg, corpus(), progress=False, log=lambda m: None)
rope = result.model
hist = result.history
print(f"  train loss {hist[0]['loss']:.2f} -> {hist[-1]['loss']:.2f} nats/byte over {len(hist)} steps "
      f"(ln 256 = {np.log(256):.2f}); validation perplexity at T = 64: {result.val['ppl']:.2f}")
check("training lowers the loss below 60% of its first value", hist[-1]["loss"] < 0.6 * hist[0]["loss"],
      f"{hist[0]['loss']:.2f} -> {hist[-1]['loss']:.2f}")

# %% [markdown]
# ## 3.11 "Apply a new encoding and retrain"? Try it without retraining first
#
# 002 §3.3 says a new encoding must be applied and the model **retrained**. For RoPE there is a
# cheaper first try. A RoPE model's only positional parameters are its rotation frequencies
# $\theta_k = b^{-2k/D}$, which are not learned. The *scalings* change them for an evaluation
# length $L$, with $s = \max(1, L / T_{\text{train}})$; chapter 4 derives each:
#
# $$
# \text{PI: } \theta_k' = \theta_k / s, \qquad \text{NTK-aware: } b' = b\, s^{D/(D-2)}, \qquad
# \text{dynamic NTK: } b' = b\,(2 L / T_{\text{train}} - 1)^{D/(D-2)},
# $$
#
# and YaRN and Llama 3 interpolate only the long-wavelength pairs. The trained weights are reused
# unchanged. At $L = T_{\text{train}}$, $s = 1$ and every formula gives back $\theta_k$, so each
# scaling must reproduce plain RoPE's perplexity there: the first check tests this for **every**
# RoPE scaling tinype registers (`tinype.positions.EVAL_TIME_VARIANTS`: rope_pi, rope_ntk,
# rope_dynamic, rope_yarn, rope_llama3). xPos and randomized RoPE are RoPE relatives that change
# training itself, so they are not scalings of this checkpoint and are not in the list. The second
# check asks whether any scaling beats plain RoPE at 8x without retraining; if it prints `[NO ]`,
# no evaluation-time change recovered anything here, and retraining (002's step) would be needed.

# %%
heading("3.11 'Apply a new encoding and retrain'? Try it without retraining first")
lengths = [64, 128, 256, 512]
variants = ["rope"] + sorted(n for n, base in positions.EVAL_TIME_VARIANTS.items() if base == "rope")
table, freq_gap = {}, {}
plain_freq = rope.pe.frequencies(64)[0]
for name in variants:
    rope.config = replace(rope.config, pe=name)
    rope.pe = positions.get(name)
    rope.pe.setup(rope.config)
    inv, af = rope.pe.frequencies(64)
    freq_gap[name] = max(np.abs(inv - plain_freq).max(), abs(af - 1.0))
    table[name] = [ppl(rope, L) for L in lengths]
print("  perplexity of the same weights (T_train = 64) on the first 16 KiB of the validation text:")
print("  " + "variant".ljust(14) + "".join(f"{L:>9d}" for L in lengths) + "   max |theta' - theta| at L = 64")
for name, row in table.items():
    print("  " + name.ljust(14) + "".join(f"{fmt(v):>9s}" for v in row) + f"   {freq_gap[name]:.1e}")
same = [n for n in variants[1:] if abs(table[n][0] - table["rope"][0]) <= 1e-6 * table["rope"][0]]
check(f"at T_train every one of the {len(variants) - 1} RoPE scalings equals plain RoPE",
      len(same) == len(variants) - 1, "differs: " + (", ".join(sorted(set(variants[1:]) - set(same))) or "none"))
best = min(variants[1:], key=lambda n: table[n][-1])
check(f"some evaluation-time scaling beats plain RoPE at 8x without retraining (best: {best})",
      table[best][-1] < table["rope"][-1], f"{fmt(table['rope'][-1])} -> {fmt(table[best][-1])}")
better = [n for n in variants[1:] if table[n][-1] < table["rope"][-1]]
worse = [n for n in variants[1:] if table[n][-1] >= table["rope"][-1]]
print(f"  at 8x, better than plain RoPE: {', '.join(better) or 'none'}; not better: {', '.join(worse) or 'none'}")

plt = pyplot()
fig, (a1, a2) = plt.subplots(1, 2, figsize=(11.5, 4))
a1.plot([h["step"] for h in hist], [h["loss"] for h in hist], linewidth=0.8, label="training batch loss")
val = [(h["step"], h["val_nll"]) for h in hist if "val_nll" in h]
a1.plot(*zip(*val), "o-", label="validation loss (64 windows)")
a1.plot([hist[-1]["step"]], [result.val["nll"]], "s", color="C3", label="final validation (whole split)")
a1.axhline(np.log(256), color="gray", linestyle=":", label="uniform guess, ln 256")
a1.set_xlabel("training step")
a1.set_ylabel("cross-entropy (nats per byte)")
a1.set_title("Pretraining a RoPE model (quick preset, T_train = 64)")
a1.legend(fontsize=8)
for name, row in table.items():
    a2.plot(lengths, row, marker="o", label=name, linewidth=2.2 if name == "rope" else 1.2)
a2.axvline(64, color="gray", linestyle=":")
a2.set_xscale("log", base=2)
a2.set_xticks(lengths, [str(L) for L in lengths])
a2.set_xlabel("evaluation length L (bytes; T_train = 64 dotted)")
a2.set_ylabel("perplexity (non-overlapping windows)")
a2.set_title("Same weights, RoPE scalings chosen at evaluation")
a2.legend(fontsize=8)
savefig(fig, FIG, "pretrain_and_variants.png")

# %% [markdown]
# What this means. The table and the figure answer 002 §3.3 for this model: the frequencies can be
# changed after training, and the lines printed above say which scalings recover part of the loss
# past $T_{\text{train}}$ for free in this run, and (printed below) whether any of them gets back
# to the perplexity at 1x. When none does, the remaining gap is what fine-tuning is for: the PI and
# YaRN papers follow the rescaling with a few hundred steps at the longer length. Encodings built
# to extrapolate (ALiBi, chapter 1) need neither. (The table's perplexity at $L = 64$ is over the
# first 16 KiB of validation text, so it differs from the whole-split number printed in 3.10.)
# Chapter 4 derives every scaling's formula; `tinype lab` compares them over three seeds.

# %%
gap8 = table[best][-1] / table["rope"][0]
print(f"  best scaling at 8x ({best}): perplexity {fmt(table[best][-1])}, {gap8:.2f}x its value at 1x "
      f"({fmt(table['rope'][0])}): " + ("back within 10% of 1x without retraining." if gap8 < 1.1 else
                                        "not back to 1x; fine-tuning at the longer length would have to close that gap."))

# %%
done()
