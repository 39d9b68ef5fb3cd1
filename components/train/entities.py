"""Training the entity tagger (``train.tagger``) on a bot's spans, checkpointed and early-stopped.

BIO tags from the training split's spans (``base.entities.spans_to_tags``), swapped values for
augmentation (``train.augment``), the intent distribution given to an intent-conditioned
tagger, early stopping on the validation loss and a checkpoint after each epoch. Trained beside
the intent classifier, from the same training split, and exported in the same SavedModel
(``serving_default`` gains per-token tags, their confidence and token offsets: ``EntityModel.outputs``).
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
from botyard.components.base.entities import entity_types, spans_to_tags, tag_set
from botyard.components.train.augment import swap_values
from botyard.components.train.tagger import GOLD_TAGS, INTENTS, Tagger, build_tagger, entity_outputs

log = logging.getLogger(__name__)


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
        for optional in (ef.FEATURE_IDS, ef.VECTOR_IDS):
            if optional in features:
                inputs[optional] = features[optional]
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
            c.TOKENIZER: {k: v for k, v in self.spec.items() if k not in ("vocabulary", "characters", "features", "vector_words")},
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
                                config.feature_min_count, config.word_vectors)
    featurizer = ef.build_entity_featurizer(spec)
    checkpoints = None
    if checkpoint_dir:
        digest = fingerprint(config=config.to_dict(), tags=tags, labels=labels,
                             train=[list(row) for row in zip(train[c.UTTERANCE], train[c.INTENT], train[c.ENTITIES])],
                             val=[list(row) for row in zip(val[c.UTTERANCE], val[c.INTENT], val[c.ENTITIES])])
        checkpoints = Checkpoints(checkpoint_dir, digest)
    tagger, result = train_tagger(rows, val, config, featurizer, tags, labels, checkpoints)
    return EntityModel(featurizer, tagger, spec, result)
