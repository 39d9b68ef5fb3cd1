"""The hwu64-entities bench suite, run in-process with --quick on a tiny HWU64-shaped data set:
both systems' entity figures and costs land in results.json and results.md."""

from __future__ import annotations

import json

import pytest

from botyard.pipelines.bench import harness
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
                    "train_seconds", "model_mb", "latency_p50_ms"):
            assert isinstance(figures[key], float), key
    assert crf["entity_micro_f1"] > 0.9  # the baseline learns this easy data: the suite scores real predictions
    assert crf["val_entity_micro_f1"] > 0.9  # and on val, drawn from the same training file
    assert 0.0 <= tagger["entity_micro_f1"] <= 1.0 and "accuracy" in tagger
    assert [t["figure"] for t in suite["targets"]] == ["entity_micro_f1"]
    report = (out / harness.RESULTS_MD).read_text()
    assert "## hwu64-entities" in report and "CRF (sklearn-crfsuite)" in report and "Entity micro-F1" in report
    assert "Entity micro-F1 on the val split" in report
