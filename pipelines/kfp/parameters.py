"""What a cluster run is given, checked here before any KFP call: pipeline parameters, URIs, the data.

A run on a cluster gets three per-bot inputs from ``submit_bot_run``'s own arguments
(``PER_BOT_PARAMETERS``); every other ``bot_training`` input may be overridden by name. Paths
must be ones the pipeline's pods can reach, and the bot's data must pass the same read and
validation the pipeline runs (``botyard.components.base.training_data``), so bad input fails
in seconds on the submitter's side rather than minutes later in a pod.
"""

from __future__ import annotations

import os

from botyard.components.base.config import ValidationConfig
from botyard.components.base.errors import ConfigError

PER_BOT_PARAMETERS = ("bot_id", "data_uri", "models_root")  # set by submit_bot_run's own arguments
MODELS_ROOT_ENV = "BOTYARD_MODELS_ROOT"
DEFAULT_MODELS_ROOT = "models"
CLUSTER_URI_FLAGS = {"data_uri": "--data", "models_root": f"--models-root (or ${MODELS_ROOT_ENV})"}


def pipeline_inputs() -> dict[str, str]:
    """``{name: KFP type}`` of bot_training's inputs that a caller may set (the per-bot three excluded)."""
    from botyard.pipelines.bot_training import bot_training

    return {k: v.type for k, v in (bot_training.component_spec.inputs or {}).items() if k not in PER_BOT_PARAMETERS}


def check_parameters(parameters: dict | None) -> dict:
    """``parameters`` checked against bot_training's inputs; ``ConfigError`` naming unknown ones."""
    params = dict(parameters or {})
    if not params:
        return params
    known = sorted(pipeline_inputs())
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(f"unknown pipeline parameter(s) {unknown}; known: {known}")
    return params


def check_cluster_uri(name: str, uri: str) -> None:
    """A path the cluster's pods can reach: a URI with a scheme, or an absolute path (a mounted volume)."""
    if "://" not in uri and not os.path.isabs(uri):
        flag = CLUSTER_URI_FLAGS.get(name, name)
        raise ConfigError(
            f"{name} {uri!r} is a relative local path, which a pod on the cluster cannot see; pass {flag} with a "
            "URI the pipeline's pods can reach (s3://bucket/..., gs://bucket/...) or an absolute path on a volume they mount"
        )


def default_models_root() -> str:
    return os.environ.get(MODELS_ROOT_ENV, DEFAULT_MODELS_ROOT)


def data_fingerprint(data_uri: str, parameters: dict | None = None) -> str:
    """The data hash of a bot's training file, after the same read and validation the pipeline runs
    (with the run's ``min_examples_per_intent`` and ``on_label_conflict``).

    Bad data raises ``DataValidationError`` here, before any cluster time is spent.
    """
    from botyard.components.base.training_data import load_training_data

    return load_training_data(data_uri, ValidationConfig.from_run_parameters(parameters)).data_hash
