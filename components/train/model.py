"""The intent classifier: text vectorisation + a bidirectional LSTM, exported string-in.

LSTM settings stay cuDNN-eligible (tanh / sigmoid activations, no recurrent dropout,
not unrolled, with bias; masks are right-padded by ``TextVectorization``), so the same
model trains on the fused GPU kernel when a GPU is present.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from botyard.components.base import contracts as c
from botyard.components.base.config import TrainConfig


class Featurizer(keras.layers.Layer):
    """Raw utterances -> (word ids for the LSTM, TF-IDF weighted word and character n-grams).

    The n-gram view lets small bots (20 examples an intent) learn from word overlap and
    spelling variants; the LSTM adds word order. Adapted on the training utterances only.
    """

    def __init__(self, config: TrainConfig, **kwargs):
        super().__init__(**kwargs)
        self.words = keras.layers.TextVectorization(
            max_tokens=config.max_tokens,
            standardize="lower_and_strip_punctuation",
            output_mode="int",
            output_sequence_length=config.sequence_length,
        )
        self.ngrams = keras.layers.TextVectorization(
            max_tokens=config.max_ngrams, standardize="lower_and_strip_punctuation", ngrams=2, output_mode="tf_idf"
        ) if config.max_ngrams else None
        self.chars = keras.layers.TextVectorization(
            max_tokens=config.max_char_ngrams,
            standardize="lower_and_strip_punctuation",
            split="character",
            ngrams=(3, 4, 5),
            output_mode="tf_idf",
        ) if config.max_char_ngrams else None

    def adapt(self, texts: list[str]) -> None:
        data = tf.constant(texts)
        for layer in (self.words, self.ngrams, self.chars):
            if layer is not None:
                layer.adapt(data)

    def call(self, utterances):
        ids = self.words(utterances)
        # trim the right padding the whole batch shares: the LSTM then runs over the longest
        # utterance in the batch, not ``sequence_length`` steps (masks stay right-padded)
        longest = tf.reduce_max(tf.reduce_sum(tf.cast(ids > 0, tf.int32), axis=1))
        features = {"token_ids": ids[:, : tf.maximum(longest, 1)]}
        if self.ngrams is not None:
            features["ngrams"] = self.ngrams(utterances)
        if self.chars is not None:
            features["char_ngrams"] = self.chars(utterances)
        return features


def build_vectorizer(config: TrainConfig, texts: list[str]) -> Featurizer:
    featurizer = Featurizer(config)
    featurizer.adapt(texts)
    return featurizer


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
    token_ids = keras.Input(shape=(None,), dtype="int64", name="token_ids")
    inputs = {"token_ids": token_ids}
    x = keras.layers.Embedding(featurizer.words.vocabulary_size(), config.embedding_dim, mask_zero=True, name="embedding")(token_ids)
    x = keras.layers.SpatialDropout1D(config.dropout)(x)
    branches = [keras.layers.Bidirectional(cudnn_lstm(config.lstm_units), name="bilstm")(x)]
    for name, layer in (("ngrams", featurizer.ngrams), ("char_ngrams", featurizer.chars)):
        if layer is not None:
            inputs[name] = keras.Input(shape=(layer.vocabulary_size(),), dtype="float32", name=name)
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


def export_serving_model(vectorizer, classifier: keras.Model, path: str) -> None:
    """Write a SavedModel whose ``serving_default`` maps ``tf.string [None]`` to probabilities."""
    archive = keras.export.ExportArchive()
    archive.track(vectorizer)
    archive.track(classifier)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=c.SIGNATURE_INPUT)])
    def serve(utterances):
        return {c.OUTPUT_PROBABILITIES: classifier(vectorizer(utterances), training=False)}

    archive.add_endpoint(name=c.SERVING_SIGNATURE, fn=serve)
    archive.write_out(path, verbose=False)
