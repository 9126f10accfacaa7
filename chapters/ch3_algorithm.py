# %% [markdown]
# # Chapter 3. Algorithm steps (核心算法原理具体操作步骤)
#
# Article 000 §3: pretrain a language model (self-supervised), apply the positional encoding to the
# input, fine-tune on the task. Article 002 §3: train a large model, design a new PE, apply it and
# **retrain**. This chapter runs the steps on tinype and tests one claim: that a new encoding must be
# retrained. Position Interpolation, NTK-aware scaling and YaRN change RoPE's frequencies *at
# evaluation time*, on a model trained with plain RoPE; the measurement shows what that buys.
#
# Step by step, one training step is: a batch of windows -> forward -> loss -> backward (every
# gradient by hand, checked below against finite differences) -> clip -> AdamW with warmup + cosine.

# %%
from dataclasses import replace

import numpy as np

import tinype
from tinype import positions
from common import check, corpus, done, figure_dir, fmt, heading, ppl, pyplot, savefig, say

FIG = figure_dir("ch3")
heading("3.1 Backward by hand, checked")
m64 = tinype.Transformer(tinype.ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=8, pe="rope",
                                            dtype="float64"), seed=0)
rng = np.random.default_rng(0)
x, y = rng.integers(0, 256, (2, 8)), rng.integers(0, 256, (2, 8))
errors = tinype.gradcheck.check_model(m64, x, y, max_entries=8)
worst = max(errors.values())
check("every parameter's gradient equals central differences (float64)", worst < 1e-6,
      f"{len(errors)} parameters, worst relative error {worst:.1e}")

# %%
heading("3.2 Pretraining: the language-model objective")
say("""Pretraining here is next-byte prediction on the bundled corpus with RoPE, the encoding of most
current open models. We keep the loss history to draw the learning curve.""")
model_cfg, train_cfg = tinype.preset("quick", pe="rope")
train_cfg = replace(train_cfg, steps=400, warmup=40, eval_every=100, ckpt_every=0)
result = tinype.train(model_cfg, train_cfg, corpus(), progress=False, log=lambda m: None)
rope = result.model
hist = result.history
print(f"  loss {hist[0]['loss']:.2f} -> {hist[-1]['loss']:.2f} over {len(hist)} steps; "
      f"validation perplexity {result.val['ppl']:.2f}")
check("training lowers the loss", hist[-1]["loss"] < 0.6 * hist[0]["loss"])

# %%
heading("3.3 'Apply a new encoding and retrain'? Try it without retraining first")
say("""Every RoPE extension below reuses the trained weights; only the rotation frequencies change,
computed for the evaluation length (factor = L / T_train).""")
lengths = [64, 128, 256, 512]
variants = ["rope", "rope_pi", "rope_ntk", "rope_dynamic", "rope_yarn"]
table = {}
for name in variants:
    rope.pe = positions.get(name)
    rope.config = replace(rope.config, pe=name)
    rope.pe.setup(rope.config)
    table[name] = [ppl(rope, L) for L in lengths]
print("  " + "variant".ljust(14) + "".join(f"{L:>9d}" for L in lengths))
for name, row in table.items():
    print("  " + name.ljust(14) + "".join(f"{fmt(v):>9s}" for v in row))
best = min(variants[1:], key=lambda n: table[n][-1])
check("at T_train every variant equals plain RoPE", all(abs(table[n][0] - table["rope"][0]) < 1e-6 * table["rope"][0]
                                                       for n in ("rope_ntk", "rope_dynamic", "rope_yarn")))
check(f"some evaluation-time variant beats plain RoPE at 8x without retraining ({best})",
      table[best][-1] < table["rope"][-1], f"{fmt(table['rope'][-1])} -> {fmt(table[best][-1])}")
say("""So 002 §3.3's "retrain" is not the only path: part of the loss past T_train is recovered for
free. Fine-tuning at the longer length recovers more (the PI and YaRN papers use a few hundred
steps), and encodings such as ALiBi need neither (chapter 1).""")

plt = pyplot()
fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
a1.plot([h["step"] for h in hist], [h["loss"] for h in hist], linewidth=0.8, label="train loss")
val = [(h["step"], h["val_nll"]) for h in hist if "val_nll" in h]
a1.plot(*zip(*val), "o-", label="validation")
a1.set_xlabel("step")
a1.set_ylabel("nats per byte")
a1.set_title("Pretraining a RoPE language model")
a1.legend()
for name, row in table.items():
    a2.plot(lengths, row, marker="o", label=name)
a2.set_xscale("log", base=2)
a2.set_xlabel("evaluation length (bytes)")
a2.set_ylabel("perplexity")
a2.set_title("Same weights, RoPE variants at evaluation time")
a2.legend(fontsize=8)
savefig(fig, FIG, "pretrain_and_variants.png")
done()
