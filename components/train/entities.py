"""The entity tagger: a BiLSTM over word embeddings and a character CNN per token, BIO tags out.

Beside the BiLSTM, each token's context features (``base.entity_featurizer.token_features``:
the word, its affixes, the words around it) are scored linearly and added to its tag scores, as
a CRF over hand-made features scores them: the wide part of a wide-and-deep tagger, which
remembers exact contexts the BiLSTM, under dropout, generalises over.

Characters let it tag values it never saw ("7:45pm", "tuesday the 3rd") from their shape; the
word-level LSTM keeps cuDNN-eligible settings (tanh / sigmoid, no recurrent dropout, not
unrolled, bias, right-padded masks), as the intent model's does. It is trained beside the
intent classifier, from the same training split's spans, and exported in the same SavedModel
(``serving_default`` gains per-token tag probabilities and token offsets).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from botyard.components.base import contracts as c
from botyard.components.base import entity_featurizer as ef
from botyard.components.base.config import EntityConfig
from botyard.components.base.entities import allowed_transitions, entity_types, spans_to_tags, tag_set
from botyard.components.train import fused_lstm
from botyard.components.train.augment import swap_values
from botyard.components.train.model import cudnn_lstm

log = logging.getLogger(__name__)


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


class CRF(keras.layers.Layer):
    """Learned transition scores over the tags, trained with the CRF sequence log-likelihood.

    Called with ``(emissions, tags, mask)`` while training it adds the negative log-likelihood
    of the gold tag sequences as the model's loss (forward algorithm, masked, right-padded);
    decoding (Viterbi, marginals) happens outside the graph with the learned scores
    (``base.entities.Transitions``), so the exported model returns emissions.
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


GOLD_TAGS = "gold_tags"  # the training model's extra input
INTENTS = "entity_intents"  # the intent distribution input of an intent-conditioned tagger


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

    def emissions(self, token_ids, char_ids, intents=None, fused: bool = True, feature_ids=None):
        """Per-token emission scores at inference: ``model``'s layers in ``build_tagger``'s order,
        with the BiLSTM through ``fused_lstm`` (one op a direction, not a loop of steps) when
        ``fused``; word dropout and dropout are identities at inference. ``intents``: the
        intent probabilities ``[batch, n_intents]``, for a tagger that ``uses_intents``;
        ``feature_ids``: the featurizer's ``entity_feature_ids``, for one that ``uses_features``."""
        if self.uses_intents and intents is None:
            raise ValueError("this tagger is conditioned on the intent: pass the intent probabilities")
        if self.uses_features and feature_ids is None:
            raise ValueError("this tagger scores context features: pass the featurizer's feature ids")
        inputs = {ef.TOKEN_IDS: token_ids, ef.CHAR_IDS: char_ids}
        if self.uses_intents:
            inputs[INTENTS] = intents = tf.cast(intents, "float32")
        if self.uses_features:
            inputs[ef.FEATURE_IDS] = feature_ids
        bilstm = self.model.get_layer("entity_bilstm")
        if not (fused and fused_lstm.fusable(bilstm)):
            return self.model(inputs, training=False)
        features = [self.model.get_layer("entity_embedding")(token_ids), self.model.get_layer("char_cnn")(char_ids)]
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
    With a featurizer that has context features, both take its ``entity_feature_ids`` too.
    """
    token_ids = keras.Input(shape=(None,), dtype="int64", name=ef.TOKEN_IDS)
    char_ids = keras.Input(shape=(None, featurizer.max_chars), dtype="int64", name=ef.CHAR_IDS)
    gold = keras.Input(shape=(None,), dtype="int64", name=GOLD_TAGS)
    inputs = {ef.TOKEN_IDS: token_ids, ef.CHAR_IDS: char_ids}
    kept = WordDropout(config.word_dropout, config.seed, name="word_dropout")(token_ids)
    words = keras.layers.Embedding(featurizer.word_vocabulary_size, config.embedding_dim, mask_zero=True, name="entity_embedding")(kept)
    chars = CharCNN(featurizer.char_vocabulary_size, config.char_embedding_dim, config.char_filters, name="char_cnn")(char_ids)
    features = [words, chars]
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


@dataclass
class TaggerResult:
    tags: list[str]
    history: dict[str, list[float]]
    epochs_run: int
    train_seconds: float
    dropped_spans: int  # gold spans not on token boundaries (not learnable as whole tokens)
    resumed_from_epoch: int = 0  # > 0: this fit went on from a checkpoint made after that epoch


def _tag_ids(frame: pd.DataFrame, tags: list[str]) -> tuple[list[list[int]], int]:
    index = {t: i for i, t in enumerate(tags)}
    rows, dropped = [], 0
    for text, spans in zip(frame[c.UTTERANCE], frame[c.ENTITIES]):
        aligned = spans_to_tags(text, [s for s in spans if f"B-{s['entity']}" in index])
        dropped += len(aligned.dropped)
        rows.append([index[t] for t in aligned.tags])
    return rows, dropped


def _one_hot_intents(frame: pd.DataFrame, labels: list[str]) -> np.ndarray:
    """The rows' gold intents as one-hot rows over ``labels`` (the tagger's intent input in training)."""
    index = {label: i for i, label in enumerate(labels)}
    one_hot = np.zeros((len(frame), max(1, len(labels))), dtype="float32")
    for row, intent in enumerate(frame[c.INTENT]):
        if intent in index:
            one_hot[row, index[intent]] = 1.0
    return one_hot


def _dataset(featurizer, frame: pd.DataFrame, tags: list[str], batch_size: int, shuffle: bool, seed: int,
             labels: list[str] | None = None):
    ids, dropped = _tag_ids(frame, tags)
    longest = max((len(r) for r in ids), default=1) or 1
    y = np.zeros((len(ids), longest), dtype="int64")
    for i, row in enumerate(ids):
        y[i, : len(row)] = row
    intents = _one_hot_intents(frame, labels or [])
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(frame[c.UTTERANCE].tolist()), intents, y))
    if shuffle:
        ds = ds.shuffle(len(frame), seed=seed, reshuffle_each_iteration=True)

    def featurize(text, intent, tag):
        features = featurizer(text)
        length = tf.shape(features[ef.TOKEN_IDS])[1]
        inputs = {ef.TOKEN_IDS: features[ef.TOKEN_IDS], ef.CHAR_IDS: features[ef.CHAR_IDS], GOLD_TAGS: tag[:, :length]}
        if ef.FEATURE_IDS in features:
            inputs[ef.FEATURE_IDS] = features[ef.FEATURE_IDS]
        return {**inputs, INTENTS: intent} if labels else inputs

    return ds.batch(batch_size).map(featurize).prefetch(tf.data.AUTOTUNE), dropped


class ResumableFit(keras.callbacks.Callback):
    """Checkpoints a tagger's ``fit`` after its epochs (``train.checkpoints.Checkpoints``: model
    and optimizer variables, the epoch, the history, the early-stopping state) and, given what
    ``Checkpoints.restore`` returned, puts that early-stopping state back when a restarted fit
    begins; listed after the ``EarlyStopping`` callback, whose state it reads and restores."""

    def __init__(self, checkpoints, stop: keras.callbacks.EarlyStopping, restored: dict | None):
        super().__init__()
        self.checkpoints, self.stop, self.restored = checkpoints, stop, restored
        self.history = {k: list(v) for k, v in (restored or {}).get("history", {}).items()}
        self.started = time.perf_counter()

    def on_train_begin(self, logs=None):
        if self.restored:  # after EarlyStopping.on_train_begin reset it
            self.stop.best, self.stop.wait = self.restored["best"], self.restored["since_best"]
            self.stop.best_weights = self.restored["best_weights"]

    def on_epoch_end(self, epoch, logs=None):
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(float(value))
        if not self.checkpoints.due(time.perf_counter() - self.started):
            return
        best_is_current = self.stop.wait == 0 and self.stop.best_weights is not None
        self.checkpoints.save(epoch=epoch + 1, model=self.model, optimizer=self.model.optimizer,
                              history=self.history, best=self.stop.best, since_best=self.stop.wait,
                              best_weights=self.stop.best_weights, best_is_current=best_is_current,
                              stopped=bool(self.model.stop_training))


def train_tagger(train: pd.DataFrame, val: pd.DataFrame, config: EntityConfig, featurizer: ef.EntityFeaturizer,
                 tags: list[str], labels: list[str] | None = None, checkpoints=None) -> tuple[Tagger, TaggerResult]:
    """Fit the tagger on ``train``'s spans, early-stopping on ``val`` loss. ``labels``: the bot's
    intents, in the intent model's output order (the tagger is conditioned on them; gold in training).

    ``checkpoints`` (``train.checkpoints.Checkpoints``, for this tagger's data and settings): the
    fit is checkpointed after its epochs and, restarted, goes on after the last checkpointed epoch
    with its weights, optimizer state and early-stopping state (tf.data's shuffle starts its order
    again, so the batches after a resume are not the ones an uninterrupted fit would have seen).
    """
    keras.utils.set_random_seed(config.seed)
    training, tagger = build_tagger(config, featurizer, len(tags), len(labels or []))
    intents = labels if tagger.uses_intents else None
    batch_size = max(8, min(config.batch_size, len(train) // 16 or 8))
    train_ds, dropped = _dataset(featurizer, train, tags, batch_size, True, config.seed, intents)
    val_ds = _dataset(featurizer, val, tags, batch_size, False, config.seed, intents)[0] if len(val) else None
    monitor = "val_loss" if val_ds is not None else "loss"
    # a small bot's epochs are a handful of steps: early stopping may end training only once it
    # has taken ``min_steps`` steps (else a 200-utterance bot stopped before learning a span)
    steps_per_epoch = max(1, -(-len(train) // batch_size))
    start_from_epoch = min(config.epochs - 1, -(-config.min_steps // steps_per_epoch))
    stop = keras.callbacks.EarlyStopping(monitor=monitor, mode="min", patience=config.patience, restore_best_weights=True,
                                         start_from_epoch=start_from_epoch)
    restored = None
    if checkpoints is not None:
        training.optimizer.build(training.trainable_variables)  # its variables must exist to be restored
        restored = checkpoints.restore(model=training, optimizer=training.optimizer)
    first_epoch = restored["epoch"] if restored else 0
    resumable = ResumableFit(checkpoints, stop, restored) if checkpoints is not None else None
    started = time.perf_counter()
    if restored and restored["stopped"]:  # it had ended: only its best weights are left to take
        if restored["best_weights"] is not None:
            training.set_weights(restored["best_weights"])
    else:
        training.fit(train_ds, validation_data=val_ds, epochs=config.epochs, initial_epoch=first_epoch,
                     callbacks=[stop] + ([resumable] if resumable else []), verbose=0)
    history = resumable.history if resumable else training.history.history
    seconds = time.perf_counter() - started
    epochs = len(history["loss"])
    log.info("trained the entity tagger (%d tags) in %.1fs, %d epochs%s", len(tags), seconds, epochs,
             f", resumed after epoch {first_epoch}" if first_epoch else "")
    return tagger, TaggerResult(tags, {k: [float(v) for v in vs] for k, vs in history.items()},
                                epochs, round(seconds, 3), dropped, first_epoch)


@dataclass
class EntityModel:
    """A trained tagger with its featurizer: what the export adds to ``serving_default``."""

    featurizer: ef.EntityFeaturizer
    tagger: Tagger
    spec: dict  # the featurizer's settings and vocabularies
    result: TaggerResult

    @property
    def tags(self) -> list[str]:
        return self.result.tags

    def outputs(self, utterances, intent_probabilities=None) -> dict:
        return entity_outputs(self.featurizer, self.tagger, self.tags, utterances, intent_probabilities)

    def metadata(self) -> dict:
        """What a model version records about its tagger (``contracts.ENTITY_TAGS`` ...)."""
        return {
            c.ENTITY_TAGS: self.tags,
            c.ENTITY_TRANSITIONS: self.tagger.transitions().to_json(),
            c.TOKENIZER: {k: v for k, v in self.spec.items() if k not in ("vocabulary", "characters", "features")},
        }

    def training_summary(self) -> dict:
        r = self.result
        return {"epochs_run": r.epochs_run, "train_seconds": r.train_seconds, "history": r.history,
                "unaligned_spans": r.dropped_spans, "entity_types": entity_types_of(self.tags),
                "resumed_from_epoch": r.resumed_from_epoch}


def entity_types_of(tags: list[str]) -> list[str]:
    return [t[2:] for t in tags if t.startswith("B-")]


def has_annotations(frame: pd.DataFrame) -> bool:
    """Whether any row of ``frame`` carries an entity span (entity training runs only then)."""
    return c.ENTITIES in frame and any(len(spans or ()) for spans in frame[c.ENTITIES])


def train_entities(train: pd.DataFrame, val: pd.DataFrame, config: EntityConfig,
                   labels: list[str] | None = None, checkpoint_dir: str | None = None) -> EntityModel | None:
    """The bot's tagger, or ``None`` when its training split has no entity spans. ``labels``:
    the intent model's labels, in its output order (the tagger conditions on the intent).
    ``checkpoint_dir``: a folder URI where the tagger's fit is checkpointed and resumed from
    (``train_tagger``), kept only for the same data and settings (``train.checkpoints.fingerprint``)."""
    from botyard.components.train.checkpoints import Checkpoints, fingerprint

    if not has_annotations(train):
        return None
    tags = tag_set(entity_types(train[c.ENTITIES]))
    rows = swap_values(train, config.swapped_copies, config.seed)  # the tagger's rows: train's and swapped copies
    log.info("entity tagger: %d training rows (%d with values swapped)", len(rows), len(rows) - len(train))
    spec = ef.adapt_entity_spec(rows[c.UTTERANCE].tolist(), config.max_tokens, config.max_chars_per_token,
                                config.feature_min_count)
    featurizer = ef.build_entity_featurizer(spec)
    checkpoints = None
    if checkpoint_dir:
        digest = fingerprint(config=config.to_dict(), tags=tags, labels=labels,
                             train=[list(row) for row in zip(train[c.UTTERANCE], train[c.INTENT], train[c.ENTITIES])],
                             val=[list(row) for row in zip(val[c.UTTERANCE], val[c.INTENT], val[c.ENTITIES])])
        checkpoints = Checkpoints(checkpoint_dir, digest)
    tagger, result = train_tagger(rows, val, config, featurizer, tags, labels, checkpoints)
    return EntityModel(featurizer, tagger, spec, result)


def entity_outputs(featurizer: ef.EntityFeaturizer, tagger: Tagger, tags: list[str], utterances,
                   intent_probabilities=None) -> dict:
    """The SavedModel's entity outputs for ``utterances`` (see ``contracts``): decoded in the graph.
    ``intent_probabilities``: the intent model's output for them (an intent-conditioned tagger)."""
    features = featurizer(utterances)
    ids = features[ef.TOKEN_IDS]
    emissions = tagger.emissions(ids, features[ef.CHAR_IDS], intent_probabilities, feature_ids=features.get(ef.FEATURE_IDS))
    tag_ids, confidence = tagger.decode(emissions, ids > 0, tags)
    return {
        c.OUTPUT_ENTITY_TAGS: tag_ids,
        c.OUTPUT_ENTITY_CONFIDENCE: confidence,
        c.OUTPUT_TOKEN_STARTS: features[ef.TOKEN_STARTS],
        c.OUTPUT_TOKEN_ENDS: features[ef.TOKEN_ENDS],
    }


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
