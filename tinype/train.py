"""The training loop: AdamW, clipping, warmup + cosine, validation, checkpoints, resume.

Every step draws its batch from its own generator, np.random.default_rng([seed, step]), so a run
resumed from the checkpoint of step S sees exactly the batches an uninterrupted run would, and
ends at the same weights.

Run folder (out):  ckpt.npz (params, optimizer state, step, history), config.json, metrics.json.

Fine-tuning (init_from=a run folder or a ckpt.npz): the model starts from that checkpoint's weights
with a fresh AdamW state and a fresh warmup + cosine schedule over train_cfg.steps, and may train
at another window (context=) with another encoding scaling (model_cfg.pe / pe_options, e.g. rope ->
rope_yarn with factor=4), provided no weight changes shape. model_cfg.T_train stays the length the
source was trained at: it is what the scalings extend from (YaRN's original_max_position_embeddings)
and a learned table's size. The run records its origin (path, sha256 of the file, step, encoding)
in its checkpoint, config.json and metrics.json under "finetune". snapshots=(0, 25, ...) keeps the
weights at those step counts in out/snapshots/step-000025.npz (0: before the first step).

Restarts (TrainConfig.restarts, restart_step, restart_loss): some small models on some tasks settle
on a plateau early and never leave it, and which ones do depends on the initialisation (the README's
"Synthetic tasks": plain addition). With restarts = R, a start whose mean training loss over its last
min(100, restart_step) steps is above restart_loss at step restart_step is dropped, and training
begins again at step 0 from a new initialisation and new batches (start k uses the seed
start_seed(seed, k); start 0 the seed itself, so a run that never restarts is the run without
restarts), at most R times; the last start trains to the end whatever its loss. The decision reads
the training loss only, never a test. The checkpoint and metrics.json record how many starts it took
and what each dropped start reached.

Data parallelism (TrainConfig.shards, the presets' 2): each step's batch is cut into shards whose
losses and gradients are computed on their own threads, one core each, and added, weighted by
their counted targets (tinype.parallel says why and how). The result depends on the number of
shards, not on the number of threads.
"""
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from .checkpoint import (  # noqa: F401 (re-exported)
    CKPT_NAME,
    CheckpointError,
    load_checkpoint,
    load_model,
    remove_orphan_temporaries,
    save_checkpoint,
    write_json,
)
from .config import RESULT_FORMAT, ModelConfig, TrainConfig, check_memory, pe_identity
from .data import Corpus
from .errors import FolderInUse, InvalidValue, MissingFile, ensure_writable_folder
from .evaluate import evaluate_lm, evaluate_task_nll
from .model import Transformer
from .optim import AdamW, clip_grad_norm, lr_at
from .parallel import ShardedStep


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainResult:
    model: Transformer
    history: list = field(default_factory=list)  # [{"step", "loss", "lr", "grad_norm", ("val_nll")}]
    val: dict = None                               # evaluate_lm on the whole validation split at T_train
    tokens_per_sec: float = 0.0
    out: str = None
    resumed_from: int = 0
    finetune: dict = None                          # where a fine-tune started from (None: from scratch)
    starts: int = 1                                # how many starts it took (TrainConfig.restarts)


def start_seed(seed, start):
    """The seed of start `start` of a training with restarts: the training's seed for start 0, then
    a seed drawn from (seed, start), so every start of every seed has its own initialisation."""
    if start == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(start)]).generate_state(1, np.uint64)[0] >> 1)


def _stuck(train_cfg, start, done, history):
    """The mean training loss over the last steps when this start is to be dropped at step `done`
    (see the module's "Restarts"), else None."""
    if start >= train_cfg.restarts or done != train_cfg.restart_step:
        return None
    window = history[-min(100, train_cfg.restart_step):]
    loss = float(np.mean([r["loss"] for r in window]))
    return loss if loss > train_cfg.restart_loss else None


def _bar_label(model_cfg, finetune, starts):
    """The progress bar's label: "train rope", "fine-tune rope_yarn", "train nope (start 2)"."""
    again = f" (start {starts['start'] + 1})" if starts and starts["start"] else ""
    return f"{'fine-tune' if finetune else 'train'} {model_cfg.pe}{again}"


def _save(path, model, opt, step, model_cfg, train_cfg, corpus, history, finetune=None, starts=None):
    arrays = {f"param/{k}": v for k, v in model.parameters().items()}
    meta = {"step": step, "model_config": model_cfg.to_dict(), "train_config": train_cfg.to_dict(),
            "corpus": corpus.name, "corpus_sha256": corpus.sha256, "result_format": RESULT_FORMAT,
            "pe_code": pe_identity(model_cfg.pe, model_cfg.pe_options)["pe_code"]}
    if finetune is not None:                 # plain runs keep exactly the metadata they always had
        meta["finetune"] = finetune
    if starts is not None:                   # with restarts: {"start": k, "dropped": [...]}
        meta["starts"] = starts
    if opt is None:                          # a snapshot: the weights only (load_model reads it)
        save_checkpoint(path, arrays, meta)
        return
    opt_arrays, opt_meta = opt.state_dict()
    arrays.update(opt_arrays)
    save_checkpoint(path, arrays, dict(meta, optimizer=opt_meta, history=history))


SNAPSHOTS = "snapshots"


def snapshot_path(out, step):
    """Where train(..., snapshots=[..., step, ...]) keeps the weights after `step` steps."""
    return os.path.join(out, SNAPSHOTS, f"step-{int(step):06d}.npz")


def file_sha256(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_checkpoint(path):
    """A run folder (its ckpt.npz) or a checkpoint file -> the checkpoint's path; MissingFile if none."""
    ckpt = os.path.join(path, CKPT_NAME) if os.path.isdir(path) else path
    if not os.path.isfile(ckpt):
        where = f"{path} holds no {CKPT_NAME}" if os.path.isdir(path) else f"no checkpoint at {path}"
        raise MissingFile(f"--init-from: {where} (give a run folder of `tinype train` or a ckpt.npz)")
    return ckpt


#: the fields of the model configuration that fix a weight's shape or its meaning, so a fine-tune
#: must keep them (T_train: a learned table's size, and the length every RoPE scaling extends from)
SHAPE_FIELDS = ("vocab_size", "n_layer", "d_model", "n_head", "T_train")


def finetune_source(init_from, model_cfg=None, context=None, trust_code=False, check=None):
    """(model, model_cfg, finetune record) for a fine-tune from init_from (a run folder or ckpt.npz).

    model_cfg: the configuration to fine-tune with (None: the source's); its encoding and options may
    differ from the source's, its shapes may not. context: the fine-tuning window (None: T_train).
    Every refusal is one line naming the field and both values. check(meta) runs before anything is
    built (the lab checks the source's run key there)."""
    from dataclasses import replace
    ckpt = resolve_checkpoint(init_from)
    source, meta = load_model(ckpt, trust_code=trust_code, check=check)
    src_cfg = source.config
    if model_cfg is None:
        model_cfg = src_cfg
    for name in SHAPE_FIELDS:
        was, now = getattr(src_cfg, name), getattr(model_cfg, name)
        if was != now:
            extra = " (T_train stays the length the source was trained at; set the fine-tuning window with " \
                    "context / --context)" if name == "T_train" else ""
            raise InvalidValue(f"--init-from {ckpt}: {name} would change from {was} (checkpoint) to {now}: "
                               f"that changes the weights' shapes or meaning{extra}")
    if ":" in str(model_cfg.pe) and not trust_code:
        raise InvalidValue(f"--init-from: the encoding {model_cfg.pe!r} is defined outside tinype; pass "
                           f"trust_code=True (--trust-code) to import it")
    model = Transformer(model_cfg, seed=0)
    src_params = source.parameters()
    new_pe = {k: v.shape for k, v in model.parameters().items() if k.startswith("pe.")}
    old_pe = {k: v.shape for k, v in src_params.items() if k.startswith("pe.")}
    if new_pe != old_pe:
        def shapes(d):
            return ", ".join(f"{k} {tuple(v)}" for k, v in sorted(d.items())) or "none"
        raise InvalidValue(f"--init-from {ckpt}: pe would change from {src_cfg.pe!r} (parameters: {shapes(old_pe)}) "
                           f"to {model_cfg.pe!r} (parameters: {shapes(new_pe)}): a fine-tune keeps the "
                           f"encoding's parameters")
    context = model_cfg.T_train if context is None else int(context)
    if context < 1:
        raise InvalidValue(f"context must be a positive whole number, got {context}")
    try:
        model.pe.check_length(context)
    except ValueError as err:
        raise InvalidValue(f"--init-from {ckpt}: context would change from {src_cfg.T_train} to {context}, "
                           f"which {model_cfg.pe} cannot run at: {err}") from None
    model.load_parameters({k: v for k, v in src_params.items()})
    record = {"init_from": {"path": os.path.abspath(ckpt), "sha256": file_sha256(ckpt),
                            "step": meta.get("step"), "pe": src_cfg.pe, "pe_options": dict(src_cfg.pe_options)},
              "context": context}
    return model, replace(model_cfg), record


def _same_origin(a, b):
    """Two finetune records name the same start (the path may differ: a folder can be moved)."""
    def core(r):
        if not isinstance(r, dict):
            return r
        src = dict(r.get("init_from") or {})
        src.pop("path", None)
        return {"init_from": src, "context": r.get("context")}
    return core(a) == core(b)


RESUME_KEYS = ("step", "model_config", "train_config", "corpus_sha256", "optimizer", "history")


def source_window_check(source, T):
    """source.check_window(T) as a user error: the text is too short for the context asked for."""
    try:
        source.check_window(T)
    except InvalidValue:
        raise
    except ValueError as err:
        raise InvalidValue(str(err)) from None


# TrainConfig fields that to_dict leaves out at these values: a checkpoint without them had them so
OMITTED = {"shards": 1, "restarts": 0, "restart_step": 0, "restart_loss": 0.0}


def _config_differences(saved, current, omitted=None):
    omitted = omitted or {}
    saved = {**{k: v for k, v in omitted.items() if k not in saved}, **saved}
    current = {**{k: v for k, v in omitted.items() if k not in current}, **current}
    return [f"{k}: checkpoint {saved.get(k)!r}, now {current.get(k)!r}"
            for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]


def train(model_cfg=None, train_cfg=None, corpus=None, out=None, resume=False, progress=True,
          log=print, init_from=None, context=None, snapshots=(), trust_code=False, init_check=None):
    """Train a language model; returns a TrainResult.

    corpus: a data.Corpus (next-byte prediction on its train split), or a tasks.TaskSet (its
    answers only); anything with name, sha256, check_window(T), batch(B, T, rng, step=None).

    out: run folder for checkpoints and metrics (None: keep nothing on disk).
    resume: continue from out/ckpt.npz; the configuration and corpus must match. With init_from it
    resumes the fine-tune in out (which must have started from the same checkpoint file).
    init_from: fine-tune from this run folder or ckpt.npz (see the module's docstring): model_cfg
    None takes the source's; context is the training window (None: T_train); trust_code as in
    load_model, for the source; init_check(meta) may refuse the source before it is built.
    snapshots: step counts at which to keep the weights (out/snapshots/step-NNNNNN.npz; needs out).
    Restarts from a plateau: train_cfg.restarts (see the module's docstring).
    """
    train_cfg = train_cfg or TrainConfig()
    corpus = corpus or Corpus.default()
    finetune = None
    snapshots = sorted({int(s) for s in snapshots})
    if snapshots and (out is None or snapshots[0] < 0 or snapshots[-1] > train_cfg.steps):
        raise InvalidValue(f"snapshots must be step counts in 0..{train_cfg.steps} and need an out folder, "
                           f"got {snapshots}")
    if train_cfg.restarts and (init_from is not None or snapshots):
        raise InvalidValue("restarts begin again from a new initialisation: they are for a training from scratch "
                           "without snapshots (set TrainConfig.restarts = 0 to fine-tune or keep snapshots)")
    if init_from is not None:
        model, model_cfg, finetune = finetune_source(init_from, model_cfg, context, trust_code, init_check)
        T = finetune["context"]
    else:
        if context is not None:
            raise InvalidValue("context (a training window other than T_train) is for fine-tuning: pass init_from "
                               "too, or set ModelConfig.T_train")
        model_cfg = model_cfg or ModelConfig()
        T = model_cfg.T_train
    source_window_check(corpus, T)
    check_memory(model_cfg if T == model_cfg.T_train else _at_window(model_cfg, T), train_cfg)
    if out is not None:
        ensure_writable_folder(out)
        for path in remove_orphan_temporaries(out):
            log(f"removed {path}, left by a write that was killed")
        if snapshots:
            os.makedirs(os.path.join(out, SNAPSHOTS), exist_ok=True)
            for path in remove_orphan_temporaries(os.path.join(out, SNAPSHOTS)):
                log(f"removed {path}, left by a write that was killed")
    if finetune is None:
        model = Transformer(model_cfg, seed=train_cfg.seed)

    def new_optimizer(model):
        return AdamW(model.parameters(), lr=train_cfg.lr, betas=(train_cfg.beta1, train_cfg.beta2),
                     eps=train_cfg.eps, weight_decay=train_cfg.weight_decay)

    opt = new_optimizer(model)
    history, start = [], 0
    starts = {"start": 0, "dropped": []} if train_cfg.restarts else None
    ckpt = os.path.join(out, CKPT_NAME) if out else None

    if ckpt and os.path.exists(ckpt):
        if not resume:
            raise FolderInUse(f"{out} already holds a run ({ckpt}); pass --resume to continue it, "
                              f"or choose another --out")
        arrays, meta = load_checkpoint(ckpt)
        missing = [k for k in RESUME_KEYS if k not in meta]
        if missing or not isinstance(meta.get("model_config"), dict) or not isinstance(meta.get("train_config"), dict):
            lacks = ", ".join(missing) or "a valid configuration"
            raise CheckpointError(f"{ckpt} cannot be resumed: its metadata lacks {lacks}")
        diffs = _config_differences(meta["model_config"], model_cfg.to_dict()) + \
            _config_differences(meta["train_config"], train_cfg.to_dict(), OMITTED)
        if meta.get("corpus_sha256") != corpus.sha256:
            diffs.append(f"corpus: checkpoint {meta.get('corpus')!r}, now {corpus.name!r} (contents differ)")
        if meta.get("result_format", 1) != RESULT_FORMAT:
            diffs.append(f"result format: checkpoint {meta.get('result_format', 1)}, now {RESULT_FORMAT}")
        if not _same_origin(meta.get("finetune"), finetune):
            def origin(r):
                if not r:
                    return "a training from scratch"
                src = r.get("init_from") or {}
                return (f"a fine-tune of {src.get('path')} (sha256 {str(src.get('sha256'))[:12]}..., "
                        f"step {src.get('step')}) at context {r.get('context')}")
            diffs.append(f"start: checkpoint {origin(meta.get('finetune'))}, now {origin(finetune)}")
        if diffs:
            hint = ""
            if any(d.startswith("shards:") for d in diffs):
                hint = ("\n(runs of a preset made before the presets took 2 shards have shards = 1: resume "
                        "them with tinype train --shards 1, or TrainConfig(shards=1))")
            raise CheckpointError(f"{ckpt} was made with another configuration:\n  " + "\n  ".join(diffs) + hint)
        try:
            model.load_parameters({k[6:]: v for k, v in arrays.items() if k.startswith("param/")})
            opt.load_state_dict(arrays, meta["optimizer"])
        except (ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{ckpt} does not fit its own configuration: {err}") from None
        start, history = int(meta["step"]), list(meta["history"])
        if starts is not None:
            saved = meta.get("starts")
            if not (isinstance(saved, dict) and isinstance(saved.get("start"), int)
                    and 0 <= saved["start"] <= train_cfg.restarts and isinstance(saved.get("dropped"), list)):
                raise CheckpointError(f"{ckpt} cannot be resumed: its metadata does not say which start it is")
            starts = {"start": saved["start"], "dropped": list(saved["dropped"])}
        log(f"resuming {out} from step {start}/{train_cfg.steps}")
    elif resume and out:
        log(f"no checkpoint in {out} yet: starting from step 0")

    if out:
        config = {"model": model_cfg.to_dict(), "train": train_cfg.to_dict(), "corpus": corpus.name,
                  "corpus_sha256": corpus.sha256}
        if finetune is not None:
            config["finetune"] = finetune
        write_json(os.path.join(out, "config.json"), config)
        if start == 0 and 0 in snapshots:
            _save(snapshot_path(out, 0), model, None, 0, model_cfg, train_cfg, corpus, [], finetune)

    sharded = ShardedStep(model, train_cfg.shards)         # loss and gradients (tinype.parallel)
    bar = None
    if progress and start < train_cfg.steps:
        from tqdm.auto import tqdm
        bar = tqdm(total=train_cfg.steps, initial=start, desc=_bar_label(model_cfg, finetune, starts), unit="step",
                   dynamic_ncols=True)
    tokens_per_step = train_cfg.batch_size * T
    t0, steps_done, tok_s = time.perf_counter(), 0, 0.0
    val_last = None
    seed = start_seed(train_cfg.seed, starts["start"]) if starts else train_cfg.seed
    step, resumed_from = start, start
    try:
        while step < train_cfg.steps:
            rng = np.random.default_rng([seed, step])
            x, y = corpus.batch(train_cfg.batch_size, T, rng, step=step)
            loss, grads = sharded(x, y, train=True, rng=rng)
            if not math.isfinite(loss):
                last = f"the last good checkpoint is {ckpt}" if ckpt and os.path.exists(ckpt) else \
                    "no checkpoint was written"
                raise TrainingDiverged(
                    f"loss became {loss} at step {step}; {last}. Try a lower learning rate "
                    f"(now {train_cfg.lr:g}, e.g. --lr {train_cfg.lr / 2:g}).")
            norm = clip_grad_norm(grads, train_cfg.grad_clip)
            lr = lr_at(step, train_cfg.lr, train_cfg.steps, train_cfg.warmup, train_cfg.min_lr_ratio)
            opt.step(grads, lr)
            steps_done += 1
            record = {"step": step + 1, "loss": loss, "lr": lr, "grad_norm": norm}
            done = step = step + 1
            history.append(record)
            stuck = _stuck(train_cfg, starts["start"], done, history) if starts else None
            if stuck is not None:            # drop this start and begin again (module docstring, "Restarts")
                k = starts["start"]
                starts["dropped"].append({"start": k, "seed": seed, "step": done, "mean_loss": stuck})
                starts["start"] = k + 1
                seed = start_seed(train_cfg.seed, k + 1)
                model = Transformer(model_cfg, seed=seed)
                sharded.close()
                sharded = ShardedStep(model, train_cfg.shards)
                opt, history, step, val_last, resumed_from = new_optimizer(model), [], 0, None, 0
                if ckpt:                     # the new start at step 0: a resume never replays the dropped one
                    _save(ckpt, model, opt, 0, model_cfg, train_cfg, corpus, history, finetune, starts)
                if bar is not None:
                    bar.clear()
                log(f"start {k + 1} of at most {train_cfg.restarts + 1}: mean training loss {stuck:.3f} over steps "
                    f"{done - min(100, done) + 1}-{done}, above {train_cfg.restart_loss:g}: stuck on a plateau; "
                    f"beginning again from a new initialisation")
                if bar is not None:
                    bar.reset(total=train_cfg.steps)
                    bar.set_description(_bar_label(model_cfg, finetune, starts))
                continue
            if train_cfg.eval_every and done % train_cfg.eval_every == 0 and done < train_cfg.steps:
                val_last = _validate(model, corpus, T, train_cfg.eval_windows)["nll"]
                record["val_nll"] = val_last
            if done in snapshots:
                _save(snapshot_path(out, done), model, None, done, model_cfg, train_cfg, corpus, [], finetune)
            if ckpt and train_cfg.ckpt_every and done % train_cfg.ckpt_every == 0:
                _save(ckpt, model, opt, done, model_cfg, train_cfg, corpus, history, finetune, starts)
            if bar is not None:
                tok_s = steps_done * tokens_per_step / (time.perf_counter() - t0)
                post = {"loss": f"{loss:.3f}", "tok/s": f"{tok_s:,.0f}"}
                if val_last is not None:
                    post["val"] = f"{val_last:.3f}"
                bar.set_postfix(post, refresh=False)
                bar.update(1)
    finally:
        sharded.close()
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - t0
    tok_s = steps_done * tokens_per_step / elapsed if steps_done else 0.0
    if ckpt and (steps_done or not os.path.exists(ckpt)):
        _save(ckpt, model, opt, train_cfg.steps, model_cfg, train_cfg, corpus, history, finetune, starts)
    val = _validate(model, corpus, T)
    result = TrainResult(model, history, val, tok_s, out, resumed_from, finetune, starts["start"] + 1 if starts else 1)
    if out:
        write_json(os.path.join(out, "metrics.json"), {
            "val_nll": val["nll"], "val_ppl": val["ppl"], "val_windows": val["windows"],
            "T": T, "tokens_per_sec": tok_s, "steps": train_cfg.steps,
            "final_train_loss": history[-1]["loss"] if history else None,
            "parameters": model.num_parameters(), "backend": _backend(),
            **({"finetune": finetune} if finetune is not None else {}),
            **({"starts": starts["start"] + 1, "dropped_starts": starts["dropped"]} if starts else {})})
    return result


def _at_window(model_cfg, T):
    """model_cfg with T_train = T, for the memory estimate of a fine-tune at a longer window (a
    learned table's size is then overestimated, which only makes the estimate safer)."""
    from dataclasses import replace
    try:
        return replace(model_cfg, T_train=T)
    except InvalidValue:
        return model_cfg


def _validate(model, source, T, max_windows=None):
    """Validation NLL: of the corpus's validation split, or of a task's answers on its fixed set."""
    if isinstance(source, Corpus):
        return evaluate_lm(model, source.val, T, max_windows=max_windows)
    x, y = source.validation(T)
    return evaluate_task_nll(model, x, y)


def _backend():
    from . import kernels
    return kernels.BACKEND
