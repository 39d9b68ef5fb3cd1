"""Featurize: vocabularies and TF-IDF weights from the training split, and pretrained word vectors."""

from __future__ import annotations

import gzip
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from botyard.components.base import contracts as c
from botyard.components.base import featurizer
from botyard.components.base.config import TrainConfig
from botyard.components.base.errors import DataValidationError
from botyard.components.base.table import make_table
from botyard.components.featurize.core import featurize

from conftest import tiny_rows

TINY = dict(min_steps=0, patience_steps=0, epochs=2, embedding_dim=8, lstm_units=8, max_ngrams=200, max_char_ngrams=300, ngram_units=8, batch_size=8)


def test_word_ngrams_are_sublinear_tfidf_l2_normalised():
    texts = ["book a flight", "book book a table", "cancel the table"]
    spec = featurizer.adapt_spec(TrainConfig(), texts)
    view = spec["views"][featurizer.NGRAMS]
    vocabulary = view["vocabulary"]
    assert vocabulary[0] == featurizer.OOV and {"book", "book a", "a table", "cancel the"} <= set(vocabulary)
    idf = dict(zip(vocabulary, view["idf"]))
    assert idf["book"] == pytest.approx(math.log(4 / 3) + 1) and idf["cancel"] == pytest.approx(math.log(4 / 2) + 1)
    row = featurizer.build(spec).dense_features(tf.constant(["Book, BOOK a zebra!"]))[featurizer.NGRAMS].numpy()[0]
    # "book" twice (1 + ln 2), "a" and "book a" once, "book book" once; "zebra" is out of vocabulary
    raw = {"book": (1 + math.log(2)) * idf["book"], "a": idf["a"], "book a": idf["book a"], "book book": idf["book book"]}
    norm = math.sqrt(sum(v * v for v in raw.values()))
    for gram, value in raw.items():
        assert row[vocabulary.index(gram)] == pytest.approx(value / norm, rel=1e-5)
    assert row[0] == 0.0 and np.count_nonzero(row) == len(raw)


def test_char_ngrams_stay_inside_words_padded_with_spaces():
    spec = featurizer.adapt_spec(TrainConfig(max_char_ngrams=1000), ["hi yo"])
    grams = set(spec["views"][featurizer.CHAR_NGRAMS]["vocabulary"][1:])
    assert {" h", "hi", "i ", " hi", "hi ", " hi ", " y", " yo "} <= grams
    assert not any("i y" in g or "iy" in g for g in grams)  # nothing crosses a word boundary


def test_vocabulary_does_not_depend_on_row_order_and_respects_its_size():
    texts = [f"utterance number {n} about topic {n % 7}" for n in range(60)]
    config = TrainConfig(max_tokens=20, max_ngrams=30, max_char_ngrams=40)
    spec = featurizer.adapt_spec(config, texts)
    assert spec == featurizer.adapt_spec(config, list(reversed(texts)))
    assert featurizer.summary(spec) == {featurizer.TOKEN_IDS: 20, featurizer.NGRAMS: 30, featurizer.CHAR_NGRAMS: 40}
    assert featurizer.NGRAMS not in featurizer.adapt_spec(TrainConfig(max_ngrams=0), texts)["views"]


# --- pretrained word vectors -------------------------------------------------------------------

VECTORS = {"hello": [0.5, -0.25, 1.0, 0.0, 2.0, -1.0, 0.125, 0.75], "bye": [1, 2, 3, 4, 5, 6, 7, 8.5],
           "rain": [-1, -2, -3, -4, -5, -6, -7, -8], "absent": [9, 9, 9, 9, 9, 9, 9, 9]}


def _vectors_text(header: bool = True) -> str:
    lines = [f"{len(VECTORS)} 8"] if header else []
    lines += [f"{w} " + " ".join(str(v) for v in vec) for w, vec in VECTORS.items()]
    lines.insert(2, "Hello " + " ".join(["7"] * 8))  # a second vector of a known word (after case folding): the first wins
    return "\n".join(lines) + "\n"


@pytest.fixture(params=["vectors.vec", "vectors.txt.gz"])
def vectors_file(request, tmp_path):
    path = tmp_path / request.param
    data = _vectors_text(header=request.param.endswith(".vec")).encode("utf-8")
    path.write_bytes(gzip.compress(data) if request.param.endswith(".gz") else data)
    return str(path)


def test_word_vectors_initialise_the_embedding_rows_of_known_words(vectors_file, tmp_path):
    from botyard.components.train.model import build_classifier

    train = make_table(tiny_rows(per_intent=8))
    config = TrainConfig(**TINY, word_vectors_uri=vectors_file)
    sizes = featurize(train, config, str(tmp_path / "featurizer"))
    assert sizes["word_vectors_found"] == 3  # hello, bye, rain; "absent" is not in the bot's vocabulary
    spec = featurizer.load_spec(str(tmp_path / "featurizer"))
    assert spec["word_vectors"]["dim"] == 8 and spec["word_vectors"]["uri"] == vectors_file
    words = spec["views"][featurizer.TOKEN_IDS]["vocabulary"]
    model = build_classifier(config.__class__(**{**TINY, "embedding_dim": 16}), featurizer.build(spec), 3, spec["word_vectors"]["rows"])
    table = model.embedding.embeddings.numpy()
    assert table.shape == (len(words), 8)  # the file's size, whatever embedding_dim says
    for word in ("hello", "bye", "rain"):
        np.testing.assert_array_equal(table[words.index(word)], np.asarray(VECTORS[word], dtype="float32"))
    others = [i for i, w in enumerate(words) if w not in VECTORS and i >= 2]
    assert others and np.isfinite(table[others]).all() and np.abs(table[others]).sum() > 0  # random, not zero


def test_a_model_trains_end_to_end_with_word_vectors(vectors_file, tmp_path):
    from botyard.pipelines.in_process import train_model

    table = make_table(tiny_rows(per_intent=8))
    out = str(tmp_path / "model")
    result = train_model(table, table, TrainConfig(**TINY, word_vectors_uri=vectors_file), out)
    info = json.load(open(os.path.join(out, c.TRAINING_FILE)))
    assert info[c.HYPERPARAMETERS]["word_vectors_uri"] == vectors_file and result.epochs_run >= 1
    signature = tf.saved_model.load(os.path.join(out, c.SAVED_MODEL_DIR)).signatures[c.SERVING_SIGNATURE]
    probs = signature(utterances=tf.constant(["hello there", "bye"]))[c.OUTPUT_PROBABILITIES].numpy()
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "text, message",
    [
        ("hello 1 2 3\nbye 1 2\n", "line 2: 2 numbers, but the first vector has 3"),
        ("hello 1 x 3\n", "line 1: the vector of 'hello' is not a list of numbers"),
        ("\n\n", "no word vectors found"),
    ],
)
def test_bad_word_vectors_file_names_the_line(tmp_path, text, message):
    path = tmp_path / "bad.vec"
    path.write_text(text)
    with pytest.raises(DataValidationError, match=message):
        featurizer.read_word_vectors(str(path), ["", "[UNK]", "hello", "bye"])
    with pytest.raises(DataValidationError, match="cannot read the word vectors"):
        featurizer.read_word_vectors(str(tmp_path / "missing.vec"), ["", "[UNK]"])
