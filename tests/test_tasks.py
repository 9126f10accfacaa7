"""Synthetic tasks: well-formed examples, answer-only targets, exact-match grading (the lab path: test_tasks_protocol.py)."""

import numpy as np
import pytest

from tinype import ModelConfig, Transformer
from tinype.evaluate import task_accuracy, token_nll
from tinype.tasks import DEPTHS, PAD, TASKS, Passkey, TaskSet, encode_examples, get_task


@pytest.mark.parametrize("name", list(TASKS))
def test_examples_fit_their_declared_length(name):
    task, rng = get_task(name), np.random.default_rng(0)
    lo, hi = task.train_sizes(64)
    assert lo <= hi and task.length(hi) - 1 <= 64
    if name != "passkey":                     # the largest that fits, unless capped lower
        assert hi == task.cap or task.length(hi + 1) - 1 > 64
    for size in [lo, hi, *task.test_sizes(64)]:
        p, a = task.example(rng, size)
        assert len(p) + len(a) == task.length(size)
    assert task.test_sizes(64)[-1] > hi


def test_copy_reverse_addition_answers_are_right():
    rng = np.random.default_rng(1)
    p, a = get_task("copy").example(rng, 7)
    assert p[:-1] == a and p.endswith(b">") and a.isalpha()
    p, a = get_task("reverse").example(rng, 7)
    assert p[:-1] == a[::-1]
    for _ in range(50):
        p, a = get_task("addition").example(rng, 5)
        x, y = p[:-1].split(b"+")
        assert len(x) == len(y) == 5 and len(a) == 6
        assert int(x[::-1]) + int(y[::-1]) == int(a[::-1])      # every number least significant first


def test_passkey_hides_the_key_at_the_asked_depth():
    task, rng = Passkey(), np.random.default_rng(2)
    for depth in DEPTHS:
        p, key = task.example(rng, 200, depth)
        assert len(p) + len(key) == 200 and key.isdigit() and len(key) == 5
        assert p.endswith(b"key?") and p.count(b"key=" + key) == 1
        where = p.index(b"key=") / (200 - task.smallest)
        assert where == pytest.approx(depth, abs=0.02)
    with pytest.raises(ValueError, match="at least"):
        task.example(rng, task.smallest - 1)
    with pytest.raises(ValueError, match="depth"):
        task.example(rng, 100, depth=1.5)


def test_encode_examples_targets_only_the_answer():
    x, y = encode_examples([(b"ab>", b"ab"), (b"abc>", b"cba")], T=8)
    assert x.shape == y.shape == (2, 8)
    assert bytes(x[1, :6].astype(np.uint8)) == b"abc>cb" and x[0, 4] == PAD
    assert y[0].tolist() == [-1, -1, ord("a"), ord("b"), -1, -1, -1, -1]
    assert y[1].tolist() == [-1, -1, -1, ord("c"), ord("b"), ord("a"), -1, -1]
    with pytest.raises(ValueError, match="does not fit"):
        encode_examples([(b"abcdef>", b"abcdef")], T=8)


def test_unknown_task_is_named():
    with pytest.raises(ValueError, match="unknown task 'multiply'.*passkey"):
        get_task("multiply")


class Oracle:
    """Answers every example right, except the ones it was told to get wrong."""

    def __init__(self, examples, wrong=()):
        x, y = encode_examples(examples)
        self.table = {x[i].tobytes(): y[i] for i in range(len(x))}
        self.wrong = {x[i].tobytes() for i in wrong}

    def forward(self, xb):
        out = np.zeros(xb.shape + (256,))
        for i, row in enumerate(xb):
            y = np.where(self.table[row.tobytes()] >= 0, self.table[row.tobytes()], 0)
            if row.tobytes() in self.wrong:
                y = (y + 1) % 256
            out[i, np.arange(len(y)), y] = 1.0
        return out


def test_task_accuracy_is_exact_match():
    rng = np.random.default_rng(3)
    ex = [get_task("reverse").example(rng, 6) for _ in range(10)]
    assert task_accuracy(Oracle(ex), ex, batch_size=3) == 1.0
    assert task_accuracy(Oracle(ex, wrong=[0, 4, 9]), ex, batch_size=3) == pytest.approx(0.7)


def test_loss_ignores_targets_of_minus_one():
    model = Transformer(ModelConfig(pe="rope", dtype="float64"), seed=0)
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (2, 9))
    y = np.full((2, 9), -1)
    y[1, 5] = 42
    loss = model.loss(x, y)
    assert loss == pytest.approx(token_nll(model.forward(x), np.full((2, 9), 42))[1, 5], rel=1e-12)
    g = model.backward()
    assert all(np.isfinite(v).all() for v in g.values())
    with pytest.raises(ValueError, match="token id -2"):
        model.loss(x, np.full((2, 9), -2))


def test_taskset_batches_and_validation_are_reproducible():
    ts = TaskSet("copy")
    x1, y1 = ts.batch(4, 64, np.random.default_rng(5))
    x2, y2 = ts.batch(4, 64, np.random.default_rng(5))
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2) and x1.shape == (4, 64)
    assert (y1 >= 0).sum() > 0
    v1, v2 = ts.validation(64), ts.validation(64)
    assert np.array_equal(v1[0], v2[0]) and len(v1[0]) == ts.n_val
    assert TaskSet("copy").sha256 == ts.sha256 != TaskSet("reverse").sha256
    with pytest.raises(ValueError, match="fits a window"):
        TaskSet("addition").check_window(4)


def test_passkey_induction_candidates(task_search):
    """What a head matching the previous digit's content could copy (scripts/task_search.py passkey_errors)."""
    cands = task_search.induction_candidates
    key = b"71712"
    assert cands(key, 0) == {ord("7")}                      # after "key?": only "key=" matches
    assert cands(key, 1) == {ord("1")}                      # after 7: key[1] and key[3] are both 1
    assert cands(key, 2) == {ord("7"), ord("2")}            # after 1: 7 (key[2]) or 2 (key[4])
    assert cands(key, 4) == {ord("7"), ord("2")}
    assert all(len(cands(b"01234", k)) == 1 for k in range(5))
    assert cands(b"12341", 1) == {ord("2")}                 # a last digit is followed by ". ", not a digit


def test_addition_carry_ins_and_digit_table(task_search):
    """scripts/task_search.py addition_digits: the carries into each answer digit, and the per-digit
    accuracy of a model that is right everywhere but at one answer digit."""
    # 4821 + 0397 = 5218, written least significant first: 1284 + 7930; digit sums 1+7 = 8, 2+9 = 11,
    # 8+3+1 = 12, 4+0+1 = 5: carries into digits 2 and 3
    assert task_search.carry_ins(b"^1284+7930=") == [0, 0, 1, 1, 0]
    assert task_search.carry_ins(b"99+19=") == [0, 1, 1]                 # 99 + 91 = 190, no start byte
    task = get_task("addition", b"^")

    class Oracle:                                   # right at every answer digit but digit 1
        def forward(self, x):
            B, T = x.shape
            out = np.zeros((B, T, 256), np.float32)
            lp = 2 * size + 3                        # prompt length with ^: answer digit k is predicted at lp - 1 + k
            for r in range(B):
                a, b = bytes(x[r, 1:lp - 1].astype(np.uint8)).split(b"+")
                total = int(a.decode()[::-1]) + int(b.decode()[::-1])
                answer = str(total).zfill(size + 1)[::-1]
                for k, ch in enumerate(answer):
                    digit = int(ch) if k != 1 else (int(ch) + 1) % 10
                    out[r, lp - 1 + k, ord("0") + digit] = 1.0
            return out

    for size in (2, 4):
        table = task_search.addition_digit_table(Oracle(), task, [size], 50, np.random.default_rng(0))
        exact, acc, no_c, with_c, n_c = table[size]
        assert exact == 0.0
        assert list(acc) == [1.0, 0.0] + [1.0] * (size - 1)
        assert n_c[0] == 0 and n_c.sum() > 0 and np.isnan(with_c[0]) and no_c[1] == 0.0
