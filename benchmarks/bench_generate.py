"""Generation speed: tinype's cached decoding against Hugging Face transformers' generate(use_cache=True).

    python benchmarks/bench_generate.py [--new 256,1024,4096] [--pe alibi,rope] [--rounds 3] [--threads 2]

Both sides write greedily from the same 4-byte prompt with a model of the quick preset's shape
(2 layers, width 64, 4 heads, 256 byte ids), untrained: speed does not depend on the weights.
transformers' side is GPT-2 of the same size (learned positions, n_positions raised to hold the
longest run). This machine's timings wander by +-20%, so the two sides take turns within each
round and the table gives the best and the median bytes/s of each. A second table gives tinype's
time per byte at three context lengths of the longest run, to show that it stays flat with a cache
(without one it grows with the context: --no-cache-max N also times the uncached path up to N).
transformers is optional: without it only tinype's numbers are printed.
"""
import argparse
import os
import time

import numpy as np


def tinype_side(pe):
    import tinype
    model = tinype.Transformer(tinype.ModelConfig(pe=pe), seed=0)

    def run(n, use_cache=True):
        t0 = time.perf_counter()
        tinype.generate(model, "def ", max_new_tokens=n, temperature=0, use_cache=use_cache, log=lambda m: None)
        return time.perf_counter() - t0
    return model, run


def per_byte_profile(model, n, marks):
    """ms per byte around each context length in marks, from one cached greedy run of n bytes."""
    ids = np.frombuffer(b"def ", dtype=np.uint8).astype(np.int64)
    cache = model.new_cache(capacity=len(ids) + n)
    logits = model.decode(ids[None], cache)[0, -1]
    stamps = []
    for _ in range(n):
        nxt = int(np.argmax(logits))
        logits = model.decode(np.array([[nxt]]), cache)[0, -1]
        stamps.append(time.perf_counter())
    out = {}
    for L in marks:
        i = min(L, n) - 1
        lo = max(0, i - 64)
        out[L] = (stamps[i] - stamps[lo]) / (i - lo) * 1e3
    return out


def transformers_side(n_max, threads):
    try:
        import torch
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        return None
    torch.set_num_threads(threads)
    cfg = GPT2Config(vocab_size=256, n_positions=n_max + 16, n_embd=64, n_layer=2, n_head=4,
                     bos_token_id=0, eos_token_id=None)
    model = GPT2LMHeadModel(cfg).eval()
    prompt = torch.tensor([list(b"def ")])

    def run(n):
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False, use_cache=True,
                                 pad_token_id=0, attention_mask=torch.ones_like(prompt))
        assert out.shape[1] == prompt.shape[1] + n
        return time.perf_counter() - t0
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--new", default="256,1024,4096", help="new bytes per run (comma-separated)")
    ap.add_argument("--pe", default="alibi,rope", help="tinype encodings to time")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-cache-max", type=int, default=256, help="also time tinype without a cache up to N bytes")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    news = [int(x) for x in args.new.split(",")]
    sides = {}
    for pe in args.pe.split(","):
        model, run = tinype_side(pe)
        sides[f"tinype {pe}"] = run
        if args.no_cache_max:
            limit = args.no_cache_max
            sides[f"tinype {pe}, no cache"] = lambda n, run=run: run(n, use_cache=False) if n <= limit else None
    hf = transformers_side(max(news), args.threads)
    if hf is not None:
        sides["transformers GPT-2"] = hf
    for run in sides.values():                                   # warm up every path once
        run(16)
    times = {(s, n): [] for s in sides for n in news}
    for _ in range(args.rounds):
        for n in news:
            for s, run in sides.items():                         # the sides take turns within a round
                t = run(n)
                if t is not None:
                    times[s, n].append(t)
    print(f"Greedy generation, bytes/s (best / median of {args.rounds} rounds), quick-preset shape, "
          f"{args.threads} threads\n")
    print("| implementation | " + " | ".join(f"{n} new bytes" for n in news) + " |")
    print("|---|" + "---|" * len(news))
    for s in sides:
        cells = []
        for n in news:
            ts = times[s, n]
            cells.append(f"{n / min(ts):,.0f} / {n / np.median(ts):,.0f}" if ts else "-")
        print(f"| {s} | " + " | ".join(cells) + " |")
    if hf is not None:
        print("\nratio of medians, tinype / transformers:")
        for s in sides:
            if s.startswith("tinype") and "no cache" not in s:
                print(f"  {s}: " + ", ".join(
                    f"{n}: {np.median(times['transformers GPT-2', n]) / np.median(times[s, n]):.2f}x" for n in news))
    marks = [m for m in (256, 1024, 4096) if m <= max(news)]
    print(f"\ntinype's time per byte at context length L (cached, one run of {max(news)} bytes, mean of the 64 "
          "bytes before L):")
    for pe in args.pe.split(","):
        import tinype
        prof = per_byte_profile(tinype.Transformer(tinype.ModelConfig(pe=pe), seed=0), max(news), marks)
        print(f"  {pe}: " + ", ".join(f"L={L}: {ms:.3f} ms" for L, ms in prof.items()))


if __name__ == "__main__":
    main()
