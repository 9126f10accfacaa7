"""Proof that the exercise grader grades: it passes the reference solutions, fails every untouched stub
with a "not done yet" message naming the exercise, and fails a deliberately wrong answer with the input,
the expected and the received values."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRADE = os.path.join(ROOT, "chapters", "exercises", "grade.py")
N_EXERCISES = 16


def grade(*args):
    r = subprocess.run([sys.executable, GRADE, *args], capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout + r.stderr


def test_there_are_enough_exercises_and_each_stub_names_itself():
    stubs = sorted(f for f in os.listdir(os.path.join(ROOT, "chapters", "exercises")) if f[:2] == "ex")
    sols = sorted(f for f in os.listdir(os.path.join(ROOT, "chapters", "exercises", "solutions")) if f[:2] == "ex")
    assert len(stubs) == N_EXERCISES >= 15 and stubs == sols
    for f in stubs:
        text = open(os.path.join(ROOT, "chapters", "exercises", f)).read()
        assert f"raise NotImplementedError(\"exercise {f[:4]}" in text


def test_grader_passes_the_reference_solutions():
    rc, out = grade("--dir", os.path.join(ROOT, "chapters", "exercises", "solutions"))
    assert rc == 0, out
    assert f"{N_EXERCISES} of {N_EXERCISES} exercises pass" in out


def test_grader_fails_every_untouched_stub():
    rc, out = grade()
    assert rc == 1, out
    assert f"0 of {N_EXERCISES} exercises pass" in out
    assert out.count(": not done yet (") == N_EXERCISES


def test_grader_fails_a_wrong_answer_and_says_why():
    rc, out = grade("ex01", "--dir", os.path.join(ROOT, "tests", "wrong_exercises"))
    assert rc == 1, out
    assert "the table is wrong" in out and "expected" in out and "received" in out and "input:" in out
    assert "0 of 1 exercises pass" in out


def test_grader_rejects_an_unknown_exercise():
    rc, out = grade("ex99")
    assert rc != 0 and "unknown or ambiguous exercise" in out
