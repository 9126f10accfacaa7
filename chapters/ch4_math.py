# %% [markdown]
# # Chapter 4. The mathematics (数学模型和公式详细讲解举例说明)
#
# This chapter writes out every positional-encoding formula tinype ships, derives each one step
# by step, works a small example by hand, and then checks the formula numerically against
# tinype in the same cell. Every check computes the formula *ourselves* in NumPy and compares it
# with tinype's function, printing `max |ours - tinype|`; a `[yes]` means the two agree to the
# stated tolerance, a `[NO ]` means they do not (each section says what a `[NO ]` would mean).
#
# Both source articles have a section 4 with this title. Article 000 §4.1 writes the sinusoidal
# encoding (wrongly: §4.1.3 shows and corrects it) and §4.2 the cross-entropy loss (§4.15);
# article 002 §4 proposes $f(n) = \log(n+1)$ (§4.13 and §4.14 read it in its two possible ways).
#
# The sections follow the four places a positional encoding can act (DESIGN.md):
#
# 1. added to the token embeddings: the sinusoidal table (§4.1);
# 2. rotating queries and keys: RoPE (§4.2) and its context-extension scalings (§4.8-§4.12);
# 3. a bias added to the attention logits: ALiBi, T5, KERPLE, Sandwich, FIRE (§4.3-§4.7);
# 4. a multiplier of each query's logits: log-n scaling (§4.13).
#
# Notation: $p$, $i$, $j$ are positions (a query at $i$ attends to keys at $j \le i$), $d$ is the
# width of a table, $D$ a head dimension, $H$ the number of heads, $T_\text{train}$ the training
# length, $s$ a context-extension factor.

# %%
import numpy as np
from common import check, done, figure_dir, fmt, heading, ppl, pyplot, quick_lm, savefig

import tinype
from tinype import gradcheck, kernels, positions
from tinype.layers import cross_entropy_backward, cross_entropy_forward

FIG = figure_dir("ch4")
plt = pyplot()
rng = np.random.default_rng(0)


def claim(text, ok, detail=""):
    """common.check without a return value, so that a notebook cell ending with it echoes nothing."""
    check(text, ok, detail)


def agree(text, ours, theirs, tol=1e-12):
    """Compare our NumPy formula with tinype's result; print max |ours - tinype|."""
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    diff = np.inf if ours.shape != theirs.shape else float(np.max(np.abs(ours - theirs)))
    check(text, diff <= tol, f"max |ours - tinype| = {diff:.1e}, tolerance {tol:.0e}")


def save(fig, name):
    """common.savefig into this chapter's folder (returns nothing, so a notebook cell echoes nothing)."""
    savefig(fig, FIG, name)


def source_has(module, line):
    """True when `line` occurs in the source file of a tinype module (keeps quoted lines honest)."""
    return line in open(module.__file__, encoding="utf-8").read()


# %% [markdown]
# ## 4.1 Sinusoidal encoding
#
# **The idea.** Self-attention treats its input as a set: permute the tokens and every output is
# permuted the same way. Vaswani et al. (2017) add to each token embedding a vector that depends
# only on the position $p$, built from sines and cosines of $p$ at $d/2$ geometrically spaced
# frequencies. Channel pair $i$ (channels $2i$ and $2i+1$) turns at the angular frequency
#
# $$
# \omega_i = 10000^{-2i/d}, \qquad i = 0, 1, \dots, \tfrac{d}{2} - 1,
# $$
#
# so pair 0 turns one radian per position and the last pair almost $10000$ times slower. The
# table is
#
# $$
# \mathrm{PE}[p, 2i] = \sin(p\,\omega_i), \qquad \mathrm{PE}[p, 2i+1] = \cos(p\,\omega_i).
# $$
#
# Each pair is a point on the unit circle, so every row has the same norm:
# $\lVert \mathrm{PE}[p] \rVert^2 = \sum_i (\sin^2 + \cos^2) = d/2$.
#
# **Worked example** ($d = 4$, $p = 2$). The frequencies are $\omega_0 = 10000^0 = 1$ and
# $\omega_1 = 10000^{-2/4} = 0.01$, so
# $\mathrm{PE}[2] = (\sin 2, \cos 2, \sin 0.02, \cos 0.02) \approx (0.9093, -0.4161, 0.0200, 0.9998)$,
# and its squared norm is $2 = d/2$. The cell below builds the table from the two formulas above
# and compares it with `tinype.positions.sinusoidal_table`, first on this example, then at
# $d = 64$ and real-valued positions. A `[NO ]` here would mean tinype's table left the paper's
# convention (interleaved sin/cos, base 10000).

# %%
heading("4.1 Sinusoidal encoding")
ours_2 = np.array([np.sin(2.0), np.cos(2.0), np.sin(0.02), np.cos(0.02)])
print("  PE[2] at d = 4, by hand:", np.round(ours_2, 4), " tinype:",
      np.round(positions.sinusoidal_table(np.array([2.0]), 4)[0], 4))
agree("the worked example PE[2] (d = 4)", ours_2, positions.sinusoidal_table(np.array([2.0]), 4)[0])
d = 64
P = np.arange(0, 512) * 0.75                                   # real-valued positions are allowed
omega = 10000.0 ** (-2 * np.arange(d // 2) / d)                # (d/2,)
ours = np.zeros((len(P), d))
ours[:, 0::2], ours[:, 1::2] = np.sin(np.outer(P, omega)), np.cos(np.outer(P, omega))
table = positions.sinusoidal_table(P, d)
agree("the table at d = 64 and 512 real positions", ours, table)
norms = np.linalg.norm(table, axis=1)
claim("every row has norm sqrt(d/2)", np.allclose(norms, np.sqrt(d / 2), atol=1e-12),
      f"norms in [{norms.min():.12f}, {norms.max():.12f}], sqrt(d/2) = {np.sqrt(d / 2):.12f}")

# %% [markdown]
# ### 4.1.1 A shift is a rotation
#
# Why pairs of sine *and* cosine? Because then moving by a fixed offset $k$ is one linear map,
# the same for every position $p$. Write $a = p\,\omega_i$ and $b = k\,\omega_i$. The angle-addition
# formulas give
#
# $$
# \sin(a + b) = \sin a \cos b + \cos a \sin b, \qquad \cos(a + b) = \cos a \cos b - \sin a \sin b .
# $$
#
# Read as a row vector $(\sin a, \cos a)$ times a matrix:
#
# $$
# \big(\sin(a+b),\ \cos(a+b)\big) = \big(\sin a,\ \cos a\big)
# \begin{pmatrix} \cos b & -\sin b \\ \sin b & \cos b \end{pmatrix} .
# $$
#
# (First column: $\sin a \cos b + \cos a \sin b$; second: $-\sin a \sin b + \cos a \cos b$.) The
# matrix depends on $b = k\omega_i$ only, not on $a$. Stacking one such block per pair gives the
# block-diagonal matrix $R_k = \mathrm{diag}\big(M(k\omega_0), \dots, M(k\omega_{d/2-1})\big)$ and
#
# $$
# \mathrm{PE}[p + k] = \mathrm{PE}[p]\, R_k \quad \text{for every } p .
# $$
#
# Each block is a rotation (orthogonal, determinant $\cos^2 + \sin^2 = 1$), so a shift turns
# every pair by its own angle. This is the property Vaswani et al. hoped would let a model attend
# by relative position: a linear layer can learn $R_k$. The check builds $R_7$ from the formula
# and applies it to tinype's table. If it printed `[NO ]`, the table's pairs would not be
# (sin, cos) of one angle, i.e. the layout would differ from the one derived here; if the second
# check (orthogonality) did, the matrix built here from the formula would not be a rotation, i.e.
# the derivation's blocks were written down wrongly.

# %%
k = 7
R = np.zeros((d, d))
for i, w in enumerate(omega):
    c, s = np.cos(k * w), np.sin(k * w)
    R[2 * i:2 * i + 2, 2 * i:2 * i + 2] = [[c, -s], [s, c]]
whole = positions.sinusoidal_table(np.arange(600.0), d)
agree(f"PE[p + {k}] = PE[p] R_{k} for p = 0..592", whole[:-k] @ R, whole[k:], tol=1e-10)
claim("R_7 is orthogonal (R R^T = I)", np.allclose(R @ R.T, np.eye(d), atol=1e-12))

# %% [markdown]
# ### 4.1.2 The binary-counter intuition
#
# Write the positions $0, 1, 2, \dots$ in binary (d2l.ai's picture). The lowest bit flips at every
# step, bit 1 every 2 steps, bit $b$ every $2^b$ steps: its period is $2^{b+1}$. The sinusoidal
# table is a continuous version of that counter. Column pair $i$ has the wavelength (period)
#
# $$
# \lambda_i = \frac{2\pi}{\omega_i} = 2\pi \cdot 10000^{2i/d},
# \qquad \frac{\lambda_{i+1}}{\lambda_i} = 10000^{2/d},
# $$
#
# a geometric sequence like the bits' $2, 4, 8, \dots$, but with the ratio $10000^{2/d}$
# ($1.33$ at $d = 64$) instead of 2, and with values that move smoothly in $[-1, 1]$ instead of
# jumping between 0 and 1. Low dimensions change fast (they tell neighbours apart), high ones
# slowly (they tell far-apart regions apart).
#
# The check below *measures* each column's period from tinype's table, by counting sign changes
# of the sine column over 20,000 positions (a sine changes sign twice per period, so
# $\hat\lambda = 2 \cdot 20000 / \#\text{changes}$), and compares it with $2\pi/\omega_i$ for the
# columns that complete at least 20 periods. If it printed `[NO ]`, the columns would not
# oscillate at the frequencies of the formula.

# %%
long = positions.sinusoidal_table(np.arange(20000.0), d)
lam = 2 * np.pi / omega
fast = np.where(lam < 20000 / 20)[0]
changes = np.array([np.count_nonzero(np.diff(np.sign(long[:, 2 * i])) != 0) for i in fast])
measured = 2 * 20000 / changes
rel = np.abs(measured / lam[fast] - 1)
claim(f"measured periods of the {len(fast)} fastest pairs match 2 pi / omega_i within 2%", rel.max() < 0.02,
      f"worst relative error {rel.max():.2%}; periods {lam[fast[0]]:.2f} .. {lam[fast[-1]]:.0f} positions")
print(f"  consecutive wavelength ratio: {lam[1] / lam[0]:.4f} (10000^(2/d) = {10000 ** (2 / d):.4f}); "
      f"bits: 2")

# %% [markdown]
# ### 4.1.3 Article 000 §4.1's formula, and the correction
#
# Article 000 §4.1 writes
#
# $$
# PE_{(i, j)} = \sin\!\Big(j \cdot \frac{1}{10000^{i/\alpha}}\Big)
# $$
#
# with $i$ "the position of the word in the sentence", $j$ "the index of the word in the
# vocabulary" and $\alpha$ (written $a$ in the text) the encoding's dimension. Three things are
# wrong:
#
# 1. The indices are swapped: the exponent must carry the *dimension* index and the sine's
#    argument the *position*, not the other way round.
# 2. The vocabulary has nothing to do with positions: the table is indexed by (position,
#    dimension), and the same position gets the same vector whatever the word.
# 3. The cosine of the odd dimensions is dropped, and with it the shift-is-a-rotation property of
#    §4.1.1 (a shift needs both $\sin a$ and $\cos a$; a table of sines alone does not contain
#    $\cos a$).
#
# The corrected formula is the one of §4.1. To see what point 3 costs, we read the article's
# formula in its most charitable way (position in the argument, dimension $i$ in the exponent,
# sines only: $\sin(p / 10000^{i/d})$ for $i = 0..d-1$) and test two things the correct table has:
# constant row norms, and a linear map taking row $p$ to row $p + 7$. The map is fitted by least
# squares over 512 positions; for the correct table the fit is exact (the residual is rounding),
# for the sine-only table it cannot be. If the first of these checks printed `[NO ]`, the sine-only
# table would have (nearly) constant norms after all; if the second did, a linear map would
# predict the shifted sine table as well as the rotation predicts the correct one.

# %%
dims = np.arange(d)[:, None]
Pint = np.arange(512.0)
article = np.sin(Pint[None, :] / 10000 ** (dims / d)).T           # its formula read charitably: no cosine
correct = positions.sinusoidal_table(Pint, d)
a_norm = np.linalg.norm(article, axis=1)
claim("the article's table has varying row norms (a correct table has sqrt(d/2) = 5.66 everywhere)",
      np.ptp(a_norm) > 1.0, f"norms from {a_norm.min():.2f} to {a_norm.max():.2f}")


def shift_residual(tab, k=7):
    M, *_ = np.linalg.lstsq(tab[:-k], tab[k:], rcond=None)       # best linear map row p -> row p + k
    return np.linalg.norm(tab[:-k] @ M - tab[k:]) / np.linalg.norm(tab[k:])


r_ok, r_art = shift_residual(correct), shift_residual(article)
claim("a linear map shifts the correct table exactly, but not the sine-only one", r_ok < 1e-8 and r_art > 1e-3,
      f"relative residual {r_ok:.1e} (sin/cos) vs {r_art:.1e} (article)")

# %% [markdown]
# The figure shows the three tables side by side: the binary counter, the correct sinusoid, and
# the article's sine-only version. In the correct table each (sin, cos) pair of rows is a pair of
# waves a quarter period apart; in the article's table the dimension index $i$ runs over all $d$
# channels in the exponent, so the frequencies fall twice as slowly and there are no cosine rows.

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
bits = (np.arange(128)[:, None] >> np.arange(7)[None, :]) & 1
im0 = axes[0].imshow(bits.T, aspect="auto", cmap="Greys", origin="lower", interpolation="nearest")
axes[0].set(title="binary counter: bit b of p", xlabel="position p", ylabel="bit b (period 2^(b+1))")
fig.colorbar(im0, ax=axes[0], label="bit value")
im1 = axes[1].imshow(correct[:128].T, aspect="auto", cmap="RdBu", vmin=-1, vmax=1, origin="lower")
axes[1].set(title="correct: PE[p, 2i] = sin, PE[p, 2i+1] = cos", xlabel="position p", ylabel="channel (dimension)")
fig.colorbar(im1, ax=axes[1], label="PE value")
im2 = axes[2].imshow(article[:128].T, aspect="auto", cmap="RdBu", vmin=-1, vmax=1, origin="lower")
axes[2].set(title="article 000 §4.1 (charitable reading): sines only", xlabel="position p",
            ylabel="channel i in 10000^(i/d)")
fig.colorbar(im2, ax=axes[2], label="PE value")
save(fig, "sinusoid_vs_article.png")

# %% [markdown]
# ### 4.1.4 The scale of the table: $1/\sqrt{d_\text{model}}$
#
# The paper multiplies the token embeddings by $\sqrt{d}$ before adding the unit-amplitude table.
# tinype initialises embeddings at standard deviation 0.02 and instead divides the table by
# $\sqrt{d}$ (DESIGN.md), which is the same model up to an overall factor:
#
# $$
# x_p = \mathrm{wte}[t_p] + \frac{1}{\sqrt{d}}\,\mathrm{PE}[p],
# \qquad \Big\lVert \tfrac{1}{\sqrt{d}}\,\mathrm{PE}[p] \Big\rVert = \sqrt{\tfrac{d/2}{d}} = \tfrac{1}{\sqrt{2}} .
# $$
#
# At amplitude 1 the table's norm is $\sqrt{d/2} = 5.66$ at $d = 64$, while a fresh embedding row
# has norm about $0.02\sqrt{64} = 0.16$: the positions swamp the tokens 35 to 1, and the first
# layer must learn to undo that. We train the quick model for 250 steps both ways. The check asks
# whether the scaled table trains to a lower perplexity. It is a measurement, so it could come out
# either way: if it printed `[NO ]`, the amplitude-1 model would have learned to live with the
# large table within 250 steps on this corpus (compare the two perplexities it prints; with one seed
# a difference of a few percent is within noise).

# %%
heading("4.1.4 The scale of the table")
scaled = quick_lm("sinusoidal", steps=250)
full = quick_lm("sinusoidal", steps=250, pe_options={"scale": 1.0})
a, b = ppl(scaled, 64), ppl(full, 64)
claim("the 1/sqrt(d) table trains to a lower perplexity than the amplitude-1 table", a < b,
      f"{fmt(a)} vs {fmt(b)}")
emb_norm = np.linalg.norm(scaled.params["wte"], axis=1).mean()
fig, ax = plt.subplots(figsize=(7, 3.8))
ax.bar(["token embedding\n(trained, mean norm)", "table / sqrt(d)", "table, amplitude 1"],
       [emb_norm, np.sqrt(d / 2) / np.sqrt(d), np.sqrt(d / 2)], color=["tab:gray", "tab:blue", "tab:red"])
ax.set_ylabel("vector norm (no unit)")
ax.set_title(f"d = 64; perplexity after 250 steps: {fmt(a)} (scaled) vs {fmt(b)} (amplitude 1)")
save(fig, "embedding_scale.png")

# %% [markdown]
# ### 4.1.5 Learned and randomized positions
#
# Two more absolute encodings tinype ships. **Learned positions** (BERT, GPT-2) replace the formula
# by a trained table $W_\text{pe} \in \mathbb R^{T_\text{train} \times d}$, initialised at
# $\mathcal N(0, 0.02^2)$: $x_p = \mathrm{wte}[t_p] + W_\text{pe}[p]$. Its backward is a
# scatter-add: row $p$ of the gradient collects the gradients of every token placed at $p$,
#
# $$
# \frac{\partial L}{\partial W_\text{pe}[p]} = \sum_{t\,:\,\text{pos}(t) = p} \frac{\partial L}{\partial x_t} ,
# $$
#
# and a table of $T_\text{train}$ rows has no row for position $T_\text{train}$: the model cannot
# run past its training length at all (nanoGPT's `assert t <= block_size`). **Randomized positions**
# (Ruoss et al. 2023) keep any of these encodings but, during training, give a window of $T$
# tokens the positions of a sorted random subset of $\{0, \dots, L_\text{max} - 1\}$,
# $L_\text{max} = 8\,T_\text{train}$ by default, so that training already visits every position a
# longer test window will use. Worked example: $T = 4$, $L_\text{max} = 16$: one draw might be
# $(2, 5, 6, 13)$; the order is kept, the gaps vary.
#
# Checks: the learned table's backward against our scatter-add when positions repeat (as they can
# in a randomized batch); the learned encoding refusing $T_\text{train} + 1$ positions with a clear
# error; and 200 randomized draws at $T = 64$ being sorted, distinct, inside $[0, 512)$ and
# reaching beyond $T_\text{train}$. A `[NO ]` in the first would be a wrong gradient (e.g. an
# assignment that loses repeated positions instead of adding them); in the others, a table that
# silently wraps around, or positions that are not a sorted subset of the stated range.

# %%
cfg_l = tinype.ModelConfig(d_model=8, n_head=2, T_train=6, dtype="float64")
learned_pe = positions.get("learned")
learned_pe.setup(cfg_l)
wpe = {"wpe": rng.normal(size=(6, 8))}
pos_rep = np.array([0.0, 2.0, 2.0, 5.0, 2.0])
g_rows = rng.normal(size=(5, 8))
ours_dwpe = np.zeros((6, 8))
for r_, p_ in enumerate(pos_rep.astype(int)):
    ours_dwpe[p_] += g_rows[r_]
agree("learned positions: the backward adds the rows of repeated positions",
      ours_dwpe, learned_pe.embed_backward(wpe, g_rows, learned_pe.embed(wpe, pos_rep)[1])["wpe"])
try:
    learned_pe.check_length(7)
    refused = "no error"
except ValueError as err:
    refused = str(err)
claim("learned positions refuse T_train + 1 = 7 positions with a clear error", refused != "no error", refused)
rnd = positions.get("randomized_sinusoidal")
rnd.setup(tinype.ModelConfig(d_model=64, n_head=4, T_train=64))
g = np.random.default_rng(5)
draws = np.stack([rnd.positions(64, train=True, rng=g) for _ in range(200)])
ok_r = bool(np.all(np.diff(draws, axis=1) > 0) and draws.min() >= 0 and draws.max() < 8 * 64)
claim("randomized positions: sorted, distinct, in [0, 8 T_train)", ok_r,
      f"largest drawn position {draws.max():.0f}; mean largest per window {draws[:, -1].mean():.0f}")


# %% [markdown]
# ## 4.2 RoPE
#
# **The idea.** Rotary position embedding (Su et al. 2021) does not add anything to the
# embeddings. It rotates each query and each key by an angle proportional to its position, pair
# of channels by pair of channels, just before their dot product. Pair $k$ of a head of dimension
# $D$ turns at
#
# $$
# \theta_k = \text{base}^{-2k/D}, \qquad k = 0, \dots, \tfrac{D}{2} - 1, \qquad \text{base} = 10000,
# $$
#
# (`inv_freq` in the code: the same frequencies as the sinusoid's $\omega_i$, with $D$ for $d$),
# and the vector at position $p$ has its pair $(a, b)$ rotated by the angle $p\,\theta_k$:
#
# $$
# \begin{pmatrix} a' \\ b' \end{pmatrix} = R(p\theta_k) \begin{pmatrix} a \\ b \end{pmatrix},
# \qquad R(\phi) = \begin{pmatrix} \cos\phi & -\sin\phi \\ \sin\phi & \cos\phi \end{pmatrix},
# $$
#
# i.e. $a' = a\cos\phi - b\sin\phi$, $b' = b\cos\phi + a\sin\phi$. In tinype's reference
# `apply_rotary` (`tinype/reference.py`; the first check below asserts that these lines are in
# the source, so the quotation cannot rot) this reads
#
# ```python
#     ya = a * cos - b * sin
#     yb = b * cos + a * sin
# ```
#
# $R_p$ is the block-diagonal matrix of these blocks, one per pair.
#
# **Why the dot product sees only $j - i$.** Two facts about rotations by angles: they compose by
# adding angles, $R(\alpha) R(\beta) = R(\alpha + \beta)$, and the transpose undoes one,
# $R(\phi)^\top = R(-\phi) = R(\phi)^{-1}$. Both hold block by block, hence for $R_p$. So
#
# $$
# (R_i q)^\top (R_j k) = q^\top R_i^\top R_j\, k = q^\top R_{-i} R_j\, k = q^\top R_{j-i}\, k .
# $$
#
# The logit between a query at $i$ and a key at $j$ is a function of the content ($q$, $k$) and of
# the offset $j - i$ only: the absolute positions have cancelled.
#
# **Worked example** ($D = 2$, one pair, $\theta_0 = 1$). With $q = k = (1, 0)$ at $i = 3$, $j = 1$:
# $R_3 q = (\cos 3, \sin 3)$, $R_1 k = (\cos 1, \sin 1)$, and their dot product is
# $\cos 3 \cos 1 + \sin 3 \sin 1 = \cos(3 - 1) = \cos 2 \approx -0.4161$, the same as for
# $i = 103$, $j = 101$.
#
# The cell builds $R_p$ as a dense $D \times D$ matrix in tinype's layout and compares $R_p x$ with
# `tinype.positions.apply_rope`, then computes both sides of the identity on random vectors.
# A `[NO ]` would mean that tinype's rotation is not the matrix derived here (a sign or a layout
# error), or, for the first check, that the quoted lines have changed in tinype's source.

# %%
heading("4.2 RoPE")
quoted = "    ya = a * cos - b * sin\n    yb = b * cos + a * sin"
claim("the quoted lines are tinype.reference.apply_rotary's", source_has(tinype.reference, quoted))
D = 16
inv, _ = positions.rope_inv_freq(D)
agree("inv_freq = 10000^(-2k/D)", 10000.0 ** (-2 * np.arange(D // 2) / D), inv)


def rope_matrix(p, theta, D):
    """Dense R_p in the rotate-half layout: pair k is channels (k, k + D/2)."""
    h, Rp = D // 2, np.zeros((D, D))
    for kk, t in enumerate(theta):
        c, s = np.cos(p * t), np.sin(p * t)
        Rp[kk, kk], Rp[kk, kk + h], Rp[kk + h, kk], Rp[kk + h, kk + h] = c, -s, s, c
    return Rp


x = rng.normal(size=(5, D))
ps = np.array([0.0, 1.0, 3.0, 50.0, 1000.0])
agree("R_p x (dense matrix) = apply_rope at 5 positions", np.stack([rope_matrix(p, inv, D) @ x[n] for n, p in enumerate(ps)]),
      positions.apply_rope(x[:, None, :].transpose(1, 0, 2), ps, inv)[0])
one = positions.apply_rope(np.array([[1.0, 0.0]]), np.array([3.0]), np.array([1.0]))[0] @ \
    positions.apply_rope(np.array([[1.0, 0.0]]), np.array([1.0]), np.array([1.0]))[0]
agree("worked example: (R_3 q).(R_1 k) = cos 2 for q = k = (1, 0)", np.cos(2.0), one)
q, kv = rng.normal(size=D), rng.normal(size=D)
pairs = [(5, 2), (105, 102), (1005, 1002), (2, 5), (40, 40)]
lhs = [positions.apply_rope(q[None], np.array([float(i)]), inv)[0] @ positions.apply_rope(kv[None], np.array([float(j)]), inv)[0]
       for i, j in pairs]
rhs = [q @ rope_matrix(j - i, inv, D) @ kv for i, j in pairs]
agree("(R_i q).(R_j k) = q . R_{j-i} k at (i, j) = (5,2) (105,102) (1005,1002) (2,5) (40,40)", rhs, lhs, tol=1e-9)
print(f"  the three pairs at offset j - i = -3 give {lhs[0]:.6f}, {lhs[1]:.6f}, {lhs[2]:.6f}")

# %% [markdown]
# The figure shows the rotation table $\cos(p\,\theta_k)$ (left; pair 0 turns once every $2\pi$
# positions, the last pair has not finished a tenth of a turn after 256 positions) and the logit
# $(R_i q)^\top (R_j k)$ for one random $q$, $k$ as a function of the offset, computed from two
# different starting positions $i$: the curves lie on top of each other, which is the identity
# above seen in a picture.

# %%
pp = np.arange(256.0)
cos_tab, _ = positions.rope_tables(pp, inv)
offs = np.arange(-60, 61)
fig, axes = plt.subplots(1, 2, figsize=(13, 4))
im = axes[0].imshow(cos_tab.T, aspect="auto", cmap="RdBu", vmin=-1, vmax=1, origin="lower")
axes[0].set(title=f"RoPE rotation table, D = {D}", xlabel="position p", ylabel="pair k (theta_k = 10000^(-2k/D))")
fig.colorbar(im, ax=axes[0], label="cos(p theta_k)")
for start, style in [(100, "-"), (700, "--")]:
    qr = positions.apply_rope(q[None], np.array([float(start)]), inv)[0]
    kr = positions.apply_rope(np.tile(kv, (len(offs), 1)), start + offs.astype(float), inv)
    axes[1].plot(offs, kr @ qr, style, label=f"query at i = {start}")
axes[1].set(title="(R_i q).(R_j k) depends on j - i only", xlabel="offset j - i (positions)", ylabel="logit q.k (no unit)")
axes[1].legend()
save(fig, "rope.png")

# %% [markdown]
# ### 4.2.1 Rotate-half and interleaved layouts
#
# Which two channels form "pair $k$"? The RoFormer paper pairs neighbours, $(x_{2k}, x_{2k+1})$
# (interleaved). Hugging Face transformers, and tinype by default, pair the two halves,
# $(x_k, x_{k + D/2})$ (rotate-half: $x\cos + \mathrm{rotate\_half}(x)\sin$ with
# $\mathrm{rotate\_half}(x) = (-x_{D/2:}, x_{:D/2})$). The two are the same rotation after a
# permutation $\pi$ of the channels:
#
# $$
# \mathrm{rope}_\text{half}(x) = \pi^{-1}\big(\mathrm{rope}_\text{interleaved}(\pi(x))\big),
# \qquad \pi(x) = (x_0, x_{D/2}, x_1, x_{D/2+1}, \dots, x_{D/2-1}, x_{D-1}) .
# $$
#
# Since a permutation applied to both $q$ and $k$ leaves $q^\top k$ unchanged, a model trained in
# one layout is the model of the other layout with the columns of $W_q$ and $W_k$ permuted: the
# choice matters only when loading someone else's weights. A `[NO ]` here would mean the two
# layouts of `apply_rope` pair different channels than stated.

# %%
perm = np.stack([np.arange(D // 2), np.arange(D // 2) + D // 2], axis=1).ravel()   # pi: 0, D/2, 1, D/2+1, ...
xs = rng.normal(size=(1, 6, D))
pos6 = np.arange(6.0) * 3
half_out = positions.apply_rope(xs, pos6, inv)
inter_out = positions.apply_rope(xs[..., perm], pos6, inv, interleaved=True)
agree("rope_half(x) = pi^-1(rope_interleaved(pi(x)))", half_out, inter_out[..., np.argsort(perm)])
print(f"  pi for D = {D}: {perm.tolist()}")

# %% [markdown]
# ### 4.2.2 RoPE backward
#
# The forward is linear in $x$: $y = R_p x$. For a scalar loss $L$ with upstream gradient
# $g = \partial L / \partial y$, the chain rule gives $\partial L/\partial x = R_p^\top g$, and by
# §4.2 $R_p^\top = R_{-p}$:
#
# $$
# \frac{\partial L}{\partial x} = R_p^\top \frac{\partial L}{\partial y}
# = R(-p\theta)\,\frac{\partial L}{\partial y},
# \qquad
# \begin{pmatrix} da \\ db \end{pmatrix} =
# \begin{pmatrix} \cos\phi & \sin\phi \\ -\sin\phi & \cos\phi \end{pmatrix}
# \begin{pmatrix} da' \\ db' \end{pmatrix} .
# $$
#
# So the backward is the same kernel with $\sin$ negated: tinype's `Rotary.rotate_backward` calls
# `kernels.apply_rotary(dq, cq, -sq, ...)`. An attention factor (YaRN's, §4.11) multiplies
# $\cos$ and $\sin$ alike and passes through unchanged, since $(cR)^\top = cR^\top$.
#
# The check differentiates $L = \sum (y_q \odot g_q) + \sum (y_k \odot g_k)$ with respect to every
# entry of $q$ and $k$ by central differences, $(L(x + h) - L(x - h)) / 2h$ in float64 with
# $h = 10^{-5}$ (`tinype.gradcheck.numerical_gradient`), and compares with `rotate_backward`; the
# relative error $\lVert a - n\rVert / \max(\lVert a\rVert, \lVert n\rVert)$ of a correct backward is
# around $10^{-10}$, and the check asks for $10^{-7}$. It also confirms that the backward equals
# the forward rotation at negated positions. A `[NO ]` would mean a wrong sign in the backward
# (the classic mistake: returning $R_p g$ instead of $R_p^\top g$).

# %%
cfg = tinype.ModelConfig(d_model=32, n_head=2, T_train=8, pe="rope", dtype="float64")
rope = positions.get("rope", base=10000.0)
rope.setup(cfg)
qq, kk2 = rng.normal(size=(1, 2, 8, 16)), rng.normal(size=(1, 2, 8, 16))
gq, gk = rng.normal(size=qq.shape), rng.normal(size=kk2.shape)
pos8 = np.arange(8.0) + 3.0


def loss_qk():
    (yq, yk), _ = rope.rotate(qq, kk2, pos8)
    rope._memo = None                                    # the tables are cached per positions array
    return np.sum(yq * gq) + np.sum(yk * gk)


_, cache = rope.rotate(qq, kk2, pos8)
dq, dk = rope.rotate_backward(gq, gk, cache)
nq = gradcheck.numerical_gradient(loss_qk, qq)
nk = gradcheck.numerical_gradient(loss_qk, kk2)
eq, ek = gradcheck.rel_error(dq, nq), gradcheck.rel_error(dk, nk)
claim("rotate_backward matches central differences for q and k", max(eq, ek) < 1e-7,
      f"relative errors {eq:.1e} (q), {ek:.1e} (k)")
agree("the backward is the rotation by -theta", positions.apply_rope(gq, -pos8, rope.frequencies(8)[0]), dq)

# %% [markdown]
# ### 4.2.3 xPos: RoPE with a decay
#
# xPos (Sun et al. 2022) multiplies RoPE's rotation by a per-pair scale that grows for queries and
# shrinks for keys. With $\zeta_k = (2k + 0.4D)/(1.4D) < 1$ and a scale base $B = 512$,
#
# $$
# q'_i = \zeta^{\,i/B} \odot R_i q, \qquad k'_j = \zeta^{-j/B} \odot R_j k
# \quad\Longrightarrow\quad
# q_i'^\top k'_j = \sum_k \zeta_k^{(i - j)/B}\,\big[(R_i q)^\top (R_j k)\big]_{\text{pair } k} ,
# $$
#
# because in pair $k$ both channels of $q$ carry $\zeta_k^{i/B}$ and both of $k$ carry
# $\zeta_k^{-j/B}$. For $j \le i$ the factor $\zeta_k^{(i-j)/B} \le 1$ falls with distance: a
# built-in decay, strongest in the fast pairs (small $\zeta_k$). Only $i - j$ enters, so tinype
# (like torchscale) centres the exponents at $p - \lfloor T/2 \rfloor$, which keeps both scales
# near 1 for long windows and changes no logit. Worked example: $D = 16$, pair 0,
# $\zeta_0 = 6.4/22.4 = 0.2857$; at distance 512 that pair's contribution is multiplied by
# $0.2857$, at distance 64 by $0.2857^{1/8} = 0.855$.
#
# Checks: tinype's rotated $q'$ and $k'$ against ours, and a logit computed in a window of 16 and
# one of 64 (different centres) being equal. A `[NO ]` in the first would mean another $\zeta$,
# scale base or centre, or the query's and key's exponents swapped; in the second, that the
# centring leaks into the logits.

# %%
xp = positions.get("xpos")
xp.setup(cfg)
zeta = (np.arange(0, 16, 2) + 0.4 * 16) / (1.4 * 16)
pos16 = np.arange(16.0)
(xq, xk), _ = xp.rotate(qq[:, :, :1].repeat(16, 2), kk2[:, :, :1].repeat(16, 2), pos16)
sc = np.tile(zeta[None, :] ** ((pos16 - 8)[:, None] / 512), 2)                  # (T, D): pair k in k and k + D/2
inv16 = rope.frequencies(16)[0]
agree("xPos q' = zeta^(p'/512) R_p q and k' = zeta^(-p'/512) R_p k",
      np.concatenate([positions.apply_rope(qq[:, :, :1].repeat(16, 2), pos16, inv16) * sc,
                      positions.apply_rope(kk2[:, :, :1].repeat(16, 2), pos16, inv16) / sc]),
      np.concatenate([xq, xk]), tol=1e-12)
(xq64, xk64), _ = xp.rotate(qq[:, :, :1].repeat(64, 2), kk2[:, :, :1].repeat(64, 2), np.arange(64.0))
agree("xPos logit q'_10 . k'_3 is the same in windows of 16 and 64 (centring cancels)",
      xq[0, 0, 10] @ xk[0, 0, 3], xq64[0, 0, 10] @ xk64[0, 0, 3], tol=1e-12)


# %% [markdown]
# ## 4.3 ALiBi slopes
#
# **The idea.** ALiBi (Press et al. 2022) adds no vector anywhere. Each head $h$ subtracts from
# every logit a penalty proportional to the distance between query and key,
#
# $$
# s_{h,i,j} = \frac{q_i^\top k_j}{\sqrt{D}} - m_h\,(i - j), \qquad j \le i ,
# $$
#
# (the penalty is not divided by $\sqrt{D}$). Nothing depends on the absolute position, and the
# penalty for a distance the model never saw is just a larger number of the same kind: this is why
# ALiBi extrapolates. The slopes form a geometric sequence: for $H$ a power of two,
#
# $$
# m_h = 2^{-8h/H} = \big(2^{-8/H}\big)^h, \qquad h = 1, \dots, H .
# $$
#
# **Worked example, 8 heads.** $2^{-8/8} = 1/2$, so the slopes are
# $1/2, 1/4, 1/8, 1/16, 1/32, 1/64, 1/128, 1/256$: head 1 looks at the last few tokens, head 8 is
# almost flat over hundreds. The bias row of the query at position $i = 3$ over the keys
# $j = 0, 1, 2, 3$ is $-m_h (3 - j)$:
#
# $$
# \text{head 1 } (m = \tfrac12):\ (-1.5,\ -1,\ -0.5,\ 0), \qquad
# \text{head 8 } (m = \tfrac1{256}):\ (-\tfrac{3}{256},\ -\tfrac{2}{256},\ -\tfrac{1}{256},\ 0) .
# $$
#
# **12 heads: not monotone, by design.** When $H$ is not a power of two, the authors' `get_slopes`
# takes the $2^{\lfloor \log_2 H \rfloor} = 8$ slopes of 8 heads, then fills the remaining
# $12 - 8 = 4$ heads with every other slope of the 16-head sequence $2^{-8h/16} = 2^{-h/2}$,
# starting with the first: $h = 1, 3, 5, 7$, i.e.
# $2^{-1/2}, 2^{-3/2}, 2^{-5/2}, 2^{-7/2} \approx 0.707, 0.354, 0.177, 0.088$. These are exactly the
# geometric midpoints between $1$ and $1/2$, $1/2$ and $1/4$, ... so the set of slopes stays evenly
# spread in log scale and the first 8 heads keep the values of an 8-head model; the price is that
# the sequence jumps back up at head 9. ($2^{-8h/12}$ would be a different, monotone set.)
#
# The checks: our implementation of the geometric formula and of the interleaving (written from
# the description above) against `alibi_slopes` for 1 to 16 heads; the query-3 row by hand
# against the bias that tinype's attention kernel really adds. For that we call
# `kernels.attention_forward` with zero queries and keys (so the logits are the bias alone) and the
# identity matrix as values (so the output row of query $i$ *is* its attention row $p_i$); the
# kernel also returns each row's log-sum-exp, and $\ln p_{ij} + \mathrm{lse}_i$ gives the logits
# back. A `[NO ]` in the first would mean tinype departed from the authors' slopes; in the second,
# that the attention kernel indexes the bias table by something other than $i - j$.

# %%
heading("4.3 ALiBi slopes")


def our_slopes(n):
    if (n & (n - 1)) == 0:
        return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]
    low = 1 << (n.bit_length() - 1)                        # the power of two below n
    return our_slopes(low) + our_slopes(2 * low)[0::2][: n - low]


worst = max(np.max(np.abs(np.array(our_slopes(n)) - positions.alibi_slopes(n))) for n in range(1, 17))
claim("our slopes = alibi_slopes for 1..16 heads", worst < 1e-15, f"max |ours - tinype| = {worst:.1e}")
print("  8 heads :", " ".join(f"1/{1 / m:.0f}" for m in positions.alibi_slopes(8)))
print("  12 heads:", " ".join(f"{m:.4f}" for m in positions.alibi_slopes(12)),
      f"(monotone: {bool(np.all(np.diff(positions.alibi_slopes(12)) < 0))})")
print("  2^(-8h/12) instead would be:", " ".join(f"{2 ** (-8 * h / 12):.4f}" for h in range(1, 13)))
m8 = positions.alibi_slopes(8)
alibi_table = kernels.alibi_table(m8, 4, True)                    # (H, T) over distances 0..3
zeros, eye = np.zeros((1, 8, 4, 4)), np.broadcast_to(np.eye(4), (1, 8, 4, 4)).copy()
p_att, lse_att = kernels.attention_forward(zeros, zeros, eye, 1.0, True, alibi_table)   # out = p @ I = p
logits = np.log(p_att[:, :, 3, :]) + lse_att[:, :, 3, None]                          # query 3's logits
agree("query 3's bias row, head 1: (-1.5, -1, -0.5, 0)", [-1.5, -1.0, -0.5, 0.0], logits[0, 0], tol=1e-12)
agree("query 3's bias row, all 8 heads: -m_h (3 - j)", -m8[:, None] * (3 - np.arange(4))[None, :], logits[0], tol=1e-12)

# %% [markdown]
# The figure: the penalty against distance for each of the 8 heads (the legend gives each head's
# slope), and the slopes against the head index for 8, 12 and 16 heads (the 12-head model's first
# 8 slopes sit inside the 8-head model's hollow circles; its jump at head 9 is the interleaving).

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4))
dist = np.arange(0, 65)
for m in m8:
    axes[0].plot(dist, -m * dist, label=f"m = 1/{1 / m:.0f}")
axes[0].set(title="ALiBi bias, 8 heads", xlabel="distance i - j (positions)", ylabel="bias added to the logit (logit units)")
axes[0].legend(fontsize=8, ncol=2, title="slope m_h")
for n, mk, ms, ls in [(8, "o", 11, "-"), (12, "s", 6, "--"), (16, "^", 6, ":")]:
    axes[1].plot(np.arange(1, n + 1), positions.alibi_slopes(n), marker=mk, markersize=ms, linestyle=ls,
                 markerfacecolor="none" if n == 8 else None, label=f"{n} heads")
axes[1].set_yscale("log", base=2)
axes[1].set(title="ALiBi slopes (12 heads: get_slopes interleaving)", xlabel="head h", ylabel="slope m_h (log2 scale)")
axes[1].legend()
save(fig, "alibi.png")

# %% [markdown]
# ## 4.4 T5 buckets
#
# **The idea.** T5 (Raffel et al. 2020) learns one scalar per head for each *bucket* of distances
# and adds it to the logits. Small distances get a bucket each (the model can tell 3 from 4);
# larger ones share buckets whose width grows geometrically (it need not tell 100 from 101); every
# distance beyond `max_distance` lands in the last bucket (which is why T5 runs at any length and
# cannot tell 200 from 2000).
#
# **The formula** (transformers' `_relative_position_bucket`, causal case). With the distance
# $n = \max(i - j, 0)$, $B$ buckets (32), $n_\text{exact} = B/2$ (16) and $n_\text{max}$ (128):
#
# $$
# \mathrm{bucket}(n) =
# \begin{cases}
#   n & n < n_\text{exact} \\
#   \min\!\Big(B - 1,\ n_\text{exact} + \Big\lfloor
#     \dfrac{\ln(n / n_\text{exact})}{\ln(n_\text{max} / n_\text{exact})}\,(B - n_\text{exact})
#   \Big\rfloor\Big) & n \ge n_\text{exact}
# \end{cases}
# $$
#
# Derivation of the second line: we want the $B - n_\text{exact}$ remaining buckets to cover the
# range $[n_\text{exact}, n_\text{max})$ evenly *in $\ln n$*. The fraction of that log-range below
# $n$ is $\ln(n/n_\text{exact}) / \ln(n_\text{max}/n_\text{exact})$; multiplying by the number of
# buckets and rounding down gives the bucket's offset after the exact ones. At $n = n_\text{max}$ the
# fraction is 1, i.e. bucket $B$, which the $\min$ clips to the last bucket $B - 1$. Bidirectional
# attention (the classifier) first halves $B$, gives keys after the query ($j > i$) the upper half,
# and buckets $|i - j|$ in each half the same way.
#
# **Worked example, distance 70** (causal, $B = 32$, $n_\text{max} = 128$):
#
# $$
# \ln\frac{70}{16} = 1.4759, \quad \ln\frac{128}{16} = \ln 8 = 2.0794, \quad
# \frac{1.4759}{2.0794} \times 16 = 0.70977 \times 16 = 11.356, \quad
# 16 + \lfloor 11.356 \rfloor = 27 .
# $$
#
# Bidirectional, a key 70 positions *before* the query: $B = 16$, $n_\text{exact} = 8$,
# $\ln(70/8) / \ln(128/8) \times 8 = (2.1691 / 2.7726) \times 8 = 6.259$, bucket $8 + 6 = 14$; 70
# positions *after* it: $14 + 16 = 30$.
#
# The cell follows these steps in NumPy (float64) and compares with
# `tinype.positions.t5_relative_bucket`, whose argument is `relative_position` $= j - i$ (key minus
# query, so the past is negative). It then compares our formula with tinype at every distance from
# 0 to 4095. tinype takes the logarithm in float32 as transformers does; a float64 formula could in
# principle round a distance sitting exactly on a bucket boundary differently, and the check would
# then print `[NO ]` with the distance that differs. Any other `[NO ]` would be a real departure
# from T5's bucketing.

# %%
heading("4.4 T5 buckets")
n = 70
frac = np.log(n / 16) / np.log(128 / 16)
ours70 = min(31, 16 + int(np.floor(frac * 16)))
print(f"  ln(70/16) = {np.log(70 / 16):.4f}, ln 8 = {np.log(8):.4f}, x 16 = {frac * 16:.3f}, bucket {ours70}")
t70 = int(positions.t5_relative_bucket(np.array([-70]), bidirectional=False)[0])
claim("distance 70 (causal): bucket 27 by hand = tinype", ours70 == 27 == t70, f"ours {ours70}, tinype {t70}")
tb = positions.t5_relative_bucket(np.array([-70, 70]), bidirectional=True).tolist()
claim("distance 70 bidirectional: 14 before the query, 30 after it", tb == [14, 30], f"tinype {tb}")


def our_bucket(n, B=32, exact=16, nmax=128):
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore"):
        big = exact + np.floor(np.log(n / exact) / np.log(nmax / exact) * (B - exact))
    return np.where(n < exact, n, np.minimum(B - 1, big)).astype(np.int64)


alln = np.arange(4096)
tin = positions.t5_relative_bucket(-alln, bidirectional=False)
ob = our_bucket(alln)
bad = alln[ob != tin]
claim("our formula = tinype at every distance 0..4095", bad.size == 0,
      "all equal" if bad.size == 0 else f"{bad.size} differ, first at distance {bad[0]}")
starts = [int(alln[tin == bk][0]) for bk in range(16, 32)]
print("  first distance of buckets 16..31:", starts)

# %%
fig, ax = plt.subplots(figsize=(8, 4))
ax.step(alln[:300], tin[:300], where="post", label="causal, 32 buckets, max_distance 128")
ax.plot([70], [t70], "o", color="tab:red", label=f"distance 70 -> bucket {t70}")
ax.axvline(16, color="gray", linestyle=":", label="16: end of the exact buckets")
ax.axvline(128, color="gray", linestyle="--", label="128: max_distance, last bucket from here on")
ax.set(title="T5 relative position buckets", xlabel="distance i - j (positions)", ylabel="bucket id")
ax.legend(fontsize=8)
save(fig, "t5_buckets.png")

# %% [markdown]
# ## 4.5 KERPLE
#
# **The idea.** KERPLE (Chi et al. 2022) generalises ALiBi's straight line to a learned curve of the
# distance. A bias $b(i - j)$ added inside a softmax acts like a kernel between positions; the paper
# asks for *conditionally positive definite* (CPD) kernels, which are allowed to be negative
# because a softmax ignores a constant added to a whole row: if $\tilde k$ is CPD, $c + \tilde k$
# is positive definite for a large enough constant $c$, and $c$ cancels in the softmax. Two CPD
# families, each with two learned parameters per head $r_1, r_2 > 0$:
#
# $$
# \text{logarithmic:}\quad b_h(i - j) = -r_{1,h}\,\ln\!\big(1 + r_{2,h}\,|i - j|\big),
# \qquad
# \text{power:}\quad b_h(i - j) = -r_{1,h}\,|i - j|^{\,r_{2,h}},\ \ 0 < r_2 \le 2 .
# $$
#
# $r_1$ sets the strength of the penalty, $r_2$ its shape: the power kernel with $r_2 = 1$ is ALiBi
# with slope $r_1$; the logarithmic kernel grows ever more slowly, so far tokens are penalised
# little more than medium ones. tinype keeps both parameters at least 0.01 (the authors clamp
# them after each step; tinype's forward uses $\max(r, 0.01)$, whose gradient is zero below the
# floor) and $r_2 \le 2$ for the power kernel (beyond 2, $-|x|^{r_2}$ is no longer CPD).
#
# **Worked example** (logarithmic, $r_1 = 2$, $r_2 = 0.5$, distance 6):
# $-2 \ln(1 + 0.5 \cdot 6) = -2 \ln 4 = -2.7726$. Power, $r_1 = 0.5$, $r_2 = 1.5$, distance 4:
# $-0.5 \cdot 4^{1.5} = -4$.
#
# The check sets four heads' parameters (one of them below the floor, to test the clamp), asks
# tinype's `kerple_log` and `kerple_power` encodings for their bias tables over distances, and
# compares them with the formulas. A `[NO ]` would mean a different kernel or a missing floor.

# %%
heading("4.5 KERPLE")
cfg4 = tinype.ModelConfig(d_model=64, n_head=4, T_train=64, dtype="float64")
r1 = np.array([2.0, 1.0, 0.5, 0.005])
r2 = np.array([0.5, 1.0, 1.5, 0.8])
dist64 = np.arange(64.0)
biases = {}
for name, formula in [("kerple_log", lambda r1, r2: -r1[:, None] * np.log1p(r2[:, None] * dist64)),
                      ("kerple_power", lambda r1, r2: -r1[:, None] * dist64[None, :] ** r2[:, None])]:
    pe = positions.get(name)
    pe.setup(cfg4)
    table_t = pe.bias({"kerple_r1": r1.copy(), "kerple_r2": r2.copy()}, 64, None)[0]   # (H, T) over distances
    biases[name] = table_t
    agree(f"{name}: -r1 g(|i - j|; r2), head 4's r1 = 0.005 floored to 0.01",
          formula(np.maximum(r1, 0.01), np.maximum(r2, 0.01)), table_t)
print(f"  worked examples: log kernel at distance 6 (r1=2, r2=0.5): {biases['kerple_log'][0, 6]:.4f}; "
      f"power kernel at distance 4 (r1=0.5, r2=1.5): {biases['kerple_power'][2, 4]:.4f}")

# %% [markdown]
# ## 4.6 Sandwich
#
# **The idea.** Sandwich (Chi et al. 2023) notices that the sinusoidal encoding already contains a
# relative bias, hidden in the dot product of two of its vectors, and adds that dot product to the
# logits directly. Take sinusoidal vectors of width $d'$ with frequencies
# $\omega_k = 10000^{-2k/d'}$ (the paper numbers them $k = 1, \dots, d'/2$). Their dot product is,
# pair by pair, the cosine of a difference:
#
# $$
# p_i^\top p_j = \sum_{k=1}^{d'/2} \big[\sin(i\omega_k)\sin(j\omega_k) + \cos(i\omega_k)\cos(j\omega_k)\big]
# = \sum_{k=1}^{d'/2} \cos\!\big((i - j)\,\omega_k\big),
# $$
#
# using $\cos(a - b) = \cos a\cos b + \sin a \sin b$. It depends on $i - j$ only, it equals $d'/2$
# at distance 0 and, for the distances that matter, it decreases with distance (slow pairs have not
# turned much, fast ones average out). Sandwich shifts it to be 0 at distance 0 and divides it per
# head by ALiBi-like factors $8h/H$:
#
# $$
# b_h(i - j) = \frac{\sum_{k=1}^{d'/2} \cos\!\big((i - j)\,\omega_k\big) - d'/2}{8h/H},
# \qquad h = 1, \dots, H .
# $$
#
# Note the frequencies: with $k$ starting at 1, pair $k$ uses $10000^{-2k/d'}$, one step slower than
# the sinusoidal table's pair $k$ ($10000^{-2k/d}$ with $k$ from 0), as in the paper and the
# authors' code.
#
# **Worked example** ($d' = 4$, distance 1, one head, $H = 1$, so the divisor is 8): $\omega_1 =
# 10000^{-1/2} = 0.01$, $\omega_2 = 10000^{-1} = 0.0001$, and
# $b(1) = (\cos 0.01 + \cos 0.0001 - 2) / 8 = (-0.00005 - 0.000000005)/8 \approx -6.25 \times 10^{-6}$.
#
# The check builds the sin/cos vectors explicitly and takes their dot products (the left side of
# the derivation, not the cosine formula), then compares with tinype's `sandwich` bias. A `[NO ]`
# would mean that tinype's table is not the shifted, scaled dot product (a wrong frequency index or
# head scale).

# %%
heading("4.6 Sandwich")
sw = positions.get("sandwich")
sw.setup(cfg4)
dprime, H4 = cfg4.d_model, cfg4.n_head
w_sw = 10000.0 ** (-2 * np.arange(1, dprime // 2 + 1) / dprime)
vec = lambda p: np.concatenate([np.sin(p * w_sw), np.cos(p * w_sw)])           # any fixed channel order
dots = np.array([vec(100.0) @ vec(100.0 - dd) for dd in dist64])                # query at 100, keys behind it
ours_sw = (dots[None, :] - dprime / 2) / (8 * np.arange(1, H4 + 1) / H4)[:, None]
agree("Sandwich bias = (p_i . p_j - d'/2) / (8h/H), from explicit sin/cos vectors", ours_sw,
      sw.bias({}, 64, None)[0], tol=1e-10)
sw1 = positions.get("sandwich", dim=4)
sw1.setup(tinype.ModelConfig(d_model=4, n_head=1, T_train=8, dtype="float64"))
print(f"  worked example d' = 4, distance 1, H = 1: {sw1.bias({}, 8, None)[0][0, 1]:.4e} "
      f"(by hand {(np.cos(0.01) + np.cos(1e-4) - 2) / 8:.4e})")

# %% [markdown]
# ## 4.7 FIRE
#
# **The idea.** FIRE (Li et al. 2023) learns the bias as a function, a small MLP $f_\theta$ from
# one number to one value per head, and makes the function's input independent of the length.
# It maps the distance through a log, $\psi(x) = \ln(c\,x + 1)$, and divides by the same map of the
# query's position, so every query's distances fall in $[0, 1]$ however long the input is:
#
# $$
# b_h(i, j) = f_\theta\!\left(\frac{\psi(i - j)}{\psi(\max(L, i))}\right)_h,
# \qquad \psi(x) = \ln(c\,x + 1),
# \qquad f_\theta(u) = W_2\,\mathrm{ReLU}(W_1 u + b_1) + b_2 .
# $$
#
# This is *progressive interpolation*: a query at position 1000 sees its keys spread over the same
# $[0, 1]$ as a query at position 64 did in training, so the MLP is never asked about an input
# outside the range it learned. The threshold $L$ (learned, initialised at $T_\text{train}$)
# keeps early queries from having their few distances stretched over the whole interval; $c$
# (learned, initialised at 0.1) sets how strongly the log compresses far distances. Unlike the
# biases above, FIRE's depends on $i$ and not only on $i - j$, so tinype builds it as a dense
# $(H, T, T)$ array.
#
# **Worked example** ($c = 0.1$, $L = 64$). Query 200, key 130: $\psi(70) = \ln 8 = 2.079$,
# $\psi(200) = \ln 21 = 3.045$, $u = 0.683$. Query 10, key 3: the denominator is
# $\psi(\max(64, 10)) = \psi(64) = \ln 7.4 = 2.001$ and $u = \psi(7)/2.001 = \ln 1.7 / 2.001 = 0.265$.
# Query 640, key 416 (ten times further, distance 224): $u = \ln 23.4 / \ln 65 = 0.755$.
#
# The check evaluates the MLP ourselves on the normalised distances, with the parameters of a fresh
# `fire` encoding (seeded), and compares with tinype's dense bias on the causal triangle. A `[NO ]`
# would mean a different normalisation (for example dividing by $\psi(i)$ without the threshold)
# or MLP.

# %%
heading("4.7 FIRE")
fire = positions.get("fire")
fire.setup(cfg4)
fp = fire.init_params(np.random.default_rng(1))
T = 80
dense = fire.bias(fp, T, None)[0]                                     # (H, T, T), lower triangle filled
ii, jj = np.tril_indices(T)
c_, L_ = abs(fp["fire_c"][0]), abs(fp["fire_L"][0])
u = np.log1p(c_ * (ii - jj)) / np.log1p(c_ * np.maximum(L_, ii))
mlp = np.maximum(u[:, None] * fp["fire_w1"][0] + fp["fire_b1"], 0.0) @ fp["fire_w2"] + fp["fire_b2"]
agree("FIRE bias = f(psi(i - j) / psi(max(L, i))) on the causal triangle", mlp.T, dense[:, ii, jj], tol=1e-10)
uu = lambda i, j: np.log1p(0.1 * (i - j)) / np.log1p(0.1 * max(64, i))
print(f"  worked examples u(200,130) = {uu(200, 130):.3f}, u(10,3) = {uu(10, 3):.3f}, u(640,416) = {uu(640, 416):.3f}")

# %% [markdown]
# The figure compares the four relative biases of §4.3-§4.7 as functions of the distance (for
# FIRE: of the query position and the distance, one head, untrained MLP, so its shape is random
# but its normalisation is visible: rows for later queries are stretched versions of earlier ones).

# %%
fig, axes = plt.subplots(1, 4, figsize=(18, 4))
for hh in range(4):
    lab = f"r1={max(r1[hh], 0.01):g}, r2={r2[hh]:g}"
    axes[0].plot(dist64, biases["kerple_log"][hh], label=lab)
    axes[1].plot(dist64, biases["kerple_power"][hh], label=lab)
axes[0].set(title="KERPLE log: -r1 ln(1 + r2 d)", xlabel="distance d = i - j (positions)", ylabel="bias added to the logit (logit units)")
axes[1].set(title="KERPLE power: -r1 d^r2", xlabel="distance d = i - j (positions)", ylabel="bias added to the logit (logit units)")
for ax in axes[:2]:
    ax.legend(fontsize=8, title="parameters")
sw_tab = sw.bias({}, 64, None)[0]
for hh in range(H4):
    axes[2].plot(dist64, sw_tab[hh], label=f"divisor 8h/H = {8 * (hh + 1) / H4:g}")
axes[2].set(title="Sandwich, d' = 64", xlabel="distance d = i - j (positions)", ylabel="bias added to the logit (logit units)")
axes[2].legend(fontsize=8)
show = np.where(np.tril(np.ones((T, T))) > 0, dense[0], np.nan)
im = axes[3].imshow(show, aspect="auto", cmap="viridis", origin="upper")
axes[3].set(title="FIRE, head 1, untrained MLP (T = 80)", xlabel="key position j", ylabel="query position i")
fig.colorbar(im, ax=axes[3], label="bias added to the logit (logit units)")
save(fig, "relative_biases.png")

# %% [markdown]
# ## 4.8 Position interpolation
#
# RoPE's logits depend on the angles $p\,\theta_k$. A model trained at length $T_\text{train}$
# has seen the angles $[0, T_\text{train})\cdot\theta_k$ only; at length $L = s\,T_\text{train}$
# the slow pairs reach angles they never saw. The next five sections are five answers, each a
# change to the frequency vector $\theta$ (the `inv_freq` of `rope_inv_freq(D, base, scaling)`).
#
# **Position interpolation** (Chen et al. 2023) squeezes the positions back into the trained range,
# $p \mapsto p / s$, which for the angles is the same as dividing every frequency by $s$:
#
# $$
# \theta'_k = \frac{\theta_k}{s}, \qquad p\,\theta'_k = \frac{p}{s}\,\theta_k,
# \qquad 0 \le \frac{p}{s} < T_\text{train} \ \text{ for } p < s\,T_\text{train} .
# $$
#
# No angle is new, but neighbouring positions now differ by $1/s$ of a training step: the fast
# pairs, which told neighbours apart, lose resolution. That is why PI needs fine-tuning (without
# it, the lab finds it the worst RoPE variant). Worked example: $s = 4$, $D = 16$: pair 0 turns
# $1/4$ radian per position instead of 1.
#
# Checks: our $\theta/s$ against `rope_inv_freq(..., {"rope_type": "linear", "factor": s})`, and
# rotating at position $p$ with the scaled frequencies against rotating at $p/s$ with the plain
# ones. A `[NO ]` would mean tinype's linear scaling is not interpolation of positions.

# %%
heading("4.8-4.12 RoPE scalings as changes to the frequencies")
Dh, Tt, s = 64, 64, 4.0
base = 10000.0
theta = base ** (-np.arange(0, Dh, 2) / Dh)                          # (D/2,) plain RoPE
pi_inv, pi_af = positions.rope_inv_freq(Dh, base, {"rope_type": "linear", "factor": s})
agree("PI: theta / s", theta / s, pi_inv)
xr = rng.normal(size=(1, 10, Dh))
pr = np.arange(10.0) * 37
agree("PI: rotating at p with theta/s = rotating at p/s with theta",
      positions.apply_rope(xr, pr / s, theta), positions.apply_rope(xr, pr, pi_inv), tol=1e-12)

# %% [markdown]
# ## 4.9 NTK-aware scaling
#
# **The idea** (bloc97 2023). Keep the fast pairs as they are (they resolve neighbours and have
# seen every phase in training) and stretch only the slow ones, by changing the *base* rather than
# the positions. Ask for two things: the highest frequency $\theta_0$ stays, and the lowest,
# $\theta_{D/2-1}$, is divided by $s$ exactly as PI would.
#
# **Derivation.** $\theta_k = \text{base}^{-2k/D}$, so $\theta_0 = \text{base}^0 = 1$ for every base:
# the first condition holds whatever the new base $b'$ is. The lowest frequency is
# $\theta_{D/2-1} = \text{base}^{-(D-2)/D}$. Require
#
# $$
# b'^{-(D-2)/D} = \frac{\text{base}^{-(D-2)/D}}{s}
# \iff b'^{(D-2)/D} = s\,\text{base}^{(D-2)/D}
# \iff b' = \text{base}\cdot s^{D/(D-2)} .
# $$
#
# In between, $\theta'_k = \theta_k\, s^{-2k/(D-2)}$: pair $k$ is divided by $s^{2k/(D-2)}$, a
# factor that grows geometrically from 1 (pair 0) to $s$ (last pair): interpolation for the slow
# pairs, extrapolation for the fast ones, a smooth blend between. Worked example: $D = 64$,
# $s = 4$: $b' = 10000 \cdot 4^{64/62} = 10000 \cdot 4.1829 = 41{,}829$.
#
# Checks: our $b'$ inside the plain formula against `rope_inv_freq(..., {"rope_type": "ntk"})`,
# and the two conditions it was derived from. A `[NO ]` would mean a different exponent (e.g.
# $D/(D-2)$ replaced by 1, which would stretch the lowest frequency by less than $s$).

# %%
b_ntk = base * s ** (Dh / (Dh - 2))
ntk_inv, _ = positions.rope_inv_freq(Dh, base, {"rope_type": "ntk", "factor": s})
agree(f"NTK: base' = base s^(D/(D-2)) = {b_ntk:,.0f}", b_ntk ** (-np.arange(0, Dh, 2) / Dh), ntk_inv)
agree("NTK: the highest frequency is unchanged, the lowest divided by s", [theta[0], theta[-1] / s],
      [ntk_inv[0], ntk_inv[-1]], tol=1e-15)

# %% [markdown]
# ## 4.10 Dynamic NTK
#
# Static NTK picks $s$ once. Dynamic NTK (transformers' `dynamic` rope type) recomputes it from the
# length $L$ of the current input, so that inputs within the training length run plain RoPE
# exactly and longer ones are stretched just enough:
#
# $$
# s(L) = \max\!\Big(1,\ f\,\frac{L}{T_\text{train}} - (f - 1)\Big),
# \qquad \text{base}'(L) = \text{base}\cdot s(L)^{D/(D-2)} ,
# $$
#
# with a configured factor $f$ (tinype's `rope_dynamic` uses $f = 2$). At $L = T_\text{train}$,
# $s = f - (f - 1) = 1$: no change; beyond, $s$ grows linearly with slope $f / T_\text{train}$.
# Worked example, $f = 2$, $T_\text{train} = 64$, $L = 256$: $s = 2 \cdot 4 - 1 = 7$, more than the
# $L/T_\text{train} = 4$ a static NTK would use. During generation $L$ grows token by token, so the
# frequencies change as the text grows (DESIGN.md notes the cache consequence: keys must be kept
# unrotated).
#
# Checks at $L = 32, 64, 100, 256$: our formula against `rope_inv_freq(..., {"rope_type":
# "dynamic", "factor": 2, "original_max_position_embeddings": 64}, seq_len=L)`, and the
# `rope_dynamic` encoding's frequencies at $L$. A `[NO ]` would mean another $s(L)$ (e.g. $L/T$
# without the factor).

# %%
f_dyn = 2.0
worst_dyn = 0.0
for L in (32, 64, 100, 256):
    sL = max(1.0, f_dyn * L / Tt - (f_dyn - 1))
    ours_dyn = (base * sL ** (Dh / (Dh - 2))) ** (-np.arange(0, Dh, 2) / Dh)
    tin_dyn, _ = positions.rope_inv_freq(Dh, base, {"rope_type": "dynamic", "factor": f_dyn,
                                                    "original_max_position_embeddings": Tt}, seq_len=L)
    worst_dyn = max(worst_dyn, np.max(np.abs(ours_dyn - tin_dyn)))
claim("dynamic NTK: base (f L/T - (f-1))^(D/(D-2)) at L = 32, 64, 100, 256", worst_dyn < 1e-15,
      f"max |ours - tinype| = {worst_dyn:.1e}")
cfg256 = tinype.ModelConfig(d_model=4 * Dh, n_head=4, T_train=Tt, dtype="float64")
pes = {}
for name in ("rope", "rope_pi", "rope_ntk", "rope_dynamic", "rope_yarn", "rope_llama3"):
    pes[name] = positions.get(name)
    pes[name].setup(cfg256)
agree("the rope_dynamic encoding at L = 64 runs plain RoPE", theta, pes["rope_dynamic"].frequencies(64)[0])
sL = f_dyn * 256 / Tt - (f_dyn - 1)
agree(f"the rope_dynamic encoding at L = 256 uses s = {sL:g}",
      (base * sL ** (Dh / (Dh - 2))) ** (-np.arange(0, Dh, 2) / Dh), pes["rope_dynamic"].frequencies(256)[0])

# %% [markdown]
# ## 4.11 YaRN
#
# **The idea** (Peng et al. 2023, "NTK-by-parts"). Decide per pair, by its wavelength, whether to
# interpolate it (PI) or leave it (extrapolate), with a linear ramp between. The wavelength of pair
# $k$ is $\lambda_k = 2\pi/\theta_k = 2\pi\,\text{base}^{2k/D}$ and the number of full turns it
# makes within the training length is $r_k = T_\text{train}/\lambda_k$:
#
# - many turns ($r_k \ge \beta_\text{fast} = 32$): the model has seen every phase of this pair
#   many times; keep its frequency (extrapolate);
# - less than one turn ($r_k \le \beta_\text{slow} = 1$): longer inputs produce unseen angles;
#   divide its frequency by $s$ (interpolate);
# - in between: blend.
#
# **Where the bands start.** Solve $T_\text{train} / (2\pi\,\text{base}^{2k/D}) = r$ for $k$:
#
# $$
# \text{base}^{2k/D} = \frac{T_\text{train}}{2\pi r}
# \iff k(r) = \frac{D\,\ln\!\big(T_\text{train} / (2\pi r)\big)}{2 \ln \text{base}} .
# $$
#
# YaRN takes $k_\text{low} = \lfloor k(\beta_\text{fast}) \rfloor$ and
# $k_\text{high} = \lceil k(\beta_\text{slow}) \rceil$ (clipped to $[0, D-1]$), a ramp
# $\gamma_k = \mathrm{clip}\big((k - k_\text{low})/(k_\text{high} - k_\text{low}), 0, 1\big)$ and
#
# $$
# \theta'_k = (1 - \gamma_k)\,\theta_k + \gamma_k\,\frac{\theta_k}{s} .
# $$
#
# **The attention factor.** Interpolated attention is flatter (more keys look alike), so YaRN
# sharpens the logits by a temperature. tinype, like transformers, multiplies $\cos$ and $\sin$ by
#
# $$
# a(s) = 0.1 \ln s + 1 ,
# $$
#
# and since both $q$ and $k$ are rotated, every logit is multiplied by $a(s)^2$ (the paper's
# $1/t = a(s)^2$, i.e. $\sqrt{1/t} = 0.1\ln s + 1$).
#
# **Worked example: $D = 8$, $T_\text{train} = 64$, $s = 4$.** The four pairs have
# $\theta = (1, 0.1, 0.01, 0.001)$, wavelengths $\lambda = (6.28, 62.8, 628, 6283)$ positions and
# $r = (10.2, 1.02, 0.102, 0.0102)$ turns in 64 positions. Then
# $k(32) = 8\ln(64/(64\pi))/(2\ln 10^4) = 8 \cdot (-1.1447) / 18.421 = -0.497$, so
# $k_\text{low} = \lfloor -0.497 \rfloor = -1 \to 0$ after clipping, and
# $k(1) = 8 \ln(64/2\pi) / 18.421 = 8 \cdot 2.3210 / 18.421 = 1.008$, so $k_\text{high} = 2$. The
# ramp is $\gamma = (0, 0.5, 1, 1)$, which names the three bands:
#
# 1. the **extrapolation band**, pair 0 (wavelength 6.3, ten turns per training window): kept,
#    $\theta'_0 = 1$. By the bullets above, 10 turns is "in between" ($1 < 10 < 32$), but the edge
#    $k(32) = -0.497$ is rounded down to $k_\text{low} = 0$, where $\gamma = 0$;
# 2. the **ramp band**, pair 1 (wavelength 63, about one turn): halfway,
#    $\theta'_1 = 0.5 \cdot 0.1 + 0.5 \cdot 0.025 = 0.0625$;
# 3. the **interpolation band**, pairs 2 and 3 (a tenth of a turn or less): divided by 4,
#    $\theta' = (0.0025, 0.00025)$.
#
# The attention factor is $0.1 \ln 4 + 1 = 1.1386$, so logits grow by $1.1386^2 = 1.2965$.
#
# Checks: the worked example and the $D = 64$ case against `rope_inv_freq(..., {"rope_type":
# "yarn", ...})`, the attention factor, and the factor's effect on a logit through `apply_rope`.
# A `[NO ]` would mean tinype's YaRN rounds the band edges differently (transformers' `truncate`),
# uses another ramp, or applies the attention factor elsewhere.

# %%
def our_yarn(D, base, s, T, beta_fast=32.0, beta_slow=1.0):
    kr = lambda r: D * np.log(T / (2 * np.pi * r)) / (2 * np.log(base))
    low, high = int(max(np.floor(kr(beta_fast)), 0)), int(min(np.ceil(kr(beta_slow)), D - 1))
    gamma = np.clip((np.arange(D // 2) - low) / max(high - low, 1e-3), 0, 1)
    th = base ** (-np.arange(0, D, 2) / D)
    return (1 - gamma) * th + gamma * th / s, gamma, (low, high)


y8, gamma8, edges8 = our_yarn(8, base, 4.0, 64)
t8, af8 = positions.rope_inv_freq(8, base, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64})
print(f"  D = 8: k_low, k_high = {edges8}, ramp gamma = {gamma8.tolist()}, theta' = {np.round(t8, 6).tolist()}")
agree("YaRN worked example D = 8: theta' = (1, 0.0625, 0.0025, 0.00025)", [1, 0.0625, 0.0025, 0.00025], t8)
agree("YaRN at D = 64: ramp over the bands", our_yarn(Dh, base, s, Tt)[0],
      positions.rope_inv_freq(Dh, base, {"rope_type": "yarn", "factor": s, "original_max_position_embeddings": Tt})[0])
agree("YaRN attention factor 0.1 ln 4 + 1", 0.1 * np.log(4) + 1, af8)
qy, ky = rng.normal(size=(1, 1, 8)), rng.normal(size=(1, 1, 8))
plain_dot = positions.apply_rope(qy, np.array([5.0]), t8)[0, 0] @ positions.apply_rope(ky, np.array([2.0]), t8)[0, 0]
scaled_dot = positions.apply_rope(qy, np.array([5.0]), t8, af8)[0, 0] @ positions.apply_rope(ky, np.array([2.0]), t8, af8)[0, 0]
agree("the factor multiplies a logit by a(s)^2 = 1.2965", af8 ** 2 * plain_dot, scaled_dot)

# %% [markdown]
# ## 4.12 Llama 3 scaling
#
# Meta's Llama 3.1 uses the same three bands as YaRN but draws them by wavelength against two
# fractions of the training length, with factors $f_\text{low} = 1$ and $f_\text{high} = 4$:
#
# $$
# \theta'_k =
# \begin{cases}
#   \theta_k & \lambda_k < T_\text{train} / f_\text{high} \quad\text{(short waves: kept)} \\
#   \theta_k / s & \lambda_k > T_\text{train} / f_\text{low} \quad\text{(long waves: interpolated)} \\
#   (1 - \mu_k)\,\dfrac{\theta_k}{s} + \mu_k\,\theta_k & \text{otherwise,}
#   \quad \mu_k = \dfrac{T_\text{train}/\lambda_k - f_\text{low}}{f_\text{high} - f_\text{low}} .
# \end{cases}
# $$
#
# The smooth factor $\mu_k$ is linear in the number of turns $T_\text{train}/\lambda_k$: it is 0 at
# $\lambda_k = T_\text{train}/f_\text{low}$ (one turn, fully interpolated) and 1 at
# $\lambda_k = T_\text{train}/f_\text{high}$ (four turns, fully kept), so $\theta'$ is continuous at
# both edges. There is no attention factor. Worked example, $D = 8$, $T_\text{train} = 64$, $s = 4$:
# pair 0 ($\lambda = 6.3 < 16$) is kept; pair 1 ($\lambda = 62.83$, inside $[16, 64]$) gets
# $\mu = (64/62.83 - 1)/3 = 0.0062$, almost fully interpolated,
# $\theta'_1 = 0.9938 \cdot 0.025 + 0.0062 \cdot 0.1 = 0.02547$; pairs 2 and 3 ($\lambda > 64$) are
# divided by 4. A `[NO ]` below would mean tinype's bands or smooth factor differ from these.

# %%
def our_llama3(D, base, s, T, lo=1.0, hi=4.0):
    th = base ** (-np.arange(0, D, 2) / D)
    lam_ = 2 * np.pi / th
    mu = (T / lam_ - lo) / (hi - lo)
    mid = (1 - mu) * th / s + mu * th
    return np.where(lam_ < T / hi, th, np.where(lam_ > T / lo, th / s, mid))


l8 = positions.rope_inv_freq(8, base, {"rope_type": "llama3", "factor": 4.0, "original_max_position_embeddings": 64})[0]
print(f"  D = 8: theta' = {np.round(l8, 6).tolist()}")
agree("Llama 3 worked example D = 8", our_llama3(8, base, 4.0, 64), l8)
agree("Llama 3 at D = 64", our_llama3(Dh, base, s, Tt),
      positions.rope_inv_freq(Dh, base, {"rope_type": "llama3", "factor": s, "original_max_position_embeddings": Tt})[0])

# %% [markdown]
# ### 4.12.1 All scalings in one picture: wavelength per pair
#
# Each method is a curve $\lambda'_k = 2\pi/\theta'_k$ over the pairs $k$. The figure draws them
# for $D = 64$, $T_\text{train} = 64$ and an input of $L = 256$ ($s = 4$), taken from tinype's own
# encodings at that length (`pe.frequencies(256)`), on a log axis, where plain RoPE is a straight
# line (its wavelengths are geometric). The horizontal lines are $T_\text{train}$ and $L$; where
# curves coincide, the wide pale ones (PI, YaRN) lie under the thin ones. Read it
# as follows: a pair whose wavelength is far below $T_\text{train}$ has shown the model all its
# phases; a pair whose wavelength exceeds $T_\text{train}$ has not, and at length $L$ it needs
# $\lambda' \ge s\lambda$ to stay within the angles it saw. PI shifts the whole line up by $\log s$;
# NTK rotates it about pair 0; YaRN and Llama 3 keep the left end, move the right end up by exactly
# $\log s$ and switch between the two over a band; dynamic NTK at $L = 256$ is NTK with $s = 7$.
# The check first confirms that every encoding's frequencies equal `rope_inv_freq` with the scaling
# dict it should be using; a `[NO ]` would mean an encoding builds its dict differently (e.g. does
# not pass $T_\text{train}$ as `original_max_position_embeddings`).

# %%
L = 256
dicts = {"rope": None, "rope_pi": {"rope_type": "linear", "factor": L / Tt},
         "rope_ntk": {"rope_type": "ntk", "factor": L / Tt},
         "rope_dynamic": {"rope_type": "dynamic", "factor": 2.0, "original_max_position_embeddings": Tt},
         "rope_yarn": {"rope_type": "yarn", "factor": L / Tt, "original_max_position_embeddings": Tt},
         "rope_llama3": {"rope_type": "llama3", "factor": L / Tt, "original_max_position_embeddings": Tt}}
worst_pe = max(np.max(np.abs(pes[nm].frequencies(L)[0] - positions.rope_inv_freq(Dh, base, dct, seq_len=L)[0]))
               for nm, dct in dicts.items())
claim("each rope_* encoding at L = 256 uses rope_inv_freq with its scaling dict", worst_pe < 1e-15,
      f"max |encoding - rope_inv_freq| = {worst_pe:.1e}")
labels = {"rope": "plain RoPE", "rope_pi": "position interpolation (theta/4)", "rope_ntk": "NTK-aware (base x 4^(64/62))",
          "rope_dynamic": "dynamic NTK, f = 2 (s = 7 at L = 256)", "rope_yarn": "YaRN (ramp, beta 32..1)",
          "rope_llama3": "Llama 3 (bands at T/4 and T)"}
fig, ax = plt.subplots(figsize=(9, 5))
for nm, style, lw in zip(labels, ["-", "-", "-.", ":", "-", "--"], [1.5, 5, 1.5, 1.5, 3, 1.5]):
    ax.plot(np.arange(Dh // 2), 2 * np.pi / pes[nm].frequencies(L)[0], style, linewidth=lw, marker=".",
            alpha=0.45 if lw > 2 else 1.0, label=labels[nm])
ax.axhline(Tt, color="black", linewidth=1, label=f"T_train = {Tt}")
ax.axhline(L, color="gray", linewidth=1, linestyle="--", label=f"evaluation length L = {L}")
ax.set_yscale("log")
ax.set(title=f"RoPE wavelength per pair, D = {Dh}, base 10000, s = L / T_train = {L // Tt}",
       xlabel="pair k (channels k and k + D/2)", ylabel="wavelength 2 pi / theta_k (positions, log scale)")
ax.legend(fontsize=8)
save(fig, "rope_wavelengths.png")

# %% [markdown]
# ## 4.13 Log-n scaling
#
# Article 002 §4 proposes $f(n) = \log(n + 1)$ "so that quality does not drop on long inputs"
# without saying where it enters the model. One reading (§4.14) compresses positions. The reading
# with a derivation behind it (Chiang & Cholak 2022; Su 2021) scales the logits.
#
# **The entropy argument.** A query with logits $s_1, \dots, s_n$ over $n$ keys has attention
# $p_j = e^{\lambda s_j} / Z$, $Z = \sum_j e^{\lambda s_j}$, at a scale $\lambda$, and its entropy is
#
# $$
# \mathcal H = -\sum_j p_j \ln p_j = -\sum_j p_j (\lambda s_j - \ln Z) = \ln Z - \lambda \sum_j p_j s_j .
# $$
#
# For uniform logits ($s_j$ all equal) $Z = n e^{\lambda s}$ and $\mathcal H = \ln n$: the entropy
# grows like $\ln n$. For uniform-ish logits, write $\ln Z = \ln n + \ln\big(\tfrac1n \sum_j
# e^{\lambda s_j}\big) \approx \ln n + \lambda \bar s$, and $\sum_j p_j s_j \approx s_\text{max}$
# when $p$ leans towards the largest logits (Su's two approximations):
#
# $$
# \mathcal H \approx \ln n - \lambda\,(s_\text{max} - \bar s) .
# $$
#
# With $\lambda$ fixed, the first term grows with $\ln n$ and the attention spreads: a query trained
# to pick a few keys among $T_\text{train}$ keeps picking them among $n \gg T_\text{train}$ but with
# ever less weight. Let the scale grow like $\ln n$ too, $\lambda = \kappa \ln n$, and treat the
# gap $\Delta = s_\text{max} - \bar s$ as a property of the query that does not depend on $n$:
#
# $$
# \mathcal H \approx \ln n - \kappa \ln n\,\Delta = (1 - \kappa\Delta)\ln n .
# $$
#
# The growth is cancelled exactly when $\kappa\Delta = 1$ and reduced whenever
# $0 < \kappa\Delta < 2$. Choosing $\kappa = 1/\ln T_\text{train}$, so that $\lambda = 1$ at the
# training length and training is untouched, gives tinype's factor for the query at 0-based
# position $i$ (which sees $n = i + 1$ keys); exact cancellation then corresponds to
# $\Delta = \ln T_\text{train}$, a query that was sharp in training:
#
# $$
# \lambda_i = \max\!\Big(1,\ \frac{\ln(i + 1)}{\ln T_\text{train}}\Big) .
# $$
#
# **A case you can do by hand: one relevant key.** Let one key have logit $a$ and the other
# $n - 1$ keys logit 0. Its weight is $p = e^{a} / (e^{a} + n - 1)$. Suppose training taught
# $a_0 = \ln(T_\text{train} - 1)$, so that $p = 1/2$ at $n = T_\text{train}$ ($= 64$). At $n = 4096$
# without scaling, $p = 63/(63 + 4095) = 0.015$: the key is lost. With the factor
# $\lambda = \ln 4096 / \ln 64 = 2$, $e^{2a_0} = 63^2 = 3969$ and $p = 3969/(3969 + 4095) = 0.49$:
# kept. (The cell prints these weights for $n = 64 \dots 4096$ and checks that with the factor the
# weight stays within 0.05 of $1/2$ while without it it falls below 0.05; since both follow from the
# formula above, a `[NO ]` there could only come from a factor that is not $\ln n / \ln 64$.)
# The exact invariance needs $e^{a_0} \approx T_\text{train}$; the factor keeps a sharper query
# sharp and lets a flatter one flatten, which is why the argument is a heuristic and the cell
# measures it.
#
# **The measurement.** (1) tinype's `logn_scale` against the formula, and the compiled attention
# kernel multiplying row $i$ of the logits by it (logits recovered as in §4.3: identity values,
# $\ln p + \mathrm{lse}$); a `[NO ]` there would mean another factor (e.g. $\ln i$ instead of
# $\ln(i + 1)$, or no floor at 1) or a kernel that scales the wrong axis (keys instead of
# queries). (2) The one-key case at $n = 64 \dots 4096$. (3) Random
# Gaussian queries and keys ($D = 16$, 256 draws, logits $q^\top k/\sqrt{D}$ with the query
# scaled by 2, i.e. a logit standard deviation of 2, so that attention is fairly peaked at
# $n = 64$): the entropy of the last query's
# attention for $n = 64 \dots 4096$, with and without the factor. The checks ask whether the
# entropy grows with $n$ without the factor (by at least half of $\ln(4096/64) = 4.16$) and
# whether the factor keeps it closer to its value at $T_\text{train}$ than no factor does. If the
# first printed `[NO ]`, the random logits would be in the regime where the maximum dominates
# (entropy saturates instead of growing); if the second did, the factor would overshoot so much
# (entropy falling faster than it would rise without it) that it does more harm than good for
# Gaussian logits, for which the exact compensating scale grows like $\sqrt{\ln n}$, not $\ln n$
# (in the first approximation $\mathcal H \approx \ln n - \lambda^2\sigma^2/2$).

# %%
heading("4.13 Log-n scaling")
agree("logn_scale(T, T_train) = max(1, ln(i+1)/ln T_train)", np.maximum(1, np.log(np.arange(1, 257)) / np.log(64)),
      positions.logn_scale(256, 64))
qs, ks = rng.normal(size=(1, 2, 128, 128)) * 0.3, rng.normal(size=(1, 2, 128, 128)) * 0.3
lam128 = positions.logn_scale(128, 64)
ours_logits = (qs @ ks.swapaxes(-1, -2)) / np.sqrt(128) * lam128[:, None]
p_k, lse_k = kernels.attention_forward(qs, ks, np.broadcast_to(np.eye(128), qs.shape).copy(), 1 / np.sqrt(128),
                                       True, None, lam128)                          # out = p @ I = p
below = np.tril(np.ones((128, 128), dtype=bool))
agree("the attention kernel multiplies row i of the logits by the factor (logits = ln p + lse)",
      ours_logits[..., below], (np.log(np.where(below, p_k, 1.0)) + lse_k[..., None])[..., below], tol=1e-10)
ns = np.array([64, 128, 256, 512, 1024, 2048, 4096])
a0 = np.log(63.0)
p_plain = np.exp(a0) / (np.exp(a0) + ns - 1)
lamn = positions.logn_scale(4096, 64)[ns - 1]
p_logn = np.exp(lamn * a0) / (np.exp(lamn * a0) + ns - 1)
print("  one relevant key, its weight at n =", ns.tolist())
print("    no factor :", np.round(p_plain, 3).tolist())
print("    log-n     :", np.round(p_logn, 3).tolist())
claim("one key: the factor keeps its weight within 0.05 of 1/2, without it the weight falls below 0.05",
      np.all(np.abs(p_logn - 0.5) < 0.05) and p_plain[-1] < 0.05, f"at n = 4096: {p_logn[-1]:.3f} vs {p_plain[-1]:.3f}")


def entropies(n, qscale, with_factor, draws=256, seed=3):
    r = np.random.default_rng(seed)
    qn, kn = r.normal(size=(draws, 16)) * qscale, r.normal(size=(draws, n, 16))
    lg = np.einsum("bd,bnd->bn", qn, kn) / 4.0                       # the last query's logits, q.k / sqrt(D)
    if with_factor:
        lg = lg * positions.logn_scale(n, 64)[n - 1]
    lg -= lg.max(axis=1, keepdims=True)
    pr = np.exp(lg)
    pr /= pr.sum(axis=1, keepdims=True)
    return float(np.mean(-np.sum(pr * np.log(np.where(pr > 0, pr, 1.0)), axis=1)))


QS = 2.0
H_plain = np.array([entropies(n, QS, False) for n in ns])
H_logn = np.array([entropies(n, QS, True) for n in ns])
print("  random q, k: mean entropy (nats) of the last query at n =", ns.tolist())
print("    no factor :", np.round(H_plain, 2).tolist(), f"  (uniform attention would be ln n = {np.round(np.log(ns), 2).tolist()})")
print("    log-n     :", np.round(H_logn, 2).tolist())
grow_plain, drift_logn = H_plain[-1] - H_plain[0], abs(H_logn[-1] - H_logn[0])
claim("without the factor the entropy grows by at least half of ln(4096/64)", grow_plain > 0.5 * np.log(64),
      f"+{grow_plain:.2f} nats")
claim("with the factor it stays closer to its value at T_train", drift_logn < abs(grow_plain),
      f"change {H_logn[-1] - H_logn[0]:+.2f} vs {grow_plain:+.2f} nats")

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4))
axes[0].plot(ns, p_plain, marker="o", label="no factor")
axes[0].plot(ns, p_logn, marker="s", label="log-n factor ln n / ln 64")
axes[0].set(title="one relevant key among n (logit ln 63, others 0)", xlabel="number of keys n",
            ylabel="attention weight of the relevant key")
axes[1].plot(ns, H_plain, marker="o", label="no factor")
axes[1].plot(ns, H_logn, marker="s", label="log-n factor ln n / ln 64")
axes[1].plot(ns, np.log(ns), color="gray", linestyle=":", label="ln n (uniform attention)")
axes[1].set(title=f"random Gaussian q, k (D = 16, query scale {QS:g})", xlabel="number of keys n",
            ylabel="attention entropy (nats)")
for ax in axes:
    ax.set_xscale("log", base=2)
    ax.axvline(64, color="black", linewidth=0.8, label="T_train = 64")
    ax.legend(fontsize=8)
save(fig, "logn_entropy.png")

# %% [markdown]
# ## 4.14 $f(n) = \log(n + 1)$ as compressed positions (article 002 §4)
#
# The other reading of article 002's $f(n)$ puts it inside the sinusoid: tinype's `log_sinusoidal`
# feeds the table compressed positions, normalised so that the training window keeps its range,
#
# $$
# p' = T_\text{train}\,\frac{\ln(1 + p)}{\ln(1 + T_\text{train})},
# \qquad p' (T_\text{train}) = T_\text{train},
# \qquad \frac{dp'}{dp} = \frac{T_\text{train}}{(1 + p)\ln(1 + T_\text{train})} .
# $$
#
# The article lists two properties: $f$ increases (so positions stay distinct) and its growth rate
# decreases (so that, it says, quality does not drop on long inputs). The derivative shows the
# cost of the second property: neighbouring positions move apart by $dp'/dp$, which falls like
# $1/p$, so far positions become nearly indistinguishable. And the first property means that
# $f$ still grows without bound: inputs longer than $T_\text{train}$ still produce values never
# seen in training, only fewer of them. Worked example at $T_\text{train} = 64$: $p = 512$ lands at
# $p' = 64 \ln 513/\ln 65 = 64 \cdot 6.240/4.174 = 95.7$, i.e. 8x the length becomes 1.5x the range.
# The map also changes the positions *inside* the training window: its slope at $p = 0$ is
# $64/\ln 65 = 15.3$, so position 1 lands at $64 \ln 2 / \ln 65 = 10.6$, and the first few
# positions are spread apart while those near $T_\text{train}$ are squeezed (slope $0.23$ at
# $p = 64$): the model trains on a distorted sinusoid, not on the plain one.
# The check compares our $p'$ with `tinype.positions.log_positions`; the printed numbers are the
# spacing it leaves between neighbours. (Chapters 5 and 9, and the README's lab table, measure what
# this does to perplexity.) A `[NO ]` in the first check would mean tinype's normalisation differs
# from the formula; in the second, that `log_sinusoidal` does not feed $p'$ to the plain table, or
# scales it by something other than $1/\sqrt{d}$.

# %%
heading("4.14 log(n + 1) as compressed positions")
pn = np.arange(4097.0)
ours_lp = 64 * np.log1p(pn) / np.log1p(64)
agree("log_positions(p, 64) = 64 ln(1 + p) / ln 65", ours_lp, positions.log_positions(pn, 64), tol=1e-12)
print(f"  p = 1 -> p' = {ours_lp[1]:.1f}; p = 512 -> p' = {ours_lp[512]:.1f}; p = 4096 -> p' = {ours_lp[4096]:.1f}")
print(f"  spacing between neighbours: {ours_lp[65] - ours_lp[64]:.3f} at p = 64, "
      f"{ours_lp[1025] - ours_lp[1024]:.4f} at p = 1024, {ours_lp[4096] - ours_lp[4095]:.5f} at p = 4096 (1 in a plain table)")
lsin = positions.get("log_sinusoidal")
lsin.setup(cfg4)
agree("log_sinusoidal's table = the sinusoid at p', divided by sqrt(d)",
      positions.sinusoidal_table(ours_lp[:300], 64) / 8.0, lsin.table(pn[:300]), tol=1e-12)
fig, axes = plt.subplots(1, 2, figsize=(13, 4))
axes[0].plot(pn, ours_lp, label="p' = 64 ln(1 + p) / ln 65")
axes[0].plot(pn, pn, color="gray", linestyle=":", label="p' = p (plain positions)")
axes[0].axvline(64, color="black", linewidth=0.8, label="T_train = 64")
axes[0].set(xscale="log", yscale="log", title="article 002's f(n) as compressed positions",
            xlabel="position p (log scale)", ylabel="position fed to the sinusoid p' (log scale)")
axes[0].legend(fontsize=8)
im = axes[1].imshow(lsin.table(pn[:1024]).T * 8.0, aspect="auto", cmap="RdBu", vmin=-1, vmax=1, origin="lower")
axes[1].axvline(64, color="black", linewidth=0.8)
axes[1].set(title="log_sinusoidal table (unit amplitude); T_train = 64 at the line", xlabel="position p",
            ylabel="channel")
fig.colorbar(im, ax=axes[1], label="PE value at p'")
save(fig, "log_positions.png")

# %% [markdown]
# ## 4.15 Cross-entropy (article 000 §4.2)
#
# Article 000 §4.2 writes the fine-tuning loss for $C$ classes as
# $L = -\sum_{i=1}^{C} y_i \log \hat y_i$, with $y$ the true class distribution and $\hat y$ the
# prediction. This is correct, and it is the loss tinype trains with (over the 256 byte values for
# the language model). With a one-hot $y$ (class $t$) and $\hat y = \mathrm{softmax}(z)$:
#
# $$
# L = -\ln \hat y_t = -z_t + \ln \sum_c e^{z_c},
# \qquad
# \frac{\partial L}{\partial z_c} = -\delta_{ct} + \frac{e^{z_c}}{\sum_{c'} e^{z_{c'}}} = \hat y_c - y_c .
# $$
#
# For a batch of $N$ rows, tinype averages, so each row's gradient is divided by $N$. Computing
# $\ln\sum_c e^{z_c}$ as $m + \ln \sum_c e^{z_c - m}$ with $m = \max_c z_c$ keeps it finite even for
# logits of $\pm 10^4$, where $e^{10^4}$ overflows. The check computes loss and gradient ourselves
# that way and compares with `cross_entropy_forward` / `cross_entropy_backward`; chapter 3 derives
# the backward in full and checks it by central differences. A `[NO ]` would mean tinype's loss is
# not the mean of $-\ln \hat y_t$ (or overflows).

# %%
heading("4.15 Cross-entropy")
z = np.array([[1e4, -1e4, 0.0], [2.0, 1.0, 0.5], [0.0, 0.0, 0.0]])
t = np.array([1, 0, 2])
m = z.max(axis=1, keepdims=True)
lse = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
ours_loss = np.mean(lse - z[np.arange(3), t])
ours_grad = (np.exp(z - lse[:, None]) - np.eye(3)[t]) / 3
loss, cache = cross_entropy_forward(z, t)
agree(f"loss = mean(-ln softmax(z)_t) at logits of +-1e4 (loss {float(loss):.1f})", ours_loss, loss, tol=1e-9)
agree("gradient = (softmax(z) - onehot(t)) / N", ours_grad, cross_entropy_backward(1.0, cache))
done()
