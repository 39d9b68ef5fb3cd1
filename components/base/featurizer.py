"""The text featurizer: raw utterances to the features the intent model reads.

Adapted once, on the training split only, by the featurize step, and saved as one artifact
(``featurizer.json``: settings, vocabularies and idf weights). The train step rebuilds it
from that file with the vocabularies fixed, trains on its features and exports it inside the
SavedModel, so serving featurizes exactly as training did (like TFX's Transform graph).

Features (``FEATURES``), for a batch of ``tf.string [None]`` utterances:

``token_ids``    int64 ``[batch, <= sequence_length]`` word ids for the LSTM (0 = padding, 1 =
                 out of vocabulary), right-padded and trimmed to the longest utterance of the batch
``ngrams``       float32 ``[batch, vocabulary]`` TF-IDF of word uni- and bigrams
``char_ngrams``  float32 ``[batch, vocabulary]`` TF-IDF of character 3- to 5-grams: spelling
                 variants and unseen words still share most of their features

A view whose size is 0 in ``TrainConfig`` (``max_ngrams``, ``max_char_ngrams``) is left out.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import tensorflow as tf

from botyard.components.base import contracts as c
from botyard.components.base.config import TrainConfig
from botyard.components.base.errors import ModelLoadError

FORMAT_VERSION = 1
STANDARDIZE = "lower_and_strip_punctuation"
TOKEN_IDS = "token_ids"
NGRAMS = "ngrams"
CHAR_NGRAMS = "char_ngrams"
FEATURES = (TOKEN_IDS, NGRAMS, CHAR_NGRAMS)
WORD_NGRAMS = 2  # uni- and bigrams
CHAR_NGRAM_SIZES = (3, 4, 5)


class Featurizer(keras.layers.Layer):
    """Raw utterances -> ``{feature name: tensor}`` (see the module docstring)."""

    def __init__(self, spec: dict, **kwargs):
        super().__init__(**kwargs)
        views = spec["views"]  # not kept: Keras would track (and copy) its long lists
        self.features = tuple(name for name in FEATURES if name in views)
        self.words = keras.layers.TextVectorization(
            standardize=STANDARDIZE,
            output_mode="int",
            output_sequence_length=spec["sequence_length"],
            vocabulary=views[TOKEN_IDS]["vocabulary"],
        )
        self.ngrams = self.chars = None
        if NGRAMS in views:
            self.ngrams = keras.layers.TextVectorization(
                standardize=STANDARDIZE, ngrams=views[NGRAMS]["ngrams"], output_mode="tf_idf",
                vocabulary=views[NGRAMS]["vocabulary"], idf_weights=views[NGRAMS]["idf"],
            )
        if CHAR_NGRAMS in views:
            self.chars = keras.layers.TextVectorization(
                standardize=STANDARDIZE, split="character", ngrams=tuple(views[CHAR_NGRAMS]["ngrams"]),
                output_mode="tf_idf", vocabulary=views[CHAR_NGRAMS]["vocabulary"], idf_weights=views[CHAR_NGRAMS]["idf"],
            )

    def vocabulary_size(self, feature: str) -> int:
        layer = {TOKEN_IDS: self.words, NGRAMS: self.ngrams, CHAR_NGRAMS: self.chars}[feature]
        return layer.vocabulary_size()

    def call(self, utterances):
        ids = self.words(utterances)
        # trim the right padding the whole batch shares: the LSTM then runs over the longest
        # utterance in the batch, not ``sequence_length`` steps (masks stay right-padded)
        longest = tf.reduce_max(tf.reduce_sum(tf.cast(ids > 0, tf.int32), axis=1))
        features = {TOKEN_IDS: ids[:, : tf.maximum(longest, 1)]}
        if self.ngrams is not None:
            features[NGRAMS] = self.ngrams(utterances)
        if self.chars is not None:
            features[CHAR_NGRAMS] = self.chars(utterances)
        return features


def adapt_spec(config: TrainConfig, texts: list[str]) -> dict:
    """Learn the vocabularies and idf weights from ``texts`` (the training utterances only)."""
    data = tf.constant(list(texts), dtype=tf.string)
    words = keras.layers.TextVectorization(max_tokens=config.max_tokens, standardize=STANDARDIZE, output_mode="int")
    words.adapt(data)
    views: dict = {TOKEN_IDS: {"vocabulary": _strings(words.get_vocabulary())}}
    for name, size, options in (
        (NGRAMS, config.max_ngrams, {"ngrams": WORD_NGRAMS}),
        (CHAR_NGRAMS, config.max_char_ngrams, {"split": "character", "ngrams": CHAR_NGRAM_SIZES}),
    ):
        if not size:
            continue
        layer = keras.layers.TextVectorization(max_tokens=size, standardize=STANDARDIZE, output_mode="tf_idf", **options)
        layer.adapt(data)
        views[name] = {
            "ngrams": list(options["ngrams"]) if isinstance(options["ngrams"], tuple) else options["ngrams"],
            "vocabulary": _strings(layer.get_vocabulary()),
            "idf": [float(x) for x in np.asarray(layer._lookup_layer.idf_weights)],  # Keras keeps them only here
        }
    return {"format": FORMAT_VERSION, "sequence_length": config.sequence_length, "standardize": STANDARDIZE, "views": views}


def _strings(vocabulary) -> list[str]:
    return [str(token) for token in vocabulary]


def build(spec: dict):
    """The Keras featurizer layer for ``spec`` (vocabularies fixed, nothing left to adapt)."""
    return Featurizer(spec, name="featurizer")


def save(spec: dict, folder: str) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, c.FEATURIZER_FILE)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False)
    return path


def load_spec(folder: str) -> dict:
    path = os.path.join(folder, c.FEATURIZER_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: not a readable featurizer ({exc})") from exc
    if spec.get("format") != FORMAT_VERSION or TOKEN_IDS not in spec.get("views", {}):
        raise ModelLoadError(f"{path}: featurizer format {spec.get('format')!r} is not {FORMAT_VERSION}; re-run featurize")
    return spec


def summary(spec: dict) -> dict:
    """Vocabulary sizes per feature, for the artifact's metadata and reports."""
    return {name: len(view["vocabulary"]) for name, view in spec["views"].items()}
