# %% [markdown]
# # Chapter 1. Background (背景介绍)
#
# Both articles open the same way: large language models are trained on sequences of some length,
# and they are asked to read longer ones. Article 002 §1 states the problem well: quality drops when
# the input is longer than anything seen in training, and the positional encoding (PE) is the usual
# culprit. Article 000 §1 instead calls extrapolation "going from a specific task to general tasks";
# that is transfer learning, not this field's meaning (erratum, see DESIGN.md). Here, as in 002 §2.3
# and the literature (Press et al. 2022, "Train Short, Test Long"), **extrapolation means handling
# sequences longer than the training length T_train**.
#
# This chapter shows the problem in one experiment: three byte-level language models, identical
# except for the PE, trained at T_train = 64 and evaluated at 64, 128, ..., 1024 bytes.

# %%
import numpy as np

from common import check, corpus, done, figure_dir, fmt, heading, plot_lengths, ppl, pyplot, quick_lm, savefig, say

FIG = figure_dir("ch1")
heading("1.1 The problem: train short, test long")
say("""A language model predicts the next byte. Its quality is measured as perplexity: exp of the mean
negative log-likelihood per byte (1 is perfect; 256 is a uniform guess over bytes). We train three
models for the same 300 steps on Python's own documentation (pydoc_data.topics, shipped with Python)
and evaluate each on held-out text in windows longer than the 64 bytes it was trained on.""")

# %%
encodings = ["learned", "sinusoidal", "alibi"]
models = {pe: quick_lm(pe, steps=300) for pe in encodings}
lengths = [64, 128, 256, 512, 1024]
table = {pe: [ppl(m, L) for L in lengths] for pe, m in models.items()}
print("\n  perplexity by evaluation length (T_train = 64):")
print("  " + "encoding".ljust(12) + "".join(f"{L:>9d}" for L in lengths))
for pe, row in table.items():
    print("  " + pe.ljust(12) + "".join(f"{fmt(v):>9s}" for v in row))

# %% [markdown]
# What to look for: the learned table has 64 rows, so the model cannot even run past 64 bytes (n/a).
# The sinusoidal encoding runs at any length, but positions it never saw produce vectors the
# network never learned to read, and perplexity climbs. ALiBi adds a distance penalty to attention
# logits instead of a vector to the input; nothing it sees at 1024 is new, and it stays flat.

# %%
heading("1.2 What the measurement says")
sin, ali = table["sinusoidal"], table["alibi"]
check("learned positions cannot run past T_train", table["learned"][1] is None)
check("sinusoidal degrades past T_train (at 16x, over 1.5x its in-distribution perplexity)",
      sin[-1] > 1.5 * sin[0], f"{fmt(sin[0])} -> {fmt(sin[-1])}")
check("ALiBi stays within 25% of its in-distribution perplexity at 16x", ali[-1] < 1.25 * ali[0],
      f"{fmt(ali[0])} -> {fmt(ali[-1])}")

plt = pyplot()
fig, ax = plt.subplots(figsize=(6.5, 4))
plot_lengths(ax, lengths, table, "Same model, same data, three positional encodings")
savefig(fig, FIG, "ppl_vs_length.png")

# %% [markdown]
# Where the difference comes from, in a picture: the attention of the last layer (mean over heads)
# on one 256-byte window of held-out text. Inside the first 64 positions both models attend as
# trained; past them, the sinusoidal model's attention loses its structure while ALiBi's stays on
# the recent bytes, exactly as at training length.

# %%
heading("1.3 Attention maps at and beyond the training length")
window = corpus().val[:256].astype("int64")[None]
fig, axes = plt.subplots(1, 2, figsize=(11, 5))
for ax, pe in zip(axes, ["sinusoidal", "alibi"]):
    att = models[pe].attention_maps(window)[-1, 0].mean(axis=0)          # (T, T), last layer
    ax.imshow(att ** 0.5, cmap="magma", interpolation="nearest")          # sqrt: faint weights visible
    for line in (ax.axhline, ax.axvline):
        line(63.5, color="cyan", linewidth=0.8)
    ax.set_title(f"{pe}: last layer, mean over heads (T_train = 64, cyan)")
    ax.set_xlabel("key position j")
    ax.set_ylabel("query position i")
    far = att[192:, :]
    span = (far * (np.arange(192, 256)[:, None] - np.arange(256)[None, :])).sum(axis=1).mean()
    print(f"  {pe:10s} mean attention distance of queries 192..255: {span:.1f} bytes")
savefig(fig, FIG, "attention_maps.png")

say("""The rest of the course explains why: chapter 2 defines the pieces, chapter 3 the training steps,
chapter 4 the formulas, and chapters 5 to 9 run the articles' own systems and questions. The full,
fair comparison of every encoding is one command: `tinype lab`.""")
done()
