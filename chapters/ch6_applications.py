# %% [markdown]
# # Chapter 6. Applications (实际应用场景)
#
# Article 002 §6 lists three uses of a positional encoding that extrapolates: machine translation,
# text generation and long-text classification. Article 000 §6 lists translation, summarisation and
# image captioning. Neither article measures any of them. Two are about *length* and can be measured
# on a laptop with the bundled corpus, so this chapter measures them:
#
# 1. **Long-text classification, trained short and tested long.** Train a classifier on 64-byte
#    snippets, then give it texts of up to 1024 bytes. A model that reads long inputs well should get
#    *better* with more text, because there is more evidence about the topic.
# 2. **Generation past the training length.** Let a language model trained on 64-byte windows write
#    hundreds of bytes, reading everything it wrote so far, and measure whether the text stays text
#    once its positions pass the training length.
#
# | application named by the articles | measured here? | why, or why not |
# |---|---|---|
# | long-text classification (002) | yes, 6.1 | a labelled task is in the corpus: Python's help topics |
# | text generation (002) | yes, 6.2 | any language model generates; the question is past $T_{train}$ |
# | machine translation (000, 002) | no | needs parallel text and an encoder-decoder; none ships with Python |
# | summarisation (000) | no | needs reference summaries and a model far larger than 2 layers |
# | image captioning (000) | no | needs images; and the position question there is about pixels |
#
# In both experiments, the only thing that changes between models is the positional encoding. Every number is
# computed in this run; the markdown says what each check tests and why it could fail.

# %%
import re

import numpy as np
from common import check, corpus, done, figure_dir, heading, pyplot, quick_lm, savefig

import tinype
from tinype.classify import TransformerClassifier, accuracy, fit
from tinype.tasks import TopicClassification

FIG = figure_dir("ch6")
T_TRAIN = tinype.ModelConfig().T_train                         # 64 bytes: every model here trains at this length

# %% [markdown]
# ## 6.1 Long-text classification: trained on 64 bytes, tested on up to 1024
#
# The task of chapter 5: which of five Python help topics a snippet comes from (chance: 20%). The
# classifier is a tinype Transformer (2 layers, width 64) whose final activations $h_1 \dots h_L$ are
# averaged, then mapped to 5 logits:
#
# $$ z(x) = \Big(\frac{1}{L} \sum_{t=1}^{L} h_t\Big) W + b. $$
#
# The average is what lets one model take any length $L$: the head always sees one vector of width 64.
# Whether the $h_t$ still make sense at positions $t > 64$ is the positional encoding's business:
#
# - **learned** positions have a table of exactly $T_{train} = 64$ rows; position 64 has no row, so
#   the model cannot read a longer text at all (the first cell shows the error it raises).
# - **sinusoidal** positions have a value at every $t$, but the model never saw the vectors for
#   $t \ge 64$.
# - **RoPE** rotates queries and keys by angle $t\,\omega_k$; the dot products depend on the distance
#   $i - j$ only, but distances above 63 were never seen either.
# - **ALiBi** subtracts $m_h (i - j)$ from the logits: a longer input only adds keys that are further
#   away and more strongly penalised, a regime the training windows already contain in miniature.
#
# ### What is new beyond $T_{train}$: a count
#
# "Never seen" can be made precise. The sinusoid's frequency pair $k$ (of $d/2$) turns at
# $\omega_k = 10000^{-2k/d}$ radians per byte, so its period is
#
# $$ P_k = \frac{2\pi}{\omega_k} = 2\pi \cdot 10000^{2k/d}. $$
#
# A pair whose period is at most $T_{train}$ went through every phase inside the training window: its
# values at position 500 look like values it has seen. A pair with $P_k > T_{train}$ never completed a
# turn, so beyond $T_{train}$ it takes values it never had. Solving $P_k > T_{train}$ for $k$:
#
# $$ k > \frac{d}{2} \cdot \frac{\ln(T_{train} / 2\pi)}{\ln 10000}
#      = 32 \cdot \frac{\ln(64 / 6.283)}{9.210} = 32 \cdot \frac{2.321}{9.210} = 8.06 $$
#
# for $d = 64$: pairs $k = 9 \dots 31$, i.e. **23 of the 32 pairs** move into new territory past byte 64.
# RoPE applies the same frequencies to each head of width $d_h = 16$, at the *distance* $i - j$:
# $k > 8 \cdot 2.321 / 9.210 = 2.02$, so pairs $k = 3 \dots 7$, **5 of 8**, meet new angles once a
# query looks further back than 64 bytes. ALiBi has no phase at all: head $h$ adds $-m_h (i - j)$,
# and a key at distance $\delta$ keeps a weight of at most $e^{-m_h \delta}$ relative to a key at
# distance 0 with the same score, so the head effectively reads a window of about $10 / m_h$ bytes
# (where $e^{-10} \approx 4.5 \cdot 10^{-5}$). With 4 heads the slopes are $2^{-2}, 2^{-4}, 2^{-6}, 2^{-8}$
# and the windows 40, 160, 640 and 2560 bytes: three of the four heads read a window that a 1024-byte
# text only repeats, much like the chunk baseline below. The cell computes these counts from tinype.
#
# A second, blunter measure of novelty: how close does a new position's sinusoidal vector come to
# any trained one? Every row of the table has the same norm $\sqrt{d/2}$ (each pair contributes
# $\sin^2 + \cos^2 = 1$), so closeness is the cosine
#
# $$ \mathrm{sim}(p) = \max_{0 \le q < T_{train}} \frac{PE(p) \cdot PE(q)}{d/2}
#    = \max_{q} \frac{2}{d} \sum_{k} \cos\big((p - q)\,\omega_k\big), $$
#
# which is 1 for $p < T_{train}$ and falls as $p$ leaves the trained range: the model meets a vector
# pointing where no training vector pointed. The cell prints it for a few positions.

# %%
heading("6.1 Long-text classification: trained on 64 bytes, tested on up to 1024")
for what, dim in (("sinusoid, d = 64", 64), ("RoPE, head width 16", 16)):
    periods = 2 * np.pi / tinype.positions.rope_inv_freq(dim)[0]       # the same 10000^(-2k/d) frequencies
    new = np.nonzero(periods > T_TRAIN)[0]
    print(f"  {what}: {len(new)} of {len(periods)} frequency pairs have a period > {T_TRAIN} bytes "
          f"(k = {new.min()}..{new.max()}); the longest is {periods.max():,.0f} bytes")
table = tinype.positions.sinusoidal_table(np.arange(9 * T_TRAIN), 64)                # (576, 64), unit amplitude
sim = (table[T_TRAIN:] @ table[:T_TRAIN].T).max(axis=1) / 32                        # (512,) best cosine
print("  sinusoid: best cosine to a trained position at p = "
      + ", ".join(f"{p}: {sim[p - T_TRAIN]:.3f}" for p in (64, 128, 256, 575)))
slopes = tinype.positions.alibi_slopes(tinype.ModelConfig().n_head)
print(f"  ALiBi, 4 heads: slopes {slopes.tolist()}, windows 10 / m = {(10 / slopes).round().astype(int).tolist()} bytes")

# %% [markdown]
# **A baseline that needs no extrapolation.** Cut a text of length $L$ into $K = L/64$ chunks of 64
# bytes, classify each chunk and average the logits:
#
# $$ \bar z(x) = \frac{1}{K} \sum_{k=1}^{K} z\big(x_{64(k-1)+1 \,:\, 64k}\big). $$
#
# Every chunk is in distribution, so even the learned-position model can read 1024 bytes this way.
# A model that reads the whole text at once is only worth its extrapolation if it beats this. For
# example a 256-byte text gives $K = 4$ chunks, and the chunk reading averages 4 logit vectors.
#
# **Noise.** Each length is tested on $n = 100$ texts. The standard error of an accuracy near 50% is
# $\sqrt{0.5 \cdot 0.5 / 100} = 0.05$: differences under about 10 points between two cells are noise.
#
# Each classifier trains 200 steps of 32 snippets of 64 bytes; the checks below the table test:
# ALiBi gains accuracy from 64 to 1024 bytes (fails if longer texts do not help it); at 1024 bytes
# ALiBi beats the sinusoid (fails if the sinusoid copes as well); and chunk-averaging lets the
# learned-position model gain from longer texts too (fails if averaging in-distribution chunks does
# not help).

# %%
task = TopicClassification()
lengths = [64, 128, 256, 512, 1024]
encodings = ["learned", "sinusoidal", "rope", "alibi"]
tests = {L: task.sample(np.random.default_rng([7, L]), 100, L, "test") for L in lengths}   # the same texts for all


def chunked_accuracy(clf, x, y, chunk=T_TRAIN):
    """Accuracy when each text (N, L) is read as L/chunk in-distribution chunks whose logits are averaged."""
    N, L = x.shape
    z = np.concatenate([clf.logits(x[s:s + 10].reshape(-1, chunk)) for s in range(0, N, 10)])  # (N * K, C)
    z = z.reshape(N, L // chunk, -1).mean(axis=1)                                              # (N, C)
    return float((z.argmax(axis=1) == y).mean())


acc, acc_chunked, refusal = {}, {}, None
for pe in encodings:
    clf = TransformerClassifier(tinype.ModelConfig(pe=pe), task.n_classes, seed=0)
    fit(clf, lambda step: task.sample(np.random.default_rng([0, step]), 32, T_TRAIN, "train"), 200, lr=3e-3)
    row, row_chunked = [], []
    for L in lengths:
        x, y = tests[L]
        row_chunked.append(chunked_accuracy(clf, x, y))
        try:
            clf.trunk.pe.check_length(L)
            row.append(accuracy(clf, x, y, batch_size=20))
        except ValueError as err:                      # learned positions: no row for position 64
            row.append(None)
            refusal = refusal or f"{pe} at L={L}: {err}"
    acc[pe], acc_chunked[pe] = row, row_chunked
if refusal:
    print(f"  the model refuses, with this message:\n    {refusal}\n")
print("  test accuracy by text length, whole text read at once | read as 64-byte chunks (chance 20%):")
print("  " + "encoding".ljust(12) + "".join(f"{L:>13d}" for L in lengths))
for pe in encodings:
    cells = [f"{'n/a' if v is None else f'{v:.0%}'} | {c:.0%}" for v, c in zip(acc[pe], acc_chunked[pe])]
    print("  " + pe.ljust(12) + "".join(f"{s:>13s}" for s in cells))
check("ALiBi gains accuracy from longer texts (1024 vs 64 bytes, whole text)", acc["alibi"][-1] > acc["alibi"][0],
      f"{acc['alibi'][0]:.0%} -> {acc['alibi'][-1]:.0%}")
check("at 1024 bytes ALiBi beats the sinusoid (whole text)", acc["alibi"][-1] > acc["sinusoidal"][-1],
      f"{acc['alibi'][-1]:.0%} vs {acc['sinusoidal'][-1]:.0%}")
check("chunk-averaging lets the learned-position model gain from longer texts (1024 vs 64 bytes)",
      acc_chunked["learned"][-1] > acc_chunked["learned"][0],
      f"{acc_chunked['learned'][0]:.0%} -> {acc_chunked['learned'][-1]:.0%}")
for pe in ("sinusoidal", "rope", "alibi"):
    whole, chunks = acc[pe][-1], acc_chunked[pe][-1]
    gap = whole - chunks
    print(f"  {pe:>10s} at 1024 bytes: whole text {whole:.0%}, chunks {chunks:.0%}: "
          + ("reading it whole is better by more than the ~10-point noise." if gap > 0.10 else
             "reading it whole is worse by more than the ~10-point noise." if gap < -0.10 else
             "no difference beyond the ~10-point noise."))

# %% [markdown]
# **What it means.** If a check above prints `[NO ]`: with 100 texts per cell and a single seed, a
# gain of a few points can vanish, and the table shows by how much. The comparison that matters for the
# article's claim is the last three lines: extrapolation is an advantage for classification only where
# reading the whole text beats averaging in-distribution chunks, which any encoding, even learned
# positions, can do. An encoding that reads long texts *worse* than its own chunks has learned
# features that break beyond $T_{train}$; one that reads them better is combining evidence across
# chunks.
#
# The counts at the top of 6.1 predict where to look. A sinusoidal model meets 23 slow frequency
# pairs at values it never saw once it reads past byte 64, and in every chunk it meets none: if the
# printed lines show its whole-text accuracy falling while its chunked accuracy rises, that is the
# unseen-phase effect in a single measurement, since the texts and the weights are the same and only
# the positions differ. RoPE meets unseen angles only in the 5 slow pairs of each head and only for
# distances beyond 64; ALiBi meets nothing new at all, so for those two the whole-text and chunked
# readings may well be close.
#
# ## 6.2 Generation past the training length
#
# A language model generates by repeating one step: compute $p(x_{t+1} \mid x_1 \dots x_t)$, sample
# $x_{t+1}$ from it (temperature $\tau = 0.6$: probabilities $\propto p^{1/\tau}$), append it. tinype
# reads the whole text so far at every step (no sliding window), so the $t$-th byte of the text is
# generated at absolute position $t$, and every byte beyond position 63 is written at a position the
# model never trained on.
#
# Sampling at temperature $\tau$ divides the logits by $\tau$ before the softmax, which raises each
# probability to the power $1/\tau$ and renormalises:
#
# $$ \mathrm{softmax}(z / \tau)_v = \frac{e^{z_v/\tau}}{\sum_u e^{z_u/\tau}}
#    = \frac{p_v^{1/\tau}}{\sum_u p_u^{1/\tau}}, \qquad p = \mathrm{softmax}(z). $$
#
# Worked example: $p = (0.5, 0.3, 0.2)$ and $\tau = 0.6$ give $p^{1/0.6} = (0.315, 0.134, 0.068)$,
# which sum to $0.517$, so the sampler uses $(0.61, 0.26, 0.13)$: the likely byte gains, the unlikely
# ones lose, and the text is less noisy than sampling at $\tau = 1$ while staying random.
#
# Two cases, for models trained at $T_{train} = 64$:
#
# - **In distribution**: a 17-byte prompt and $64 - 17 = 47$ generated bytes, so prompt plus output
#   fill exactly $T_{train}$ and every position is one the model trained on. The code computes these
#   numbers from the prompt, asserts $|\text{prompt}| + n_{new} \le T_{train}$, and asserts it again
#   on the length in bytes of every sample it got back. Eight samples
#   (seeds 0 to 7) give enough words to measure.
# - **Beyond**: the same prompt, continued to 576 bytes ($9\,T_{train}$). We score two bands of
#   absolute positions: $[64, 256)$ (1x to 4x $T_{train}$) and $[256, 576)$ (4x to 9x).
#
# In tinype's `generate` (tinype/sample.py) the whole story is one line, which picks the context of
# each step: `context = np.array(ids[-limit:] if limit else ids, dtype=np.int64)[None, :]`. `limit`
# is the encoding's `max_positions`: 64 for learned positions, which therefore slide a 64-byte window
# and never leave their table, and `None` for every other encoding, which reads the whole text. So
# the sinusoid, RoPE and ALiBi below really write byte 500 at position 500. The next cell asserts
# that this line is still in tinype's source.
#
# **The measure: the share of real words.** Let $V$ be the set of words of the training text, a word
# being a maximal run of ASCII letters. For a piece of generated text $s$, let $W(s)$ be its complete
# words of at least 2 letters (a run cut off by the end of the text is left out, since we cannot
# know how it would have ended). The real-word share is
#
# $$ q(s) = \frac{\big|\{\, w \in W(s) : w \in V \,\}\big|}{|W(s)|}, \qquad
#    \mathrm{SE}(q) \approx \sqrt{\frac{q\,(1 - q)}{|W(s)|}} . $$
#
# When $q$ comes out exactly 0 (or 1) the formula gives an SE of 0, which is not a certainty: the
# "rule of three" says that with no success in $n$ trials, the true share is below about $3/n$ with
# 95% confidence, so "0% of 26 words" means "below about 12%".
#
# It is crude but honest: it rewards spelling, not grammar or sense, and a model that repeats "the"
# scores well. Two references calibrate it: the **ceiling**, $q$ of held-out real text (below 100%
# because the validation text has words the training text lacks), and the **floor**, $q$ of bytes
# drawn independently from the corpus's byte frequencies, i.e. a model with no context at all.
#
# Worked example: in "the forr statement is", $W = \{\text{the}, \text{forr}, \text{statement},
# \text{is}\}$ if the text continues after "is"; "forr" is not in $V$, so $q = 3/4$.
#
# The checks: ALiBi spells better than the floor inside $T_{train}$ and keeps at least 80% of that
# share at 4x-9x (fails if it never learned to spell, or if its text falls apart beyond $T_{train}$);
# the sinusoid spells better than the floor inside $T_{train}$ and loses more than a quarter of that
# share at 4x-9x (fails if it writes as well beyond $T_{train}$ as inside); and beyond 4x ALiBi's
# share is above the sinusoid's.
# With about 50 words per band, one share moves by about $\pm 7$ points between seeds, so a check that
# passes or fails by less than that is a coin toss; the printed SE says how close it was.

# %%
heading("6.2 Generation past the training length")
VOCAB = set(re.findall(r"[A-Za-z]+", tinype.decode(corpus().train)))
WORD = re.compile(r"[A-Za-z]{2,}")


def byte_offsets(text):
    """(len(text) + 1,) byte position of each character: generated text is bytes decoded as UTF-8, and a
    U+FFFD stands for an invalid byte (rarely for two, so a position can be off by one there)."""
    sizes = [1 if ch == "\ufffd" else len(ch.encode("utf-8")) for ch in text]
    return np.concatenate([[0], np.cumsum(sizes)]).astype(int)


def words(text, start=0, stop=None):
    """Complete words (>= 2 letters, followed by a non-letter) that start at byte positions [start, stop)."""
    off = byte_offsets(text)
    stop = off[-1] if stop is None else stop
    out = []
    for m in re.finditer(r"[A-Za-z]+", text):
        if start <= off[m.start()] < stop and m.end() < len(text) and WORD.fullmatch(m.group()):
            out.append(m.group())
    return out


def share(ws):
    """(q, standard error, number of words) of a list of words."""
    q = float(np.mean([w in VOCAB for w in ws])) if ws else 0.0
    return q, (np.sqrt(q * (1 - q) / len(ws)) if ws else 0.0), len(ws)


sample_py = open(tinype.sample.__file__, encoding="utf-8").read()
assert "context = np.array(ids[-limit:] if limit else ids, dtype=np.int64)[None, :]" in sample_py, \
    "tinype/sample.py changed how generate picks its context: update this chapter"
example = words("the forr statement is ")
assert sorted(example) == ["forr", "is", "statement", "the"]       # W of the worked example
check("the worked example scores q = 3/4 ('forr' is the only word not in the training text)",
      share(example)[0] == 0.75, f"q = {share(example)[0]:.2f}; not in V: {[w for w in example if w not in VOCAB]}")
prompt = "The for statement"
n_id = T_TRAIN - len(tinype.encode(prompt))                    # generated bytes that still fit in T_train
assert len(tinype.encode(prompt)) + n_id <= T_TRAIN, "the in-distribution case must stay inside T_train"
TOTAL = 9 * T_TRAIN                                            # the long case ends at 9 x T_train
bands = [(len(prompt), T_TRAIN), (T_TRAIN, 4 * T_TRAIN), (4 * T_TRAIN, TOTAL)]
assert bands[1][0] >= T_TRAIN and bands[2][0] >= T_TRAIN, "the beyond bands must start at T_train or later"
print(f"  prompt {prompt!r}: {len(prompt)} bytes; in distribution: + {n_id} generated = {len(prompt) + n_id} <= "
      f"T_train = {T_TRAIN}; beyond: continued to {TOTAL} bytes")

val = tinype.decode(corpus().val[:8192])
counts = np.bincount(np.asarray(corpus().train), minlength=256).astype(float)
unigram = tinype.decode(np.random.default_rng(0).choice(256, 8192, p=counts / counts.sum()))
ceiling, floor = share(words(val)), share(words(unigram))
print(f"  ceiling (held-out real text): q = {ceiling[0]:.0%} of {ceiling[2]} words; "
      f"floor (bytes drawn from the byte frequencies): q = {floor[0]:.0%} of {floor[2]} words")

gen = {}
for pe in ["sinusoidal", "rope", "alibi"]:
    model = quick_lm(pe, steps=300)
    short = [prompt + tinype.generate(model, prompt, max_new_tokens=n_id, temperature=0.6, seed=s) for s in range(8)]
    assert all(byte_offsets(t)[-1] <= T_TRAIN for t in short), "an in-distribution sample left T_train"  # measured
    long = prompt + tinype.generate(model, prompt, max_new_tokens=TOTAL - len(prompt), temperature=0.6, seed=0)
    q_id = share([w for t in short for w in words(t, len(prompt))])
    gen[pe] = [q_id] + [share(words(long, a, b)) for a, b in bands[1:]]
    print(f"    in distribution, seed 0: {short[0][len(prompt):]!r}")
    i256, i384 = np.searchsorted(byte_offsets(long), [256, 384])
    print(f"    beyond, bytes 256-383:   {long[i256:i384]!r}")

def cell(q, se, n):
    """'33% +- 6% (55)'; at 0 or 1 the rule of three instead of an SE of 0."""
    if 0 < q < 1:
        return f"{q:.0%} +- {se:.0%} ({n})"
    return f"{q:.0%} ({'<' if q == 0 else '> 1 -'} 3/n = {3 / max(n, 1):.0%}) ({n})"


print(f"\n  real-word share q (+- SE, number of words) by band of absolute positions; T_train = {T_TRAIN}:")
names = [f"{a}-{b - 1}" + (" (in)" if b <= T_TRAIN else "") for a, b in bands]       # inclusive byte ranges
print("  " + "encoding".ljust(12) + "".join(f"{n:>24s}" for n in names))
for pe, cells in gen.items():
    print("  " + pe.ljust(12) + "".join(f"{cell(*c):>24s}" for c in cells))
a_in, a_far = gen["alibi"][0][0], gen["alibi"][2][0]
s_in, s_far = gen["sinusoidal"][0][0], gen["sinusoidal"][2][0]
check("ALiBi spells above the floor in distribution and keeps at least 80% of that share at 4x-9x T_train",
      a_in > floor[0] and a_far >= 0.8 * a_in, f"{a_in:.0%} -> {a_far:.0%}, floor {floor[0]:.0%}")
check("the sinusoid spells above the floor in distribution and loses more than a quarter of that share at 4x-9x",
      s_in > floor[0] and s_far < 0.75 * s_in, f"{s_in:.0%} -> {s_far:.0%}, floor {floor[0]:.0%}")
check("at 4x-9x T_train ALiBi writes more real words than the sinusoid", a_far > s_far, f"{a_far:.0%} vs {s_far:.0%}")
r_in, r_far = gen["rope"][0][0], gen["rope"][2][0]
print(f"  RoPE: {r_in:.0%} in distribution, {r_far:.0%} at 4x-9x: "
      + ("it keeps at least 80% of its share." if r_far >= 0.8 * r_in else "it loses more than a fifth of its share."))

# %% [markdown]
# **What it means.** Inside $T_{train}$ the three models differ only by how well they learned in 300
# steps (compare their in-distribution shares with the ceiling and the floor). Beyond it, the share
# says whether the model still writes words at positions it never saw. An encoding whose share falls
# toward the floor has stopped using its context and emits bytes with roughly the corpus's letter
# frequencies; one that stays near its in-distribution share is extrapolating, at least at the level of
# spelling. A share that *rises* beyond $T_{train}$ is no paradox: at position 300 the model continues
# up to 300 bytes of its own text, while the in-distribution samples have only 17 to 63 bytes of
# context, so the two bands differ in the amount of context as well as in position. What the bands
# isolate cleanly is the drop: a model that spells well inside $T_{train}$ and badly beyond it is
# failing on position, since more context can only help. If a check prints `[NO ]`, compare the gap with the SE beside each share: a gap within
# about two SEs is not a finding in either direction, and more seeds (or longer texts) would decide.
#
# Article 002 §6 said an extrapolating encoding makes generated text "more coherent and natural". The
# measurable part of that, spelling beyond $T_{train}$, is what the table reports; coherence and
# naturalness would need a stronger model than one trained for 300 steps on 0.4 MB of help text.
#
# **Questions to answer in words before moving on** (the numbers are in the tables above):
#
# 1. The chunk reading of the sinusoidal classifier meets no unseen phase at all. If its whole-text
#    accuracy at 1024 bytes is below its chunked accuracy, which of the 23 slow frequency pairs of
#    6.1 would you blame, and why do the fast ones not matter?
# 2. The floor is not 0%: bytes drawn without context still spell some real words. Which ones are
#    likely (think of how many two-letter runs exist), and why does that argue for measuring a model
#    against the floor rather than against zero?
# 3. Learned positions would generate past 64 bytes by sliding a 64-byte window (the line of
#    `generate` quoted above). What would such a model keep, and what would it lose, compared with an
#    ALiBi model that reads the whole text?
# 4. ALiBi's widest head reads about 2560 bytes. Would you expect its classification accuracy to keep
#    rising past 1024 bytes, and what would you change in 6.1 to find out?
#
# **Summary.** Both applications that article 002 names and that can be measured here are length
# problems, and the run above tests each against a baseline that needs no extrapolation: chunking for
# classification, the in-distribution band for generation. An encoding earns the article's praise only
# where it beats that baseline beyond $T_{train}$. Chapter 7 turns to the tools that make such runs
# fast; the exercises in chapters/exercises/ let you rebuild the pieces used here.
#
# The figure: left, accuracy against text length for the whole-text reading (solid) and the chunked
# reading (dashed); right, the real-word share by band, with the ceiling and floor as lines.

# %%
plt = pyplot()
fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.5))
colors = dict(zip(encodings, ["tab:gray", "tab:orange", "tab:green", "tab:blue"]))
for pe in encodings:
    xs = [L for L, v in zip(lengths, acc[pe]) if v is not None]
    a1.plot(xs, [100 * v for v in acc[pe] if v is not None], marker="o", color=colors[pe], label=f"{pe}, whole text")
    a1.plot(lengths, [100 * v for v in acc_chunked[pe]], marker="x", linestyle="--", color=colors[pe],
            label=f"{pe}, 64-byte chunks averaged")
a1.axvline(T_TRAIN, color="gray", linestyle=":")
a1.axhline(100 / task.n_classes, color="black", linewidth=0.8, linestyle=":")
a1.set_xscale("log", base=2)
a1.set_xticks(lengths, [str(L) for L in lengths])
a1.set_xlabel(f"text length (bytes, log scale; T_train = {T_TRAIN} dotted)")
a1.set_ylabel("test accuracy (%, 100 texts; chance 20% dotted)")
a1.set_title("Classifying long texts after training on 64 bytes")
a1.legend(fontsize=7, ncol=2)
width = 0.27
for k, (pe, cells) in enumerate(gen.items()):
    bars = a2.bar(np.arange(3) + (k - 1) * width, [100 * q for q, _, _ in cells], width,
                  yerr=[100 * se for _, se, _ in cells], capsize=3, color=colors[pe], label=pe)
    a2.bar_label(bars, fmt="%.0f", padding=2, fontsize=7)                   # a 0% bar still shows its "0"
a2.axhline(100 * ceiling[0], color="black", linestyle="--", label=f"ceiling: held-out text ({ceiling[0]:.0%})")
a2.axhline(100 * floor[0], color="black", linestyle=":", label=f"floor: bytes without context ({floor[0]:.0%})")
a2.set_xticks(np.arange(3), [f"positions {n}" for n in names])
a2.set_xlabel(f"band of absolute byte positions (T_train = {T_TRAIN})")
a2.set_ylabel("real-word share q (%, bars: +- 1 SE)")
a2.set_title("Generated text: share of real words by position")
a2.set_ylim(0, 100)
a2.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3)     # below the axes, off the bars
savefig(fig, FIG, "long_texts.png")
done()
