# %% [markdown]
# # Chapter 9. Questions and answers (附录：常见问题与解答), each answered by an experiment
#
# Article 000 asks: (1) what does adding the PE to the word embedding do? (2) why can't the PE be used
# as the word embedding directly? (3) what are the PE's drawbacks? (4) how can extrapolation improve?
# Article 002 asks: (5) why is a PE necessary for a Transformer? (6) why would the log encoding
# extrapolate better? (7) what are its limits?

# %%
import numpy as np

import tinype
from tinype.classify import TransformerClassifier, accuracy, fit
from common import check, corpus, done, figure_dir, fmt, heading, plot_lengths, ppl, pyplot, quick_lm, savefig, say

FIG = figure_dir("ch9")
heading("Q1 / Q5. What does the PE add, and why does a Transformer need one?")
say("""Task: is the first letter of a random 12-letter string alphabetically before the last one? The
same letters in another order give the other answer, so a model blind to order is at 50%. A
bidirectional Transformer classifier, 300 steps, with no PE and with the sinusoidal PE.""")


def order_batch(rng, n=64, T=12):
    x = rng.integers(97, 123, (n, T))
    x[:, -1] = np.where(x[:, -1] == x[:, 0], (x[:, 0] - 97 + 1) % 26 + 97, x[:, -1])   # no ties
    return x, (x[:, 0] < x[:, -1]).astype(np.int64)


x_test, y_test = order_batch(np.random.default_rng(1), 1000)
order_acc = {}
for pe in ["nope", "sinusoidal"]:
    clf = TransformerClassifier(tinype.ModelConfig(pe=pe, causal=False, T_train=12, n_layer=2), 2, seed=0)
    fit(clf, lambda step: order_batch(np.random.default_rng([2, step])), 300, lr=3e-3)
    order_acc[pe] = accuracy(clf, x_test, y_test)
    print(f"  {pe:12s} test accuracy {order_acc[pe]:.1%}")
check("without a PE, a bidirectional Transformer cannot beat chance on an order question",
      abs(order_acc["nope"] - 0.5) < 0.06)
check("with the sinusoidal PE it can", order_acc["sinusoidal"] > 0.8)
say("""Adding the PE to the embedding (Q1) gives each token vector a position-dependent part, so attention
can tell "first" from "last". A *causal* model is different: the mask leaks position (see below).""")

# %%
heading("Q2. Why can't the PE be the word embedding?")
model = tinype.Transformer(tinype.ModelConfig(pe="sinusoidal", dtype="float64"), seed=0)
model.params["wte"][:] = model.params["wte"][0]                    # every byte gets the same embedding
a, b = tinype.encode("for x in y:"), tinype.encode("while True:")
la, lb = model.forward(a[None]), model.forward(b[None])
check("with only positions in the input, two different texts give identical predictions",
      np.allclose(la, lb), "the PE carries where, never what")

# %%
heading("Q3 / Q4 / Q6 / Q7. Drawbacks, improvements, and the log encoding's limits")
lengths = [64, 256, 1024, 2048]
models = {pe: quick_lm(pe, steps=250) for pe in ["nope", "learned", "sinusoidal", "log_sinusoidal", "alibi"]}
rows = {pe: [ppl(m, L) for L in lengths] for pe, m in models.items()}
print("  " + "encoding".ljust(16) + "".join(f"{L:>9d}" for L in lengths))
for pe, row in rows.items():
    print("  " + pe.ljust(16) + "".join(f"{fmt(v):>9s}" for v in row))
check("Q3: a learned table cannot run past its size at all", rows["learned"][1] is None)
check("Q3: the sinusoid runs, but degrades past T_train", rows["sinusoidal"][-1] > 1.3 * rows["sinusoidal"][0],
      f"{fmt(rows['sinusoidal'][0])} -> {fmt(rows['sinusoidal'][-1])}")
check("Q4: a distance bias (ALiBi) extrapolates far better than the sinusoid at 32x",
      rows["alibi"][-1] < rows["sinusoidal"][-1], f"{fmt(rows['alibi'][-1])} vs {fmt(rows['sinusoidal'][-1])}")
counts = np.bincount(corpus().train, minlength=256) + 1.0           # a model that ignores order entirely
unigram = float(np.exp(-np.log((counts / counts.sum())[corpus().val]).mean()))
check("Q5: a causal NoPE model still learns order (perplexity far below an order-blind byte model's)",
      rows["nope"][0] < 0.6 * unigram, f"{fmt(rows['nope'][0])} vs {unigram:.1f}")
ls, s = rows["log_sinusoidal"], rows["sinusoidal"]
check("Q6: the log encoding beats the plain sinusoid at 32x", ls[-1] < s[-1], f"{fmt(ls[-1])} vs {fmt(s[-1])}")
check("Q7: the log encoding stays within 10% of its T_train perplexity at 32x", ls[-1] < 1.1 * ls[0],
      f"{fmt(ls[0])} -> {fmt(ls[-1])}")
say("""Read the checks as the answers: each line is a measurement on this machine, not an opinion.
Where a check says NO, the article's answer is not supported at this scale.""")

plt = pyplot()
fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4))
a1.bar(list(order_acc), [100 * v for v in order_acc.values()])
a1.axhline(50, color="gray", linestyle="--")
a1.set_ylabel("accuracy (%)")
a1.set_title("Q1/Q5: an order question, bidirectional model")
plot_lengths(a2, lengths, rows, "Q3/Q4/Q6/Q7: train at 64, test to 2048")
savefig(fig, FIG, "faq.png")
done()
