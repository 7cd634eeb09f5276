"""The notebooks run top to bottom (nbclient, tiny settings), so they cannot rot."""

import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_notebooks_the_readme_names_are_there():
    """Every notebook in notebooks/ runs below (found, not listed); the README says which there are."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    named = {n for line in readme.splitlines() if "notebooks/" in line for n in re.findall(r"\b\d\d-[a-z0-9-]+", line)}
    assert NOTEBOOKS and named <= {p.stem for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("ARCHSEARCH_NOTEBOOK_TINY", "1")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "best" in text  # the training cells ran and printed accuracies
