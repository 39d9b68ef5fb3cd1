"""The entity featurizer: utterances -> tokens with offsets, word ids and character ids per token.

Adapted by the featurize step on the training split only (lower-cased token vocabulary and
character vocabulary), stored in the featurizer artifact under ``"entities"``, rebuilt by train
and exported inside the SavedModel. Tokens follow ``base.tokenizer`` (offsets in code points).

Outputs for a batch of ``tf.string [None]`` utterances (tokens right-padded):

``entity_token_ids``   int64 ``[batch, tokens]``: 0 padding, 1 out of vocabulary
``entity_char_ids``    int64 ``[batch, tokens, max_chars_per_token]``: 0 padding, 1 unknown character
``token_starts``       int64 ``[batch, tokens]``: code-point offset of each token, -1 for padding
``token_ends``         int64 ``[batch, tokens]``: exclusive end offset, -1 for padding
"""

from __future__ import annotations

from collections import Counter

import keras
import tensorflow as tf

from botyard.components.base.tokenizer import TOKENIZER_NAME, graph_tokenize, tokenize

TOKEN_IDS = "entity_token_ids"
CHAR_IDS = "entity_char_ids"
TOKEN_STARTS = "token_starts"
TOKEN_ENDS = "token_ends"
PAD, UNKNOWN = "", "[UNK]"


def adapt_entity_spec(texts: list[str], max_tokens: int, max_chars_per_token: int) -> dict:
    """Token and character vocabularies of ``texts`` (most frequent first, ties by name)."""
    words, chars = Counter(), Counter()
    for text in texts:
        for token in tokenize(text):
            words[token.text.lower()] += 1
            chars.update(token.text)
    top_words = [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))][: max(0, max_tokens - 2)]
    top_chars = [ch for ch, _ in sorted(chars.items(), key=lambda kv: (-kv[1], kv[0]))]
    return {
        "tokenizer": TOKENIZER_NAME,
        "lowercase": True,
        "max_chars_per_token": max_chars_per_token,
        "vocabulary": [PAD, UNKNOWN, *top_words],
        "characters": [PAD, UNKNOWN, *top_chars],
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

    def call(self, utterances):
        tokens, starts, ends = graph_tokenize(utterances)
        word_ids = tf.ragged.map_flat_values(lambda t: self.words(tf.strings.lower(t, encoding="utf-8")) + 1, tokens)
        chars = tf.strings.unicode_split(tokens, "UTF-8", errors="replace")[:, :, : self.max_chars]
        char_ids = tf.ragged.map_flat_values(lambda c: self.chars(c) + 1, chars)
        return {
            TOKEN_IDS: word_ids.to_tensor(default_value=0),
            CHAR_IDS: char_ids.to_tensor(default_value=0, shape=[None, None, self.max_chars]),
            TOKEN_STARTS: starts.to_tensor(default_value=-1),
            TOKEN_ENDS: ends.to_tensor(default_value=-1),
        }


def build_entity_featurizer(spec: dict) -> EntityFeaturizer:
    return EntityFeaturizer(spec, name="entity_featurizer")
