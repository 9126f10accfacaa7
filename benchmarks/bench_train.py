"""Training throughput: tinype (NumPy + Cython) against the same model in PyTorch eager, on the CPU.

    python benchmarks/bench_train.py [--steps 30] [--threads 2]

Both sides run the full training step of the reference configuration (forward, backward, global
clipping, AdamW) on the same batches, in one process. This machine's timings wander by +-20% from
run to run, so the two sides alternate over several rounds and the table gives the median
training tokens/s of each and the ratio of the medians. PyTorch is optional: without it only
tinype's numbers are printed.
"""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def make_tinype(model_cfg, train_cfg):
    from tinype import Transformer
    from tinype.optim import AdamW, clip_grad_norm
    model = Transformer(model_cfg, seed=0)
    opt = AdamW(model.parameters(), lr=train_cfg.lr, betas=(0.9, 0.95), weight_decay=0.1)

    def step(x, y):
        model.loss(x, y)
        grads = model.backward()
        clip_grad_norm(grads, 1.0)
        opt.step(grads, train_cfg.lr)
    return step, lambda b: b


def make_torch(model_cfg, train_cfg):
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
    def step(x, y):
        opt.zero_grad(set_to_none=True)
        logits = torch_forward(P, x, model_cfg, model_cfg.pe)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, model_cfg.vocab_size), y.reshape(-1))
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
    args = ap.parse_args()
    from tinype import kernels, preset
    from tinype.data import Corpus, get_batch
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    corpus = Corpus.default()
    print(f"tinype backend: {kernels.BACKEND}; threads: {args.threads}; "
          f"torch: {torch.__version__ if torch else 'not installed'}")
    print(f"{'preset':<10}{'tinype tok/s':>14}{'torch tok/s':>14}{'ratio':>8}")
    for name in ("quick", "standard"):
        mc, tc = preset(name)
        batches = [get_batch(corpus.train, tc.batch_size, mc.T_train, np.random.default_rng([0, s]))
                   for s in range(args.steps)]
        tokens = args.steps * tc.batch_size * mc.T_train
        sides = {"tinype": make_tinype(mc, tc)}
        if torch:
            sides["torch"] = make_torch(mc, tc)
        rates = {k: [] for k in sides}
        for step, convert in sides.values():                  # warm-up: allocations, thread pools
            seconds(step, convert(batches[:3]))
        for _ in range(args.rounds):
            for k, (step, convert) in sides.items():
                rates[k].append(tokens / seconds(step, convert(batches)))
        ours = float(np.median(rates["tinype"]))
        theirs = float(np.median(rates["torch"])) if torch else float("nan")
        print(f"{name:<10}{ours:>14,.0f}{theirs:>14,.0f}{ours / theirs:>8.2f}x")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
