"""The intent classifier: text vectorisation + a bidirectional LSTM, exported string-in.

LSTM settings stay cuDNN-eligible (tanh / sigmoid activations, no recurrent dropout,
not unrolled, with bias; masks are right-padded by ``TextVectorization``), so the same
model trains on the fused GPU kernel when a GPU is present.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from components import contracts as c
from components.config import TrainConfig


def build_vectorizer(config: TrainConfig, texts: list[str]) -> keras.layers.TextVectorization:
    vectorizer = keras.layers.TextVectorization(
        max_tokens=config.max_tokens,
        standardize="lower_and_strip_punctuation",
        output_mode="int",
        output_sequence_length=config.sequence_length,
    )
    vectorizer.adapt(tf.constant(texts))
    return vectorizer


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


def build_classifier(config: TrainConfig, vocabulary_size: int, n_labels: int) -> keras.Model:
    """Token ids ``[batch, sequence_length]`` -> intent probabilities ``[batch, n_labels]``."""
    token_ids = keras.Input(shape=(config.sequence_length,), dtype="int64", name="token_ids")
    x = keras.layers.Embedding(vocabulary_size, config.embedding_dim, mask_zero=True, name="embedding")(token_ids)
    x = keras.layers.SpatialDropout1D(config.dropout)(x)
    x = keras.layers.Bidirectional(cudnn_lstm(config.lstm_units), name="bilstm")(x)
    x = keras.layers.Dropout(config.dropout)(x)
    # float32 output even under mixed precision, for a stable softmax
    probabilities = keras.layers.Dense(n_labels, activation="softmax", dtype="float32", name="intent")(x)
    model = keras.Model(token_ids, probabilities, name="intent_classifier")
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
