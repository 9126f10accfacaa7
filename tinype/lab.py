"""The extrapolation lab: train short, test long, every encoding on the same data, model and budget.

    run_lab(LabConfig(pes=["nope", "rope", "rope_yarn", "alibi"], seeds=[0]))

1. Training: one model per (trained encoding, seed), with the preset's model and budget, into
   out/train/<pe>-s<seed>/ (resumable; a finished run is skipped on rerun). Evaluation-time
   variants train nothing: rope_pi/ntk/dynamic/yarn/llama3 evaluate the rope checkpoint, and
   X+logn evaluates X's (log-n scaling is 1 inside T_train, so training is unchanged).
2. Evaluation on the validation split at L = T_train x mults, with the literature's protocols:
     nonoverlap  mean NLL over every position of non-overlapping windows (the ALiBi paper's default)
     beyond      only positions >= T_train of each window: pure extrapolation
     sliding     windows every L/2 bytes, each scoring its last L/2 positions
     position    the loss at each position averaged over windows, at the longest L
   A PE that cannot run at L (learned beyond its table) is reported as n/a.
3. Outputs in out/: results.json (configuration, corpus sha256, seeds, every number), results.csv,
   summary.md (mean +- std over seeds), ppl_vs_length.png and position_loss.png.
"""
import csv
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from . import positions
from .checkpoint import load_checkpoint
from .config import preset
from .data import Corpus
from .evaluate import position_nll, sliding_nll
from .checkpoint import atomic_write_bytes
from .train import CKPT_NAME, load_model, train, write_json

DEFAULT_PES = ["nope", "sinusoidal", "rope", "rope_yarn", "alibi", "kerple_log"]
DEFAULT_MULTS = [1, 2, 4, 8, 16, 32]
PROTOCOLS = {"nonoverlap": "non-overlapping windows, every position",
             "beyond": "non-overlapping windows, positions >= T_train only",
             "sliding": "sliding windows, stride L/2, last L/2 positions scored"}


@dataclass
class LabConfig:
    preset: str = "quick"
    pes: list = field(default_factory=lambda: list(DEFAULT_PES))
    seeds: list = field(default_factory=lambda: [0])
    mults: list = field(default_factory=lambda: list(DEFAULT_MULTS))
    out: str = "runs/lab"
    steps: int = None               # override the preset's training steps (tests, quick looks)
    max_windows: int = None         # cap evaluation windows per length (None: the whole split)
    eval_batch: int = 8


def all_encodings():
    """Every encoding the lab can compare: the registry plus the +logn variants of the 2024 habit."""
    return positions.available() + ["rope+logn", "alibi+logn"]


def trained_name(pe):
    """The checkpoint an encoding is evaluated from: rope_* -> rope, X+logn -> X, logn -> nope."""
    parts = [positions.EVAL_TIME_VARIANTS.get(p, p) for p in pe.split("+") if p != "logn"]
    return "+".join(parts) if parts else "nope"


def _finished(run_dir, steps):
    ckpt = os.path.join(run_dir, CKPT_NAME)
    if not (os.path.exists(ckpt) and os.path.exists(os.path.join(run_dir, "metrics.json"))):
        return False
    _, meta = load_checkpoint(ckpt)
    return meta["step"] >= steps


def evaluate_at_lengths(model, data, T_train, mults, max_windows=None, batch_size=8):
    """{L: {"nonoverlap", "beyond", "sliding"} mean NLLs, or None when the PE cannot run at L};
    plus "position": the per-position mean NLL at the longest L that runs."""
    out, curve = {}, None
    for m in mults:
        L = int(T_train * m)
        try:
            model.pe.check_length(L)
            nll = position_nll(model, data, L, batch_size, max_windows)                  # (W, L)
        except ValueError:
            out[L] = None
            continue
        row = {"nonoverlap": float(nll.mean()),
               "beyond": float(nll[:, T_train:].mean()) if L > T_train else None,
               "sliding": sliding_nll(model, data, L, max(1, L // 2), batch_size, max_windows)}
        out[L] = row
        curve = (L, nll.mean(axis=0))
    return out, curve


def run_lab(cfg, progress=True, log=print, corpus=None):
    """Train what is missing, evaluate what is missing, then write the tables and figures."""
    unknown = [p for p in cfg.pes if p not in all_encodings()]
    for p in unknown:
        positions.get(p)                                          # raises the registry's clear error
    model_cfg, train_cfg = preset(cfg.preset)
    if cfg.steps:
        train_cfg = replace(train_cfg, steps=cfg.steps, warmup=min(train_cfg.warmup, cfg.steps // 10))
    corpus = corpus or Corpus.default()
    T = model_cfg.T_train
    os.makedirs(cfg.out, exist_ok=True)
    t0 = time.time()

    trainings = sorted({(trained_name(pe), s) for pe in cfg.pes for s in cfg.seeds})
    for name, seed in trainings:
        run_dir = os.path.join(cfg.out, "train", f"{name}-s{seed}")
        if _finished(run_dir, train_cfg.steps):
            log(f"lab: {name} seed {seed}: trained already, skipped")
            continue
        mc = replace(model_cfg, pe=name)
        train(mc, replace(train_cfg, seed=seed), corpus, out=run_dir, resume=True, progress=progress,
              log=log)

    records = []
    for pe in cfg.pes:
        for seed in cfg.seeds:
            path = os.path.join(cfg.out, "eval", f"{pe}-s{seed}.json")
            if os.path.exists(path):
                with open(path) as f:
                    records.append(json.load(f))
                continue
            model, _ = load_model(os.path.join(cfg.out, "train", f"{trained_name(pe)}-s{seed}", CKPT_NAME))
            if pe != model.config.pe:                              # evaluation-time variant: swap the PE
                model.config = replace(model.config, pe=pe)
                model.pe = positions.get(pe)
                model.pe.setup(model.config)
            t1 = time.time()
            lengths, curve = evaluate_at_lengths(model, corpus.val, T, cfg.mults, cfg.max_windows, cfg.eval_batch)
            rec = {"pe": pe, "trained": trained_name(pe), "seed": seed,
                   "lengths": {str(L): v for L, v in lengths.items()},
                   "position_curve": None if curve is None else {"L": curve[0], "nll": curve[1].tolist()},
                   "eval_seconds": time.time() - t1}
            write_json(path, rec)
            records.append(rec)
            log(f"lab: evaluated {pe} seed {seed} in {rec['eval_seconds']:.0f} s")

    results = {"config": asdict(cfg), "model": model_cfg.to_dict(), "train": train_cfg.to_dict(),
               "corpus": corpus.name, "corpus_sha256": corpus.sha256, "T_train": T,
               "protocols": PROTOCOLS, "records": records, "wall_seconds": time.time() - t0}
    write_json(os.path.join(cfg.out, "results.json"), results)
    _write_csv(os.path.join(cfg.out, "results.csv"), records)
    summary = summarize(results)
    atomic_write_bytes(os.path.join(cfg.out, "summary.md"), lambda f: f.write(summary.encode("utf-8")))
    from . import plots
    plots.lab_figures(results, cfg.out)
    return results, summary


def _write_csv(path, records):
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["pe", "trained", "seed", "L", "protocol", "nll", "ppl"])
    for r in records:
        for L, row in r["lengths"].items():
            for proto in PROTOCOLS:
                v = None if row is None else row[proto]
                w.writerow([r["pe"], r["trained"], r["seed"], L, proto,
                            "" if v is None else f"{v:.6f}", "" if v is None else f"{np.exp(v):.4f}"])
    atomic_write_bytes(path, lambda f: f.write(buf.getvalue().encode("utf-8")))


def table(results, protocol="nonoverlap"):
    """{pe: {L: (mean ppl, std ppl) or None}} over seeds."""
    out = {}
    for r in results["records"]:
        for L, row in r["lengths"].items():
            v = None if row is None else row[protocol]
            out.setdefault(r["pe"], {}).setdefault(int(L), []).append(None if v is None else float(np.exp(v)))
    return {pe: {L: (None if any(v is None for v in vals) else (float(np.mean(vals)), float(np.std(vals))))
                 for L, vals in by_L.items()} for pe, by_L in out.items()}


def summarize(results):
    """Markdown tables of perplexity (mean +- std over seeds) per protocol."""
    T = results["T_train"]
    seeds = results["config"]["seeds"]
    lines = [f"# tinype lab: {results['config']['preset']} preset, T_train = {T}, seeds {seeds}",
             "", f"Corpus {results['corpus']} (sha256 {results['corpus_sha256'][:12]}...), validation split. "
             f"Perplexity = exp(mean NLL in nats per byte); n/a: the encoding cannot run at that length.", ""]
    for proto, label in PROTOCOLS.items():
        tab = table(results, proto)
        Ls = sorted({L for by_L in tab.values() for L in by_L})
        if proto == "beyond":
            Ls = [L for L in Ls if L > T]
        lines += [f"## {proto}: {label}", "", "| encoding | " + " | ".join(f"L={L} ({L // T}x)" for L in Ls) + " |",
                  "|---|" + "---|" * len(Ls)]
        for pe, by_L in tab.items():
            cells = []
            for L in Ls:
                v = by_L.get(L)
                cells.append("n/a" if v is None else (f"{v[0]:.2f}" + (f" ± {v[1]:.2f}" if len(seeds) > 1 else "")))
            lines.append(f"| {pe} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(f"Wall time: {results['wall_seconds']:.0f} s.")
    return "\n".join(lines) + "\n"
