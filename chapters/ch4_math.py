# %% [markdown]
# # Chapter 4. The mathematics (数学模型和公式详细讲解举例说明)
#
# Article 000 §4.1 writes the sinusoidal encoding as PE(i, j) = sin(j / 10000^(i/a)) with i "the
# position" and j "the index in the vocabulary". That swaps position and dimension, mixes in the
# vocabulary (which has nothing to do with positions), and drops the cosine of the odd dimensions.
# The formula of Vaswani et al. (2017) is
#
#     PE[p, 2i] = sin(p / 10000^(2i/d)),    PE[p, 2i+1] = cos(p / 10000^(2i/d)).
#
# Article 002 §4 proposes f(n) = log(n + 1) "so that quality does not drop on long inputs". We look
# at what it does to positions here; chapters 5 and 9 train with it.

# %%
import numpy as np

from tinype import positions
from tinype.layers import cross_entropy_backward, cross_entropy_forward
from common import check, done, figure_dir, fmt, heading, ppl, pyplot, quick_lm, savefig, say

FIG = figure_dir("ch4")
heading("4.1 The sinusoidal table, and the article's version")
d, P = 64, np.arange(128)
table = positions.sinusoidal_table(P, d)
i = np.arange(d)[:, None]
article = np.sin(P[None, :] * 1.0 / 10000 ** (i / d)).T        # its formula read literally: no cosine
check("the correct table pairs sin and cos, so every row has norm sqrt(d/2)",
      np.allclose(np.linalg.norm(table, axis=1), np.sqrt(d / 2)))
check("the article's table is not a rotation of position 0 (its row norms vary)",
      np.ptp(np.linalg.norm(article, axis=1)) > 1.0, f"norms from {np.linalg.norm(article, axis=1).min():.2f} "
      f"to {np.linalg.norm(article, axis=1).max():.2f}")

say("""Why the sin/cos pairs matter: for any offset k, PE[p + k] is a fixed rotation of PE[p] in
each (sin, cos) pair, the same for every p. That is the property Vaswani et al. hoped would let the
model attend by relative position.""")
k = 7
w = 10000.0 ** (-np.arange(0, d, 2) / d)
R = np.zeros((d, d))
for j, wj in enumerate(w):
    c, s = np.cos(k * wj), np.sin(k * wj)
    R[2 * j:2 * j + 2, 2 * j:2 * j + 2] = [[c, -s], [s, c]]    # [sin, cos](a + b) = [sin a, cos a] @ R
check(f"PE[p + {k}] = PE[p] @ R_{k} for every p", np.allclose(table[:-k] @ R, table[k:], atol=1e-10))

# %%
heading("4.2 RoPE: the dot product sees only i - j")
inv, _ = positions.rope_inv_freq(16)
rng = np.random.default_rng(0)
q, kk = rng.normal(size=16), rng.normal(size=16)
dots = [float(positions.apply_rope(q[None], np.array([i]), inv)[0] @ positions.apply_rope(kk[None], np.array([j]), inv)[0])
        for i, j in [(5, 2), (105, 102), (1005, 1002)]]
check("<R(i) q, R(j) k> is the same for (5, 2), (105, 102), (1005, 1002)", np.ptp(dots) < 1e-9,
      f"{dots[0]:.6f}")

heading("4.3 ALiBi slopes, T5 buckets, log-n")
print("  ALiBi slopes, 8 heads:", np.round(positions.alibi_slopes(8), 4).tolist())
print("  ALiBi slopes, 12 heads (not a power of two, non-monotone by design):",
      np.round(positions.alibi_slopes(12), 4).tolist())
print("  T5 causal buckets of distances 0..20, 64, 128, 1000:",
      positions.t5_relative_bucket(-np.array(list(range(21)) + [64, 128, 1000]), False).tolist())

# %%
heading("4.4 Cross-entropy (000 §4.2) and its gradient")
say("""000 §4.2's loss L = -sum_i y_i log(yhat_i) is the cross-entropy tinype trains with. Its gradient
with respect to the logits is softmax - onehot, which stays finite even for logits of +-1e4.""")
z = np.array([[1e4, -1e4, 0.0], [2.0, 1.0, 0.5]])
t = np.array([1, 0])
loss, cache = cross_entropy_forward(z, t)
g = cross_entropy_backward(1.0, cache)
check("finite loss and gradient at logits of +-1e4", np.isfinite(loss) and np.isfinite(g).all(), f"loss {float(loss):.1f}")

# %%
heading("4.5 f(n) = log(n + 1): what it does to positions")
n = np.arange(4097)
f = np.log(n + 1)
gap_64, gap_4096 = f[64] - f[63], f[4096] - f[4095]
say(f"""The log grows without bound, only more and more slowly, so it squeezes: adjacent positions
differ by {gap_64:.4f} at n = 64 and by {gap_4096:.6f} at n = 4096. Feeding log(n + 1) into a sinusoid
(tinype's log_sinusoidal) makes far positions nearly indistinguishable; and the article's own
property 2 ("the growth rate decreases") is what *creates* unseen values: log(4097) = {f[-1]:.2f} lies
beyond log(65) = {f[64]:.2f}, the largest value seen in training at T_train = 64.""")
plt = pyplot()
fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
im = axes[0].imshow(table.T, aspect="auto", cmap="RdBu", vmin=-1, vmax=1)
axes[0].set_title("correct: sin/cos pairs")
axes[0].set_xlabel("position p")
axes[0].set_ylabel("dimension")
axes[1].imshow(article.T, aspect="auto", cmap="RdBu", vmin=-1, vmax=1)
axes[1].set_title("article 000 §4.1 read literally: sin only")
axes[1].set_xlabel("position p")
axes[2].plot(n, f, label="log(n + 1)")
axes[2].axvline(64, color="gray", linestyle="--")
axes[2].set_xscale("log")
axes[2].set_xlabel("position n")
axes[2].set_title("002 §4's f(n): T_train = 64 dashed")
fig.colorbar(im, ax=axes[:2].tolist())
path = f"{FIG}/sinusoid_vs_article.png"
fig.savefig(path, dpi=110)
plt.close(fig)
print(f"  figure: {path}")

# %%
heading("4.6 The scale of the sinusoidal table")
say("""The paper multiplies the embeddings by sqrt(d) before adding the unit-amplitude table. tinype
initialises embeddings at std 0.02 and divides the table by sqrt(d) instead (DESIGN.md). What happens
with the table at full amplitude 1, i.e. 50 times the embeddings' size? We train both for 250 steps.""")
scaled = quick_lm("sinusoidal", steps=250)
full = quick_lm("sinusoidal", steps=250, pe_options={"scale": 1.0})
a, b = ppl(scaled, 64), ppl(full, 64)
check("the 1/sqrt(d) table trains to a lower perplexity than the amplitude-1 table", a < b,
      f"{fmt(a)} vs {fmt(b)}")
emb_norm = np.linalg.norm(scaled.params["wte"], axis=1).mean()
fig, ax = plt.subplots(figsize=(6, 3.6))
ax.bar(["token embedding\n(trained, mean norm)", "table / sqrt(d)", "table, amplitude 1"],
       [emb_norm, np.sqrt(d / 2) / np.sqrt(d), np.sqrt(d / 2)])
ax.set_ylabel("vector norm")
ax.set_title(f"perplexity after 250 steps: {fmt(a)} (scaled) vs {fmt(b)} (amplitude 1)")
savefig(fig, FIG, "embedding_scale.png")
done()
