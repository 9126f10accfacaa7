# %% [markdown]
# # Chapter 2. Core concepts (核心概念与联系)
#
# Three ideas run through both articles: the **language model** (002 §2.1, 000 §2.3), the
# **positional encoding** (000 §2.1, 002 §2.2) and **extrapolation** (000 §2.2, 002 §2.3). This
# chapter defines each precisely enough to compute with: the objective a language model minimises,
# the perplexity every table of this course reports, why self-attention needs a positional encoding
# at all (a short proof, then a measurement), and the four places an encoding can act.
#
# Errata this chapter shows and corrects:
# - 000 §2.1 says GPT-3 gives positions "a random or fixed vector". GPT-style models (GPT-2, GPT-3)
#   **learn** one vector per absolute position; the fixed sinusoid is the original Transformer's.
# - 000 §2.2 defines extrapolation as moving "from a specific task to general tasks". In this field
#   it means reading sequences **longer than those seen in training** (as 002 §2.3 says).

# %%
import numpy as np
from common import check, done, figure_dir, heading, pyplot, savefig

import tinype
from tinype import kernels, positions

FIG = figure_dir("ch2")
rng = np.random.default_rng(0)

# %% [markdown]
# ## 2.1 The language-model objective
#
# A language model assigns a probability to a whole sequence $x_1, \dots, x_T$ by the chain rule of
# probability, one next token at a time:
#
# $$
# p_\theta(x_1, \dots, x_T) = \prod_{t=1}^{T} p_\theta(x_t \mid x_1, \dots, x_{t-1}).
# $$
#
# A Transformer computes all the conditionals of one window in a single pass: at position $t$ it
# outputs $V$ logits $z_t$ and $p_\theta(\cdot \mid x_{\le t}) = \mathrm{softmax}(z_t)$; the
# causal mask keeps position $t$ from seeing $x_{t+1}, \dots$. Training minimises the **mean
# negative log-likelihood** (the cross-entropy, nats per token) of the true next tokens over the
# $N = B \cdot T$ positions of a batch of $B$ windows:
#
# $$
# \mathcal{L}(\theta) = \frac{1}{N} \sum_{b=1}^{B} \sum_{t=1}^{T} -\ln p_\theta\big(x^{(b)}_{t+1} \mid x^{(b)}_{1..t}\big).
# $$
#
# tinype's tokens are **bytes**: its tokenizer is UTF-8 itself, so $V = 256$ and any text round-trips
# with no vocabulary to train. A reference point: a model that knows nothing predicts each byte with
# probability $1/256$, so its loss is $\ln 256 \approx 5.545$. An untrained tinype model starts
# close to it (its logits are small random numbers); the check asks that its loss lie within 5% of
# $\ln 256$, and would print `[NO ]` if the initialisation made confident (and therefore mostly
# wrong) predictions.

# %%
heading("2.1 The language-model objective")
text = "def f(x):\n    return x"
ids = tinype.encode(text)
print(f"  {text!r} -> {len(ids)} byte ids {ids[:10].tolist()} ...; decode gives it back: "
      f"{tinype.decode(ids) == text}")
model = tinype.Transformer(tinype.ModelConfig(pe="rope"), seed=0)
x, y = ids[None, :-1].astype(np.int64), ids[None, 1:].astype(np.int64)      # y is x shifted by one
loss = model.loss(x, y)
print(f"  untrained model: loss {loss:.4f} nats/byte, ln 256 = {np.log(256):.4f}")
check("an untrained model's loss is within 5% of ln 256", abs(loss / np.log(256) - 1) < 0.05,
      f"loss / ln 256 = {loss / np.log(256):.3f}")

# %% [markdown]
# ## 2.2 Perplexity over non-overlapping windows
#
# Losses in nats are hard to feel; their exponential is not. The **perplexity** of a model on a
# text is the exponential of its mean negative log-likelihood per predicted token:
#
# $$
# \mathrm{PPL} = \exp\Big( \frac1N \sum_{n=1}^{N} -\ln p_\theta(y_n \mid \text{context}_n) \Big)
# = \Big( \prod_{n=1}^{N} p_\theta(y_n \mid \text{context}_n) \Big)^{-1/N},
# $$
#
# the inverse geometric mean of the probabilities given to the right answers: a PPL of 5 means the
# model is on average as unsure as a uniform choice among 5 bytes (1 is perfect, 256 uniform).
#
# A model reads a window of finite length, so "context" needs a protocol. tinype's default,
# `tinype.evaluate_lm(model, data, L)`, cuts the validation text $d_0, d_1, \dots$ into
# **non-overlapping windows** of $L$ inputs: window $w$ starts at $wL$, reads
# $d_{wL}, \dots, d_{wL+L-1}$ and predicts the next byte at each of its $L$ positions. With
# $W = \lfloor (|d| - 1) / L \rfloor$ windows (the bytes left over at the end are not used),
#
# $$
# \mathrm{PPL}(L) = \exp\Big( \frac{1}{W L} \sum_{w=0}^{W-1} \sum_{t=0}^{L-1} -\ln p_\theta\big(d_{wL+t+1} \,\big|\, d_{wL}, \dots, d_{wL+t}\big) \Big).
# $$
#
# Two consequences to keep in mind. The byte at the start of each window is predicted from one
# byte of context, the last one from $L$: $\mathrm{PPL}(L)$ averages over context lengths
# $1, \dots, L$. And at $L > T_{\text{train}}$ the positions $T_{\text{train}}, \dots, L - 1$ are
# ones the model never saw in training, which is what chapter 1's experiment measures.
#
# **Worked example by hand.** Take the 9-byte text `abacabada` and a toy bigram "model" that looks
# only at the current byte: after `a` it predicts `b` with probability $1/2$, `c` and `d` with
# $1/4$ each; after `b`, `c` or `d` it predicts `a` with probability 1. With $L = 4$ there are
# $W = \lfloor 8/4 \rfloor = 2$ windows:
#
# | window | inputs | targets | probabilities | $-\log_2 p$ (bits) |
# |---|---|---|---|---|
# | 0 | a b a c | b a c a | 1/2, 1, 1/4, 1 | 1, 0, 2, 0 |
# | 1 | a b a d | b a d a | 1/2, 1, 1/4, 1 | 1, 0, 2, 0 |
#
# The mean is $6/8 = 0.75$ bits per byte, so $\mathrm{PPL} = 2^{0.75} \approx 1.682$ (in nats:
# $\exp(0.75 \ln 2)$, the same number). The cell below builds this toy model as an object with a
# `forward(x)` that returns logits $\ln p$ (so the softmax gives back $p$), hands it to tinype's own
# `evaluate_lm`, and compares. The check would print `[NO ]` if tinype cut the windows differently
# (overlapping, or scoring the leftover byte) or averaged differently (a mean per window, say).

# %%
heading("2.2 Perplexity over non-overlapping windows")


class Bigram:
    """A toy model: logits depend on the current byte only; log p of the table above, -inf elsewhere."""

    def __init__(self, rules):
        self.logp = np.full((256, 256), -np.inf)
        for cur, nxt in rules.items():
            for byte, prob in nxt.items():
                self.logp[ord(cur), ord(byte)] = np.log(prob)

    def forward(self, x):                                     # x: (B, T) -> logits (B, T, V)
        return self.logp[x]


toy = Bigram({"a": {"b": 0.5, "c": 0.25, "d": 0.25}, "b": {"a": 1.0}, "c": {"a": 1.0}, "d": {"a": 1.0}})
data = tinype.encode("abacabada")
res = tinype.evaluate_lm(toy, data, 4)
print(f"  evaluate_lm: {res['windows']} windows, {res['tokens']} predicted bytes, "
      f"mean NLL {res['nll']:.6f} nats = {res['nll'] / np.log(2):.4f} bits, PPL {res['ppl']:.6f}")
print(f"  by hand: 6 bits / 8 bytes = 0.75 bits, PPL = 2^0.75 = {2 ** 0.75:.6f}")
check("tinype's evaluate_lm gives the hand-computed perplexity 2^0.75",
      res["windows"] == 2 and res["tokens"] == 8 and abs(res["ppl"] - 2 ** 0.75) < 1e-12)

# %% [markdown]
# ## 2.3 Without a positional encoding, attention cannot see order
#
# 002 §2.2 says the Transformer "cannot handle the order of a sequence by itself". Here is the
# precise statement and its proof. Take one self-attention layer **without a mask** and without
# any positional encoding, on the rows $X \in \mathbb{R}^{T \times C}$ of a window:
#
# $$
# A(X) = \mathrm{softmax}\Big( \frac{(X W_q)(X W_k)^\top}{\sqrt D} \Big)\, X W_v ,
# $$
#
# with the softmax taken along each row. Let $\Pi$ be a $T \times T$ permutation matrix (it
# reorders the rows of whatever it multiplies on the left; $\Pi^\top \Pi = I$). Feed the reordered
# window $\Pi X$:
#
# 1. Projections act row by row: $(\Pi X) W = \Pi (X W)$, so $Q, K, V$ become $\Pi Q, \Pi K, \Pi V$.
# 2. The logits: $(\Pi Q)(\Pi K)^\top = \Pi\, Q K^\top \Pi^\top$: the same matrix with its rows
#    *and* columns reordered by the same permutation.
# 3. A row-wise softmax does not care about the order of the entries within a row, nor of the
#    rows: $\mathrm{softmax}(\Pi S \Pi^\top) = \Pi\, \mathrm{softmax}(S)\, \Pi^\top$.
# 4. So
#
# $$
# A(\Pi X) = \Pi P \Pi^\top \, \Pi V = \Pi P V = \Pi\, A(X).
# $$
#
# The layer is **permutation-equivariant**: shuffling the input only shuffles the output. LayerNorm,
# the MLP and the residual connections act on each row alone, so they are equivariant too, and so
# is the whole stack. Worked example: for the two-byte inputs `ab` and `ba`, the output at the
# position holding `a` is the same vector in both: the model cannot tell them apart.
#
# Each positional encoding breaks one step of the proof: an added table makes step 1 false
# ($\Pi X + P \ne \Pi (X + P)$); a rotation or a bias makes the logits depend on $i$ and $j$ in
# step 2. So does the **causal mask** $M$: $\Pi M \Pi^\top \ne M$, which is why a causal model
# without any PE still has *some* positional information (a token sees how many tokens precede
# it; Kazemnejad et al. 2023; chapter 9 measures it).
#
# The cell checks the proof on tinype's attention kernel (random $X$ and projections, no mask),
# then on whole bidirectional models: `nope` must be equivariant (maximum difference at rounding
# level, below $10^{-10}$ in float64), and every model with a PE, or with the causal mask, must
# not be (difference above $10^{-6}$). A `[NO ]` on the first would mean some part of the model
# uses positions it should not; on the others, that the encoding did not reach the output.

# %%
heading("2.3 Without a positional encoding, attention cannot see order")
T, C, H = 10, 16, 2
X = rng.standard_normal((T, C))
Wq, Wk, Wv = (rng.standard_normal((C, C)) for _ in range(3))
perm = rng.permutation(T)


def attention_of(rows):
    q, k, v = ((rows @ W).reshape(1, T, H, C // H).transpose(0, 2, 1, 3).copy() for W in (Wq, Wk, Wv))
    out, _ = kernels.attention_forward(q, k, v, 1 / np.sqrt(C // H), causal=False)
    return out.transpose(0, 2, 1, 3).reshape(T, C)


gap = np.abs(attention_of(X)[perm] - attention_of(X[perm])).max()
check("attention kernel, no mask, no PE: A(Pi X) = Pi A(X)", gap < 1e-12, f"max difference {gap:.1e}")

ab, ba = np.array([[ord("a"), ord("b")]]), np.array([[ord("b"), ord("a")]])
idx = rng.integers(0, 256, (1, 12))                          # 12 random bytes, and a shuffle of them
perm12 = rng.permutation(12)
for pe, causal in [("nope", False), ("sinusoidal", False), ("rope", False), ("alibi", False), ("nope", True)]:
    m = tinype.Transformer(tinype.ModelConfig(pe=pe, causal=causal, dtype="float64"), seed=1)
    gap = np.abs(m.forward(idx)[:, perm12] - m.forward(idx[:, perm12])).max()
    label = f"{pe:>10s}, {'causal' if causal else 'bidirectional'}"
    if pe == "nope" and not causal:
        hand = np.abs(m.forward(ab)[0, 0] - m.forward(ba)[0, 1]).max()
        print(f"  worked example: logits at 'a' in 'ab' vs in 'ba' differ by {hand:.1e}")
        check(f"{label}: permuting the input only permutes the output", gap < 1e-10, f"max difference {gap:.1e}")
    else:
        check(f"{label}: the output depends on order", gap > 1e-6, f"max difference {gap:.1e}")

# %% [markdown]
# ## 2.4 Four places an encoding can act
#
# Every encoding in tinype breaks the symmetry of 2.3 in one (or more) of four places. With
# $e_{x_i}$ the embedding of token $x_i$, $q_i, k_j$ a head's query and key, and $s_{ij}$ the logit
# of query $i$ on key $j$:
#
# **1. Added to the token embeddings** (sinusoidal, learned, log-position sinusoidal, randomized):
# a vector per position, before the first layer.
#
# $$
# h_i^{(0)} = e_{x_i} + p_i, \qquad \text{e.g. sinusoidal: } p_{i,2k} = \tfrac{1}{\sqrt C}\sin(i\,\omega_k),\;
# p_{i,2k+1} = \tfrac{1}{\sqrt C}\cos(i\,\omega_k),\; \omega_k = 10000^{-2k/C}.
# $$
#
# **2. Rotating queries and keys** (RoPE and its scalings, xPos): each channel pair $k$ of $q_i$ is
# rotated by the angle $i\,\theta_k$, and of $k_j$ by $j\,\theta_k$; since rotations compose,
#
# $$
# s_{ij} = \frac{(R_{i\theta} q_i)^\top (R_{j\theta} k_j)}{\sqrt D} = \frac{q_i^\top R_{(j-i)\theta}\, k_j}{\sqrt D},
# $$
#
# which depends on the positions only through $i - j$ (chapter 4 derives it).
#
# **3. A bias on the attention logits** (ALiBi, T5, KERPLE, Sandwich, FIRE): a number per head and
# distance, e.g. ALiBi's fixed line,
#
# $$
# s_{ij} = \frac{q_i \cdot k_j}{\sqrt D} + b_h(i - j), \qquad b_h(d) = -m_h\, d .
# $$
#
# **4. Scaling the attention logits** per query position (log-n scaling, 002's $\log(n+1)$ read as
# a logit scale): the logits of query $i$ are multiplied by
#
# $$
# s_{ij} = \lambda_i\, \frac{q_i \cdot k_j}{\sqrt D}, \qquad \lambda_i = \max\Big(1, \frac{\ln(i+1)}{\ln T_{\text{train}}}\Big).
# $$
#
# The cell checks each formula against tinype on a small case (every check would print `[NO ]` if
# tinype computed something other than the formula written here), then sorts all of tinype's
# encodings by the place they act, from what each one actually returns (`figure_data`).

# %%
heading("2.4 Four places an encoding can act")
cfg = tinype.ModelConfig(pe="sinusoidal", n_head=4, d_model=64, T_train=64)
sin_pe = positions.get("sinusoidal")
sin_pe.setup(cfg)
i_pos = np.arange(8)
omega = 10000.0 ** (-np.arange(0, 64, 2) / 64)
p_formula = np.empty((8, 64))
p_formula[:, 0::2], p_formula[:, 1::2] = np.sin(np.outer(i_pos, omega)), np.cos(np.outer(i_pos, omega))
gap = np.abs(sin_pe.figure_data(8)["table"] - p_formula / 8.0).max()
check("1. sinusoidal: the added table is sin/cos(i omega_k) / sqrt(C)", gap < 1e-6, f"max difference {gap:.1e}")

inv_freq, _ = positions.rope_inv_freq(16)
qv, kv = rng.standard_normal((2, 1, 1, 1, 16))
dots = [float((positions.apply_rope(qv, [i], inv_freq) * positions.apply_rope(kv, [j], inv_freq)).sum())
        for i, j in [(3, 1), (13, 11), (103, 101)]]
check("2. RoPE: the rotated q_i . k_j is the same for (i, j) = (3, 1), (13, 11), (103, 101)",
      max(dots) - min(dots) < 1e-12, "q.k = " + ", ".join(f"{d:.6f}" for d in dots))

alibi = positions.get("alibi")
alibi.setup(tinype.ModelConfig(pe="alibi", n_head=4, d_model=64))
gap = np.abs(alibi.figure_data(16)["bias"] - (-positions.alibi_slopes(4)[:, None] * np.arange(16))).max()
check("3. ALiBi: the bias table is -m_h d for d = 0..15", gap < 1e-6, f"max difference {gap:.1e}")

logn = positions.get("logn")
logn.setup(tinype.ModelConfig(pe="logn", T_train=64))
lam = logn.figure_data(256)["logit_scale"]
gap = np.abs(lam - np.maximum(1, np.log(np.arange(1, 257)) / np.log(64))).max()
check("4. log-n: lambda_i = max(1, ln(i+1) / ln 64)", gap < 1e-12,
      f"lambda at i = 63, 127, 255: {lam[63]:.3f}, {lam[127]:.3f}, {lam[255]:.3f}")

groups = {"1. added to the token embeddings": "table", "2. rotating queries and keys": "cos",
          "3. a bias on attention logits": "bias", "4. scaling attention logits": "logit_scale"}
placed = {group: [] for group in groups}
placed["none of the four (NoPE)"] = []
for name in positions.available():
    pe = positions.get(name)
    pe.setup(tinype.ModelConfig(pe=name))
    data = pe.figure_data(16)
    hits = [group for group, key in groups.items() if key in data]
    for group in hits or ["none of the four (NoPE)"]:
        placed[group].append(name)
for group, names in placed.items():
    print(f"  {group:36s} {', '.join(names)}")

# %% [markdown]
# **Erratum 000 §2.1.** The learned table (place 1) is what GPT-2 and GPT-3 use, not "a random or
# fixed vector": its rows start random and are *trained*, like any weight; the fixed vector is the
# sinusoid of the original Transformer. A learned table has one row per trained position, so by
# construction it cannot extrapolate (chapter 1 shows the wall). The cell shows that training
# changes the table: one AdamW step on a learned model moves `pe.wpe`, and would print `[NO ]` if
# the table were a fixed vector that the optimiser leaves alone.

# %%
learned = tinype.Transformer(tinype.ModelConfig(pe="learned", T_train=64), seed=0)
before = learned.parameters()["pe.wpe"].copy()
batch_x = rng.integers(0, 256, (2, 64))
learned.loss(batch_x, np.roll(batch_x, -1, axis=1))
tinype.AdamW(learned.parameters(), lr=1e-3).step(learned.backward())
moved = np.abs(learned.parameters()["pe.wpe"] - before).max()
check("learned positions are trained: one AdamW step changes the (64, C) table", moved > 0,
      f"max change {moved:.1e}, table shape {before.shape}")

# %% [markdown]
# ## 2.5 Pictures of the encodings
#
# Left: the sinusoidal table (place 1), one column per position; fast channels (low indices)
# oscillate quickly, slow ones barely move over 128 positions, like the digits of a counter.
# Middle: RoPE's angles (place 2), $\cos(p\,\theta_k)$ for each channel pair $k$ of a 16-dimensional
# head: pair 0 turns once every $2\pi \approx 6.3$ positions, the last pair takes thousands. Right:
# ALiBi's bias (place 3) over distance, one line per head, labelled by its slope.

# %%
heading("2.5 Pictures of the encodings")
plt = pyplot()
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
im = axes[0].imshow(positions.sinusoidal_table(np.arange(128), 64).T, aspect="auto", cmap="RdBu",
                    vmin=-1, vmax=1, origin="lower")
axes[0].set_xlabel("position p (tokens)")
axes[0].set_ylabel("channel index (of d = 64)")
axes[0].set_title("Sinusoidal table PE[p, channel] (unit amplitude)")
fig.colorbar(im, ax=axes[0], label="table value")
rope = positions.get("rope")
rope.setup(tinype.ModelConfig(pe="rope", n_head=4, d_model=64))
rd = rope.figure_data(128)
im = axes[1].imshow(rd["cos"].T, aspect="auto", cmap="RdBu", vmin=-1, vmax=1, origin="lower")
axes[1].set_xlabel("position p (tokens)")
axes[1].set_ylabel("channel pair k (head dim D = 16)")
axes[1].set_title("RoPE: cos(p theta_k), theta_k = 10000^(-2k/D)")
fig.colorbar(im, ax=axes[1], label="cos of the rotation angle")
ad = alibi.figure_data(64)["bias"]
for h, m_h in enumerate(positions.alibi_slopes(4)):
    axes[2].plot(np.arange(64), ad[h], label=f"slope m = 1/{1 / m_h:.0f}")
axes[2].set_xlabel("distance i - j (tokens)")
axes[2].set_ylabel("bias added to the logit")
axes[2].set_title("ALiBi: bias -m_h (i - j), 4 heads")
axes[2].legend(fontsize=8)
savefig(fig, FIG, "encodings.png")

# %% [markdown]
# The biases of place 3 differ in *shape* over distance: ALiBi is a line, KERPLE a logarithm or a
# power, Sandwich the sinusoid's own inner product, T5 a learned value per bucket (zero at
# initialisation, learned in training). The plot shows head 1 of each at initialisation; the
# y axis is symmetric-log (linear within $\pm 1$, logarithmic beyond), said so because it bends
# ALiBi's straight line.

# %%
fig, ax = plt.subplots(figsize=(7, 4.2))
for name in ["alibi", "t5", "kerple_log", "kerple_power", "sandwich"]:
    pe = positions.get(name)
    pe.setup(tinype.ModelConfig(pe=name, n_head=4, d_model=64))
    b = pe.figure_data(256)["bias"]
    extra = f", m = 1/{1 / positions.alibi_slopes(4)[1]:.0f}" if name == "alibi" else ""
    ax.plot(np.arange(b.shape[-1]), b[1] if b.ndim == 2 else b[1, -1, ::-1], label=f"{name} (head 1{extra})")
ax.set_xlabel("distance i - j (tokens)")
ax.set_ylabel("bias added to the logit (symlog scale)")
ax.set_yscale("symlog", linthresh=1.0)
ax.set_title("Bias over distance at initialisation\n(T5's buckets start at zero and are learned)")
ax.legend(fontsize=8)
savefig(fig, FIG, "bias_over_distance.png")

# %% [markdown]
# ## 2.6 Extrapolation, defined
#
# With the pieces above, the course's central quantity can be written down. A model trained on
# windows of $T_{\text{train}}$ tokens **extrapolates** to length $L > T_{\text{train}}$ when its
# perplexity there, by the protocol of 2.2, stays close to its perplexity at $T_{\text{train}}$:
#
# $$
# \rho(L) = \frac{\mathrm{PPL}(L)}{\mathrm{PPL}(T_{\text{train}})} \approx 1, \qquad L / T_{\text{train}} = 2, 4, 8, \dots
# $$
#
# (or, for a task such as passkey retrieval, when its accuracy stays close). This is 002 §2.3's
# definition made measurable, and not 000 §2.2's "from a specific task to general tasks", which is
# transfer learning. Non-overlapping windows make $\rho(L)$ a fair comparison across $L$: every
# byte of the same text is predicted at every length (up to the few leftover bytes at its end);
# only the context differs. Chapter 1
# measured $\rho$ for three encodings; `tinype lab` measures it for all of them.

# %%
done()
