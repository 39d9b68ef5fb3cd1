"""``botyard bench`` on a tiny synthetic copy of the CLINC150 / HWU64 file layouts.

Runs every data suite in-process with the ``--quick`` model (figures are meaningless; the
files written and their shape are what is checked).
"""

from __future__ import annotations

import json

import pytest

from botyard.components.base.errors import ConfigError, DataValidationError
from botyard.pipelines.bench import harness
from botyard.pipelines.cli import main

INTENTS = {
    "money": ["balance", "transfer"],
    "food": ["recipe", "restaurant"],
}
WORDS = {
    "balance": "how much money is in my account balance",
    "transfer": "send a transfer of cash to my friend",
    "recipe": "how do i cook a recipe for pasta",
    "restaurant": "book a table at a restaurant tonight",
    "oos": "what is the airspeed of a swallow",
}


def _rows(intent: str, n: int, offset: int) -> list[list[str]]:
    return [[f"{WORDS[intent]} {i + offset}", intent] for i in range(n)]


@pytest.fixture()
def data_dir(tmp_path):
    root = tmp_path / "data"
    (root / "clinc150").mkdir(parents=True)
    (root / "hwu64").mkdir()
    intents = [i for group in INTENTS.values() for i in group]
    full = {
        "train": [r for i in intents for r in _rows(i, 12, 0)],
        "val": [r for i in intents for r in _rows(i, 4, 100)],
        "test": [r for i in intents for r in _rows(i, 4, 200)],
        "oos_train": _rows("oos", 6, 0),
        "oos_val": _rows("oos", 3, 100),
        "oos_test": _rows("oos", 5, 200),
    }
    (root / "clinc150" / "data_full.json").write_text(json.dumps(full))
    (root / "clinc150" / "domains.json").write_text(json.dumps(INTENTS))
    for name, n, offset in (("train", 12, 0), ("test", 4, 200)):
        lines = [json.dumps({"text": u, "intent": f"hwu_{i}", "entities": []}) for i in intents for u, _ in _rows(i, n, offset)]
        (root / "hwu64" / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_bench_writes_and_merges_results(data_dir, tmp_path, monkeypatch):
    import tempfile

    out = tmp_path / "bench"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # what anything writes to the system temp folder lands here
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(harness.DATA_ENV, str(data_dir))
    args = ["bench", "--quick", "--in-process", "--output-dir", str(out), "--latency-calls", "20"]
    assert main(args + ["--suite", "clinc150-full", "--suite", "clinc150-bots", "--max-bots", "1"]) == 0
    first = json.loads((out / harness.RESULTS_JSON).read_text())
    assert list(first["suites"]) == ["clinc150-full", "clinc150-bots"]
    full = first["suites"]["clinc150-full"]
    assert set(full["systems"]) == {harness.LSTM, harness.BASELINE}
    for figures in full["systems"].values():
        for key in ("in_scope_accuracy", "oos_recall", "macro_f1", "train_seconds", "peak_rss_mb", "model_mb",
                    "latency_p50_ms", "latency_p99_ms", "batch64_per_s"):
            assert isinstance(figures[key], float), key
        assert 0.0 <= figures["in_scope_accuracy"] <= 1.0
    assert full["train_config"]["lstm_units"] == harness.QUICK_TRAIN_CONFIG["lstm_units"]
    assert [t["figure"] for t in full["targets"]] == ["in_scope_accuracy", "oos_recall", "train_seconds", "latency_p50_ms"]
    bots = first["suites"]["clinc150-bots"]
    assert list(bots["per_bot"]) == ["food"]  # domains in sorted order, the first one only
    assert "max_train_seconds" in bots["systems"][harness.LSTM]

    # a second run of one suite keeps the figures of the others
    assert main(args + ["--suite", "hwu64", "--set", "epochs=1"]) == 0
    merged = json.loads((out / harness.RESULTS_JSON).read_text())
    assert list(merged["suites"]) == ["clinc150-full", "clinc150-bots", "hwu64"]
    assert merged["suites"]["clinc150-full"] == full
    hwu = merged["suites"]["hwu64"]
    assert hwu["train_config"]["epochs"] == 1
    assert "oos_recall" not in hwu["systems"][harness.LSTM] and "accuracy" in hwu["systems"][harness.BASELINE]

    report = (out / harness.RESULTS_MD).read_text()
    for text in ("## clinc150-full", "## clinc150-bots", "## hwu64", "BiLSTM (botyard)", "TF-IDF + LogReg",
                 "In-scope accuracy (threshold applied)", "Batch-1 latency p50 (ms)", "| food |", "Targets:"):
        assert text in report, text
    # every file the suites wrote (theirs and their libraries' scratch files) stayed under --output-dir
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench", "data", "tmp"]
    assert list(scratch.iterdir()) == []
    assert {p.name for p in out.iterdir()} == {harness.RESULTS_JSON, harness.RESULTS_MD}


def test_missing_suite_module_fails_only_when_selected(tmp_path, monkeypatch):
    monkeypatch.setitem(harness.SUITES, "ghost", harness.Suite("ghost", "botyard.pipelines.bench.no_such_module:run", "absent", False))
    assert "ghost" not in harness.default_suites()
    with pytest.raises(ConfigError, match=r"bench suite 'ghost' needs module botyard\.pipelines\.bench\.no_such_module"):
        harness.run_bench(["ghost"], harness.BenchContext(data_dir=str(tmp_path), output_dir=str(tmp_path / "out")), isolate=False)
    with pytest.raises(ConfigError, match="unknown bench suite 'nope'"):
        harness.resolve_suite("nope")


def test_data_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv(harness.DATA_ENV, str(tmp_path))
    assert harness.resolve_data_dir() == tmp_path
    assert harness.resolve_data_dir(str(tmp_path)) == tmp_path
    with pytest.raises(DataValidationError, match="does not exist; pass --data-dir"):
        harness.resolve_data_dir(str(tmp_path / "missing"))


def test_merge_replaces_only_the_suites_run():
    existing = {"suites": {"hwu64": {"systems": {}}, "custom": {"x": 1}}}
    merged = harness.merge_results(existing, {"clinc150-full": {"systems": {}}})
    assert list(merged["suites"]) == ["clinc150-full", "hwu64", "custom"]
    assert merged["suites"]["custom"] == {"x": 1}
    assert "| x | 1.000 |" in harness.render_markdown(merged)


def test_config_overrides():
    config = harness.train_config_with({"epochs": 3}, quick=True)
    assert config.epochs == 3 and config.lstm_units == harness.QUICK_TRAIN_CONFIG["lstm_units"]
    with pytest.raises(ConfigError, match="unknown field"):
        harness.train_config_with({"nope": 1})


def test_data_dir_defaults_to_shared_data_beside_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(harness.DATA_ENV, raising=False)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert harness.resolve_data_dir().resolve() == (tmp_path / "shared" / "data").resolve()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataValidationError, match=r"bench data folder \.\./shared/data does not exist"):
        harness.resolve_data_dir()


def test_percentile_is_the_nearest_rank():
    from botyard.pipelines.bench.stats import percentile

    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert [percentile(values, q) for q in (0.0, 0.5, 0.99, 1.0)] == [1.0, 3.0, 5.0, 5.0]
    with pytest.raises(ValueError, match="percentile of no values"):
        percentile([], 0.5)


def tiny_suite(output_dir: str) -> dict:
    return {"description": "a suite without data", "figure": 1.0}


def test_suites_without_data_need_no_data_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(harness.DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # no ../shared/data here
    monkeypatch.setitem(harness.SUITES, "tiny", harness.Suite("tiny", "test_bench:tiny_suite", "no data", takes_context=False))
    assert main(["bench", "--in-process", "--suite", "tiny", "--output-dir", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / harness.RESULTS_JSON).read_text())["suites"]["tiny"]["figure"] == 1.0
