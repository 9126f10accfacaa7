# %% [markdown]
# # Chapter 8. Summary and outlook (总结：未来发展趋势与挑战)
#
# Both articles close with a forecast. Article 000 §8: positional encodings that extrapolate will
# become a core technique, models will keep improving, and extrapolation "remains a challenge".
# Article 002 §8 names three challenges: the compute that training large models needs; designing a
# better positional encoding, "still an open problem"; and understanding what large models do.
#
# A forecast cannot be measured, but each of these sentences points at something that can. This
# chapter separates two kinds of statement and never mixes them:
#
# - **what the literature reports** (§8.1): claims of published papers, cited, at their scale, not
#   reproduced here;
# - **what this run measures** (§8.2-§8.4): a small version of tinype's lab, trained and evaluated
#   in this chapter, and the open problems stated from its numbers.
#
# Everything measured here is a 2-layer, width-64 byte-level model trained for 300 steps on
# Python's documentation. It says what holds at that scale, with one seed; the same command with
# the standard preset and several seeds is how to test it further.

# %%
import os
import tempfile
import time
from dataclasses import replace

import numpy as np
from common import check, corpus, done, figure_dir, pyplot, savefig

import tinype
from tinype.lab import LabConfig, run_lab, table

FIG = figure_dir("ch8")

# %% [markdown]
# ## 8.1 What the literature reports since the articles' question
#
# These are the papers' claims, at their scale (models of hundreds of millions to tens of billions
# of parameters), quoted so that the measurements below have something to be compared with:
#
# | idea | paper | what the paper reports |
# |---|---|---|
# | a linear distance penalty on the logits (ALiBi) | Press, Smith & Lewis, *Train Short, Test Long*, ICLR 2022 | perplexity stays close to flat far beyond the training length, where sinusoidal and rotary models degrade |
# | learned kernels of distance (KERPLE) | Chi et al., NeurIPS 2022 | logarithmic kernels extrapolate at least as well as ALiBi |
# | a learned function of normalised distance (FIRE) | Li et al., ICLR 2024 | better length generalisation on long-context tasks |
# | Position Interpolation for RoPE | Chen et al., 2023 | a pretrained model's window extended many times with a short fine-tuning |
# | NTK-aware scaling, YaRN | bloc97, 2023; Peng et al., ICLR 2024 | rescaling RoPE's frequencies extends the window with little or no fine-tuning |
# | NoPE in decoders | Kazemnejad et al., NeurIPS 2023 | a causal model without any PE learns positions and can generalise in length |
# | long context is not used context | Liu et al., *Lost in the Middle*, TACL 2024 | models with long windows use information in the middle of the window poorly |
#
# The first six rows say that "extrapolation remains a challenge" was already less true when the
# articles were written; the last says that a long window and the ability to *use* it are two
# different things. §8.2-§8.4 look for both at small scale.

# %% [markdown]
# ## 8.2 A small lab, run now: four encodings, one seed, 300 steps each
#
# The lab (`tinype lab`, chapter 5 and the README) trains one model per encoding on the same data
# with the same budget, at $T_{\text{train}} = 64$ bytes, and evaluates each on the validation text
# cut into non-overlapping windows of length $L = 64 \cdot \{1, 2, 4, 8, 16\}$. Its number is the
# perplexity per byte,
#
# $$
# \mathrm{ppl}(L) = \exp\Big(\frac{1}{N}\sum_{n=1}^{N} -\log p(w_n \mid \text{the bytes before } w_n \text{ in its window})\Big),
# $$
#
# lower is better. To compare encodings whose perplexity at $T_{\text{train}}$ differs, we also use
# the **degradation ratio** $R(L) = \mathrm{ppl}(L) / \mathrm{ppl}(T_{\text{train}})$: $R = 1$ is flat,
# $R < 1$ means the longer context helped, $R > 1$ that it hurt. The encodings: RoPE; RoPE with
# YaRN applied at evaluation time to the *same* trained model (factor $s = L / T_{\text{train}}$ at
# each length, no fine-tuning); ALiBi; KERPLE (logarithmic). The lab runs in a fresh temporary
# folder, so nothing is reused from an earlier run: every number below is this run's.
#
# The checks state what §8.1's papers would lead one to expect: a relative-bias encoding (ALiBi or
# KERPLE) has the smallest $R(16\times)$; YaRN recovers part of RoPE's loss at $16\times$. A `[NO ]`
# on either is a disagreement with the literature at this scale, explained by the printed sentence.

# %%
workdir = tempfile.TemporaryDirectory()
out = workdir.name
PES = ["rope", "rope_yarn", "alibi", "kerple_log"]
cfg = LabConfig(pes=PES, seeds=[0], mults=[1, 2, 4, 8, 16], steps=300, max_windows=12, out=out)
t0 = time.time()
results, summary = run_lab(cfg, progress=False, log=lambda m: None, corpus=corpus())
lab_seconds = time.time() - t0
print(summary.split("## beyond")[0])
tab = table(results)
T = results["T_train"]
Ls = sorted(next(iter(tab.values())))
R = {pe: {L: by_L[L][0] / by_L[T][0] for L in Ls} for pe, by_L in tab.items()}
for pe in sorted(R, key=lambda p: R[p][16 * T]):
    print(f"  {pe:11s} R(L) = ppl(L) / ppl(64): " + ", ".join(f"{L // T}x {R[pe][L]:.2f}" for L in Ls))

# %%
best = min(R, key=lambda p: R[p][16 * T])
if not check("a relative-bias encoding (ALiBi or KERPLE) has the smallest R at 16x", best in ("alibi", "kerple_log"),
             f"smallest: {best}, R = {R[best][16 * T]:.2f}"):
    print(f"      -> at this scale {best} degrades least; the literature's ranking is not reproduced in this run")
ry, rr = tab["rope_yarn"][16 * T][0], tab["rope"][16 * T][0]
if not check("YaRN, applied at evaluation time, recovers part of RoPE's loss at 16x", ry < rr, f"ppl {rr:.2f} -> {ry:.2f}"):
    print("      -> without fine-tuning, rescaling the frequencies did not help this small model at 16x")

# %% [markdown]
# ## 8.3 Open problems, stated from these measurements
#
# ### 8.3.1 No encoding is free of degradation
#
# The literature's headline is that ALiBi-style biases stay flat. The check below asks the stronger
# question of this run: is *any* encoding flat or better at $16\times$ ($R \le 1$)? If it prints
# `[NO ]`, every encoding tested here loses something when it reads 16 times longer windows than it
# was trained on, and extrapolation "remains a challenge" in the literal sense at this scale. A
# `[yes]` would mean one of them used the longer windows to predict better, as the ALiBi paper
# reports for its larger models.

# %%
flat = [pe for pe in R if R[pe][16 * T] <= 1]
if not check("some encoding is flat or better at 16x (R <= 1)", bool(flat), ", ".join(f"{pe} {R[pe][16 * T]:.2f}" for pe in R)):
    print(f"      -> the smallest degradation is {best}'s: +{100 * (R[best][16 * T] - 1):.0f}% perplexity at 16x")

# %% [markdown]
# ### 8.3.2 A flat curve is not the same as reading far
#
# A low perplexity over a 1024-byte window can come entirely from the last few dozen bytes before
# each prediction. Two measurements separate "tolerates long inputs" from "uses them".
#
# **The loss by position.** The lab records the mean loss at each position $i$ of the $16\times$
# windows. If a model uses its long context, positions deep in the window (which have more bytes
# before them) are predicted better than positions just past $T_{\text{train}}$. The gain from the
# extra context is
#
# $$
# G = \overline{\mathrm{NLL}}_{\,i \in [T, 2T)} - \overline{\mathrm{NLL}}_{\,i \in [8T, 16T)} \quad\text{nats},
# $$
#
# positive when the far positions are predicted better.
#
# **Where attention goes.** For each model, one $16\times$ window of validation text, and the
# attention weights $p_{ij}$ of every head and layer (`Transformer.attention_maps`). For the queries
# $i \ge 512$ (each has at least 512 bytes before it), the share of attention mass on keys farther
# than $T_{\text{train}}$ (the figure at the end also shows the mean weight of one key by distance
# band; a uniform attention over $i + 1$ keys would give every key $1/(i+1) \approx 10^{-3}$):
#
# $$
# \text{far}(\text{model}) = \operatorname{mean}_{\text{layers, heads}, i \ge 512} \sum_{j\,:\, i - j \ge T} p_{ij}.
# $$
#
# For ALiBi one can guess: a head with slope $m$ multiplies the weight of a key at distance $d$ by
# $e^{-m d}$ relative to a key at distance 0 with the same score; with the 4 heads' slopes
# $1/4 \ldots 1/256$, $e^{-64 m}$ ranges from $e^{-16} \approx 10^{-7}$ to $e^{-1/4} = 0.78$, so the
# gentlest heads can still look far. Scores are not equal, so only the measurement decides. The checks: ALiBi and KERPLE gain from the
# extra context ($G > 0$); plain RoPE loses ($G < 0$); and the encoding that degrades least (§8.2)
# puts *less* of its attention beyond $T_{\text{train}}$ than RoPE does, that is, it stays flat by
# looking near. A `[NO ]` on the last one would mean the flat encoding does look far, which would
# make it a better long-context reader than this section suspects.

# %%
curve = {r["pe"]: np.array(r["position_curve"]["nll"]) for r in results["records"] if r["position_curve"]}
gains = {pe: c[T:2 * T].mean() - c[8 * T:16 * T].mean() for pe, c in curve.items()}
for pe, g in gains.items():
    print(f"  {pe:11s} G = mean loss at positions {T}..{2 * T - 1} minus at {8 * T}..{16 * T - 1}: {g:+.3f} nats")
if not check("ALiBi and KERPLE predict far positions better than near ones (G > 0)",
             min(gains["alibi"], gains["kerple_log"]) > 0, f"{gains['alibi']:+.3f}, {gains['kerple_log']:+.3f}"):
    print("      -> at least one of them predicts the far positions worse: its flat perplexity hides a loss deep "
          "in the window")
if not check("plain RoPE predicts far positions worse (G < 0)", gains["rope"] < 0, f"{gains['rope']:+.3f}"):
    print("      -> RoPE's far positions are no worse here: this model has not broken down at 16x, unlike the "
          "literature's RoPE models")


def lab_model(pe):
    """The model the lab trained for pe (rope_yarn: the rope model with YaRN swapped in, as the lab does)."""
    trained = "rope" if pe == "rope_yarn" else pe
    model, _ = tinype.load_model(os.path.join(out, "train", f"{trained}-s0", "ckpt.npz"))
    if pe != trained:
        model.config = replace(model.config, pe=pe)
        model.pe = tinype.positions.get(pe)
        model.pe.setup(model.config)
    return model


L = 16 * T
window = corpus().val[:L][None].astype(np.int64)
dist = np.arange(L)[:, None] - np.arange(L)[None, :]
far, by_distance = {}, {}
edges = np.array([0, 1, 4, 16, 64, 256, 1024])
for pe in PES:
    maps = lab_model(pe).attention_maps(window)[:, 0]                 # (layers, H, L, L)
    rows = maps[:, :, 512:, :]                                        # queries i >= 512
    d = dist[512:]
    far[pe] = float((rows * (d >= T)).sum(-1).mean())
    by_distance[pe] = [float(((rows * band).sum(-1) / band.sum(-1)).mean())          # mean weight of one key
                       for band in ((d >= lo) & (d < hi) for lo, hi in zip(edges[:-1], edges[1:]))]
    print(f"  {pe:11s} attention mass beyond distance {T} (queries i >= 512): {100 * far[pe]:.1f}%")
if best not in ("alibi", "kerple_log"):
    print(f"  (the least-degrading encoding is {best}, not a distance bias: the comparison with RoPE is skipped)")
else:
    if not check(f"the least-degrading encoding ({best}) attends beyond T_train less than RoPE does", far[best] < far["rope"],
                 f"{100 * far[best]:.1f}% vs {100 * far['rope']:.1f}%"):
        print(f"      -> {best} keeps {100 * far[best]:.1f}% of its attention far away and still degrades least")

# %% [markdown]
# Reading these numbers: if the last check printed `[yes]`, the distance bias that keeps the flat
# encoding flat is also what keeps its attention near, so a fact placed far back in the window is
# faint to it (the figure at the end shows the weight of one key falling with distance). Whether such a
# model can *retrieve* one specific far fact is a different test: the passkey task
# (`tinype lab --tasks passkey`, not run in this chapter for time). Designing an encoding that is
# both flat and far-reaching is the open problem 002 §8 calls "designing a better PE", stated here
# as two measurable quantities, $R$ and far.
#
# ### 8.3.3 Rescaling RoPE is not free
#
# YaRN changes the frequencies of a trained model, $\theta_k \to \theta_k / s$ for the long
# wavelengths with a ramp between (chapter 4, "YaRN"), here with $s = L / T_{\text{train}}$ and no
# fine-tuning. The papers fine-tune after rescaling. Without it, the model reads rescaled phases it
# never saw, also at lengths where plain RoPE still works. The check: is YaRN at least as good as
# plain RoPE at *every* length from $2\times$ on? A `[NO ]` (the sentence names the length) is the
# cost: rescaling helps far but hurts near, so the factor has to be chosen for the target length.

# %%
worse = [L for L in Ls if L > T and tab["rope_yarn"][L][0] > tab["rope"][L][0]]
if not check("YaRN (no fine-tuning) is at least as good as plain RoPE at every length from 2x",
             not worse, ", ".join(f"{L // T}x: {tab['rope'][L][0]:.2f} -> {tab['rope_yarn'][L][0]:.2f}" for L in Ls if L > T)):
    print(f"      -> worse at {', '.join(f'{L // T}x' for L in worse)}: an evaluation-time rescaling costs where plain "
          f"RoPE had not yet broken")

# %% [markdown]
# ### 8.3.4 Compute, and understanding
#
# 002 §8's first challenge is compute. This lab's own bill, measured: the number of bytes each model
# saw in training is steps $\times$ batch $\times$ $T_{\text{train}}$, and the wall time of the whole
# lab run is printed below; a frontier model sees around $10^{13}$ tokens (the literature's order of
# magnitude, e.g. Llama 3's report: over 15 trillion), and the cell prints how many orders of
# magnitude below that this chapter works. The third challenge, understanding, is what §8.3.2 did: the attention mass by
# distance, plotted below, is a small, exact piece of interpretation of each model.

# %%
tc = results["train"]
tokens = tc["steps"] * tc["batch_size"] * T
print(f"  this lab: {len(set(r['trained'] for r in results['records']))} trained models x {tc['steps']} steps x "
      f"{tc['batch_size']} x {T} bytes = {tokens:,} bytes each; the lab took {lab_seconds:.0f} s on this machine "
      f"(training and evaluation); 1.5e13 / {tokens:,} = 10^{np.log10(1.5e13 / tokens):.1f}")

plt = pyplot()
fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2))
for pe in PES:
    a1.plot(Ls, [tab[pe][L][0] for L in Ls], marker="o", label=pe)
    a2.plot(np.arange(len(edges) - 1), by_distance[pe], marker="o", label=pe)
a1.axvline(T, color="gray", linestyle=":", label=f"T_train = {T}")
a1.set_xscale("log", base=2)
a1.set_xlabel("evaluation window L (bytes)")
a1.set_ylabel("perplexity per byte (lower is better)")
a1.set_title("Small lab, this run: train at 64 bytes, test to 16x")
a1.legend(fontsize=8)
a2.set_xticks(np.arange(len(edges) - 1))
a2.set_xticklabels([f"{lo}-{hi - 1}" for lo, hi in zip(edges[:-1], edges[1:])])
a2.set_yscale("log")
a2.set_xlabel("distance i - j between query and key (bytes)")
a2.set_ylabel("mean attention weight of one key\n(fraction of the query's total)")
a2.set_title(f"Where attention goes at L = {L} (queries i >= 512, all layers and heads)")
a2.legend(fontsize=8)
savefig(fig, FIG, "outlook.png")
workdir.cleanup()

# %% [markdown]
# ## 8.4 Summary
#
# The articles' conclusion, "extrapolation remains a challenge", is now a set of measurements
# rather than a sentence: the degradation ratio $R$ of each encoding, the gain $G$ from far
# context, the share of attention that reaches beyond $T_{\text{train}}$, and the cost of rescaling
# at short extensions. The checks above say, for this run, which of the literature's claims hold at
# this scale. Chapter 9 answers the articles' FAQ the same way.

# %%
done()
