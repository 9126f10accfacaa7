"""Synthetic tasks for length generalization, generated on the fly (nothing to download).

    passkey   a 5-digit key hidden at a random depth in filler text, asked for at the end
              (Mohtashami & Jaggi 2023; the test of the Position Interpolation and YaRN papers)
    copy      "qjxbe>" -> "qjxbe"            (Kazemnejad et al. 2023; Ruoss et al. 2023)
    reverse   "qjxbe>" -> "ebxjq"
    sort      "qjxbe>" -> "bejqx"           (Kazemnejad et al. 2023; Ruoss et al. 2023's "sort")
    parity    "01101>" -> "1"               the parity of the ones (Ruoss et al.'s "parity check")
    addition  "1284+7930=" -> "81250"  4821 + 0397 = 5218, every number least significant digit
              first (the operands' n digits, the sum's n + 1)
    addition_scratch  "1284+7930=" -> "1708,2901,8312,4015,>81250"
              the same sum after a scratchpad (Nye et al. 2021, "Show Your Work"): for each digit,
              least significant first, the two digits, the carry in and the sum digit; only the part
              after ">" is graded, and the model must write the scratchpad itself (greedy decoding)

Every example is bytes: a prompt, then the answer the model must produce. A training batch packs
examples of random sizes into (B, T) windows, right-padded; the targets are -1 (ignored by the loss)
everywhere except on the answer, so the model is graded on the answer alone. Sizes: the number of
letters (copy, reverse, sort), of bits (parity), of digits per operand (addition), or the whole
length in bytes (passkey).
A task is trained on sizes that fit T_train and tested on larger ones.

Shape letters: B batch, T time.
"""
import hashlib

import numpy as np

from .data import default_topics
from .errors import InvalidValue

PAD = ord(" ")                        # padding after an example; never a target
LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
FILLER = b"The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)  # where the passkey sits in the filler, as a fraction


class Task:
    """A family of (prompt, answer) examples indexed by an integer size."""
    name = None
    unit = "letters"                      # what a size counts
    start = b""                           # a byte before every prompt (WithStart sets one)
    smallest = 1
    steps = 2000                          # training steps the quick model needs to learn it at T_train
    depths = (None,)                      # the depths it is tested at (passkey: where the key sits)

    def example(self, rng, size, depth=None):
        """(prompt, answer) as bytes. depth is used by passkey only."""
        raise NotImplementedError

    #: True when the answer starts with a scratchpad the model writes itself: then only graded()
    #: of it counts, and grading decodes greedily (a teacher-forced scratchpad would give it away)
    scratchpad = False

    def graded(self, answer):
        """The part of an answer (as bytes) that exact match compares: all of it, but a scratchpad."""
        return answer

    def length(self, size):
        """Bytes in prompt + answer for this size (the model reads length - 1 of them)."""
        raise NotImplementedError

    cap = None                            # the largest training size even when more would fit

    def largest(self, T):
        """The largest training size: the largest whose example fits a window of T inputs, at most cap."""
        size = self.smallest
        while self.length(size + 1) - 1 <= T and (self.cap is None or size < self.cap):
            size += 1
        if self.length(size) - 1 > T:
            raise InvalidValue(f"{self.name}: no example fits a window of {T} bytes")
        return size

    def train_sizes(self, T):
        """(lo, hi): training sizes are drawn uniformly from lo..hi."""
        return self.smallest, self.largest(T)

    def test_sizes(self, T, factors=(1, 2, 4, 8)):
        """Sizes whose examples are about factors x the longest training example."""
        hi = self.largest(T)
        return sorted({max(self.smallest, int(round(hi * f))) for f in factors})


class Copy(Task):
    name = "copy"
    cap = 10                              # a 2-layer, width-64 model learns 10 letters in 2000 steps

    def _letters(self, rng, size):
        return LETTERS[rng.integers(0, len(LETTERS), size)].tobytes()

    def example(self, rng, size, depth=None):
        s = self._letters(rng, size)
        return s + b">", s

    def length(self, size):
        return 2 * size + 1


class Reverse(Copy):
    name = "reverse"

    def example(self, rng, size, depth=None):
        s = self._letters(rng, size)
        return s + b">", s[::-1]


class Sort(Copy):
    name = "sort"

    def example(self, rng, size, depth=None):
        s = self._letters(rng, size)
        return s + b">", bytes(sorted(s))


class Parity(Task):
    """n random bits -> "1" when an odd number of them are 1, else "0" (chance is 50%)."""
    name = "parity"
    unit = "bits"
    cap = 10

    def example(self, rng, size, depth=None):
        bits = rng.integers(0, 2, size)
        return "".join(map(str, bits)).encode() + b">", str(int(bits.sum()) % 2).encode()

    def length(self, size):
        return size + 2


class Addition(Task):
    name = "addition"
    unit = "digits per operand"
    cap = 5

    def _operands(self, rng, size):
        return rng.integers(0, 10, size), rng.integers(0, 10, size)

    def _prompt(self, a, b):
        """The operands (most significant digit first in a, b) written least significant first, as
        the answer is: answer digit i then sits at the same offset from digit i of each operand for
        every i. Written most significant first instead (tinype before this change), 4 layers at
        6000 steps of 64 examples did not learn it (NoPE: 0% at 5 digits, answer digits 0-3 right
        7.5-13% of the time, about chance); least significant first, 99% (README, "Synthetic tasks")."""
        return ("".join(map(str, a[::-1])) + "+" + "".join(map(str, b[::-1])) + "=").encode()

    def example(self, rng, size, depth=None):
        a, b = self._operands(rng, size)
        total = int("".join(map(str, a))) + int("".join(map(str, b)))
        return self._prompt(a, b), str(total).zfill(size + 1)[::-1].encode()

    def length(self, size):
        return 3 * size + 3


class AdditionScratch(Addition):
    """Addition with a scratchpad: per digit i (least significant first) "a_i b_i c_i s_i," where c_i
    is the carry into digit i and s_i the sum digit, then ">" and the answer of plain addition."""
    name = "addition_scratch"
    scratchpad = True
    STEP, MARK = 5, b">"                   # bytes per scratchpad step ("1708,"), the answer marker

    def example(self, rng, size, depth=None):
        a, b = self._operands(rng, size)
        steps, carry, digits = [], 0, []
        for x, y in zip(a[::-1].tolist(), b[::-1].tolist()):       # least significant digit first
            s = x + y + carry
            steps.append(f"{x}{y}{carry}{s % 10},")
            digits.append(str(s % 10))
            carry = s // 10
        answer = "".join(steps) + self.MARK.decode() + "".join(digits) + str(carry)
        return self._prompt(a, b), answer.encode()

    def graded(self, answer):
        return answer[answer.rindex(self.MARK) + 1:] if self.MARK in answer else answer

    def length(self, size):
        return (2 * size + 2) + self.STEP * size + 1 + (size + 1)


class Passkey(Task):
    """filler ... "key=71432. " ... filler "key?" -> "71432"; size = the total length in bytes."""
    name = "passkey"
    unit = "length in bytes"
    KEY, ASK, DIGITS = b"key=", b"key?", 5
    depths = DEPTHS
    smallest = len(KEY) + DIGITS + 2 + len(ASK) + DIGITS            # no filler at all

    def example(self, rng, size, depth=None):
        if size < self.smallest:
            raise InvalidValue(f"passkey examples need at least {self.smallest} bytes, got {size}")
        key = "".join(map(str, rng.integers(0, 10, self.DIGITS))).encode()
        n_fill = size - self.smallest
        start = int(rng.integers(0, len(FILLER)))
        filler = (FILLER * (n_fill // len(FILLER) + 2))[start:start + n_fill]
        depth = rng.random() if depth is None else depth
        if not 0 <= depth <= 1:
            raise InvalidValue(f"depth must be in [0, 1], got {depth}")
        cut = int(round(depth * n_fill))
        return filler[:cut] + self.KEY + key + b". " + filler[cut:] + self.ASK, key

    def length(self, size):
        return size

    def train_sizes(self, T):
        return self.smallest, T + 1

    def largest(self, T):
        return T + 1

    def test_sizes(self, T, factors=(1, 2, 4, 8, 16)):
        return [int(T * f) + 1 for f in factors]


TASKS = {t.name: t for t in (Passkey(), Copy(), Reverse(), Addition(), Sort(), Parity(), AdditionScratch())}

START = b"^"                          # the start byte of the task preset "paper" (see WithStart)


class WithStart(Task):
    """A task whose every prompt begins with a start byte: "^qjxbe>" -> "qjxbe".

    A language model's text usually begins with a beginning-of-text token; a task example starting
    with a random letter gives an encoding without positions (NoPE) nothing to count from. A fixed
    first byte does: attending to it with weight 1/(t+1) tells position t. Measured (seed 0, copy,
    2 layers, 3000 steps): NoPE's exact match at size 10 went from 15.5% to 36.5% with it; with 4
    layers it reached 99.5% (README, "Synthetic tasks"). The name stays the task's; the data's
    identity (TaskSet.sha256) and the lab's keys include the byte."""

    def __init__(self, base, start=START):
        if isinstance(base, WithStart):
            raise InvalidValue(f"{base.name} already starts with {base.start!r}")
        if not isinstance(start, bytes) or len(start) != 1:
            raise InvalidValue(f"the start byte must be one byte, got {start!r}")
        self.base, self.start = base, start
        self.name, self.smallest, self.cap, self.unit = base.name, base.smallest, base.cap, base.unit
        self.depths, self.scratchpad, self.steps = base.depths, base.scratchpad, base.steps

    def example(self, rng, size, depth=None):
        prompt, answer = self.base.example(rng, size, depth)
        return self.start + prompt, answer

    def graded(self, answer):
        return self.base.graded(answer)

    def length(self, size):
        return self.base.length(size) + len(self.start)


def get_task(name, start=None):
    """The task called name (case and spaces ignored); start: a start byte for its prompts (WithStart)."""
    try:
        task = TASKS[name.strip().lower()]
    except (KeyError, AttributeError):
        raise InvalidValue(f"unknown task {name!r}; available: {', '.join(TASKS)}") from None
    return WithStart(task, start) if start else task


def encode_examples(examples, T=None):
    """[(prompt, answer)] -> x (N, T) inputs and y (N, T) targets, -1 except on the answer.

    T: the window (default: the longest example's length - 1); shorter examples are right-padded."""
    lengths = [len(p) + len(a) for p, a in examples]
    T = max(lengths) - 1 if T is None else T
    if max(lengths) - 1 > T:
        raise ValueError(f"an example of {max(lengths)} bytes does not fit a window of {T} inputs")
    x = np.full((len(examples), T), PAD, dtype=np.int64)
    y = np.full((len(examples), T), -1, dtype=np.int64)
    for i, (p, a) in enumerate(examples):
        seq = np.frombuffer(p + a, dtype=np.uint8)
        x[i, :len(seq) - 1] = seq[:-1]
        y[i, len(p) - 1:len(seq) - 1] = seq[len(p):]                 # the answer, predicted from its left
    return x, y


class TaskSet:
    """A task as a training source for train(): batches from train sizes, a fixed validation set.

    Duck-types what train() needs of a Corpus: name, sha256, check_window, batch, validation."""

    def __init__(self, task, n_val=256, val_seed=12345, largest=None, curriculum=0):
        """largest: the largest training size (None: the task's own, task.train_sizes(T)); sizes are
        drawn uniformly from the task's smallest to it, as in Kazemnejad et al. and Ruoss et al.
        curriculum: over the first `curriculum` training steps the largest size drawn grows from the
        smallest to the largest, one size per equal share of those steps (0: no curriculum); from then
        on every size is drawn uniformly. The validation set always holds every training size."""
        self.task = get_task(task) if isinstance(task, str) else task
        self.name = f"task:{self.task.name}"
        self.n_val, self.val_seed = n_val, val_seed
        if largest is not None and (isinstance(largest, bool) or not isinstance(largest, (int, np.integer))
                                    or largest < self.task.smallest):
            raise InvalidValue(f"{self.task.name}: the largest training size must be a whole number >= "
                               f"{self.task.smallest}, got {largest!r}")
        self.largest = None if largest is None else int(largest)
        if isinstance(curriculum, bool) or not isinstance(curriculum, (int, np.integer)) or curriculum < 0:
            raise InvalidValue(f"{self.task.name}: the curriculum must be a whole number of steps >= 0, "
                               f"got {curriculum!r}")
        self.curriculum = int(curriculum)
        spec = f"tinype.tasks v1 {self.task.name} {FILLER!r} val {n_val} {val_seed}"
        if self.largest is not None or self.task.name not in ("passkey", "copy", "reverse", "addition"):
            spec += f" v2 largest {self.largest}"
        if self.task.name in ("addition", "addition_scratch"):
            spec += " operands least significant digit first"
        if self.task.start:
            spec += f" start {self.task.start!r}"
        if self.curriculum:
            spec += f" curriculum {self.curriculum}"
        self.sha256 = hashlib.sha256(spec.encode()).hexdigest()

    def train_sizes(self, T):
        """(lo, hi): the training sizes, drawn uniformly."""
        if self.largest is None:
            return self.task.train_sizes(T)
        return self.task.smallest, self.largest

    def check_window(self, T):
        self.task.largest(T)                                          # raises when nothing fits
        hi = self.train_sizes(T)[1]
        if self.task.length(hi) - 1 > T:
            raise InvalidValue(f"{self.task.name}: a training example of size {hi} has {self.task.length(hi)} "
                               f"bytes, which do not fit a window of {T} inputs (+1 target)")

    def sizes_at(self, step, T):
        """(lo, hi): the training sizes drawn at this step (the curriculum's, else train_sizes)."""
        lo, hi = self.train_sizes(T)
        if step is None or step >= self.curriculum:
            return lo, hi
        return lo, min(hi, lo + (hi - lo + 1) * step // self.curriculum)

    def examples(self, rng, count, T, step=None):
        lo, hi = self.sizes_at(step, T)
        return [self.task.example(rng, int(s)) for s in rng.integers(lo, hi + 1, count)]

    def batch(self, batch_size, T, rng, step=None):
        """x, y (B, T): random training sizes (those of the curriculum at this step), right-padded;
        targets only on the answers."""
        return encode_examples(self.examples(rng, batch_size, T, step), T)

    def validation(self, T):
        """A fixed set of training-size examples (x, y), the same every call."""
        return encode_examples(self.examples(np.random.default_rng(self.val_seed), self.n_val, T), T)


CLASS_TOPICS = ("compound", "debugger", "formatstrings", "specialnames", "string-methods")


class TopicClassification:
    """A real text-classification task from the bundled corpus: which of Python's help topics
    (compound statements, the debugger, format strings, special method names, string methods) a
    snippet of bytes comes from. Each topic's text is split: the first 80% gives training snippets,
    the rest test snippets, so no test byte is ever trained on."""

    def __init__(self, topics=CLASS_TOPICS, test_fraction=0.2):
        all_topics = default_topics()                   # the frozen copy: the same on every Python
        unknown = [t for t in topics if t not in all_topics]
        if unknown or len(topics) < 2:
            raise ValueError(f"need >= 2 topics of the bundled help topics, unknown: {unknown}")
        self.classes = tuple(topics)
        self.train, self.test = [], []
        for t in topics:
            ids = np.frombuffer(all_topics[t].encode("utf-8"), dtype=np.uint8)
            cut = int(len(ids) * (1 - test_fraction))
            self.train.append(ids[:cut])
            self.test.append(ids[cut:])

    @property
    def n_classes(self):
        return len(self.classes)

    def max_length(self, split="test"):
        return min(len(t) for t in (self.test if split == "test" else self.train))

    def sample(self, rng, n, length, split="train"):
        """x (n, length) int64 snippets, y (n,) class labels, classes balanced in turn."""
        texts = self.train if split == "train" else self.test
        if length > self.max_length(split):
            raise ValueError(f"snippets of {length} bytes do not fit the {split} text of every topic "
                             f"(at most {self.max_length(split)})")
        y = np.arange(n) % len(texts)
        rng.shuffle(y)
        x = np.empty((n, length), dtype=np.int64)
        for i, c in enumerate(y):
            start = rng.integers(0, len(texts[c]) - length + 1)
            x[i] = texts[c][start:start + length]
        return x, y
