"""TF Serving warm-up files: written into a tiny trained SavedModel and replayed record by
record through its ``serving_default`` signature, parsed with TF Serving's own protos."""

from __future__ import annotations

import os

import pytest

from botyard.components.base import contracts as c
from botyard.components.base.config import TrainConfig
from botyard.components.base.errors import ConfigError, ModelLoadError
from botyard.components.base.warmup import (
    DEFAULT_WARMUP_UTTERANCES,
    MAX_WARMUP_RECORDS,
    read_warmup_requests,
    warmup_path,
    write_warmup_file,
)
from botyard.components.base.table import make_table

INTENTS = {
    "greet": ["hello", "hi there", "good morning", "hey", "hello friend"],
    "bye": ["goodbye", "see you later", "bye bye", "talk to you soon", "farewell"],
}


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A tiny trained model artifact: ``(saved_model_dir, labels)``."""
    from botyard.pipelines.in_process import train_model

    out = str(tmp_path_factory.mktemp("warmup-model"))
    table = make_table({"utterance": u, "intent": i} for i, us in INTENTS.items() for u in us)
    config = TrainConfig(epochs=2, embedding_dim=8, lstm_units=8, max_ngrams=200, max_char_ngrams=200, ngram_units=8)
    result = train_model(table, table, config, out)
    return os.path.join(out, c.SAVED_MODEL_DIR), result.labels


def _records(path: str) -> list:
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    return [prediction_log_pb2.PredictionLog.FromString(r) for r in tf.data.TFRecordDataset(path).as_numpy_iterator()]


def test_training_writes_a_warmup_file(trained):
    saved_model_dir, _ = trained
    path = os.path.join(saved_model_dir, c.WARMUP_FILE)
    assert path == warmup_path(saved_model_dir)
    records = _records(path)
    n = len(records[0].predict_log.request.inputs[c.SIGNATURE_INPUT].string_val)
    assert 1 <= n <= 20 and len(records) == n + 1  # the batch, then each utterance alone


def test_every_record_replays_through_the_signature(trained):
    import tensorflow as tf

    saved_model_dir, labels = trained
    sample = ["hello", "see you later", "what's up", "héllo wörld ☕"]
    path = write_warmup_file(saved_model_dir, sample)
    signature = tf.saved_model.load(saved_model_dir).signatures[c.SERVING_SIGNATURE]
    records = _records(path)
    assert len(records) == len(sample) + 1
    replayed = []
    for record in records:
        request = record.predict_log.request
        assert request.model_spec.signature_name == c.SERVING_SIGNATURE
        assert list(request.inputs) == [c.SIGNATURE_INPUT]
        tensor = request.inputs[c.SIGNATURE_INPUT]
        assert tensor.dtype == tf.string.as_datatype_enum
        utterances = tf.make_ndarray(tensor)
        assert utterances.ndim == 1
        probabilities = signature(**{c.SIGNATURE_INPUT: tf.constant(utterances)})[c.OUTPUT_PROBABILITIES]
        assert probabilities.shape == (len(utterances), len(labels))
        replayed.append([u.decode("utf-8") for u in utterances])
    assert replayed == [sample] + [[u] for u in sample]
    assert read_warmup_requests(saved_model_dir) == replayed


def test_at_most_1000_records(tmp_path):
    write_warmup_file(str(tmp_path), [f"utterance {i}" for i in range(1500)])
    records = _records(warmup_path(str(tmp_path)))
    assert len(records) == MAX_WARMUP_RECORDS
    assert len(records[0].predict_log.request.inputs[c.SIGNATURE_INPUT].string_val) == MAX_WARMUP_RECORDS - 1


def test_empty_sample_uses_fixed_utterances_and_bad_ones_are_refused(tmp_path):
    write_warmup_file(str(tmp_path), ["", "   "])
    assert read_warmup_requests(str(tmp_path))[0] == list(DEFAULT_WARMUP_UTTERANCES)
    with pytest.raises(ConfigError, match="warm-up utterance #1 is int, expected a string"):
        write_warmup_file(str(tmp_path), ["hi", 3])


def test_missing_file_reads_as_none_and_corrupt_file_is_a_load_error(tmp_path):
    assert read_warmup_requests(str(tmp_path)) == []
    path = warmup_path(str(tmp_path))
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(b"\x00garbage that is not a TFRecord")
    with pytest.raises(ModelLoadError, match="unreadable warm-up file"):
        read_warmup_requests(str(tmp_path))
