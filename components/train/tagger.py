"""The entity tagger's network: a BiLSTM over word embeddings and a character CNN per token, BIO tags out.

Beside the BiLSTM, each token's context features (``base.entity_featurizer.token_features``:
the word, its affixes, the words around it) are scored linearly and added to its tag scores, as
a CRF over hand-made features scores them: the wide part of a wide-and-deep tagger, which
remembers exact contexts the BiLSTM, under dropout, generalises over. A linear-chain CRF
(``train.crf``) scores the tag transitions and decodes.

Characters let it tag values it never saw ("7:45pm", "tuesday the 3rd") from their shape, and
pretrained English word vectors (``base.word_vectors``: GloVe, frozen) from their meaning (an
unseen word near names, games or places); the word-level LSTM keeps cuDNN-eligible settings
(tanh / sigmoid, no recurrent dropout, not unrolled, bias, right-padded masks), as the intent
model's does. ``train.entities`` trains it;
``entity_outputs`` is what the SavedModel's ``serving_default`` adds for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from botyard.components.base import contracts as c
from botyard.components.base import entity_featurizer as ef
from botyard.components.base import word_vectors as wv
from botyard.components.base.config import EntityConfig
from botyard.components.train import fused_lstm
from botyard.components.train.crf import CRF
from botyard.components.train.model import cudnn_lstm

GOLD_TAGS = "gold_tags"  # the training model's extra input
INTENTS = "entity_intents"  # the intent distribution input of an intent-conditioned tagger


class CharCNN(keras.layers.Layer):
    """``[batch, tokens, chars]`` character ids -> ``[batch, tokens, filters]`` (max over characters)."""

    def __init__(self, vocabulary_size: int, embedding_dim: int, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.embedding = keras.layers.Embedding(vocabulary_size, embedding_dim)
        self.conv = keras.layers.Conv1D(filters, 3, padding="same", activation="relu")
        self.filters = filters

    def call(self, char_ids):
        shape = tf.shape(char_ids)
        flat = tf.reshape(char_ids, [-1, shape[2]])
        tokens = tf.shape(flat)[0]
        # at least one (padding) row: on some CPUs (oneDNN, AVX-512) a convolution over zero rows
        # returns its input's shape, and a batch without a token ("", "   ") failed with a 500
        flat = tf.pad(flat, [[0, tf.maximum(0, 1 - tokens)], [0, 0]])
        x = self.conv(self.embedding(flat))
        present = tf.cast(flat > 0, x.dtype)[:, :, None]
        x = tf.reduce_max(x * present, axis=1)[:tokens]  # relu >= 0, so padding never wins the max
        return tf.reshape(x, [shape[0], shape[1], self.filters])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.filters)


class WordVectors(keras.layers.Layer):
    """``[batch, tokens]`` vector ids (``entity_vector_ids``) -> ``[batch, tokens, dim + 1]``: each
    token's pretrained vector, frozen, and a flag that it has one (0 for padding and for a word
    without a vector, whose vector is zeros). ``vectors``: ``[words, dim]``, the rows of ids 2, 3,
    ... (the vectors of the featurizer's ``vector_words``)."""

    def __init__(self, vectors: np.ndarray, **kwargs):
        super().__init__(**kwargs)
        n_words, self.dim = vectors.shape
        table = np.concatenate([np.zeros((2, self.dim), dtype="float32"), vectors])
        # float16: half the model's size, and GloVe's values (|x| < 10, 5-6 digits) lose nothing that matters
        self.vectors = keras.layers.Embedding(n_words + 2, self.dim, embeddings_initializer=keras.initializers.Constant(table),
                                              trainable=False, dtype="float16")

    def call(self, vector_ids):
        has_vector = tf.cast(vector_ids > 1, self.compute_dtype)[..., None]
        return tf.concat([tf.cast(self.vectors(vector_ids), self.compute_dtype), has_vector], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.dim + 1)


class PerToken(keras.layers.Layer):
    """``([batch, dim] vector, [batch, tokens] ids)`` -> the vector repeated for every token: ``[batch, tokens, dim]``."""

    def call(self, vector, token_ids):
        return tf.tile(vector[:, None, :], tf.stack([1, tf.shape(token_ids)[1], 1]))

    def compute_output_shape(self, vector_shape, token_ids_shape):
        return (vector_shape[0], token_ids_shape[1], vector_shape[1])


class TrainingDropout(keras.layers.Layer):
    """A seeded layer that, while training only, replaces a share (``rate``) of its input by
    ``replace``'s answer; an identity at inference."""

    def __init__(self, rate: float, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=False):
        if not training or self.rate <= 0:
            return x
        return self.replace(x)

    def draw(self, shape):
        """``True`` where the input is replaced, for a share ``rate`` of the positions of ``shape``."""
        return keras.random.uniform(shape, seed=self.seed_generator) < self.rate


class IntentDropout(TrainingDropout):
    """While training, replace a share of the (one-hot, gold) intent rows by the uniform
    distribution, so the tagger also tags well when the intent model is unsure at serving."""

    def replace(self, intents):
        uniform = tf.ones_like(intents) / tf.cast(tf.shape(intents)[1], intents.dtype)
        return tf.where(self.draw(tf.shape(intents)[:1])[:, None], uniform, intents)


class WordDropout(TrainingDropout):
    """While training, replace a share of the word ids with the out-of-vocabulary id, so the
    tagger learns to tag from characters and context too: test values it never saw look like that."""

    def replace(self, ids):
        return tf.where(self.draw(tf.shape(ids)) & (ids > 1), tf.ones_like(ids), ids)


class FeatureDropout(TrainingDropout):
    """While training, drop a share of the tokens' context features (id 0 scores nothing), so the
    BiLSTM still learns what the features alone would tell it."""

    def replace(self, ids):
        return tf.where(self.draw(tf.shape(ids)), tf.zeros_like(ids), ids)


class FeatureScores(keras.layers.Layer):
    """``[batch, tokens, features]`` feature ids -> ``[batch, tokens, n_tags]``: the sum of each
    feature's learned score for every tag (a linear model; id 0, unknown or padding, scores 0)."""

    def __init__(self, vocabulary_size: int, n_tags: int, **kwargs):
        super().__init__(**kwargs)
        self.scores = keras.layers.Embedding(vocabulary_size, n_tags, embeddings_initializer="zeros")

    def call(self, feature_ids):
        known = tf.cast(feature_ids > 0, self.compute_dtype)[..., None]
        return tf.reduce_sum(self.scores(feature_ids) * known, axis=2)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.scores.output_dim)


@dataclass
class Tagger:
    """The inference model (features -> per-token emission scores) and its CRF transitions."""

    model: keras.Model
    crf: CRF

    def transitions(self):
        return self.crf.transitions()

    @property
    def uses_intents(self) -> bool:
        """Whether the tagger takes the utterance's intent probabilities (``EntityConfig.intent_dim``)."""
        return any(layer.name == "intent_projection" for layer in self.model.layers)

    @property
    def uses_features(self) -> bool:
        """Whether the tagger scores the tokens' context features (``EntityConfig.feature_min_count``)."""
        return any(layer.name == "feature_scores" for layer in self.model.layers)

    @property
    def uses_vectors(self) -> bool:
        """Whether the tagger reads pretrained word vectors (``EntityConfig.word_vectors``)."""
        return any(layer.name == "word_vectors" for layer in self.model.layers)

    def emissions(self, token_ids, char_ids, intents=None, fused: bool = True, feature_ids=None, vector_ids=None):
        """Per-token emission scores at inference: ``model``'s layers in ``build_tagger``'s order,
        with the BiLSTM through ``fused_lstm`` (one op a direction, not a loop of steps) when
        ``fused``; word dropout and dropout are identities at inference. ``intents``: the
        intent probabilities ``[batch, n_intents]``, for a tagger that ``uses_intents``;
        ``feature_ids``: the featurizer's ``entity_feature_ids``, for one that ``uses_features``;
        ``vector_ids``: its ``entity_vector_ids``, for one that ``uses_vectors``."""
        if self.uses_intents and intents is None:
            raise ValueError("this tagger is conditioned on the intent: pass the intent probabilities")
        if self.uses_features and feature_ids is None:
            raise ValueError("this tagger scores context features: pass the featurizer's feature ids")
        if self.uses_vectors and vector_ids is None:
            raise ValueError("this tagger reads word vectors: pass the featurizer's vector ids")
        inputs = {ef.TOKEN_IDS: token_ids, ef.CHAR_IDS: char_ids}
        if self.uses_intents:
            inputs[INTENTS] = intents = tf.cast(intents, "float32")
        if self.uses_features:
            inputs[ef.FEATURE_IDS] = feature_ids
        if self.uses_vectors:
            inputs[ef.VECTOR_IDS] = vector_ids
        bilstm = self.model.get_layer("entity_bilstm")
        if not (fused and fused_lstm.fusable(bilstm)):
            return self.model(inputs, training=False)
        features = [self.model.get_layer("entity_embedding")(token_ids), self.model.get_layer("char_cnn")(char_ids)]
        if self.uses_vectors:
            features.append(self.model.get_layer("word_vectors")(vector_ids))
        if self.uses_intents:
            features.append(self.model.get_layer("intent_per_token")(self.model.get_layer("intent_projection")(intents), token_ids))
        x = fused_lstm.bidirectional(bilstm, keras.ops.concatenate(features, axis=-1), token_ids > 0)
        emissions = self.model.get_layer("entity_emissions")(x)
        if self.uses_features:
            emissions = emissions + self.model.get_layer("feature_scores")(feature_ids)
        return emissions

    def decode(self, emissions, mask, tags: list[str]):
        return self.crf.decode(emissions, mask, tags)


def build_tagger(config: EntityConfig, featurizer: ef.EntityFeaturizer, n_tags: int,
                 n_intents: int = 0) -> tuple[keras.Model, Tagger]:
    """``(training model, tagger)``: the training model also takes the gold tags and carries the CRF loss.

    With ``n_intents`` > 1 and ``config.intent_dim`` > 0 both take the intent as well (``INTENTS``:
    a distribution over the bot's intents), projected and given to every token beside its features.
    With a featurizer that has context features, both take its ``entity_feature_ids`` too; with
    one that has vector words, its ``entity_vector_ids`` (their GloVe vectors, frozen).
    """
    token_ids = keras.Input(shape=(None,), dtype="int64", name=ef.TOKEN_IDS)
    char_ids = keras.Input(shape=(None, featurizer.max_chars), dtype="int64", name=ef.CHAR_IDS)
    gold = keras.Input(shape=(None,), dtype="int64", name=GOLD_TAGS)
    inputs = {ef.TOKEN_IDS: token_ids, ef.CHAR_IDS: char_ids}
    kept = WordDropout(config.word_dropout, config.seed, name="word_dropout")(token_ids)
    words = keras.layers.Embedding(featurizer.word_vocabulary_size, config.embedding_dim, mask_zero=True, name="entity_embedding")(kept)
    chars = CharCNN(featurizer.char_vocabulary_size, config.char_embedding_dim, config.char_filters, name="char_cnn")(char_ids)
    features = [words, chars]
    if featurizer.vector_words:  # pretrained vectors: what an unseen word means
        inputs[ef.VECTOR_IDS] = keras.Input(shape=(None,), dtype="int64", name=ef.VECTOR_IDS)
        vectors = WordVectors(wv.vectors_of(featurizer.vector_words), name="word_vectors")
        features.append(vectors(inputs[ef.VECTOR_IDS]))
    if config.intent_dim and n_intents > 1:
        inputs[INTENTS] = keras.Input(shape=(n_intents,), dtype="float32", name=INTENTS)
        intents = IntentDropout(config.intent_dropout, config.seed, name="intent_dropout")(inputs[INTENTS])
        projected = keras.layers.Dense(config.intent_dim, name="intent_projection")(intents)
        features.append(PerToken(name="intent_per_token")(projected, token_ids))
    x = keras.layers.Concatenate()(features)
    x = keras.layers.SpatialDropout1D(config.dropout)(x)
    # the mask is passed explicitly: Keras does not carry the embedding's mask through the
    # concatenation with the character features, and an unmasked backward LSTM would read an
    # utterance's padding first (its tags would change with the batch it is in)
    bilstm = keras.layers.Bidirectional(cudnn_lstm(config.lstm_units, return_sequences=True), name="entity_bilstm")
    x = bilstm(x, mask=keras.ops.greater(token_ids, 0))
    x = keras.layers.Dropout(config.dropout)(x)
    emissions = keras.layers.Dense(n_tags, dtype="float32", name="entity_emissions")(x)
    if featurizer.features is not None:  # the wide part: context features scored linearly
        inputs[ef.FEATURE_IDS] = keras.Input(shape=(None, ef.N_FEATURES), dtype="int64", name=ef.FEATURE_IDS)
        kept_features = FeatureDropout(config.feature_dropout, config.seed, name="feature_dropout")(inputs[ef.FEATURE_IDS])
        scores = FeatureScores(featurizer.feature_vocabulary_size, n_tags, dtype="float32", name="feature_scores")(kept_features)
        emissions = keras.layers.Add(name="entity_scores")([emissions, scores])
    crf = CRF(n_tags, name="crf")
    inference = keras.Model(inputs, crf(emissions), name="entity_tagger")
    mask = keras.ops.cast(keras.ops.greater(token_ids, 0), "float32")
    training = keras.Model({**inputs, GOLD_TAGS: gold}, crf(emissions, gold, mask), name="entity_tagger_training")
    training.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    return training, Tagger(inference, crf)


def entity_outputs(featurizer: ef.EntityFeaturizer, tagger: Tagger, tags: list[str], utterances,
                   intent_probabilities=None) -> dict:
    """The SavedModel's entity outputs for ``utterances`` (see ``contracts``): decoded in the graph.
    ``intent_probabilities``: the intent model's output for them (an intent-conditioned tagger)."""
    features = featurizer(utterances)
    ids = features[ef.TOKEN_IDS]
    emissions = tagger.emissions(ids, features[ef.CHAR_IDS], intent_probabilities, feature_ids=features.get(ef.FEATURE_IDS),
                                 vector_ids=features.get(ef.VECTOR_IDS))
    tag_ids, confidence = tagger.decode(emissions, ids > 0, tags)
    return {
        c.OUTPUT_ENTITY_TAGS: tag_ids,
        c.OUTPUT_ENTITY_CONFIDENCE: confidence,
        c.OUTPUT_TOKEN_STARTS: features[ef.TOKEN_STARTS],
        c.OUTPUT_TOKEN_ENDS: features[ef.TOKEN_ENDS],
    }
