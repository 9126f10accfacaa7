# %% [markdown]
# # Chapter 9. Questions and answers (附录：常见问题与解答), each answered by an experiment
#
# Both articles end with a FAQ whose answers are sentences. Here every question gets an experiment
# whose outcome could have gone either way, and the answer is what the experiment printed.
#
# | # | question | article | the article's answer, in short |
# |---|---|---|---|
# | Q1 | What does adding the PE to the word embedding do? | 000 §9 | it combines position with meaning |
# | Q2 | Why can't the PE be used directly as the word embedding? | 000 §9 | they carry different information |
# | Q3 | What are the PE's drawbacks? | 000 §9 | it cannot represent a word differently in different sentences |
# | Q4 | How can extrapolation be improved? | 000 §9 | learn more task information; try Transformer, BERT |
# | Q5 | Why is a PE necessary for a Transformer? | 002 §9 | self-attention ignores order |
# | Q6 | Why would the log encoding extrapolate better? | 002 §9 | $\log(n+1)$ grows slowly |
# | Q7 | What are its limits? | 002 §9 | very long inputs may still degrade |
#
# Two experiments carry most of the answers. §9.1-§9.2 train small **bidirectional** Transformer
# classifiers (no causal mask) on questions about order, where a model blind to position provably
# sits at chance. §9.3-§9.5 train six small byte-level **language models** for 250 steps each,
# at $T_{\text{train}} = 64$, and measure their perplexity at up to 32 times that length.

# %%
from dataclasses import replace

import numpy as np
from common import check, corpus, done, figure_dir, fmt, plot_lengths, ppl, pyplot, quick_lm, savefig

import tinype
from tinype.classify import TransformerClassifier, accuracy, fit

FIG = figure_dir("ch9")

# %% [markdown]
# ## 9.1 Q1 / Q5. What does the PE add, and why does a Transformer need one?
#
# **Why a Transformer without a PE is blind to order.** Let $X$ be the $T \times C$ matrix of input
# vectors and $\Pi$ any permutation matrix. Self-attention without a mask computes
# $\mathrm{Att}(X) = \mathrm{softmax}(X W_q W_k^\top X^\top/\sqrt{d})\, X W_v$; permuting the rows of
# the input permutes the rows and the columns of the score matrix alike, and the row-wise softmax
# does not care about the order of a row's entries, so
#
# $$
# \mathrm{Att}(\Pi X) = \Pi\, \mathrm{Att}(X).
# $$
#
# The MLP and LayerNorm act on each row alone, so they commute with $\Pi$ too, and so does the
# whole stack. A classifier that averages the final rows, $\frac{1}{T}\sum_t h_t$, is then
# *invariant*: a string and any reordering of it get the same answer.
#
# **What adding the PE changes.** The input row becomes $x_t = e_{w_t} + \mathrm{PE}_t$: the same
# byte at two positions now gives two different vectors, and $\Pi X$ is no longer a permutation of
# the rows of $X$ (the PE rows stay where they are while the embeddings move). That is all the
# addition does (Q1), and it is exactly what the symmetry needs broken (Q5).
#
# **Experiment.** Random strings of 12 lowercase letters; the label says whether the first letter
# comes before the last one in the alphabet (ties are removed). Swapping the first and last letter
# flips the label without changing the multiset of letters, so an order-blind model can do no better
# than 50%. Two classifiers, 2 layers, 300 steps, identical except for the PE: none, sinusoidal;
# tested on 1000 fresh strings. A `[NO ]` on the first check would mean position leaks into the
# NoPE model some other way (a bug: the derivation above rules it out); a `[NO ]` on the second
# would mean 300 steps were too few to learn the comparison.

# %%
def order_batch(rng, n=64, T=12):
    x = rng.integers(97, 123, (n, T))
    x[:, -1] = np.where(x[:, -1] == x[:, 0], (x[:, 0] - 97 + 1) % 26 + 97, x[:, -1])   # no ties
    return x, (x[:, 0] < x[:, -1]).astype(np.int64)


def classifier(pe, T, batches, steps=300):
    clf = TransformerClassifier(tinype.ModelConfig(pe=pe, causal=False, T_train=T, n_layer=2), 2, seed=0)
    fit(clf, batches, steps, lr=3e-3)
    return clf


x_test, y_test = order_batch(np.random.default_rng(1), 1000)
order_acc = {}
for pe in ["nope", "sinusoidal"]:
    clf = classifier(pe, 12, lambda step: order_batch(np.random.default_rng([2, step])))
    order_acc[pe] = accuracy(clf, x_test, y_test)
    print(f"  order task, {pe:10s}: test accuracy {order_acc[pe]:.1%}")
check("without a PE, the bidirectional classifier stays within 6 points of chance (50%)",
      abs(order_acc["nope"] - 0.5) < 0.06, f"{order_acc['nope']:.1%}")
check("with the sinusoidal PE added to the embedding it exceeds 80%", order_acc["sinusoidal"] > 0.8,
      f"{order_acc['sinusoidal']:.1%}")

# %% [markdown]
# ## 9.2 Q2. Why can't the PE be used directly as the word embedding?
#
# The article answers that the two carry different information. The answer has two halves, and
# only one of them needs an experiment.
#
# *The PE cannot replace the word embedding:* $\mathrm{PE}_t$ is a function of $t$ alone, so a model
# fed only $\mathrm{PE}_1, \ldots, \mathrm{PE}_T$ receives the same input for every text of length
# $T$. That is a fact about the definition, not something to measure.
#
# *The word embedding cannot do the PE's job* is the half worth testing, because the word
# embedding is learned and one might hope training puts position into it. It cannot: $e_w$ is one
# row of a table indexed by the byte $w$, the **same vector at every position**, so a model that
# reads only word embeddings (NoPE, bidirectional, mean-pooled) is a function of the *bag of bytes*.
# It cannot tell "ab" from "ba". How much does that cost on real text?
#
# **Experiment.** Windows of 16 bytes of the corpus (Python's documentation), each shown twice:
# as it is (label 1) and with its bytes shuffled (label 0). Both versions hold the same bytes, so
# the bag-of-bytes model gives them the same output $\hat p$, and on such a pair its mean
# cross-entropy is
#
# $$
# -\tfrac12\big(\log \hat p + \log(1 - \hat p)\big) \;\ge\; \log 2 = 0.693 \text{ nats},
# $$
#
# with equality at $\hat p = \tfrac12$: whatever it learns, it cannot beat a coin. A model with a
# PE can use the order of the bytes (real text has "th" and "e " where shuffled text has "hq" and
# "x}"), and how far below $\log 2$ it gets in 300 steps is the measurement. Two PEs, entering at
# two different places: the sinusoid added to the input (as in Q1) and RoPE, which leaves the
# input alone and rotates $q$ and $k$ so that their dot product depends on $i - j$ (chapter 4).
#
# The checks: (1) the NoPE model's outputs on a window and its shuffle are equal (a `[NO ]` would be
# a bug: position leaking in); (2) its test loss is at least $\log 2$ up to rounding; (3) each PE
# model's test loss is below $0.6$ nats, clearly under $\log 2$, with an accuracy above 65%. A
# `[NO ]` on (3) means that model did not learn the task in 300 steps; the line under it prints its
# mean training loss over the first and the last 20 steps, which tells a model that is learning
# slowly from one still sitting on the plateau $\log 2$ where it answers $\tfrac12$ for everything
# (whether more steps would get it off the plateau is not tested here).

# %%
train_bytes, val_bytes = corpus().train, corpus().val


def shuffle_pairs(rng, data, n, T=16):
    """n windows of T bytes, each as it is (label 1) and shuffled (label 0): (2n, T), (2n,)."""
    starts = rng.integers(0, len(data) - T, n)
    real = np.stack([data[s:s + T] for s in starts]).astype(np.int64)
    shuffled = np.array([rng.permutation(w) for w in real])
    return np.concatenate([real, shuffled]), np.concatenate([np.ones(n, np.int64), np.zeros(n, np.int64)])


xs_test, ys_test = shuffle_pairs(np.random.default_rng(3), val_bytes, 500)
shuf = {}
for pe in ["nope", "sinusoidal", "rope"]:
    clf = TransformerClassifier(tinype.ModelConfig(pe=pe, causal=False, T_train=16, n_layer=2), 2, seed=0)
    hist = fit(clf, lambda step: shuffle_pairs(np.random.default_rng([4, step]), train_bytes, 32), 300, lr=3e-3)
    logits = clf.logits(xs_test)
    shuf[pe] = dict(loss=clf.loss(xs_test, ys_test), acc=accuracy(clf, xs_test, ys_test),
                    pair_gap=float(np.abs(logits[:500] - logits[500:]).max()),
                    first=float(np.mean(hist[:20])), last=float(np.mean(hist[-20:])))
    print(f"  shuffled-text task, {pe:10s}: test loss {shuf[pe]['loss']:.4f} nats (log 2 = {np.log(2):.4f}), "
          f"accuracy {shuf[pe]['acc']:.1%}, max |logit(window) - logit(shuffle)| = {shuf[pe]['pair_gap']:.1e}")
check("bag of bytes: the NoPE model gives a window and its shuffle the same logits",
      shuf["nope"]["pair_gap"] < 1e-4, f"max difference {shuf['nope']['pair_gap']:.1e}")
check("so its test loss cannot beat log 2", shuf["nope"]["loss"] > np.log(2) - 1e-4, f"{shuf['nope']['loss']:.4f}")
for pe in ["sinusoidal", "rope"]:
    r = shuf[pe]
    if not check(f"with the {pe} PE the same model tells text from shuffled text (loss < 0.6 nats, accuracy > 65%)",
                 r["loss"] < 0.6 and r["acc"] > 0.65, f"{r['loss']:.3f} nats, {r['acc']:.1%}"):
        print(f"      -> not learned in 300 steps: training loss {r['first']:.3f} over the first 20 steps, {r['last']:.3f} "
              f"over the last 20" + (" (still on the log 2 plateau)" if r["last"] > np.log(2) - 0.01 else ""))

# %% [markdown]
# So the article's answer holds, for a sharper reason than "different information": the word
# embedding is position-blind *by its indexing*, however it is trained, and the price of that on
# real text is the gap between the NoPE loss and the losses of the models that learned the task.
# The PE must enter somewhere else: added to the input (Q1), as a rotation of $q$ and $k$ (RoPE)
# or as a bias on the attention logits (ALiBi, T5); chapter 4 derives each. Where it enters also
# decides how easily a model learns to use it, as the two PE models above may show: the printed
# lines say whether both learned the task in the same budget.
#
# ## 9.3 Q3 / Q4. The PE's drawbacks, and how extrapolation improves
#
# The article's answer to Q3 (a PE "cannot capture different representations of a word in
# different sentences") describes context, which attention provides, not position. The drawbacks
# that matter for this course show up when a model reads past its training length
# $T_{\text{train}}$:
#
# - a **learned** table has exactly $T_{\text{train}}$ rows: position $T_{\text{train}}$ has no
#   vector at all;
# - the **sinusoidal** PE is defined at every position, but beyond $T_{\text{train}}$ the model
#   meets combinations of phases it never saw in training.
#
# The article's answer to Q4 (more task information, other architectures) names no mechanism. The
# mechanism the literature found (Press et al. 2022, *Train Short, Test Long*) is to move the PE
# out of the input and into attention as a penalty on distance, ALiBi:
# $s_{ij} = q_i \cdot k_j/\sqrt{d} - m_h (i - j)$, which looks the same at every absolute position.
#
# **Experiment.** Six byte-level language models, identical (the quick preset: 2 layers, width 64,
# $T_{\text{train}} = 64$) except for the PE: none, learned, sinusoidal, log-sinusoidal (Q6), ALiBi
# and RoPE (Q6's second reading); 250 training steps each. Each is evaluated on the same 16 KiB of
# validation text cut into non-overlapping windows of $L = 64, 256, 1024, 2048$ bytes; the number is
# the perplexity $\exp(\text{mean NLL per byte})$, lower is better. The checks: the learned table
# cannot run at $4\times$; the sinusoid's perplexity at $32\times$ is more than 1.3 times its value at
# $1\times$; ALiBi's at $32\times$ is below the sinusoid's and within 10% of its own value at $1\times$.
# A `[NO ]` on the last would mean that even a distance penalty does not make a 250-step model flat
# at 32x.

# %%
lengths = [64, 256, 1024, 2048]
models = {pe: quick_lm(pe, steps=250) for pe in ["nope", "learned", "sinusoidal", "log_sinusoidal", "alibi", "rope"]}
logn = models["rope"].__class__(models["rope"].config, seed=0)          # the rope model, evaluated with log-n
logn.load_parameters(models["rope"].parameters())
logn.config = replace(logn.config, pe="rope+logn")
logn.pe = tinype.positions.get("rope+logn")
logn.pe.setup(logn.config)
models["rope+logn"] = logn
rows = {pe: [ppl(m, L) for L in lengths] for pe, m in models.items()}
print("  perplexity per byte; columns: evaluation length L (T_train = 64)")
print("  " + "encoding".ljust(16) + "".join(f"{L:>9d}" for L in lengths))
for pe, row in rows.items():
    print("  " + pe.ljust(16) + "".join(f"{fmt(v):>9s}" for v in row))

# %%
s, a = rows["sinusoidal"], rows["alibi"]
check("Q3: the learned table cannot run at 4x T_train", rows["learned"][1] is None)
check("Q3: the sinusoid runs past T_train but its perplexity at 32x is > 1.3x its value at 1x", s[-1] > 1.3 * s[0],
      f"{fmt(s[0])} -> {fmt(s[-1])}")
check("Q4: the distance bias (ALiBi) is better than the sinusoid at 32x", a[-1] < s[-1], f"{fmt(a[-1])} vs {fmt(s[-1])}")
check("Q4: and ALiBi stays within 10% of its own perplexity at 1x", a[-1] < 1.1 * a[0], f"{fmt(a[0])} -> {fmt(a[-1])}")

# %% [markdown]
# ## 9.4 Q5, continued. A causal model without a PE still learns order
#
# §9.1 needed a bidirectional model. A **causal** language model is different: query $i$ attends only
# to keys $j \le i$, so the mask itself breaks the symmetry of §9.1. Position leaks in through it:
# the first token attends only to itself, its neighbour to two tokens, and, for instance, the
# average of the values a query sees is an average over $i + 1$ vectors, whose spread shrinks like
# $1/\sqrt{i+1}$, a signal of $i$ (Kazemnejad et al. 2023 study how far NoPE models go with it).
# So "a Transformer needs a PE" is true of the bidirectional encoder of the original paper, and only
# partly of a causal decoder.
#
# **Measurement.** The NoPE language model of §9.3 against the best model that ignores order
# entirely: the byte frequencies of the training text (a unigram model, add-one smoothed), whose
# perplexity on the same validation text is $\exp\big(-\frac{1}{N}\sum_n \log \hat P(w_n)\big)$.
# The check asks for NoPE to be below 60% of it. A `[NO ]` would mean the causal mask alone was not
# enough for the model to use the order of the context.

# %%
counts = np.bincount(train_bytes, minlength=256) + 1.0
unigram = float(np.exp(-np.log((counts / counts.sum())[val_bytes]).mean()))
check("Q5: a causal NoPE model predicts far better than an order-blind byte model (< 60% of its perplexity)",
      rows["nope"][0] < 0.6 * unigram, f"{fmt(rows['nope'][0])} vs unigram {unigram:.1f}")

# %% [markdown]
# ## 9.5 Q6 / Q7. The log encoding: why it should help, and its limits
#
# Article 002 proposes $f(n) = \log(n + 1)$ and never says where it enters the model; its §5 code
# does not compute it (DESIGN.md, errata). tinype tests both readings found in the literature:
#
# 1. **log-compressed positions** in a sinusoid (`log_sinusoidal`): position $p$ is encoded as if it
#    were $p' = T_{\text{train}} \ln(1 + p) / \ln(1 + T_{\text{train}})$, so $0 \ldots T_{\text{train}}$
#    maps onto itself and longer inputs are squeezed;
# 2. **log-n scaling** of the attention logits (`+logn`, an evaluation-time change applied here to
#    the RoPE model): the logits of the query at position $i$ are multiplied by
#    $\max\big(1, \ln(i+1) / \ln T_{\text{train}}\big)$. The argument: a query that attends over $n$
#    keys with scores of fixed spread has a softmax whose entropy grows like $\ln n$; scaling the
#    logits by $\ln n / \ln T_{\text{train}}$ keeps it near its trained value.
#
# **Q6** (does it extrapolate better?): each reading against its own baseline at $32\times$.
#
# **Q7** (its limits): reading 1 has a built-in one. Neighbouring positions $p$ and $p+1$ map to
#
# $$
# p'(p+1) - p'(p) = \frac{T_{\text{train}}}{\ln(1 + T_{\text{train}})} \ln\frac{p + 2}{p + 1}
# \approx \frac{T_{\text{train}}}{(p+1)\ln(1 + T_{\text{train}})},
# $$
#
# which shrinks like $1/p$: at $p = 63$ it is $64 \ln(65/64)/\ln 65 = 0.24$ of a position, and at
# $p = 2047$ only $0.0075$. Far-apart positions crowd together, so the model cannot tell nearby
# bytes apart by position any more, yet inside $T_{\text{train}}$ it was trained on spacings that
# shrink too. The cell computes these spacings with tinype's `log_positions`, then the checks. If
# the Q6 checks print `[NO ]`, the log encoding did not beat its baseline at this scale, the
# article's claim is not supported here, and the printed sentence says by how much.

# %%
T0 = 64
lp = tinype.positions.log_positions(np.array([63, 64, 2047, 2048]), T0)
print(f"  spacing of log-compressed positions: at p=63: {lp[1] - lp[0]:.4f}, at p=2047: {lp[3] - lp[2]:.4f} "
      f"(p=2048 is encoded as p'={lp[3]:.1f})")
ls, r, rl = rows["log_sinusoidal"], rows["rope"], rows["rope+logn"]
for name, base, new in (("log-compressed positions vs the sinusoid", s, ls), ("log-n scaling vs plain RoPE", r, rl)):
    ok = check(f"Q6 ({name}): better at 32x", new[-1] < base[-1], f"{fmt(new[-1])} vs {fmt(base[-1])}")
    if not ok:
        print(f"      -> not supported here: {100 * (new[-1] / base[-1] - 1):+.0f}% perplexity against the baseline")
ok = check("Q7: log-compressed positions stay within 10% of their own 1x perplexity at 32x", ls[-1] < 1.1 * ls[0],
           f"{fmt(ls[0])} -> {fmt(ls[-1])}")
if not ok:
    print("      -> the compression does not make the sinusoid flat: the model still meets phases it never saw"
          " (p' beyond 64) and crowded positions whose spacing it never saw")

# %%
plt = pyplot()
fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2))
labels = ["order:\nNoPE", "order:\nsinusoidal", "shuffled?\nNoPE", "shuffled?\nsinusoidal", "shuffled?\nRoPE"]
vals = [order_acc["nope"], order_acc["sinusoidal"], shuf["nope"]["acc"], shuf["sinusoidal"]["acc"], shuf["rope"]["acc"]]
a1.bar(labels, [100 * v for v in vals], color=["C7", "C0", "C7", "C0", "C5"])
a1.axhline(50, color="gray", linestyle="--", label="chance (50%)")
a1.set_ylabel("test accuracy (%)")
a1.set_xlabel("task and encoding (bidirectional classifier, 300 steps)")
a1.set_title("Q1/Q2/Q5: order questions (first < last letter? text or shuffled?)")
a1.legend(fontsize=8)
a1.tick_params(axis="x", labelsize=8)
plot_lengths(a2, lengths, {("learned (runs only at 64)" if pe == "learned" else pe): row for pe, row in rows.items()},
             "Q3/Q4/Q6/Q7: trained at 64 bytes, tested to 2048")
a2.set_ylabel("perplexity per byte (lower is better)")
savefig(fig, FIG, "faq.png")

# %% [markdown]
# ## 9.6 Reading the answers
#
# Every `[yes]` and `[NO ]` above is a measurement from this run; together they are the answers.
# Where a check says `[NO ]` about an article's claim (typically Q6 and Q7, the log encoding), the
# claim is not supported by a 250-step, 2-layer model; the lab (`tinype lab --pe log_sinusoidal
# rope+logn ...`, several seeds, the standard preset) is how to test it at a larger scale.
# The exercises in `chapters/exercises/` rebuild the pieces used here (the sinusoidal table, ALiBi
# slopes, the softmax and attention backward) so that the same experiments can run on your own code.

# %%
done()
