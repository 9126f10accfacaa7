"""Where a training step's time goes: tinype's step on a preset, split by component.

    python benchmarks/profile_train.py [--preset standard] [--steps 20] [--pe learned] [--markdown]

Each named piece of the step (the GEMMs of every linear layer, the fused attention kernels, the
LayerNorm, GELU and cross-entropy kernels, the rotary kernel, AdamW, clipping, ...) is wrapped in a
timer for the duration of the run, in every tinype module that refers to it, so the step itself is
unchanged; whatever the timers do not cover (array reshapes and copies, residual additions, the
Python between the calls) is reported as "glue". The wrappers cost about a microsecond a call,
which the glue line absorbs. The GFLOP/s of the GEMM lines are against the FLOPs they really do.
"""
import argparse
import sys

if __name__ == "__main__":
    # before numpy loads: --threads N fixes the BLAS and OpenMP pools
    import _threads
    _threads.set_threads()

import threading
import time
from collections import defaultdict

import numpy as np

_LOCK = threading.Lock()

# (module attribute, label, what it is): the pieces to time, innermost first
PIECES = [
    ("layers.linear_forward", "linear forward (GEMM + bias)"),
    ("layers.linear_backward", "linear backward (2 GEMMs + bias sum)"),
    ("kernels.attention_forward", "attention forward (fused kernel)"),
    ("kernels.attention_backward", "attention backward (fused kernel)"),
    ("kernels.layernorm_forward", "LayerNorm forward"),
    ("kernels.layernorm_backward", "LayerNorm backward"),
    ("kernels.gelu_forward", "GELU forward"),
    ("kernels.gelu_backward", "GELU backward"),
    ("kernels.apply_rotary", "rotary (forward and backward)"),
    ("kernels.softmax_cross_entropy", "softmax cross-entropy (fused)"),
    ("kernels.embedding_backward", "embedding scatter-add"),
    ("optim.clip_grad_norm", "gradient clipping"),
    ("optim.AdamW.step", "AdamW update"),
]


def _wrap(fn, label, totals, counts):
    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            with _LOCK:                              # the shards' threads time pieces side by side
                totals[label] += time.perf_counter() - t0
                counts[label] += 1
    return timed


def install(totals, counts):
    """Replace every piece by a timed wrapper wherever tinype refers to it; returns an undo()."""
    import tinype
    mods = [m for name, m in sys.modules.items() if name.startswith("tinype") and m is not None]
    undo = []
    for path, label in PIECES:
        modname, *attrs = path.split(".")
        owner = getattr(tinype, modname)
        if len(attrs) == 2:                              # a method: patch the class
            cls = getattr(owner, attrs[0])
            fn = getattr(cls, attrs[1])
            setattr(cls, attrs[1], _wrap(fn, label, totals, counts))
            undo.append((cls, attrs[1], fn))
            continue
        fn = getattr(owner, attrs[0])
        wrapped = _wrap(fn, label, totals, counts)
        for m in mods:
            for k, v in list(vars(m).items()):
                if v is fn:
                    setattr(m, k, wrapped)
                    undo.append((m, k, fn))

    def restore():
        for obj, k, fn in reversed(undo):
            setattr(obj, k, fn)
    return restore


def step_flops(mc, B):
    """FLOPs of one training step that a GEMM-based implementation must do: 6 per multiply-add of
    every weight (forward 2, backward 4) and of the causal attention products (the unmasked half)."""
    C, L, V, T = mc.d_model, mc.n_layer, mc.vocab_size, mc.T_train
    per_token = 6 * (12 * C * C * L + C * V) + 6 * L * T * C
    return per_token * B * T


def sgemm_peak(n=2048, reps=5):
    """GFLOP/s of a large float32 GEMM with numpy's BLAS (the best of a few)."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.T.copy()
    a @ b
    best = min(_time(lambda: a @ b) for _ in range(reps))
    return 2 * n ** 3 / best / 1e9


def _time(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def profile(preset_name="standard", pe="learned", steps=20, warmup=3, shards=None):
    """{label: core-seconds per step}, the step's wall seconds, the calls per step of each piece,
    and the threads the step ran on. The step is tinype.train's: the batch in the preset's shards
    (tinype.parallel), each on its own thread, so the pieces' times add up over the threads."""
    from dataclasses import replace

    from tinype import Transformer, preset
    from tinype.data import Corpus, get_batch
    from tinype.optim import AdamW
    from tinype.parallel import ShardedStep, thread_budget
    mc, tc = preset(preset_name, pe=pe)
    if shards is not None:
        tc = replace(tc, shards=shards)
    corpus = Corpus.default()
    model = Transformer(mc, seed=0)
    opt = AdamW(model.parameters(), lr=tc.lr, betas=(0.9, 0.95), weight_decay=0.1)
    batches = [get_batch(corpus.train, tc.batch_size, mc.T_train, np.random.default_rng([0, s]))
               for s in range(steps + warmup)]
    totals, counts = defaultdict(float), defaultdict(int)
    import tinype.optim as optim_mod
    restore = install(totals, counts)
    try:
        clip = optim_mod.clip_grad_norm
        with ShardedStep(model, tc.shards) as sharded:
            for i, (x, y) in enumerate(batches):
                if i == warmup:
                    totals.clear()
                    counts.clear()
                    t0 = time.perf_counter()
                _, grads = sharded(x, y, train=True)
                clip(grads, 1.0)
                opt.step(grads, tc.lr)
            wall = (time.perf_counter() - t0) / steps
            # one shard is the plain step on the process's threads (BLAS and OpenMP); shards, one each
            threads = sharded.threads if min(tc.shards, tc.batch_size) > 1 else thread_budget()
    finally:
        restore()
    per_step = {k: v / steps for k, v in totals.items()}
    calls = {k: counts[k] // steps for k in counts}
    return mc, tc, per_step, wall, calls, threads


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="standard")
    ap.add_argument("--pe", default="learned")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shards", type=int, help="override the preset's shards (1: the whole batch at once)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args()
    mc, tc, per_step, wall, calls, threads = profile(args.preset, args.pe, args.steps, shards=args.shards)
    peak = sgemm_peak()
    flops = step_flops(mc, tc.batch_size)
    tokens = tc.batch_size * mc.T_train
    rows = sorted(per_step.items(), key=lambda kv: -kv[1])
    core = wall * threads                    # the core-time the step had: its wall time on each thread
    glue = core - sum(per_step.values())
    print(f"preset {args.preset}, pe {args.pe}, {min(tc.shards, tc.batch_size)} shard(s) on {threads} thread(s): "
          f"{wall * 1e3:.1f} ms per step, {tokens / wall:,.0f} tokens/s, "
          f"{flops / wall / 1e9:.0f} GFLOP/s of the model's FLOPs = {flops / wall / 1e9 / peak:.0%} of this "
          f"machine's sgemm ({peak:.0f} GFLOP/s, 2048^3, measured now)")
    from tinype import kernels
    print(f"NumPy's BLAS: {kernels.blas_info()}")
    unit = "core-ms/step" if threads > 1 else "ms/step"
    rest = ("glue: copies, reshapes, residual adds, Python; adding the shards; waiting"
            if threads > 1 else "glue: copies, reshapes, residual adds, Python")
    if args.markdown:
        print(f"\n| part of the step | calls | {unit} | share |\n|---|---:|---:|---:|")
        for k, v in rows:
            print(f"| {k} | {calls[k]} | {v * 1e3:.1f} | {v / core:.0%} |")
        print(f"| {rest} | | {glue * 1e3:.1f} | {glue / core:.0%} |")
        print(f"| **whole step** ({threads} x {wall * 1e3:.1f} ms) | | **{core * 1e3:.1f}** | 100% |")
    else:
        print(f"{'part of the step':<42}{'calls':>7}{unit:>14}{'share':>8}")
        for k, v in rows:
            print(f"{k:<42}{calls[k]:>7}{v * 1e3:>14.2f}{v / core:>8.0%}")
        print(f"{rest[:41]:<42}{'':>7}{glue * 1e3:>14.2f}{glue / core:>8.0%}")
        print(f"{'whole step':<42}{'':>7}{core * 1e3:>14.2f}{1:>8.0%}")


if __name__ == "__main__":
    main()
