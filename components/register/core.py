"""Register a trained, evaluated model as a new version in the model store."""

from __future__ import annotations

import os

from botyard.components.base import contracts as c
from botyard.components.base.artifacts import read_evaluation, read_training_info
from botyard.components.base.model_store import ModelStore


def register_model_version(
    models_root: str, bot_id: str, model_dir: str, evaluation_dir: str, data_hash: str
) -> tuple[str, str]:
    """Copy the SavedModel and evaluation into ``<models_root>/<bot_id>/<version>/``; returns (version, its URI)."""
    training = read_training_info(model_dir)
    evaluation = read_evaluation(evaluation_dir)
    metadata = {
        c.DATA_HASH: data_hash,
        c.LABELS: training[c.LABELS],
        c.OOS_THRESHOLD: evaluation[c.OOS_THRESHOLD],
        c.HYPERPARAMETERS: training[c.HYPERPARAMETERS],
        c.METRICS: evaluation[c.METRICS],
        "threshold_criterion": evaluation["threshold_criterion"],
        "training": {k: training[k] for k in ("epochs_run", "train_seconds", "device")},
    }
    for key in (c.ENTITY_TAGS, c.ENTITY_TRANSITIONS, c.TOKENIZER):  # only a version with an entity tagger
        if key in training:
            metadata[key] = training[key]
    if c.ENTITY_THRESHOLD in evaluation:  # chosen on val by the evaluate step
        metadata[c.ENTITY_THRESHOLD] = evaluation[c.ENTITY_THRESHOLD]
    if training.get("entities"):
        metadata["training"]["entities"] = {k: v for k, v in training["entities"].items() if k != "history"}
    store = ModelStore(models_root)
    version = store.register(bot_id, os.path.join(model_dir, c.SAVED_MODEL_DIR), metadata, evaluation_dir)
    return version, store.version_dir(bot_id, version)
