"""Train one bot's intent classifier on the featurize step's featurizer; write a Model artifact folder.

The folder holds ``saved_model/`` (string-in ``serving_default``, with the featurizer inside)
and ``training.json`` (labels in output order, hyperparameters, per-epoch history, wall time,
device).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from botyard.components.base import contracts as c
from botyard.components.base.artifacts import write_json
from botyard.components.base.config import EntityConfig, TrainConfig
from botyard.components.base.errors import ConfigError, DataValidationError

log = logging.getLogger(__name__)

MIN_STEPS_PER_EPOCH = 16  # small bots: shrink the batch so each epoch still takes this many steps


@dataclass
class TrainResult:
    labels: list[str]
    history: dict[str, list[float]]
    epochs_run: int
    train_seconds: float
    device: str
    entities: dict | None = None  # the entity tagger's training summary; None: no spans, no tagger

    def logged_metrics(self) -> dict[str, float]:
        """What the KFP ``Metrics`` artifact shows: epochs, time, final and per-epoch curves."""
        logged = {"epochs_run": self.epochs_run, "train_seconds": self.train_seconds,
                  "entity_tagger": 1.0 if self.entities else 0.0}
        if self.entities:
            logged["entity_epochs_run"] = self.entities["epochs_run"]
            logged["entity_train_seconds"] = self.entities["train_seconds"]
        for name, values in self.history.items():
            logged[f"final_{name}"] = round(values[-1], 4)
            logged.update({f"epoch_{epoch:03d}_{name}": round(v, 4) for epoch, v in enumerate(values, start=1)})
        return logged


def configure_devices(config: TrainConfig, *, gpu_requested: bool = False, allow_cpu: bool = False) -> str:
    """Use a GPU when one is visible (never assume one); returns ``"GPU"`` or ``"CPU"``.

    ``gpu_requested`` (the pipeline was compiled to hold a GPU for this step) with no GPU
    visible raises ``ConfigError`` unless ``allow_cpu``: holding a GPU while training on the
    CPU is a broken node or image, not something to carry on with silently.
    """
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpu_requested and not gpus and not allow_cpu:
        raise ConfigError(
            "the pipeline asked for a GPU for the train step, but TensorFlow sees none "
            f"(TensorFlow {tf.__version__}, built with CUDA: {tf.test.is_built_with_cuda()}); run the train step "
            "in the trainer image (CUDA and cuDNN) on a node whose GPU the NVIDIA device plugin exposes, "
            "or set the run parameter allow_cpu_training=true to train on the CPU"
        )
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process
            pass
    if gpus and config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    return "GPU" if gpus else "CPU"


def _one_hot(intents: pd.Series, labels: list[str]) -> np.ndarray:
    index = {label: i for i, label in enumerate(labels)}
    y = np.zeros((len(intents), len(labels)), dtype="float32")
    y[np.arange(len(intents)), [index[i] for i in intents]] = 1.0
    return y


def effective_batch_size(batch_size: int, n_train: int) -> int:
    """``batch_size``, shrunk for small bots so an epoch has ``MIN_STEPS_PER_EPOCH`` steps (never below 8)."""
    return max(1, min(batch_size, max(8, n_train // MIN_STEPS_PER_EPOCH)))


def train_intent_model(
    train: pd.DataFrame, val: pd.DataFrame, config: TrainConfig, output_dir: str, featurizer_spec: dict,
    entity_config: EntityConfig | None = None,
) -> TrainResult:
    """Fit the classifier on ``train``, early-stopping on ``val`` loss; export to ``output_dir``.

    ``featurizer_spec`` is the featurize step's artifact (``base.featurizer.load_spec``). When
    ``entity_config`` is given and the training split has entity spans, the entity tagger is
    trained too and exported in the same SavedModel; a bot without spans trains as before.
    """
    import keras
    import tensorflow as tf

    from botyard.components.base import featurizer as features
    from botyard.components.base.warmup import write_warmup_file
    from botyard.components.train.entities import train_entities
    from botyard.components.train.model import build_classifier, export_serving_model

    if train.empty:
        raise DataValidationError("the training split is empty; give each intent more examples")
    device = configure_devices(config)
    keras.utils.set_random_seed(config.seed)
    labels = sorted(train[c.INTENT].unique())  # sorted: output order is stable across runs
    val = val[val[c.INTENT].isin(labels)]

    texts = train[c.UTTERANCE].tolist()
    vectorizer = features.build(featurizer_spec)
    classifier = build_classifier(config, vectorizer, len(labels))

    def dataset(frame: pd.DataFrame, shuffle: bool) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices((tf.constant(frame[c.UTTERANCE].tolist()), _one_hot(frame[c.INTENT], labels)))
        if shuffle:
            ds = ds.shuffle(len(frame), seed=config.seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size).map(lambda x, y: (vectorizer(x), y)).prefetch(tf.data.AUTOTUNE)

    batch_size = effective_batch_size(config.batch_size, len(train))
    has_val = len(val) > 0
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss" if has_val else "loss", patience=config.patience, restore_best_weights=True
    )
    started = time.perf_counter()
    history = classifier.fit(
        dataset(train, shuffle=True),
        validation_data=dataset(val, shuffle=False) if has_val else None,
        epochs=config.epochs,
        callbacks=[stop],
        verbose=0,
    )
    seconds = time.perf_counter() - started
    entity_model = train_entities(train, val, entity_config) if entity_config is not None else None
    export_serving_model(vectorizer, classifier, os.path.join(output_dir, c.SAVED_MODEL_DIR), entities=entity_model)
    write_warmup_file(os.path.join(output_dir, c.SAVED_MODEL_DIR), texts[:: max(1, len(texts) // 20)][:20])
    result = TrainResult(
        labels=labels,
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
        epochs_run=len(history.history["loss"]),
        train_seconds=round(seconds, 3),
        device=device,
        entities=entity_model.training_summary() if entity_model else None,
    )
    info = {c.LABELS: labels, c.HYPERPARAMETERS: config.to_dict(), **result.__dict__}
    if entity_model is not None:
        info.update(entity_model.metadata())
        info[c.HYPERPARAMETERS] = {**info[c.HYPERPARAMETERS], **{f"entity_{k}": v for k, v in entity_config.to_dict().items()}}
    write_json(output_dir, c.TRAINING_FILE, info)
    log.info("trained %d labels in %.1fs on %s (%d epochs)", len(labels), seconds, device, result.epochs_run)
    return result
