# %% [markdown]
# # Chapter 6. Applications (实际应用场景)
#
# Article 002 §6 names three uses of an encoding that extrapolates: machine translation, text
# generation, and long-text classification. Article 000 §6 adds translation, summarisation and
# image captioning. The two we can measure on a laptop, with the bundled corpus, are the ones that
# are about *length*:
#
# 1. Long-text classification: train a classifier on short texts, test it on long ones. A model that
#    reads long inputs well should get *better* with more text, since there is more evidence.
# 2. Generation past the training length: let a model write more bytes than it ever saw in one window,
#    with the whole text as context, and watch whether the text stays text.

# %%
import re

import numpy as np

import tinype
from tinype.classify import TransformerClassifier, accuracy, fit
from tinype.tasks import TopicClassification
from common import check, corpus, done, figure_dir, heading, pyplot, quick_lm, savefig, say

FIG = figure_dir("ch6")
heading("6.1 Long-text classification: trained on 64 bytes, tested on up to 1024")
task = TopicClassification()
lengths = [64, 128, 256, 512, 1024]
encodings = ["learned", "sinusoidal", "rope", "alibi"]
acc = {}
for pe in encodings:
    clf = TransformerClassifier(tinype.ModelConfig(pe=pe), task.n_classes, seed=0)
    fit(clf, lambda step: task.sample(np.random.default_rng([0, step]), 32, 64, "train"), 200, lr=3e-3)
    row = []
    for L in lengths:
        x, y = task.sample(np.random.default_rng([7, L]), 100, L, "test")
        try:
            clf.trunk.pe.check_length(L)
            row.append(accuracy(clf, x, y, batch_size=20))
        except ValueError:
            row.append(None)
    acc[pe] = row
print("  test accuracy by text length (trained on 64-byte snippets; chance 20%):")
print("  " + "encoding".ljust(12) + "".join(f"{L:>8d}" for L in lengths))
for pe, row in acc.items():
    print("  " + pe.ljust(12) + "".join(f"{'n/a' if v is None else f'{v:.0%}':>8s}" for v in row))
check("learned positions cannot classify a text longer than 64 bytes", acc["learned"][1] is None)
check("ALiBi gains accuracy from longer texts (1024 vs 64 bytes)", acc["alibi"][-1] > acc["alibi"][0],
      f"{acc['alibi'][0]:.0%} -> {acc['alibi'][-1]:.0%}")
check("at 1024 bytes ALiBi beats the sinusoid", acc["alibi"][-1] > acc["sinusoidal"][-1],
      f"{acc['alibi'][-1]:.0%} vs {acc['sinusoidal'][-1]:.0%}")

# %%
heading("6.2 Generation past the training length")
say("""Each model writes 512 bytes after a prompt, reading the whole text so far (no sliding window),
so everything after byte 64 is generated at positions it never trained on. Two crude, honest
measures per segment: the share of bytes that are printable ASCII, and the share of its words
(runs of letters) that are real words, i.e. occur in the training text.""")
prompt = "The for statement is used to iterate over the elements of a sequence"
VOCAB = set(re.findall(r"[A-Za-z]+", tinype.decode(corpus().train)))


def quality(text):
    b = text.encode("utf-8", errors="replace")
    printable = np.mean([32 <= c < 127 or c in (9, 10) for c in b]) if b else 0.0
    words = re.findall(r"[A-Za-z]+", text)
    return printable, (np.mean([w in VOCAB for w in words]) if words else 0.0)


segments = [(0, 64), (64, 256), (256, 512)]
gen = {}
for pe in ["sinusoidal", "rope", "alibi"]:
    model = quick_lm(pe, steps=300)
    text = tinype.generate(model, prompt, max_new_tokens=512, temperature=0.6, seed=0)
    gen[pe] = (text, [quality(text[a:b]) for a, b in segments])
    print(f"\n  --- {pe}, bytes 256..384 of the continuation:\n  {text[256:384]!r}")
print("\n  printable share / real-word share, by segment of the continuation:")
print("  " + "encoding".ljust(12) + "".join(f"{f'{a}-{b}':>16s}" for a, b in segments))
for pe, (_, q) in gen.items():
    print("  " + pe.ljust(12) + "".join(f"{p:>9.0%} / {d:<4.0%}" for p, d in q))
check("past 256 bytes, ALiBi writes more real words than the sinusoid", gen["alibi"][1][2][1] > gen["sinusoidal"][1][2][1],
      f"{gen['alibi'][1][2][1]:.0%} vs {gen['sinusoidal'][1][2][1]:.0%}")

plt = pyplot()
fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4))
for pe, row in acc.items():
    xs = [L for L, v in zip(lengths, row) if v is not None]
    a1.plot(xs, [100 * v for v in row if v is not None], marker="o", label=pe)
a1.axvline(64, color="gray", linestyle="--")
a1.set_xscale("log", base=2)
a1.set_xlabel("text length (bytes)")
a1.set_ylabel("accuracy (%)")
a1.set_title("Classify long texts after training on 64 bytes")
a1.legend()
width = 0.25
for k, (pe, (_, q)) in enumerate(gen.items()):
    a2.bar(np.arange(3) + k * width, [100 * d for _, d in q], width, label=pe)
a2.set_xticks(np.arange(3) + width, [f"bytes {a}-{b}" for a, b in segments])
a2.set_ylabel("real words (%)")
a2.set_title("Generated text: real words by segment (T_train = 64)")
a2.legend()
savefig(fig, FIG, "long_texts.png")
done()
