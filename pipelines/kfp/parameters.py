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
    check_parameter_values(params)
    return params


def check_parameter_values(parameters: dict | None) -> None:
    """Build every setting the pipeline's steps build from ``parameters`` (the pipeline's defaults
    for the rest), so an out-of-range value fails now, naming ``--param <name>=``, rather than in
    a step minutes into the run (``epochs=0`` in featurize, ``entity_epochs=0`` after the intent
    model has trained)."""
    from botyard.components.base.config import EntityConfig, SplitConfig, ThresholdConfig, TrainConfig, naming_flags
    from botyard.components.deploy.config import ClusterDeployConfig, cluster_config_from_parameters
    from botyard.components.deploy.core import check_target
    from botyard.components.gate.core import GateConfig
    from botyard.pipelines.bot_training import bot_training

    inputs = bot_training.component_spec.inputs or {}
    values = {**{k: v.default for k, v in inputs.items()}, **(parameters or {})}

    def named(config, flags: dict[str, str]):
        return naming_flags(config, {field: f"--param {name}=" for field, name in flags.items()})

    def fields(config) -> dict[str, str]:  # field -> parameter name, for a config whose fields are parameters
        return {name[len(config.parameter_prefix):]: name for name, _, _ in config.parameter_fields()}

    for config in (TrainConfig, EntityConfig, ThresholdConfig):
        names = fields(config)
        with named(config, names):
            config.from_parameters({name: values[name] for name in names.values()})
    with named(ValidationConfig, {name: name for name in ValidationConfig.RUN_PARAMETERS}):
        ValidationConfig.from_run_parameters(values)
    with named(SplitConfig, {"val_fraction": "val_fraction", "test_fraction": "test_fraction", "seed": "split_seed"}):
        SplitConfig.from_parameters({"val_fraction": values["val_fraction"], "test_fraction": values["test_fraction"],
                                     "seed": values["split_seed"]})
    gate_names = ("min_accuracy", "max_accuracy_drop", "max_intent_recall_drop", "min_entity_f1", "max_entity_f1_drop")
    with named(GateConfig, {name: name for name in gate_names}):
        GateConfig.from_parameters_unset_below_zero(**{name: float(values[name]) for name in gate_names})
    check_target(values["deploy_target"])
    if values["deploy_target"] == "cluster":
        cluster = {"namespace": "namespace", "mode": "serving_mode", "deployment_mode": "deployment_mode",
                   "canary_traffic_percent": "canary_traffic_percent", "ready_timeout_s": "ready_timeout_s",
                   "service_account": "predictor_service_account"}
        with named(ClusterDeployConfig, cluster):
            cluster_config_from_parameters(
                namespace=values["namespace"], serving_mode=values["serving_mode"], deployment_mode=values["deployment_mode"],
                canary_traffic_percent=values["canary_traffic_percent"], ready_timeout_s=values["ready_timeout_s"],
                service_account=values["predictor_service_account"], predictor_image="predictor",
            )


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
