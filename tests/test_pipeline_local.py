"""End to end: ``bot_training`` on the sample bot through kfp.local, with the default (tuned) settings."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from botyard.components.base import contracts as c
from botyard.pipelines.local_run import run_bot_training_locally

from conftest import SAMPLE_BOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    console = io.StringIO()
    result = run_bot_training_locally(
        "sample-bot", str(SAMPLE_BOT / "nlu.yml"), str(root / "models"), str(root / "runs"), console=console
    )
    result.console = console.getvalue()
    return result


def test_model_version_layout(run):
    assert os.path.isdir(os.path.join(run.version_uri, c.SAVED_MODEL_DIR))
    meta = json.load(open(os.path.join(run.version_uri, c.METADATA_FILE)))
    assert set(c.METADATA_KEYS) <= set(meta)
    assert meta[c.BOT_ID] == "sample-bot" and meta[c.VERSION] == run.version
    assert meta[c.LABELS] == sorted(meta[c.LABELS]) and len(meta[c.LABELS]) == 13
    assert len(meta[c.DATA_HASH]) == 64 and run.version.endswith(meta[c.DATA_HASH][:8])
    assert 0.0 < meta[c.OOS_THRESHOLD] < 1.0
    assert meta[c.HYPERPARAMETERS]["lstm_units"] > 0


def test_saved_model_predicts_held_out_utterances(run):
    meta = run.metadata
    signature = tf.saved_model.load(os.path.join(run.version_uri, c.SAVED_MODEL_DIR)).signatures[c.SERVING_SIGNATURE]
    held_out = pd.read_csv(SAMPLE_BOT / "heldout.csv")
    probabilities = signature(utterances=tf.constant(held_out["text"].tolist()))[c.OUTPUT_PROBABILITIES].numpy()
    assert probabilities.shape == (len(held_out), len(meta[c.LABELS])) and probabilities.dtype == np.float32
    predicted = np.array(meta[c.LABELS])[probabilities.argmax(axis=1)]
    accuracy = float(np.mean(predicted == held_out["intent"].to_numpy()))
    assert accuracy >= 0.9, list(zip(held_out["text"], predicted))


def test_metrics_and_confusion_matrix_artifacts(run):
    metrics = run.metadata[c.METRICS]
    assert 0.3 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["macro_f1"] <= 1.0
    assert metrics["test_size"] == 26
    matrix = pd.read_csv(run.confusion_matrix_csv, index_col=0)
    assert list(matrix.columns) == run.metadata[c.LABELS]
    assert int(matrix.to_numpy().sum()) == metrics["test_size"]
    executor_output = json.load(open(os.path.join(run.run_dir, "evaluate", "executor_output.json")))
    artifacts = executor_output["artifacts"]
    confusion = artifacts["confusion_matrix"]["artifacts"][0]["metadata"]["confusionMatrix"]
    assert [cat["displayName"] for cat in confusion["annotationSpecs"]] == run.metadata[c.LABELS]
    assert sum(sum(row["row"]) for row in confusion["rows"]) == metrics["test_size"]
    logged = artifacts["metrics"]["artifacts"][0]["metadata"]
    assert logged["accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-4)
    report = open(os.path.join(run.run_dir, "validate", "report")).read()
    assert "| order_drink | 22 |" in report
    training = json.load(open(os.path.join(run.run_dir, "train", "executor_output.json")))["artifacts"]["training_metrics"]["artifacts"][0]["metadata"]
    assert training["epochs_run"] >= 1 and "epoch_001_loss" in training


def test_first_run_is_blessed_checked_and_deployed(run):
    from botyard.components.base.model_store import ModelStore

    assert run.blessing["blessed"] is True and run.blessing["live"] is None
    assert run.infra_result["blessed"] is True and run.infra_result["reasons"][0].startswith("ok: version")
    assert run.deployment["action"] == "promoted" and run.deployment["previous"] is None
    assert ModelStore(os.path.dirname(os.path.dirname(run.version_uri))).current("sample-bot") == run.version


def test_console_shows_one_line_per_step(run):
    for step in ("ingest", "validate", "split", "train", "evaluate", "register", "gate", "infra-check", "deploy"):
        assert f"Task {step} finished with status SUCCESS" in run.console
    assert "executor_input" not in run.console  # step noise goes to the log file
    assert "Executing task \x1b[96m'train'" in open(run.log_path).read()


TINY_PARAMS = ["embedding_dim=8", "lstm_units=8", "max_ngrams=300", "max_char_ngrams=300", "ngram_units=8"]


def test_run_drops_conflicting_train_and_val_rows_and_keeps_test_rows(tmp_path, capsys):
    """``botyard run --param on_label_conflict=drop`` on data with label conflicts (as CLINC150 has)."""
    import glob

    from botyard.components.base.table import read_table
    from botyard.pipelines.cli import main

    words = {"greet": "hello there friend", "bye": "goodbye see you", "weather": "is it raining outside"}
    rows = [(f"{words[i]} {n}", i, "train" if n < 8 else "val" if n < 10 else "test") for i in words for n in range(12)]
    rows += [("Hello there friend 0", "bye", "test"), ("goodbye see you 8", "weather", "train")]  # rows 38, 39
    data = tmp_path / "bot.csv"
    data.write_text("text,intent,split\n" + "".join(f"{t},{i},{s}\n" for t, i, s in rows))
    args = ["run", "--bot-id", "noisy", "--data", str(data), "--models-root", str(tmp_path / "models"),
            "--pipeline-root", str(tmp_path / "runs"), "--param", "on_label_conflict=drop", "--param", "reject_budget=0"]
    assert main(args + [f"--param={p}" for p in TINY_PARAMS]) == 0
    out = capsys.readouterr().out
    assert "botyard: dropped 3 train/val row(s) of 2 utterance(s) labelled with different intents (on_label_conflict=drop):" in out
    assert "  - 'hello there friend 0': 'bye' (row 38); 'greet' (row 2); dropped row 2; kept test row 38" in out
    assert "  - 'goodbye see you 8': 'bye' (row 22); 'weather' (row 39); dropped rows 22, 39" in out
    assert "(on 7 test utterances)" in out, out  # 2 per intent + the conflicting test row, kept as given
    run_dir = sorted(glob.glob(str(tmp_path / "runs" / "bot-training-*" / "validate")))[-1]
    assert "## Label conflicts: rows dropped" in open(os.path.join(run_dir, "report")).read()
    validated = read_table(os.path.join(run_dir, "validated"))
    assert len(validated) == len(rows) - 3 and not {2, 22, 39} & set(validated["source_row"])
    # the out-of-scope criterion's parameter reached the evaluate step, and the run's output names the criterion
    assert "   (highest threshold that rejects at most 0% of correctly classified validation utterances)\n" in out
    [evaluation] = glob.glob(str(tmp_path / "runs" / "bot-training-*" / "evaluate" / "evaluation" / c.EVALUATION_FILE))
    assert "rejects at most 0% of correctly classified validation utterances" in json.load(open(evaluation))["threshold_criterion"]
