"""The extrapolation lab: train short, test long, every encoding on the same data, model and budget.

    run_lab(LabConfig(pes=["nope", "rope", "rope_yarn", "alibi"], seeds=[0]))

1. Training: one model per (trained encoding, seed), with the preset's model and budget, into
   out/train/<pe>-s<seed>/ (resumable). Evaluation-time variants train nothing: rope_pi/ntk/
   dynamic/yarn/llama3 evaluate the rope checkpoint, and X+logn evaluates X's.
2. Evaluation on the validation split at L = T_train x mults (tinype.evaluate.evaluate_at_lengths):
   nonoverlap, beyond (positions >= T_train only), sliding, and the loss at each position.
   A PE that cannot run at L (learned beyond its table) is reported as n/a.
3. Synthetic tasks on request (lab.tasklab, the protocol of Kazemnejad et al. and Ruoss et al.):
   one model per (task, trained encoding, seed) in out/tasks/<task>/, trained on sizes 1..N and
   tested up to 4N with exact match and a Wilson interval per size (tasks.csv, tasks.png).
4. Context extension on request (lab.extend, --extend F): each RoPE scaling and ALiBi fine-tuned
   from the lab's models at F x T_train, snapshots evaluated (extend.csv, extend_ppl.png).
5. Outputs in out/: results.json, results.csv, summary.md (mean +- std over seeds), figures.

Every training and evaluation has a run key (lab.results): a rerun reuses a result only when its key
equals the one asked for. A changed evaluation setting re-evaluates; a training in the folder made
with other settings is refused by name unless recompute=True (--recompute) discards it.

The package: sweep (what to run), executors (serial, processes, Dask), jobs (the units of work),
results (keys, records, tables, CSV, summary; plots reads them), tasklab (the task protocol), extend
(fine-tuning for context extension), runner (run_lab).
"""
from ..evaluate import evaluate_at_lengths
from .extend import METHODS, run_extension
from .results import PROTOCOLS, protocols, summarize, table, task_table, throughput
from .runner import run_lab
from .sweep import (
                    DEFAULT_FINETUNE_LR,
                    DEFAULT_FINETUNE_STEPS,
                    DEFAULT_MULTS,
                    DEFAULT_PES,
                    EXTEND_METHODS,
                    TASK_EVAL_SEED,
                    LabConfig,
                    LabError,
                    all_encodings,
                    trained_name,
)
from .tasklab import TASK_PRESETS

__all__ = ["DEFAULT_FINETUNE_LR", "DEFAULT_FINETUNE_STEPS", "DEFAULT_MULTS", "DEFAULT_PES", "EXTEND_METHODS",
           "LabConfig", "LabError", "METHODS", "PROTOCOLS", "TASK_EVAL_SEED", "TASK_PRESETS", "all_encodings",
           "evaluate_at_lengths", "protocols", "run_extension", "run_lab", "summarize", "table", "task_table",
           "throughput", "trained_name"]
