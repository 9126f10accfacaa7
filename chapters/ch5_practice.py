# %% [markdown]
# # Chapter 5. Project practice (项目实践：代码实例和详细解释说明)
#
# Both articles give code in their section 5, and neither piece of code runs. This chapter reads each
# snippet line by line, shows exactly where and why it fails, rebuilds what the author meant with
# tinype, and then measures the claim the code was supposed to support.
#
# - **Article 000 §5** (TensorFlow/Keras) builds a text classifier: Embedding, a `PositionalEncoding`,
#   an LSTM with 128 units, Dense(64, relu), Dense(C, softmax). We rebuild it in NumPy, derive the
#   LSTM step that makes a positional encoding unnecessary, and follow the article's §3 path:
#   pretrain a language model, then fine-tune it as a classifier.
# - **Article 002 §5** (PyTorch) writes `positional_encoding(seq_len)` for its §4 formula
#   $f(n) = \log(n+1)$. We find its three bugs, repair it, and test the claim that a log encoding
#   "keeps quality on long inputs" in both of the ways the formula can be read.
#
# Every number below is computed by this run; the markdown gives formulas, derivations and what each
# check tests, and the code prints the results.

# %%
import numpy as np
from common import check, done, figure_dir, fmt, heading, plot_lengths, ppl, pyplot, quick_lm, savefig

import tinype
from tinype import classify, positions
from tinype.classify import LSTMClassifier, TransformerClassifier, accuracy, fit, lstm_forward
from tinype.tasks import TopicClassification

FIG = figure_dir("ch5")

# %% [markdown]
# ## 5.1 Article 000's snippet as written
#
# Here is the article's code, without its comments:
#
# ```python
# import tensorflow as tf
# from tensorflow.keras.layers import Embedding, LSTM, Dense
# from tensorflow.keras.models import Model
# vocab_size = 10000
# embedding_dim = 64
# max_length = 128
# pos_encoding = PositionalEncoding(max_length, embedding_dim)
# input_layer = tf.keras.Input(shape=(max_length,))
# embedding_layer = Embedding(vocab_size, embedding_dim, mask_zero=True)(input_layer)
# embedded = pos_encoding(embedding_layer)
# lstm_layer = LSTM(128)(embedded)
# dense_layer = Dense(64, activation='relu')(lstm_layer)
# output_layer = Dense(num_classes, activation='softmax')(dense_layer)
# model = Model(inputs=input_layer, outputs=output_layer)
# model.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])
# X_train, y_train = # 获取训练数据
# model.fit(X_train, y_train, epochs=10, batch_size=32)
# ```
#
# Read as shapes, for a batch of $B$ texts of 128 token ids: Embedding gives $(B, 128, 64)$, the LSTM
# keeps only its last state $(B, 128)$, the two Dense layers give $(B, 64)$ and $(B, C)$. The intent is
# clear. Three things stop it:
#
# 1. `X_train, y_train = # 获取训练数据` ("get the training data") has nothing right of `=` once the
#    comment is removed: a syntax error, so Python refuses the whole file before running line 1.
# 2. `PositionalEncoding` is neither imported nor defined (Keras has no layer of that name), and
#    `num_classes` is never assigned.
# 3. The model is an LSTM, which reads its input in order; it needs no positional encoding
#    (section 5.2 derives why).
#
# The first cell below hands the excerpt to Python's compiler and prints what it says. This is a
# demonstration, not a check: we already know the line is invalid.

# %%
heading("5.1 Article 000's snippet as written")
SNIPPET_000 = """import tensorflow as tf
from tensorflow.keras.layers import Embedding, LSTM, Dense
from tensorflow.keras.models import Model
vocab_size = 10000
embedding_dim = 64
max_length = 128
pos_encoding = PositionalEncoding(max_length, embedding_dim)
input_layer = tf.keras.Input(shape=(max_length,))
embedding_layer = Embedding(vocab_size, embedding_dim, mask_zero=True)(input_layer)
embedded = pos_encoding(embedding_layer)
lstm_layer = LSTM(128)(embedded)
dense_layer = Dense(64, activation='relu')(lstm_layer)
output_layer = Dense(num_classes, activation='softmax')(dense_layer)
model = Model(inputs=input_layer, outputs=output_layer)
model.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])
X_train, y_train = # 获取训练数据
model.fit(X_train, y_train, epochs=10, batch_size=32)
"""
try:
    compile(SNIPPET_000, "article_000_section5.py", "exec")
    print("  Python compiled the excerpt (unexpected: see the note below)")
except SyntaxError as err:
    print(f"  SyntaxError: {err.msg}, line {err.lineno}:  {err.text.strip()!r}")

# %% [markdown]
# Fix only that line (give it a right-hand side) and the file compiles; which names would still be
# missing when it runs? A linter answers statically. Here we answer it by running the code: every
# `import` returns a stand-in object that accepts any call and any attribute (so no TensorFlow is
# needed), and the namespace records every name the code reads before anything assigned it. Python
# looks names up in that namespace first, so nothing escapes it; builtins such as `print` are allowed.
#
# The check tests the errata's claim (DESIGN.md: `PositionalEncoding` and `num_classes` undefined).
# It would print `[NO ]` if the run found a different set of names, for example one the errata missed.

# %%
class StandIn:
    """Accepts any call and any attribute: a stand-in for TensorFlow's objects."""

    def __call__(self, *args, **kwargs):
        return StandIn()

    def __getattr__(self, name):
        return StandIn()


class RecordingNamespace(dict):
    """Module namespace that records reads of names nobody assigned (and lends them a stand-in)."""

    def __init__(self, builtins):
        super().__init__()
        self.builtins, self.undefined = builtins, []

    def __missing__(self, name):
        if name in self.builtins:          # let Python go on to the builtins
            raise KeyError(name)
        if name not in self.undefined:
            self.undefined.append(name)
        return StandIn()


fixed_000 = SNIPPET_000.replace("X_train, y_train = # 获取训练数据", "X_train, y_train = StandIn(), StandIn()")
builtins_ns = {"StandIn": StandIn, "__import__": lambda *a, **k: StandIn()}
namespace = RecordingNamespace(builtins_ns)
exec(compile(fixed_000, "article_000_fixed_line.py", "exec"), {"__builtins__": builtins_ns}, namespace)
print(f"  with the data line given a value, the code reads these names that nothing defines: {namespace.undefined}")
check("exactly the errata's two names are undefined", sorted(namespace.undefined) == ["PositionalEncoding", "num_classes"],
      f"found {namespace.undefined}")

# %% [markdown]
# If that check prints `[NO ]`, the recorded list above says which name the errata got wrong or
# missed.
#
# ## 5.2 The LSTM step
#
# An LSTM with input width $E$ and $H$ units keeps two state vectors, the hidden state $h_t$ and the
# cell $c_t$, both of width $H$, starting at $h_0 = c_0 = 0$. At each step it reads one input $x_t$
# and computes four gate pre-activations in one product (tinype stores them in the order i, f, g, o,
# as Keras and PyTorch do):
#
# $$ z_t = x_t W_x + h_{t-1} W_h + b \in \mathbb{R}^{4H}, \qquad
#    z_t = \big[\, z^{(i)}_t \;\; z^{(f)}_t \;\; z^{(g)}_t \;\; z^{(o)}_t \,\big] $$
#
# $$ i_t = \sigma(z^{(i)}_t), \quad f_t = \sigma(z^{(f)}_t), \quad g_t = \tanh(z^{(g)}_t), \quad
#    o_t = \sigma(z^{(o)}_t), \qquad \sigma(u) = \frac{1}{1 + e^{-u}} $$
#
# $$ c_t = f_t \odot c_{t-1} + i_t \odot g_t, \qquad h_t = o_t \odot \tanh(c_t) $$
#
# In words: the input gate $i$ decides how much of the candidate $g$ enters the cell, the forget gate
# $f$ how much of the old cell survives, the output gate $o$ how much of the cell is shown as $h$.
# The parameters are $W_x$ $(E, 4H)$, $W_h$ $(H, 4H)$ and $b$ $(4H)$, so the layer has
#
# $$ 4H(E + H + 1) = 4 \cdot 128 \cdot (64 + 128 + 1) = 98{,}816 $$
#
# parameters for the article's $E = 64$, $H = 128$ (Keras's count; PyTorch keeps two bias vectors,
# $4H(E + H + 2) = 99{,}328$).
#
# **Why it needs no positional encoding.** Write one step as $(h_t, c_t) = F(h_{t-1}, c_{t-1}, x_t)$.
# The final state is a nested composition,
#
# $$ h_T = F\big(F(\cdots F(F(h_0, c_0, x_1), x_2) \cdots), x_T\big), $$
#
# so $x_1$ passes through $T$ applications of $F$ and $x_T$ through one: the recurrence itself says
# which input came when. Swap two inputs and you change the computation. Self-attention without a
# positional encoding is different: it mixes the keys by a weighted sum
# $\sum_j \mathrm{softmax}_j(q_i^\top k_j)\, v_j$, and a sum does not care about the order of its
# terms. Order is what a Transformer must be given, and what an LSTM already has.
#
# **A worked example** with $E = H = 1$, small enough to do by hand. Take
# $W_x = [0,\ 0,\ \ln 2,\ \ln 3]$, $W_h = [0, 0, 0, 0]$, $b = 0$, chosen because
# $\sigma(0) = \tfrac12$, $\tanh(\ln 2) = \tfrac{4 - 1}{4 + 1} = \tfrac35$ and
# $\sigma(\ln 3) = \tfrac{3}{3 + 1} = \tfrac34$.
#
# *Input $(x_1, x_2) = (1, 0)$.* Step 1: $z = [0, 0, \ln 2, \ln 3]$, so $i = f = \tfrac12$,
# $g = \tfrac35$, $o = \tfrac34$; $c_1 = \tfrac12 \cdot 0 + \tfrac12 \cdot \tfrac35 = 0.3$ and
# $h_1 = \tfrac34 \tanh(0.3) = 0.218484$. Step 2: $x_2 = 0$ and $W_h = 0$ give $z = 0$, so
# $i = f = o = \tfrac12$, $g = 0$; $c_2 = \tfrac12 \cdot 0.3 = 0.15$ and
# $h_2 = \tfrac12 \tanh(0.15) = 0.074443$.
#
# *Input $(0, 1)$, the same two numbers in the other order.* Step 1: $z = 0$, $g = 0$, so
# $c_1 = h_1 = 0$. Step 2 is the first example's step 1: $c_2 = 0.3$, $h_2 = 0.218484$.
#
# Same inputs, different order, final states $0.074443$ versus $0.218484$, for two reasons: the forget
# gate halved the early input's share of the cell once more ($c_2 = 0.15$ instead of $0.3$), and the
# output gate is set by the current input ($o_2 = \tfrac12$ after a 0, $\tfrac34$ after a 1). No
# position was added anywhere.
#
# The code runs tinype's `lstm_forward` (tinype/classify.py, float64) on both orders and compares with
# these hand values. The check fails if tinype's gate order, gate functions or state update differ
# from the equations above by more than rounding ($10^{-12}$).

# %%
heading("5.2 The LSTM step")
wx = np.array([[0.0, 0.0, np.log(2.0), np.log(3.0)]])            # (E=1, 4H=4), gates i, f, g, o
wh = np.zeros((1, 4))                                            # (H=1, 4H)
b = np.zeros(4)
hand = {(1.0, 0.0): 0.5 * np.tanh(0.15), (0.0, 1.0): 0.75 * np.tanh(0.3)}
for order, expected in hand.items():
    h_T, _ = lstm_forward(np.array(order).reshape(1, 2, 1), wx, wh, b)   # x: (B=1, T=2, E=1)
    err = abs(float(h_T[0, 0]) - expected)
    check(f"tinype's LSTM on x = {order} gives the hand value h_2 = {expected:.6f}", err < 1e-12,
          f"tinype {float(h_T[0, 0]):.6f}, |difference| = {err:.1e}")

# %% [markdown]
# **The same recurrence, backwards.** Training needs $\partial \mathcal{L} / \partial c_{t-1}$ from
# $\partial \mathcal{L} / \partial c_t$. Differentiating $c_t = f_t \odot c_{t-1} + i_t \odot g_t$ and
# $h_t = o_t \odot \tanh(c_t)$ (with $\delta c_t$ short for the total gradient reaching $c_t$):
#
# $$ \delta c_t = \frac{\partial \mathcal{L}}{\partial c_t}\Big|_{\text{from later steps}}
#    + \delta h_t \odot o_t \odot \big(1 - \tanh^2 c_t\big), \qquad
#    \delta c_{t-1} \mathrel{+}= \delta c_t \odot f_t . $$
#
# The cell passes its gradient back multiplied only by the forget gate, with no squashing
# nonlinearity in between: that is why an LSTM can carry both information and gradient across many
# steps, and it is the recurrence, again, that orders the inputs. tinype/classify.py writes these as
# `dc_new = mt * dc + dh_new * o * (1 - tc * tc)` and `dc = (1 - mt) * dc + dc_new * f` (`mt` is the
# padding mask, 1 on real steps); the exercises in chapters/exercises/ ask you to write the forward
# step yourself.
#
# The forward's two update lines are in tinype's source as `c_new = f * c + i * g` and
# `h_new = o * tc` (with `tc = np.tanh(c_new)`). The next cell reads tinype/classify.py and asserts
# that these and the two backward lines are still there, so the pointers cannot silently go stale. It then counts the rebuilt classifier's LSTM parameters
# against $4H(E+H+1)$, and, where PyTorch is installed, against `torch.nn.LSTM` (expecting its
# $4H(E+H+2)$ because of the second bias). A `[NO ]` on the first would mean the rebuilt layer is not
# the size of the article's `LSTM(128)` (a missing gate, or a second bias as in PyTorch); on the
# second, that PyTorch's layout differs from the one described here.

# %%
source = open(classify.__file__, encoding="utf-8").read()
for where, line in (("lstm_forward", "c_new = f * c + i * g"), ("lstm_forward", "tc = np.tanh(c_new)"),
                    ("lstm_forward", "h_new = o * tc"), ("lstm_backward", "dc_new = mt * dc + dh_new * o * (1 - tc * tc)"),
                    ("lstm_backward", "dc = (1 - mt) * dc + dc_new * f")):
    assert line in source, f"tinype/classify.py no longer contains {line!r}: update this chapter"
    print(f"  tinype/classify.py, {where}:  {line}")
E, H = 64, 128
clf_probe = LSTMClassifier(5, embed=E, hidden=H, dense=64, seed=0)
n_lstm = sum(clf_probe.params[k].size for k in ("lstm.wx", "lstm.wh", "lstm.b"))
check(f"the rebuilt LSTM(128) has 4H(E + H + 1) = {4 * H * (E + H + 1):,} parameters, as Keras's",
      n_lstm == 4 * H * (E + H + 1), f"tinype: {n_lstm:,}")
try:
    import torch
    n_torch = sum(p.numel() for p in torch.nn.LSTM(E, H).parameters())
    check(f"torch.nn.LSTM({E}, {H}) has 4H(E + H + 2) = {4 * H * (E + H + 2):,} (two bias vectors)",
          n_torch == 4 * H * (E + H + 2), f"torch: {n_torch:,}")
except ImportError:
    print("  (PyTorch not installed: its parameter count is not compared)")

# %% [markdown]
# ### Order, measured: an LSTM versus attention without a positional encoding
#
# The derivation predicts: reversing a text changes an LSTM's output, and does not change the
# mean-pooled output of a Transformer with no positional encoding and full (non-causal) attention,
# because every one of its layers treats positions as an unordered set. (Causal attention is
# different: the mask itself tells position $i$ that it sees $i + 1$ keys, which is why causal NoPE
# language models can learn some order.) We feed one 64-byte text and its reverse to a fresh
# LSTM classifier and to a fresh non-causal NoPE Transformer (float64) and measure how much the
# output moves. The first check fails if the LSTM's output barely changes (relative change below
# $10^{-3}$), the second if the Transformer's pooled features change by more than $10^{-9}$.

# %%
task = TopicClassification()
text = task.sample(np.random.default_rng(5), 1, 64, "test")[0]                # (1, 64)
reverse = text[:, ::-1].copy()
lstm_probe = LSTMClassifier(task.n_classes, seed=0, dtype="float64")
z, z_rev = lstm_probe.logits(text), lstm_probe.logits(reverse)               # (1, C) each
rel_lstm = float(np.abs(z - z_rev).max() / np.abs(z).max())
nope = tinype.Transformer(tinype.ModelConfig(pe="nope", causal=False, dtype="float64"), seed=0)
f, f_rev = nope.features(text).mean(axis=1), nope.features(reverse).mean(axis=1)   # (1, C) pooled
rel_nope = float(np.abs(f - f_rev).max() / np.abs(f).max())
check("reversing the text changes the LSTM's logits", rel_lstm > 1e-3, f"max relative change {rel_lstm:.2e}")
check("reversing it leaves the non-causal NoPE Transformer's pooled features unchanged", rel_nope < 1e-9,
      f"max relative change {rel_nope:.1e}")

# %% [markdown]
# ## 5.3 The classifier, rebuilt
#
# A real task from the bundled corpus (no download): which of five Python help topics a 64-byte
# snippet comes from. Each topic's text is split, its first 80% giving training snippets and its last
# 20% test snippets, so no test byte is ever trained on. The model is the article's, in NumPy, with
# byte ids instead of a 10,000-word vocabulary:
#
# $$ x \in \{0..255\}^{T} \xrightarrow{\text{Embedding}} (T, 64) \xrightarrow{\text{LSTM}(128)}
#    h_T \in \mathbb{R}^{128} \xrightarrow{\text{Dense}(64),\ \mathrm{relu}} \mathbb{R}^{64}
#    \xrightarrow{\text{Dense}(5)} z \in \mathbb{R}^{5} $$
#
# trained with the article's loss (its §4.2), cross-entropy between the one-hot label $y$ and
# $\hat y = \mathrm{softmax}(z)$, which for one-hot $y$ is just $-\log \hat y_{\text{label}}$:
#
# $$ \mathcal{L} = -\sum_{k=1}^{C} y_k \log \hat y_k = -\log \hat y_{\text{label}}. $$
#
# The LSTM's backward through time is written by hand in tinype/classify.py; the test suite checks it
# against central differences and against `torch.nn.LSTM`. We train it twice for 100 steps of 32
# snippets: as the article meant it without the missing layer, and with a sinusoidal positional
# encoding added to the embeddings (the article's `PositionalEncoding`, made concrete).
#
# **How precise is an accuracy?** With $n$ test snippets and true accuracy $p$, the measured accuracy
# has standard error $\sqrt{p(1 - p)/n}$. For $p = 0.4$ and $n = 500$ that is
# $\sqrt{0.24/500} = 0.022$, about 2 points, so the difference of two models has a standard error of
# about $\sqrt2 \cdot 2.2 \approx 3$ points (less in fact, because all models see the same snippets).
# The code uses this to say whether the positional encoding changed anything.

# %%
heading("5.3 The classifier, rebuilt")
x_test, y_test = task.sample(np.random.default_rng(99), 500, 64, "test")
print(f"  {task.n_classes} classes: {', '.join(task.classes)}; {len(y_test)} test snippets of 64 bytes")


def batches(length=64, seed=0):
    """batch(step) -> 32 training snippets and labels; step-seeded, so every model sees the same data."""
    return lambda step: task.sample(np.random.default_rng([seed, step]), 32, length, "train")


results = {}
for pe in (False, True):
    lstm = LSTMClassifier(task.n_classes, embed=64, hidden=128, dense=64, pe=pe, seed=0)
    fit(lstm, batches(), 100, lr=5e-3, desc="lstm")
    results[f"LSTM{' + sinusoidal PE' if pe else ''}"] = accuracy(lstm, x_test, y_test)
diff = results["LSTM + sinusoidal PE"] - results["LSTM"]
p_mean = 0.5 * (results["LSTM + sinusoidal PE"] + results["LSTM"])
se_diff = np.sqrt(2 * p_mean * (1 - p_mean) / len(y_test))
for name, acc in results.items():
    print(f"    {name:24s} {acc:6.1%}")
print(f"  the positional encoding changes the LSTM's accuracy by {diff:+.1%} "
      f"(standard error of a difference about {se_diff:.1%}): "
      + ("within twice the noise, so no measurable effect, as the recurrence predicts."
         if abs(diff) < 2 * se_diff else "more than twice the noise: the added table does change this LSTM."))

# %% [markdown]
# ## 5.4 Pretrain, then fine-tune (article 000 §3)
#
# Article 000 §3 describes the usual path: pretrain a language model on plain text, then fine-tune it
# on the task. We pretrain tinype's quick language model (2 layers, width 64, ALiBi, $T_{train} = 64$)
# for 300 steps on the corpus, copy its weights into a classifier, and give it a new head. The
# classifier reads the Transformer's final activations $h_1 \dots h_T$ (width 64), averages them and
# applies one linear layer:
#
# $$ \bar h = \frac{1}{T} \sum_{t=1}^{T} h_t, \qquad z = \bar h\, W_{cls} + b_{cls}, \qquad
#    \mathcal{L} = -\log \mathrm{softmax}(z)_{\text{label}}. $$
#
# The control is the same classifier from random weights, trained on the same batches for the same
# 120 steps. If pretraining helps, it is because predicting the next byte of Python's documentation
# already requires features (which words, which syntax) that tell the topics apart.
#
# The first check fails if any of the four classifiers is below 1.5 times chance (30%), i.e. did not
# learn the task in its budget. The second fails if pretraining does not beat training from scratch;
# that can happen with budgets this small, and the printed gap (compare it with the 3 points of noise
# above) says how close it was.

# %%
heading("5.4 Pretrain, then fine-tune")
lm = quick_lm("alibi", steps=300)
scratch = TransformerClassifier(tinype.ModelConfig(pe="alibi"), task.n_classes, seed=0)
fit(scratch, batches(), 120, lr=3e-3, desc="scratch")
tuned = TransformerClassifier.from_pretrained(lm, task.n_classes, seed=0)
fit(tuned, batches(), 120, lr=3e-3, desc="fine-tune")
results["Transformer, from scratch"] = accuracy(scratch, x_test, y_test)
results["Transformer, pretrained + fine-tuned"] = accuracy(tuned, x_test, y_test)
print(f"\n  test accuracy on {len(y_test)} held-out 64-byte snippets (chance {1 / task.n_classes:.0%}):")
for name, acc in results.items():
    print(f"    {name:40s} {acc:6.1%}")
check("every classifier reaches 1.5 x chance", min(results.values()) > 1.5 / task.n_classes,
      f"worst {min(results.values()):.1%}")
gain = results["Transformer, pretrained + fine-tuned"] - results["Transformer, from scratch"]
check("the pretrained Transformer beats the one trained from scratch for the same 120 steps", gain > 0,
      f"{gain:+.1%}")

# %% [markdown]
# **What it means.** The printed table compares models that differ in more than one way (the LSTMs
# trained 100 steps at a learning rate of $5 \cdot 10^{-3}$, the Transformers 120 steps at
# $3 \cdot 10^{-3}$), so it does not rank LSTMs against Transformers; it answers two narrower
# questions. Does the article's positional encoding help its LSTM? The printed difference and its
# noise answer that, and the recurrence of 5.2 predicts "no". Does pretraining help, at equal
# fine-tuning budget? The second check answers that. If it prints `[NO ]`, 300 steps of language
# modelling were not enough to give the trunk features that 120 steps of supervised training do not
# find by themselves; the gap printed beside it says by how much.
#
# ## 5.5 Article 002's snippet
#
# ```python
# def positional_encoding(seq_len):
#     position = torch.arange(seq_len).unsqueeze(1)
#     div_term = torch.exp(torch.arange(0, seq_len, 2) * -(math.log(10000.0) / seq_len))
#     pos = position * div_term
#     pos = pos.expand(seq_len, seq_len)
#     return pos
# ```
#
# Follow the shapes for $n$ = `seq_len`. `position` is $(n, 1)$; `torch.arange(0, n, 2)` has
# $\lceil n/2 \rceil$ entries, so `pos` broadcasts to $(n, \lceil n/2 \rceil)$. `expand` can only
# stretch dimensions of size 1 (or keep a size equal to the target), so `expand(n, n)` works only if
#
# $$ \lceil n/2 \rceil = 1 \ \text{ or } \ \lceil n/2 \rceil = n \iff n \le 2 . $$
#
# The function therefore raises for every useful length. NumPy's `broadcast_to` applies the same rule,
# so without PyTorch the cell below emulates the snippet with it. The check runs $n = 1 \dots 16$ and
# fails if the set of lengths that work is not exactly $\{1, 2\}$, i.e. if this derivation is wrong.
#
# Two more errors survive even where it runs:
#
# - **seq_len where the model width belongs.** The sinusoid's frequencies are
#   $\omega_k = 10000^{-2k/d}$ with $d$ the model width. The snippet computes
#   $\omega_k(n) = 10000^{-2k/n}$, so a position's encoding depends on how long the input is: position
#   5 in frequency pair $k = 1$ gets the angle $5 \cdot 10000^{-2/16} = 5 \cdot 0.316 = 1.58$ in a
#   16-byte input and $5 \cdot 10000^{-2/64} = 5 \cdot 0.750 = 3.75$ in a 64-byte one.
# - **No sin or cos, and no log.** It returns the raw angles $p\,\omega_k$, which grow without bound
#   (position 1000 has the value 1000 in its first column), and $\log(n+1)$, the point of the article's
#   §4, appears nowhere.

# %%
heading("5.5 Article 002's snippet")
SNIPPET_002 = """import torch, math
def positional_encoding(seq_len):
    position = torch.arange(seq_len).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, seq_len, 2) * -(math.log(10000.0) / seq_len))
    pos = position * div_term
    pos = pos.expand(seq_len, seq_len)
    return pos
"""


def positional_encoding_numpy(seq_len):
    """The snippet line by line in NumPy; broadcast_to enforces the rule of torch's expand."""
    position = np.arange(seq_len)[:, None]                                  # (n, 1)
    div_term = np.exp(np.arange(0, seq_len, 2) * -(np.log(10000.0) / seq_len))   # (ceil(n/2),)
    pos = position * div_term                                               # (n, ceil(n/2))
    return np.broadcast_to(pos, (seq_len, seq_len))


try:
    import torch  # noqa: F401  (optional: only to run the article's code as written)
    ns = {}
    exec(SNIPPET_002, ns)
    run_002, how, failure = ns["positional_encoding"], "PyTorch, the snippet as written", RuntimeError
except ImportError:
    run_002, how, failure = positional_encoding_numpy, "NumPy emulation (PyTorch not installed)", ValueError
works = []
for n in range(1, 17):
    try:
        out = run_002(n)
        works.append(n)
        if n == 2:
            print(f"    seq_len={n}: returns shape {tuple(out.shape)}, values {np.asarray(out).ravel().tolist()}")
    except failure as err:
        if n in (3, 16):
            print(f"    seq_len={n}: {type(err).__name__}: {str(err).splitlines()[0][:100]}")
check(f"the snippet runs exactly for seq_len in {{1, 2}} ({how})", works == [1, 2], f"ran for {works}")
angle = {n: 5 * 10000.0 ** (-2 / n) for n in (16, 64)}
print(f"  its angle for position 5, pair k = 1: {angle[16]:.2f} at seq_len 16, {angle[64]:.2f} at seq_len 64")

# %% [markdown]
# ## 5.6 The repair, in two readings of $\log(n+1)$
#
# The article's §4 asks for an $f(n)$ that grows with position but ever more slowly, and picks
# $f(n) = \log(n+1)$. It never says where $f$ enters the model. Two readings are in use:
#
# **Reading 1: log-compressed positions in a sinusoid** (tinype's `log_sinusoidal`). Replace position
# $p$ by
#
# $$ p' = T_{train} \, \frac{\ln(1 + p)}{\ln(1 + T_{train})} $$
#
# (the factor maps $p = T_{train}$ to itself) and use the ordinary sinusoidal table at $p'$. With
# $T_{train} = 64$: $p = 63$ becomes $64 \cdot \ln 64 / \ln 65 = 64 \cdot 4.1589 / 4.1744 = 63.76$,
# and $p = 1023$ becomes $64 \cdot 6.9315 / 4.1744 = 106.27$: a 16 times longer input reaches only
# 1.66 times the trained positions. The hope: the model never sees a position far from training.
# The cost: far positions are crowded together ($p' = 1022$ and $1023$ differ by $0.015$).
#
# **Reading 2: log-n scaling of the attention logits** (tinype's `+logn`, used by several long-context
# models). Multiply the logits of the query at 0-based position $i$ by
#
# $$ \lambda_i = \max\!\Big(1, \frac{\ln(i + 1)}{\ln T_{train}}\Big). $$
#
# Why a logarithm: a query whose best key beats $n - 1$ others by a margin $\Delta$ puts weight
# $w = 1 / (1 + (n - 1) e^{-\lambda \Delta})$ on it. Holding $w$ fixed as $n$ grows needs
# $\lambda \Delta - \ln(n - 1)$ constant, so $\lambda$ must grow like $\ln n$; normalising to 1 at
# $T_{train}$ gives the formula. Inside $T_{train}$ it is exactly 1, so a trained model can take it
# on at evaluation without retraining. Worked example: $i = 1023$, $T_{train} = 64$ gives
# $\ln 1024 / \ln 64 = 10 \ln 2 / (6 \ln 2) = 5/3$.
#
# The code writes reading 1 in three lines and checks it against tinype's `log_sinusoidal` module
# (tinype adds its table scaled by $1/\sqrt{d}$, see DESIGN.md); the check fails if the two disagree by
# more than $10^{-12}$ anywhere in 1024 positions. It then checks tinype's log-n factor at $i = 1023$
# against $5/3$ and that it is 1 at every $i < 64$.

# %%
heading("5.6 The repair, in two readings")


def log_positional_encoding(seq_len, d_model, T_train=64):
    """002 §5 repaired, reading 1: the sinusoidal table at log-compressed positions. (seq_len, d_model)"""
    p = T_train * np.log1p(np.arange(seq_len)) / np.log1p(T_train)     # (seq_len,) compressed positions
    return positions.sinusoidal_table(p, d_model)


ours = log_positional_encoding(1024, 64)
pe_log = positions.get("log_sinusoidal")
pe_log.setup(tinype.ModelConfig(pe="log_sinusoidal", dtype="float64"))
theirs = pe_log.table(np.arange(1024)) * np.sqrt(64)                    # undo tinype's 1/sqrt(d) scale
err = float(np.abs(ours - theirs).max())
check("the three-line repair equals tinype's log_sinusoidal table", err < 1e-12, f"max |difference| {err:.1e}")
compressed = positions.log_sinusoidal.log_positions(np.array([63, 1022, 1023]), 64)
print(f"  compressed positions: 63 -> {compressed[0]:.2f}, 1022 -> {compressed[1]:.2f}, 1023 -> {compressed[2]:.2f}")
lam = positions.logn.logn_scale(1024, 64)
check("log-n factor: 1 for every i < 64 and 5/3 at i = 1023", np.all(lam[:64] == 1.0) and abs(lam[-1] - 5 / 3) < 1e-12,
      f"lambda_1023 = {lam[-1]:.6f}")

# %% [markdown]
# ## 5.7 Testing the claim of 002 §4 and §9
#
# The claim: with the log encoding, quality does not drop on inputs longer than the training length.
# The test: same model (quick preset, $T_{train} = 64$), same data, same seed; only the encoding
# differs. We train the plain sinusoid, reading 1 (`log_sinusoidal`) and RoPE for 250 steps each, and
# reuse the 300-step ALiBi model of 5.4. Reading 2 needs no retraining (its factor is 1 inside
# $T_{train}$): we attach it to the trained RoPE and ALiBi models. Each model is then scored by
# perplexity over non-overlapping windows of length $L$ of the same 16 KiB of held-out text,
#
# $$ \mathrm{PPL}(L) = \exp\Big( -\frac{1}{N} \sum_{\text{windows}} \sum_{t} \ln p(x_t \mid x_{<t}) \Big), $$
#
# with $N$ the number of predicted bytes, for $L = 64$ (1x) to $1024$ (16x).
#
# The article's claim, made measurable: a reading "keeps quality" if its perplexity at 16x is within
# 25% of its own perplexity at 1x. A weaker, relative form: the log variant beats the same model
# without it at 16x. The checks print `[NO ]` wherever the measurement contradicts the claim; a
# `[NO ]` here is a finding about the article, not a failure of the code. One seed and 250-300
# steps make differences of a few percent unreliable; the README's three-seed lab is the stronger
# test of the same comparison.

# %%
heading("5.7 Testing the log(n + 1) claim")
lengths = [64, 128, 256, 512, 1024]
trained = {pe: quick_lm(pe, steps=250) for pe in ("sinusoidal", "log_sinusoidal", "rope")}
trained["alibi"] = lm                    # the language model pretrained in 5.4 (fine-tuning copied it)
rows = {pe: [ppl(model, L) for L in lengths] for pe, model in trained.items()}
for base in ("rope", "alibi"):
    model = trained[base]
    model.pe = positions.get(f"{base}+logn")                   # the same weights, logits scaled by lambda_i
    model.pe.setup(model.config)
    rows[f"{base}+logn"] = [ppl(model, L) for L in lengths]
print("  perplexity by evaluation length L (bytes), trained at 64:")
print("  " + "encoding".ljust(16) + "".join(f"{L:>9d}" for L in lengths))
for pe, row in rows.items():
    print("  " + pe.ljust(16) + "".join(f"{fmt(v):>9s}" for v in row))
verdict = {}
for name, base in (("log_sinusoidal", "sinusoidal"), ("rope+logn", "rope"), ("alibi+logn", "alibi")):
    r, r0 = rows[name], rows[base]
    keeps = check(f"{name} stays within 25% of its 1x perplexity at 16x", r[-1] < 1.25 * r[0],
                  f"{fmt(r[0])} -> {fmt(r[-1])}, x{r[-1] / r[0]:.2f}")
    better = check(f"{name} beats {base} at 16x", r[-1] < r0[-1], f"{fmt(r[-1])} vs {fmt(r0[-1])}")
    verdict[name] = (keeps, better)
reading1 = verdict["log_sinusoidal"]
margin = 1 - rows["log_sinusoidal"][-1] / rows["sinusoidal"][-1]         # relative gain at 16x
reading2 = [verdict["rope+logn"], verdict["alibi+logn"]]
print("\n  verdict of this run:")
print("  reading 1 (log-compressed positions): "
      + ("keeps quality at 16x." if reading1[0] else "does NOT keep quality at 16x")
      + ("" if reading1[0] else (f", although it ends {margin:.0%} below the plain sinusoid"
                                  + (" (a margin that one seed cannot tell from noise)." if margin < 0.10 else ".")
                                  if reading1[1] else ", and it does not even beat the plain sinusoid.")))
print("  reading 2 (log-n logit scaling): "
      + ("keeps quality and helps both RoPE and ALiBi." if all(k and b for k, b in reading2) else
         "helps neither RoPE nor ALiBi at 16x." if not any(b for _, b in reading2) else
         "helps " + " and ".join(n for n in ("rope", "alibi") if verdict[f"{n}+logn"][1]) + " at 16x, not the other."))
print("  the article's claim stands only where both checks of a reading print [yes].")

# %% [markdown]
# **What it means.** Compressing positions logarithmically does not make a sinusoidal model
# length-robust if its perplexity still climbs: the model is asked to read positions that are crowded
# closer together than anything it trained on, which is a different kind of out-of-distribution input,
# not an in-distribution one. Log-n scaling sharpens attention where the softmax would flatten over
# more keys; whether that helps depends on whether flattening was the problem. For ALiBi, whose bias
# already suppresses distant keys, the run above says whether sharpening adds anything. Either way the
# decision comes from the table, not from the article's argument, which offered none.
#
# **Questions to answer in words before moving on:**
#
# 1. In the worked LSTM example, $W_h = 0$, so no hidden state feeds back into the gates. Which part of
#    the step still made the two orders differ? Can you choose weights for which the two orders give
#    the same $h_2$, and what could such an LSTM no longer do?
# 2. Reading 1 maps position 1023 to 106.27. Which of the sinusoid's frequency pairs see a value there
#    that they never saw in training, and which see values crowded closer than in training?
# 3. Log-n scaling leaves every logit inside $T_{train}$ untouched. Why does that make it cheap to test
#    (no retraining) but also weak as a fix (the model never learned to use sharpened attention)?
# 4. Article 002 §9 admits the method "cannot completely solve" extrapolation. Which row of the table
#    above would you show the author, and what would you claim from it?
#
# The figure: left, the classifiers of 5.3 and 5.4 (chance dashed); right, the perplexity table,
# log-n variants dashed.

# %%
plt = pyplot()
fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2))
a1.barh(list(results), [100 * v for v in results.values()], color="tab:blue")
a1.axvline(100 / task.n_classes, color="gray", linestyle="--", label=f"chance ({1 / task.n_classes:.0%})")
a1.set_xlabel("test accuracy on 500 held-out snippets (%)")
a1.set_ylabel("classifier")
a1.set_title("Topic classification of 64-byte snippets (5 classes)")
a1.legend(loc="lower right", fontsize=8)
plot_lengths(a2, lengths, rows, "Article 002's log(n + 1), both readings")
a2.set_ylabel("validation perplexity (per byte, log scale)")
a2.set_xticks(lengths, [str(L) for L in lengths])
values = [v for row in rows.values() for v in row if v is not None]
a2.set_yticks([t for t in (4, 5, 6, 8, 10, 15, 20, 30, 40, 60) if min(values) * 0.9 <= t <= max(values) * 1.1])
a2.yaxis.set_major_formatter(plt.ScalarFormatter())
a2.yaxis.set_minor_formatter(plt.NullFormatter())
a2.legend(fontsize=8, title="encoding (dashed: + log-n)", title_fontsize=8)
savefig(fig, FIG, "classifiers_and_log_claim.png")
done()
