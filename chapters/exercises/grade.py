"""Grade the exercises in this folder.

    python chapters/exercises/grade.py              # every exercise
    python chapters/exercises/grade.py ex04 ex05    # some of them (ex04, 4, or a name like apply_rope)
    python chapters/exercises/grade.py --dir DIR    # grade the files in another folder

Each exercise is a test in tests/test_exercises.py (marker exNN) that compares your function with
tinype's own implementation; a failure says which input, what was expected, what was received.
"""
import argparse
import glob
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def exercises(folder):
    """{"ex01": "ex01_sinusoidal_table", ...} from the stubs beside this script."""
    return {os.path.basename(p)[:4]: os.path.basename(p)[:-3]
            for p in sorted(glob.glob(os.path.join(HERE, "ex[0-9][0-9]_*.py")))}


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
    args = parser.parse_args(argv)
    known = exercises(HERE)
    chosen = resolve(args.names, known) if args.names else list(known)
    folder = os.path.abspath(args.dir)
    if not os.path.isdir(folder):
        raise SystemExit(f"grade: no folder {folder}")
    env = dict(os.environ, TINYPE_EXERCISES=folder)
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
        print(f"{mark:7s} {known[ex]}")
    for ex, text in failures:
        print(f"\n--- {known[ex]} ---\n{text.strip()}")
    print(f"\n{len(passed)} of {len(chosen)} exercises pass (graded: {folder})")
    return 0 if len(passed) == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
