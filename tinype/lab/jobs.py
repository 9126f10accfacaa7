"""The lab's units of work, run by an executor (in this process, a spawned one, or a Dask worker).

Each takes one picklable job (a dict) and writes its result into the run folder. Before it
evaluates, a job checks that the checkpoint's own recorded configuration has the training key the
lab expects: a checkpoint made with other settings is never evaluated under the lab's label.
"""
import os
import time
from dataclasses import replace

from .. import positions
from ..checkpoint import CKPT_NAME, CheckpointError, load_checkpoint, load_model, read_json, write_json
from ..evaluate import evaluate_at_lengths
from ..tasks import get_task
from ..train import train
from . import tasklab
from .results import checkpoint_key_fields, key_differences, run_key
from .sweep import TASK_EVAL_SEED, LabError


def training_state(run_dir, key):
    """("missing" | "finished" | "partial" | "other", differences) of the training in run_dir.

    "other": the folder holds a checkpoint whose recorded configuration has another key."""
    ckpt = os.path.join(run_dir, CKPT_NAME)
    if not os.path.exists(ckpt):
        return "missing", []
    try:
        _, meta = load_checkpoint(ckpt)
    except CheckpointError as err:        # damaged or forged: never reused; --recompute replaces it
        return "other", [f"its checkpoint cannot be used ({err})"]
    fields = checkpoint_key_fields(meta)
    if run_key(fields) != key["key"]:
        return "other", key_differences(fields, key["fields"])
    done = meta.get("step") == key["fields"]["train"]["steps"] and os.path.exists(os.path.join(run_dir, "metrics.json"))
    return ("finished" if done else "partial"), []


def train_job(job):
    """One training; skipped when its run folder already holds it (same key), resumed when part is there."""
    state, diffs = training_state(job["run_dir"], job["key"])
    if state == "finished":
        return job["label"], "skipped"
    if state == "other":
        raise LabError(f"{job['run_dir']} holds a training made with other settings: " + "; ".join(diffs))
    label = job["label"]
    train(job["model_cfg"], job["train_cfg"], job["source"], out=job["run_dir"], resume=True,
          progress=job["progress"], log=lambda msg: None if msg.startswith("no checkpoint") else
          print(f"lab: {label}: {msg}", flush=True))
    return label, "trained"


def load_checked(run_dir, train_key, pe, label):
    """The model in run_dir, with the evaluation-time variant pe swapped in if it is one; refused
    (LabError) when the checkpoint's own configuration does not have the expected training key."""
    path = os.path.join(run_dir, CKPT_NAME)

    def same_key(meta):          # before the model is built: a foreign file never gets imported
        fields = checkpoint_key_fields(meta)
        if run_key(fields) != train_key["key"]:
            raise LabError(f"{path} was trained with other settings than the lab's, so it is not evaluated as "
                           f"{label}: " + "; ".join(key_differences(fields, train_key["fields"])))

    # trust_code: the key (which holds the sha256 of an outside encoding's file) matched the lab's own
    model, meta = load_model(path, trust_code=True, check=same_key)
    if pe != model.config.pe:
        model.config = replace(model.config, pe=pe, pe_options={})
        model.pe = positions.get(pe)
        model.pe.setup(model.config)
    return model


def eval_job(job):
    """One evaluation of (encoding, seed) at every length; writes job["path"] with its key."""
    pe, seed, cfg = job["pe"], job["seed"], job["fields"]
    model = load_checked(job["run_dir"], job["train_key"], pe, f"{pe} seed {seed}")
    t1 = time.time()
    lengths, curve = evaluate_at_lengths(model, job["val"], cfg["T_train"], cfg["mults"], cfg["max_windows"],
                                         cfg["eval_batch"], cfg["stride"])
    rec = {"pe": pe, "trained": job["trained"], "seed": seed, "key": job["key"], "key_fields": job["fields"],
           "lengths": {str(L): v for L, v in lengths.items()},
           "position_curve": None if curve is None else {"L": curve[0], "nll": curve[1].tolist()},
           "eval_seconds": time.time() - t1}
    write_json(job["path"], rec)
    return rec


def _starts(run_dir):
    """How many starts the training in run_dir took (metrics.json; 1 without restarts)."""
    path = os.path.join(run_dir, "metrics.json")
    metrics = read_json(path, "metrics file") if os.path.exists(path) else {}
    starts = metrics.get("starts", 1) if isinstance(metrics, dict) else 1
    return starts if isinstance(starts, int) and starts >= 1 else 1


def task_eval_job(job):
    """Exact-match accuracy of one (task, encoding, seed) at every test size (and at every depth the
    task is tested at), graded by tasklab.evaluate (greedy answers; a scratchpad written by the
    model itself). The examples depend only on (size, depth), so every encoding answers the same."""
    pe, seed, cfg = job["pe"], job["seed"], job["fields"]
    task = get_task(cfg["task"], cfg["start"].encode("latin-1") if cfg.get("start") else None)
    model = load_checked(job["run_dir"], job["train_key"], pe, f"{task.name} {pe} seed {seed}")
    t1 = time.time()
    cells = tasklab.evaluate(model, task, cfg["sizes"], cfg["examples"], cfg.get("eval_seed", TASK_EVAL_SEED))
    acc, counts = {}, {}
    for size, cell in cells.items():
        if cell is None:
            acc[size] = None
            continue
        acc[size] = cell["depths"] if task.depths != (None,) else cell["depths"]["None"]
        counts[size] = [cell["correct"], cell["n"]]
    train_sizes = cfg.get("train_sizes") or list(task.train_sizes(cfg["T_train"]))
    rec = {"task": task.name, "pe": pe, "trained": job["trained"], "seed": seed, "accuracy": acc,
           "counts": counts, "key": job["key"], "key_fields": job["fields"],
           "lengths": {str(size): task.length(size) - 1 for size in cfg["sizes"]},
           "train_sizes": list(train_sizes), "examples": cfg["examples"],
           "starts": _starts(job["run_dir"]), "eval_seconds": time.time() - t1}
    write_json(job["path"], rec)
    return rec
