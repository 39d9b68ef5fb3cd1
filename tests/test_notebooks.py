"""Every notebook runs top to bottom (its code cells, in order, in one namespace) on the sample bot."""

from __future__ import annotations

import json

import pytest

from conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, monkeypatch):
    monkeypatch.setenv("BOTYARD_NOTEBOOK_QUICK", "1")
    notebook = json.loads(path.read_text())
    namespace: dict = {}
    for n, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert not cell.get("outputs"), f"{path.name} cell {n}: commit notebooks without outputs"
        exec(compile("".join(cell["source"]), f"{path.name}[cell {n}]", "exec"), namespace)
    assert namespace["evaluation"].confusion.sum() == len(namespace["parts"]["test"])


def test_there_is_a_notebook():
    assert NOTEBOOKS
