"""run_lab: train what is missing, evaluate what is missing, reuse only what has the key asked for,
then write the tables and figures. Every check that can fail runs before the first training."""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, replace

from ..checkpoint import atomic_write_bytes, remove_orphan_temporaries, write_json
from ..config import RESULT_FORMAT, check_memory, pe_identity, preset
from ..data import Corpus
from ..errors import ensure_writable_folder
from ..train import source_window_check
from . import extend as lab_extend
from . import jobs as lab_jobs
from . import tasklab
from .executors import check_executor, make_executor
from .results import PROTOCOLS, folder_name, protocols, read_record, run_key, summarize, train_key_fields, write_csv
from .sweep import TASK_EVAL_SEED, LabConfig, LabError, trained_name, trainings


def _keyed(fields):
    return {"key": run_key(fields), "fields": fields}


def _check_lengths(corpus, T, cfg):
    """Every evaluation window must fit the validation split: checked before any training."""
    longest = T * max(cfg.mults)
    if len(corpus.val) < longest + 1:
        fits = (len(corpus.val) - 1) // T
        raise LabError(f"--lengths {max(cfg.mults)} asks for windows of {longest:,} bytes, but the validation "
                       f"split of {corpus.name} holds {len(corpus.val):,} bytes (the last 10% of the text): "
                       + (f"use --lengths up to {fits}" if fits >= 1 else "nothing fits")
                       + ", or a longer --text")
    if cfg.stride is not None and cfg.stride > T * min(cfg.mults):
        raise LabError(f"--stride {cfg.stride} is longer than the shortest evaluation window "
                       f"({T * min(cfg.mults)} bytes)")


def _clean_orphans(out, log):
    for folder, _, _ in os.walk(out):
        for path in remove_orphan_temporaries(folder):
            log(f"lab: removed {path}, left by a write that was killed")


def _run(executor, fn, jobs, desc, progress, parallel):
    bar = None
    if progress and parallel and jobs:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(jobs), desc=desc, unit="run", dynamic_ncols=True)
    try:
        for result in executor.map_unordered(fn, jobs):
            if bar is not None:
                bar.update(1)
            yield result
    finally:
        if bar is not None:
            bar.close()


def run_lab(cfg: LabConfig, progress: bool = True, log: Callable[[str], None] = print,
            corpus: Corpus | None = None) -> tuple[dict, str]:
    """Run the sweep cfg describes (a LabConfig); returns (results dict, summary markdown)."""
    model_cfg, train_cfg = preset(cfg.preset)
    if cfg.steps:
        train_cfg = replace(train_cfg, steps=cfg.steps, warmup=min(train_cfg.warmup, cfg.steps // 10))
    if cfg.shards:                   # every training of the lab: language models, task models, fine-tunes
        train_cfg = replace(train_cfg, shards=cfg.shards)
    corpus = corpus or Corpus.default()
    T = model_cfg.T_train
    if cfg.language_models:                                       # --tasks-only: no corpus windows
        source_window_check(corpus, T)
        _check_lengths(corpus, T, cfg)
    plans = tasklab.task_plans(cfg.tasks, cfg.task_preset, cfg.task_steps, cfg.task_examples,
                               max(cfg.task_factors) if cfg.task_factors else 4, base_train=train_cfg)
    # the extension may fine-tune task models too (lab.extend picks the ones it uses)
    ext_task_cfgs = lab_extend.task_sources(cfg, plans, T, log)
    if cfg.extend:
        lab_extend.check(cfg, corpus, T)
        lab_extend.methods(cfg, {name for name, _ in trainings(cfg)})     # no base training: refused now
    check_memory(model_cfg, train_cfg, "each of the lab's trainings")
    check_executor(cfg)                                           # an unreachable or non-Dask scheduler
    ensure_writable_folder(cfg.out)
    _clean_orphans(cfg.out, log)
    t0 = time.time()
    parallel = bool(cfg.dask) or cfg.jobs > 1

    # what to train, each with its key; a folder holding another key is a conflict
    train_keys, train_jobs, conflicts = {}, [], []
    sources = [(None, corpus, model_cfg, train_cfg, os.path.join(cfg.out, "train"))] if cfg.language_models else []
    sources += [(t, p.source, p.model_cfg, p.train_cfg, os.path.join(cfg.out, "tasks", t)) for t, p in plans.items()]
    for task, source, mbase, tcfg, folder in sources:
        for name, seed in trainings(cfg):
            mcfg, scfg = replace(mbase, pe=name), replace(tcfg, seed=seed)
            key = _keyed(train_key_fields(mcfg.to_dict(), scfg.to_dict(), source.sha256,
                                          pe_identity(name)["pe_code"], RESULT_FORMAT))
            train_keys[task, name, seed] = key
            run_dir = os.path.join(folder, folder_name(name, seed))
            label = f"{task + ' ' if task else ''}{name} seed {seed}"
            state, diffs = lab_jobs.training_state(run_dir, key)
            if state == "other":
                conflicts.append((run_dir, diffs))
                if not cfg.recompute:
                    continue
            if state == "finished":
                log(f"lab: {label}: trained already, skipped")
                continue
            train_jobs.append({"label": label, "model_cfg": mcfg, "train_cfg": scfg, "source": source,
                               "run_dir": run_dir, "progress": progress and not parallel, "key": key})
    if conflicts and not cfg.recompute:
        lines = [f"  {d}: " + "; ".join(diffs) for d, diffs in conflicts]
        raise LabError(f"{cfg.out} holds {len(conflicts)} training(s) made with other settings than asked; "
                       f"reusing them would label their numbers with the new settings:\n" + "\n".join(lines)
                       + "\npass --recompute to discard them and train again, or choose another --out")
    for run_dir, diffs in conflicts:
        log(f"lab: {run_dir}: made with other settings ({'; '.join(diffs)}): discarded (--recompute)")
        shutil.rmtree(run_dir)

    with make_executor(cfg) as executor:
        for label, status in _run(executor, lab_jobs.train_job, train_jobs, "lab: training", progress, parallel):
            log(f"lab: {label}: {status}")

        # evaluations: a record on disk is reused only under an equal key
        records, eval_jobs = {}, []
        val_sha = Corpus(corpus.val, name="val").sha256
        for pe in cfg.pes if cfg.language_models else ():
            for seed in cfg.seeds:
                name = trained_name(pe)
                fields = {"kind": "eval", "format": RESULT_FORMAT, "train_key": train_keys[None, name, seed]["key"],
                          **pe_identity(pe), "T_train": T, "mults": list(cfg.mults),
                          "lengths": [T * m for m in cfg.mults], "protocols": sorted(PROTOCOLS),
                          "stride": cfg.stride, "max_windows": cfg.max_windows, "eval_batch": cfg.eval_batch,
                          "val_sha256": val_sha}
                key = run_key(fields)
                path = os.path.join(cfg.out, "eval", folder_name(pe, seed) + ".json")
                if os.path.exists(path):
                    rec, why = read_record(path, key, fields)
                    if rec is not None:
                        records[pe, seed] = rec
                        continue
                    log(f"lab: {pe} seed {seed}: the evaluation on disk was made with other settings "
                        f"({'; '.join(why)}): evaluating again")
                eval_jobs.append({"pe": pe, "seed": seed, "trained": name, "fields": fields, "key": key,
                                  "path": path, "val": corpus.val, "train_key": train_keys[None, name, seed],
                                  "run_dir": os.path.join(cfg.out, "train", folder_name(name, seed))})
        for rec in _run(executor, lab_jobs.eval_job, eval_jobs, "lab: evaluating", progress, parallel):
            records[rec["pe"], rec["seed"]] = rec
            log(f"lab: evaluated {rec['pe']} seed {rec['seed']} in {rec['eval_seconds']:.0f} s")
        records = [records[pe, s] for pe in cfg.pes for s in cfg.seeds] if cfg.language_models else []

        task_records, eval_jobs = {}, []
        for task, plan in plans.items():
            for pe in cfg.pes:
                for seed in cfg.seeds:
                    name = trained_name(pe)
                    fields = tasklab.eval_fields(plan, pe, train_keys[task, name, seed]["key"], TASK_EVAL_SEED)
                    key = run_key(fields)
                    path = os.path.join(cfg.out, "tasks", task, "eval", folder_name(pe, seed) + ".json")
                    if os.path.exists(path):
                        rec, why = read_record(path, key, fields)
                        if rec is not None:
                            task_records[task, pe, seed] = rec
                            continue
                        log(f"lab: {task} {pe} seed {seed}: the test on disk was made with other settings "
                            f"({'; '.join(why)}): testing again")
                    eval_jobs.append({"pe": pe, "seed": seed, "trained": name, "fields": fields, "key": key,
                                      "path": path, "train_key": train_keys[task, name, seed],
                                      "run_dir": os.path.join(cfg.out, "tasks", task, folder_name(name, seed))})
        for rec in _run(executor, lab_jobs.task_eval_job, eval_jobs, "lab: task accuracy", progress, parallel):
            task_records[rec["task"], rec["pe"], rec["seed"]] = rec
            log(f"lab: {rec['task']}: evaluated {rec['pe']} seed {rec['seed']} in {rec['eval_seconds']:.0f} s")
        task_records = [task_records[k] for k in ((t, pe, s) for t in cfg.tasks for pe in cfg.pes for s in cfg.seeds)]

        ext = None
        if cfg.extend:
            ext = lab_extend.run_extension(
                cfg, model_cfg, train_cfg, corpus, train_keys, executor,
                lambda ex, fn, jobs, desc: _run(ex, fn, jobs, desc, progress, parallel), log, val_sha, ext_task_cfgs)

    results = {"format": RESULT_FORMAT, "config": asdict(cfg), "model": model_cfg.to_dict(),
               "train": train_cfg.to_dict(), "corpus": corpus.name, "corpus_sha256": corpus.sha256, "T_train": T,
               "protocols": protocols(cfg.stride), "records": records, "task_records": task_records,
               "task_train": {t: p.train_cfg.to_dict() for t, p in plans.items()},
               "task_model": {t: p.model_cfg.to_dict() for t, p in plans.items()}, "task_preset": cfg.task_preset,
               "training_keys": {f"{task + '/' if task else ''}{folder_name(name, seed)}": k["key"]
                                 for (task, name, seed), k in train_keys.items()},
               "wall_seconds": time.time() - t0}
    if ext is not None:
        results["extend"] = ext
    write_json(os.path.join(cfg.out, "results.json"), results)
    if cfg.language_models:
        write_csv(os.path.join(cfg.out, "results.csv"), records)
    summary = summarize(results)
    if task_records:
        summary += "\n" + tasklab.outputs(task_records, cfg.out)        # tasks.csv, tasks.png, their section
    if ext is not None:
        from .results import table
        summary += "\n" + lab_extend.summary(ext, table(results))
        lab_extend.write_csv(os.path.join(cfg.out, "extend.csv"), ext["records"], ext["task_records"])
    atomic_write_bytes(os.path.join(cfg.out, "summary.md"), lambda f: f.write(summary.encode("utf-8")))
    from .. import plots  # here: plots imports lab.results, and matplotlib is slow to load
    plots.lab_figures(results, cfg.out)
    plots.task_figures(results, cfg.out)
    if ext is not None:
        from .results import table
        plots.extend_figure(ext, cfg.out, lab_extend.references(ext, table(results)))
    return results, summary
