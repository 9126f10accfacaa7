"""What the lab runs: its configuration, the encodings it compares, and the trainings they need.

A trained encoding is evaluated under its own name and under every evaluation-time variant of it:
rope_pi/ntk/dynamic/yarn/llama3 evaluate the rope checkpoint, and X+logn evaluates X's (log-n
scaling is 1 inside T_train, so training is unchanged).
"""
from dataclasses import dataclass, field

from .. import positions
from ..errors import InvalidValue
from ..tasks import get_task

DEFAULT_PES = ["nope", "sinusoidal", "rope", "rope_yarn", "alibi", "kerple_log"]
DEFAULT_MULTS = [1, 2, 4, 8, 16, 32]
TASK_EVAL_SEED = 2024                 # the test examples: the same for every encoding and seed
#: the extension methods (lab.extend.METHODS says what each fine-tunes) and their defaults
EXTEND_METHODS = ["rope", "rope_pi", "rope_ntk", "rope_yarn", "alibi"]
DEFAULT_FINETUNE_STEPS = [0, 25, 50, 100, 200]
DEFAULT_FINETUNE_LR = 0.3


class LabError(InvalidValue):
    """A lab configuration or run folder that the lab cannot use as asked (a user error)."""


def _whole(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LabError(f"LabConfig.{name} must be a whole number >= {minimum}, got {value!r}")


def _no_repeats(name, values, flag):
    seen = set()
    for v in values:
        if v in seen:
            raise LabError(f"{flag} names {v!r} twice: each entry is one run, and a repeat would count "
                           f"the same run twice in the mean ± std")
        seen.add(v)


@dataclass
class LabConfig:
    preset: str = "quick"
    pes: list = field(default_factory=lambda: list(DEFAULT_PES))
    seeds: list = field(default_factory=lambda: [0])
    mults: list = field(default_factory=lambda: list(DEFAULT_MULTS))
    out: str = "runs/lab"
    steps: int = None               # override the preset's training steps (tests, quick looks)
    shards: int = None              # override the preset's shards per step, for every training (1: runs made
                                    # before the presets took 2 shards keep their keys)
    max_windows: int = None         # cap evaluation windows per length (None: the whole split)
    eval_batch: int = 8
    stride: int = None              # sliding-window stride in bytes (None: L/2 at each length L)
    tasks: list = field(default_factory=list)   # synthetic tasks to train and test (tinype.tasks.TASKS)
    task_preset: str = "paper"      # per-task model and budget (tinype.lab.tasklab.TASK_PRESETS)
    task_steps: int = None          # training steps per task model (None: the task preset's)
    task_examples: int = None       # test examples per size (None: 385, a 95% interval of +-5 points)
    language_models: bool = True    # False (--tasks-only): train and test the tasks alone
    task_factors: list = None       # test sizes up to max(task_factors) x N (None: 4 N)
    jobs: int = 1                   # independent trainings/evaluations run in this many processes
    dask: str = None                # address of an existing Dask scheduler (overrides jobs)
    recompute: bool = False         # discard trainings in `out` made with other settings, and redo them
    # context extension by fine-tuning (lab.extend): None, or the factor F of the new length F x T_train
    extend: int = None
    finetune_steps: list = field(default_factory=lambda: list(DEFAULT_FINETUNE_STEPS))  # snapshots kept
    finetune_lr: float = DEFAULT_FINETUNE_LR    # the fine-tune's peak lr, as a fraction of the preset's
    finetune_batch: int = None      # None: the preset's batch // F (the same tokens per step)
    extend_mults: list = None       # evaluation lengths, multiples of T_train (None: 1, F, 2F)
    extend_methods: list = field(default_factory=lambda: list(EXTEND_METHODS))
    passkey_examples: int = 8       # passkey examples per key depth at F x T_train

    def __post_init__(self):
        if not self.pes:
            raise LabError("LabConfig.pes is empty: name at least one encoding")
        self.pes = [normalize_pe(p) for p in self.pes]
        _no_repeats("pes", self.pes, "--pe")
        for p in self.pes:
            check_pe(p)
        if not self.seeds:
            raise LabError("LabConfig.seeds is empty: name at least one seed")
        for s in self.seeds:
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2 ** 63:
                raise LabError(f"LabConfig.seeds must be whole numbers in 0..2**63-1, got {self.seeds}")
        _no_repeats("seeds", self.seeds, "--seeds")
        if not self.mults:
            raise LabError("LabConfig.mults is empty: name at least one evaluation length")
        for m in self.mults:
            if isinstance(m, bool) or not isinstance(m, int) or m < 1:
                raise LabError(f"LabConfig.mults are multiples of T_train and must be whole numbers >= 1, "
                               f"got {self.mults}")
        _no_repeats("mults", self.mults, "--lengths")
        for name in ("steps", "max_windows", "stride", "task_steps", "shards"):
            if getattr(self, name) is not None:
                _whole(name, getattr(self, name), 1)
        _whole("eval_batch", self.eval_batch, 1)
        _whole("jobs", self.jobs, 1)
        if self.task_examples is not None:
            _whole("task_examples", self.task_examples, 1)
        from .tasklab import TASK_PRESETS
        if self.task_preset not in TASK_PRESETS:
            raise LabError(f"--task-preset {self.task_preset!r}: available {', '.join(sorted(TASK_PRESETS))}")
        self.tasks = [get_task(t).name for t in self.tasks]        # unknown names fail here
        _no_repeats("tasks", self.tasks, "--tasks")
        if not isinstance(self.language_models, bool):
            raise LabError(f"LabConfig.language_models must be True or False, got {self.language_models!r}")
        if not self.language_models and not self.tasks:
            raise LabError("--tasks-only needs --tasks: name the tasks to train, e.g. --tasks copy,reverse")
        if not self.language_models and self.extend is not None:
            raise LabError("--extend fine-tunes the lab's language models, which --tasks-only leaves out")
        self._check_extension()
        if self.out is None or not str(self.out).strip():
            raise LabError("--out is empty: name a folder for the lab's runs, e.g. --out runs/lab")


    def _check_extension(self):
        if self.extend is None:
            return
        _whole("extend", self.extend, 2)
        if not self.finetune_steps:
            raise LabError("--finetune-steps is empty: name at least one step count, e.g. 0,25,50,100,200")
        for n in self.finetune_steps:
            _whole("finetune_steps", n, 0)
        _no_repeats("finetune_steps", self.finetune_steps, "--finetune-steps")
        self.finetune_steps = sorted(self.finetune_steps)
        if self.finetune_steps[-1] < 1:
            raise LabError("--finetune-steps must include a count >= 1 (0 alone fine-tunes nothing)")
        if isinstance(self.finetune_lr, bool) or not isinstance(self.finetune_lr, (int, float)) or \
                not 0 < self.finetune_lr <= 10:
            raise LabError(f"--finetune-lr is a fraction of the preset's learning rate in (0, 10], "
                           f"got {self.finetune_lr!r}")
        if self.finetune_batch is not None:
            _whole("finetune_batch", self.finetune_batch, 1)
        if self.extend_mults is not None:
            if not self.extend_mults:
                raise LabError("--extend-lengths is empty")
            for m in self.extend_mults:
                _whole("extend_mults", m, 1)
            _no_repeats("extend_mults", self.extend_mults, "--extend-lengths")
        _whole("passkey_examples", self.passkey_examples, 1)
        unknown = [m for m in self.extend_methods if m not in EXTEND_METHODS]
        if unknown or not self.extend_methods:
            raise LabError(f"--extend-methods {unknown or '(empty)'}: choose among {', '.join(EXTEND_METHODS)}")
        _no_repeats("extend_methods", self.extend_methods, "--extend-methods")


def normalize_pe(name):
    """Registry names are case-insensitive ('ROPE ' is rope); a user module path keeps its case."""
    if not isinstance(name, str):
        raise LabError(f"an encoding name must be a string, got {name!r}")
    return "+".join(p.strip() if ":" in p else p.strip().lower() for p in name.split("+"))


def check_pe(name):
    """Construct the encoding (registry name, combination, or a user's module path), as a user error."""
    try:
        positions.get(name)
    except (ValueError, TypeError, ImportError, AttributeError) as err:
        raise LabError(f"--pe {name!r}: {err}") from None


def all_encodings():
    """Every encoding the lab can compare: the registry plus the +logn variants of the 2024 habit."""
    return positions.available() + ["rope+logn", "alibi+logn"]


def trained_name(pe):
    """The checkpoint an encoding is evaluated from: rope_* -> rope, X+logn -> X, logn -> nope."""
    parts = [positions.EVAL_TIME_VARIANTS.get(p, p) for p in pe.split("+") if p != "logn"]
    return "+".join(parts) if parts else "nope"


def trainings(cfg):
    """Sorted (trained encoding, seed) pairs the evaluations need."""
    return sorted({(trained_name(pe), s) for pe in cfg.pes for s in cfg.seeds})
