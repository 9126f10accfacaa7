"""The training loop: AdamW, clipping, warmup + cosine, validation, checkpoints, resume.

Every step draws its batch from its own generator, np.random.default_rng([seed, step]), so a run
resumed from the checkpoint of step S sees exactly the batches an uninterrupted run would, and
ends at the same weights.

Run folder (out):  ckpt.npz (params, optimizer state, step, history), config.json, metrics.json.
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
from .errors import FolderInUse, InvalidValue, ensure_writable_folder
from .evaluate import evaluate_lm, evaluate_task_nll
from .model import Transformer
from .optim import AdamW, clip_grad_norm, lr_at


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


def _save(path, model, opt, step, model_cfg, train_cfg, corpus, history):
    arrays = {f"param/{k}": v for k, v in model.parameters().items()}
    opt_arrays, opt_meta = opt.state_dict()
    arrays.update(opt_arrays)
    save_checkpoint(path, arrays, {
        "step": step, "model_config": model_cfg.to_dict(), "train_config": train_cfg.to_dict(),
        "corpus": corpus.name, "corpus_sha256": corpus.sha256, "optimizer": opt_meta,
        "history": history, "result_format": RESULT_FORMAT,
        "pe_code": pe_identity(model_cfg.pe, model_cfg.pe_options)["pe_code"],
    })


RESUME_KEYS = ("step", "model_config", "train_config", "corpus_sha256", "optimizer", "history")


def source_window_check(source, T):
    """source.check_window(T) as a user error: the text is too short for the context asked for."""
    try:
        source.check_window(T)
    except InvalidValue:
        raise
    except ValueError as err:
        raise InvalidValue(str(err)) from None


def _config_differences(saved, current):
    return [f"{k}: checkpoint {saved.get(k)!r}, now {current.get(k)!r}"
            for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]


def train(model_cfg=None, train_cfg=None, corpus=None, out=None, resume=False, progress=True,
          log=print):
    """Train a language model; returns a TrainResult.

    corpus: a data.Corpus (next-byte prediction on its train split), or a tasks.TaskSet (its
    answers only); anything with name, sha256, check_window(T), batch(B, T, rng).

    out: run folder for checkpoints and metrics (None: keep nothing on disk).
    resume: continue from out/ckpt.npz; the configuration and corpus must match.
    """
    model_cfg = model_cfg or ModelConfig()
    train_cfg = train_cfg or TrainConfig()
    corpus = corpus or Corpus.default()
    T = model_cfg.T_train
    source_window_check(corpus, T)
    check_memory(model_cfg, train_cfg)                       # before anything large is allocated
    if out is not None:
        ensure_writable_folder(out)
        for path in remove_orphan_temporaries(out):
            log(f"removed {path}, left by a write that was killed")
    model = Transformer(model_cfg, seed=train_cfg.seed)
    opt = AdamW(model.parameters(), lr=train_cfg.lr, betas=(train_cfg.beta1, train_cfg.beta2),
                eps=train_cfg.eps, weight_decay=train_cfg.weight_decay)
    history, start = [], 0
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
            _config_differences(meta["train_config"], train_cfg.to_dict())
        if meta.get("corpus_sha256") != corpus.sha256:
            diffs.append(f"corpus: checkpoint {meta.get('corpus')!r}, now {corpus.name!r} (contents differ)")
        if meta.get("result_format", 1) != RESULT_FORMAT:
            diffs.append(f"result format: checkpoint {meta.get('result_format', 1)}, now {RESULT_FORMAT}")
        if diffs:
            raise CheckpointError(f"{ckpt} was made with another configuration:\n  " + "\n  ".join(diffs))
        try:
            model.load_parameters({k[6:]: v for k, v in arrays.items() if k.startswith("param/")})
            opt.load_state_dict(arrays, meta["optimizer"])
        except (ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{ckpt} does not fit its own configuration: {err}") from None
        start, history = int(meta["step"]), list(meta["history"])
        log(f"resuming {out} from step {start}/{train_cfg.steps}")
    elif resume and out:
        log(f"no checkpoint in {out} yet: starting from step 0")

    if out:
        write_json(os.path.join(out, "config.json"),
                   {"model": model_cfg.to_dict(), "train": train_cfg.to_dict(), "corpus": corpus.name,
                    "corpus_sha256": corpus.sha256})

    bar = None
    if progress and start < train_cfg.steps:
        from tqdm.auto import tqdm
        bar = tqdm(total=train_cfg.steps, initial=start, desc=f"train {model_cfg.pe}", unit="step",
                   dynamic_ncols=True)
    tokens_per_step = train_cfg.batch_size * T
    t0, steps_done, tok_s = time.perf_counter(), 0, 0.0
    val_last = None
    try:
        for step in range(start, train_cfg.steps):
            rng = np.random.default_rng([train_cfg.seed, step])
            x, y = corpus.batch(train_cfg.batch_size, T, rng)
            loss = model.loss(x, y, train=True, rng=rng)
            if not math.isfinite(loss):
                last = f"the last good checkpoint is {ckpt}" if ckpt and os.path.exists(ckpt) else \
                    "no checkpoint was written"
                raise TrainingDiverged(
                    f"loss became {loss} at step {step}; {last}. Try a lower learning rate "
                    f"(now {train_cfg.lr:g}, e.g. --lr {train_cfg.lr / 2:g}).")
            grads = model.backward()
            norm = clip_grad_norm(grads, train_cfg.grad_clip)
            lr = lr_at(step, train_cfg.lr, train_cfg.steps, train_cfg.warmup, train_cfg.min_lr_ratio)
            opt.step(grads, lr)
            steps_done += 1
            record = {"step": step + 1, "loss": loss, "lr": lr, "grad_norm": norm}
            done = step + 1
            if train_cfg.eval_every and done % train_cfg.eval_every == 0 and done < train_cfg.steps:
                val_last = _validate(model, corpus, T, train_cfg.eval_windows)["nll"]
                record["val_nll"] = val_last
            history.append(record)
            if ckpt and train_cfg.ckpt_every and done % train_cfg.ckpt_every == 0:
                _save(ckpt, model, opt, done, model_cfg, train_cfg, corpus, history)
            if bar is not None:
                tok_s = steps_done * tokens_per_step / (time.perf_counter() - t0)
                post = {"loss": f"{loss:.3f}", "tok/s": f"{tok_s:,.0f}"}
                if val_last is not None:
                    post["val"] = f"{val_last:.3f}"
                bar.set_postfix(post, refresh=False)
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - t0
    tok_s = steps_done * tokens_per_step / elapsed if steps_done else 0.0
    if ckpt and (steps_done or not os.path.exists(ckpt)):
        _save(ckpt, model, opt, train_cfg.steps, model_cfg, train_cfg, corpus, history)
    val = _validate(model, corpus, T)
    result = TrainResult(model, history, val, tok_s, out, start)
    if out:
        write_json(os.path.join(out, "metrics.json"), {
            "val_nll": val["nll"], "val_ppl": val["ppl"], "val_windows": val["windows"],
            "T": T, "tokens_per_sec": tok_s, "steps": train_cfg.steps,
            "final_train_loss": history[-1]["loss"] if history else None,
            "parameters": model.num_parameters(), "backend": _backend()})
    return result


def _validate(model, source, T, max_windows=None):
    """Validation NLL: of the corpus's validation split, or of a task's answers on its fixed set."""
    if isinstance(source, Corpus):
        return evaluate_lm(model, source.val, T, max_windows=max_windows)
    x, y = source.validation(T)
    return evaluate_task_nll(model, x, y)


def _backend():
    from . import kernels
    return kernels.BACKEND
