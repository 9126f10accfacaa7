"""The extrapolation lab: train short, test long, every encoding on the same data, model and budget.

    run_lab(LabConfig(pes=["nope", "rope", "rope_yarn", "alibi"], seeds=[0]))

1. Training: one model per (trained encoding, seed), with the preset's model and budget, into
   out/train/<pe>-s<seed>/ (resumable; a finished run is skipped on rerun). Evaluation-time
   variants train nothing: rope_pi/ntk/dynamic/yarn/llama3 evaluate the rope checkpoint, and
   X+logn evaluates X's (log-n scaling is 1 inside T_train, so training is unchanged).
2. Evaluation on the validation split at L = T_train x mults, with the literature's protocols:
     nonoverlap  mean NLL over every position of non-overlapping windows (the ALiBi paper's default)
     beyond      only positions >= T_train of each window: pure extrapolation
     sliding     windows every `stride` bytes (default L/2), each scoring its last `stride` positions
     position    the loss at each position averaged over windows, at the longest L
   A PE that cannot run at L (learned beyond its table) is reported as n/a.
3. Synthetic tasks on request (tasks=["passkey", "copy", "reverse", "addition"]): one model per
   (task, trained encoding, seed) in out/tasks/<task>/, trained on sizes that fit T_train, tested on
   larger ones with exact-match accuracy (passkey: by length and by key depth).
4. Outputs in out/: results.json (configuration, corpus sha256, seeds, every number), results.csv,
   summary.md (mean +- std over seeds), ppl_vs_length.png, position_loss.png, and with tasks
   task_accuracy.png and passkey_heatmap.png.
"""
import contextlib
import csv
import io
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from . import positions
from .checkpoint import atomic_write_bytes, load_checkpoint
from .config import preset
from .data import Corpus
from .evaluate import position_nll, sliding_nll, task_accuracy
from .tasks import DEPTHS, TaskSet, get_task
from .train import CKPT_NAME, load_model, train, write_json

DEFAULT_PES = ["nope", "sinusoidal", "rope", "rope_yarn", "alibi", "kerple_log"]
DEFAULT_MULTS = [1, 2, 4, 8, 16, 32]
TASK_EVAL_SEED = 2024                 # the test examples: the same for every encoding and seed
PROTOCOLS = {"nonoverlap": "non-overlapping windows, every position",
             "beyond": "non-overlapping windows, positions >= T_train only",
             "sliding": "sliding windows, stride L/2, last L/2 positions scored"}


def protocols(stride=None):
    """The protocol labels, with the sliding window's stride spelled out."""
    if stride is None:
        return dict(PROTOCOLS)
    return {**PROTOCOLS, "sliding": f"sliding windows, stride {stride} bytes, last {stride} positions scored"}


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
    stride: int = None              # sliding-window stride in bytes (None: L/2 at each length L)
    tasks: list = field(default_factory=list)   # synthetic tasks to train and test (tinype.tasks.TASKS)
    task_steps: int = None          # training steps per task model (None: the task's own, 2000)
    task_examples: int = 32         # test examples per size (and per passkey depth)
    task_factors: list = None       # test sizes as multiples of the longest trained (None: the task's own)
    jobs: int = 1                   # independent trainings/evaluations run in this many processes
    dask: str = None                # address of an existing Dask scheduler (overrides jobs)

    def __post_init__(self):
        if not self.pes:
            raise ValueError("LabConfig.pes is empty: name at least one encoding")
        if not self.seeds or min(self.seeds) < 0:
            raise ValueError(f"LabConfig.seeds must be non-negative integers, got {self.seeds}")
        if not self.mults or min(self.mults) < 1:
            raise ValueError(f"LabConfig.mults are multiples of T_train and must be >= 1, got {self.mults}")
        if self.jobs < 1:
            raise ValueError(f"LabConfig.jobs must be >= 1, got {self.jobs}")
        for t in self.tasks:
            get_task(t)                                           # unknown names fail here
        if self.task_examples < 1:
            raise ValueError(f"LabConfig.task_examples must be >= 1, got {self.task_examples}")
        if self.stride is not None and self.stride < 1:
            raise ValueError(f"LabConfig.stride must be >= 1 byte, got {self.stride}")


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


def evaluate_at_lengths(model, data, T_train, mults, max_windows=None, batch_size=8, stride=None):
    """{L: {"nonoverlap", "beyond", "sliding"} mean NLLs, or None when the PE cannot run at L};
    plus "position": the per-position mean NLL at the longest L that runs.

    stride: the sliding window's step in bytes (None: L // 2). Each row also records the
    non-overlapping pass's token count and seconds (the evaluation throughput)."""
    out, curve = {}, None
    for m in mults:
        L = int(T_train * m)
        s = max(1, L // 2) if stride is None else stride
        if s > L:
            raise ValueError(f"the sliding stride ({s} bytes) is longer than the window L={L}")
        try:
            model.pe.check_length(L)
        except ValueError:
            out[L] = None
            continue
        t0 = time.perf_counter()
        nll = position_nll(model, data, L, batch_size, max_windows)                      # (W, L)
        seconds = time.perf_counter() - t0
        row = {"nonoverlap": float(nll.mean()),
               "beyond": float(nll[:, T_train:].mean()) if L > T_train else None,
               "sliding": sliding_nll(model, data, L, s, batch_size, max_windows),
               "stride": s, "tokens": int(nll.size), "seconds": seconds}
        out[L] = row
        curve = (L, nll.mean(axis=0))
    return out, curve


def _train_job(job):
    """One training (a worker's unit of work): skipped when its run folder already holds it."""
    label, name, model_cfg, train_cfg, source, run_dir, progress = job
    if _finished(run_dir, train_cfg.steps):
        return label, "skipped"
    train(replace(model_cfg, pe=name), train_cfg, source, out=run_dir, resume=True,
          progress=progress, log=lambda msg: None if msg.startswith("no checkpoint") else
          print(f"lab: {label}: {msg}", flush=True))
    return label, "trained"


def _load_for(pe, run_dir):
    """The model trained in run_dir, with the evaluation-time variant pe swapped in if it is one."""
    model, _ = load_model(os.path.join(run_dir, CKPT_NAME))
    if pe != model.config.pe:
        model.config = replace(model.config, pe=pe)
        model.pe = positions.get(pe)
        model.pe.setup(model.config)
    return model


def _eval_job(job):
    """One evaluation of (encoding, seed) at every length; writes out/eval/<pe>-s<seed>.json."""
    pe, seed, out, T, cfg, val = job
    path = os.path.join(out, "eval", f"{pe}-s{seed}.json")
    model = _load_for(pe, os.path.join(out, "train", f"{trained_name(pe)}-s{seed}"))
    t1 = time.time()
    lengths, curve = evaluate_at_lengths(model, val, T, cfg.mults, cfg.max_windows, cfg.eval_batch, cfg.stride)
    rec = {"pe": pe, "trained": trained_name(pe), "seed": seed,
           "lengths": {str(L): v for L, v in lengths.items()},
           "position_curve": None if curve is None else {"L": curve[0], "nll": curve[1].tolist()},
           "eval_seconds": time.time() - t1}
    write_json(path, rec)
    return rec


def _task_eval_job(job):
    """Exact-match accuracy of one (task, encoding, seed) at every test size (and passkey depth).
    The examples depend only on (size, depth), so every encoding answers the same questions."""
    task_name, pe, seed, out, T, n_examples, factors = job
    task = get_task(task_name)
    sizes = task.test_sizes(T) if factors is None else task.test_sizes(T, factors)
    model = _load_for(pe, os.path.join(out, "tasks", task_name, f"{trained_name(pe)}-s{seed}"))
    depths = DEPTHS if task_name == "passkey" else (None,)
    t1 = time.time()
    acc = {}
    for size in sizes:
        try:
            model.pe.check_length(task.length(size) - 1)
        except ValueError:
            acc[str(size)] = None
            continue
        cell = {}
        for k, depth in enumerate(depths):
            rng = np.random.default_rng([TASK_EVAL_SEED, size, k])
            cell[str(depth)] = task_accuracy(model, [task.example(rng, size, depth) for _ in range(n_examples)])
        acc[str(size)] = cell if task_name == "passkey" else cell["None"]
    rec = {"task": task_name, "pe": pe, "trained": trained_name(pe), "seed": seed, "accuracy": acc,
           "lengths": {str(size): task.length(size) - 1 for size in sizes},
           "train_sizes": list(task.train_sizes(T)), "examples": n_examples, "eval_seconds": time.time() - t1}
    write_json(os.path.join(out, "tasks", task_name, "eval", f"{pe}-s{seed}.json"), rec)
    return rec


@contextlib.contextmanager
def _thread_env(threads):
    """Child processes inherit the environment: give each its share of the cores."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update({n: str(threads) for n in names})
    try:
        yield
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


def _dask_client(address):
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("--dask needs Dask's distributed scheduler: pip install 'tinype[dask]' "
                         "(on this machine and on every worker)") from None
    try:
        return Client(address, timeout="10s")
    except OSError as err:
        raise ValueError(f"cannot reach a Dask scheduler at {address!r}: {err}") from None


def _execute(fn, jobs, cfg, desc, progress):
    """Yield fn(job) for every job as each finishes: in this process, in cfg.jobs processes, or on the
    Dask cluster at cfg.dask. Workers write their results into cfg.out (a folder they all can reach)."""
    if not jobs:
        return
    bar = None
    if progress and (cfg.dask or cfg.jobs > 1):
        from tqdm.auto import tqdm
        bar = tqdm(total=len(jobs), desc=desc, unit="run", dynamic_ncols=True)
    try:
        if cfg.dask:
            from distributed import as_completed as dask_completed
            with _dask_client(cfg.dask) as client:
                futures = client.map(fn, jobs, pure=False)
                for fut in dask_completed(futures):
                    yield fut.result()
                    if bar is not None:
                        bar.update(1)
        elif cfg.jobs > 1 and len(jobs) > 1:
            workers = min(cfg.jobs, len(jobs))
            with _thread_env(max(1, (os.cpu_count() or 1) // workers)), \
                    ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(fn, job) for job in jobs]
                try:
                    for fut in as_completed(futures):
                        yield fut.result()
                        if bar is not None:
                            bar.update(1)
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
        else:
            for job in jobs:
                yield fn(job)
    finally:
        if bar is not None:
            bar.close()


def run_lab(cfg, progress=True, log=print, corpus=None):
    """Train what is missing, evaluate what is missing, then write the tables and figures."""
    unknown = [p for p in cfg.pes if p not in all_encodings()]
    for p in unknown:
        positions.get(p)                                          # raises the registry's clear error
    if cfg.dask:
        _dask_client(cfg.dask).close()                            # fail before any work if unreachable
    model_cfg, train_cfg = preset(cfg.preset)
    if cfg.steps:
        train_cfg = replace(train_cfg, steps=cfg.steps, warmup=min(train_cfg.warmup, cfg.steps // 10))
    corpus = corpus or Corpus.default()
    T = model_cfg.T_train
    corpus.check_window(T)
    if cfg.stride is not None and cfg.stride > T * min(cfg.mults):
        raise ValueError(f"--stride {cfg.stride} is longer than the shortest evaluation window "
                         f"({T * min(cfg.mults)} bytes)")
    os.makedirs(cfg.out, exist_ok=True)
    t0 = time.time()
    parallel = bool(cfg.dask) or cfg.jobs > 1

    jobs = []
    for name, seed in sorted({(trained_name(pe), s) for pe in cfg.pes for s in cfg.seeds}):
        run_dir = os.path.join(cfg.out, "train", f"{name}-s{seed}")
        label = f"{name} seed {seed}"
        if _finished(run_dir, train_cfg.steps):
            log(f"lab: {label}: trained already, skipped")
            continue
        jobs.append((label, name, model_cfg, replace(train_cfg, seed=seed), corpus, run_dir,
                     progress and not parallel))
    task_cfgs = {t: replace(train_cfg, steps=cfg.task_steps or get_task(t).steps,
                            warmup=min(train_cfg.warmup, (cfg.task_steps or get_task(t).steps) // 10))
                 for t in cfg.tasks}
    for task in cfg.tasks:
        task_cfg = task_cfgs[task]
        for name, seed in sorted({(trained_name(pe), s) for pe in cfg.pes for s in cfg.seeds}):
            run_dir = os.path.join(cfg.out, "tasks", task, f"{name}-s{seed}")
            label = f"{task} {name} seed {seed}"
            if _finished(run_dir, task_cfg.steps):
                log(f"lab: {label}: trained already, skipped")
                continue
            jobs.append((label, name, model_cfg, replace(task_cfg, seed=seed), TaskSet(task), run_dir,
                         progress and not parallel))
    for label, status in _execute(_train_job, jobs, cfg, "lab: training", progress):
        log(f"lab: {label}: {status}")

    records, jobs = {}, []
    for pe in cfg.pes:
        for seed in cfg.seeds:
            path = os.path.join(cfg.out, "eval", f"{pe}-s{seed}.json")
            if os.path.exists(path):
                with open(path) as f:
                    records[pe, seed] = json.load(f)
            else:
                jobs.append((pe, seed, cfg.out, T, cfg, corpus.val))
    for rec in _execute(_eval_job, jobs, cfg, "lab: evaluating", progress):
        records[rec["pe"], rec["seed"]] = rec
        log(f"lab: evaluated {rec['pe']} seed {rec['seed']} in {rec['eval_seconds']:.0f} s")
    records = [records[pe, seed] for pe in cfg.pes for seed in cfg.seeds]      # a fixed order

    task_records, jobs = {}, []
    for task in cfg.tasks:
        for pe in cfg.pes:
            for seed in cfg.seeds:
                path = os.path.join(cfg.out, "tasks", task, "eval", f"{pe}-s{seed}.json")
                if os.path.exists(path):
                    with open(path) as f:
                        task_records[task, pe, seed] = json.load(f)
                else:
                    jobs.append((task, pe, seed, cfg.out, T, cfg.task_examples, cfg.task_factors))
    for rec in _execute(_task_eval_job, jobs, cfg, "lab: task accuracy", progress):
        task_records[rec["task"], rec["pe"], rec["seed"]] = rec
        log(f"lab: {rec['task']}: evaluated {rec['pe']} seed {rec['seed']} in {rec['eval_seconds']:.0f} s")
    task_records = [task_records[k] for k in ((t, pe, s) for t in cfg.tasks for pe in cfg.pes for s in cfg.seeds)]

    results = {"config": asdict(cfg), "model": model_cfg.to_dict(), "train": train_cfg.to_dict(),
               "corpus": corpus.name, "corpus_sha256": corpus.sha256, "T_train": T,
               "protocols": protocols(cfg.stride), "records": records, "task_records": task_records,
               "task_train": {t: c.to_dict() for t, c in task_cfgs.items()}, "wall_seconds": time.time() - t0}
    write_json(os.path.join(cfg.out, "results.json"), results)
    _write_csv(os.path.join(cfg.out, "results.csv"), records)
    summary = summarize(results)
    atomic_write_bytes(os.path.join(cfg.out, "summary.md"), lambda f: f.write(summary.encode("utf-8")))
    from . import plots
    plots.lab_figures(results, cfg.out)
    plots.task_figures(results, cfg.out)
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


def task_table(results, task):
    """{pe: {size: (mean accuracy, std over seeds) or None}}; passkey cells average the depths."""
    out = {}
    for r in results.get("task_records", []):
        if r["task"] != task:
            continue
        for size, acc in r["accuracy"].items():
            if isinstance(acc, dict):
                acc = float(np.mean(list(acc.values())))
            out.setdefault(r["pe"], {}).setdefault(int(size), []).append(acc)
    return {pe: {n: (None if any(v is None for v in vals) else (float(np.mean(vals)), float(np.std(vals))))
                 for n, vals in by_n.items()} for pe, by_n in out.items()}


def throughput(results):
    """{L: median evaluation tokens/s over records} for every length with timings."""
    by_L = {}
    for r in results["records"]:
        for L, row in r["lengths"].items():
            if row and row.get("seconds"):
                by_L.setdefault(int(L), []).append(row["tokens"] / row["seconds"])
    return {L: float(np.median(v)) for L, v in sorted(by_L.items())}


def summarize(results):
    """Markdown tables of perplexity (mean +- std over seeds) per protocol."""
    T = results["T_train"]
    seeds = results["config"]["seeds"]
    lines = [f"# tinype lab: {results['config']['preset']} preset, T_train = {T}, seeds {seeds}",
             "", f"Corpus {results['corpus']} (sha256 {results['corpus_sha256'][:12]}...), validation split. "
             f"Perplexity = exp(mean NLL in nats per byte); n/a: the encoding cannot run at that length.", ""]
    for proto, label in results.get("protocols", PROTOCOLS).items():
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
    for task in results["config"].get("tasks", []):
        tab = task_table(results, task)
        recs = [r for r in results.get("task_records", []) if r["task"] == task]
        if not recs:
            continue
        sizes = sorted(int(k) for k in recs[0]["lengths"])
        lo, hi = recs[0]["train_sizes"]
        what = "length in bytes" if task == "passkey" else ("digits per operand" if task == "addition"
                                                             else "letters")
        lines += [f"## task {task}: exact-match accuracy (%), trained on sizes {lo}..{hi} ({what}), "
                  f"{recs[0]['examples']} test examples per cell"
                  + (", averaged over 5 key depths" if task == "passkey" else ""), "",
                  "| encoding | " + " | ".join(f"size {n} ({recs[0]['lengths'][str(n)]} B)" for n in sizes) + " |",
                  "|---|" + "---|" * len(sizes)]
        for pe, by_n in tab.items():
            cells = []
            for n in sizes:
                v = by_n.get(n)
                cells.append("n/a" if v is None else (f"{100 * v[0]:.0f}" + (f" ± {100 * v[1]:.0f}"
                                                                              if len(seeds) > 1 else "")))
            lines.append(f"| {pe} | " + " | ".join(cells) + " |")
        lines.append("")
    tput = throughput(results)
    if tput:
        L, tok_s = max(tput.items())
        lines.append(f"Evaluation throughput at L={L} ({L // T}x T_train): {tok_s:,.0f} tokens/s "
                     f"(non-overlapping pass, median over encodings and seeds).")
    lines.append(f"Wall time of this invocation: {results['wall_seconds']:.0f} s "
                 f"(finished runs found on disk are not redone).")
    return "\n".join(lines) + "\n"
