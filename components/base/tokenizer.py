"""Tokenisation that keeps character offsets, in Python and inside the TensorFlow graph.

A token is a run of word characters (Unicode letters, digits, combining marks, ``_``) or one
other non-space character (punctuation, a symbol, an emoji code point). Spaces separate tokens
and belong to none. Offsets count Unicode code points, as Python ``str`` indices do, so
``text[start:end]`` is the token exactly; an entity span is then a run of whole tokens and maps
back to the original utterance, punctuation, repeated spaces and accents included.

``tokenize`` is the reference; ``graph_tokenize`` is the same rule in TensorFlow ops, which is
what the exported SavedModel runs (so TF Serving users get offsets too). A test checks the two
agree on arbitrary text.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

# RE2 (TensorFlow's regex engine): \w and \s are ASCII-only there, so the classes are spelled out
WORD_CLASS = r"[\p{L}\p{N}\p{M}_]"
SPACE_CLASS = r"[\p{Z}\t\n\x0b\x0c\r\x1c-\x1f\x85]"
TOKENIZER_NAME = "botyard-words-v1"  # recorded with a model version: the rule above


@dataclass(frozen=True)
class Token:
    text: str
    start: int
    end: int  # exclusive


def is_word_char(ch: str) -> bool:
    return ch == "_" or unicodedata.category(ch)[0] in "LNM"


def is_space_char(ch: str) -> bool:
    return unicodedata.category(ch).startswith("Z") or ch in "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85"


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text`` with their code-point offsets."""
    tokens: list[Token] = []
    start = None
    for i, ch in enumerate(text):
        if is_word_char(ch):
            if start is None:
                start = i
            continue
        if start is not None:
            tokens.append(Token(text[start:i], start, i))
            start = None
        if not is_space_char(ch):
            tokens.append(Token(ch, i, i + 1))
    if start is not None:
        tokens.append(Token(text[start:], start, len(text)))
    return tokens


def graph_tokenize(utterances):
    """``tf.string [batch]`` -> ``(tokens, starts, ends)``, each a ``RaggedTensor [batch, (tokens)]``.

    The same rule as ``tokenize``, built from TensorFlow ops only (no tensorflow-text).
    """
    import tensorflow as tf

    chars = tf.strings.unicode_split(utterances, "UTF-8", errors="replace")  # [batch, (chars)]
    flat = chars.flat_values
    word = tf.strings.regex_full_match(flat, WORD_CLASS)
    space = tf.strings.regex_full_match(flat, SPACE_CLASS)
    positions = tf.range(tf.shape(flat, out_type=tf.int64)[0])
    row_starts = tf.gather(chars.row_splits, chars.value_rowids())
    first_in_row = positions == row_starts
    prev_word = tf.concat([[False], word[:-1]], axis=0) & ~first_in_row
    starts_token = (word & ~prev_word) | (~word & ~space)
    in_token = ~space
    token_index = tf.cumsum(tf.cast(starts_token, tf.int64)) - 1  # over the whole batch
    kept_chars = tf.boolean_mask(flat, in_token)
    kept_token = tf.boolean_mask(token_index, in_token)
    kept_offset = tf.boolean_mask(positions - row_starts, in_token)
    n_tokens = tf.reduce_sum(tf.cast(starts_token, tf.int64))
    token_text = tf.strings.unsorted_segment_join(kept_chars, kept_token, n_tokens)
    token_start = tf.math.unsorted_segment_min(kept_offset, kept_token, n_tokens)
    token_end = tf.math.unsorted_segment_max(kept_offset, kept_token, n_tokens) + 1
    token_row = tf.boolean_mask(chars.value_rowids(), starts_token)
    n_rows = chars.nrows()
    tokens = tf.RaggedTensor.from_value_rowids(token_text, token_row, nrows=n_rows)
    starts = tf.RaggedTensor.from_value_rowids(token_start, token_row, nrows=n_rows)
    ends = tf.RaggedTensor.from_value_rowids(token_end, token_row, nrows=n_rows)
    return tokens, starts, ends
