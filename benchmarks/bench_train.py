"""Training throughput: tinype (NumPy + Cython) against the same model in PyTorch on the CPU,
eager and under torch.compile.

    python benchmarks/bench_train.py [--steps 20] [--rounds 5] [--threads 2] [--presets quick,standard]

Every side runs the full training step of a preset (forward, backward, global clipping, AdamW) on
the same batches, in one process: tinype; PyTorch eager with scaled_dot_product_attention (the
same architecture, tests/torch_reference.py); and the same PyTorch step under torch.compile
(compiled once, before the timing). This machine's timings wander by +-20% from run to run, so the
sides alternate over several rounds and the table gives the median training tokens/s of each, the
ratio of tinype's median to the faster PyTorch side's, and the share of this machine's sgemm peak
(a 2048^3 float32 GEMM through numpy, measured in the same run) that each side's model FLOPs reach
(6 per multiply-add of every weight, forward and backward, plus the causal attention products).
PyTorch is optional: without it only tinype's numbers are printed.
"""
import argparse
import os
import sys

if __name__ == "__main__":
    # before numpy loads: --threads N fixes the BLAS and OpenMP pools
    import _threads
    _threads.set_threads()

import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def make_tinype(model_cfg, train_cfg):
    from tinype import Transformer
    from tinype.optim import AdamW, clip_grad_norm
    from tinype.parallel import ShardedStep
    model = Transformer(model_cfg, seed=0)
    opt = AdamW(model.parameters(), lr=train_cfg.lr, betas=(0.9, 0.95), weight_decay=0.1)
    sharded = ShardedStep(model, train_cfg.shards)             # as tinype.train.train runs a step

    def step(x, y):
        _, grads = sharded(x, y, train=True)
        clip_grad_norm(grads, 1.0)
        opt.step(grads, train_cfg.lr)
    return step, lambda b: b


def make_torch(model_cfg, train_cfg, compiled=False):
    import torch
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    from torch_reference import torch_forward

    from tinype import Transformer
    from tinype.optim import decays
    init = Transformer(model_cfg, seed=0).parameters()
    P = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in init.items()}
    groups = [{"params": [P[k] for k in P if decays(k, init[k])], "weight_decay": 0.1},
              {"params": [P[k] for k in P if not decays(k, init[k])], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=train_cfg.lr, betas=(0.9, 0.95))

    def loss_of(x, y):
        logits = torch_forward(P, x, model_cfg, model_cfg.pe)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, model_cfg.vocab_size), y.reshape(-1))
    if compiled:
        loss_of = torch.compile(loss_of)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_of(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(P.values()), 1.0)
        opt.step()
    return step, lambda b: [(torch.tensor(x), torch.tensor(y)) for x, y in b]


def seconds(step, batches):
    t0 = time.perf_counter()
    for x, y in batches:
        step(x, y)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per round (default 20)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds per preset (default 5)")
    ap.add_argument("--threads", type=int, default=2, help="threads for BLAS, OpenMP and torch (default 2)")
    ap.add_argument("--presets", default="quick,standard", help="comma-separated presets (default both)")
    ap.add_argument("--no-compile", action="store_true", help="leave out the torch.compile side")
    args = ap.parse_args()
    from profile_train import sgemm_peak, step_flops

    from tinype import kernels, preset
    from tinype.data import Corpus, get_batch
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    corpus = Corpus.default()
    peak = sgemm_peak()
    print(f"tinype backend: {kernels.BACKEND} ({kernels.CPU_PATH}); threads: {args.threads}; "
          f"torch: {torch.__version__ if torch else 'not installed'}; sgemm peak now: {peak:.0f} GFLOP/s")
    # the GEMMs are most of every side's step: name the kernels that ran them
    print(f"NumPy's BLAS (tinype's GEMMs and the sgemm peak): {kernels.blas_info()}")
    if torch:
        mkl = torch.backends.mkl.is_available()
        capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown")()
        print(f"torch's GEMMs: its own {'MKL' if mkl else 'BLAS'} and oneDNN, CPU capability {capability}"
              + (" (OPENBLAS_CORETYPE does not reach MKL)" if mkl else ""))
    names = ["tinype"] + (["torch eager", "torch.compile"] if torch else [])
    if torch and args.no_compile:
        names.remove("torch.compile")
    print(f"{'preset':<10}" + "".join(f"{n + ' tok/s':>20}" for n in names) + f"{'ratio':>8}"
          + "".join(f"{n + ' %peak':>20}" for n in names))
    for name in args.presets.split(","):
        mc, tc = preset(name)
        batches = [get_batch(corpus.train, tc.batch_size, mc.T_train, np.random.default_rng([0, s]))
                   for s in range(args.steps)]
        tokens = args.steps * tc.batch_size * mc.T_train
        flops_per_token = step_flops(mc, tc.batch_size) / (tc.batch_size * mc.T_train)
        sides = {"tinype": make_tinype(mc, tc)}
        if "torch eager" in names:
            sides["torch eager"] = make_torch(mc, tc)
        if "torch.compile" in names:
            sides["torch.compile"] = make_torch(mc, tc, compiled=True)
        rates = {k: [] for k in sides}
        for step, convert in sides.values():                  # warm-up: compilation, allocations, thread pools
            seconds(step, convert(batches[:3]))
        for _ in range(args.rounds):
            for k, (step, convert) in sides.items():
                rates[k].append(tokens / seconds(step, convert(batches)))
        med = {k: float(np.median(v)) for k, v in rates.items()}
        best_torch = max((v for k, v in med.items() if k != "tinype"), default=float("nan"))
        print(f"{name:<10}" + "".join(f"{med[n]:>20,.0f}" for n in names) + f"{med['tinype'] / best_torch:>7.2f}x"
              + "".join(f"{med[n] * flops_per_token / 1e9 / peak:>20.0%}" for n in names))


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
