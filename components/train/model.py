"""The intent classifier over the featurizer's outputs (a bidirectional LSTM beside TF-IDF
n-gram views), and its export as a string-in SavedModel with the featurizer inside.

LSTM settings stay cuDNN-eligible (tanh / sigmoid activations, no recurrent dropout,
not unrolled, with bias; masks are right-padded by the featurizer), so the same
model trains on the fused GPU kernel when a GPU is present.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from botyard.components.base import contracts as c
from botyard.components.base import featurizer as features
from botyard.components.base.config import TrainConfig
from botyard.components.base.featurizer import Featurizer


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


class SparseDense(keras.layers.Layer):
    """A dense layer over a wide, mostly-zero input (TF-IDF n-grams), multiplied as a sparse matrix.

    Same maths as ``Dense``; an utterance touches a few dozen of the tens of thousands of
    n-gram columns, so the sparse product is what keeps training fast on a CPU.
    """

    def __init__(self, units: int, activation: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], self.units), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def call(self, inputs):
        # L2-normalised rows, as scikit-learn's TF-IDF: long and short utterances weigh alike
        inputs = tf.math.l2_normalize(tf.cast(inputs, self.compute_dtype), axis=-1)
        sparse = tf.sparse.from_dense(inputs)
        return self.activation(tf.sparse.sparse_dense_matmul(sparse, tf.cast(self.kernel, self.compute_dtype)) + self.bias)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)


def build_classifier(config: TrainConfig, featurizer: Featurizer, n_labels: int) -> keras.Model:
    """Featurizer outputs -> intent probabilities ``[batch, n_labels]``."""
    token_ids = keras.Input(shape=(None,), dtype="int64", name=features.TOKEN_IDS)
    inputs = {features.TOKEN_IDS: token_ids}
    x = keras.layers.Embedding(featurizer.vocabulary_size(features.TOKEN_IDS), config.embedding_dim, mask_zero=True, name="embedding")(token_ids)
    x = keras.layers.SpatialDropout1D(config.dropout)(x)
    branches = [keras.layers.Bidirectional(cudnn_lstm(config.lstm_units), name="bilstm")(x)]
    for name in (features.NGRAMS, features.CHAR_NGRAMS):
        if name in featurizer.features:
            inputs[name] = keras.Input(shape=(featurizer.vocabulary_size(name),), dtype="float32", name=name)
            dense = keras.layers.Dropout(config.dropout)(inputs[name])
            branches.append(SparseDense(config.ngram_units, activation="relu", name=f"{name}_dense")(dense))
    x = keras.layers.Concatenate()(branches) if len(branches) > 1 else branches[0]
    x = keras.layers.Dropout(config.dropout)(x)
    # float32 output even under mixed precision, for a stable softmax
    probabilities = keras.layers.Dense(n_labels, activation="softmax", dtype="float32", name="intent")(x)
    model = keras.Model(inputs, probabilities, name="intent_classifier")
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )
    return model


def export_serving_model(featurizer: Featurizer, classifier: keras.Model, path: str, entities=None) -> None:
    """Write a SavedModel with the featurizer inside it.

    ``serving_default`` maps ``tf.string [None]`` utterances to ``probabilities``; ``features``
    maps them to the featurizer's outputs, so anyone can check that serving featurizes exactly
    as the featurize step's artifact does. ``entities`` (``train.entities.EntityModel``, when
    the bot's data has entity spans) adds the decoded entity tags and token offsets to
    ``serving_default``.
    """
    archive = keras.export.ExportArchive()
    archive.track(featurizer)
    archive.track(classifier)
    if entities is not None:
        archive.track(entities.featurizer)
        archive.track(entities.tagger.model)
        archive.track(entities.tagger.crf)
    spec = [tf.TensorSpec([None], tf.string, name=c.SIGNATURE_INPUT)]

    @tf.function(input_signature=spec)
    def serve(utterances):
        outputs = {c.OUTPUT_PROBABILITIES: classifier(featurizer(utterances), training=False)}
        if entities is not None:
            outputs.update(entities.outputs(utterances))
        return outputs

    @tf.function(input_signature=spec)
    def featurize(utterances):
        return featurizer(utterances)

    archive.add_endpoint(name=c.SERVING_SIGNATURE, fn=serve)
    archive.add_endpoint(name=c.FEATURES_SIGNATURE, fn=featurize)
    archive.write_out(path, verbose=False)
