"""The intent classifier over the featurizer's outputs, and its export as a string-in SavedModel
with the featurizer inside.

A wide-and-deep ensemble in one Keras model, every head trained on its own loss at once:

``lstm``   word embeddings -> bidirectional LSTM -> dense softmax (word order, context)
``ngram``  a hidden ReLU layer over each TF-IDF n-gram view (words, characters) -> dense softmax
``wide``   a linear softmax over the TF-IDF n-gram views (what a bag-of-words model knows)

Serving returns the mean of the heads' probabilities. A head with its own loss cannot lean on
the others, so each one learns everything it can (a linear head alone fits small bots fast; the
LSTM needs longer), and their mistakes differ, which the mean averages out.

The n-gram views arrive as sparse tensors: a layer over them (``SparseBag``) gathers only the
rows of its kernel an utterance touches, so its gradient is sparse and ``LazyAdam`` updates
only those rows. That keeps a step's cost independent of the vocabulary sizes.

LSTM settings stay cuDNN-eligible (tanh / sigmoid activations, no recurrent dropout, not
unrolled, with bias; masks are right-padded by the featurizer), so the same model trains on
the fused GPU kernel when a GPU is present.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from botyard.components.base import contracts as c
from botyard.components.base import featurizer as features
from botyard.components.base.config import TrainConfig
from botyard.components.base.featurizer import Featurizer

HEADS = ("lstm", "ngram", "wide")
import json as _json, os as _os
EXP = _json.loads(_os.environ.get("BOTYARD_EXP", "{}"))  # scratch switches for experiments


def cudnn_lstm(units: int, **kwargs) -> keras.layers.LSTM:
    """An LSTM layer whose settings keep it on the cuDNN kernel."""
    return keras.layers.LSTM(
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        recurrent_dropout=0.0,
        unroll=False,
        use_bias=True,
        **kwargs,
    )


class SparseBag(keras.layers.Layer):
    """``Dense`` over a wide sparse input (``tf.SparseTensor [batch, vocabulary]``): the weighted
    sum of the kernel rows of an utterance's n-grams. ``feature_dropout`` drops single n-grams
    while training (rescaling the rest), so a head cannot rest on one n-gram of an intent."""

    def __init__(self, vocabulary: int, units: int, activation: str | None = None, feature_dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary, self.units, self.feature_dropout = vocabulary, units, feature_dropout
        self.activation = keras.activations.get(activation)
        self.seed = keras.random.SeedGenerator(kwargs.get("seed") or 1)

    def build(self, input_shape=None):
        self.kernel = self.add_weight(name="kernel", shape=(self.vocabulary, self.units), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def call(self, inputs: tf.SparseTensor, training=False):
        rows, cols, values = inputs.indices[:, 0], inputs.indices[:, 1], tf.cast(inputs.values, self.compute_dtype)
        if training and self.feature_dropout > 0:
            keep = keras.random.uniform(tf.shape(values), seed=self.seed) >= self.feature_dropout
            values = tf.where(keep, values / (1.0 - self.feature_dropout), tf.zeros_like(values))
        rows_of = tf.gather(tf.cast(self.kernel, self.compute_dtype), cols) * values[:, None]
        summed = tf.math.unsorted_segment_sum(rows_of, rows, tf.cast(inputs.dense_shape[0], tf.int32))
        return self.activation(summed + tf.cast(self.bias, self.compute_dtype))


class IntentModel(keras.Model):
    """Featurizer outputs -> ``{head: probabilities [batch, n_labels]}`` (see the module docstring)."""

    def __init__(self, config: TrainConfig, featurizer: Featurizer, n_labels: int, word_vectors: np.ndarray | None = None, **kwargs):
        super().__init__(name="intent_classifier", **kwargs)
        self.n_labels = n_labels
        self.views = tuple(v for v in features.NGRAM_VIEWS if v in featurizer.features)
        vocabulary = featurizer.vocabulary_size(features.TOKEN_IDS)
        dim = config.embedding_dim if word_vectors is None else word_vectors.shape[1]
        self.embedding = keras.layers.Embedding(
            vocabulary, dim, mask_zero=True, name="embedding",
            embeddings_initializer=_vectors_initializer(word_vectors, config.seed) if word_vectors is not None else "uniform",
        )
        self.embedding_dropout = keras.layers.SpatialDropout1D(config.dropout, seed=config.seed)
        self.bilstm = keras.layers.Bidirectional(cudnn_lstm(config.lstm_units), name="bilstm")
        self.lstm_dropout = keras.layers.Dropout(config.dropout, seed=config.seed)
        self.lstm_out = keras.layers.Dense(n_labels, dtype="float32", name="lstm_logits")
        self.ngram_hidden = {
            v: SparseBag(featurizer.vocabulary_size(v), config.ngram_units, "relu", config.feature_dropout, name=f"{v}_hidden")
            for v in self.views
        }
        self.ngram_dropout = keras.layers.Dropout(config.dropout, seed=config.seed + 1)
        self.ngram_out = keras.layers.Dense(n_labels, dtype="float32", name="ngram_logits")
        self.wide = {
            v: SparseBag(featurizer.vocabulary_size(v), n_labels, None, config.feature_dropout, name=f"{v}_wide", dtype="float32")
            for v in self.views
        }
        self.heads = tuple(EXP.get("heads", "lstm,ngram,wide").split(",")) if self.views else ("lstm",)
        self.deep_dropout = keras.layers.Dropout(config.dropout, seed=config.seed + 2)
        self.deep_out = keras.layers.Dense(n_labels, dtype="float32", name="deep_logits")

    def call(self, inputs, training=False):
        ids = inputs[features.TOKEN_IDS]
        if "lstm" in self.heads or "deep" in self.heads:
            x = self.embedding(ids)
            mask = ids > 0
            x = self.embedding_dropout(x, training=training)
            pooled = self.bilstm(x, mask=mask, training=training)
        logits = {}
        if "lstm" in self.heads:
            logits["lstm"] = self.lstm_out(self.lstm_dropout(pooled, training=training))
        if self.views:
            hidden = [self.ngram_hidden[v](inputs[v], training=training) for v in self.views]
            hidden = keras.ops.concatenate(hidden, axis=-1) if len(hidden) > 1 else hidden[0]
            if "ngram" in self.heads:
                logits["ngram"] = self.ngram_out(self.ngram_dropout(hidden, training=training))
            if "deep" in self.heads:
                logits["deep"] = self.deep_out(self.deep_dropout(keras.ops.concatenate([pooled, hidden], axis=-1), training=training))
            if "wide" in self.heads:
                logits["wide"] = tf.add_n([self.wide[v](inputs[v], training=training) for v in self.views])
        # float32 outputs even under mixed precision, for a stable softmax
        return {head: tf.nn.softmax(tf.cast(z, tf.float32)) for head, z in logits.items()}

    @property
    def _default_save_signature(self):
        return None  # the export writes its own signatures (sparse inputs have no dense default)

    def probabilities(self, inputs):
        """What serving returns: the mean of the heads' probabilities."""
        heads = self(inputs, training=False)
        if EXP.get("combine") == "geo":
            logp = tf.add_n([tf.math.log(p + 1e-7) for p in heads.values()]) / float(len(heads))
            return tf.nn.softmax(logp)
        return tf.add_n(list(heads.values())) / float(len(heads))


def _vectors_initializer(rows: np.ndarray, seed: int):
    """Pretrained rows where the file had a vector; random rows of the same scale elsewhere."""
    known = ~np.isnan(rows).any(axis=1)
    scale = float(np.std(rows[known])) if known.any() else 0.05
    fill = np.random.default_rng(seed).normal(0.0, scale, size=rows.shape).astype("float32")
    matrix = np.where(known[:, None], np.nan_to_num(rows), fill).astype("float32")
    matrix[0] = 0.0  # padding

    def initializer(shape, dtype=None):
        return tf.constant(matrix, dtype=dtype or "float32")

    return initializer


class LazyAdam(keras.optimizers.Adam):
    """Adam that, for a sparse gradient (embedding and n-gram kernel rows), updates only the rows
    the batch touched; dense gradients get plain Adam. The usual choice for wide embeddings:
    a step costs what the batch touches, not the vocabulary size."""

    def update_step(self, gradient, variable, learning_rate):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        lr = tf.cast(learning_rate, variable.dtype)
        step = tf.cast(self.iterations + 1, variable.dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, variable.dtype), tf.cast(self.beta_2, variable.dtype)
        alpha = lr * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
        unique, position = tf.unique(gradient.indices)
        values = tf.math.unsorted_segment_sum(tf.cast(gradient.values, variable.dtype), position, tf.shape(unique)[0])
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        m_rows = tf.gather(m, unique) * beta_1 + values * (1 - beta_1)
        v_rows = tf.gather(v, unique) * beta_2 + tf.square(values) * (1 - beta_2)
        self.assign(m, tf.IndexedSlices(m_rows, unique))
        self.assign(v, tf.IndexedSlices(v_rows, unique))
        self.assign_sub(variable, tf.IndexedSlices(m_rows * alpha / (tf.sqrt(v_rows) + self.epsilon), unique))


def build_classifier(config: TrainConfig, featurizer: Featurizer, n_labels: int, word_vectors: np.ndarray | None = None) -> IntentModel:
    """The model, built (its weights exist) by one call on an empty batch."""
    model = IntentModel(config, featurizer, n_labels, word_vectors)
    model(featurizer(tf.constant([""], dtype=tf.string)), training=False)
    return model


def export_serving_model(featurizer: Featurizer, classifier: IntentModel, path: str) -> None:
    """Write a SavedModel with the featurizer inside it.

    ``serving_default`` maps ``tf.string [None]`` utterances to ``probabilities``; ``features``
    maps them to the featurizer's outputs (n-gram views as dense tensors), so anyone can check
    that serving featurizes exactly as the featurize step's artifact does.
    """
    archive = keras.export.ExportArchive()
    archive.track(featurizer)
    archive.track(classifier)
    spec = [tf.TensorSpec([None], tf.string, name=c.SIGNATURE_INPUT)]

    @tf.function(input_signature=spec)
    def serve(utterances):
        return {c.OUTPUT_PROBABILITIES: classifier.probabilities(featurizer(utterances))}

    @tf.function(input_signature=spec)
    def featurize(utterances):
        return featurizer.dense_features(utterances)

    archive.add_endpoint(name=c.SERVING_SIGNATURE, fn=serve)
    archive.add_endpoint(name=c.FEATURES_SIGNATURE, fn=featurize)
    archive.write_out(path, verbose=False)
