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


def _number_span(text: str) -> dict:
    """HWU64 rows carry entity spans: the utterance's closing number as a ``number`` entity."""
    value = text.rsplit(" ", 1)[1]
    return {"entity": "number", "value": value, "start": len(text) - len(value), "end": len(text)}


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
    for name in ("data_full.json", "data_small.json", "data_imbalanced.json"):
        (root / "clinc150" / name).write_text(json.dumps(full))
    (root / "clinc150" / "domains.json").write_text(json.dumps(INTENTS))
    for name, n, offset in (("train", 12, 0), ("test", 4, 200)):
        lines = [json.dumps({"text": u, "intent": f"hwu_{i}", "entities": [_number_span(u)]}) for i in intents for u, _ in _rows(i, n, offset)]
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
    assert [t["figure"] for t in full["targets"]] == ["in_scope_accuracy", "oos_recall", "train_seconds", "in_scope_accuracy", "model_mb", "latency_p50_ms"]
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


def test_new_quality_suites_report_both_systems_and_their_targets(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "bench"
    monkeypatch.setenv(harness.DATA_ENV, str(data_dir))
    args = ["bench", "--quick", "--in-process", "--output-dir", str(out), "--latency-calls", "5", "--max-bots", "1", "--max-seeds", "1"]
    assert main(args + ["--suite", "sample-bot", "--suite", "clinc150-small", "--suite", "fewshot"]) == 0
    suites = json.loads((out / harness.RESULTS_JSON).read_text())["suites"]
    sample = suites["sample-bot"]["systems"]
    for figures in sample.values():
        assert {"accuracy", "heldout_accuracy", "combined_accuracy", "train_seconds", "model_mb", "latency_p50_ms"} <= set(figures)
    targets = {(t["figure"], t.get("note")) for t in suites["sample-bot"]["targets"]}
    assert ("accuracy", "the baseline's, same run, + 3 points") in targets
    small = suites["clinc150-small"]
    assert [t["figure"] for t in small["targets"]] == ["in_scope_accuracy", "in_scope_accuracy", "model_mb", "latency_p50_ms"]
    assert small["targets"][1]["value"] == small["systems"][harness.BASELINE]["in_scope_accuracy"]
    fewshot = suites["fewshot"]
    assert list(fewshot["groups"]) == ["clinc150-5shot", "clinc150-10shot", "hwu64-5shot", "hwu64-10shot"]
    assert set(fewshot["per_run"]) == {f"{s}-{k}shot-seed0" for s in ("clinc150", "hwu64") for k in (5, 10)}
    for system in (harness.LSTM, harness.BASELINE):
        assert 0.0 <= fewshot["systems"][system]["clinc150-5shot_accuracy"] <= 1.0
    report = (out / harness.RESULTS_MD).read_text()
    assert "| clinc150-5shot |" in report and "Held-out utterances: intent accuracy (top intent)" in report


def test_fewshot_samples_are_seeded_and_disjoint(data_dir):
    from botyard.pipelines.bench import fewshot

    bots = fewshot.clinc_bots(str(data_dir), 5, 0)
    assert list(bots) == ["food", "money"]
    money = bots["money"]
    assert money["train"]["intent"].value_counts().to_dict() == {"balance": 5, "transfer": 5}
    assert money["val"]["intent"].value_counts().to_dict() == {"balance": 2, "transfer": 2}
    assert not set(money["val"]["utterance"]) & set(money["dev"]["utterance"])
    assert len(money["test"]) == 8
    again = fewshot.clinc_bots(str(data_dir), 5, 0)["money"]
    assert again["train"].equals(money["train"])
    assert not fewshot.clinc_bots(str(data_dir), 5, 1)["money"]["train"].equals(money["train"])
    hwu = fewshot.hwu_bot(str(data_dir), 10, 0)
    assert len(hwu["train"]) == 40 and len(hwu["val"]) == 8 and len(hwu["dev"]) == 0
    assert not set(hwu["train"]["utterance"]) & set(hwu["val"]["utterance"])
    assert not any(hwu["train"]["entities"].map(len))  # an intent suite: spans dropped, no tagger trained


def test_the_hwu64_intent_suite_trains_the_intent_model_alone(data_dir, monkeypatch):
    from botyard.pipelines.bench import hwu

    trained = []
    monkeypatch.setattr(hwu, "bench_lstm", lambda context, train, *rest, **kw: trained.append(train) or {"accuracy": 1.0})
    monkeypatch.setattr(hwu, "bench_baseline", lambda *a, **kw: {"accuracy": 0.5})
    hwu.run(harness.BenchContext(str(data_dir), "unused"))
    assert len(trained[0]) > 0 and not any(trained[0]["entities"].map(len))


def test_end_to_end_files_carry_the_split(data_dir, tmp_path, monkeypatch):
    from botyard.components.base.data_formats import read_training_data
    from botyard.pipelines.bench import runs

    table = read_training_data(str(data_dir / runs.CLINC_FILE))  # the run-clinc150 suite's file, as published
    assert len(table) == 48 + 16 + 16 + 6 + 3 + 5
    assert table["split"].value_counts().to_dict() == {"train": 54, "val": 19, "test": 21}
    assert (table["intent"] == "oos").sum() == 14
    monkeypatch.setattr(runs, "LONG_TRAIN", 70)
    monkeypatch.setattr(runs, "LONG_VAL", 7)
    monkeypatch.setattr(runs, "LONG_TEST", 7)
    monkeypatch.setattr(runs, "SENTENCES_PER_UTTERANCE", 3)
    long_path = str(tmp_path / "long.jsonl")
    assert runs.write_long_bot_file(str(data_dir), long_path) == 84
    long_table = read_training_data(long_path)
    assert set(long_table["intent"]) == {"food", "money"}  # 7 intents asked, 2 domains there
    assert long_table["utterance"].str.count(r"\. ").min() == 2


@pytest.mark.slow
def test_end_to_end_suite_times_a_real_botyard_run(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "bench"
    monkeypatch.setenv(harness.DATA_ENV, str(data_dir))
    assert main(["bench", "--quick", "--in-process", "--output-dir", str(out), "--suite", "run-clinc150"]) == 0
    result = json.loads((out / harness.RESULTS_JSON).read_text())["suites"]["run-clinc150"]
    figures = result["systems"]["botyard run"]
    assert figures["run_seconds"] > figures["train_seconds"] > 0 and figures["test_size"] == 21
    assert set(result["targets"][0]) >= {"figure", "measured", "met"} and result["targets"][0]["value"] == 180.0
    assert any(step.startswith("command: `botyard run --bot-id clinc150") for step in result["protocol"])
    assert "train" in next(p for p in result["protocol"] if p.startswith("steps:"))


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
