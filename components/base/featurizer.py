"""The text featurizer: raw utterances to the features the intent model reads.

Adapted once, on the training split only, by the featurize step, and saved as one artifact
(``featurizer.json``: settings, vocabularies and idf weights; ``word_vectors.npy`` beside it
when the run gives pretrained word vectors). The train step rebuilds it from that folder with
the vocabularies fixed, trains on its features and exports it inside the SavedModel, so serving
featurizes exactly as training did (like TFX's Transform graph).

Every utterance is standardised first (lower case, punctuation removed) and split on
whitespace into words. Features (``FEATURES``), for a batch of ``tf.string [None]`` utterances:

``token_ids``    int64 ``[batch, <= sequence_length]`` word ids for the LSTM (0 = padding, 1 =
                 out of vocabulary), right-padded and trimmed to the longest utterance of the batch
``ngrams``       float32 sparse ``[batch, vocabulary]``: TF-IDF of word uni- and bigrams
``char_ngrams``  float32 sparse ``[batch, vocabulary]``: TF-IDF of character 2- to 5-grams inside
                 words padded with a space (scikit-learn's ``char_wb``): spelling variants and
                 unseen words still share most of their features

The n-gram views use sublinear term frequency (``1 + ln(count)``) times smoothed idf
(``ln((1 + n) / (1 + df)) + 1``), L2-normalised per utterance, as scikit-learn's
``TfidfVectorizer(sublinear_tf=True)`` does. Column 0 of a view is its out-of-vocabulary
bucket and always stays empty. A view whose size is 0 in ``TrainConfig`` (``max_ngrams``,
``max_char_ngrams``) is left out.

Adapting counts the n-grams of the training utterances with the same TensorFlow string ops the
layer runs, so the vocabularies are exactly what serving will look up, at a fraction of the
cost of ``TextVectorization.adapt``.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import re
from collections import Counter

import keras
import numpy as np
import tensorflow as tf

from botyard.components.base import contracts as c
from botyard.components.base.config import TrainConfig
from botyard.components.base.errors import DataValidationError, ModelLoadError

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
STANDARDIZE = "lower_and_strip_punctuation"
# the characters ``keras.layers.TextVectorization`` strips as punctuation
PUNCTUATION = r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']'
TOKEN_IDS = "token_ids"
NGRAMS = "ngrams"
CHAR_NGRAMS = "char_ngrams"
FEATURES = (TOKEN_IDS, NGRAMS, CHAR_NGRAMS)
NGRAM_VIEWS = (NGRAMS, CHAR_NGRAMS)
WORD_NGRAMS = (1, 2)  # uni- and bigrams
CHAR_NGRAM_SIZES = (2, 3, 4, 5)
PAD, OOV = "", "[UNK]"
WORD_VECTORS_FILE = "word_vectors.npy"  # rows for ``token_ids``' vocabulary (NaN where the file had no vector)
ADAPT_CHUNK = 2048  # utterances featurized at once while adapting


def standardize(utterances: tf.Tensor) -> tf.Tensor:
    return tf.strings.regex_replace(tf.strings.lower(utterances, encoding="utf-8"), PUNCTUATION, "")


def words_of(utterances: tf.Tensor) -> tf.RaggedTensor:
    """Standardised words, ``[batch, (words)]``."""
    return tf.strings.split(standardize(utterances))


def ngram_tokens(view: str, words: tf.RaggedTensor, sizes) -> tf.RaggedTensor:
    """The n-gram strings of each utterance, ``[batch, (ngrams)]``, for ``NGRAMS`` or ``CHAR_NGRAMS``."""
    sizes = tuple(sizes)
    if view == NGRAMS:
        return tf.strings.ngrams(words, ngram_width=sizes, separator=" ")
    padded = tf.strings.join([" ", words, " "])
    chars = tf.strings.unicode_split(padded, "UTF-8")  # [batch, words, chars]
    grams = tf.strings.ngrams(chars, ngram_width=sizes, separator="")  # [batch, words, grams]
    return grams.merge_dims(1, 2)


class Featurizer(keras.layers.Layer):
    """Raw utterances -> ``{feature name: tensor}`` (see the module docstring)."""

    def __init__(self, spec: dict, **kwargs):
        super().__init__(**kwargs)
        views = spec["views"]  # not kept: Keras would track (and copy) its long lists
        self.features = tuple(name for name in FEATURES if name in views)
        self.sequence_length = int(spec["sequence_length"])
        self._sizes: dict[str, int] = {}
        self._ngram_sizes: dict[str, tuple[int, ...]] = {}
        self.words = keras.layers.StringLookup(vocabulary=views[TOKEN_IDS]["vocabulary"][2:], mask_token=PAD, oov_token=OOV)
        self._sizes[TOKEN_IDS] = len(views[TOKEN_IDS]["vocabulary"])
        self.lookups = {}
        self.idf = {}
        for name in NGRAM_VIEWS:
            if name not in views:
                continue
            view = views[name]
            # index 0: out of vocabulary (the vocabulary lists it first)
            self.lookups[name] = keras.layers.StringLookup(vocabulary=view["vocabulary"][1:], oov_token=OOV, name=f"{name}_lookup")
            self.idf[name] = tf.constant(np.asarray(view["idf"], dtype="float32"))
            self._sizes[name] = len(view["vocabulary"])
            self._ngram_sizes[name] = tuple(view["ngrams"])

    def vocabulary_size(self, feature: str) -> int:
        return self._sizes[feature]

    def _token_ids(self, words: tf.RaggedTensor) -> tf.Tensor:
        words = words[:, : self.sequence_length]
        ids = words.with_flat_values(self.words(words.flat_values))
        ids = tf.cast(ids.to_tensor(default_value=0), tf.int64)
        # at least one column: an all-empty batch still has a (padded) step for the LSTM
        return tf.pad(ids, [[0, 0], [0, tf.maximum(0, 1 - tf.shape(ids)[1])]])

    def _tfidf(self, name: str, words: tf.RaggedTensor) -> tf.SparseTensor:
        grams = ngram_tokens(name, words, self._ngram_sizes[name])
        size = self._sizes[name]
        batch = tf.cast(grams.nrows(), tf.int64)
        cols = tf.cast(self.lookups[name](grams.flat_values), tf.int64)
        rows = grams.value_rowids()
        known = cols > 0
        keys = tf.boolean_mask(rows * size + cols, known)
        unique, position = tf.unique(tf.sort(keys))
        counts = tf.math.unsorted_segment_sum(tf.ones_like(position, tf.float32), position, tf.shape(unique)[0])
        rows, cols = unique // size, unique % size
        values = (1.0 + tf.math.log(counts)) * tf.gather(self.idf[name], cols)
        norms = tf.math.unsorted_segment_sum(tf.square(values), rows, batch)
        values = values * tf.math.rsqrt(tf.gather(norms, rows))
        return tf.SparseTensor(tf.stack([rows, cols], axis=1), values, tf.stack([batch, tf.cast(size, tf.int64)]))

    def call(self, utterances):
        words = words_of(utterances)
        features = {TOKEN_IDS: self._token_ids(words)}
        for name in self.lookups:
            features[name] = self._tfidf(name, words)
        return features

    def dense_features(self, utterances):
        """The features with the n-gram views as dense tensors (the ``features`` signature)."""
        return {name: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v for name, v in self.call(utterances).items()}


def _count(view: str, texts: list[str], sizes) -> tuple[Counter, int]:
    """Document frequency of every token (``TOKEN_IDS``) or n-gram of ``view`` over ``texts``."""
    df: Counter = Counter()
    for start in range(0, len(texts), ADAPT_CHUNK):
        words = words_of(tf.constant(texts[start : start + ADAPT_CHUNK], dtype=tf.string))
        tokens = words if view == TOKEN_IDS else ngram_tokens(view, words, sizes)
        # counted with TensorFlow ops: the n-grams of long utterances never become Python strings one by one
        distinct, index = tf.unique(tokens.flat_values)
        n = tf.cast(tf.shape(distinct)[0], tf.int64)
        pairs, _ = tf.unique(tokens.value_rowids() * n + tf.cast(index, tf.int64))  # (utterance, token) once each
        counts = tf.math.bincount(tf.cast(pairs % n, tf.int32), minlength=tf.cast(n, tf.int32))
        df.update(dict(zip(distinct.numpy().tolist(), counts.numpy().tolist())))
    return df, len(texts)


def _top(df: Counter, limit: int) -> list[tuple[bytes, int]]:
    # most frequent first, ties in byte order: the same data always gives the same vocabulary
    return sorted(df.items(), key=lambda kv: (-kv[1], kv[0]))[: max(0, limit)]


def adapt_spec(config: TrainConfig, texts: list[str]) -> dict:
    """Learn the vocabularies and idf weights from ``texts`` (the training utterances only)."""
    texts = [str(t) for t in texts]
    df, _ = _count(TOKEN_IDS, texts, ())
    vocabulary = [PAD, OOV] + [w.decode("utf-8") for w, _ in _top(df, config.max_tokens - 2)]
    views: dict = {TOKEN_IDS: {"vocabulary": vocabulary}}
    for name, size, sizes in ((NGRAMS, config.max_ngrams, WORD_NGRAMS), (CHAR_NGRAMS, config.max_char_ngrams, CHAR_NGRAM_SIZES)):
        if not size:
            continue
        counts, n = _count(name, texts, sizes)
        top = _top(counts, size - 1)
        idf = [math.log((1 + n) / (1 + d)) + 1 for _, d in top]
        views[name] = {
            "ngrams": list(sizes),
            "vocabulary": [OOV] + [g.decode("utf-8") for g, _ in top],
            "idf": [0.0] + idf,  # the out-of-vocabulary column is never filled
        }
    return {"format": FORMAT_VERSION, "sequence_length": config.sequence_length, "standardize": STANDARDIZE, "views": views}


def build(spec: dict):
    """The Keras featurizer layer for ``spec`` (vocabularies fixed, nothing left to adapt)."""
    return Featurizer(spec, name="featurizer")


def save(spec: dict, folder: str, word_vectors: np.ndarray | None = None) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, c.FEATURIZER_FILE)
    if word_vectors is not None:
        np.save(os.path.join(folder, WORD_VECTORS_FILE), word_vectors.astype("float32"))
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
    if spec.get("word_vectors"):
        vectors = os.path.join(folder, WORD_VECTORS_FILE)
        try:
            spec["word_vectors"]["rows"] = np.load(vectors)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{vectors}: the featurizer's word vectors are not readable ({exc}); re-run featurize") from exc
    return spec


def summary(spec: dict) -> dict:
    """Vocabulary sizes per feature, for the artifact's metadata and reports."""
    sizes = {name: len(view["vocabulary"]) for name, view in spec["views"].items()}
    if spec.get("word_vectors"):
        sizes["word_vectors_found"] = int(spec["word_vectors"]["found"])
    return sizes


# --- pretrained word vectors (``TrainConfig.word_vectors_uri``) ---------------------------------


def _python_standardize(word: str) -> str:
    return _PUNCTUATION_RE.sub("", word.lower())


_PUNCTUATION_RE = re.compile(PUNCTUATION)


def read_word_vectors(uri: str, vocabulary: list[str]) -> tuple[np.ndarray, int, int]:
    """The vectors of ``vocabulary``'s words from a fastText / GloVe text file (``.gz`` allowed).

    Streams ``uri`` through the storage layer, keeping only the words the bot uses (matched
    after the featurizer's standardisation; the first vector of a word wins). Returns
    ``(rows, dim, found)``: ``rows`` is ``[len(vocabulary), dim]`` with NaN rows for words the
    file lacks (and for padding / out of vocabulary), which the model initialises at random.
    """
    from botyard.components.base.storage import open_uri

    wanted = {w: i for i, w in enumerate(vocabulary) if i >= 2}
    rows: dict[int, np.ndarray] = {}
    dim = None
    try:
        with open_uri(uri, "rb") as raw:
            stream = gzip.GzipFile(fileobj=raw) if uri.split("?")[0].endswith(".gz") else raw
            for number, line in enumerate(stream, start=1):
                parts = line.rstrip(b"\r\n").split(b" ")
                if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue  # fastText's "<words> <dim>" header
                values = [p for p in parts[1:] if p]
                if not parts[0] or not values:
                    continue
                if dim is None:
                    dim = len(values)
                elif len(values) != dim:
                    raise DataValidationError(
                        f"{uri}: line {number}: {len(values)} numbers, but the first vector has {dim}; "
                        "expected one word and its vector per line (fastText / GloVe text format)",
                        source=uri,
                    )
                try:
                    word = parts[0].decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataValidationError(f"{uri}: line {number}: the word is not valid UTF-8", source=uri) from exc
                index = wanted.get(_python_standardize(word))
                if index is None or index in rows:
                    continue
                try:
                    rows[index] = np.asarray([float(v) for v in values], dtype="float32")
                except ValueError as exc:
                    raise DataValidationError(
                        f"{uri}: line {number}: the vector of {word!r} is not a list of numbers", source=uri
                    ) from exc
    except DataValidationError:
        raise
    except Exception as exc:  # OSError, gzip's BadGzipFile / EOFError, tf.errors.*, fsspec errors
        raise DataValidationError(f"{uri}: cannot read the word vectors ({type(exc).__name__}: {exc})", source=uri) from exc
    if dim is None:
        raise DataValidationError(f"{uri}: no word vectors found; expected lines of '<word> <number> <number> ...'", source=uri)
    matrix = np.full((len(vocabulary), dim), np.nan, dtype="float32")
    for index, vector in rows.items():
        matrix[index] = vector
    return matrix, dim, len(rows)
