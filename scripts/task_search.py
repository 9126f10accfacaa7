"""Reproducible measurements behind the task preset (issue #17).

    python scripts/task_search.py kerple  [--steps 1500] [--pe alibi,kerple_log,...]
        Why KERPLE learns no passkey: train passkey side by side and log, every --every steps, the
        loss on the answer bytes, the exact match on training sizes, KERPLE's effective r1/r2 per
        head, and the attention that each answer query pays to the key digit it must copy.
    python scripts/task_search.py search --task copy --pe nope,rope,alibi --N 10 --start --layers 4 --steps 3000
        Train one (task, encoding) model per encoding with the given budget, and print the exact
        match at the training sizes (and beyond) with the wall time: one line per model. An
        encoding may carry options: --pe randomized_rope/L_max=40/eval_positions=range

    python scripts/task_search.py passkey_errors runs/lab/tasks/passkey/nope-s0 [--n 200]
        Where a passkey model goes wrong: exact match by training size and key depth, the error rate
        of each answer digit (teacher-forced), and, for every wrong digit, whether it is the digit
        that follows another occurrence of the previous digit in the key (what a head that matches
        content, not position, would copy) and whether it is a neighbour of the right one in the key
        (what a head that reads the right place only roughly would copy), each against the same
        count for a random wrong digit.

    python scripts/task_search.py addition_digits runs/lab/tasks/addition/nope-s1 [--n 400] [--N 5]
        Where an addition model goes wrong: for each size 1..N, the exact match and the accuracy of
        every answer digit (teacher-forced, least significant first), split by whether a carry comes
        into the digit. A model that cannot find digit i of the operands is right about 1 time in 10
        there, carry or not; one that finds them but cannot carry is right without a carry and wrong
        with one.

    python scripts/task_search.py rank runs/a/tasks.csv runs/b/tasks.csv ...
        The lab's mean rank beyond the training range (summary.md) over the tasks of several runs
        together: each (task, size) ranks the encodings that ran it.

Run heavy invocations under the CPU lock:  flock /tmp/tinype-cpu.lock python scripts/task_search.py ...
Every number printed is measured in that run; nothing is read back from earlier runs.
"""
import argparse
import json
import math
import os
import sys
import time
from dataclasses import replace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tinype import ModelConfig, Transformer  # noqa: E402
from tinype.config import TrainConfig  # noqa: E402
from tinype.evaluate import evaluate_task_nll, task_accuracy  # noqa: E402
from tinype.optim import AdamW, clip_grad_norm, lr_at  # noqa: E402
from tinype.tasks import Passkey, TaskSet, encode_examples, get_task  # noqa: E402

KERPLE_INITS = ("ones", "authors")            # authors: r1 ~ U(0, 2), r2 ~ U(0, 1) (their get_parameter)
KERPLE_FLOOR = 0.01                           # tinype.positions.kerple.FLOOR, the authors' eps


def key_attention(model, examples):
    """Per layer: the mean over examples and key digits of the largest attention (over heads) that
    the query predicting key digit k pays to key digit k in the prompt. 1.0 = a perfect copy head."""
    x, _ = encode_examples(examples)
    maps = model.attention_maps(x)                     # (L, B, H, T, T)
    out = np.zeros(maps.shape[0])
    for b, (p, a) in enumerate(examples):
        q0 = len(p) - 1                                # the query that predicts the first answer byte
        k0 = p.index(Passkey.KEY) + len(Passkey.KEY)   # the first key digit in the prompt
        for k in range(len(a)):
            out += maps[:, b, :, q0 + k, k0 + k].max(axis=1)
    return (out / (len(examples) * len(examples[0][1]))).tolist()


def train_logged(task, pe, steps, every, model_cfg, train_cfg, init="ones", freeze_pe=False, log=print,
                 val_n=128, clamp=False):
    """The training loop of tinype.train (same batches, schedule, clipping, AdamW), with probes.

    clamp: KERPLE's parameters as the authors keep them (GPT-NeoX ParallelKerpleLog clamps the
    parameters' data at 0.01 after each step, and the forward uses them unclamped, so a parameter at
    the floor still gets its gradient and can rise again). tinype's forward uses max(r, 0.01) on the
    raw parameter, whose gradient is 0 below the floor: a parameter that steps below it never
    returns. Here: after each step, raw parameters below the floor are put just above it."""
    ts = TaskSet(task)
    mcfg = replace(model_cfg, pe=pe, pe_options=model_cfg.pe_options if model_cfg.pe == pe else {})
    T = mcfg.T_train
    model = Transformer(mcfg, seed=train_cfg.seed)
    if pe.startswith("kerple") and init == "authors":
        r = np.random.default_rng(train_cfg.seed + 99)
        model.params["pe.kerple_r1"][:] = r.random(mcfg.n_head) * 2
        model.params["pe.kerple_r2"][:] = r.random(mcfg.n_head)
    opt = AdamW(model.parameters(), lr=train_cfg.lr, betas=(train_cfg.beta1, train_cfg.beta2),
                eps=train_cfg.eps, weight_decay=train_cfg.weight_decay)
    vx, vy = ts.validation(T)
    vrng = np.random.default_rng(777)
    lo, hi = ts.task.train_sizes(T)
    val_ex = [ts.task.example(vrng, int(s)) for s in vrng.integers(lo, hi + 1, val_n)]
    t0, rows = time.time(), []
    for step in range(steps):
        rng = np.random.default_rng([train_cfg.seed, step])
        x, y = ts.batch(train_cfg.batch_size, T, rng)
        loss = model.loss(x, y, train=True, rng=rng)
        if not math.isfinite(loss):
            log(f"{pe}: diverged at step {step}")
            break
        grads = model.backward()
        if freeze_pe:
            for k in grads:
                if k.startswith("pe."):
                    grads[k][...] = 0
        clip_grad_norm(grads, train_cfg.grad_clip)
        opt.step(grads, lr_at(step, train_cfg.lr, steps, train_cfg.warmup, train_cfg.min_lr_ratio))
        if clamp:
            for k in ("pe.kerple_r1", "pe.kerple_r2"):
                np.maximum(model.params[k], KERPLE_FLOOR * (1 + 1e-3), out=model.params[k])
        if (step + 1) % every == 0 or step + 1 == steps:
            row = {"pe": pe, "init": init, "freeze": freeze_pe, "clamp": clamp, "step": step + 1,
                   "answer_nll": round(evaluate_task_nll(model, vx, vy)["nll"], 4),
                   "acc": task_accuracy(model, val_ex), "seconds": round(time.time() - t0, 1)}
            if task == "passkey":
                row["key_attention"] = [round(v, 3) for v in key_attention(model, val_ex[:32])]
            if pe.startswith("kerple"):
                r1, r2 = model.pe.effective(model._pe_params())
                row["r1"], row["r2"] = np.round(r1, 3).tolist(), np.round(r2, 3).tolist()
                row["raw_below_floor"] = int(sum((model.params[k] <= KERPLE_FLOOR).sum()
                                                 for k in ("pe.kerple_r1", "pe.kerple_r2")))
            rows.append(row)
            log(json.dumps(row))
    return model, rows


def cmd_kerple(args):
    model_cfg = ModelConfig(n_layer=args.layers, d_model=args.width, n_head=args.heads, T_train=args.T)
    train_cfg = TrainConfig(batch_size=args.batch, steps=args.steps, lr=args.lr,
                            warmup=min(50, args.steps // 10), seed=args.seed)
    for spec in args.pe.split(","):
        pe, _, mod = spec.partition("/")     # kerple_log/authors, kerple_log/frozen, kerple_log/init=0.1[+clamp]
        mod, clamp = (mod[:-len("+clamp")], True) if mod.endswith("+clamp") else (mod, False)
        mcfg = model_cfg
        if mod.startswith("init="):
            mcfg = replace(model_cfg, pe=pe, pe_options={"init": float(mod[5:])})
        train_logged(args.task, pe, args.steps, args.every, mcfg, train_cfg,
                     init="authors" if mod == "authors" else mod or "ones", freeze_pe=mod == "frozen", clamp=clamp)


def pe_spec(spec):
    """"randomized_rope/L_max=20/eval_positions=range" -> ("randomized_rope", {"L_max": 20, ...})."""
    pe, *opts = spec.split("/")
    options = {}
    for opt in opts:
        k, eq, v = opt.partition("=")
        if not k or not eq or not v:
            raise SystemExit(f"--pe {spec}: options are written name=value, got {opt!r}")
        options[k] = {"true": True, "false": False}.get(v.lower(), v)
        for cast in (float, int):                # "40" -> 40, "0.5" -> 0.5, "range" stays a string
            try:
                options[k] = cast(v)
            except ValueError:
                pass
    return pe, options


def cmd_search(args):
    """One model per encoding: the task with training sizes smallest..--N (default: what fits --T),
    a window as long as the longest training example, then exact match (greedy, a scratchpad
    written by the model) on --n fresh examples at sizes 1, N/2, N, 1.5N, 2N."""
    from tinype.lab.tasklab import graded_correct
    from tinype.train import train
    task = get_task(args.task, b"^" if args.start else None)
    if not 0 <= args.curriculum <= 1:
        raise SystemExit(f"--curriculum {args.curriculum}: a fraction of the steps, from 0 to 1")
    N = args.N if args.N is not None else task.largest(args.T)
    if N < task.smallest or (task.name == "passkey" and N > task.largest(args.T)):
        raise SystemExit(f"--N {N}: {task.name} sizes run from {task.smallest}"
                         + (f" to {task.largest(args.T)} in a window of {args.T}" if task.name == "passkey" else ""))
    T = task.length(N) - 1 if task.name != "passkey" else args.T
    model_cfg = ModelConfig(n_layer=args.layers, d_model=args.width, n_head=args.heads, T_train=T)
    for spec in args.pe.split(","):
        pe, options = pe_spec(spec)
        mcfg = replace(model_cfg, pe=pe, pe_options=options)
        tcfg = TrainConfig(batch_size=args.batch, steps=args.steps, lr=args.lr,
                           warmup=min(100, args.steps // 10), seed=args.seed, eval_every=0, ckpt_every=0)
        t0 = time.time()
        source = TaskSet(task, largest=N, curriculum=int(args.curriculum * args.steps))
        res = train(mcfg, tcfg, source, progress=False, log=lambda m: None)
        wall = time.time() - t0
        rng = np.random.default_rng(2024)
        acc = {}
        for s in sorted({task.smallest, max(task.smallest, N // 2), N, int(N * 1.5), 2 * N}):
            try:
                res.model.pe.check_length(task.length(s) - 1)
            except ValueError:
                continue
            examples = [task.example(rng, s) for _ in range(args.n)]
            acc[s] = round(float(graded_correct(res.model, task, examples).mean()), 3)
        print(json.dumps({"task": task.name, "start": args.start, "pe": spec, "steps": args.steps, "lr": args.lr,
                          "batch": args.batch, "model": f"{args.layers}x{args.width}h{args.heads}T{T}",
                          "train_sizes": [task.smallest, N], "seed": args.seed,
                          "final_loss": round(res.history[-1]["loss"], 4), "wall_s": round(wall, 1),
                          "acc": acc}), flush=True)


def induction_candidates(key, k):
    """The digits a content-matching copy head could give for answer digit k of key (bytes): the
    digit after each occurrence of the answer's previous digit key[k-1] in the key. Answer digit 0
    follows "key?", which matches only "key=": its one candidate is key[0]. More than one distinct
    candidate means the previous digit alone cannot tell where in the key the answer is. (An
    occurrence as the key's last digit is followed by ". ", never an answer digit: not counted.)"""
    if k == 0:
        return {key[0]}
    return {key[j + 1] for j in range(len(key) - 1) if key[j] == key[k - 1]}


def cmd_passkey_errors(args):
    if args.n < 1:
        raise SystemExit(f"--n {args.n}: at least one example per (size, depth)")
    from tinype.checkpoint import CKPT_NAME, load_model
    path = os.path.join(args.checkpoint, CKPT_NAME) if os.path.isdir(args.checkpoint) else args.checkpoint
    model, _ = load_model(path)
    start = args.start.encode() if args.start else None
    task = get_task("passkey", start)
    T = model.config.T_train
    lo, hi = task.train_sizes(T)
    sizes = sorted({lo, (lo + hi) // 2, hi})
    rng = np.random.default_rng(args.seed)
    n_digits = Passkey.DIGITS
    by_size, by_depth = {}, {}
    digit_wrong = np.zeros(n_digits)
    by_ambiguity = {"with": [0, 0], "without": [0, 0]}   # keys with/without an ambiguous digit: [examples, right]
    wrong_is_candidate, random_is_candidate, wrong_total = 0, 0, 0
    # wrong digit == key[k + o]: [wrong digits where key[k + o] exists, the model's matches, the
    # matches expected of a wrong digit drawn uniformly from the 9 others: 1/9 when key[k + o] != key[k]]
    offsets = {o: [0, 0, 0.0] for o in (-2, -1, 1, 2)}
    total = 0
    for size in sizes:
        for depth in task.depths:
            ex = [task.example(rng, size, depth) for _ in range(args.n)]
            x, _ = encode_examples(ex)             # one size: every example has the same length
            pred = model.forward(x).argmax(axis=-1)
            right = 0
            for b, (p, a) in enumerate(ex):
                lp = len(p)
                got = bytes(pred[b, lp - 1:lp - 1 + len(a)].astype(np.uint8))
                amb = any(len(induction_candidates(a, k)) > 1 for k in range(n_digits))
                cell = by_ambiguity["with" if amb else "without"]
                cell[0] += 1
                cell[1] += int(got == a)                # exact match: greedy == teacher-forced here
                right += int(got == a)
                for k in range(n_digits):
                    if got[k] != a[k]:
                        digit_wrong[k] += 1
                        wrong_total += 1
                        cands = induction_candidates(a, k)
                        wrong_is_candidate += int(got[k] in cands)
                        random_is_candidate += len(cands - {a[k]}) / 9
                        for o, cnt in offsets.items():
                            if 0 <= k + o < n_digits:
                                cnt[0] += 1
                                cnt[1] += int(a[k + o] == got[k])
                                cnt[2] += (a[k + o] != a[k]) / 9
                total += 1
            by_size.setdefault(size, []).append(right / len(ex))
            by_depth.setdefault(depth, []).append(right / len(ex))
    print(f"{args.checkpoint}: pe {model.config.pe}, T_train {T}, {args.n} examples per (size, depth)")
    print("exact match by size:  " + "  ".join(f"{s}: {100 * np.mean(v):.1f}%" for s, v in by_size.items()))
    print("exact match by depth: " + "  ".join(f"{d}: {100 * np.mean(v):.1f}%" for d, v in by_depth.items()))
    print("wrong answer digits (teacher-forced), by position: "
          + "  ".join(f"{k}: {100 * w / total:.1f}%" for k, w in enumerate(digit_wrong)))
    for name, (n, right) in by_ambiguity.items():
        print(f"keys {name} a digit whose previous digit has two continuations in the key: {n} examples "
              f"({100 * n / total:.1f}%), "
              f"exact match {100 * right / max(n, 1):.1f}%")
    print(f"wrong digits that are another continuation of the previous digit in the key: "
          f"{wrong_is_candidate} of {wrong_total} ({100 * wrong_is_candidate / max(wrong_total, 1):.1f}%; "
          f"a random wrong digit: {100 * random_is_candidate / max(wrong_total, 1):.1f}%)")
    print("wrong digits equal to the key digit o places away, among those where it exists (model / a random "
          "wrong digit; one digit can equal several): "
          + "  ".join(f"o={o:+d}: {100 * m / max(n, 1):.1f}% / {100 * r / max(n, 1):.1f}% of {n}"
                      for o, (n, m, r) in offsets.items()))


def carry_ins(prompt):
    """The carry into each answer digit of an addition prompt ("^1284+7930=": operands least
    significant digit first, an optional start byte): [c_0, ..., c_n], c_0 = 0; c_n is the top digit."""
    body = prompt.rstrip(b"=").lstrip(b"^")
    a, b = (list(map(int, part.decode())) for part in body.split(b"+"))
    carries, c = [0], 0
    for x, y in zip(a, b):
        c = int(x + y + c >= 10)
        carries.append(c)
    return carries


def addition_digit_table(model, task, sizes, n, rng):
    """{size: (exact match, per-digit accuracy, per-digit accuracy with no carry in / with one,
    per-digit count of carries in)}, teacher-forced on n examples per size."""
    table = {}
    for size in sizes:
        ex = [task.example(rng, size) for _ in range(n)]
        lp, la = len(ex[0][0]), len(ex[0][1])
        x, y = encode_examples(ex)                 # one size: every example has the same length
        pred = model.forward(x).argmax(axis=-1)[:, lp - 1:lp - 1 + la]
        right = pred == y[:, lp - 1:lp - 1 + la]
        carry = np.array([carry_ins(p) for p, _ in ex], dtype=bool)
        with_c = [right[carry[:, i], i].mean() if carry[:, i].any() else float("nan") for i in range(la)]
        without_c = [right[~carry[:, i], i].mean() if (~carry[:, i]).any() else float("nan") for i in range(la)]
        table[size] = (right.all(axis=1).mean(), right.mean(axis=0), np.array(without_c), np.array(with_c),
                       carry.sum(axis=0))
    return table


def cmd_addition_digits(args):
    if args.n < 1 or args.N < 1:
        raise SystemExit(f"--n {args.n} --N {args.N}: both must be at least 1")
    from tinype.checkpoint import CKPT_NAME, load_model
    path = os.path.join(args.checkpoint, CKPT_NAME) if os.path.isdir(args.checkpoint) else args.checkpoint
    model, _ = load_model(path)
    task = get_task("addition", args.start.encode() if args.start else None)
    rng = np.random.default_rng(args.seed)
    pct = lambda v: " ".join("  - " if np.isnan(a) else f"{100 * a:3.0f} " for a in v)   # noqa: E731
    print(f"{args.checkpoint}: pe {model.config.pe}, {args.n} examples per size; answer digits least "
          f"significant first, teacher-forced accuracy (%)")
    for size, (exact, acc, no_c, with_c, n_c) in addition_digit_table(
            model, task, range(1, args.N + 1), args.n, rng).items():
        print(f"size {size}: exact match {100 * exact:.1f}%")
        print(f"  every digit      {pct(acc)}")
        print(f"  no carry in      {pct(no_c)}")
        print(f"  a carry in       {pct(with_c)}   (carries in: {' '.join(map(str, n_c))})")


def cmd_rank(args):
    """Mean rank over the tasks of several tasks.csv files (a (task, pe, seed, size) in two files: refused)."""
    import csv

    from tinype.lab.tasklab import ranks_of_cells
    cells, ranges, seen = {}, {}, set()
    for path in args.csv:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                key = (row["task"], row["pe"], row["seed"], int(row["size"]))
                if key in seen:
                    raise SystemExit(f"{path}: {key} is in another of the files too")
                seen.add(key)
                acc = float(row["accuracy"]) if row["accuracy"] else None
                cells.setdefault((row["task"], row["pe"]), {}).setdefault(int(row["size"]), []).append(acc)
                if row["in_range"] == "1":
                    lo, hi = ranges.get(row["task"], (int(row["size"]), int(row["size"])))
                    ranges[row["task"]] = (min(lo, int(row["size"])), max(hi, int(row["size"])))
    ranks = ranks_of_cells(cells, ranges)
    print(f"mean rank beyond the training range over {', '.join(sorted(ranges))} (1 = best):")
    for pe, r in sorted(ranks.items(), key=lambda kv: kv[1]):
        print(f"  {pe:<18} {r:.2f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("kerple", "search"):
        p = sub.add_parser(name)
        p.add_argument("--task", default="passkey")
        p.add_argument("--pe", default="alibi,kerple_log")
        p.add_argument("--steps", type=int, default=1500)
        p.add_argument("--every", type=int, default=250)
        p.add_argument("--lr", type=float, default=3e-3)
        p.add_argument("--batch", type=int, default=32)
        p.add_argument("--layers", type=int, default=2)
        p.add_argument("--width", type=int, default=64)
        p.add_argument("--heads", type=int, default=4)
        p.add_argument("--T", type=int, default=64)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--n", type=int, default=200, help="test examples per size (search)")
        p.add_argument("--N", type=int, default=None, help="largest training size (search; default: what fits --T)")
        p.add_argument("--start", action="store_true", help="begin every prompt with the start byte ^ (search)")
        p.add_argument("--curriculum", type=float, default=0.0,
                       help="fraction of the steps over which the largest training size grows to N (search)")
    p = sub.add_parser("passkey_errors")
    p.add_argument("checkpoint", help="a passkey checkpoint or its folder (the lab's tasks/passkey/<pe>-s<seed>)")
    p.add_argument("--n", type=int, default=200, help="examples per (size, depth)")
    p.add_argument("--start", default="^", help="the prompts' start byte ('' for none; the preset paper's is ^)")
    p.add_argument("--seed", type=int, default=31)
    p = sub.add_parser("addition_digits")
    p.add_argument("checkpoint", help="an addition checkpoint or its folder (the lab's tasks/addition/<pe>-s<seed>)")
    p.add_argument("--n", type=int, default=400, help="examples per size")
    p.add_argument("--N", type=int, default=5, help="sizes 1..N (digits per operand)")
    p.add_argument("--start", default="^", help="the prompts' start byte ('' for none; the preset paper's is ^)")
    p.add_argument("--seed", type=int, default=31)
    p = sub.add_parser("rank")
    p.add_argument("csv", nargs="+", help="tasks.csv files of lab runs")
    args = ap.parse_args(argv)
    {"kerple": cmd_kerple, "search": cmd_search, "passkey_errors": cmd_passkey_errors,
     "addition_digits": cmd_addition_digits, "rank": cmd_rank}[args.cmd](args)


if __name__ == "__main__":
    main()
