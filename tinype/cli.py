"""The `tinype` command.

    tinype train [--preset quick] [--pe learned] [--out runs/quick-learned] [--resume] [--text FILE]
    tinype train --init-from runs/quick-rope --pe rope_yarn --pe-option factor=4 --context 256 --steps 200
    tinype generate --checkpoint runs/quick-learned/ckpt.npz --prompt "def " [--temperature 0.8]
    tinype lab [--preset quick] [--pe nope,rope,rope_yarn,alibi | all] [--seeds 0,1,2] [--out runs/lab]
               [--tasks passkey,copy,reverse,addition] [--jobs 2 | --dask tcp://host:8786] [--stride 32]
    tinype info
"""
import argparse
import math
import os
import signal
import sys
import time

from . import kernels, positions
from .config import PRESETS, preset
from .errors import InvalidValue, UserError


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run stops between two steps and its last checkpoint stays."""


def _whole_number(text):
    """int(text), also accepting exact scientific notation ("1e6"); None when it is not a whole number."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if math.isfinite(value) and value.is_integer() else None


def _int_at_least(minimum):
    def parse(text):
        value = _whole_number(text)
        if value is None:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
        return value
    return parse


def _finite_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


_positive_int = _int_at_least(1)
_nonneg_int = _int_at_least(0)


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _pe_name(text):
    name = "+".join(p.strip() if ":" in p else p.strip().lower() for p in text.split("+"))
    try:
        positions.get(name)                      # a registry name, a combination or a user's module path
    except (ValueError, TypeError, ImportError, AttributeError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return name


def _pe_option(text):
    """key=value, the value read as a bool (true/false), an int, a float, or else kept as a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected key=value (e.g. factor=4), got {text!r}")
    raw = raw.strip()
    if raw.lower() in ("true", "false"):
        return key, raw.lower() == "true"
    if raw.lower() in ("none", "null"):
        return key, None
    for kind in (int, float):
        try:
            value = kind(raw)
        except ValueError:
            continue
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{key}: expected a finite number, got {raw!r}")
        return key, value
    return key, raw


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tinype", description="Positional encodings and length extrapolation, from scratch.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a byte-level language model (default: quick preset, learned PE)")
    t.add_argument("--preset", choices=sorted(PRESETS), default="quick", help="model and budget (default quick)")
    t.add_argument("--pe", type=_pe_name, default=None,
                   help="positional encoding (see `tinype info`; default learned, or the --init-from run's)")
    t.add_argument("--pe-option", type=_pe_option, action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the encoding, e.g. --pe-option factor=4 (repeatable)")
    t.add_argument("--init-from", metavar="RUN_OR_CKPT", default=None,
                   help="fine-tune: start from this run folder's (or ckpt.npz's) weights, with a fresh optimizer "
                        "and schedule; --context, --pe, --pe-option, --steps, --lr, --batch-size may change")
    t.add_argument("--trust-code", action="store_true",
                   help="allow an --init-from checkpoint whose encoding is defined in a file of yours to import it")
    t.add_argument("--out", default=None, help="run folder (default runs/<preset>-<pe>)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    t.add_argument("--text", default=None, help="train on this UTF-8 text file instead of the bundled corpus")
    t.add_argument("--n-layer", type=_positive_int, help="override the preset's number of layers")
    t.add_argument("--d-model", type=_positive_int, help="override the preset's model width")
    t.add_argument("--n-head", type=_positive_int, help="override the preset's number of heads")
    t.add_argument("--context", type=_positive_int,
                   help="override the preset's training context T_train (with --init-from: the fine-tuning "
                        "window; T_train stays the source's)")
    t.add_argument("--steps", type=_positive_int, help="override the preset's number of steps")
    t.add_argument("--lr", type=_positive_float, help="override the preset's peak learning rate")
    t.add_argument("--batch-size", type=_positive_int, help="override the preset's batch size")
    t.add_argument("--shards", type=_positive_int,
                   help="cut each step's batch into N shards, each on its own core, and add their gradients "
                        "(default: the preset's, 2; 1: the whole batch at once)")
    t.add_argument("--warmup", type=_nonneg_int, help="warmup steps (default: the preset's, at most steps/10)")
    t.add_argument("--seed", type=_nonneg_int, default=0, help="seed for init and batches (default 0)")
    t.add_argument("--eval-every", type=_nonneg_int, help="validation every N steps (0: only at the end)")
    t.add_argument("--ckpt-every", type=_nonneg_int, help="checkpoint every N steps (0: only at the end)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    g = sub.add_parser("generate", help="sample text from a trained checkpoint")
    g.add_argument("--checkpoint", required=True, help="a ckpt.npz written by `tinype train`")
    g.add_argument("--prompt", default="", help="text to continue")
    g.add_argument("--max-new-tokens", type=_nonneg_int, default=200, help="bytes to generate (default 200)")
    g.add_argument("--temperature", type=_finite_float, default=0.8, help="0 is greedy (default 0.8)")
    g.add_argument("--top-k", type=_positive_int, default=None, help="sample among the k likeliest bytes")
    g.add_argument("--seed", type=_nonneg_int, default=0)
    g.add_argument("--trust-code", action="store_true",
                   help="allow a checkpoint whose encoding is defined in a file of yours (file.py:Class) to "
                        "import that file")

    lab = sub.add_parser("lab", help="train short, test long: compare encodings on the same data, model and budget")
    lab.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    lab.add_argument("--pe", default=None, help="comma-separated encodings, or 'all' (default: nope, sinusoidal, "
                                                 "rope, rope_yarn, alibi, kerple_log)")
    lab.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    lab.add_argument("--lengths", default=None, help="evaluation lengths as multiples of T_train "
                                                     "(default 1,2,4,8,16,32)")
    lab.add_argument("--out", default="runs/lab", help="run folder (default runs/lab); rerun to resume")
    lab.add_argument("--text", default=None, help="use this UTF-8 text file instead of the bundled corpus")
    lab.add_argument("--steps", type=_positive_int, help="override the preset's training steps")
    lab.add_argument("--shards", type=_positive_int,
                     help="cut each training step's batch into N shards, one core each (default: the preset's, 2; "
                          "1: the whole batch, as the presets trained before they took 2 shards)")
    lab.add_argument("--max-windows", type=_positive_int, help="cap evaluation windows per length")
    lab.add_argument("--stride", type=_positive_int, help="sliding-window stride in bytes (default L/2 at each L)")
    lab.add_argument("--tasks", default=None,
                     help="also train and test synthetic tasks: comma-separated from passkey, copy, reverse, "
                          "addition, addition_scratch, sort, parity, or 'all' (one model per task, encoding "
                          "and seed)")
    lab.add_argument("--task-preset", default="paper",
                     help="per-task model, training sizes and budget (default paper: see README)")
    lab.add_argument("--task-steps", type=_positive_int, help="training steps per task model (default: the "
                     "task preset's; a preset's restarts from a plateau apply at its own steps only)")
    lab.add_argument("--task-examples", type=_positive_int, default=None,
                     help="test examples per size (default 385: a 95%% interval of at most +-5 points)")
    lab.add_argument("--tasks-only", action="store_true",
                     help="train and test the --tasks alone, without the language models (the perplexity tables)")
    lab.add_argument("--jobs", type=_positive_int, default=1,
                     help="run independent trainings and evaluations in N processes (default 1)")
    lab.add_argument("--dask", metavar="ADDRESS", default=None,
                     help="send the runs to an existing Dask scheduler, e.g. tcp://host:8786 "
                          "(pip install 'tinype[dask]'; --out must be a folder the workers share)")
    lab.add_argument("--recompute", action="store_true",
                     help="discard trainings in --out that were made with other settings, and redo them")
    lab.add_argument("--extend", type=_int_at_least(2), metavar="F", default=None,
                     help="after the trainings, fine-tune rope (directly, and with PI, NTK, YaRN at factor F) and "
                          "alibi at F x T_train, and evaluate the snapshots (extend.csv, extend_ppl.png)")
    lab.add_argument("--finetune-steps", default=None,
                     help="fine-tuning step counts to keep and evaluate (default 0,25,50,100,200)")
    lab.add_argument("--finetune-lr", type=_positive_float, default=None,
                     help="fine-tuning peak lr as a fraction of the preset's (default 0.3)")
    lab.add_argument("--finetune-batch", type=_positive_int, default=None,
                     help="fine-tuning batch in windows of F x T_train (default: the preset's batch / F)")
    lab.add_argument("--extend-lengths", default=None,
                     help="extension evaluation lengths as multiples of T_train (default 1,F,2F)")
    lab.add_argument("--extend-methods", default=None,
                     help="comma-separated from rope, rope_pi, rope_ntk, rope_yarn, alibi (default all)")
    lab.add_argument("--passkey-examples", type=_positive_int, default=None,
                     help="extension passkey examples per key depth (default 8)")
    lab.add_argument("--no-progress", action="store_true")

    sub.add_parser("info", help="backend and available positional encodings")
    return parser


def _finetune_configs(args, overrides):
    """(ModelConfig, TrainConfig) of `tinype train --init-from`: the source's, with what was asked changed.

    The model: the source's configuration, with --pe / --pe-option (options merge into the source's
    when the encoding stays, replace them when it changes) and any shape flag (refused later by
    train if it differs). The budget: the source's training settings with --steps, --lr,
    --batch-size, --shards, --warmup, --seed, --eval-every, --ckpt-every; warmup at most steps/10."""
    from dataclasses import replace

    from .checkpoint import load_checkpoint
    from .config import RESTART_FIELDS, ModelConfig, TrainConfig
    from .errors import InvalidFile
    from .train import resolve_checkpoint

    ckpt = resolve_checkpoint(args.init_from)
    _, meta = load_checkpoint(ckpt)
    src_model, src_train = meta.get("model_config"), meta.get("train_config")
    if not isinstance(src_model, dict) or not isinstance(src_train, dict):
        raise InvalidFile(f"{ckpt} has no model or training configuration in its metadata: not a tinype run")
    if ":" in str(src_model.get("pe")) and not args.trust_code:
        raise InvalidFile(f"{ckpt} uses the encoding {src_model.get('pe')!r}, defined outside tinype: building it "
                          f"would import and run that file's code; pass --trust-code if you trust both")
    model = dict(src_model)
    options = dict(args.pe_option)
    if args.pe is not None and args.pe != src_model.get("pe"):
        model["pe"], model["pe_options"] = args.pe, options
    else:
        model["pe_options"] = {**(src_model.get("pe_options") or {}), **options}
    model.update({k: v for k, v in (("n_layer", args.n_layer), ("d_model", args.d_model),
                                    ("n_head", args.n_head)) if v is not None})
    model_cfg = ModelConfig.from_dict(model)                   # an unknown option fails here, by name
    # a fine-tune starts from the source's weights: the source's restarts from a plateau do not apply
    src_train = {k: v for k, v in src_train.items() if k not in RESTART_FIELDS}
    train_cfg = replace(TrainConfig.from_dict(src_train), **overrides)
    if args.warmup is None:
        train_cfg = replace(train_cfg, warmup=min(train_cfg.warmup, train_cfg.steps // 10))
    return model_cfg, train_cfg


def cmd_train(args):
    from dataclasses import replace

    from .data import Corpus
    from .lab.results import folder_name
    from .train import train

    overrides = {k: v for k, v in (("steps", args.steps), ("lr", args.lr), ("batch_size", args.batch_size),
                                   ("seed", args.seed), ("eval_every", args.eval_every),
                                   ("ckpt_every", args.ckpt_every), ("warmup", args.warmup),
                                   ("shards", args.shards)) if v is not None}
    if args.init_from is not None:
        model_cfg, train_cfg = _finetune_configs(args, overrides)
        context = args.context
    else:
        shape = {k: v for k, v in (("n_layer", args.n_layer), ("d_model", args.d_model), ("n_head", args.n_head),
                                   ("T_train", args.context)) if v is not None}
        model_cfg, train_cfg = preset(args.preset, pe=args.pe or "learned", pe_options=dict(args.pe_option),
                                      **shape)                 # impossible shapes and unknown options fail here
        train_cfg = replace(train_cfg, **overrides)
        if args.warmup is None and train_cfg.warmup >= train_cfg.steps:
            train_cfg = replace(train_cfg, warmup=max(0, train_cfg.steps // 10))
        context = None
    if train_cfg.warmup > train_cfg.steps:
        raise InvalidValue(f"--warmup {train_cfg.warmup} is longer than the run ({train_cfg.steps} steps)")
    corpus = Corpus.from_file(args.text) if args.text is not None else Corpus.default()
    # a module-path encoding ("dir/file.py:MyPE") must not make the default folder a path of its own
    slug = folder_name(model_cfg.pe, 0).removesuffix('-s0')
    out = args.out if args.out is not None else os.path.join(
        "runs", f"{args.preset}-{slug}" if args.init_from is None else
        f"finetune-{slug}-c{context or model_cfg.T_train}")
    what = f"fine-tune of {args.init_from}" if args.init_from is not None else f"preset {args.preset}"
    print(f"tinype train: {what}, pe {model_cfg.pe}{' ' + str(model_cfg.pe_options) if model_cfg.pe_options else ''}, "
          f"corpus {corpus.name} ({len(corpus.train):,} train / {len(corpus.val):,} validation bytes), "
          f"backend {kernels.BACKEND}, run folder {out}")
    result = train(model_cfg, train_cfg, corpus, out=out, resume=args.resume, progress=not args.no_progress,
                   init_from=args.init_from, context=context, trust_code=args.trust_code)
    v = result.val
    T = result.finetune["context"] if result.finetune else model_cfg.T_train
    print(f"validation at T={T}: {v['nll']:.4f} nats/byte, perplexity {v['ppl']:.3f} "
          f"({v['windows']} windows); {result.tokens_per_sec:,.0f} training tokens/s")
    print(f"checkpoint: {os.path.join(out, 'ckpt.npz')}   try: tinype generate --checkpoint "
          f"{os.path.join(out, 'ckpt.npz')} --prompt 'The '")
    return 0


def cmd_generate(args):
    from .checkpoint import load_model
    from .sample import generate

    model, meta = load_model(args.checkpoint, trust_code=args.trust_code)
    start = time.perf_counter()
    text = generate(model, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.seed)
    seconds = time.perf_counter() - start
    sys.stdout.write(args.prompt + text + "\n")
    if args.max_new_tokens:
        print(f"tinype generate: {args.max_new_tokens} bytes in {seconds:.2f} s "
              f"({args.max_new_tokens / max(seconds, 1e-9):,.0f} bytes/s, KV cache)", file=sys.stderr)
    return 0


def _int_list(text, what):
    values = [_whole_number(v.strip()) for v in text.split(",") if v.strip()]
    if not values or None in values:
        raise InvalidValue(f"{what} must be comma-separated whole numbers, got {text!r}")
    if min(values) < 0:
        raise InvalidValue(f"{what} must be non-negative whole numbers, got {text!r}")
    return values


def cmd_lab(args):
    from .data import Corpus
    from .lab import DEFAULT_PES, LabConfig, all_encodings, run_lab

    if args.pe is None:
        pes = list(DEFAULT_PES)
    elif args.pe.strip().lower() == "all":
        pes = all_encodings()
    else:
        pes = [p for p in args.pe.split(",") if p.strip()]        # LabConfig constructs each one
    from .tasks import TASKS, get_task
    tasks = []
    if args.tasks:
        tasks = list(TASKS) if args.tasks.strip().lower() == "all" else \
            [get_task(t).name for t in args.tasks.split(",") if t.strip()]
    if args.tasks_only and tasks:                 # (without tasks LabConfig says what is missing)
        lm_flags = [f for f, v in (("--lengths", args.lengths), ("--steps", args.steps), ("--text", args.text),
                                   ("--max-windows", args.max_windows), ("--stride", args.stride)) if v is not None]
        if lm_flags:
            raise InvalidValue(f"{', '.join(lm_flags)} set the language models, which --tasks-only leaves out "
                               "(the tasks' budgets: --task-preset, --task-steps, --task-examples)")
    mults = _int_list(args.lengths or "1,2,4,8,16,32", "--lengths")
    if 0 in mults:
        raise InvalidValue("--lengths are multiples of T_train and must be >= 1")
    ext_flags = [f for f, v in (("--finetune-steps", args.finetune_steps), ("--finetune-lr", args.finetune_lr),
                                ("--finetune-batch", args.finetune_batch), ("--extend-lengths", args.extend_lengths),
                                ("--extend-methods", args.extend_methods),
                                ("--passkey-examples", args.passkey_examples)) if v is not None]
    if ext_flags and args.extend is None:
        raise InvalidValue(f"{', '.join(ext_flags)} only apply with --extend F (the extension by fine-tuning)")
    ext = {}
    if args.extend is not None:
        ext["extend"] = args.extend
        if args.finetune_steps is not None:
            ext["finetune_steps"] = _int_list(args.finetune_steps, "--finetune-steps")
        if args.extend_lengths is not None:
            ext["extend_mults"] = _int_list(args.extend_lengths, "--extend-lengths")
            if 0 in ext["extend_mults"]:
                raise InvalidValue("--extend-lengths are multiples of T_train and must be >= 1")
        if args.extend_methods is not None:
            ext["extend_methods"] = [m.strip().lower() for m in args.extend_methods.split(",") if m.strip()]
        ext.update({k: v for k, v in (("finetune_lr", args.finetune_lr), ("finetune_batch", args.finetune_batch),
                                      ("passkey_examples", args.passkey_examples)) if v is not None})
    cfg = LabConfig(preset=args.preset, pes=pes, seeds=_int_list(args.seeds, "--seeds"), mults=mults,
                    out=args.out, steps=args.steps, shards=args.shards, max_windows=args.max_windows,
                    stride=args.stride, jobs=args.jobs, dask=args.dask, tasks=tasks, task_preset=args.task_preset,
                    task_steps=args.task_steps, language_models=not args.tasks_only,
                    task_examples=args.task_examples, recompute=args.recompute, **ext)
    pes = cfg.pes
    corpus = Corpus.from_file(args.text) if args.text is not None else Corpus.default()
    what = f"tasks {', '.join(cfg.tasks)} (task preset {cfg.task_preset}), no language models" if args.tasks_only \
        else f"preset {args.preset}, lengths {mults} x T_train"
    n_pe, n_seed = len(pes), len(cfg.seeds)
    print(f"tinype lab: {n_pe} encoding{'s' if n_pe != 1 else ''} x {n_seed} seed{'s' if n_seed != 1 else ''}, {what}, "
          f"backend {kernels.BACKEND}, "
          f"out {args.out}"
          + (f", Dask scheduler {args.dask}" if args.dask else f", {args.jobs} process(es)" if args.jobs > 1 else ""))
    results, summary = run_lab(cfg, progress=not args.no_progress, corpus=corpus)
    print()
    print(summary)
    figures = [f for f in ("ppl_vs_length.png", "position_loss.png", "task_accuracy.png", "passkey_heatmap.png",
                           "tasks.png", "extend_ppl.png")
               if os.path.exists(os.path.join(args.out, f))
               and not (args.tasks_only and f in ("ppl_vs_length.png", "position_loss.png", "extend_ppl.png"))]
    print(f"tables: {os.path.join(args.out, 'summary.md')}; figures in {args.out}: {', '.join(figures)}")
    return 0


def cmd_info(_args):
    print(f"tinype kernels backend: {kernels.BACKEND}")
    info = kernels.build_info()
    if info["backend"] == "cython":
        print(f"compiled kernels: CPU path {info['cpu_path']} (this CPU runs: {', '.join(info['cpu_paths'])}; "
              f"TINYPE_CPU_PATH lowers it), OpenMP {'yes' if info['openmp'] else 'no'}, "
              f"compiler {info['compiler']} {info['compiler_flags']}")
    print(f"NumPy's BLAS (the GEMMs): {kernels.blas_info()}")
    print(f"positional encodings: {', '.join(positions.available())}")
    print(f"presets: {', '.join(sorted(PRESETS))}")
    return 0


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    handlers = {"train": cmd_train, "generate": cmd_generate, "lab": cmd_lab, "info": cmd_info}
    previous = _terminate_like_ctrl_c()
    try:
        return handlers[args.command](args)
    except UserError as err:                    # the user's input; anything else is a bug: traceback
        print(f"tinype {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:
        how = "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"
        again = {"train": "rerun with --resume to continue from the last checkpoint",
                 "lab": "rerun the same command to continue: finished runs are kept, a training resumes "
                        "from its last checkpoint"}.get(args.command, "nothing was written")
        print(f"\ntinype {args.command}: {how}; {again}", file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130
    except BrokenPipeError:
        # the reader of our output went away (`tinype info | head -1`): not an error of ours and no
        # traceback; point stdout at /dev/null so that Python's own flush at exit stays quiet too
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate_like_ctrl_c():
    """SIGTERM raises Terminated (a KeyboardInterrupt) in the main thread; returns the old handler."""
    def handler(signum, frame):
        raise Terminated()
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:                           # not the main thread (main() called from a worker)
        return None


if __name__ == "__main__":
    sys.exit(main())
