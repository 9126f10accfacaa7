"""The task protocol of issue #17: the new tasks, greedy grading after a scratchpad, the interval
arithmetic, the CSV/summary/figure, and the lab's plumbing from a plan to tasks.csv."""
import csv
import math
import os

import numpy as np
import pytest

from tinype import ModelConfig, TrainConfig, train
from tinype.lab import tasklab
from tinype.tasks import TASKS, TaskSet, get_task

NEW = ("sort", "parity", "addition_scratch")


@pytest.mark.parametrize("name", NEW)
def test_new_generators_are_deterministic_and_as_long_as_declared(name):
    task = get_task(name)
    for size in [task.smallest, 2, 5, 9, 23]:
        a = [task.example(np.random.default_rng([7, size]), size) for _ in range(3)]
        b = [task.example(np.random.default_rng([7, size]), size) for _ in range(3)]
        assert a == b
        for p, ans in a:
            assert len(p) + len(ans) == task.length(size)
    r1, r2 = np.random.default_rng(1), np.random.default_rng(2)
    assert [task.example(r1, 8) for _ in range(5)] != [task.example(r2, 8) for _ in range(5)]


@pytest.mark.parametrize("name", list(TASKS))
def test_start_byte_prefixes_every_prompt_and_changes_the_data_identity(name):
    from tinype.tasks import WithStart
    base, task = get_task(name), get_task(name, b"^")
    assert isinstance(task, WithStart) and task.name == base.name and task.depths == base.depths
    size = max(base.smallest, 4)
    for k in range(3):
        (p0, a0), (p1, a1) = base.example(np.random.default_rng(k), size), task.example(np.random.default_rng(k), size)
        assert p1 == b"^" + p0 and a1 == a0 and task.graded(a1) == base.graded(a0)
        assert len(p1) + len(a1) == task.length(size) == base.length(size) + 1
    assert task.largest(40) in (base.largest(40), base.largest(40) - 1)
    assert len({TaskSet(task).sha256, TaskSet(base).sha256, TaskSet(get_task(name, b"#")).sha256}) == 3
    x, y = TaskSet(task).batch(4, task.length(task.largest(40)) - 1, np.random.default_rng(0))
    assert np.all(x[:, 0] == ord("^")) and np.all(y[:, 0] == -1)
    with pytest.raises(ValueError, match="one byte"):
        WithStart(base, b"^^")
    with pytest.raises(ValueError, match="already starts"):
        WithStart(task)


def test_addition_format_is_part_of_the_data_identity():
    """The operands' digit order changed (least significant first): models trained on the old
    format must not be reused, so the hash differs from the old format's spec."""
    import hashlib

    from tinype.tasks import FILLER
    for name in ("addition", "addition_scratch"):
        old = f"tinype.tasks v1 {name} {FILLER!r} val 256 12345" + ("" if name == "addition" else " v2 largest None")
        assert TaskSet(name).sha256 != hashlib.sha256(old.encode()).hexdigest()
    assert TaskSet("copy").sha256 == hashlib.sha256(f"tinype.tasks v1 copy {FILLER!r} val 256 12345".encode()).hexdigest()


def test_sort_and_parity_answers_by_independent_counts():
    rng = np.random.default_rng(3)
    for size in (1, 4, 10, 31):
        p, a = get_task("sort").example(rng, size)
        letters = p[:-1].decode()
        assert p.endswith(b">") and len(a) == size
        counts = [letters.count(c) for c in "abcdefghijklmnopqrstuvwxyz"]
        assert a.decode() == "".join(c * k for c, k in zip("abcdefghijklmnopqrstuvwxyz", counts))
        p, a = get_task("parity").example(rng, size)
        bits = p[:-1].decode()
        assert set(bits) <= {"0", "1"} and len(bits) == size
        assert a == (b"1" if bits.count("1") % 2 else b"0")
    answers = {get_task("parity").example(rng, 6)[1] for _ in range(40)}
    assert answers == {b"0", b"1"}


def test_addition_scratchpad_steps_and_answer_are_right():
    task, rng = get_task("addition_scratch"), np.random.default_rng(4)
    seen_carry = False
    for size in (1, 3, 5, 12):
        for _ in range(30):
            p, a = task.example(rng, size)
            x, y = (s[::-1] for s in p[:-1].decode().split("+"))     # written least significant first
            scratch, answer = a.decode().split(">")
            assert answer == str(int(x) + int(y)).zfill(size + 1)[::-1] == task.graded(a).decode()
            steps = scratch.split(",")[:-1]
            assert len(steps) == size and scratch.endswith(",")
            carry = 0
            for i, st in enumerate(steps):                  # digit i from the right of each operand
                assert st[0] == x[-1 - i] and st[1] == y[-1 - i] and int(st[2]) == carry
                total = int(x[-1 - i]) + int(y[-1 - i]) + carry
                assert int(st[3]) == total % 10
                carry, seen_carry = total // 10, seen_carry or total >= 10
            assert answer[-1] == str(carry)
    assert seen_carry
    plain = get_task("addition").example(np.random.default_rng(5), 4)
    scratch = task.example(np.random.default_rng(5), 4)
    assert plain[0] == scratch[0] and task.graded(scratch[1]) == plain[1]       # same sum, same prompt
    assert task.scratchpad and not get_task("addition").scratchpad


def test_taskset_largest_bounds_the_training_sizes():
    ts = TaskSet("copy", largest=4)
    rng = np.random.default_rng(6)
    sizes = {len(a) for a in (ans for _, ans in ts.examples(rng, 200, 64))}
    assert sizes == {1, 2, 3, 4}
    assert ts.sha256 != TaskSet("copy").sha256 != TaskSet("copy", largest=5).sha256
    with pytest.raises(ValueError, match="do not fit"):
        TaskSet("copy", largest=40).check_window(64)
    with pytest.raises(ValueError, match="whole number"):
        TaskSet("copy", largest=0)


def test_taskset_curriculum_grows_the_sizes_then_draws_them_all():
    ts = TaskSet("copy", largest=4, curriculum=40)             # sizes 1..4: one more every 10 steps
    rng = np.random.default_rng(7)

    def sizes(step):
        return {len(ans) for _, ans in ts.examples(rng, 300, 64, step)}

    assert sizes(0) == sizes(9) == {1}
    assert sizes(10) == {1, 2} and sizes(29) == {1, 2, 3}
    assert sizes(30) == sizes(40) == sizes(10_000) == sizes(None) == {1, 2, 3, 4}
    x, _ = ts.batch(8, 64, np.random.default_rng(0), step=0)
    assert (x[:, 1] == ord(">")).all()                          # size 1 at step 0: "c>" then the letter
    assert ts.sha256 != TaskSet("copy", largest=4).sha256 != TaskSet("copy", largest=4, curriculum=50).sha256
    assert TaskSet("copy", largest=4, curriculum=0).sha256 == TaskSet("copy", largest=4).sha256
    for bad in (-1, 2.5, True, "10"):
        with pytest.raises(ValueError, match="curriculum"):
            TaskSet("copy", curriculum=bad)


def test_task_preset_curriculum_is_a_fraction_of_the_steps(monkeypatch):
    monkeypatch.setitem(tasklab.TASK_PRESETS["paper"], "copy",
                        tasklab.TaskPreset(largest=4, steps=50, curriculum=0.4))
    assert tasklab.task_plans(["copy"])["copy"].source.curriculum == 20
    assert tasklab.task_plans(["copy"], steps=10)["copy"].source.curriculum == 4
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            tasklab.TaskPreset(largest=4, steps=50, curriculum=bad)


def test_train_hands_the_step_to_the_source():
    ts = TaskSet("copy", largest=3, curriculum=6)
    seen = []
    batch = ts.batch
    ts.batch = lambda B, T, rng, step=None: (seen.append(step), batch(B, T, rng, step))[1]
    train(ModelConfig(n_layer=1, d_model=16, n_head=2, T_train=ts.task.length(3) - 1, pe="nope"),
          TrainConfig(steps=4, batch_size=2, warmup=1, eval_every=0), ts, progress=False, log=lambda m: None)
    assert seen == [0, 1, 2, 3]


def test_examples_and_wilson_interval():
    n = tasklab.examples_for_interval()
    assert n == 385
    assert tasklab.Z95 * math.sqrt(0.25 / n) <= 0.05 < tasklab.Z95 * math.sqrt(0.25 / (n - 1))
    assert tasklab.examples_for_interval(0.1) == 97
    lo, hi = tasklab.wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    lo, hi = tasklab.wilson_interval(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.1611, abs=1e-4)
    lo, hi = tasklab.wilson_interval(n // 2, n)
    assert hi - lo <= 0.1
    assert tasklab.wilson_interval(0, 0) == (None, None)
    with pytest.raises(ValueError, match="half-width"):
        tasklab.examples_for_interval(0.7)


def test_test_sizes_reach_four_times_the_range():
    copy = get_task("copy")
    sizes = tasklab.test_sizes(copy, 10)
    assert sizes[0] == 1 and 10 in sizes and max(sizes) == 40
    assert [s for s in sizes if s <= 10] == [1, 3, 6, 8, 10] and 20 in sizes and 30 in sizes
    pk = get_task("passkey")
    sizes = tasklab.test_sizes(pk, 65)
    assert sizes[0] == pk.smallest and max(sizes) == 260 and 65 in sizes


class Adder:
    """A stand-in model for addition_scratch that predicts each byte from the bytes it is given.
    honest: it computes the carries. Otherwise it writes carry 0 in its scratchpad, and computes
    each sum digit from the carry written in its input, and copies the answer from the scratchpad
    in its input: right under teacher forcing (the reference carries), wrong when it decodes alone."""

    def __init__(self, honest):
        self.honest = honest

    def next_byte(self, prefix):
        p, cont = prefix.split(b"=", 1)
        x, y = (s[::-1] for s in p.decode().split("+"))       # the prompt is least significant first
        n, k, cont = len(x), len(cont), cont.decode()
        if k < 5 * n:
            i, off = divmod(k, 5)
            a, b = int(x[-1 - i]), int(y[-1 - i])
            if off == 0:
                return str(a)
            if off == 1:
                return str(b)
            if off == 2:
                if not self.honest:
                    return "0"
                c = int(cont[5 * (i - 1) + 2]) if i else 0          # the carry into the previous digit
                prev = int(x[-i]) + int(y[-i]) + c if i else 0
                return str(prev // 10)
            if off == 3:
                return str((a + b + int(cont[5 * i + 2])) % 10)
            return ","
        if k == 5 * n:
            return ">"
        m = k - 5 * n - 1
        if m < n:
            return cont[5 * m + 3]
        last = cont[5 * (n - 1):5 * n]
        return str((int(last[0]) + int(last[1]) + int(last[2])) // 10)

    def forward(self, x):
        out = np.zeros(x.shape + (256,))
        for r, row in enumerate(x):
            data = bytes(row.astype(np.uint8))
            start = data.index(b"=")
            for t in range(start, x.shape[1]):
                out[r, t, ord(self.next_byte(data[:t + 1]))] = 1.0
        return out


def test_scratchpad_is_graded_on_the_models_own_scratchpad():
    task = get_task("addition_scratch")
    rng = np.random.default_rng(8)
    ex = [task.example(rng, 3) for _ in range(40)]
    carries = np.array([any(st[2:3] == b"1" for st in a.split(b">")[0].split(b",")[:-1]) for _, a in ex])
    assert 0 < carries.sum() < len(ex)
    honest = tasklab.graded_correct(Adder(honest=True), task, ex, batch_size=7)
    assert honest.all()
    cheat = tasklab.graded_correct(Adder(honest=False), task, ex, batch_size=7)
    assert np.array_equal(cheat, ~carries)        # right exactly where no carry was needed
    # a task without a scratchpad is graded teacher-forced: the cheat's shortcut is not possible there
    plain = get_task("addition")
    assert not plain.scratchpad


class Echo:
    """Answers copy examples right when they have at most `upto` letters, else wrong at the end."""

    def __init__(self, upto):
        self.upto = upto

    def forward(self, x):
        out = np.zeros(x.shape + (256,))
        for r, row in enumerate(x):
            data = bytes(row.astype(np.uint8))
            gt = data.index(b">")
            for t in range(gt, x.shape[1]):
                j = t - gt
                byte = data[j] if j < gt else ord(" ")
                if gt > self.upto and j == gt - 1:
                    byte = (byte + 1) % 256
                out[r, t, byte] = 1.0
        return out


def test_evaluate_counts_per_size_and_depth():
    from tinype import ModelConfig, Transformer
    m = Echo(upto=4)
    m.pe = type("PE", (), {"check_length": lambda self, T: None})()
    cells = tasklab.evaluate(m, "copy", [2, 4, 6], 9, eval_seed=1)
    assert cells["2"] == {"correct": 9, "n": 9, "depths": {"None": 1.0}}
    assert cells["4"]["correct"] == 9 and cells["6"]["correct"] == 0
    model = Transformer(ModelConfig(pe="learned", T_train=32, n_layer=1, d_model=16, n_head=2), seed=0)
    cells = tasklab.evaluate(model, "passkey", [32, 33, 40], 3, eval_seed=1)
    assert cells["40"] is None and cells["33"] is not None           # learned reads 32 inputs at most
    assert cells["32"]["n"] == 3 * 5 and sorted(cells["32"]["depths"]) == sorted(map(str, get_task("passkey").depths))
    again = tasklab.evaluate(model, "passkey", [32], 3, eval_seed=1)
    assert again["32"] == cells["32"]


def _record(task, pe, seed, accs, lo=1, hi=2, n=10):
    return {"task": task, "pe": pe, "seed": seed, "train_sizes": [lo, hi], "examples": n,
            "accuracy": {str(s): (None if a is None else a) for s, a in accs.items()},
            "counts": {str(s): [round(a * n), n] for s, a in accs.items() if a is not None},
            "lengths": {str(s): 2 * s for s in accs}}


def test_tables_ranks_and_randomized_gain_by_hand(tmp_path):
    recs = [_record("copy", "rope", 0, {1: 1.0, 2: 0.8, 3: 0.2, 4: 0.0}),
            _record("copy", "rope", 1, {1: 1.0, 2: 1.0, 3: 0.4, 4: 0.2}),
            _record("copy", "randomized_rope", 0, {1: 1.0, 2: 1.0, 3: 0.6, 4: 0.4}),
            _record("copy", "randomized_rope", 1, {1: 0.8, 2: 1.0, 3: 0.8, 4: 0.6}),
            _record("copy", "learned", 0, {1: 1.0, 2: 1.0, 3: None, 4: None}),
            _record("copy", "learned", 1, {1: 1.0, 2: 1.0, 3: None, 4: None})]
    means = tasklab.split_means(recs)
    assert means["copy", "rope"]["in"] == pytest.approx([0.9, 1.0])
    assert means["copy", "rope"]["out"] == pytest.approx([0.1, 0.3])
    assert means["copy", "learned"]["out"] == [0.0, 0.0]                  # n/a counts as 0 beyond
    ranks = tasklab.mean_ranks(recs)
    # size 3: randomized 0.7 > rope 0.3 > learned 0; size 4: 0.5 > 0.1 > 0
    assert ranks == {"randomized_rope": 1.0, "rope": 2.0, "learned": 3.0}
    gains = tasklab.randomized_gains(recs)
    assert gains["randomized_rope"][0] == "rope"
    assert gains["randomized_rope"][1] == pytest.approx(100 * (0.6 - 0.2))
    assert "randomized_learned" not in gains
    text = tasklab.summary_section(recs)
    assert "| rope | 95.0 ± 5.0 |" in text and "| rope | 20.0 ± 10.0 |" in text
    assert "| randomized_rope | rope | +40.0 | 1 |" in text and "| learned | 3.00 |" in text
    tied = [_record("copy", "a", 0, {3: 0.5}), _record("copy", "b", 0, {3: 0.5}), _record("copy", "c", 0, {3: 0.0})]
    assert tasklab.mean_ranks(tied) == {"a": 1.5, "b": 1.5, "c": 3.0}
    section = tasklab.outputs(recs, str(tmp_path))
    assert section == text
    with open(tmp_path / "tasks.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == tasklab.CSV_COLUMNS and len(table) == 6 * 4
    row = next(r for r in table if r["pe"] == "rope" and r["seed"] == "0" and r["size"] == "3")
    assert row["in_range"] == "0" and float(row["accuracy"]) == pytest.approx(0.2)
    assert (float(row["ci_low"]), float(row["ci_high"])) == pytest.approx(tasklab.wilson_interval(2, 10), abs=1e-6)
    na = next(r for r in table if r["pe"] == "learned" and r["size"] == "4")
    assert na["accuracy"] == "" and na["n"] == "0"
    assert open(tmp_path / "tasks.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert tasklab.outputs([], str(tmp_path)) == ""


def test_plans_follow_the_preset():
    plans = tasklab.task_plans(list(TASKS), steps=7, examples=20)
    for plan in plans.values():
        task = plan.source.task
        lo, hi = plan.train_sizes
        assert lo == task.smallest and task.length(hi) - 1 <= plan.model_cfg.T_train
        assert max(plan.sizes) >= 4 * hi - 1 and hi in plan.sizes and plan.train_cfg.steps == 7
    assert plans["copy"].model_cfg.T_train == 21 and plans["passkey"].examples_per_depth() == 4
    assert plans["copy"].source.task.start == b"^" == plans["passkey"].source.task.start
    assert plans["passkey"].model_cfg.n_layer == 4 and plans["passkey"].train_sizes == (20, 64)
    assert plans["passkey"].model_cfg.n_head == 8 and plans["copy"].model_cfg.n_head == 4   # README: NoPE's passkey
    assert tasklab.task_plans(["copy"])["copy"].examples == 385
    with pytest.raises(ValueError, match="unknown task preset"):
        tasklab.task_plans(["copy"], preset="huge")


def test_a_randomized_encodings_test_key_names_its_test_positions():
    """Randomized positions are tested on the training draw since eval_positions_version 2: a test
    record made before must not be reused, and every other encoding's key stays as it was."""
    plan = tasklab.task_plans(["copy"], steps=3, examples=4)["copy"]
    assert tasklab.eval_fields(plan, "randomized_rope", "k", 2024)["eval_positions"] == 2
    assert tasklab.eval_fields(plan, "randomized_sinusoidal+logn", "k", 2024)["eval_positions"] == 2
    assert "eval_positions" not in tasklab.eval_fields(plan, "rope", "k", 2024)


@pytest.mark.parametrize("pes", [("alibi", "learned")])
def test_plan_to_csv_through_the_lab_jobs(tmp_path, pes):
    """The lab's plumbing without the runner: a 3-step training per encoding (lab.jobs.train_job),
    the test (lab.jobs.task_eval_job), then tasks.csv, tasks.png and the summary section."""
    from dataclasses import replace

    from tinype.config import RESULT_FORMAT, pe_identity
    from tinype.lab import jobs
    from tinype.lab.results import folder_name, run_key, train_key_fields
    plans = tasklab.task_plans(["copy", "addition_scratch"], steps=3, examples=4)
    records = []
    for name, plan in plans.items():
        for pe in pes:
            mcfg, tcfg = replace(plan.model_cfg, pe=pe), replace(plan.train_cfg, seed=0)
            fields = train_key_fields(mcfg.to_dict(), tcfg.to_dict(), plan.source.sha256,
                                      pe_identity(pe)["pe_code"], RESULT_FORMAT)
            key = {"key": run_key(fields), "fields": fields}
            run_dir = str(tmp_path / "tasks" / name / folder_name(pe, 0))
            job = {"label": f"{name} {pe}", "model_cfg": mcfg, "train_cfg": tcfg, "source": plan.source,
                   "run_dir": run_dir, "progress": False, "key": key}
            assert jobs.train_job(job) == (f"{name} {pe}", "trained")
            assert jobs.train_job(job) == (f"{name} {pe}", "skipped")
            efields = tasklab.eval_fields(plan, pe, key["key"], 2024)
            rec = jobs.task_eval_job({"pe": pe, "seed": 0, "trained": pe, "fields": efields,
                                      "key": run_key(efields), "path": str(tmp_path / f"{name}-{pe}.json"),
                                      "train_key": key, "run_dir": run_dir})
            assert rec["train_sizes"] == list(plan.train_sizes)
            assert set(rec["accuracy"]) == {str(s) for s in plan.sizes}
            records.append(rec)
    learned = next(r for r in records if r["pe"] == "learned" and r["task"] == "copy")
    assert learned["accuracy"]["40"] is None and learned["counts"]["10"][1] == 4
    section = tasklab.outputs(records, str(tmp_path))
    assert "### in distribution" in section and "addition_scratch (1..5)" in section
    with open(tmp_path / "tasks.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == sum(len(p.sizes) for p in plans.values()) * len(pes)
    assert {r["in_range"] for r in table} == {"0", "1"}
    assert os.path.getsize(tmp_path / "tasks.png") > 1000


def test_lab_runs_the_task_protocol(tmp_path):
    """run_lab with --tasks: the plans' models and sizes, tasks.csv, tasks.png and the summary
    section; a second invocation reuses everything."""
    from tinype.data import Corpus, default_corpus_text, encode
    from tinype.lab import LabConfig, run_lab
    corpus = Corpus(encode(default_corpus_text()[:30000]), name="small")
    cfg = LabConfig(pes=["learned", "alibi"], mults=[1, 2], steps=2, max_windows=1,
                    tasks=["passkey", "copy", "addition_scratch"], task_steps=3, task_examples=5, out=str(tmp_path))
    results, summary = run_lab(cfg, progress=False, log=lambda m: None, corpus=corpus)
    plans = tasklab.task_plans(cfg.tasks, steps=3, examples=5)
    recs = {(r["task"], r["pe"]): r for r in results["task_records"]}
    assert len(recs) == 6 and results["task_model"]["copy"]["T_train"] == plans["copy"].model_cfg.T_train
    for (task, _), r in recs.items():
        assert [int(s) for s in r["accuracy"]] == plans[task].sizes
        assert r["train_sizes"] == list(plans[task].train_sizes)
    assert recs["copy", "learned"]["accuracy"]["40"] is None and recs["copy", "alibi"]["accuracy"]["40"] is not None
    assert "### in distribution" in summary and "### mean rank" in summary
    with open(tmp_path / "tasks.csv") as f:
        assert len(list(csv.DictReader(f))) == 2 * sum(len(p.sizes) for p in plans.values())
    assert open(tmp_path / "tasks.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    again, _ = run_lab(cfg, progress=False, log=lambda m: None, corpus=corpus)
    assert again["task_records"] == results["task_records"]


def test_tasks_only_lab_trains_no_language_model(tmp_path):
    """language_models=False (--tasks-only): the task models and their outputs, no language model,
    no perplexity table or figure; the start byte of the preset reaches the test (its key and data)."""
    from tinype.data import Corpus, default_corpus_text, encode
    from tinype.lab import LabConfig, run_lab
    corpus = Corpus(encode(default_corpus_text()[:30000]), name="small")
    cfg = LabConfig(pes=["alibi"], mults=[1], tasks=["copy"], task_steps=2, task_examples=3,
                    language_models=False, out=str(tmp_path))
    results, summary = run_lab(cfg, progress=False, log=lambda m: None, corpus=corpus)
    assert results["records"] == [] and len(results["task_records"]) == 1
    assert not (tmp_path / "train").exists() and not (tmp_path / "eval").exists()
    assert not (tmp_path / "ppl_vs_length.png").exists() and (tmp_path / "tasks.csv").exists()
    assert "No language models" in summary and "## nonoverlap" not in summary and "### in distribution" in summary
    assert summary.startswith("# tinype lab: the task protocol, task preset paper") and "Perplexity" not in summary
    assert "trained on sizes 1..10 (letters)" in summary
    rec = results["task_records"][0]
    plan = tasklab.task_plans(["copy"], steps=2, examples=3)["copy"]
    assert rec["key_fields"]["start"] == plan.source.task.start.decode("latin-1")
    assert rec["lengths"]["10"] == plan.source.task.length(10) - 1


def test_rank_of_several_runs_equals_the_labs(tmp_path, capsys, task_search):
    """scripts/task_search.py rank over two runs' tasks.csv gives mean_ranks of their records together."""
    script = task_search
    a = [_record("copy", "rope", 0, {1: 1.0, 2: 0.8, 3: 0.2, 4: 0.0}),
         _record("copy", "alibi", 0, {1: 1.0, 2: 1.0, 3: 0.6, 4: 0.1})]
    b = [_record("copy", "nope", 0, {1: 1.0, 2: 1.0, 3: 0.9, 4: 0.0}),
         _record("sort", "nope", 0, {1: 1.0, 2: 1.0, 3: 0.5}), _record("sort", "rope", 0, {1: 1.0, 2: 1.0, 3: 0.7})]
    tasklab.write_csv(str(tmp_path / "a.csv"), a)
    tasklab.write_csv(str(tmp_path / "b.csv"), b)
    script.main(["rank", str(tmp_path / "a.csv"), str(tmp_path / "b.csv")])
    printed = {line.split()[0]: float(line.split()[1]) for line in capsys.readouterr().out.splitlines()[1:]}
    # copy 3: nope 0.9 > alibi 0.6 > rope 0.2; copy 4: alibi 0.1 > rope = nope 0; sort 3: rope 0.7 > nope 0.5
    assert printed == pytest.approx(tasklab.mean_ranks(a + b), abs=0.005)           # printed to 2 decimals
    assert printed == pytest.approx({"nope": (1 + 2.5 + 2) / 3, "alibi": 1.5, "rope": (3 + 2.5 + 1) / 3}, abs=0.005)
    with pytest.raises(SystemExit, match="in another of the files"):
        script.main(["rank", str(tmp_path / "a.csv"), str(tmp_path / "a.csv")])
