"""The chapters are percent scripts, run by hand, all at once by `bash .ci/chapters`, or as notebooks by
tests/test_notebooks.py (each takes 1-3 minutes). Here, fast: all nine exist, compile, are notebooks in
percent format, give the articles' section titles, teach in markdown (at least half of their non-blank
lines, with display formulas), save figures, and use only tinype's public modules."""
import ast
import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TITLES = ["背景介绍", "核心概念与联系", "核心算法原理具体操作步骤", "数学模型和公式详细讲解举例说明",
          "项目实践：代码实例和详细解释说明", "实际应用场景", "工具和资源推荐", "总结：未来发展趋势与挑战",
          "附录：常见问题与解答"]


def chapters():
    return sorted(glob.glob(os.path.join(ROOT, "chapters", "ch[1-9]_*.py")))


def test_nine_chapters():
    assert [int(re.search(r"ch(\d)_", p).group(1)) for p in chapters()] == list(range(1, 10))


@pytest.mark.parametrize("n", range(1, 10))
def test_chapter_compiles_and_is_a_notebook(n):
    path = chapters()[n - 1]
    text = open(path, encoding="utf-8").read()
    tree = ast.parse(text)
    assert text.startswith("# %% [markdown]") and text.count("# %%") >= 3
    assert TITLES[n - 1] in text.splitlines()[1], "the heading gives the articles' section title"
    assert f'figure_dir("ch{n}")' in text and ("savefig(" in text or "run_lab(" in text)
    imported = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"numpy", "tinype", "common", "json", "os", "re", "tempfile", "time", "dataclasses", "torch",
                        "inspect"}


def prose_share(text):
    """(markdown lines, code lines, display formulas) over non-blank lines, cell markers excluded."""
    md = code = dollars = 0
    in_md = False
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("# %%"):
            in_md = "[markdown]" in s
        elif in_md:
            md += 1
            dollars += s.count("$$")
        else:
            code += 1
    return md, code, dollars // 2


@pytest.mark.parametrize("n", range(1, 10))
def test_chapter_teaches_in_markdown(n):
    text = open(chapters()[n - 1], encoding="utf-8").read()
    md, code, formulas = prose_share(text)
    assert md >= code, f"ch{n}: markdown is {md} of {md + code} non-blank lines; it must be at least half"
    assert formulas >= 1, f"ch{n} derives no display formula ($$ ... $$)"


def test_prose_share_counts_what_it_claims():
    md, code, formulas = prose_share("# %% [markdown]\n# text\n# $$a = b$$\n\n# %%\nx = 1\n")
    assert (md, code, formulas) == (2, 1, 1)


POINTER = re.compile(r'^Read first: (chapters/ch\d_[a-z0-9_]+\.py), section "([^"]+)"$', re.M)


def test_every_exercise_points_at_a_section_that_exists():
    """Each stub's `Read first:` line names a chapter file and the title of one of its markdown headings
    (`# ## 3.4 Softmax backward`: the number is the chapter's, the title the pointer's)."""
    stubs = sorted(glob.glob(os.path.join(ROOT, "chapters", "exercises", "ex[0-9][0-9]_*.py")))
    assert len(stubs) >= 20
    missing = []
    for stub in stubs:
        found = POINTER.findall(open(stub, encoding="utf-8").read())
        assert len(found) == 1, f"{os.path.basename(stub)} has {len(found)} 'Read first:' pointers"
        chapter, title = found[0]
        text = open(os.path.join(ROOT, chapter), encoding="utf-8").read()
        heading = re.compile(r"^# #{2,3} [\d.]*\s*" + re.escape(title) + r"\s*$", re.M)
        if not heading.search(text):
            missing.append(f"{os.path.basename(stub)} -> {chapter}, \"{title}\"")
    assert not missing, "pointers to sections that do not exist: " + "; ".join(missing)
