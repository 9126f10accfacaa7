"""In-distribution quality of every encoding: quick preset, validation perplexity at T_train.

    python benchmarks/pe_quality.py [--seeds 0,1,2] [--pe rope,alibi] [--out runs/pe_quality.json]

Compares each mean with the reference perplexities measured with PyTorch on the same configuration
(3 seeds), within 10% (20% for sinusoidal, whose seeds spread widely). Encodings without a
reference are reported without a verdict. Each training takes about a minute on 2 cores.
"""
import argparse
import json
import os
import time

import numpy as np

from tinype import Corpus, positions, preset, train

REFERENCE = {"nope": 7.8, "sinusoidal": 6.9, "learned": 5.6, "rope": 4.6, "xpos": 4.6, "alibi": 5.5,
             "t5": 6.0, "kerple_log": 5.1, "fire": 5.0}
TOLERANCE = {"sinusoidal": 0.20}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0")
    trained = [n for n in positions.available() if n not in positions.EVAL_TIME_VARIANTS]
    ap.add_argument("--pe", default=",".join(list(REFERENCE) + [n for n in trained if n not in REFERENCE]))
    ap.add_argument("--out", default="runs/pe_quality.json")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    corpus = Corpus.default()
    results = json.load(open(args.out)) if os.path.exists(args.out) else {}
    for pe in args.pe.split(","):
        for seed in seeds:
            key = f"{pe}/{seed}"
            if key in results:
                continue
            mc, tc = preset("quick", pe=pe)
            tc.seed = seed
            t0 = time.time()
            r = train(mc, tc, corpus, progress=False, log=lambda *a: None)
            results[key] = {"ppl": r.val["ppl"], "seconds": time.time() - t0, "tok_s": r.tokens_per_sec}
            print(f"{pe:24s} seed {seed}: ppl {r.val['ppl']:.3f}  ({time.time() - t0:.0f} s, "
                  f"{r.tokens_per_sec:,.0f} tok/s)", flush=True)
            os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1)
    print(f"\n{'encoding':24s}{'ppl (mean over seeds)':>24s}{'reference':>11s}{'verdict':>10s}")
    for pe in args.pe.split(","):
        vals = [results[f"{pe}/{s}"]["ppl"] for s in seeds if f"{pe}/{s}" in results]
        mean = float(np.mean(vals))
        ref = REFERENCE.get(pe)
        verdict = "-" if ref is None else ("ok" if abs(mean / ref - 1) <= TOLERANCE.get(pe, 0.10) else "OFF")
        spread = f" +- {np.std(vals):.2f}" if len(vals) > 1 else ""
        print(f"{pe:24s}{mean:>18.3f}{spread:>6s}{(f'{ref:.1f}' if ref else '-'):>11s}{verdict:>10s}")


if __name__ == "__main__":
    main()
