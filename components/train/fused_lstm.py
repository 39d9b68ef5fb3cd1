"""Serving a trained Keras bidirectional LSTM through TensorFlow's fused ``BlockLSTMV2`` kernel.

Keras runs an LSTM without a GPU as a ``while`` loop: about 45 graph nodes a time step and
direction, so one 9-word utterance executes some 1,300 nodes -- most of a request's time in
the predictor -- and every cold load instantiates the loop's functions. ``BlockLSTMV2`` runs a
whole direction in one op, with the same weights, the same gate order and the same arithmetic
(sigmoid gates, tanh cell, no peepholes, no clipping), so the exported SavedModel answers the
same (equal to float rounding: ``tests/test_fused_lstm.py``) in less time. Training keeps the
Keras layer (on the cuDNN kernel when a GPU is there); only the export uses this.

Masks must be right-padded (the featurizers' are): an example's last valid step is at its
length - 1, and the backward direction runs over its valid steps reversed
(``tf.reverse_sequence``) -- which is what Keras's masked ``go_backwards`` computes.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def fusable(layer) -> bool:
    """Whether ``layer`` is a bidirectional LSTM this module computes exactly."""
    if not isinstance(layer, keras.layers.Bidirectional) or layer.merge_mode != "concat":
        return False
    for direction in (layer.forward_layer, layer.backward_layer):
        if not isinstance(direction, keras.layers.LSTM) or direction.return_state:
            return False
        cell = direction.cell
        if not (cell.use_bias and cell.activation is keras.activations.tanh and cell.recurrent_activation is keras.activations.sigmoid):
            return False
    return True


def _direction(lstm: keras.layers.LSTM, x_time_major):
    """Every step's hidden state ``[time, batch, units]`` of one direction over ``x``."""
    cell = lstm.cell
    weights = tf.concat([tf.cast(cell.kernel, tf.float32), tf.cast(cell.recurrent_kernel, tf.float32)], axis=0)
    zeros = tf.zeros(tf.stack([tf.shape(x_time_major)[1], cell.units]))
    no_peephole = tf.zeros([cell.units])
    *_, h = tf.raw_ops.BlockLSTMV2(
        seq_len_max=tf.cast(tf.shape(x_time_major)[0], tf.int64), x=x_time_major, cs_prev=zeros, h_prev=zeros,
        w=weights, wci=no_peephole, wcf=no_peephole, wco=no_peephole, b=tf.cast(cell.bias, tf.float32),
        cell_clip=0.0, use_peephole=False,
    )  # fmt: skip
    return h


def bidirectional(layer: keras.layers.Bidirectional, x, mask):
    """``layer(x, mask=mask, training=False)`` for a ``fusable`` layer and a right-padded ``mask``.

    Returns ``[batch, 2 * units]`` (each direction's state after the example's last valid step;
    zeros for an empty example), or ``[batch, time, 2 * units]`` for ``return_sequences``
    (zeros at padded steps).
    """
    dtype = x.dtype
    lengths = tf.reduce_sum(tf.cast(mask, tf.int64), axis=1)
    # one padded step at the end: a batch of empty utterances still has a time axis
    x = tf.pad(tf.cast(x, tf.float32), [[0, 0], [0, 1], [0, 0]])
    forward = tf.transpose(_direction(layer.forward_layer, tf.transpose(x, [1, 0, 2])), [1, 0, 2])
    reversed_x = tf.reverse_sequence(x, lengths, seq_axis=1, batch_axis=0)
    backward = tf.transpose(_direction(layer.backward_layer, tf.transpose(reversed_x, [1, 0, 2])), [1, 0, 2])
    if layer.return_sequences:
        backward = tf.reverse_sequence(backward, lengths, seq_axis=1, batch_axis=0)
        valid = tf.cast(mask, tf.float32)[:, :, None]
        out = tf.concat([forward[:, :-1], backward[:, :-1]], axis=-1) * valid
    else:
        last = tf.maximum(lengths - 1, 0)
        states = tf.concat([tf.gather(forward, last, batch_dims=1), tf.gather(backward, last, batch_dims=1)], axis=-1)
        out = tf.where((lengths > 0)[:, None], states, tf.zeros_like(states))
    return tf.cast(out, dtype)
