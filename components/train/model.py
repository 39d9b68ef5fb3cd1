"""The intent classifier over the featurizer's outputs, and its export as a string-in SavedModel
with the featurizer inside.

A wide-and-deep model, both heads trained at once, each on its own loss:

``deep``  word embeddings -> bidirectional LSTM, beside a hidden ReLU layer over the TF-IDF
          word and character n-gram views -> dense softmax (word order and sub-word evidence)
``wide``  a linear softmax over the same n-gram views (what a bag-of-words model knows)

Serving returns their geometric mean (the softmax of the mean log-probabilities). A head with
its own loss cannot lean on the other, so each learns everything it can, and their mistakes
differ; on CLINC150's validation data the pair beats either head alone and every other mix of
heads that was tried (an LSTM-only head, an n-gram-only head).

The n-gram views arrive as sparse tensors. ``SparseBag`` reads only the kernel rows a batch
touches and multiplies them as a sparse matrix, so the gradient is those rows and ``LazyAdam``
updates only them: a step costs what the batch touches, not the vocabulary sizes. The hidden
layer and the wide head share one kernel (its columns side by side), so one read serves both.

LSTM settings stay cuDNN-eligible (tanh / sigmoid activations, no recurrent dropout, not
unrolled, with bias; masks are right-padded by the featurizer), so the same model trains on
the fused GPU kernel when a GPU is present. The export serves the BiLSTM through TensorFlow's
fused ``BlockLSTMV2`` kernel instead of Keras's per-step loop (``fused_lstm``): the same weights
and answers in a fraction of the graph nodes, so requests and cold loads cost less.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from botyard.components.base import contracts as c
from botyard.components.base import featurizer as features
from botyard.components.base.config import TrainConfig
from botyard.components.base.featurizer import Featurizer
from botyard.components.train import fused_lstm


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


def _rows(variable, index):
    """Rows ``index`` of a variable, read in place (``ResourceGather``): never a copy of the whole
    variable, so the optimizer's in-place row updates need no copy either."""
    handle = variable.value if isinstance(variable, keras.Variable) else variable
    return handle.sparse_read(index) if hasattr(handle, "sparse_read") else tf.gather(handle, index)


class SparseBag(keras.layers.Layer):
    """``Dense`` over wide sparse inputs (``tf.SparseTensor [batch, vocabulary]`` views, side by
    side): the weighted sum of the kernel rows of an utterance's n-grams, so the gradient is
    sparse. ``feature_dropout`` drops single n-grams while training (rescaling the rest), so a
    head cannot rest on one n-gram of an intent."""

    def __init__(self, vocabularies: tuple[int, ...], units: int, feature_dropout: float = 0.0, seed: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.vocabularies, self.units, self.feature_dropout = tuple(vocabularies), units, feature_dropout
        self.offsets = tuple(int(x) for x in np.cumsum((0,) + self.vocabularies[:-1]))
        self.seed = keras.random.SeedGenerator(seed)

    def build(self, input_shape=None):
        self.kernel = self.add_weight(name="kernel", shape=(sum(self.vocabularies), self.units), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def call(self, views: list, training=False):
        rows = tf.concat([v.indices[:, 0] for v in views], axis=0)
        cols = tf.concat([v.indices[:, 1] + offset for v, offset in zip(views, self.offsets)], axis=0)
        values = tf.cast(tf.concat([v.values for v in views], axis=0), self.compute_dtype)
        if training and self.feature_dropout > 0:
            keep = keras.random.uniform(tf.shape(values), seed=self.seed) >= self.feature_dropout
            values = tf.where(keep, values / (1.0 - self.feature_dropout), tf.zeros_like(values))
        # gather the kernel rows the batch uses (once each), then multiply the batch's weights
        # [utterances x used n-grams] by them: the kernel's gradient is those rows only
        # (IndexedSlices), and nothing of size n-grams x units is ever materialised
        used, position = tf.unique(cols)
        kernel_rows = tf.cast(_rows(self.kernel, used), self.compute_dtype)
        at = tf.stack([rows, tf.cast(position, tf.int64)], axis=1)
        shape = tf.stack([views[0].dense_shape[0], tf.cast(tf.shape(used)[0], tf.int64)])
        values = tf.stop_gradient(values)
        if training:
            # a training batch (at most ``batch_size`` rows) as a dense matrix: on a CPU its
            # matmul and gradient take a third of the sparse kernel's time (~7% of a train step)
            out = tf.matmul(tf.scatter_nd(at, values, shape), kernel_rows)
        else:  # any number of utterances: the weights stay sparse
            out = tf.sparse.sparse_dense_matmul(tf.SparseTensor(at, values, shape), kernel_rows)
        return out + tf.cast(self.bias, self.compute_dtype)


class IntentModel(keras.Model):
    """Featurizer outputs -> ``{head: log-probabilities [batch, n_labels]}`` (see the module docstring)."""

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
        # one gather serves both n-gram parts: the first ``ngram_units`` columns are the deep
        # head's hidden layer, the last ``n_labels`` the wide (linear) head's logits
        self.ngram_units = config.ngram_units
        self.bag = SparseBag(
            tuple(featurizer.vocabulary_size(v) for v in self.views), config.ngram_units + n_labels, config.feature_dropout,
            seed=config.seed, name="ngram_bag",
        ) if self.views else None
        self.deep_dropout = keras.layers.Dropout(config.dropout, seed=config.seed + 1)
        self.deep_out = keras.layers.Dense(n_labels, dtype="float32", name="deep_logits")
        self.heads = ("deep", "wide") if self.views else ("deep",)

    def call(self, inputs, training=False, fused=False):
        """``fused``: run the BiLSTM as ``fused_lstm`` does (inference only; what the export serves)."""
        ids = inputs[features.TOKEN_IDS]
        mask = ids > 0
        x = self.embedding_dropout(self.embedding(ids), training=training)
        if fused and not training and fused_lstm.fusable(self.bilstm):
            pooled = fused_lstm.bidirectional(self.bilstm, x, mask)
        else:
            pooled = self.bilstm(x, mask=mask, training=training)  # the last state of each direction
        logits = {}
        deep = [pooled]
        if self.views:
            bag = self.bag([inputs[v] for v in self.views], training=training)
            deep.append(tf.nn.relu(bag[:, : self.ngram_units]))
            logits["wide"] = bag[:, self.ngram_units :]
        deep = keras.ops.concatenate(deep, axis=-1) if len(deep) > 1 else deep[0]
        logits["deep"] = self.deep_out(self.deep_dropout(deep, training=training))
        # float32 outputs even under mixed precision, for a stable softmax
        return {head: tf.nn.log_softmax(tf.cast(z, tf.float32)) for head, z in logits.items()}

    @property
    def _default_save_signature(self):
        return None  # the export writes its own signatures (sparse inputs have no dense default)

    def probabilities(self, inputs, fused=False):
        """What serving returns: the heads' geometric mean (the softmax of their mean log-probabilities).

        ``fused``: through the fused LSTM kernel (``fused_lstm``), as the exported SavedModel does.
        """
        heads = self(inputs, training=False, fused=fused)
        return tf.nn.softmax(tf.add_n(list(heads.values())) / float(len(heads)))


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
        m_rows = _rows(m, unique) * beta_1 + values * (1 - beta_1)
        v_rows = _rows(v, unique) * beta_2 + tf.square(values) * (1 - beta_2)
        self.assign(m, tf.IndexedSlices(m_rows, unique))
        self.assign(v, tf.IndexedSlices(v_rows, unique))
        self.assign_sub(variable, tf.IndexedSlices(m_rows * alpha / (tf.sqrt(v_rows) + self.epsilon), unique))


def build_classifier(config: TrainConfig, featurizer: Featurizer, n_labels: int, word_vectors: np.ndarray | None = None) -> IntentModel:
    """The model, built (its weights exist) by one call on an empty batch."""
    model = IntentModel(config, featurizer, n_labels, word_vectors)
    model(featurizer(tf.constant([""], dtype=tf.string)), training=False)
    return model


def export_serving_model(featurizer: Featurizer, classifier: IntentModel, path: str, entities=None) -> None:
    """Write a SavedModel with the featurizer inside it.

    ``serving_default`` maps ``tf.string [None]`` utterances to ``probabilities``; ``features``
    maps them to the featurizer's outputs (n-gram views as dense tensors), so anyone can check
    that serving featurizes exactly as the featurize step's artifact does. ``entities``
    (``train.entities.EntityModel``, when the bot's data has entity spans) adds the decoded
    entity tags and token offsets to ``serving_default``.
    """
    # only the featurizer is tracked (for its lookup tables, which the endpoints do not track):
    # the endpoints track the classifier's variables, and tracking its layers as well stores
    # every weight twice (Keras 3.15 keeps both its own variables and the TensorFlow variables
    # under them)
    archive = keras.export.ExportArchive()
    archive.track(featurizer)
    if entities is not None:
        archive.track(entities.featurizer)  # its lookup tables (the weights are tracked by the endpoint)
    spec = [tf.TensorSpec([None], tf.string, name=c.SIGNATURE_INPUT)]

    @tf.function(input_signature=spec)
    def serve(utterances):
        outputs = {c.OUTPUT_PROBABILITIES: classifier.probabilities(featurizer(utterances), fused=True)}
        if entities is not None:  # the tagger conditions on the intent model's answer
            outputs.update(entities.outputs(utterances, outputs[c.OUTPUT_PROBABILITIES]))
        return outputs

    @tf.function(input_signature=spec)
    def featurize(utterances):
        return featurizer.dense_features(utterances)

    archive.add_endpoint(name=c.SERVING_SIGNATURE, fn=serve)
    archive.add_endpoint(name=c.FEATURES_SIGNATURE, fn=featurize)
    archive.write_out(path, verbose=False)
