"""Preemption: a train step killed with SIGKILL mid-run and started again resumes from its last
checkpoint (weights, optimizer, epoch, early stopping, data order) and ends where an
uninterrupted run ends. Real subprocesses, a real kill."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from botyard.components.base import contracts as c
from botyard.components.train.checkpoints import CHECKPOINT_FILE, location_for
from botyard.components.train.core import ENTITY_CHECKPOINTS

EPOCHS = 40
SCRIPT = textwrap.dedent(
    """
    import json, logging, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    from botyard.components.base.config import TrainConfig
    from botyard.components.base.table import make_table
    from botyard.pipelines.in_process import train_model

    from botyard.components.base.config import EntityConfig

    rows, out, checkpoints, settings = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    entity_settings = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    data = json.load(open(rows))
    train_model(make_table(data["train"]), make_table(data["val"]), TrainConfig(**settings), out,
                entity_config=EntityConfig(**entity_settings), checkpoint_dir=checkpoints)
    """
)
# no early stop (patience beyond the epochs), so a fresh run takes exactly EPOCHS epochs
SETTINGS = dict(epochs=EPOCHS, min_epochs=EPOCHS, min_steps=0, patience=EPOCHS, patience_steps=0, embedding_dim=8, lstm_units=8,
                max_ngrams=300, max_char_ngrams=300, ngram_units=8, batch_size=8)
WORDS = {
    "greet": ["hello", "hi", "hey", "good morning", "greetings", "howdy", "hiya", "hello there", "morning", "hey there"],
    "bye": ["bye", "goodbye", "see you", "farewell", "later", "ciao", "bye bye", "see ya", "so long", "take care"],
    "weather": ["rain today", "is it sunny", "weather forecast", "will it snow", "how hot is it", "cold outside",
                "storm coming", "temperature now", "is it windy", "forecast please"],
}


def _rows(indices, suffix):
    return [{"utterance": f"{WORDS[i][j % 10]} {suffix} {j}", "intent": i} for i in WORDS for j in indices]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "rows.json"
    path.write_text(json.dumps({"train": _rows(range(24), "now"), "val": _rows(range(24, 33), "please")}))
    return str(path)


def _start(data_file, out, checkpoints, settings=SETTINGS, entity_settings=None):
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, data_file, out, checkpoints, json.dumps(settings), json.dumps(entity_settings or {})],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


CITIES = ["paris", "london", "new york", "berlin", "tokyo", "rome", "madrid", "oslo"]
# the tagger: no early stop either, tiny, quick epochs; the intent model: a few epochs only
TAGGER_EPOCHS = 12
TAGGER_SETTINGS = dict(epochs=TAGGER_EPOCHS, patience=TAGGER_EPOCHS, min_steps=0, embedding_dim=8, char_embedding_dim=4,
                       char_filters=4, lstm_units=8, intent_dim=4, batch_size=8)
SHORT_INTENT_TRAINING = dict(SETTINGS, epochs=3, min_epochs=3)


def _rows_with_cities(indices, suffix):
    rows = []
    for j in indices:
        city = CITIES[j % len(CITIES)]
        text = f"weather in {city} {suffix} {j}"
        rows.append({"utterance": text, "intent": "weather",
                     "entities": [{"start": 11, "end": 11 + len(city), "value": city, "entity": "city"}]})
        rows.append({"utterance": f"{WORDS['greet'][j % 10]} {suffix} {j}", "intent": "greet"})
    return rows


@pytest.fixture(scope="module")
def entity_data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("entity-data") / "rows.json"
    path.write_text(json.dumps({"train": _rows_with_cities(range(24), "now"), "val": _rows_with_cities(range(24, 30), "please")}))
    return str(path)


def _finish(process) -> str:
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return err


def _kill_after_checkpoint(victim, checkpoint_file: str, out: str) -> None:
    """SIGKILL ``victim`` as soon as ``checkpoint_file`` exists (it must not have finished first)."""
    deadline = time.monotonic() + 240
    while not os.path.exists(checkpoint_file):
        assert victim.poll() is None, f"training ended before {checkpoint_file} was written"
        assert time.monotonic() < deadline, f"no {checkpoint_file} within 240 s"
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(out, c.TRAINING_FILE))  # it never finished


def _training(out) -> dict:
    with open(os.path.join(out, c.TRAINING_FILE), encoding="utf-8") as f:
        return json.load(f)


def test_killed_training_resumes_from_its_last_checkpoint_and_ends_where_a_fresh_run_ends(data_file, tmp_path):
    fresh_out, out = str(tmp_path / "fresh" / "model"), str(tmp_path / "killed" / "model")
    checkpoints = location_for(out, out)
    assert checkpoints == out + "-checkpoint"  # beside the model artifact, not in it
    checkpoint_file = os.path.join(checkpoints, CHECKPOINT_FILE)

    fresh = _start(data_file, fresh_out, str(tmp_path / "fresh" / "model-checkpoint"))
    _finish(fresh)

    _kill_after_checkpoint(_start(data_file, out, checkpoints), checkpoint_file, out)
    kept = str(tmp_path / "kept-checkpoint")
    shutil.copytree(checkpoints, kept)

    log = _finish(_start(data_file, out, checkpoints))
    resumed, first = _training(out), _training(fresh_out)
    n = resumed["resumed_from_epoch"]
    assert 0 < n < EPOCHS
    assert f"resuming from the checkpoint after epoch {n} in {checkpoints}" in log
    assert f"resumed after epoch {n}" in log
    assert first["resumed_from_epoch"] == 0 and first["epochs_this_run"] == EPOCHS
    assert resumed["epochs_this_run"] == EPOCHS - n < first["epochs_this_run"]
    assert resumed["epochs_run"] == first["epochs_run"] == EPOCHS  # the history before the kill came back too
    assert resumed["history"]["loss"][:n] == pytest.approx(first["history"]["loss"][:n], rel=1e-3)
    assert abs(resumed["history"]["val_accuracy"][-1] - first["history"]["val_accuracy"][-1]) <= 0.05
    assert resumed["history"]["val_loss"][-1] == pytest.approx(first["history"]["val_loss"][-1], rel=0.1)
    assert resumed["checkpoint_seconds"] > 0 and resumed["checkpoints_written"] >= 1
    # exported: the checkpoints are gone, and none was ever inside the model folder
    assert not os.path.exists(checkpoints)
    assert not any("checkpoint" in name for _, dirs, files in os.walk(out) for name in dirs + files)

    # a checkpoint of other settings is never resumed from: the run starts over and says why
    other = dict(SETTINGS, epochs=5, min_epochs=5)
    log = _finish(_start(data_file, str(tmp_path / "other" / "model"), kept, other))
    assert f"ignoring the checkpoint in {kept}: it was made for other data or settings" in log
    assert _training(str(tmp_path / "other" / "model"))["resumed_from_epoch"] == 0


def test_a_train_step_killed_while_the_tagger_trains_resumes_the_tagger_from_its_last_checkpoint(entity_data_file, tmp_path):
    fresh_out, out = str(tmp_path / "fresh" / "model"), str(tmp_path / "killed" / "model")
    checkpoints = location_for(out, out)
    tagger_checkpoint = os.path.join(checkpoints, ENTITY_CHECKPOINTS, CHECKPOINT_FILE)
    _finish(_start(entity_data_file, fresh_out, fresh_out + "-checkpoint", SHORT_INTENT_TRAINING, TAGGER_SETTINGS))

    _kill_after_checkpoint(_start(entity_data_file, out, checkpoints, SHORT_INTENT_TRAINING, TAGGER_SETTINGS),
                           tagger_checkpoint, out)

    log = _finish(_start(entity_data_file, out, checkpoints, SHORT_INTENT_TRAINING, TAGGER_SETTINGS))
    resumed, first = _training(out)["entities"], _training(fresh_out)["entities"]
    n = resumed["resumed_from_epoch"]
    assert 0 < n < TAGGER_EPOCHS
    assert f"resumed after epoch {n}" in log
    assert first["resumed_from_epoch"] == 0
    assert resumed["epochs_run"] == first["epochs_run"] == TAGGER_EPOCHS  # the history before the kill came back
    assert resumed["history"]["loss"][:n] == pytest.approx(first["history"]["loss"][:n], rel=1e-3)
    assert resumed["history"]["val_loss"][-1] == pytest.approx(first["history"]["val_loss"][-1], rel=0.5)
    # the intent model had finished: it resumed from its own checkpoint, not from scratch
    assert _training(out)["resumed_from_epoch"] > 0
    assert not os.path.exists(checkpoints)  # exported: every checkpoint is gone
