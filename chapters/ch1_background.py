# %% [markdown]
# # Chapter 1. Background (背景介绍)
#
# Both articles open the same way: large language models are trained on sequences of some length,
# and then asked to read longer ones. Article 002 §1 states the problem well: quality drops when
# the input is longer than anything seen in training, and the positional encoding (PE), the part of
# the model that tells it where each token is, is the usual culprit.
#
# **Erratum (000 §1, again in §2.2).** Article 000 calls extrapolation "going from a specific task
# to general tasks". That is transfer learning, not this field's meaning. Here, as in 002 §2.3 and
# the literature (Press et al. 2022, "Train Short, Test Long"), **extrapolation means handling
# sequences longer than the training length $T_{\text{train}}$**: train on windows of
# $T_{\text{train}}$ tokens, test on windows of $L > T_{\text{train}}$, and ask how much worse the
# predictions get as the ratio $L / T_{\text{train}}$ grows.
#
# Why would it get worse at all? A Transformer reads a window of $L$ tokens in parallel; nothing in
# its weights depends on $L$, except through the positions. So what the model does at a position it
# never saw in training, or at a distance between two tokens it never saw, is decided entirely by
# how the positional encoding behaves there. This chapter shows the problem in three steps:
#
# 1. the hard wall: an encoding that cannot even *run* past $T_{\text{train}}$;
# 2. one experiment: three byte-level language models, identical except for the PE, trained at
#    $T_{\text{train}} = 64$ and evaluated at 64 to 1024 bytes;
# 3. a measurement inside the models: where their attention goes before and after position 64.

# %%
import numpy as np
from common import check, corpus, done, figure_dir, fmt, heading, plot_lengths, ppl, pyplot, quick_lm, savefig

import tinype

FIG = figure_dir("ch1")
T_TRAIN = 64

# %% [markdown]
# ## 1.1 The wall: a table with one row per trained position
#
# GPT-2 (and nanoGPT, its small re-implementation) gives each position $t$ a **learned** vector
# $p_t$, one row of a table $P \in \mathbb{R}^{T_{\text{train}} \times C}$, added to the embedding
# of the token there:
#
# $$
# h_t^{(0)} = e_{x_t} + p_t, \qquad t = 0, 1, \dots, T_{\text{train}} - 1 .
# $$
#
# Row $T_{\text{train}}$ does not exist, so the model cannot be run on a longer window at all.
# nanoGPT says so in its forward pass:
#
# ```python
# assert t <= self.config.block_size, f"Cannot forward sequence of length {t}, block size is only {self.config.block_size}"
# ```
#
# tinype's `learned` encoding hits the same wall; instead of an assertion it raises a `ValueError`
# that names the cause and a way out. The cell below asks a learned model for 65 positions. The
# check would print `[NO ]` if the model accepted the window, i.e. if tinype quietly made up rows
# it never trained.

# %%
heading("1.1 The wall")
learned_cfg = tinype.ModelConfig(pe="learned", T_train=T_TRAIN)
wall = tinype.Transformer(learned_cfg, seed=0)
print(f"  the learned table has shape {wall.parameters()['pe.wpe'].shape} (T_train rows, C columns)")
wall.forward(np.zeros((1, T_TRAIN), dtype=np.int64))                 # 64 positions: fine
try:
    wall.forward(np.zeros((1, T_TRAIN + 1), dtype=np.int64))
    refused, message = False, "it ran"
except ValueError as err:
    refused, message = True, str(err)
print(f"  65 positions -> {message}")
check("a learned table refuses position 64 (the 65th)", refused)

# %% [markdown]
# The two other encodings of this chapter have no such wall; they fail (or not) more quietly.
#
# - **Sinusoidal** (Vaswani et al. 2017): $p_t$ is a fixed formula, defined at every $t$. tinype adds
#   it scaled by $1/\sqrt C$ (the unit-amplitude table would swamp embeddings of std 0.02):
#
# $$
# p_{t, 2i} = \frac{1}{\sqrt C} \sin\!\big(t / 10000^{2i/C}\big), \qquad p_{t, 2i+1} = \frac{1}{\sqrt C} \cos\!\big(t / 10000^{2i/C}\big).
# $$
#
#   The model runs at $t = 1000$, but the vector there is one its layers never saw in training.
#   Whether they read it sensibly is an empirical question, answered in 1.2.
#
# - **ALiBi** (Press et al. 2022) adds no vector at all. Each head $h$ subtracts a penalty
#   proportional to the distance from the logit of query $i$ on key $j$:
#
# $$
# s_{ij} = \frac{q_i \cdot k_j}{\sqrt D} - m_h\,(i - j), \qquad j \le i,
# $$
#
#   with fixed slopes $m_h$; for 4 heads $m = (1/4, 1/16, 1/64, 1/256)$. Worked example: in the
#   head with $m = 1/4$, a key 4 bytes back loses $1$ from its logit, i.e. a factor
#   $e^{-1} \approx 0.37$ in attention weight; a key 100 bytes back loses $25$, a factor
#   $e^{-25} \approx 10^{-11}$, invisible. At $L = 1024$ the distances are larger than in
#   training, but the penalty just continues the same line, and the far keys it adds are the ones
#   it already suppresses.

# %%
slopes = tinype.positions.alibi_slopes(4)
print(f"  ALiBi slopes for 4 heads: {slopes.tolist()}; weight factor of a key 4 bytes back in head 0: "
      f"{np.exp(-slopes[0] * 4):.2f}, 100 bytes back: {np.exp(-slopes[0] * 100):.1e}")
check("the 4-head ALiBi slopes are 1/4, 1/16, 1/64, 1/256", np.allclose(slopes, [1 / 4, 1 / 16, 1 / 64, 1 / 256]))

# %% [markdown]
# ## 1.2 The experiment: train short, test long
#
# A language model predicts the next byte. Its quality is the **perplexity**, the exponential of
# the mean negative log-likelihood of the true next byte over the $N$ predicted positions
# (chapter 2 defines it carefully, with a worked example):
#
# $$
# \mathrm{PPL} = \exp\Big( \frac1N \sum_{n=1}^N -\ln p_\theta(x_{n+1} \mid \text{context}) \Big).
# $$
#
# It is 1 for a perfect model and 256 for a uniform guess over bytes; read it as "the model is as
# unsure as a uniform choice among PPL bytes". We train three models, each for the same 300 steps
# on the same batches of Python's own documentation (`pydoc_data.topics`, shipped with Python, so
# nothing is downloaded), with the same seed and architecture (2 layers, width 64, 4 heads). Only
# the PE differs. Then each is evaluated on the same 16 KiB of held-out text, cut into
# non-overlapping windows of $L$ = 64, 128, ..., 1024 bytes.
#
# What the checks test, and what a `[NO ]` would mean:
# - the learned model has no perplexity past 64 (it cannot run); `[NO ]` would mean it ran;
# - the sinusoidal model's perplexity at 16x is over 1.5 times its perplexity at 1x; `[NO ]` would
#   mean the fixed sinusoid extrapolated in this run, against what the literature reports;
# - ALiBi stays within 25% of its 1x perplexity at 16x; `[NO ]` would mean its distance penalty
#   did not carry the model past $T_{\text{train}}$ here.

# %%
heading("1.2 Train short, test long")
encodings = ["learned", "sinusoidal", "alibi"]
models = {pe: quick_lm(pe, steps=300) for pe in encodings}
lengths = [64, 128, 256, 512, 1024]
table = {pe: [ppl(m, L) for L in lengths] for pe, m in models.items()}
print("\n  perplexity by evaluation length L (T_train = 64; n/a: the model cannot run at L):")
print("  " + "encoding".ljust(12) + "".join(f"{L:>9d}" for L in lengths))
for pe, row in table.items():
    print("  " + pe.ljust(12) + "".join(f"{fmt(v):>9s}" for v in row))
sin, ali = table["sinusoidal"], table["alibi"]
check("learned positions cannot run past T_train", all(v is None for v in table["learned"][1:]))
check("sinusoidal degrades past T_train (at 16x, over 1.5x its in-distribution perplexity)",
      sin[-1] > 1.5 * sin[0], f"{fmt(sin[0])} -> {fmt(sin[-1])}, x{sin[-1] / sin[0]:.2f}")
check("ALiBi stays within 25% of its in-distribution perplexity at 16x", ali[-1] < 1.25 * ali[0],
      f"{fmt(ali[0])} -> {fmt(ali[-1])}, x{ali[-1] / ali[0]:.2f}")

plt = pyplot()
fig, ax = plt.subplots(figsize=(6.5, 4))
plot_lengths(ax, lengths, table, "Same model, same data, three positional encodings\n"
             "(learned: one point, it cannot run past 64)")
ticks = [t for t in (2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 40, 60, 80) if
         min(v for r in table.values() for v in r if v) / 1.2 <= t <= 1.2 * max(v for r in table.values() for v in r if v)]
ax.set_yticks(ticks, [str(t) for t in ticks])
ax.set_yticks([], minor=True)
ax.set_ylabel("perplexity (log scale)")
ax.set_xticks(lengths, [str(L) for L in lengths])
savefig(fig, FIG, "ppl_vs_length.png")

# %% [markdown]
# The in-distribution numbers (the column $L = 64$) are not the point here: 300 steps is a short
# training and the three encodings learn at different speeds. The point is each row's *shape*: how
# a model's own perplexity moves as $L$ passes $T_{\text{train}}$. The lines printed above the
# figure say, for this run, which rows stay flat.

# %% [markdown]
# ## 1.3 Where the attention goes past the training length
#
# A byte-level model mostly needs the last few bytes (the word being spelled, the indentation of
# the current line), so a trained model puts much of each query's attention on recent keys. A
# simple property of an attention row $p_{i,\cdot}$ (query $i$, keys $j \le i$) measures that: the
# **local mass**, the share of attention on the last $k$ keys,
#
# $$
# m_k(i) = \sum_{j = i - k + 1}^{i} p_{ij}, \qquad 0 \le m_k(i) \le 1 .
# $$
#
# A reference point, worked out by hand: an attention row that has lost all structure and spreads
# **uniformly** over the $i + 1$ keys has $p_{ij} = 1/(i+1)$, so $m_k(i) = k / (i + 1)$. With
# $k = 16$, that is $16/49 \approx 0.33$ at $i = 48$, but $16/225 \approx 0.07$ at $i = 224$: a
# uniform row's local mass falls as the window grows, simply because there are more keys.
#
# The measurement: each model reads 8 windows of 256 held-out bytes; we average $m_{16}(i)$ over
# windows, heads and both layers, then over the queries **inside** the training range
# ($16 \le i < 64$; from $i = 16$ on, every query has 16 keys to look at) and **beyond** it
# ($64 \le i < 256$), and compare the ratio beyond / inside with the uniform row's ratio. The
# checks: ALiBi keeps at least half of its local mass beyond $T_{\text{train}}$ (its penalty does
# not change past 64, so `[NO ]` would mean the model's content-based attention changed instead);
# the sinusoidal model keeps less than half (`[NO ]` would mean its attention kept its recency
# structure even where its perplexity says it fails, so the failure would lie elsewhere).

# %%
heading("1.3 Where the attention goes past the training length")
K_LOCAL, N_WIN, L_WIN = 16, 8, 256
val = corpus().val
batch = np.stack([val[s:s + L_WIN] for s in range(0, N_WIN * L_WIN, L_WIN)]).astype(np.int64)   # (8, 256)
i_idx, j_idx = np.arange(L_WIN)[:, None], np.arange(L_WIN)[None, :]
recent = (i_idx - j_idx >= 0) & (i_idx - j_idx < K_LOCAL)                                       # (T, T)
uniform = np.minimum(K_LOCAL, np.arange(L_WIN) + 1) / (np.arange(L_WIN) + 1)                     # k / (i+1)
inside, beyond = slice(K_LOCAL, T_TRAIN), slice(T_TRAIN, L_WIN)
u_ratio = uniform[beyond].mean() / uniform[inside].mean()
local, maps, ratio = {}, {}, {}
for pe in ["sinusoidal", "alibi"]:
    att = models[pe].attention_maps(batch)                    # (layers, B, H, T, T)
    local[pe] = (att * recent).sum(axis=-1).mean(axis=(0, 1, 2))   # (T,) m_16(i)
    maps[pe] = att[-1, 0].mean(axis=0)                        # last layer, window 0, mean over heads
    m_in, m_out = local[pe][inside].mean(), local[pe][beyond].mean()
    ratio[pe] = m_out / m_in
    print(f"  {pe:10s}  m_16 inside {m_in:.3f}, beyond {m_out:.3f}: ratio {ratio[pe]:.2f} "
          f"(a uniform row: {uniform[inside].mean():.3f} -> {uniform[beyond].mean():.3f}, ratio {u_ratio:.2f})")
check("ALiBi keeps at least half of its local attention mass beyond T_train", ratio["alibi"] >= 0.5,
      f"ratio {ratio['alibi']:.2f}")
check("the sinusoidal model keeps less than half of it", ratio["sinusoidal"] < 0.5,
      f"ratio {ratio['sinusoidal']:.2f}")
for pe in ["sinusoidal", "alibi"]:
    near = abs(np.log(ratio[pe] / u_ratio)) < np.log(1.5)
    print(f"  {pe}: beyond T_train its local mass falls by a factor {1 / ratio[pe]:.1f}, "
          + ("within 1.5x of a uniform row's fall: past 64 it favours recent bytes no more than a "
             "structureless row would." if near else
             f"{'less' if ratio[pe] > u_ratio else 'more'} than a uniform row's ({1 / u_ratio:.1f}): "
             f"it keeps {'part of' if ratio[pe] > u_ratio else 'less than'} the recency structure "
             f"{'it had inside' if ratio[pe] > u_ratio else 'even a uniform row has'}."))

fig, axes = plt.subplots(1, 3, figsize=(17, 5.4))
for ax, pe in zip(axes[:2], ["sinusoidal", "alibi"]):
    shown = np.sqrt(maps[pe])
    top = np.quantile(shown[np.tril_indices(L_WIN)], 0.995)  # a few first rows sit at 1 and would wash out the rest
    im = ax.imshow(shown, cmap="magma", interpolation="nearest", vmin=0, vmax=top)
    for line in (ax.axhline, ax.axvline):
        line(T_TRAIN - 0.5, color="cyan", linewidth=0.8)
    ax.set_title(f"{pe}: last layer, mean of 4 heads\n(one 256-byte window; cyan: T_train = 64)", fontsize=10)
    ax.set_xlabel("key position j (bytes)")
    ax.set_ylabel("query position i (bytes)")
    fig.colorbar(im, ax=ax, fraction=0.046, label="sqrt(attention weight), clipped at its 99.5th percentile")
ax = axes[2]
for pe in ["sinusoidal", "alibi"]:
    ax.plot(np.arange(L_WIN), local[pe], label=f"{pe} (mean of 8 windows, 2 layers, 4 heads)")
ax.plot(np.arange(L_WIN), uniform, "k--", linewidth=1, label="uniform row: 16 / (i + 1)")
ax.axvline(T_TRAIN, color="gray", linestyle=":", label="T_train = 64")
ax.set_xlabel("query position i (bytes)")
ax.set_ylabel(f"local mass m_{K_LOCAL}(i): attention on the last {K_LOCAL} keys")
ax.set_ylim(0, 1)
ax.set_title("How much attention stays on recent bytes")
ax.legend(fontsize=8)
savefig(fig, FIG, "attention_maps.png")

# %% [markdown]
# How to read the figure: in the two maps each row is one query; bright pixels near the diagonal
# are attention on recent bytes. The right panel is the measurement above, query by query, with the
# dashed curve of a structureless (uniform) row for comparison. The printed lines say, for this
# run, how each model's curve behaves after the dotted line at 64 and how it compares with the
# dashed one. Two things to keep in mind: the mean over heads hides that ALiBi's flattest head
# ($m = 1/256$) is nearly position-free and spreads wide by design; and local mass is one property
# of attention, not the whole story (chapter 5 measures the loss at each position, which is).
#
# ## 1.4 Where the course goes from here
#
# Chapter 2 defines the pieces used here (the objective, perplexity, why attention needs a PE at
# all, the four places a PE can act). Chapter 3 derives the training step, every gradient by hand.
# Chapter 4 gives every encoding's formula, chapters 5 to 9 run the articles' own systems and
# questions. The full, fair comparison of every encoding is one command: `tinype lab`.

# %%
done()
