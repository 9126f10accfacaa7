"""Every chapter, opened as a notebook and executed top to bottom in a real Jupyter kernel.

The chapters are jupytext percent scripts; here each one is read into a notebook (markdown cells
stay markdown, `# %%` cells become code cells) and run by nbclient in a fresh ipykernel, with the
chapters folder as the working directory, as a learner who opens it in Jupyter would. A cell that
raises fails the test and names the cell. Needs the optional `notebooks` extra
(`pip install -e '.[notebooks]'`: jupytext, nbclient, ipykernel); skipped without it. Each chapter
takes one to three minutes on two cores, so this file is most of the suite's time when it runs.
"""
import glob
import os

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHAPTERS = sorted(glob.glob(os.path.join(ROOT, "chapters", "ch[1-9]_*.py")))


@pytest.mark.notebook
@pytest.mark.parametrize("path", CHAPTERS, ids=[os.path.basename(p)[:3] for p in CHAPTERS])
def test_chapter_runs_as_a_notebook(path, tmp_path, monkeypatch):
    nb = jupytext.read(path)
    kinds = [cell.cell_type for cell in nb.cells]
    assert kinds.count("markdown") >= 3 and kinds.count("code") >= 1, "percent cells did not become a notebook"
    monkeypatch.setenv("TINYPE_FIGURES", str(tmp_path))       # figures out of the work tree
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": os.path.dirname(path)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{os.path.basename(path)} fails as a notebook:\n{str(err)[-3000:]}")
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    printed = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "[yes]" in printed or "[NO ]" in printed, "the chapter printed none of its checks"
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure was shown in the notebook"
