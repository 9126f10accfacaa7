"""The lab's results: run keys, records, tables, CSV and the summary (what plots.py reads too).

A run key is the SHA-256 of everything that determines a result's numbers, as canonical JSON:
    training    model and train configuration (encoding name and options, seed, steps, ...),
                the training source's sha256, the code of an encoding defined outside tinype,
                and RESULT_FORMAT
    evaluation  the training's key, the encoding evaluated (it may be an evaluation-time variant),
                the lengths, protocols, stride, window cap, batch and the validation split's sha256
    task test   the training's key, the encoding, the task's sizes, depths, examples and seed
A record on disk is reused only when its key equals the one asked for; the key's fields are
stored beside it, so a difference can be named ("max_windows: 2 on disk, 1 asked (--max-windows)").
"""
import csv
import hashlib
import io
import json

import numpy as np

from ..checkpoint import atomic_write_bytes, read_json, write_json  # noqa: F401 (write_json re-exported)
from ..config import RESULT_FORMAT
from ..errors import InvalidFile

PROTOCOLS = {"nonoverlap": "non-overlapping windows, every position",
             "beyond": "non-overlapping windows, positions >= T_train only",
             "sliding": "sliding windows, stride L/2, last L/2 positions scored"}

#: which flag changes which key field (for the messages that name a difference)
FLAGS = {"train.steps": "--steps", "train.warmup": "--steps", "train.seed": "--seeds", "train.shards": "--shards",
         "source_sha256": "--text",
         "val_sha256": "--text", "model.pe": "--pe", "model.pe_options": "--pe", "pe": "--pe", "pe_options": "--pe",
         "lengths": "--lengths", "max_windows": "--max-windows", "stride": "--stride", "eval_batch": "eval_batch",
         "examples": "--task-examples", "sizes": "--lengths/task_factors", "format": "a newer tinype",
         "pe_code": "the encoding's source file", "snapshots": "--finetune-steps", "factor": "--extend",
         "passkey": "--passkey-examples", "source_sha256_ckpt": "the source training"}


def protocols(stride=None):
    """The protocol labels, with the sliding window's stride spelled out."""
    if stride is None:
        return dict(PROTOCOLS)
    return {**PROTOCOLS, "sliding": f"sliding windows, stride {stride} bytes, last {stride} positions scored"}


def folder_name(pe, seed):
    """The run's folder (or record file) name: "<pe>-s<seed>" for tinype's own names and their
    combinations; for an encoding given by module path ("file.py:MyPE") a slug of its class name and
    a hash of the whole string, so that a path's slashes never turn the name into a path of its own
    (an absolute one would put the run beside the user's file)."""
    if all(c.isalnum() or c in "_+" for c in pe):
        return f"{pe}-s{seed}"
    tail = pe.rsplit(":", 1)[-1]
    slug = "".join(c if c.isalnum() or c == "_" else "-" for c in tail).strip("-").lower() or "pe"
    return f"user-{slug}-{hashlib.sha256(pe.encode()).hexdigest()[:8]}-s{seed}"


def run_key(fields):
    """SHA-256 of the key fields as canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def train_key_fields(model, train, source_sha256, pe_code=None, result_format=RESULT_FORMAT):
    """model, train: ModelConfig.to_dict() and TrainConfig.to_dict() (or a checkpoint's copies)."""
    return {"kind": "train", "format": result_format, "model": model, "train": train,
            "source_sha256": source_sha256, "pe_code": pe_code}


def checkpoint_key_fields(meta):
    """The training key a checkpoint's own metadata describes (None for what it does not record)."""
    return train_key_fields(meta.get("model_config"), meta.get("train_config"), meta.get("corpus_sha256"),
                            meta.get("pe_code"), meta.get("result_format", 1))


def _flatten(d, prefix=""):
    out = {}
    for k, v in (d or {}).items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and v and k not in ("pe_options", "pe_code"):
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out


def _short(v):
    if isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v):
        return v[:12] + "..."
    return json.dumps(v)


def key_differences(on_disk, asked):
    """['name: X on disk, Y asked (--flag)', ...] between two key field dicts (nested ones flattened)."""
    a, b = _flatten(on_disk), _flatten(asked)
    lines = []
    for k in sorted(set(a) | set(b)):
        if k == "train_key" or a.get(k) == b.get(k):
            continue
        flag = FLAGS.get(k) or FLAGS.get(k.split(".")[-1]) or ("--preset" if k.startswith("model.") else None)
        lines.append(f"{k}: {_short(a.get(k))} on disk, {_short(b.get(k))} asked" + (f" ({flag})" if flag else ""))
    if not lines and on_disk.get("train_key") != asked.get("train_key"):
        lines.append("the training it evaluates differs (see the training's differences)")
    return lines


def read_record(path, key, fields):
    """(record or None, why): the record at path when its key is `key`; None with the reason otherwise.

    A file that is not JSON, or not a record, is an InvalidFile naming it."""
    rec = read_json(path, "lab record")
    if not isinstance(rec, dict):
        raise InvalidFile(f"{path} is not a tinype lab record (a JSON object); delete it to recompute it")
    if rec.get("key") == key:
        return rec, None
    if "key" not in rec:
        return None, ["it has no run key (written by an older tinype)"]
    return None, key_differences(rec.get("key_fields") or {}, fields)


def write_csv(path, records):
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
    from ..tasks import get_task
    T = results["T_train"]
    seeds = results["config"]["seeds"]
    language_models = results["config"].get("language_models", True)
    if language_models:
        lines = [f"# tinype lab: {results['config']['preset']} preset, T_train = {T}, seeds {seeds}",
                 "", f"Corpus {results['corpus']} (sha256 {results['corpus_sha256'][:12]}...), validation split. "
                 f"Perplexity = exp(mean NLL in nats per byte); n/a: the encoding cannot run at that length.", ""]
    else:
        lines = [f"# tinype lab: the task protocol, task preset {results.get('task_preset')}, seeds {seeds}", "",
                 "No language models in this run (--tasks-only): the task protocol alone.", ""]
    for proto, label in results.get("protocols", PROTOCOLS).items() if language_models else ():
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
        depths = [d for d in get_task(task).depths if d is not None]
        what = get_task(task).unit
        lines += [f"## task {task}: exact-match accuracy (%), trained on sizes {lo}..{hi} ({what}), "
                  f"{recs[0]['examples']} test examples per cell"
                  + (f", averaged over {len(depths)} key depths" if depths else ""), "",
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
