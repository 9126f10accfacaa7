"""Randomized positions (Ruoss et al. 2023, "Randomized Positional Encodings Boost Length
Generalization of Transformers").

A window of T tokens gets positions that are a sorted random subset of [0, L_max), L_max much
larger than T_train (default 8 T_train), instead of 0..T-1. Training thus sees every position up to
L_max, and the relative gaps vary, so a longer test window is nothing new.

Evaluation (eval_positions="random", reproducible) gives a window the positions training gives it.
Training draws T_train positions for every window, and an example shorter than the window (a task
prompt, right-padded) sits on the first t of them, whose gaps are those of T_train positions in
[0, L_max), not of t positions. So a window of t <= T_train gets the first t of one seeded draw of
T_train positions (every such window a prefix of the same draw, so a KV cache stays valid up to
T_train), and a longer window t sorted positions of [0, L_max) from a generator seeded by t, as in
Ruoss et al. (This assumes training at T_train; a fine-tune at a longer window draws as many.) Drawing t positions of
[0, L_max) for a short window too (tinype before this) spreads them over the whole range, gaps
T_train / t times wider than in training: measured on reverse (seed 0, 4 layers, T_train 21), 11%
exact match at size 3 instead of 93% with the training draw. eval_positions="range" uses 0..T-1.
Works with any PE that reads positions: here the sinusoidal, learned (a table of L_max rows) and
rotary encodings.
"""
import numpy as np

from .learned import Learned
from .rope import Rotary
from .sinusoidal import Sinusoidal


class _RandomizedMixin:
    """Draws the positions; the PE it is mixed into (listed after it) turns them into vectors."""

    # 2: a window of t <= T_train is tested on the first t of the training draw (1: t positions of
    # [0, L_max)); the lab's task tests carry it in their keys (tasklab.eval_positions_identity)
    eval_positions_version = 2

    def __init__(self, L_max=None, eval_positions="random", **options):
        super().__init__(**options)
        if eval_positions not in ("random", "range"):
            raise ValueError(f"eval_positions must be 'random' or 'range', got {eval_positions!r}")
        self.L_max_option = L_max
        self.eval_positions = eval_positions

    def setup(self, config):
        super().setup(config)
        self.T_train = config.T_train
        self.L_max = int(self.L_max_option or 8 * config.T_train)
        if self.L_max < config.T_train:
            raise ValueError(f"L_max={self.L_max} must be >= T_train={config.T_train}")

    def check_length(self, T):
        if T > self.L_max:
            raise ValueError(f"{self.name}: positions are drawn from [0, {self.L_max}), which cannot hold "
                             f"{T} distinct positions; raise L_max (pe_options) or shorten the input")

    def positions(self, T, train=False, rng=None):
        if not train and self.eval_positions == "range":
            return np.arange(T, dtype=np.float64)
        if train and rng is not None:                                    # a training window: T_train
            return np.sort(rng.choice(self.L_max, size=T, replace=False)).astype(np.float64)
        n = max(T, self.T_train)                                         # evaluation: as in training
        rng = np.random.default_rng([n, 20230526])                       # reproducible
        return np.sort(rng.choice(self.L_max, size=n, replace=False))[:T].astype(np.float64)


class RandomizedSinusoidal(_RandomizedMixin, Sinusoidal):
    name = "randomized_sinusoidal"


class RandomizedLearned(_RandomizedMixin, Learned):
    name = "randomized_learned"

    def setup(self, config):
        super().setup(config)
        self.max_positions = self.L_max                                  # the table has L_max rows


class RandomizedRope(_RandomizedMixin, Rotary):
    name = "randomized_rope"
