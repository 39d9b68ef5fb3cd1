"""The hwu64-entities bench suite, run in-process with --quick on a tiny HWU64-shaped data set:
both systems' entity figures and costs land in results.json and results.md."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from botyard.pipelines.bench import harness
from botyard.pipelines.bench.hwu_entities import possessive_neutral_f1, without_possessive
from botyard.pipelines.cli import main

pytestmark = pytest.mark.slow

TIMES = ["7pm", "noon", "8:30am", "tomorrow", "monday"]
PLACES = ["paris", "london", "rome", "berlin", "oslo"]


def _row(i: int) -> dict:
    if i % 2:
        place = PLACES[i % 5]
        text = f"weather in {place} please"
        return {"text": text, "intent": "weather_query",
                "entities": [{"entity": "place_name", "start": 11, "end": 11 + len(place), "value": place}]}
    time = TIMES[i % 5]
    text = f"wake me up at {time}"
    return {"text": text, "intent": "alarm_set", "entities": [{"entity": "time", "start": 14, "end": 14 + len(time), "value": time}]}


def test_hwu64_entities_suite_reports_tagger_and_crf_baseline(tmp_path, monkeypatch):
    data = tmp_path / "data" / "hwu64"
    data.mkdir(parents=True)
    for name, n in (("train", 60), ("test", 20)):
        (data / f"{name}.jsonl").write_text("".join(json.dumps(_row(i)) + "\n" for i in range(n)))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "bench"
    args = ["bench", "--quick", "--in-process", "--output-dir", str(out), "--latency-calls", "10",
            "--data-dir", str(tmp_path / "data"), "--suite", "hwu64-entities"]
    assert main(args) == 0
    suite = json.loads((out / harness.RESULTS_JSON).read_text())["suites"]["hwu64-entities"]
    tagger, crf = suite["systems"]["bilstm_cnn_crf"], suite["systems"]["crf_baseline"]
    for figures in (tagger, crf):
        for key in ("entity_micro_f1", "entity_micro_precision", "entity_micro_recall", "val_entity_micro_f1",
                    "possessive_neutral_entity_micro_f1", "train_seconds", "model_mb", "latency_p50_ms"):
            assert isinstance(figures[key], float), key
    assert crf["entity_micro_f1"] > 0.9  # the baseline learns this easy data: the suite scores real predictions
    assert crf["val_entity_micro_f1"] > 0.9  # and on val, drawn from the same training file
    assert 0.0 <= tagger["entity_micro_f1"] <= 1.0 and "accuracy" in tagger
    assert [t["figure"] for t in suite["targets"]] == ["entity_micro_f1"]
    report = (out / harness.RESULTS_MD).read_text()
    assert "## hwu64-entities" in report and "CRF (sklearn-crfsuite)" in report and "Entity micro-F1" in report
    assert "Entity micro-F1 on the val split" in report and "possessive 's cut from both sides" in report
    assert "spans ending in 's in `train.jsonl`: 0" in report


def test_possessive_neutral_f1_forgives_only_the_possessive():
    """A span that includes the 's its gold span leaves out (or the reverse) counts as found; any other
    boundary or type difference still counts as a miss."""
    text = "remove emma's birthday and james's"
    table = pd.DataFrame({"utterance": [text], "entities": [[
        {"entity": "person", "start": 7, "end": 11, "value": "emma"},
        {"entity": "person", "start": 27, "end": 34, "value": "james's"}]]})
    assert without_possessive(text, table["entities"][0])[1]["value"] == "james"
    emma_s = {"entity": "person", "start": 7, "end": 13, "value": "emma's"}
    james = {"entity": "person", "start": 27, "end": 32, "value": "james"}
    assert possessive_neutral_f1(table, [[emma_s, james]]) == 1.0
    assert possessive_neutral_f1(table, [[{**emma_s, "entity": "relation"}, james]]) == 0.5  # a wrong type stays wrong
    assert possessive_neutral_f1(table, [[{"entity": "person", "start": 7, "end": 22, "value": "emma's birthday"},
                                          james]]) == 0.5  # and so does a longer span
