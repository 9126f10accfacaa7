# %% [markdown]
# # Chapter 2. Core concepts (核心概念与联系)
#
# Three ideas, in both articles: the language model (002 §2.1), the positional encoding (000 §2.1,
# 002 §2.2) and extrapolation (000 §2.2, 002 §2.3). Each is shown here by a measurement.
#
# Errata this chapter corrects:
# - 000 §2.1 says GPT-3 gives positions "a random or fixed vector". GPT-style models (GPT-2, GPT-3)
#   *learn* one vector per absolute position; the fixed sinusoid is the original Transformer's.
# - 000 §2.2 defines extrapolation as moving from a specific task to general ones. In this field it
#   means reading sequences longer than those seen in training (as 002 §2.3 says).

# %%
import numpy as np

import tinype
from tinype import positions
from common import check, done, figure_dir, heading, pyplot, savefig, say

FIG = figure_dir("ch2")
heading("2.1 A language model predicts the next byte")
text = "def f(x):\n    return x"
ids = tinype.encode(text)
say(f"""tinype's tokenizer is UTF-8 itself: {text!r} becomes {len(ids)} byte ids {ids[:8].tolist()}...
A model outputs, at every position, a distribution over the 256 possible next bytes. An untrained one
is close to uniform, so its perplexity is close to 256.""")
model = tinype.Transformer(tinype.ModelConfig(pe="rope"), seed=0)
x, y = ids[None, :-1].astype(np.int64), ids[None, 1:].astype(np.int64)
loss = model.loss(x, y)
check("an untrained model's perplexity is near 256", 200 < np.exp(loss) < 300, f"exp(loss) = {np.exp(loss):.1f}")

# %%
heading("2.2 Without a positional encoding, attention cannot see order")
say("""Self-attention mixes tokens by content similarity only. Permute the input of a bidirectional
(non-causal) Transformer with no positional encoding and its outputs are permuted the same way: it
cannot tell "ab" from "ba". Add any PE and this symmetry breaks.""")
rng = np.random.default_rng(0)
idx = rng.integers(0, 256, (1, 12))
perm = rng.permutation(12)
for pe in ["nope", "sinusoidal", "rope", "alibi"]:
    m = tinype.Transformer(tinype.ModelConfig(pe=pe, causal=False, dtype="float64"), seed=1)
    out, out_p = m.forward(idx), m.forward(idx[:, perm])
    equivariant = np.allclose(out[:, perm], out_p, atol=1e-10)
    check(f"{pe:>10s}: permuting the input only permutes the output" if pe == "nope"
          else f"{pe:>10s}: the output depends on order", equivariant == (pe == "nope"))
say("""A causal model is different: the mask itself tells a token how many tokens precede it, so a causal
NoPE model can learn positions implicitly (Kazemnejad et al. 2023); chapter 9 measures it.""")

# %%
heading("2.3 Four places an encoding can act")
groups = {"added to the token embeddings": [], "rotating queries and keys": [],
          "a bias on attention logits": [], "scaling attention logits": [], "none": []}
cfg = tinype.ModelConfig(pe="nope")
for name in positions.available():
    pe = positions.get(name)
    pe.setup(tinype.ModelConfig(pe=name))
    data = pe.figure_data(16)
    placed = False
    for key, group in (("table", "added to the token embeddings"), ("cos", "rotating queries and keys"),
                       ("bias", "a bias on attention logits"), ("logit_scale", "scaling attention logits")):
        if key in data:
            groups[group].append(name)
            placed = True
    if not placed:
        groups["none"].append(name)
for group, names in groups.items():
    print(f"  {group:32s} {', '.join(names)}")
say("""The learned table is what GPT-2 and GPT-3 use (not "a random or fixed vector": erratum 000 §2.1).
It has one row per trained position, so by construction it cannot extrapolate:""")
learned = tinype.Transformer(tinype.ModelConfig(pe="learned", T_train=64))
try:
    learned.forward(np.zeros((1, 65), dtype=np.int64))
    check("a learned table refuses positions past its size", False)
except ValueError as err:
    check("a learned table refuses positions past its size", True, str(err)[:90])

# %%
heading("2.4 Pictures of the encodings")
plt = pyplot()
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
table = positions.sinusoidal_table(np.arange(128), 64)
im = axes[0].imshow(table.T, aspect="auto", cmap="RdBu", vmin=-1, vmax=1)
axes[0].set_xlabel("position p")
axes[0].set_ylabel("dimension")
axes[0].set_title("sinusoidal table (d = 64)")
fig.colorbar(im, ax=axes[0])
for name, ax in (("rope", axes[1]), ("alibi", axes[2])):
    pe = positions.get(name)
    pe.setup(tinype.ModelConfig(pe=name, n_head=4, d_model=64))
    d = pe.figure_data(64)
    if name == "rope":
        for k in (0, 2, 4, 7):
            ax.plot(d["cos"][:, k], d["sin"][:, k], ".-", markersize=3, linewidth=0.6, label=f"pair {k}")
        ax.set_aspect("equal")
        ax.set_title("RoPE: each channel pair rotates\nat its own speed (64 positions)")
        ax.legend(fontsize=7)
    else:
        for h in range(d["bias"].shape[0]):
            ax.plot(d["bias"][h], label=f"head {h}")
        ax.set_xlabel("distance i - j")
        ax.set_title("ALiBi: bias -m_h (i - j) per head")
        ax.legend(fontsize=7)
savefig(fig, FIG, "encodings.png")

fig, ax = plt.subplots(figsize=(6.5, 4))
for name in ["alibi", "t5", "kerple_log", "kerple_power", "sandwich"]:
    pe = positions.get(name)
    pe.setup(tinype.ModelConfig(pe=name, n_head=4, d_model=64))
    b = pe.figure_data(256)["bias"]
    ax.plot(np.arange(b.shape[-1]), b[1] if b.ndim == 2 else b[1, -1, ::-1], label=f"{name} (head 1)")
ax.set_xlabel("distance i - j (bytes)")
ax.set_ylabel("bias added to the logit")
ax.set_yscale("symlog", linthresh=1.0)
ax.set_title("Bias over distance at initialisation\n(T5's buckets start at zero and are learned)")
ax.legend(fontsize=8)
savefig(fig, FIG, "bias_over_distance.png")
done()
