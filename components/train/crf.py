"""The tagger's linear-chain CRF: learned transition scores, their training loss and the in-graph decoding.

Training adds the negative log-likelihood of the gold tag sequences (``CRF``); serving decodes
with ``crf_decode``, Viterbi over the well-formed BIO sequences and each chosen tag's marginal
probability, written in TensorFlow ops so the exported SavedModel returns decoded tags. Both
are checked against the NumPy reference in ``base.entities`` (``viterbi``, ``marginals``).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from botyard.components.base.entities import allowed_transitions


class CRF(keras.layers.Layer):
    """Learned transition scores over the tags, trained with the CRF sequence log-likelihood.

    Called with ``(emissions, tags, mask)`` while training it adds the negative log-likelihood
    of the gold tag sequences as the model's loss (forward algorithm, masked, right-padded);
    ``decode`` is the constrained Viterbi decoding the SavedModel runs in its graph
    (``crf_decode``), ``transitions`` the learned scores for the NumPy reference
    (``base.entities.Transitions``).
    """

    def __init__(self, n_tags: int, **kwargs):
        super().__init__(**kwargs)
        self.n_tags = n_tags
        self.supports_masking = True

    def build(self, *args, **kwargs):
        n = self.n_tags
        self.start = self.add_weight(name="start", shape=(n,), initializer="zeros")
        self.pairs = self.add_weight(name="pairs", shape=(n, n), initializer="zeros")
        self.end = self.add_weight(name="end", shape=(n,), initializer="zeros")

    def call(self, emissions, tags=None, mask=None):
        if tags is not None:
            self.add_loss(tf.reduce_mean(self.negative_log_likelihood(emissions, tags, mask)))
        return emissions

    def compute_output_shape(self, input_shape, *args, **kwargs):
        return input_shape

    def negative_log_likelihood(self, emissions, tags, mask):
        emissions = tf.cast(emissions, tf.float32)
        mask = tf.cast(mask, tf.float32)
        tags = tf.cast(tags, tf.int32)
        lengths = tf.cast(tf.reduce_sum(mask, axis=1), tf.int32)
        emitted = tf.reduce_sum(tf.gather(emissions, tags, batch_dims=2) * mask, axis=1)
        pair_idx = tf.stack([tags[:, :-1], tags[:, 1:]], axis=-1)
        moved = tf.reduce_sum(tf.gather_nd(self.pairs, pair_idx) * mask[:, 1:], axis=1)
        last = tf.gather(tags, tf.maximum(lengths - 1, 0), batch_dims=1)
        gold = emitted + moved + tf.gather(self.start, tags[:, 0]) + tf.gather(self.end, last)
        steps = tf.transpose(emissions, [1, 0, 2])  # the forward algorithm runs over tokens
        step_mask = tf.transpose(mask, [1, 0])

        def forward(alpha, inputs):
            emit, m = inputs
            new = tf.reduce_logsumexp(alpha[:, :, None] + self.pairs[None], axis=1) + emit
            return tf.where(m[:, None] > 0, new, alpha)

        alpha0 = steps[0] + self.start[None]
        final = tf.foldl(forward, (steps[1:], step_mask[1:]), initializer=alpha0)
        log_z = tf.reduce_logsumexp(final + self.end[None], axis=1)
        return log_z - gold

    def decode(self, emissions, mask, tags: list[str]):
        """In-graph constrained decoding: ``(tag ids [batch, tokens] (-1 = padding), confidence [batch, tokens])``."""
        return crf_decode(emissions, mask, self.start, self.pairs, self.end, tags)

    def transitions(self):
        from botyard.components.base.entities import Transitions

        return Transitions(self.start.numpy(), self.pairs.numpy(), self.end.numpy())


FORBIDDEN = -1e4  # log-potential of an ill-formed step (finite: no inf - inf = nan)


def crf_decode(emissions, mask, start, pairs, end, tags: list[str]):
    """Viterbi's best well-formed tag sequence and each chosen tag's marginal probability.

    The same computation as ``base.entities.viterbi`` and ``marginals`` (the reference, in
    NumPy), written with TensorFlow ops so the SavedModel's ``serving_default`` returns decoded
    tags: TF Serving users need neither the transition scores nor a decoder of their own.
    ``mask`` is ``[batch, tokens]``, true on real tokens (right-padded).
    """
    start_ok, pair_ok = allowed_transitions(tags)
    tokens = tf.shape(emissions)[1]
    # two padding columns more: a batch of utterances without a token ("", "   ") still has a
    # first step and one step for the scans (tf.scan cannot stack zero steps); cut off below
    emissions = tf.pad(tf.cast(emissions, tf.float32), [[0, 0], [0, 2], [0, 0]])
    mask = tf.pad(tf.cast(mask, tf.bool), [[0, 0], [0, 2]])
    start = tf.cast(start, tf.float32) + tf.constant(np.where(start_ok, 0.0, FORBIDDEN), tf.float32)
    pairs = tf.cast(pairs, tf.float32) + tf.constant(np.where(pair_ok, 0.0, FORBIDDEN), tf.float32)
    end = tf.cast(end, tf.float32)
    n = len(tags)
    steps = tf.transpose(emissions, [1, 0, 2])  # [tokens, batch, tags]
    active = tf.transpose(tf.cast(mask, tf.bool), [1, 0])
    batch = tf.shape(emissions)[0]
    first = steps[0] + start[None]
    identity = tf.broadcast_to(tf.range(n, dtype=tf.int32)[None], [batch, n])

    def best_step(carry, inputs):
        score, _ = carry
        emit, on = inputs
        candidates = score[:, :, None] + pairs[None]  # [batch, from, to]
        best = tf.reduce_max(candidates, axis=1) + emit
        back = tf.argmax(candidates, axis=1, output_type=tf.int32)
        return tf.where(on[:, None], best, score), tf.where(on[:, None], back, identity)

    scores, backs = tf.scan(best_step, (steps[1:], active[1:]), initializer=(first, identity))
    final = tf.concat([first[None], scores], axis=0)[-1] + end[None]
    last = tf.argmax(final, axis=1, output_type=tf.int32)

    def backtrack(tag, back):
        return tf.gather(back, tag, batch_dims=1)

    earlier = tf.scan(backtrack, backs, initializer=last, reverse=True)  # tags at tokens 0 .. T-2
    path = tf.transpose(tf.concat([earlier, last[None]], axis=0), [1, 0])

    def forward(alpha, inputs):
        emit, on = inputs
        new = tf.reduce_logsumexp(alpha[:, :, None] + pairs[None], axis=1) + emit
        return tf.where(on[:, None], new, alpha)

    alphas = tf.concat([first[None], tf.scan(forward, (steps[1:], active[1:]), initializer=first)], axis=0)

    def backward(beta, inputs):
        emit, on = inputs  # of the next token
        new = tf.reduce_logsumexp(pairs[None] + (emit + beta)[:, None, :], axis=2)
        return tf.where(on[:, None], new, tf.broadcast_to(end[None], tf.shape(beta)))

    last_beta = tf.broadcast_to(end[None], [batch, n])
    betas = tf.scan(backward, (steps[1:], active[1:]), initializer=last_beta, reverse=True)
    betas = tf.concat([betas, last_beta[None]], axis=0)
    log_z = tf.reduce_logsumexp(alphas[-1] + end[None], axis=1)
    probabilities = tf.exp(tf.transpose(alphas + betas, [1, 0, 2]) - log_z[:, None, None])
    confidence = tf.gather(probabilities, path, batch_dims=2)
    return tf.where(mask, path, -1)[:, :tokens], tf.where(mask, confidence, 0.0)[:, :tokens]
