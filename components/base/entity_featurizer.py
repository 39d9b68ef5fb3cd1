"""The entity featurizer: utterances -> tokens with offsets, word ids and character ids per token.

Adapted by the featurize step on the training split only (lower-cased token vocabulary and
character vocabulary), stored in the featurizer artifact under ``"entities"``, rebuilt by train
and exported inside the SavedModel. Tokens follow ``base.tokenizer`` (offsets in code points).

Outputs for a batch of ``tf.string [None]`` utterances (tokens right-padded):

``entity_token_ids``   int64 ``[batch, tokens]``: 0 padding, 1 out of vocabulary
``entity_char_ids``    int64 ``[batch, tokens, max_chars_per_token]``: 0 padding, 1 unknown character
``token_starts``       int64 ``[batch, tokens]``: code-point offset of each token, -1 for padding
``token_ends``         int64 ``[batch, tokens]``: exclusive end offset, -1 for padding
``entity_feature_ids`` int64 ``[batch, tokens, N_FEATURES]``: each token's context features
                       (``token_features``) as ids in the spec's ``features`` vocabulary, 0 for a
                       feature not in it and for padding; only when that vocabulary is not empty
``entity_vector_ids``  int64 ``[batch, tokens]``: each lower-cased token's row in the spec's
                       ``vector_words`` (pretrained word vectors, ``base.word_vectors``): 0 padding,
                       1 a word without a vector; only when the spec has vector words
"""

from __future__ import annotations

from collections import Counter

import keras
import tensorflow as tf

from botyard.components.base import word_vectors
from botyard.components.base.tokenizer import TOKENIZER_NAME, graph_tokenize, tokenize

TOKEN_IDS = "entity_token_ids"
CHAR_IDS = "entity_char_ids"
TOKEN_STARTS = "token_starts"
TOKEN_ENDS = "token_ends"
FEATURE_IDS = "entity_feature_ids"
VECTOR_IDS = "entity_vector_ids"
PAD, UNKNOWN = "", "[UNK]"
BEFORE, AFTER = "<s>", "</s>"  # the words before the first token and after the last
# a token's context features, each a name and what it reads (the words at offsets -2 .. +2, lower-cased)
FEATURE_NAMES = ("w", "pre3", "suf3", "p", "n", "p2", "n2", "pw", "wn", "pn")
N_FEATURES = len(FEATURE_NAMES)


def token_features(words: list[str]) -> list[list[str]]:
    """Each token's context features (``FEATURE_NAMES``), from the utterance's lower-cased words:
    the word, its first and last three characters, the words one and two before and after, and
    the pairs (before, word), (word, after), (before, after). What a CRF over hand-made features
    reads; the tagger scores them linearly beside its BiLSTM (``train.tagger.FeatureScores``).
    ``EntityFeaturizer`` computes the same strings in the graph (tested equal)."""
    padded = [BEFORE, BEFORE, *words, AFTER, AFTER]
    rows = []
    for i, word in enumerate(words):
        p2, p, n, n2 = padded[i], padded[i + 1], padded[i + 3], padded[i + 4]
        values = (word, word[:3], word[-3:], p, n, p2, n2, f"{p}|{word}", f"{word}|{n}", f"{p}|{n}")
        rows.append([f"{name}={value}" for name, value in zip(FEATURE_NAMES, values)])
    return rows


def adapt_entity_spec(texts: list[str], max_tokens: int, max_chars_per_token: int, feature_min_count: int = 0,
                      word_vectors_count: int = 0) -> dict:
    """Token and character vocabularies of ``texts`` (most frequent first, ties by name), the
    context features (``token_features``) seen at least ``feature_min_count`` times (0: none)
    and the words given pretrained vectors (``word_vectors.select_words``: the
    ``word_vectors_count`` most frequent English words and those of ``texts``; 0: none)."""
    words, chars, features = Counter(), Counter(), Counter()
    for text in texts:
        tokens = tokenize(text)
        for token in tokens:
            words[token.text.lower()] += 1
            chars.update(token.text)
        if feature_min_count > 0:
            features.update(f for row in token_features([t.text.lower() for t in tokens]) for f in row)
    top_words = [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))][: max(0, max_tokens - 2)]
    top_chars = [ch for ch, _ in sorted(chars.items(), key=lambda kv: (-kv[1], kv[0]))]
    vector_words = word_vectors.select_words(word_vectors_count, words)
    return {
        "tokenizer": TOKENIZER_NAME,
        "lowercase": True,
        "max_chars_per_token": max_chars_per_token,
        "vocabulary": [PAD, UNKNOWN, *top_words],
        "characters": [PAD, UNKNOWN, *top_chars],
        "features": sorted(f for f, n in features.items() if n >= feature_min_count) if feature_min_count > 0 else [],
        "word_vectors": word_vectors.NAME if vector_words else "",
        "vector_words": vector_words,
    }


class EntityFeaturizer(keras.layers.Layer):
    """Raw utterances -> the dict of tensors in the module docstring."""

    def __init__(self, spec: dict, **kwargs):
        super().__init__(**kwargs)
        self.max_chars = int(spec["max_chars_per_token"])
        # StringLookup's own OOV index is 0 when mask_token is None: shift by one so 0 stays padding
        self.words = keras.layers.StringLookup(vocabulary=spec["vocabulary"][2:], num_oov_indices=1, mask_token=None)
        self.chars = keras.layers.StringLookup(vocabulary=spec["characters"][2:], num_oov_indices=1, mask_token=None)
        self.word_vocabulary_size = len(spec["vocabulary"])
        self.char_vocabulary_size = len(spec["characters"])
        features = spec.get("features") or []
        # a feature not in the vocabulary is id 0, as padding is: it scores nothing
        self.features = keras.layers.StringLookup(vocabulary=features, num_oov_indices=1, mask_token=None) if features else None
        self.feature_vocabulary_size = len(features) + 1
        self.vector_words = list(spec.get("vector_words") or [])
        self.vector_lookup = (keras.layers.StringLookup(vocabulary=self.vector_words, num_oov_indices=1, mask_token=None)
                              if self.vector_words else None)

    def call(self, utterances):
        tokens, starts, ends = graph_tokenize(utterances)
        lowered = tf.ragged.map_flat_values(lambda t: tf.strings.lower(t, encoding="utf-8"), tokens)
        word_ids = tf.ragged.map_flat_values(lambda t: self.words(t) + 1, lowered)
        chars = tf.strings.unicode_split(tokens, "UTF-8", errors="replace")[:, :, : self.max_chars]
        char_ids = tf.ragged.map_flat_values(lambda c: self.chars(c) + 1, chars)
        outputs = {
            TOKEN_IDS: word_ids.to_tensor(default_value=0),
            CHAR_IDS: char_ids.to_tensor(default_value=0, shape=[None, None, self.max_chars]),
            TOKEN_STARTS: starts.to_tensor(default_value=-1),
            TOKEN_ENDS: ends.to_tensor(default_value=-1),
        }
        if self.features is not None:
            outputs[FEATURE_IDS] = self._feature_ids(lowered)
        if self.vector_lookup is not None:
            vector_ids = tf.ragged.map_flat_values(lambda t: self.vector_lookup(t) + 1, lowered)
            outputs[VECTOR_IDS] = vector_ids.to_tensor(default_value=0)
        return outputs

    def _feature_ids(self, lowered):
        """``token_features`` in the graph: ``[batch, tokens, N_FEATURES]`` ids."""
        words = lowered.to_tensor(default_value="")
        batch, length = tf.shape(words)[0], tf.shape(words)[1]
        real = tf.range(length)[None, :] < tf.cast(lowered.row_lengths(), tf.int32)[:, None]
        words = tf.where(real, words, AFTER)
        padded = tf.concat([tf.fill([batch, 2], BEFORE), words, tf.fill([batch, 2], AFTER)], axis=1)
        p2, p, n, n2 = (padded[:, k: k + length] for k in (0, 1, 3, 4))
        chars = tf.strings.length(words, unit="UTF8_CHAR")
        three = tf.fill(tf.shape(chars), 3)
        values = (words, tf.strings.substr(words, tf.zeros_like(chars), three, unit="UTF8_CHAR"),
                  tf.strings.substr(words, tf.maximum(chars - 3, 0), three, unit="UTF8_CHAR"), p, n, p2, n2,
                  tf.strings.join([p, words], "|"), tf.strings.join([words, n], "|"), tf.strings.join([p, n], "|"))
        strings = tf.stack([tf.strings.join([f"{name}=", value]) for name, value in zip(FEATURE_NAMES, values)], axis=-1)
        return tf.where(real[:, :, None], self.features(strings), tf.zeros_like(strings, dtype=tf.int64))


def build_entity_featurizer(spec: dict) -> EntityFeaturizer:
    return EntityFeaturizer(spec, name="entity_featurizer")
