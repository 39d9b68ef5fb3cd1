"""The notebooks: committed without outputs, and each runs top to bottom on the sample bot.

They run through papermill in a real Jupyter kernel (the ``botyard`` kernel that ``make
notebooks`` registers, here registered under ``tmp_path``), with the parameters a user would
pass (``papermill NOTEBOOK OUT -p NAME VALUE``), so a cell that raises fails the test with the
cell's traceback. Jupyter, IPython and matplotlib keep their files under ``tmp_path`` too.

The README's notebook pictures are the main plots these runs save with ``FIGURES_DIR``;
regenerate them with ``make notebook-images``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

import pytest

from conftest import REPO, SAMPLE_BOT
from botyard.pipelines.bench.kfp_stub import FakeKfp

NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL = "botyard"  # the kernel `make notebooks` registers, and every notebook's kernelspec
# notebook -> the main plot it saves under FIGURES_DIR (README pictures: notebooks/images/)
MAIN_PLOTS = {
    "01_explore_bot.ipynb": "01_explore_bot.png",
    "02_train_and_inspect.ipynb": "02_train_and_inspect.png",
    "03_compare_versions.ipynb": "03_compare_versions.png",
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _tagged(cell, tag: str) -> bool:
    return tag in cell.get("metadata", {}).get("tags", [])


def _text(notebook) -> str:
    """Everything the executed notebook's cells printed or displayed as text."""
    parts = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            if output["output_type"] == "stream":
                parts.append("".join(output["text"]))
            elif "data" in output:
                parts.append("".join(output["data"].get("text/markdown", output["data"].get("text/plain", ""))))
    return "\n".join(parts)


# --- the committed files -------------------------------------------------------------------------


def test_the_three_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == list(MAIN_PLOTS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    for n, cell in enumerate(_cells(path)):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, (
                f"{path.name} cell {n} has outputs: clear them before committing "
                "(Jupyter: Edit > Clear Outputs of All Cells)"
            )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_one_parameters_cell_names_the_bot_and_the_kernel_is_botyards(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    assert notebook["metadata"]["kernelspec"]["name"] == KERNEL
    parameters = [cell for cell in notebook["cells"] if _tagged(cell, "parameters")]
    assert len(parameters) == 1, f"{path.name}: one cell tagged 'parameters' (the one a user changes)"
    source = "".join(parameters[0]["source"])
    assert "BOT_DATA = None" in source and "FIGURES_DIR = None" in source


def test_the_readme_links_every_notebook_with_its_picture():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for notebook, picture in MAIN_PLOTS.items():
        assert f"(notebooks/{notebook})" in readme
        assert f"(notebooks/images/{picture})" in readme
        image = NOTEBOOK_DIR / "images" / picture
        assert image.read_bytes()[:8] == PNG_SIGNATURE and image.stat().st_size < 100_000


# --- running them --------------------------------------------------------------------------------


@pytest.fixture
def jupyter(tmp_path, monkeypatch):
    """A Jupyter setup under ``tmp_path`` with the ``botyard`` kernel registered, as ``make notebooks`` does."""
    if os.environ.get("CI"):
        import papermill  # CI installs the dev extra: a missing notebook tool fails here, never skips
    else:
        papermill = pytest.importorskip("papermill", reason="the notebook tools are in the dev extra: pip install -e '.[dev]'")
    from ipykernel.kernelspec import install

    home = tmp_path / "jupyter"
    install(kernel_name=KERNEL, display_name="botyard (.venv)", prefix=str(home))
    monkeypatch.setenv("JUPYTER_PATH", str(home / "share" / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(home / "runtime"))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(home / "config"))
    monkeypatch.setenv("IPYTHONDIR", str(home / "ipython"))
    monkeypatch.setenv("MPLCONFIGDIR", str(home / "matplotlib"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)  # the cluster cells are skipped unless a test sets it
    monkeypatch.delenv("BOTYARD_MODELS_ROOT", raising=False)
    monkeypatch.delenv("BOTYARD_DATA_URI", raising=False)

    def execute(path, parameters: dict, name: str = "out.ipynb"):
        started = time.perf_counter()
        notebook = papermill.execute_notebook(
            str(path), str(tmp_path / name), parameters=parameters, cwd=str(NOTEBOOK_DIR),
            progress_bar=False, log_output=False, execution_timeout=600,
        )
        print(f"{path.name}: {time.perf_counter() - started:.1f}s", file=sys.stderr)
        return notebook

    return execute


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom_on_the_sample_bot(path, jupyter, tmp_path):
    """Default parameters (the sample bot) except where the files go; the main plot is saved."""
    parameters = {"FIGURES_DIR": str(tmp_path / "images")}
    if path.name != "01_explore_bot.ipynb":
        parameters["WORK_DIR"] = str(tmp_path / "work")
    notebook = jupyter(path, parameters)

    picture = tmp_path / "images" / MAIN_PLOTS[path.name]
    assert picture.read_bytes()[:8] == PNG_SIGNATURE
    text = _text(notebook)
    models = tmp_path / "work" / "models" / "sample-bot"
    if path.name == "01_explore_bot.ipynb":
        assert "286 utterances, 13 intents" in text
        assert "Training data validation: passed" in text
        assert "0 utterance(s) with conflicting labels" in text
        assert "pair(s) at similarity >= 0.6" in text
        assert "order_number" in text  # the entity table (the sample bot annotates six types)
        assert "0 value(s) left unmarked in 0 place(s)" in text  # the sample bot marks its values consistently
    elif path.name == "02_train_and_inspect.ipynb":
        assert "Accuracy **" in text and "out-of-scope threshold **" in text
        assert "**can I get a large oat latte** → **" in text  # the interactive cell answered
        # with the entities the predictor returns (the sample bot's version has a tagger), offsets into the utterance
        [found] = re.findall(r"^entities: (.*)$", text, flags=re.M)
        spans = re.findall(r"(\w+) '([^']*)' at (\d+):(\d+)", found)
        assert spans, found
        assert all("can I get a large oat latte"[int(start):int(end)] == value for _, value, start, end in spans), spans
        assert len([v for v in os.listdir(models) if v[0].isdigit()]) == 1
    else:
        versions = sorted(v for v in os.listdir(models) if v[0].isdigit())
        assert len(versions) == 2  # the live version trained in the notebook and the pipeline's candidate
        assert "Pipeline bot-training finished with status SUCCESS" in text
        assert "gate: BLESSED" in text or "gate: NOT BLESSED" in text
        assert "skipped: no KFP endpoint configured" in text
        assert len(os.listdir(tmp_path / "work" / "runs")) == 2  # one run folder and its log


@pytest.mark.slow
def test_the_cluster_cells_submit_to_a_configured_kfp_endpoint(jupyter, tmp_path):
    """Notebook 3's cluster cells alone (with its parameters and setup cells), against the KFP API fake."""
    import nbformat

    source = NOTEBOOK_DIR / "03_compare_versions.ipynb"
    notebook = nbformat.read(source, as_version=4)
    notebook.cells = [cell for cell in notebook.cells if any(_tagged(cell, t) for t in ("parameters", "setup", "cluster"))]
    assert sum(_tagged(cell, "cluster") for cell in notebook.cells) == 2
    trimmed = tmp_path / "cluster.ipynb"
    nbformat.write(notebook, trimmed)

    with FakeKfp() as kfp:
        executed = jupyter(trimmed, {
            "KFP_HOST": kfp.url,
            "CLUSTER_DATA_URI": str(SAMPLE_BOT / "nlu.yml"),  # absolute: a path on a volume the pods mount
            "CLUSTER_MODELS_ROOT": str(tmp_path / "models"),
            "WORK_DIR": str(tmp_path / "work"),
        }, name="cluster-out.ipynb")
        runs = list(kfp.runs.values())
    assert not kfp.crashes, kfp.crashes
    assert len(runs) == 1
    run = runs[0]
    assert run["runtime_config"]["parameters"] == {
        "bot_id": "sample-bot", "data_uri": str(SAMPLE_BOT / "nlu.yml"), "models_root": str(tmp_path / "models"),
    }
    assert run["display_name"].startswith("sample-bot notebook data=")
    text = _text(executed)
    assert f"started run {run['run_id']} ({run['display_name']}) in experiment bot-sample-bot" in text
    assert f"run {run['run_id']}: pending" in text  # read back: the fake leaves a new run pending
    assert "skipped" not in text
