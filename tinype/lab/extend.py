"""Context extension by fine-tuning: the lab's trained models, fine-tuned briefly at F x T_train.

    tinype lab --extend 4 --finetune-steps 0,25,50,100,200      (LabConfig(extend=4, ...))

After the lab's usual trainings (reused as always), each method below starts from the lab's trained
model (rope's checkpoint for the four RoPE methods, alibi's for the control) and is fine-tuned on
the corpus at windows of F x T_train bytes, in ONE run up to max(steps) that keeps a snapshot at
every listed count (0: the untouched model under the new scaling):

    rope       plain RoPE, fine-tuned directly at the new length (no scaling)
    rope_pi    Position Interpolation (Chen et al. 2023): every frequency divided by factor = F
    rope_ntk   NTK-aware (bloc97 2023): base * F^(D/(D-2)), factor = F
    rope_yarn  YaRN (Peng et al. 2023): NTK-by-parts ramp with scale s = factor = F over the
               original length T_train, attention factor 0.1 ln F + 1 on q and k
    alibi      the control: ALiBi unchanged, fine-tuned at the new length

"factor" is the scale s = L' / L of the papers and of transformers' rope_scaling for all three
(PI's L'/L; NTK-aware's alpha-free form base' = base s^(D/(D-2)); YaRN's s with
original_max_position_embeddings = T_train). The factor is fixed (factor=F in pe_options), not
L / T_train per window, so the fine-tuned model turns positions one way at every length, as a
fine-tuned PI/YaRN model does; model_cfg.T_train stays the original length (the scalings extend
from it) and the fine-tuning window is recorded as finetune.context.

Schedule (documented defaults, LabConfig fields): AdamW from a fresh state, linear warmup over
max(steps)/10 steps (at most 20, the PI and YaRN papers' warmup), cosine decay to 0.1 x peak at
max(steps); peak lr = finetune_lr (0.3) x the preset's lr; no weight decay (as in PI and YaRN);
batch = the preset's batch // F windows of F x T_train bytes, i.e. the pre-training's tokens per step.
Why 0.3: the papers fine-tune at about a tenth or less of their pre-training peak over ~1000 steps;
tinype's models are tiny and their fine-tunes 200 steps, so a larger fraction. It is a choice, not a
tuned optimum: on the quick preset at F = 4 the warmup perturbs the model briefly (rope's 1x
perplexity 4.53 -> 5.04 at step 25) and the cosine then improves on it (4.43 at step 200); no
method diverged. --finetune-lr changes it (and the run key).

Evaluation of every snapshot: non-overlapping windows (the lab's `nonoverlap`, plus `beyond`) of the
validation split at L = T_train x extend_mults (default 1, F, 2F), and passkey retrieval at
F x T_train: tinype.tasks' passkey prompts (filler, "key=NNNNN. " at depth 0, .25, .5, .75, 1,
"key?") with the lab's test seed, graded by greedy exact match of the 5 digits, by the key's mean
NLL per digit, and by its gain: the NLL per digit of another (seeded) key after the same prompt
minus the true key's. A language model trained on the corpus was never taught to answer "key?", so
exact match mostly measures whether it copies the digits anyway, and the NLL mixes "a digit comes
next" with "this digit"; the gain isolates retrieval (0: the key's earlier occurrence does not
inform the answer; > 0: it does) -- the likelihood form of passkey.

With the passkey task in the lab (--tasks passkey: the lab's own passkey protocol, models trained on
passkey examples that fit T_train), each method also fine-tunes that passkey model the same way on
passkey examples of up to F x T_train + 1 bytes (train-on-passkey-then-extend), into
extend/F<F>/passkey/, and grades exact match at 1, F, 2F x T_train at every snapshot, with the
lab's task_examples per depth (extend.csv protocol passkey_task, a table in summary.md).

Identity and reuse: a fine-tune's run key holds the source training's key and the sha256 of its
checkpoint file, the method, F, the context, the model and training configurations, the snapshot
list and the corpus; it is written to key.json in the run folder at the start. A folder holding
another key (a changed lr, batch or steps list) is refused by name unless --recompute, exactly as
the lab's trainings; F is part of the folder (extend/F4/...), so another F is a new folder. Any
change of the steps list redoes the fine-tune (the cosine spans max(steps), and a snapshot not
kept cannot be recovered). An evaluation record is reused when its key (the fine-tune's key, the
step, lengths, window cap, batch, validation sha256, passkey settings) is equal, else redone.
"""
import math
import os
import time
from dataclasses import replace

import numpy as np

from ..checkpoint import CKPT_NAME, load_checkpoint, load_model, write_json
from ..config import RESTART_FIELDS, RESULT_FORMAT, TrainConfig
from ..errors import InvalidFile
from ..evaluate import evaluate_task_nll, position_nll, task_accuracy
from ..tasks import DEPTHS, encode_examples, get_task
from ..train import file_sha256, snapshot_path, train
from .results import checkpoint_key_fields, folder_name, key_differences, read_record, run_key
from .sweep import TASK_EVAL_SEED, LabError

#: method -> (the lab training it starts from, the encoding it fine-tunes with, whether it takes factor=F)
METHODS = {"rope": ("rope", "rope", False), "rope_pi": ("rope", "rope_pi", True),
           "rope_ntk": ("rope", "rope_ntk", True), "rope_yarn": ("rope", "rope_yarn", True),
           "alibi": ("alibi", "alibi", False)}
KEY_FILE = "key.json"
MAX_WARMUP = 20


def lengths(cfg, T):
    """The evaluation lengths in bytes: T_train x extend_mults (default 1, F, 2F)."""
    mults = cfg.extend_mults or [1, cfg.extend, 2 * cfg.extend]
    return [T * m for m in mults]


def methods(cfg, trained):
    """(methods that run, methods skipped because their base training is not among --pe)."""
    run = [m for m in cfg.extend_methods if METHODS[m][0] in trained]
    skipped = [m for m in cfg.extend_methods if m not in run]
    if not run:
        raise LabError(f"--extend fine-tunes the lab's rope and alibi trainings, and --pe trains neither "
                       f"(it trains {', '.join(sorted(trained))}): add rope (for rope, rope_pi, rope_ntk, rope_yarn) "
                       f"or alibi to --pe")
    return run, skipped


def finetune_configs(cfg, model_cfg, train_cfg, method):
    """(ModelConfig, TrainConfig, context) of one method's fine-tune (the schedule documented above)."""
    F = cfg.extend
    base, pe, scaled = METHODS[method]
    mcfg = replace(model_cfg, pe=pe, pe_options={"factor": float(F)} if scaled else {})
    steps = max(cfg.finetune_steps)
    source = {k: v for k, v in train_cfg.to_dict().items() if k not in RESTART_FIELDS}   # a fine-tune never restarts
    tcfg = TrainConfig(**{**source,
                          "steps": steps, "lr": train_cfg.lr * cfg.finetune_lr,
                          "warmup": min(MAX_WARMUP, steps // 10), "weight_decay": 0.0,
                          "batch_size": cfg.finetune_batch or max(1, train_cfg.batch_size // F),
                          "eval_every": 0, "ckpt_every": max(1, min(50, steps))})
    return mcfg, tcfg, model_cfg.T_train * F


def check(cfg, corpus, T):
    """Before any training: every window the extension evaluates and trains fits the corpus."""
    longest = max(lengths(cfg, T) + [T * cfg.extend])
    if len(corpus.val) < longest + 1:
        raise LabError(f"--extend {cfg.extend}: the extension evaluates windows of {longest:,} bytes, but the "
                       f"validation split of {corpus.name} holds {len(corpus.val):,}: lower --extend or "
                       f"--extend-lengths, or use a longer --text")
    if len(corpus.train) < T * cfg.extend + 1:
        raise LabError(f"--extend {cfg.extend}: fine-tuning windows of {T * cfg.extend:,} bytes do not fit "
                       f"the training split of {corpus.name} ({len(corpus.train):,} bytes)")


def task_sources(cfg, plans, T, log):
    """{task: (ModelConfig, TrainConfig, Task)} of the lab's task models the extension may fine-tune:
    each in its own shape, when trained at the language models' window T (the extension's lengths
    are multiples of it); a passkey model of another window is left out, and the log says so."""
    sources = {t: (p.model_cfg, p.train_cfg, p.source.task) for t, p in plans.items() if p.model_cfg.T_train == T}
    if cfg.extend and "passkey" in plans and "passkey" not in sources:
        log(f"lab: extend: the passkey models are not fine-tuned: they were trained at T_train = "
            f"{plans['passkey'].model_cfg.T_train}, the language models at {T}")
    return sources


def plan(cfg, model_cfg, train_cfg, corpus, train_keys, seeds, log, task_cfgs=None):
    """(fine-tune jobs to run, every fine-tune's description, conflicts) for the methods that run.

    With the passkey task in the lab (--tasks passkey), each method's passkey model is fine-tuned too,
    in its own shape, on passkey examples up to F x T_train (train-on-passkey-then-extend), into
    extend/F<F>/passkey/. task_cfgs: task_sources(), the task models it may use."""
    from ..tasks import TaskSet
    trained = {name for (task, name, _seed) in train_keys if task is None}
    run, skipped = methods(cfg, trained)
    for m in skipped:
        log(f"lab: extend: {m} skipped: it fine-tunes the {METHODS[m][0]} training, which --pe does not include")
    T = model_cfg.T_train
    folder = os.path.join(cfg.out, "extend", f"F{cfg.extend}")
    sources = [(None, corpus, model_cfg, train_cfg, os.path.join(cfg.out, "train"), folder)]
    if "passkey" in (task_cfgs or {}):
        pk_model, pk_train, pk_task = task_cfgs["passkey"]      # the task as trained (its start byte)
        sources.append(("passkey", TaskSet(pk_task), pk_model, pk_train,
                        os.path.join(cfg.out, "tasks", "passkey"), os.path.join(folder, "passkey")))
    runs, jobs, conflicts = [], [], []
    for (task, source_data, source_model, source_cfg, trained_in, ft_folder), method in \
            ((src, m) for src in sources for m in run):
        base = METHODS[method][0]
        mcfg, tcfg, context = finetune_configs(cfg, source_model, source_cfg, method)
        for seed in seeds:
            tkey = train_keys[task, base, seed]
            source = os.path.join(trained_in, folder_name(base, seed), CKPT_NAME)
            scfg = replace(tcfg, seed=seed)
            fields = {"kind": "finetune", "format": RESULT_FORMAT, "method": method, "factor": cfg.extend,
                      "context": context, "source_key": tkey["key"], "source_sha256": file_sha256(source),
                      "model": mcfg.to_dict(), "train": scfg.to_dict(), "snapshots": list(cfg.finetune_steps),
                      "corpus_sha256": source_data.sha256, "T_train": T}
            if task is not None:
                fields["task"] = task
            key = {"key": run_key(fields), "fields": fields}
            run_dir = os.path.join(ft_folder, f"{method}-s{seed}")
            state, diffs = finetune_state(run_dir, key, cfg.finetune_steps)
            desc = {"method": method, "seed": seed, "run_dir": run_dir, "key": key, "task": task,
                    "start": source_data.task.start if task else b""}
            runs.append(desc)
            if state == "other":
                conflicts.append((run_dir, diffs))
                if not cfg.recompute:
                    continue
            what = f"{task + ' ' if task else ''}{method} seed {seed}"
            if state == "finished":
                log(f"lab: extend: {what}: fine-tuned already, skipped")
                continue
            jobs.append({"label": f"extend {what}", "model_cfg": mcfg, "train_cfg": scfg,
                         "source": source_data, "init_from": source, "source_key": tkey, "context": context,
                         "snapshots": list(cfg.finetune_steps), "run_dir": run_dir, "key": key,
                         "progress": False})
    return jobs, runs, conflicts


def finetune_state(run_dir, key, snapshots):
    """("missing" | "finished" | "partial" | "other", differences) of the fine-tune in run_dir."""
    path = os.path.join(run_dir, KEY_FILE)
    if not os.path.exists(path):
        if os.path.exists(os.path.join(run_dir, CKPT_NAME)):
            return "other", [f"{run_dir} holds a checkpoint without a fine-tune key ({KEY_FILE})"]
        return "missing", []
    try:
        rec, why = read_record(path, key["key"], key["fields"])
    except InvalidFile as err:
        return "other", [str(err)]
    if rec is None:
        return "other", why
    ckpt = os.path.join(run_dir, CKPT_NAME)
    if not os.path.exists(ckpt):
        return "partial", []
    _, meta = load_checkpoint(ckpt)
    done = meta.get("step") == key["fields"]["train"]["steps"] and \
        os.path.exists(os.path.join(run_dir, "metrics.json")) and \
        all(os.path.exists(snapshot_path(run_dir, n)) for n in snapshots)
    return ("finished" if done else "partial"), []


def finetune_job(job):
    """One method's fine-tune (resumed when part of it is on disk); writes key.json first."""
    os.makedirs(job["run_dir"], exist_ok=True)
    write_json(os.path.join(job["run_dir"], KEY_FILE), {"key": job["key"]["key"], "key_fields": job["key"]["fields"]})
    expected = job["source_key"]

    def same_key(meta):          # the source is the lab's own training, with the key the lab expects
        fields = checkpoint_key_fields(meta)
        if run_key(fields) != expected["key"]:
            raise LabError(f"{job['init_from']} was trained with other settings than the lab's, so it is not "
                           f"fine-tuned: " + "; ".join(key_differences(fields, expected["fields"])))

    label = job["label"]
    t0 = time.time()
    train(job["model_cfg"], job["train_cfg"], job["source"], out=job["run_dir"], resume=True,
          progress=job["progress"], init_from=job["init_from"], context=job["context"],
          snapshots=job["snapshots"], trust_code=True, init_check=same_key,
          log=lambda msg: None if msg.startswith("no checkpoint") else print(f"lab: {label}: {msg}", flush=True))
    return label, time.time() - t0


def eval_plan(cfg, runs, corpus, val_sha, T, log):
    """(evaluation records found on disk, jobs for the rest): one per (method, seed, snapshot)."""
    F = cfg.extend
    task = get_task("passkey")
    size = T * F + 1                                 # the model reads size - 1 = F x T_train bytes
    found, jobs = [], []
    for run in runs:
        for step in cfg.finetune_steps:
            if run["task"] == "passkey":            # a passkey model: exact match at each length
                fields = {"kind": "finetune_task_eval", "format": RESULT_FORMAT, "finetune_key": run["key"]["key"],
                          "step": step, "task": "passkey",     # the sizes whose examples fill L inputs
                          "sizes": [passkey_task(run["start"]).largest(L) for L in lengths(cfg, T)],
                          "depths": list(task.depths), "examples": cfg.task_examples, "eval_seed": TASK_EVAL_SEED}
                if run["start"]:
                    fields["start"] = run["start"].decode("latin-1")
                extra = {}
            else:                                   # a language model: perplexity and passkey likelihood
                fields = {"kind": "finetune_eval", "format": RESULT_FORMAT, "finetune_key": run["key"]["key"],
                          "step": step, "lengths": lengths(cfg, T), "protocols": ["beyond", "nonoverlap"],
                          "max_windows": cfg.max_windows, "eval_batch": cfg.eval_batch, "val_sha256": val_sha,
                          "passkey": {"size": size, "depths": list(task.depths), "examples": cfg.passkey_examples,
                                      "seed": TASK_EVAL_SEED, "contrast": "other key, seed + [1]"}}
                extra = {"val": corpus.val}
            key = run_key(fields)
            path = os.path.join(os.path.dirname(run["run_dir"]), "eval",
                                f"{run['method']}-s{run['seed']}-step{step:06d}.json")
            if os.path.exists(path):
                rec, why = read_record(path, key, fields)
                if rec is not None:
                    found.append(rec)
                    continue
                log(f"lab: extend: {run['method']} step {step}: the evaluation on disk was made with other "
                    f"settings ({'; '.join(why)}): evaluating again")
            jobs.append({"method": run["method"], "seed": run["seed"], "step": step, "fields": fields, "key": key,
                         "path": path, "T": T, "snapshot": snapshot_path(run["run_dir"], step),
                         "finetune": run["key"], **extra})
    return found, jobs


def other_keys(examples, size, k):
    """For each (prompt, key): the same prompt with another 5-digit key (seeded, never the true one),
    the contrast of the likelihood form of passkey."""
    rng = np.random.default_rng([TASK_EVAL_SEED, size, k, 1])
    out = []
    for prompt, key in examples:
        other = key
        while other == key:
            other = "".join(map(str, rng.integers(0, 10, len(key)))).encode()
        out.append((prompt, other))
    return out


def passkey_task(start=b""):
    """The passkey task, with the start byte before every prompt (str or bytes; the task preset's,
    tasks.WithStart), or without one (empty)."""
    return get_task("passkey", start.encode("latin-1") if isinstance(start, str) else start)


def passkey_examples(size, n, depths=DEPTHS, start=b""):
    """The lab's passkey test examples at one size: n per depth, seeded like task_eval_job."""
    task = passkey_task(start)
    out = {}
    for k, depth in enumerate(depths):
        rng = np.random.default_rng([TASK_EVAL_SEED, size, k])
        out[depth] = [task.example(rng, size, depth) for _ in range(n)]
    return out


def _load_snapshot(job):
    cfg, expected = job["fields"], job["finetune"]["fields"]

    def same_run(meta):          # the snapshot belongs to the fine-tune with the key asked for
        want = {"step": cfg["step"], "model_config": expected["model"], "train_config": expected["train"]}
        got = {k: meta.get(k) for k in want}
        if got != want:
            raise LabError(f"{job['snapshot']} is not the step-{cfg['step']} snapshot of the fine-tune asked for: "
                           + "; ".join(key_differences(got, want)))

    return load_model(job["snapshot"], trust_code=True, check=same_run)[0]


def task_eval_job(job):
    """A fine-tuned passkey model's exact-match accuracy at every size and depth."""
    cfg = job["fields"]
    model = _load_snapshot(job)
    t1 = time.time()
    acc = {}
    task = passkey_task(cfg.get("start", ""))
    for size in cfg["sizes"]:
        try:
            model.pe.check_length(task.length(size) - 1)
        except ValueError:
            acc[str(size)] = None
            continue
        acc[str(size)] = {str(d): task_accuracy(model, ex)
                          for d, ex in passkey_examples(size, cfg["examples"], cfg["depths"], task.start).items()}
    rec = {"method": job["method"], "seed": job["seed"], "step": cfg["step"], "task": "passkey", "key": job["key"],
           "key_fields": cfg, "accuracy": acc, "eval_seconds": time.time() - t1}
    write_json(job["path"], rec)
    return rec


def eval_job(job):
    """Evaluate one snapshot: nonoverlap/beyond NLL at every length, passkey at F x T_train."""
    if job["fields"]["kind"] == "finetune_task_eval":
        return task_eval_job(job)
    cfg, T = job["fields"], job["T"]
    model = _load_snapshot(job)
    t1 = time.time()
    rows = {}
    for L in cfg["lengths"]:
        try:
            model.pe.check_length(L)
        except ValueError:
            rows[str(L)] = None
            continue
        nll = position_nll(model, job["val"], L, cfg["eval_batch"], cfg["max_windows"])
        rows[str(L)] = {"nonoverlap": float(nll.mean()),
                        "beyond": float(nll[:, T:].mean()) if L > T else None, "tokens": int(nll.size)}
    pk = cfg["passkey"]
    passkey = {}
    for k, (depth, examples) in enumerate(passkey_examples(pk["size"], pk["examples"], pk["depths"]).items()):
        x, y = encode_examples(examples)
        xo, yo = encode_examples(other_keys(examples, pk["size"], k))
        nll = evaluate_task_nll(model, x, y)["nll"]
        passkey[str(depth)] = {"accuracy": task_accuracy(model, examples), "nll": nll,
                               "gain": evaluate_task_nll(model, xo, yo)["nll"] - nll}
    rec = {"method": job["method"], "seed": job["seed"], "step": cfg["step"], "key": job["key"],
           "key_fields": job["fields"], "lengths": rows, "passkey": passkey,
           "passkey_L": pk["size"] - 1, "eval_seconds": time.time() - t1}
    write_json(job["path"], rec)
    return rec


# tables -------------------------------------------------------------------------------------------

def task_csv_rows(task_records):
    """extend.csv rows of the fine-tuned passkey models: protocol 'passkey_task' (exact match averaged
    over the depths; nll and ppl empty) and 'passkey_task@<depth>', L = the bytes the model reads."""
    rows = []
    for r in task_records:
        task = passkey_task(r["key_fields"].get("start", ""))
        for size, cell in r["accuracy"].items():
            L = task.length(int(size)) - 1                                  # the bytes the model reads
            if cell is None:
                rows.append([r["method"], r["seed"], r["step"], L, "passkey_task", None, None, None])
                continue
            rows.append([r["method"], r["seed"], r["step"], L, "passkey_task", None, None,
                         float(np.mean(list(cell.values())))])
            rows += [[r["method"], r["seed"], r["step"], L, f"passkey_task@{d}", None, None, a]
                     for d, a in cell.items()]
    return rows


def csv_rows(records):
    """extend.csv: method, seed, finetune_steps, L, protocol, nll, ppl, accuracy (passkey rows: protocol
    'passkey', nll = the key's mean NLL per digit, ppl = its exp, accuracy = greedy exact match, all
    averaged over the depths; 'passkey@<depth>' rows per depth; 'passkey_gain', nll = the NLL per digit
    of another key in the same prompt minus the true key's: > 0 when the model retrieves the key)."""
    rows = []
    for r in sorted(records, key=lambda r: (r["method"], r["seed"], r["step"])):
        for L, row in r["lengths"].items():
            for proto in ("nonoverlap", "beyond"):
                v = None if row is None else row.get(proto)
                if v is None and proto == "beyond":
                    continue
                rows.append([r["method"], r["seed"], r["step"], L, proto, v, None if v is None else math.exp(v), None])
        pk = r["passkey"]
        nll = float(np.mean([c["nll"] for c in pk.values()]))
        acc = float(np.mean([c["accuracy"] for c in pk.values()]))
        rows.append([r["method"], r["seed"], r["step"], r["passkey_L"], "passkey", nll, math.exp(nll), acc])
        gain = float(np.mean([c["gain"] for c in pk.values()]))
        rows.append([r["method"], r["seed"], r["step"], r["passkey_L"], "passkey_gain", gain, None, None])
        for depth, c in pk.items():
            rows.append([r["method"], r["seed"], r["step"], r["passkey_L"], f"passkey@{depth}", c["nll"],
                         math.exp(c["nll"]), c["accuracy"]])
    return rows


def write_csv(path, records, task_records=()):
    import csv
    import io

    from ..checkpoint import atomic_write_bytes
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["method", "seed", "finetune_steps", "L", "protocol", "nll", "ppl", "accuracy"])
    for m, seed, step, L, proto, nll, ppl, acc in csv_rows(records) + task_csv_rows(task_records):
        w.writerow([m, seed, step, L, proto, "" if nll is None else f"{nll:.6f}", "" if ppl is None else f"{ppl:.4f}",
                    "" if acc is None else f"{acc:.4f}"])
    atomic_write_bytes(path, lambda f: f.write(buf.getvalue().encode("utf-8")))


def table(ext):
    """{method: {step: {"ppl": {L: (mean, std) or None}, "passkey": (acc, key nll, gain)}}} over seeds."""
    out = {}
    for r in ext["records"]:
        cell = out.setdefault(r["method"], {}).setdefault(r["step"], {"ppl": {}, "acc": [], "nll": [],
                                                                         "gain": []})
        for L, row in r["lengths"].items():
            cell["ppl"].setdefault(int(L), []).append(None if row is None else math.exp(row["nonoverlap"]))
        cell["acc"].append(float(np.mean([c["accuracy"] for c in r["passkey"].values()])))
        cell["nll"].append(float(np.mean([c["nll"] for c in r["passkey"].values()])))
        cell["gain"].append(float(np.mean([c["gain"] for c in r["passkey"].values()])))
    for by_step in out.values():
        for cell in by_step.values():
            cell["ppl"] = {L: None if any(v is None for v in vals) else (float(np.mean(vals)), float(np.std(vals)))
                           for L, vals in cell["ppl"].items()}
            cell["passkey"] = (float(np.mean(cell.pop("acc"))), float(np.mean(cell.pop("nll"))),
                               float(np.mean(cell.pop("gain"))))
    return out


def references(ext, lab_table=None):
    """{method: in-distribution ppl}: its base model's, untouched, at T_train (the rope or alibi
    method's step-0 row at T_train; else the lab's own table)."""
    T = ext["T_train"]
    tab = table(ext)
    refs = {}
    for method in tab:
        base = METHODS[method][0]
        cell = tab.get(base, {}).get(0, {}).get("ppl", {}).get(T)
        if cell is None and lab_table is not None:
            cell = (lab_table.get(base) or {}).get(T)
        refs[method] = None if cell is None else cell[0]
    return refs


def steps_to_within(ext, tolerance=0.10, lab_table=None):
    """{method: the first snapshot whose ppl at F x T_train is within tolerance of the in-distribution
    ppl (None: none is)}."""
    L = ext["T_train"] * ext["factor"]
    refs = references(ext, lab_table)
    out = {}
    for method, by_step in table(ext).items():
        ref = refs.get(method)
        hit = None
        for step in sorted(by_step):
            v = by_step[step]["ppl"].get(L)
            if ref is not None and v is not None and v[0] <= (1 + tolerance) * ref:
                hit = step
                break
        out[method] = hit
    return out


def summary(ext, lab_table=None):
    """The markdown section of summary.md."""
    T, F = ext["T_train"], ext["factor"]
    Ls = ext["lengths"]
    seeds = ext["seeds"]
    tab = table(ext)
    refs = references(ext, lab_table)
    within = steps_to_within(ext, lab_table=lab_table)
    s = ext["schedule"]
    lines = [f"## extension: fine-tuning at {F} x T_train = {T * F} bytes", "",
             f"Each method starts from the lab's trained model (rope for the RoPE methods, alibi for the control), "
             f"factor = {F} for rope_pi/ntk/yarn; one fine-tune per method of {s['steps']} steps, snapshots at "
             f"{ext['finetune_steps']}: AdamW from a fresh state, peak lr {s['lr']:g} ({ext['lr_fraction']:g} x the "
             f"preset's), warmup {s['warmup']}, cosine to {s['min_lr_ratio']:g} x, no weight decay, batch "
             f"{s['batch_size']} x {T * F} bytes. Perplexity of non-overlapping windows of the validation split; "
             f"passkey at L={T * F}: greedy exact match (%) / the key's mean NLL per digit / its gain (the NLL of "
             f"another key in the same prompt minus the true key's, nats per digit: > 0 when the key is retrieved), "
             f"{ext['passkey_examples']} examples at each of 5 depths."
             + (f" Skipped (their base training is not among --pe): {', '.join(ext['skipped'])}."
                if ext.get("skipped") else ""), "",
             "| method | steps | " + " | ".join(f"L={L} ({L // T}x)" for L in Ls) + f" | passkey@{T * F} |",
             "|---|---|" + "---|" * (len(Ls) + 1)]
    for method in ext["methods"]:
        for step in sorted(tab.get(method, {})):
            cell = tab[method][step]
            vals = []
            for L in Ls:
                v = cell["ppl"].get(L)
                vals.append("n/a" if v is None else f"{v[0]:.2f}" + (f" ± {v[1]:.2f}" if len(seeds) > 1 else ""))
            acc, nll, gain = cell["passkey"]
            lines.append(f"| {method} | {step} | " + " | ".join(vals)
                         + f" | {100 * acc:.0f} / {nll:.2f} / {gain:+.2f} |")
    lines += ["", f"Steps to reach within 10% of the in-distribution perplexity (the base model at L={T}) at "
              f"L={T * F}:", ""]
    for method in ext["methods"]:
        ref = refs.get(method)
        hit = within.get(method)
        lines.append(f"- {method}: " + (f"{hit} (in-distribution {ref:.2f})" if hit is not None else
                                        f"not within {max(ext['finetune_steps'])} steps"
                                        + (f" (in-distribution {ref:.2f})" if ref is not None else "")))
    if ext.get("task_records"):
        sizes = sorted({int(k) for r in ext["task_records"] for k in r["accuracy"]})
        task = passkey_task(ext["task_records"][0]["key_fields"].get("start", ""))
        lines += ["", f"Passkey models (the lab's --tasks passkey trainings) fine-tuned the same way on passkey "
                  f"examples of up to {T * F + 1} bytes: exact-match accuracy (%), averaged over the key depths "
                  f"and seeds:", "",
                  "| method | steps | " + " | ".join(f"{task.length(n) - 1} B" for n in sizes) + " |",
                  "|---|---|" + "---|" * len(sizes)]
        cells = {}
        for r in ext["task_records"]:
            for size, cell in r["accuracy"].items():
                cells.setdefault((r["method"], r["step"], int(size)), []).append(
                    None if cell is None else float(np.mean(list(cell.values()))))
        for method in ext["methods"]:
            for step in ext["finetune_steps"]:
                vals = [cells.get((method, step, n)) for n in sizes]
                lines.append(f"| {method} | {step} | " + " | ".join(
                    "n/a" if not v or any(x is None for x in v) else f"{100 * np.mean(v):.0f}" for v in vals) + " |")
    lines += ["", f"Fine-tuning wall time in this invocation: {ext['finetune_seconds']:.0f} s; evaluation "
              f"{ext['eval_seconds']:.0f} s (finished work found on disk is not redone).", ""]
    return "\n".join(lines)


def run_extension(cfg, model_cfg, train_cfg, corpus, train_keys, executor, run, log, val_sha, task_cfgs=None):
    """The whole extension phase (run_lab calls it after its trainings and evaluations); returns the
    extension's results dict (results.json["extend"]). run: run_lab's _run(executor, fn, jobs, desc)."""
    import shutil
    T = model_cfg.T_train
    jobs, runs, conflicts = plan(cfg, model_cfg, train_cfg, corpus, train_keys, cfg.seeds, log, task_cfgs)
    if conflicts and not cfg.recompute:
        lines = [f"  {d}: " + "; ".join(diffs) for d, diffs in conflicts]
        raise LabError(f"{cfg.out} holds {len(conflicts)} fine-tune(s) made with other settings than asked:\n"
                       + "\n".join(lines) + "\npass --recompute to discard them and fine-tune again, or choose "
                       "another --out")
    for run_dir, diffs in conflicts:
        log(f"lab: {run_dir}: made with other settings ({'; '.join(diffs)}): discarded (--recompute)")
        shutil.rmtree(run_dir)
    t0 = time.time()
    for label, seconds in run(executor, finetune_job, jobs, "lab: fine-tuning"):
        log(f"lab: {label}: fine-tuned in {seconds:.0f} s")
    t1 = time.time()
    found, eval_jobs = eval_plan(cfg, runs, corpus, val_sha, T, log)
    records = list(found)
    for rec in run(executor, eval_job, eval_jobs, "lab: evaluating fine-tunes"):
        records.append(rec)
        log(f"lab: extend: evaluated {rec.get('task', '') + ' ' if rec.get('task') else ''}{rec['method']} "
            f"seed {rec['seed']} step {rec['step']} in {rec['eval_seconds']:.0f} s")
    task_records = sorted((r for r in records if r.get("task")), key=lambda r: (r["method"], r["seed"], r["step"]))
    records = [r for r in records if not r.get("task")]
    methods_run = list(dict.fromkeys(r["method"] for r in runs))
    schedule = finetune_configs(cfg, model_cfg, train_cfg, methods_run[0])[1].to_dict()
    return {"factor": cfg.extend, "T_train": T, "context": T * cfg.extend, "lengths": lengths(cfg, T),
            "finetune_steps": list(cfg.finetune_steps), "methods": methods_run,
            "skipped": [m for m in cfg.extend_methods if m not in methods_run], "seeds": list(cfg.seeds),
            "schedule": schedule, "lr_fraction": cfg.finetune_lr, "passkey_examples": cfg.passkey_examples,
            "records": sorted(records, key=lambda r: (r["method"], r["seed"], r["step"])),
            "task_records": task_records,
            "finetune_seconds": t1 - t0, "eval_seconds": time.time() - t1,
            "keys": {f"{r['task'] + '/' if r['task'] else ''}{r['method']}-s{r['seed']}": r["key"]["key"]
                     for r in runs}}
