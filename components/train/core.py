"""Train one bot's intent classifier on the featurize step's featurizer; write a Model artifact folder.

The folder holds ``saved_model/`` (string-in ``serving_default``, with the featurizer inside)
and ``training.json`` (labels in output order, hyperparameters, the schedule used, per-epoch
history, wall time, device).

The schedule fits the data's size (``plan_schedule``): the batch shrinks for small bots so an
epoch still has several steps, and the number of epochs is what it takes to reach
``TrainConfig.min_steps`` optimizer steps, and ``min_steps_per_intent`` for each intent (at most
``max_epochs``), so a bot of 50 utterances trains for many short epochs, a bot of 15,000 for a
few long ones, and a bot of 150 intents for more steps than one of 15 (on CLINC150's validation
data, 6 epochs of 150 intents scored 1 point below 11; 15-intent bots gained nothing from
doubling their 25). Early stopping on the
validation loss does the rest; its patience counts steps as well as epochs, so a small bot
is never stopped after a few noisy epochs while it is still improving, and the weights of the
best validation epoch are the ones exported.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from botyard.components.base import contracts as c
from botyard.components.base import storage
from botyard.components.base.artifacts import write_json
from botyard.components.base.config import EntityConfig, TrainConfig
from botyard.components.base.errors import ConfigError, DataValidationError

log = logging.getLogger(__name__)

MIN_STEPS_PER_EPOCH = 16  # small bots: shrink the batch so each epoch still takes this many steps
MIN_BATCH = 8
FEATURIZE_CHUNK = 4096  # utterances featurized at once before training
ENTITY_CHECKPOINTS = "entities"  # the tagger's checkpoints: a folder in the intent model's checkpoint folder


@dataclass
class TrainResult:
    labels: list[str]
    history: dict[str, list[float]]
    epochs_run: int
    train_seconds: float
    device: str
    schedule: dict | None = None
    resumed_from_epoch: int = 0  # > 0: this run went on from a checkpoint made after that epoch
    epochs_this_run: int = 0
    checkpoint_seconds: float = 0.0  # spent writing checkpoints in this run
    checkpoints_written: int = 0
    entities: dict | None = None  # the entity tagger's training summary; None: no spans, no tagger

    def logged_metrics(self) -> dict[str, float]:
        """What the KFP ``Metrics`` artifact shows: epochs, time, final and per-epoch curves."""
        logged = {"epochs_run": self.epochs_run, "train_seconds": self.train_seconds, "resumed_from_epoch": self.resumed_from_epoch,
                  "checkpoint_seconds": self.checkpoint_seconds, "entity_tagger": 1.0 if self.entities else 0.0}
        if self.entities:
            logged["entity_epochs_run"] = self.entities["epochs_run"]
            logged["entity_train_seconds"] = self.entities["train_seconds"]
        for name, values in self.history.items():
            logged[f"final_{name}"] = round(values[-1], 4)
            logged.update({f"epoch_{epoch:03d}_{name}": round(v, 4) for epoch, v in enumerate(values, start=1)})
        return logged


@dataclass(frozen=True)
class Schedule:
    """How long and in what steps one bot trains (``plan_schedule``)."""

    batch_size: int
    steps_per_epoch: int
    max_epochs: int
    patience_epochs: int
    learning_rate: float

    @property
    def max_steps(self) -> int:
        return self.steps_per_epoch * self.max_epochs


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


def effective_batch_size(batch_size: int, n_train: int) -> int:
    """``batch_size``, shrunk for small bots so an epoch has ``MIN_STEPS_PER_EPOCH`` steps (never below 8)."""
    return max(1, min(batch_size, max(MIN_BATCH, n_train // MIN_STEPS_PER_EPOCH)))


def plan_schedule(config: TrainConfig, n_train: int, n_intents: int = 1) -> Schedule:
    """The batch size, epochs and patience for ``n_train`` training utterances of ``n_intents``
    intents (see the module docstring)."""
    batch = effective_batch_size(config.batch_size, n_train)
    steps = max(1, math.ceil(n_train / batch))
    min_steps = max(config.min_steps, config.min_steps_per_intent * n_intents)
    epochs = min(config.epochs, max(config.min_epochs, math.ceil(min_steps / steps)))
    # patience: ``patience`` epochs, but never fewer than ``patience_steps`` optimizer steps
    patience = max(config.patience, math.ceil(config.patience_steps / steps))
    return Schedule(batch, steps, max(1, epochs), patience, config.learning_rate)


def _labels_index(intents: pd.Series, labels: list[str]) -> np.ndarray:
    index = {label: i for i, label in enumerate(labels)}
    return np.asarray([index[i] for i in intents], dtype="int32")


class _Features:
    """A split's features, computed once with the featurizer: token ids and n-gram views as ragged rows."""

    def __init__(self, featurizer, texts: list[str]):
        import tensorflow as tf

        self.views = [v for v in featurizer.features if v != "token_ids"]
        ids, cols, vals = [], {v: [] for v in self.views}, {v: [] for v in self.views}
        for start in range(0, len(texts), FEATURIZE_CHUNK):
            out = featurizer(tf.constant(texts[start : start + FEATURIZE_CHUNK], dtype=tf.string))
            ids.append(tf.RaggedTensor.from_tensor(out["token_ids"], padding=0))
            for v in self.views:
                sp = out[v]
                rows = tf.RaggedTensor.from_value_rowids(sp.indices[:, 1], sp.indices[:, 0], nrows=sp.dense_shape[0])
                cols[v].append(rows)
                vals[v].append(tf.RaggedTensor.from_value_rowids(sp.values, sp.indices[:, 0], nrows=sp.dense_shape[0]))
        self.token_ids = tf.concat(ids, axis=0)
        self.cols = {v: tf.concat(cols[v], axis=0) for v in self.views}
        self.vals = {v: tf.concat(vals[v], axis=0) for v in self.views}
        self.sizes = {v: featurizer.vocabulary_size(v) for v in self.views}

    def batch(self, index):
        """The model inputs of rows ``index`` (an int tensor)."""
        import tensorflow as tf

        out = {"token_ids": tf.gather(self.token_ids, index).to_tensor(default_value=0)}
        out["token_ids"] = tf.pad(out["token_ids"], [[0, 0], [0, tf.maximum(0, 1 - tf.shape(out["token_ids"])[1])]])
        for v in self.views:
            cols, vals = tf.gather(self.cols[v], index), tf.gather(self.vals[v], index)
            indices = tf.stack([cols.value_rowids(), cols.flat_values], axis=1)
            out[v] = tf.SparseTensor(indices, vals.flat_values, tf.stack([tf.cast(tf.shape(index)[0], tf.int64), self.sizes[v]]))
        return out


def train_intent_model(
    train: pd.DataFrame, val: pd.DataFrame, config: TrainConfig, output_dir: str, featurizer_spec: dict,
    entity_config: EntityConfig | None = None,
    checkpoint_dir: str | None = None,
) -> TrainResult:
    """Fit the classifier on ``train``, early-stopping on ``val`` loss; export to ``output_dir``.

    ``featurizer_spec`` is the featurize step's artifact (``base.featurizer.load_spec``). When
    ``entity_config`` is given and the training split has entity spans, the entity tagger is
    trained too and exported in the same SavedModel; a bot without spans trains as before.
    ``checkpoint_dir`` (a folder URI beside the output, never in the model store): the loop's
    state is saved there after every epoch, a run that finds a checkpoint of the same data and
    settings resumes from it, and the folder is removed once the model is exported
    (``train.checkpoints``).
    """
    import keras
    import tensorflow as tf

    from botyard.components.base import featurizer as features
    from botyard.components.base.serving_graph import write_serving_graph
    from botyard.components.base.warmup import write_warmup_file
    from botyard.components.train.checkpoints import Checkpoints, fingerprint
    from botyard.components.train.entities import train_entities
    from botyard.components.train.model import LazyAdam, build_classifier, export_serving_model

    if train.empty:
        raise DataValidationError("the training split is empty; give each intent more examples")
    device = configure_devices(config)
    keras.utils.set_random_seed(config.seed)
    labels = sorted(train[c.INTENT].unique())  # sorted: output order is stable across runs
    val = val[val[c.INTENT].isin(labels)]
    texts = train[c.UTTERANCE].tolist()
    started = time.perf_counter()

    vectorizer = features.build(featurizer_spec)
    vectors = (featurizer_spec.get("word_vectors") or {}).get("rows")
    model = build_classifier(config, vectorizer, len(labels), vectors)
    schedule = plan_schedule(config, len(train), len(labels))
    x_train, y_train = _Features(vectorizer, texts), tf.constant(_labels_index(train[c.INTENT], labels))
    has_val = len(val) > 0
    if has_val:
        x_val, y_val = _Features(vectorizer, val[c.UTTERANCE].tolist()), tf.constant(_labels_index(val[c.INTENT], labels))
    # cosine decay over the planned steps: late epochs refine instead of overfitting
    rate = keras.optimizers.schedules.CosineDecay(schedule.learning_rate, decay_steps=max(1, schedule.max_steps), alpha=0.0)
    optimizer = LazyAdam(learning_rate=rate)
    scaled = keras.mixed_precision.global_policy().name == "mixed_float16"
    if scaled:  # float16 gradients underflow without loss scaling
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    smoothing = config.label_smoothing
    n_labels = len(labels)

    def head_loss(y, log_p):
        target = tf.one_hot(y, n_labels) * (1.0 - smoothing) + smoothing / n_labels
        return -tf.reduce_mean(tf.reduce_sum(target * log_p, axis=-1))

    index_spec = [tf.TensorSpec([None], tf.int32)]  # one trace for every batch size

    @tf.function(input_signature=index_spec)
    def train_step(index):
        inputs, y = x_train.batch(index), tf.gather(y_train, index)
        with tf.GradientTape() as tape:
            heads = model(inputs, training=True)
            loss = tf.add_n([head_loss(y, p) for p in heads.values()])
            scaled_loss = optimizer.scale_loss(loss) if scaled else loss
        grads = tape.gradient(scaled_loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    @tf.function(input_signature=index_spec)
    def predict_val(index):
        return model.probabilities(x_val.batch(index))

    def evaluate(y, n) -> tuple[float, float]:
        probs = tf.concat([predict_val(tf.range(s, min(s + 1024, n))) for s in range(0, n, 1024)], axis=0)
        y1 = tf.one_hot(y, n_labels)
        loss = float(-tf.reduce_mean(tf.reduce_sum(y1 * tf.math.log(probs + 1e-7), axis=-1)))
        return loss, float(tf.reduce_mean(tf.cast(tf.argmax(probs, axis=-1, output_type=tf.int32) == y, tf.float32)))

    rng = np.random.default_rng(config.seed)
    history: dict[str, list[float]] = {"loss": [], "val_loss": [], "val_accuracy": []} if has_val else {"loss": []}
    best, best_weights, since_best, start_epoch, stopped = math.inf, None, 0, 0, False
    checkpoints = None
    if checkpoint_dir:
        digest = fingerprint(config=config.to_dict(), spec={k: v for k, v in featurizer_spec.items() if k != "word_vectors"},
                             train=list(zip(texts, train[c.INTENT])), val=list(zip(val[c.UTTERANCE], val[c.INTENT])))
        checkpoints = Checkpoints(checkpoint_dir, digest)
        optimizer.build(model.trainable_variables)  # its variables must exist to be restored
        resumed = checkpoints.restore(model=model, optimizer=optimizer, rng=rng)
        if resumed:
            history, best, since_best = resumed["history"], resumed["best"], resumed["since_best"]
            best_weights, start_epoch, stopped = resumed["best_weights"], resumed["epoch"], resumed["stopped"]
    n = len(train)
    for epoch in range(start_epoch, 0 if stopped else schedule.max_epochs):
        order = rng.permutation(n).astype("int32")
        losses = [float(train_step(tf.constant(order[s : s + schedule.batch_size]))) for s in range(0, n, schedule.batch_size)]
        history["loss"].append(float(np.mean(losses)))
        log.debug("epoch %d: %.2fs since start, loss %.4f", epoch + 1, time.perf_counter() - started, history["loss"][-1])
        monitored = history["loss"][-1]
        if has_val:
            val_loss, val_acc = evaluate(y_val, len(val))
            history["val_loss"].append(val_loss)
            history["val_accuracy"].append(val_acc)
            monitored = val_loss
        improved = monitored < best - 1e-4
        if improved:
            best, best_weights, since_best = monitored, [w.numpy() for w in model.weights], 0
        else:
            since_best += 1
            stopped = since_best >= schedule.patience_epochs
        if checkpoints and checkpoints.due(time.perf_counter() - started):
            checkpoints.save(epoch=epoch + 1, model=model, optimizer=optimizer, rng=rng, history=history, best=best,
                             since_best=since_best, best_weights=best_weights, best_is_current=improved, stopped=stopped)
        if stopped:
            break
    if best_weights is not None:
        for w, value in zip(model.weights, best_weights):
            w.assign(value)
    seconds = time.perf_counter() - started
    entity_checkpoints = storage.join(checkpoint_dir, ENTITY_CHECKPOINTS) if checkpoint_dir else None
    entity_model = train_entities(train, val, entity_config, labels, entity_checkpoints) if entity_config is not None else None
    export_serving_model(vectorizer, model, os.path.join(output_dir, c.SAVED_MODEL_DIR), entities=entity_model)
    write_warmup_file(os.path.join(output_dir, c.SAVED_MODEL_DIR), texts[:: max(1, len(texts) // 20)][:20])
    write_serving_graph(os.path.join(output_dir, c.SAVED_MODEL_DIR))
    if checkpoints:  # the model is out: nothing to resume any more
        checkpoints.clear()
    result = TrainResult(
        labels=labels,
        history=history,
        epochs_run=len(history["loss"]),
        train_seconds=round(seconds, 3),
        device=device,
        schedule=asdict(schedule),
        resumed_from_epoch=start_epoch,
        epochs_this_run=len(history["loss"]) - start_epoch,
        checkpoint_seconds=round(checkpoints.seconds, 3) if checkpoints else 0.0,
        checkpoints_written=checkpoints.saved if checkpoints else 0,
        entities=entity_model.training_summary() if entity_model else None,
    )
    info = {c.LABELS: labels, c.HYPERPARAMETERS: config.to_dict(), **result.__dict__}
    if entity_model is not None:
        info.update(entity_model.metadata())
        info[c.HYPERPARAMETERS] = {**info[c.HYPERPARAMETERS], **{f"entity_{k}": v for k, v in entity_config.to_dict().items()}}
    write_json(output_dir, c.TRAINING_FILE, info)
    log.info("trained %d labels in %.1fs on %s (%d epochs%s)", len(labels), seconds, device, result.epochs_run,
             f", resumed after epoch {start_epoch}" if start_epoch else "")
    return result
