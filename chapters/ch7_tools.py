# %% [markdown]
# # Chapter 7. Tools and resources (工具和资源推荐)
#
# Article 000 §7 recommends TensorFlow, Hugging Face Transformers and a deep-learning textbook;
# article 002 §7 recommends PyTorch, "the Transformer" architecture and Hugging Face. They are good
# tools for *using* positional encodings, and poor ones for *seeing* them: in a production library
# the encoding is a few lines inside a fused GPU kernel. tinype is the glass-box version of the same
# toolbox, and this chapter measures it instead of praising it:
#
# 1. the `tinype` command and package (§7.1);
# 2. compiled kernels held equal to their NumPy twins (§7.2);
# 3. how much arithmetic attention is, counted by hand (§7.3), then how fast each implementation
#    does it on this machine, with NumPy's own matrix multiply as the yardstick (§7.4);
# 4. why the compiled kernel is fast: tiling, the online softmax, recomputation from the
#    log-sum-exp, register tiles and the exponent floor (§7.5);
# 5. the reference libraries tinype is held to (§7.6).
#
# Timings on a shared 2-core machine are noisy. Every timing below is repeated, reported as
# best / median / worst, and compared only with timings taken in the same run, taking turns.

# %%
import time

import numpy as np
from common import check, done, figure_dir, pyplot, savefig

import tinype
from tinype import cli, kernels, positions, reference

FIG = figure_dir("ch7")
rng = np.random.default_rng(0)

# %% [markdown]
# ## 7.1 The tinype command and package
#
# `pip install -e .` installs one Python package and one command. The package is what the chapters
# import (`tinype.Transformer`, `tinype.positions`, `tinype.train`, `tinype.kernels`, ...); the
# command wraps it for the shell:
#
# | command | what it does |
# |---|---|
# | `tinype train --pe alibi` | train a byte-level language model with one encoding |
# | `tinype generate --checkpoint ... --prompt "def "` | sample from a checkpoint |
# | `tinype lab --pe rope alibi ...` | train short, test long: every encoding on the same data, model and budget |
# | `tinype info` | which kernel backend is loaded, which encodings exist |
#
# Every command has `--help`. The cell below runs `tinype info` through the same entry point the
# shell uses (`tinype.cli.main`), so what it prints is this installation, not a description of it.
# The backend is `cython` when the compiled extension was built and `numpy` when it was not (or when
# `TINYPE_BACKEND=numpy` forces the references); everything else in tinype calls kernels through
# the one switch `tinype.kernels`, so both backends run the same model.

# %%
cli.main(["info"])
print(f"the encodings are {len(positions.available())} registered names; "
      f"this process uses the {kernels.BACKEND} backend")

# %% [markdown]
# ## 7.2 Compiled kernels, held equal to their NumPy twins
#
# Each compiled kernel in `pyx/` has a twin of the same name and signature in `tinype/reference.py`,
# written to read like the formula. The twin is the specification; the compiled kernel is the fast
# implementation; the test suite holds them equal. For attention the formula is
#
# $$
# s_{ij} = \frac{q_i \cdot k_j}{\sqrt{D}} + b_h(i-j), \qquad
# p_{ij} = \frac{e^{s_{ij}}}{\sum_{j' \le i} e^{s_{ij'}}}, \qquad
# o_i = \sum_{j \le i} p_{ij}\, v_j ,
# $$
#
# with $b_h(d) = -m_h d$ the ALiBi bias of head $h$ (slope $m_h$), and the forward also returns the
# row's log-sum-exp $\ell_i = \log \sum_{j \le i} e^{s_{ij}}$. The backward returns
# $dq, dk, dv$ and the gradient of the bias table. "Equal" means a small *relative* error,
#
# $$
# \mathrm{err} = \frac{\max |x_{\text{compiled}} - x_{\text{reference}}|}{\max |x_{\text{reference}}|},
# $$
#
# taken as the worst over the five outputs (out, dq, dk, dv, dbias). The two implementations add
# the same numbers in a different order (key blocks, then a final division), so they cannot agree
# to the last bit; rounding alone gives about $10^{-16}$ in float64 and $10^{-7}$ in float32. The
# tolerances are $10^{-12}$ and $10^{-5}$: a wrong index, a missing rescale or a dropped bias
# term gives errors of order 1, far above them. If a line prints `[NO ]`, the compiled extension
# disagrees with its specification: a real bug (or a stale build: rerun `pip install -e .`).

# %%
B, H, T, D = 1, 4, 256, 32
slopes = positions.alibi_slopes(H)
bias = -slopes[:, None] * np.arange(T)[None, :]                 # (H, T): b_h(d) = -m_h d, d = 0..T-1
for dt, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
    q, k, v, do = (rng.normal(size=(B, H, T, D)).astype(dt) for _ in range(4))
    b = bias.astype(dt)
    out, lse = kernels.attention_forward(q, k, v, D ** -0.5, True, b)
    ref_out, ref_lse = reference.attention_forward(q, k, v, D ** -0.5, True, b)
    grads = kernels.attention_backward(do, q, k, v, out, lse, D ** -0.5, True, b)
    ref_grads = reference.attention_backward(do, q, k, v, ref_out, ref_lse, D ** -0.5, True, b)
    worst = max(np.abs(a - r).max() / np.abs(r).max() for a, r in zip((out, *grads), (ref_out, *ref_grads)))
    check(f"{np.dtype(dt).name}: {kernels.BACKEND} attention forward + backward (with the bias gradient) "
          f"equals the NumPy reference within {tol:.0e}", worst < tol, f"worst relative error {worst:.1e}")
if kernels.BACKEND == "numpy":
    print("  (the numpy backend is loaded: both sides are the reference, so the checks above compare it "
          "with itself; build the extension with `pip install -e .` to test the compiled kernel)")

# %% [markdown]
# ### 7.2.1 Who checks the twin? Central differences
#
# Holding the kernel equal to its twin only moves the question: is the twin right? Its backward is
# checked against the definition of a derivative. For a scalar $f = \sum o \odot dO$ (so that the
# gradient of $f$ is what backward computes for that $dO$), each entry of $q$ is nudged by $\pm h$:
#
# $$
# \frac{\partial f}{\partial q_n} \approx \frac{f(q + h e_n) - f(q - h e_n)}{2h},
# \qquad \text{error } O(h^2) + O(\varepsilon / h),
# $$
#
# which in float64 with $h = 10^{-5}$ is about $10^{-10}$, so a correct backward agrees to a
# relative error (`tinype.gradcheck.rel_error`, $\|a - n\| / \max(\|a\|, \|n\|)$) of $10^{-8}$
# or better. Here on one small head with the ALiBi bias, for $dq$, $dk$, $dv$ and the bias-table
# gradient, with `tinype.gradcheck.numerical_gradient`, the helper the exercises use too. A `[NO ]`
# (error above $10^{-6}$) would mean the reference backward, and so every implementation held to
# it, computes the wrong gradient.

# %%
T, D_small = 6, 4
q, k, v, dout = (rng.standard_normal((1, 1, T, D_small)) for _ in range(4))
b6 = -positions.alibi_slopes(1)[:, None] * np.arange(T)[None, :]
out, lse = reference.attention_forward(q, k, v, D_small ** -0.5, True, b6)
grads = reference.attention_backward(dout, q, k, v, out, lse, D_small ** -0.5, True, b6)
f = lambda: reference.attention_forward(q, k, v, D_small ** -0.5, True, b6)[0]
for name, x, g in zip(("dq", "dk", "dv", "dbias"), (q, k, v, b6), grads):
    e = tinype.gradcheck.rel_error(g, tinype.gradcheck.numerical_gradient(f, x, dout))
    check(f"reference {name} equals central differences (float64)", e < 1e-6, f"relative error {e:.1e}")

# %% [markdown]
# ## 7.3 How much arithmetic is attention? Counting multiply-adds
#
# Before timing anything, count the work, so that a time can be turned into a rate and compared
# with what the machine can do. Per head, attention is a handful of matrix products over the
# $T \times T$ grid of (query, key) pairs. A product of a $T \times D$ by a $D \times T$ matrix, or of
# a $T \times T$ by a $T \times D$ one, costs $D$ multiply-adds for every (query, key) pair it touches,
# and one multiply-add is two floating-point operations (FLOPs).
#
# The forward pass is two products:
#
# $$
# S = Q K^\top / \sqrt{D}, \qquad O = P V .
# $$
#
# The backward pass is four. From $O = PV$: $\;dV = P^\top dO$ and $dP = dO\, V^\top$. The softmax
# step $dS = P \odot (dP - \mathrm{rowdot})$ is elementwise ($O(T^2)$, no factor $D$). From
# $S = QK^\top/\sqrt{D}$: $\;dQ = dS\, K/\sqrt{D}$ and $dK = dS^\top Q/\sqrt{D}$. So six products in all, and
# with a causal mask only the pairs $j \le i$ matter, $T(T+1)/2$ of them per head:
#
# $$
# F_{\text{useful}} = 2 \cdot 6 \cdot D \cdot BH \cdot \frac{T(T+1)}{2} \quad\text{FLOPs}.
# $$
#
# The compiled kernel does a seventh product: its backward *recomputes* $S$ instead of storing $P$
# (§7.5 says why), so it executes $F_{\text{kernel}} = 14\, D\, BH\, T(T+1)/2$. The NumPy twin
# multiplies whole matrices, masked half included, and recomputes $S$ too:
# $F_{\text{twin}} = 14\, D\, BH\, T^2$, almost twice the kernel's.
#
# **Worked example.** $T = 4$, $D = 2$, one head. Visible pairs: $4 \cdot 5 / 2 = 10$ (row $i$ sees
# $i+1$ keys: $1+2+3+4$). Useful FLOPs: $2 \cdot 6 \cdot 2 \cdot 10 = 240$; the kernel executes
# $14 \cdot 2 \cdot 10 = 280$; the twin $14 \cdot 2 \cdot 16 = 448$. The cell below computes the
# same three numbers from the formulas, then the counts at the sizes timed in §7.4.
#
# To compare implementations we divide the *same* numerator, $F_{\text{useful}}$, by each one's
# time (so the ratio of two rates is the ratio of their times); to ask how close an implementation
# runs to the machine's limit we divide what it *executes* by its time and compare that with the
# rate of NumPy's own float32 matrix multiply (sgemm), measured in the same run.

# %%
def flops(T, D, BH=1):
    """(useful, kernel-executed, twin-executed) FLOPs of causal attention forward + backward."""
    pairs = T * (T + 1) / 2
    return 12 * D * BH * pairs, 14 * D * BH * pairs, 14 * D * BH * T * T


print("worked example T=4, D=2, one head: useful {}, kernel {}, twin {} FLOPs".format(*flops(4, 2)))
H, D = 4, 64
LENGTHS = [256, 512, 1024, 2048]
for T in LENGTHS:
    fu, fk, ft = flops(T, D, H)
    print(f"  T={T:5d}, H={H}, D={D}: useful {fu / 1e9:6.2f} GFLOP, kernel {fk / 1e9:6.2f}, twin {ft / 1e9:6.2f}")

# %% [markdown]
# ## 7.4 Measured: the compiled kernel, its NumPy twin, and sgemm as the yardstick
#
# The experiment: causal attention, forward + backward, float32, $B = 1$, $H = 4$, $D = 64$, at
# $T = 256 \ldots 2048$, once with the ALiBi bias and once with no bias at all (the control: the bias
# adds only $O(T^2)$ additions to $O(T^2 D)$ multiply-adds, so the two should take about the same
# time; §7.5.5 shows when they do not). The contestants at each length:
#
# - tinype's compiled kernel (`tinype.kernels`, the backend named in §7.1), with ALiBi and without;
# - its NumPy twin (`tinype.reference`), which builds the dense $T \times T$ matrices, likewise;
# - NumPy's float32 matrix multiply of two $2048 \times 2048$ matrices, $2 \cdot 2048^3$ FLOPs: the
#   machine's practical peak for this kind of arithmetic (BLAS, both cores), our yardstick;
# - if PyTorch is installed: `scaled_dot_product_attention` given the ALiBi bias as a dense float
#   mask (its way to take an arbitrary bias), and its causal kernel with no bias.
#
# Each is run once to warm up, then 5 rounds in which the contestants take turns, so that a slow
# spell of the shared machine falls on all of them alike. We report best / median / worst of the
# 5 and compute rates and ratios from the medians. The ratios are the robust part; absolute
# numbers move by tens of percent from run to run on a shared machine.
#
# Why these three statistics: the *best* is the time the code needs when nothing disturbs it (a
# program cannot run faster than it can), the *median* is what one typically gets here, and the
# *worst* shows how disturbed the machine was. A worst far above the best in one row and not in
# the others says that row was unlucky, not slow; a median that moves with the best says the
# difference is real.
#
# The cell also prints two facts about this CPU that the results depend on: whether it has AVX2
# (8 floats per vector instruction, what tinype's register tiles use) and AVX-512 (16 floats, which
# BLAS uses when present; then sgemm can run up to twice as fast as any 8-float code).

# %%
def interleaved(fns, rounds=5):
    """Seconds of each function in each of `rounds` rounds, the functions taking turns in a round."""
    for fn in fns:                                              # warm-up (allocations, thread pools)
        fn()
    times = np.zeros((len(fns), rounds))
    for r in range(rounds):
        for n, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[n, r] = time.perf_counter() - t0
    return times


def attention_fb(impl, q, k, v, b, dout):
    out, lse = impl.attention_forward(q, k, v, D ** -0.5, True, b)
    impl.attention_backward(dout, q, k, v, out, lse, D ** -0.5, True, b)


try:
    import torch
    F = torch.nn.functional
except ImportError:
    torch = None
    print("PyTorch is not installed: its rows are skipped (pip install torch to add them)")


def torch_fns(q, k, v, dout):
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    tdo = torch.tensor(dout)
    dist = torch.arange(q.shape[2])[:, None] - torch.arange(q.shape[2])[None, :]      # i - j
    mask = (-torch.tensor(slopes, dtype=torch.float32)[:, None, None] * dist).masked_fill(dist < 0, -np.inf)
    return [lambda: F.scaled_dot_product_attention(tq, tk, tv, attn_mask=mask[None], scale=D ** -0.5).backward(tdo),
            lambda: F.scaled_dot_product_attention(tq, tk, tv, is_causal=True, scale=D ** -0.5).backward(tdo)]


try:
    cpu_flags = set(next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split())
    print(f"this CPU: AVX2 {'avx2' in cpu_flags}, AVX-512 {'avx512f' in cpu_flags}")
except (OSError, StopIteration):
    print("this CPU: its vector extensions are not listed in /proc/cpuinfo here")
A = rng.standard_normal((2048, 2048)).astype(np.float32)
SGEMM_FLOPS = 2 * 2048 ** 3
KER, TWIN, SGEMM, KER0, TWIN0, TMASK, TCAUSAL = range(7)            # rows of the timing table
names = ["tinype kernel, ALiBi", "NumPy twin, ALiBi", "numpy sgemm 2048^3", "tinype kernel, no bias",
         "NumPy twin, no bias"] + (["torch SDPA + ALiBi mask", "torch causal, no bias"] if torch is not None else [])
slopes = positions.alibi_slopes(H)
timing = {}
for T in LENGTHS:
    q, k, v, dout = (rng.standard_normal((1, H, T, D)).astype(np.float32) for _ in range(4))
    b = (-slopes[:, None] * np.arange(T)[None, :]).astype(np.float32)
    fns = [lambda: attention_fb(kernels, q, k, v, b, dout), lambda: attention_fb(reference, q, k, v, b, dout),
           lambda: A @ A, lambda: attention_fb(kernels, q, k, v, None, dout),
           lambda: attention_fb(reference, q, k, v, None, dout)] + (torch_fns(q, k, v, dout) if torch is not None else [])
    timing[T] = interleaved(fns)
if torch is not None:
    print(f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")

# %%
print("seconds per call, best / median / worst of 5 rounds (noisy: a shared 2-core machine)")
for T, t in timing.items():
    print(f"  T={T}")
    for name, row in zip(names, t):
        print(f"    {name:26s} {row.min():8.4f} {np.median(row):8.4f} {row.max():8.4f}")
med = {T: np.median(t, axis=1) for T, t in timing.items()}
sgemm = {T: SGEMM_FLOPS / m[SGEMM] / 1e9 for T, m in med.items()}   # GFLOP/s of the yardstick, per length
rate = {T: flops(T, D, H)[0] / m / 1e9 for T, m in med.items()}     # useful GFLOP/s of every contestant
print(f"\nnumpy sgemm, measured alongside each length: {min(sgemm.values()):.0f} .. {max(sgemm.values()):.0f} GFLOP/s")
for label, ker, twin, tor in (("with the ALiBi bias", KER, TWIN, TMASK), ("without a bias", KER0, TWIN0, TCAUSAL)):
    print(f"\n{label}:\n{'T':>6} {'kernel GFLOP/s':>15} {'% of sgemm':>11} {'twin GFLOP/s':>13} {'kernel vs twin':>15}"
          + (f" {'kernel vs torch':>16}" if torch is not None else ""))
    for T, m in med.items():
        fk = flops(T, D, H)[1]
        print(f"{T:>6} {fk / m[ker] / 1e9:>15.1f} {100 * fk / m[ker] / 1e9 / sgemm[T]:>10.0f}% {rate[T][twin]:>13.1f} "
              f"{m[twin] / m[ker]:>14.1f}x" + (f" {m[tor] / m[ker]:>15.2f}x" if torch is not None else ""))
print("  (kernel GFLOP/s: what it executes, 14 D per visible pair; twin GFLOP/s: the useful 12 D per visible pair;\n"
      "   the ratios are time ratios, > 1 means tinype's kernel is faster; torch: with the dense ALiBi mask,\n"
      "   then its causal kernel)")

# %% [markdown]
# What to read in the tables. Four questions, each answered by the cell below from the medians:
#
# 1. *Is the compiled kernel faster than its twin, and does the gap grow with $T$?* The twin's
#    matrix products themselves run on the same BLAS as sgemm, but it executes almost twice the
#    arithmetic (the masked half) and it writes and rereads $T \times T$ matrices (scores,
#    probabilities, their gradients) that outgrow the caches as $T$ grows: at $T = 2048$ one
#    float32 score matrix for four heads is $4 \cdot 4 \cdot 2048^2$ bytes $= 64$ MiB. The kernel's
#    working set is one $96 \times 96$ tile per thread (36 KiB) and its memory grows like $T D$.
#    The clean comparison is without a bias (question 3 says why).
# 2. *How close does the kernel get to the machine?* The fraction of sgemm, without a bias. A fused
#    attention kernel cannot reach it: besides the products it evaluates $T^2/2$ exponentials, works
#    on small tiles, and uses 8-float vectors where BLAS may use 16 (AVX-512, printed above). The
#    check asks for a quarter of sgemm at $T = 2048$: at that rate the products inside the tiles run
#    at arithmetic speed; the plain loops of the float64 path (§7.5.4) are several times slower.
# 3. *What does the ALiBi bias cost?* It should cost little (the control above). It once cost 5-8x
#    on this kernel's development machine: §7.5.5 measures the cause (subnormal numbers in the
#    backward) and the fix (flushing negligible weights to 0).
# 4. *And against PyTorch?* Given the ALiBi bias, PyTorch has to read a dense $(H, T, T)$ mask;
#    without a bias its causal kernel does the same arithmetic as ours.
#
# If a check prints `[NO ]`, the printed line under it says which of these it is; and if the worst
# column is several times the best, the machine was busy in those rounds: rerun when it is quiet.

# %%
top = LENGTHS[-1]
if kernels.BACKEND == "cython":
    for label, ker, twin in (("with ALiBi", KER, TWIN), ("without a bias", KER0, TWIN0)):
        r = [med[T][twin] / med[T][ker] for T in LENGTHS]
        if not check(f"{label}: the compiled kernel is faster than its NumPy twin at every length", min(r) > 1,
                     ", ".join(f"{x:.1f}x" for x in r)):
            print("      -> at the shortest lengths a call is a millisecond or less, where the kernel's fixed costs"
                  " (packing K and V, starting threads) and a disturbed round weigh most")
    r0 = [med[T][TWIN0] / med[T][KER0] for T in LENGTHS]
    if not check("without a bias, the kernel's advantage over the twin grows from the shortest to the longest length",
                 r0[-1] > r0[0], f"{r0[0]:.1f}x at T={LENGTHS[0]} -> {r0[-1]:.1f}x at T={top}"):
        print("      -> the twin kept pace: its T x T matrices still fit the caches here, or the rounds were disturbed")
    frac = flops(top, D, H)[1] / med[top][KER0] / 1e9 / sgemm[top]
    if not check(f"without a bias, at T={top} the kernel runs its arithmetic at more than a quarter of sgemm's rate",
                 frac > 1 / 4, f"{100 * frac:.0f}%"):
        print("      -> below a quarter: a busy machine (see the worst column) or a build without register tiles (§7.5.4)")
    cost = med[top][KER] / med[top][KER0]
    if not check(f"at T={top} the ALiBi bias costs the kernel less than 50% extra time", cost < 1.5,
                 f"{cost:.2f}x the no-bias time"):
        print("      -> far more than its O(T^2) additions: §7.5.5 measures whether subnormal numbers are back")
    if torch is not None:
        if not check(f"at T={top} the kernel with ALiBi is faster than PyTorch given the same bias as a dense mask",
                     med[top][TMASK] > med[top][KER], f"torch takes {med[top][TMASK] / med[top][KER]:.2f}x our time"):
            print("      -> slower than torch here: a disturbed round (see the worst column), or, if the previous "
                  "check failed too, a bias cost that §7.5.5 investigates")
        print(f"  without a bias, PyTorch's causal kernel takes {med[top][TCAUSAL] / med[top][KER0]:.2f}x our time at "
              f"T={top} (> 1: ours faster); this ratio wanders most from run to run")
else:
    print("  (numpy backend: the 'kernel' is the twin itself, so the comparisons are skipped)")

# %%
plt = pyplot()
fig, (a1, a2) = plt.subplots(1, 2, figsize=(14, 4.4))
style = {KER: ("C0", "-"), TWIN: ("C1", "-"), KER0: ("C0", "--"), TWIN0: ("C1", "--"), TMASK: ("C3", "-"),
         TCAUSAL: ("C3", "--")}
for n, name in enumerate(names):
    if n == SGEMM:
        continue                                                     # sgemm is the horizontal line
    color, ls = style[n]
    med_ms = np.array([1e3 * med[T][n] for T in LENGTHS])
    lo = med_ms - np.array([1e3 * timing[T][n].min() for T in LENGTHS])
    hi = np.array([1e3 * timing[T][n].max() for T in LENGTHS]) - med_ms
    a1.errorbar(LENGTHS, med_ms, yerr=[lo, hi], marker="o", capsize=3, color=color, linestyle=ls, label=name)
    a2.plot(LENGTHS, [rate[T][n] for T in LENGTHS], marker="o", color=color, linestyle=ls, label=name)
a2.plot(LENGTHS, [sgemm[T] for T in LENGTHS], linestyle=":", color="C7", label="numpy sgemm 2048³ (yardstick)")
for ax in (a1, a2):
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sequence length T (tokens)")
a2.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="both panels")
a1.set_yscale("log")
a2.set_yscale("log")
a1.set_ylabel("time per call (ms)\nmedian; bars: best..worst of 5")
a1.set_title("Causal attention forward + backward, float32, H=4, D=64")
a2.set_ylabel("GFLOP/s of useful work (12 D per visible pair)")
a2.set_title("Rate of useful arithmetic vs numpy's sgemm (same run)")
savefig(fig, FIG, "kernel_speed.png")


# %% [markdown]
# ## 7.5 Why the compiled kernel is fast
#
# `pyx/attention.pxi` is about 500 lines. Five ideas carry it.
#
# ### 7.5.1 Tiling: never hold the $T \times T$ matrix
#
# The queries are cut into blocks of 96 rows and the keys into blocks of 96 columns. A tile of
# scores $S_{\text{tile}} = Q_{\text{blk}} K_{\text{blk}}^\top$ is computed, used and thrown away; a
# causal query block visits only the key blocks at or before it. Memory per head is $O(TD)$ (the
# inputs and outputs) plus one $96 \times 96$ tile per thread. That is what the twin lacks, and it is
# why the twin falls behind as $T$ grows in §7.4.
#
# Tiles also decide how often each number is fetched. **Worked example** with the sizes of §7.4
# ($D = 64$): one score tile $S_{\text{tile}} = Q_{\text{blk}} K_{\text{blk}}^\top$ is
# $96 \cdot 96 \cdot 64 = 589{,}824$ multiply-adds computed from $96 \cdot 64 + 64 \cdot 96 = 12{,}288$
# input floats (48 KiB, which fits in a core's L2 cache): each float fetched feeds
# $589{,}824 / 12{,}288 = 48$ multiply-adds. The dense twin instead writes the whole
# $T \times T$ score matrix to memory and reads it back for the softmax, again for $P V$, and again in
# the backward: for every 64 multiply-adds of a dot product, one float goes out to memory and comes
# back several times. Once $T \times T$ no longer fits in the caches, that traffic sets its speed.
#
# ### 7.5.2 The online softmax
#
# A tile does not see the whole row, yet the softmax needs the row's maximum (for stability) and its
# sum. The online softmax keeps three running quantities per query row: the maximum $m$, the sum
# $l$ of exponentials relative to $m$, and the unnormalised output $o$. When a key block with
# scores $s_j$ and values $v_j$ arrives:
#
# $$
# m' = \max\big(m, \max_j s_j\big), \qquad
# l' = l\, e^{m - m'} + \sum_j e^{s_j - m'}, \qquad
# o' = o\, e^{m - m'} + \sum_j e^{s_j - m'}\, v_j ,
# $$
#
# starting from $m = -\infty$, $l = 0$, $o = 0$. The factor $e^{m - m'}$ rescales what was gathered
# under the old maximum to the new one. After the last block, $\mathrm{out} = o / l$ and the
# log-sum-exp is $\ell = m + \log l$. Why it is exact: by induction, after any prefix of blocks
# $l = \sum_{\text{seen}} e^{s_j - m}$ and $o = \sum_{\text{seen}} e^{s_j - m} v_j$ with $m$ the maximum
# seen so far; multiplying both by $e^{m - m'}$ changes the reference from $m$ to $m'$, and the new
# block's terms are added with the same reference.
#
# **Worked example**, to do by hand: scores $s = (1, 3, 0, 2, 5, 1)$, scalar values
# $v = (1, 0, 2, 1, 0, 3)$, blocks of two keys.
#
# | after block | $m$ | $l$ | $o$ |
# |---|---|---|---|
# | $(1, 3)$ | 3 | $e^{-2} + 1 = 1.1353$ | $e^{-2} \cdot 1 + 1 \cdot 0 = 0.1353$ |
# | $(0, 2)$ | 3 | $1.1353 + e^{-3} + e^{-1} = 1.5530$ | $0.1353 + 2e^{-3} + e^{-1} = 0.6028$ |
# | $(5, 1)$ | 5 | $1.5530\, e^{-2} + 1 + e^{-4} = 1.2285$ | $0.6028\, e^{-2} + 0 + 3e^{-4} = 0.1365$ |
#
# so $\mathrm{out} = 0.1365 / 1.2285 = 0.1111$ and $\ell = 5 + \log 1.2285 = 5.2058$. The cell
# checks the recurrence against the direct softmax, on this example and on a random row of 1000
# keys in blocks of 96 (as the kernel cuts them). A `[NO ]` would mean the update rule above is
# wrong (for instance, $o$ not rescaled when the maximum moves).

# %%
def online_softmax(s, v, block):
    """out, lse and the running (m, l, o) after each block: the recurrence above, in float64."""
    m, l, o, steps = -np.inf, 0.0, np.zeros(v.shape[1:]), []
    for start in range(0, len(s), block):
        sb, vb = s[start:start + block], v[start:start + block]
        m_new = max(m, sb.max())
        w = np.exp(sb - m_new)
        l = l * np.exp(m - m_new) + w.sum()
        o = o * np.exp(m - m_new) + w @ vb
        m = m_new
        steps.append((m, l, o))
    return o / l, m + np.log(l), steps


s_ex, v_ex = np.array([1.0, 3, 0, 2, 5, 1]), np.array([[1.0], [0], [2], [1], [0], [3]])
out_ex, lse_ex, steps = online_softmax(s_ex, v_ex, 2)
for n, (m, l, o) in enumerate(steps):
    print(f"  after block {n + 1}: m = {m:.0f}, l = {l:.4f}, o = {o[0]:.4f}")
p_ex = np.exp(s_ex - s_ex.max()) / np.exp(s_ex - s_ex.max()).sum()
print(f"  online: out = {out_ex[0]:.4f}, lse = {lse_ex:.4f};  direct: out = {p_ex @ v_ex[:, 0]:.4f}, "
      f"lse = {np.log(np.exp(s_ex).sum()):.4f}")
s_big, v_big = 4 * rng.standard_normal(1000), rng.standard_normal((1000, 64))
out_big, lse_big, _ = online_softmax(s_big, v_big, 96)
p_big = np.exp(s_big - s_big.max()) / np.exp(s_big - s_big.max()).sum()
err = max(np.abs(out_ex - p_ex @ v_ex).max(), np.abs(out_big - p_big @ v_big).max(),
          abs(lse_big - (s_big.max() + np.log(np.exp(s_big - s_big.max()).sum()))))
check("the online softmax, block by block, equals the direct softmax (both examples)", err < 1e-12,
      f"max difference {err:.1e}")

# %% [markdown]
# ### 7.5.3 The backward recomputes $P$ from the log-sum-exp
#
# The backward needs $p_{ij}$ for every visible pair. Storing $P$ would bring back the $T^2$ memory,
# so the forward keeps only $\ell_i$ ($T$ numbers per head) and the backward rebuilds each tile:
#
# $$
# p_{ij} = e^{s_{ij} - \ell_i}, \qquad \text{because } \ell_i = \log \sum_{j'} e^{s_{ij'}} .
# $$
#
# That costs the seventh matrix product counted in §7.3 ($S$ again), a good trade: arithmetic is
# cheap, memory traffic is not. The softmax backward also needs the row term
# $\sum_j p_{ij}\, dp_{ij}$, which would need a whole row of $dP$; it has a shortcut:
#
# $$
# \sum_j p_{ij}\, dp_{ij} = \sum_j p_{ij}\, (dO_i \cdot v_j) = dO_i \cdot \sum_j p_{ij} v_j = dO_i \cdot o_i ,
# $$
#
# one dot product per row, computed before any tile (`rowdot` in `_attn_bwd_head`). The cell checks
# both identities on a small random head through tinype's kernels: the rows of the rebuilt $P$ must
# sum to 1, and the two sides of the row term must agree.

# %%
T, D_small = 40, 8
q, k, v, dout = (rng.standard_normal((1, 1, T, D_small)) for _ in range(4))
b1 = -positions.alibi_slopes(1)[:, None] * np.arange(T)[None, :]
out, lse = kernels.attention_forward(q, k, v, D_small ** -0.5, True, b1)
s = (q[0, 0] @ k[0, 0].T) * D_small ** -0.5 + b1[0][np.maximum(np.arange(T)[:, None] - np.arange(T)[None, :], 0)]
s[np.triu_indices(T, 1)] = -np.inf
p = np.exp(s - lse[0, 0][:, None])                            # P rebuilt from the kernel's lse alone
dp = dout[0, 0] @ v[0, 0].T
check("P rebuilt as exp(s - lse) has rows summing to 1", np.abs(p.sum(1) - 1).max() < 1e-12,
      f"max |row sum - 1| = {np.abs(p.sum(1) - 1).max():.1e}")
check("sum_j p_ij dp_ij equals dO_i . o_i for every row", np.abs((p * dp).sum(1) - (dout * out)[0, 0].sum(1)).max() < 1e-12,
      f"max difference {np.abs((p * dp).sum(1) - (dout * out)[0, 0].sum(1)).max():.1e}")

# %% [markdown]
# ### 7.5.4 Register tiles: from memory speed to arithmetic speed
#
# Inside a tile everything is a small matrix product $C \mathrel{+}= \alpha A B$ (`_tile_mm`). The
# plain loop `C[m, n] += a * B[k, n]` does one multiply-add per three memory operations (load
# $B_{kn}$, load $C_{mn}$, store $C_{mn}$): it runs at the speed of the cache, not of the
# multipliers. The float32 fast path (`_micro_6x16`) computes a block of $M_R \times N_R = 6 \times 16$
# outputs at once, holding its 96 partial sums in twelve 8-float AVX registers for the whole loop
# over $k$. Each step loads one row of $B$ (16 floats) and 6 entries of $A$, and performs
# $6 \cdot 16 = 96$ multiply-adds:
#
# $$
# \text{multiply-adds per value loaded} = \frac{M_R N_R}{M_R + N_R} = \frac{96}{22} \approx 4.4
# \quad\text{instead of}\quad \tfrac{1}{3} \text{ per memory operation},
# $$
#
# and $C$ is written once, at the end. BLAS libraries are built the same way (with more levels of
# blocking), which is why sgemm is the right yardstick.
#
# We cannot switch the register tiles off from Python, but the build has a natural control
# experiment: float64 always takes the plain loop. A float64 vector register holds 4 numbers
# instead of 8, so float64 arithmetic is about twice as slow whatever the code: BLAS's own
# sgemm / dgemm ratio measures that width effect on this machine. If the kernel's float32 /
# float64 speed ratio is clearly larger than BLAS's, the float32 path has something more than the
# width: the register tiles. (Confounds to keep in mind: float64 exponentials are also slower than
# float32 ones, and float64 moves twice the bytes.) The experiment runs without a bias, so that
# the effect of §7.5.5 cannot blur it. If the check prints `[NO ]`, the register tiles do not show
# through at this size or the build has none (`TINYPE_PORTABLE=1`, or a compiler without gcc's
# vector extension): the flag is printed.

# %%
T = 1024
q32, k32, v32, do32 = (rng.standard_normal((1, H, T, D)).astype(np.float32) for _ in range(4))
b32 = (-slopes[:, None] * np.arange(T)[None, :]).astype(np.float32)
q64, k64, v64, do64 = (a.astype(np.float64) for a in (q32, k32, v32, do32))
A64 = A.astype(np.float64)
t = interleaved([lambda: attention_fb(kernels, q32, k32, v32, None, do32),
                 lambda: attention_fb(kernels, q64, k64, v64, None, do64),
                 lambda: A @ A, lambda: A64 @ A64])
m = np.median(t, axis=1)
tiles = bool(getattr(getattr(kernels, "_ext", None), "ATTENTION_REGISTER_TILES", False))
print(f"register tiles in this build: {tiles}")
print(f"T={T}, no bias: kernel float32 {1e3 * m[0]:.1f} ms, float64 {1e3 * m[1]:.1f} ms (ratio {m[1] / m[0]:.2f}); "
      f"BLAS sgemm {1e3 * m[2]:.1f} ms, dgemm {1e3 * m[3]:.1f} ms (ratio {m[3] / m[2]:.2f}); medians of 5")
if kernels.BACKEND == "cython":
    check("the kernel gains more from float32 than BLAS does (the register tiles show)",
          m[1] / m[0] > 1.25 * (m[3] / m[2]), f"{m[1] / m[0]:.2f} vs {m[3] / m[2]:.2f}")

# %% [markdown]
# ### 7.5.5 The exponent floor, and eight running maxima
#
# ALiBi makes most far-away logits very negative: with slope $m_h$ the weight of a key at distance
# $d$ is about $e^{-m_h d}$ relative to the nearest ones, and below $e^{-87}$ a float32 exponential
# underflows. glibc's vector exponential (libmvec), which the kernel calls on 8 lanes at once,
# handles an underflowing lane by falling back to a slow scalar call. So the kernel floors every
# exponent at $-87$ before exponentiating. Is that safe? $e^{-87}$ is still a normal float32 (the
# smallest normal is $2^{-126} \approx 1.18 \cdot 10^{-38}$), and the row's largest weight is
# $e^0 = 1$, so at most $T$ floored weights add a relative error of at most
#
# $$
# \frac{T\, e^{-87}}{1} = T \cdot 1.65 \cdot 10^{-38} \ll \varepsilon_{\text{float32}} = 1.2 \cdot 10^{-7}
# \quad\text{for any } T < 10^{30}.
# $$
#
# The cell computes these constants and measures how often the floor acts: the fraction of visible
# weights below $e^{-87}$ in each head at $T = 2048$ (random $q, k$, the ALiBi slopes of 4 heads).
# Steep heads have many; the gentlest head almost none.
#
# **What the floor would leave behind: subnormal gradients, and the flush.** A floored weight is
# $p = e^{-87}$, only $1.4\times$ the smallest normal float32. The backward multiplies it,
# $ds_{ij} = p_{ij}\,(dp_{ij} - \mathrm{rowdot}_i)$, and whenever $|dp_{ij} - \mathrm{rowdot}_i| < 0.71$
# the product is *subnormal* (between 0 and $1.18 \cdot 10^{-38}$, stored with fewer bits). Many CPUs
# (several Intel generations among them) execute an operation that reads a subnormal operand
# through a slow microcode path, much slower than the normal one; others handle subnormal
# operands at full speed, so the effect depends on the machine. On the machine tinype was developed
# on it made the ALiBi backward 5-8x slower than the same kernel without a bias. So the kernel now
# does one more thing after the exponential: every weight below
#
# $$
# \tau = 10^{-20} \;(\text{float32}), \qquad \tau = 10^{-200} \;(\text{float64})
# $$
#
# is set to exactly 0 (`_row_weights` in `pyx/attention.pxi`). That changes no sum: the row's
# largest weight is 1, and $1 + 10^{-20} = 1$ in float32, so the softmax denominator, $P V$ and the
# gradients are the same numbers (60 training steps came out bit-identical with and without it). But
# no operand is left that could be subnormal: $|ds| \ge 10^{-20} \cdot |dp - \mathrm{rowdot}|$ or
# $ds = 0$. The next cell measures both sides: the share of subnormal $ds$ values that the old
# arithmetic (floor only) would produce at $T = 1024$ and that the kernel's (floor, then flush)
# does produce; and the backward's time with the ALiBi slopes, with the same slopes divided by 100
# (no weight ever reaches the floor) and with no bias, in float32, taking turns 5 times.
#
# The second trick needs no measurement to understand: a row maximum kept in one variable is a chain
# of dependent instructions (each `max` waits for the previous one); `_row_max` keeps eight
# independent running maxima and combines them at the end, which the compiler turns into vector
# instructions.

# %%
floor = np.exp(np.float32(-87))
check("e^-87 is a normal float32 (not denormal, not zero)", floor >= np.finfo(np.float32).tiny,
      f"e^-87 = {floor:.3e}, smallest normal {np.finfo(np.float32).tiny:.3e}")
T = 2048
q, k = (rng.standard_normal((H, T, D)).astype(np.float32) for _ in range(2))
dist = np.arange(T)[:, None] - np.arange(T)[None, :]
visible = dist >= 0
for h in range(H):
    s = (q[h] @ k[h].T) * D ** -0.5 - slopes[h] * np.maximum(dist, 0)
    s[~visible] = -np.inf
    below = ((s - s.max(axis=1, keepdims=True)) < -87)[visible].mean()
    print(f"  head with slope {slopes[h]:.5f}: {100 * below:5.1f}% of the visible weights are below e^-87 "
          f"(floored by the kernel)")

# %%
T = 1024
q, k, v, dout = (rng.standard_normal((1, H, T, D)).astype(np.float32) for _ in range(4))
steep = (-slopes[:, None] * np.arange(T)[None, :]).astype(np.float32)
out, lse = kernels.attention_forward(q, k, v, D ** -0.5, True, steep)
dist = np.arange(T)[:, None] - np.arange(T)[None, :]
sub_floor, sub_flush = [], []
tiny = np.finfo(np.float32).tiny
for h in range(H):                                            # ds as the kernel forms it, in float32
    s = (q[0, h] @ k[0, h].T) * np.float32(D ** -0.5) + steep[h][np.maximum(dist, 0)]
    p = np.exp(np.maximum(s - lse[0, h][:, None], np.float32(-87)))          # the floor alone
    g = dout[0, h] @ v[0, h].T - (dout[0, h] * out[0, h]).sum(1)[:, None]
    for share, w in ((sub_floor, p), (sub_flush, np.where(p < np.float32(1e-20), np.float32(0), p))):
        ds = w * g
        share.append(((np.abs(ds) < tiny) & (ds != 0))[dist >= 0].mean())
print(f"  subnormal ds values (visible pairs) per head, floor only: {', '.join(f'{100 * x:.1f}%' for x in sub_floor)}; "
      f"floor then flush (the kernel): {', '.join(f'{100 * x:.1f}%' for x in sub_flush)} "
      f"(slopes {', '.join(f'{x:.4f}' for x in slopes)})")
check("the flush leaves no subnormal ds in any head", max(sub_flush) == 0, f"largest share {100 * max(sub_flush):.2f}%")


def backward_only(b):
    o, l = kernels.attention_forward(q, k, v, D ** -0.5, True, b)
    return lambda: kernels.attention_backward(dout, q, k, v, o, l, D ** -0.5, True, b)


t = interleaved([backward_only(steep), backward_only(steep / 100), backward_only(None)])
m = np.median(t, axis=1)
print(f"  backward at T={T}, float32, median of 5 (best..worst): ALiBi {1e3 * m[0]:.1f} ms "
      f"({1e3 * t[0].min():.1f}..{1e3 * t[0].max():.1f}), ALiBi/100 {1e3 * m[1]:.1f} ms, no bias {1e3 * m[2]:.1f} ms")
if kernels.BACKEND == "cython":
    fast = check("the steep ALiBi bias costs the backward less than 1.5x the same bias / 100",
                 m[0] < 1.5 * m[1], f"{m[0] / m[1]:.2f}x")
    print("  -> " + ("the floored weights cost nothing any more: the flush removed the subnormal operands"
                     if fast else "still slower: a busy machine (the rounds' spread above says how noisy), or a "
                     "cost this section has not found; the share of subnormal ds above is 0 either way"))

# %% [markdown]
# ## 7.6 Held to the reference libraries
#
# tinype follows the conventions of the libraries learners will meet next (DESIGN.md), so that what
# is learned here transfers, and the tests compare against them (live when the library is installed,
# against frozen reference values otherwise):
#
# | idea | in tinype | held to |
# |---|---|---|
# | sinusoidal table | `positions.sinusoidal_table` | the Transformer paper (Vaswani et al. 2017), interleaved sin/cos |
# | RoPE and its scalings | `positions.rope_inv_freq`, `apply_rope` | Hugging Face transformers' `modeling_rope_utils` (linear, dynamic, yarn, llama3) |
# | ALiBi slopes | `positions.alibi_slopes` | the ALiBi authors' `get_slopes` (ofirpress/attention_with_linear_biases) |
# | T5 buckets | `positions.t5_relative_bucket` | transformers' `T5Attention._relative_position_bucket` |
# | fused attention | `pyx/attention.pxi`, twin `reference.py` | `torch.nn.functional.scaled_dot_product_attention` |
# | the experiment | `tinype lab` | the evaluation sections of the ALiBi, PI and YaRN papers |
#
# The articles' tools map onto these rows: TensorFlow and PyTorch are where attention runs in
# practice (the last-but-one row), Hugging Face is where the encodings' conventions live (the
# first four), and a textbook is what these chapters try to be. One live comparison here: tinype's
# attention with an ALiBi bias against PyTorch's, given the same bias as a dense mask, in float64.
# The two compute the same formula by different algorithms (online softmax vs a dense matrix), so
# they agree to rounding ($\sim 10^{-15}$) or not at all; a `[NO ]` would mean the two disagree on
# the formula (the bias sign, the scale, the mask).

# %%
if torch is None:
    print("PyTorch is not installed: the live comparison is skipped (tests/test_torch_crosscheck.py has it)")
else:
    T = 16
    q, k, v = (rng.normal(size=(1, 2, T, 8)) for _ in range(3))
    sl = positions.alibi_slopes(2)
    dist = np.arange(T)[:, None] - np.arange(T)[None, :]
    mask = np.where(dist >= 0, -sl[:, None, None] * dist, -np.inf)               # (2, T, T)
    want = F.scaled_dot_product_attention(*(torch.from_numpy(a) for a in (q, k, v)),
                                          attn_mask=torch.from_numpy(mask)[None]).numpy()
    got, _ = kernels.attention_forward(q, k, v, 8 ** -0.5, True, -sl[:, None] * np.arange(T)[None, :])
    check("tinype's attention equals torch's scaled_dot_product_attention with the dense ALiBi mask (float64)",
          np.abs(got - want).max() < 1e-12, f"max difference {np.abs(got - want).max():.1e}")

# %% [markdown]
# ## 7.7 What this chapter measured
#
# The numbers above are this run's: the equality of the compiled kernels and their twins; the FLOP
# counts, derived by hand; the time of each implementation with its spread over 5 rounds; the rate
# of useful arithmetic against sgemm measured alongside; the float32 / float64 control experiment;
# how often the exponent floor acts, and whether the flush keeps subnormal numbers out of the backward.
# A measurement is worth more than a remembered number: an earlier version of this chapter typed the
# kernel's speed from a run on another machine; measuring on the machine at hand is what exposed the
# subnormal slowdown of §7.5.5, which appears on some CPUs and not on others, and what showed its fix. `python benchmarks/bench_kernels.py` runs the longer version
# (more lengths, more rounds, peak memory, RoPE against the memory bandwidth, training throughput).
# The exercises in `chapters/exercises/` rebuild the NumPy side of these kernels; the grader holds
# your version to tinype's the same way §7.2 holds the compiled kernel to its twin.

# %%
done()
