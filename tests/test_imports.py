"""The package's import graph has no cycle, and every module imports on its own (issue 13, point 2).

The graph counts every explicit import, at module level and inside functions alike (a function-level
import that closes a cycle is still a cycle: it only moves the failure to run time)."""
import ast
import os
import subprocess
import sys
import time

import pytest

import tinype

ROOT = os.path.dirname(os.path.abspath(tinype.__file__))


def _modules():
    """{dotted name: path} of every .py module of the package."""
    mods = {}
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith((".so", ".pyd")):                # a compiled extension: a leaf of the graph
                rel = os.path.relpath(os.path.join(folder, f.split(".")[0]), os.path.dirname(ROOT)).split(os.sep)
                mods.setdefault(".".join(rel), None)
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), os.path.dirname(ROOT))[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                mods[".".join(rel)] = os.path.join(folder, f)
    return mods


def _imports(name, path, mods):
    """The package modules `name` imports explicitly (resolved to the most specific module)."""
    is_pkg = path.endswith("__init__.py")
    package = name if is_pkg else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in mods:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))
    sys.setrecursionlimit(max(1000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package():
    mods = _modules()
    graph = {m: (_imports(m, p, mods) if p else set()) for m, p in mods.items()}
    assert "tinype.lab.results" in graph["tinype.plots"]            # plots reads the lab's results ...
    assert "tinype.plots" not in graph["tinype.lab.results"]        # ... which do not draw
    assert _cycles(graph) == []


def test_every_module_imports_first_in_a_fresh_interpreter():
    """Each module imported first, alone: an order-dependent partial import would fail here."""
    names = sorted(m for m, p in _modules().items() if p)
    code = "import importlib, sys\nimportlib.import_module(sys.argv[1])\nprint('ok')"
    bad, procs = [], []
    for n in names:                                  # a few at a time: each is one fresh interpreter
        procs.append((n, subprocess.Popen([sys.executable, "-c", code, n], stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True)))
        while sum(p.poll() is None for _, p in procs) >= 4:
            time.sleep(0.02)
    for n, p in procs:
        out, err = p.communicate(timeout=120)
        if p.returncode != 0 or out.strip() != "ok":
            bad.append((n, err.strip().splitlines()[-1:] if err else out))
    assert not bad, bad


@pytest.mark.parametrize("name,owner", [("evaluate_at_lengths", "tinype.evaluate"), ("load_model", "tinype.checkpoint"),
                                        ("write_json", "tinype.checkpoint"), ("read_json", "tinype.checkpoint")])
def test_functions_live_where_they_belong(name, owner):
    import importlib
    assert getattr(importlib.import_module(owner), name).__module__ == owner
    lab_src = open(os.path.join(ROOT, "lab", "runner.py")).read() + open(os.path.join(ROOT, "lab", "jobs.py")).read()
    assert "from ..train import CKPT_NAME" not in lab_src and "passkey\"" not in lab_src
