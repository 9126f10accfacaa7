"""Grade the exercises: your functions against tinype, with a message that teaches when one is wrong.

    python chapters/exercises/grade.py              # every exercise, in path order
    python chapters/exercises/grade.py ex06 ex12    # some of them (ex06, 6, or a name like rope_backward)
    python chapters/exercises/grade.py --dir DIR    # grade YOUR folder (a copy of this one, say)
    python chapters/exercises/grade.py --list       # the path: number, level, chapter section

Each exercise is a test in tests/test_exercises.py (marker exNN). A failure prints the relative
error and the tolerance, a one-line command that reproduces the failing call exactly, the worst
entry, and a hint when your answer matches a classic mistake (the forward instead of the
backward, a transposed result, the opposite sign, a missing 1/sqrt(D) ...).
Once pieces pass, tinype can run on them: tinype.use_exercises(DIR) or TINYPE_EXERCISES=DIR.
"""
import argparse
import glob
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
#: the machine-readable pointer every stub carries on its own line
POINTER = re.compile(r'^Read first: (chapters/ch\d_[a-z0-9_]+\.py), section "([^"]+)"$', re.M)
LEVEL = re.compile(r'^"""Exercise (\d\d) \((warm-up|core|challenge)\): (.+?)\.$', re.M)


def exercises():
    """{"ex01": "ex01_sinusoidal_table", ...} from the stubs beside this script, in path order."""
    return {os.path.basename(p)[:4]: os.path.basename(p)[:-3]
            for p in sorted(glob.glob(os.path.join(HERE, "ex[0-9][0-9]_*.py")))}


def describe(stem):
    """(level, "chapters/chN_x.py, section \"Title\"") of a stub."""
    text = open(os.path.join(HERE, stem + ".py"), encoding="utf-8").read()
    level, pointer = LEVEL.search(text), POINTER.search(text)
    return (level.group(2) if level else "?",
            f'{pointer.group(1)}, section "{pointer.group(2)}"' if pointer else "?")


def resolve(names, known):
    chosen = []
    for name in names:
        name = name.strip().lower().removesuffix(".py")
        if re.fullmatch(r"\d{1,2}", name):
            name = f"ex{int(name):02d}"
        hits = [k for k, stem in known.items() if name in (k, stem) or (len(name) > 3 and name in stem)]
        if len(hits) != 1:
            raise SystemExit(f"grade: unknown or ambiguous exercise {name!r}; choose from: "
                             + ", ".join(known.values()))
        chosen.append(hits[0])
    return chosen


def main(argv=None):
    parser = argparse.ArgumentParser(description="Grade tinype's exercises with the test suite.")
    parser.add_argument("names", nargs="*", help="exercises to grade (default: all)")
    parser.add_argument("--dir", default=HERE, help="folder holding your exNN_*.py files (default: this one)")
    parser.add_argument("--list", action="store_true", help="print the path of exercises and exit")
    args = parser.parse_args(argv)
    known = exercises()
    if args.list:
        for stem in known.values():
            level, pointer = describe(stem)
            print(f"{stem:32s} {level:9s} {pointer}")
        return 0
    chosen = resolve(args.names, known) if args.names else list(known)
    folder = os.path.abspath(args.dir)
    if not os.path.isdir(folder):
        raise SystemExit(f"grade: no folder {folder}")
    env = dict(os.environ, TINYPE_GRADE_DIR=folder)
    env.pop("TINYPE_EXERCISES", None)        # the grader compares your pieces with tinype's OWN
    cmd = [sys.executable, "-m", "pytest", os.path.join(ROOT, "tests", "test_exercises.py"), "-v",
           "-p", "no:cacheprovider", "--no-header", "-rN", "--tb=short", "-m", " or ".join(chosen)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if r.returncode not in (0, 1):                        # not a failing test: pytest itself broke
        print(r.stdout + r.stderr)
        return r.returncode
    passed = set(re.findall(r"test_(ex\d\d)_\w+ PASSED", r.stdout))
    failures = re.findall(r"_{3,} test_(ex\d\d)_\w+ _{3,}\n(.*?)(?=\n_{3,} |\n={3,})", r.stdout, flags=re.S)
    for ex in chosen:
        mark = "passed" if ex in passed else "FAILED"
        level, pointer = describe(known[ex])
        print(f"{mark:7s} {known[ex]:32s} {level:9s} {pointer}")
    for ex, text in failures:
        level, pointer = describe(known[ex])
        print(f"\n--- {known[ex]} ({level}; read first: {pointer}) ---\n{text.strip()}")
    print(f"\n{len(passed)} of {len(chosen)} exercises pass (graded: {folder})")
    return 0 if len(passed) == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
