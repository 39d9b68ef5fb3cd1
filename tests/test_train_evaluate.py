"""Train and evaluate cores on a tiny bot: the exported contract, cuDNN-eligible settings, metrics."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from botyard.components.base import contracts as c
from botyard.components.base.config import ThresholdConfig, TrainConfig
from botyard.components.evaluate.core import evaluate_model_dir
from botyard.components.evaluate.threshold import choose_threshold
from botyard.components.base.table import make_table
from botyard.pipelines.in_process import train_model

from conftest import tiny_rows

TINY = dict(epochs=3, min_steps=0, patience_steps=0, embedding_dim=8, lstm_units=8, max_ngrams=200, max_char_ngrams=200,
            ngram_units=8, batch_size=8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("model"))
    table = make_table(tiny_rows(per_intent=8))
    result = train_model(table, table, TrainConfig(**TINY), out)
    return out, result, table


def test_exported_signature_is_string_in_probabilities_out(trained):
    out, result, _ = trained
    signature = tf.saved_model.load(os.path.join(out, c.SAVED_MODEL_DIR)).signatures[c.SERVING_SIGNATURE]
    spec = signature.structured_input_signature[1][c.SIGNATURE_INPUT]
    assert spec.dtype == tf.string and spec.shape.as_list() == [None]
    probs = signature(utterances=tf.constant(["hello", "rain today", "bye"]))[c.OUTPUT_PROBABILITIES]
    assert probs.dtype == tf.float32 and probs.shape == (3, 3)
    np.testing.assert_allclose(probs.numpy().sum(axis=1), 1.0, rtol=1e-5)
    assert result.labels == ["bye", "greet", "weather"]
    info = json.load(open(os.path.join(out, c.TRAINING_FILE)))
    assert info[c.LABELS] == result.labels and info[c.HYPERPARAMETERS]["lstm_units"] == 8


def test_lstm_settings_are_cudnn_eligible():
    from botyard.components.base import featurizer
    from botyard.components.train.model import build_classifier

    config = TrainConfig(**TINY)
    model = build_classifier(config, featurizer.build(featurizer.adapt_spec(config, ["a b", "c d"])), 2)
    lstms = [layer for layer in model._flatten_layers() if layer.__class__.__name__ == "LSTM"]
    assert lstms
    for lstm in lstms:
        cfg = lstm.get_config()
        assert (cfg["activation"], cfg["recurrent_activation"], cfg["recurrent_dropout"], cfg["unroll"], cfg["use_bias"]) == ("tanh", "sigmoid", 0.0, False, True)


def test_evaluate_writes_report_files(trained, tmp_path):
    out, _, table = trained
    evaluation = evaluate_model_dir(out, table, table, str(tmp_path))
    for name in (c.EVALUATION_FILE, c.CONFUSION_MATRIX_FILE, c.PER_INTENT_FILE, c.MISCLASSIFIED_FILE):
        assert (tmp_path / name).exists()
    assert evaluation.confusion.sum() == len(table)
    assert set(evaluation.per_intent) == {"bye", "greet", "weather"}
    assert 0.0 <= evaluation.metrics["accuracy"] <= 1.0


def test_threshold_without_oos_keeps_correct_predictions():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.45, 0.55]])
    threshold, criterion = choose_threshold(probs, np.array(["a", "a", "b", "a"]), ["a", "b"], ThresholdConfig(reject_budget=0.0))
    assert threshold == pytest.approx(0.6) and "rejects at most 0%" in criterion


def test_threshold_with_oos_examples_separates_them():
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.55, 0.45], [0.6, 0.4]])
    threshold, criterion = choose_threshold(probs, np.array(["a", "b", c.OOS_INTENT, c.OOS_INTENT]), ["a", "b"])
    assert threshold == pytest.approx(0.9) and "rejecting at least 70% of its out-of-scope examples" in criterion
    # a lower floor keeps more in-scope answers: 50% is reached at 0.6, which keeps both in-scope rows
    threshold, criterion = choose_threshold(probs, np.array(["a", "b", c.OOS_INTENT, c.OOS_INTENT]), ["a", "b"], ThresholdConfig(min_oos_recall=0.5))
    assert threshold == pytest.approx(0.6) and "rejecting at least 50% of its out-of-scope examples" in criterion
    # no threshold reaches the floor (the most confident row is out of scope): fall back to the sum criterion
    probs[2] = [0.97, 0.03]
    threshold, criterion = choose_threshold(probs, np.array(["a", "b", c.OOS_INTENT, c.OOS_INTENT]), ["a", "b"], ThresholdConfig(min_oos_recall=1.0))
    assert criterion.startswith("maximises in-scope accuracy + out-of-scope recall")


def test_the_featurizer_inside_the_saved_model_equals_the_featurize_artifact(trained):
    """Serving featurizes exactly as the featurize step's artifact does, unseen words included."""
    from botyard.components.base import featurizer
    from botyard.pipelines.in_process import FEATURIZER_DIR

    out, _, _ = trained
    utterances = ["hello", "Rain today?!", "zyxwvut qqq unseen-words", "  bye   bye  ", "émoji 🙂 ok", ""]
    from_artifact = featurizer.build(featurizer.load_spec(os.path.join(out, FEATURIZER_DIR))).dense_features(tf.constant(utterances))
    saved = tf.saved_model.load(os.path.join(out, c.SAVED_MODEL_DIR)).signatures[c.FEATURES_SIGNATURE]
    from_model = saved(utterances=tf.constant(utterances))
    assert set(from_model) == set(from_artifact) == {featurizer.TOKEN_IDS, featurizer.NGRAMS, featurizer.CHAR_NGRAMS}
    for name in from_artifact:
        np.testing.assert_array_equal(from_artifact[name].numpy(), from_model[name].numpy())
    ids = from_model[featurizer.TOKEN_IDS].numpy()
    assert (ids[2][:3] == 1).all()  # unseen words: out of vocabulary, not dropped


def test_the_featurizer_learns_only_from_the_training_split(tmp_path):
    from botyard.components.base import featurizer
    from botyard.components.featurize.core import featurize

    train = make_table(tiny_rows(per_intent=8))
    featurize(train, TrainConfig(**TINY), str(tmp_path))
    spec = featurizer.load_spec(str(tmp_path))
    words = spec["views"][featurizer.TOKEN_IDS]["vocabulary"]
    assert words[:2] == ["", "[UNK]"] and "hello" in words and "zyxwvut" not in words
    assert featurizer.summary(spec)[featurizer.NGRAMS] <= 200
