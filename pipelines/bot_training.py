"""The per-bot pipeline: ingest -> validate -> split -> featurize -> train -> evaluate -> register
-> promotion gate -> infra check -> deploy.

The infra check runs only for a blessed candidate, and deploy only when both verdicts bless it.

Parameters: the run's own (bot, data, model store, gate thresholds, deploy settings) plus one
per ``TrainConfig`` field, named, typed and defaulted from the dataclass itself, so a new
hyperparameter reaches the pipeline, the dashboard and ``botyard run --param`` by being added
to ``TrainConfig`` alone. The train and featurize steps get them as one ``train_config`` dict.

``build_bot_training(gpu)`` makes the pipeline for a cluster's GPU settings (compiled into
the YAML); ``bot_training`` is the default (one NVIDIA GPU for the train step).
"""

from __future__ import annotations

from kfp import dsl, kubernetes

from botyard.components.base.config import GpuConfig, SplitConfig, TrainConfig, ValidationConfig
from botyard.components.deploy.cluster import ClusterDeployConfig
from botyard.components.deploy.component import deploy
from botyard.components.evaluate.component import evaluate
from botyard.components.featurize.component import featurize
from botyard.components.gate.component import gate
from botyard.components.gate.core import GateConfig
from botyard.components.infra_check.component import infra_check
from botyard.components.ingest.component import ingest
from botyard.components.register.component import register
from botyard.components.split.component import split
from botyard.components.train.component import train
from botyard.components.validate.component import validate
from botyard.pipelines.signatures import config_parameters, parameter, pipeline_function

PIPELINE_NAME = "bot-training"
TRAIN_PARAMETERS = tuple(name for name, _, _ in TrainConfig.parameter_fields())


def run_parameters() -> list:
    """The pipeline's parameters that are not hyperparameters, with their defaults (one home: the configs)."""
    split_defaults, validation_defaults, gate_defaults, cluster_defaults = SplitConfig(), ValidationConfig(), GateConfig(), ClusterDeployConfig()
    return [
        parameter("bot_id", str, "sample-bot"),
        parameter("data_uri", str, ""),
        parameter("models_root", str, "models"),
        parameter("min_examples_per_intent", int, validation_defaults.min_examples_per_intent),
        parameter("on_label_conflict", str, validation_defaults.on_label_conflict),
        parameter("val_fraction", float, split_defaults.val_fraction),
        parameter("test_fraction", float, split_defaults.test_fraction),
        parameter("split_seed", int, split_defaults.seed),
        parameter("min_accuracy", float, gate_defaults.min_accuracy),
        parameter("max_accuracy_drop", float, gate_defaults.max_accuracy_drop),
        parameter("max_intent_recall_drop", float, gate_defaults.max_intent_recall_drop),
        parameter("deploy_target", str, "local"),
        parameter("namespace", str, cluster_defaults.namespace),
        parameter("serving_mode", str, cluster_defaults.mode),
        parameter("canary_traffic_percent", int, 0),
        parameter("ready_timeout_s", int, int(cluster_defaults.ready_timeout_s)),
    ]


def request_gpu(task: dsl.PipelineTask, gpu: GpuConfig) -> dsl.PipelineTask:
    """Ask for an accelerator and GPU nodes for ``task``; a no-op when GPUs are switched off."""
    if not gpu.enabled:
        return task
    task.set_accelerator_type(gpu.accelerator_type).set_accelerator_limit(gpu.accelerator_limit)
    for key, value in gpu.node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for toleration in gpu.tolerations:
        kubernetes.add_toleration(task, **toleration)
    return task


def _steps(args: dict, gpu: GpuConfig):
    """The pipeline's tasks, from its arguments (one channel per parameter)."""
    train_config = {name: args[name] for name in TRAIN_PARAMETERS}
    data_uri, bot_id, models_root = args["data_uri"], args["bot_id"], args["models_root"]
    ingested = ingest(data_uri=data_uri).set_display_name("Ingest training data")
    checked = validate(
        dataset=ingested.outputs["dataset"], data_uri=data_uri, min_examples_per_intent=args["min_examples_per_intent"],
        on_label_conflict=args["on_label_conflict"],
    ).set_display_name("Validate training data")
    parts = split(
        dataset=checked.outputs["validated"], val_fraction=args["val_fraction"], test_fraction=args["test_fraction"],
        seed=args["split_seed"],
    ).set_display_name("Split train / val / test")
    featurized = featurize(train_data=parts.outputs["train_data"], train_config=train_config)
    featurized.set_display_name("Featurize: vocabularies from the training split")
    trained = train(
        train_data=parts.outputs["train_data"],
        val_data=parts.outputs["val_data"],
        featurizer=featurized.outputs["featurizer"],
        train_config=train_config,
    ).set_display_name("Train BiLSTM intent model")
    request_gpu(trained, gpu)
    evaluated = evaluate(
        model=trained.outputs["model"], val_data=parts.outputs["val_data"], test_data=parts.outputs["test_data"]
    ).set_display_name("Evaluate on test split")
    registered = register(
        model=trained.outputs["model"],
        evaluation=evaluated.outputs["evaluation"],
        bot_id=bot_id,
        models_root=models_root,
        data_hash=ingested.outputs["data_hash"],
    ).set_display_name("Register model version")
    registered.set_caching_options(False)  # writes to the model store: never skip it
    verdict = gate(
        evaluation=evaluated.outputs["evaluation"],
        test_data=parts.outputs["test_data"],
        bot_id=bot_id,
        models_root=models_root,
        version=registered.outputs["version"],
        min_accuracy=args["min_accuracy"],
        max_accuracy_drop=args["max_accuracy_drop"],
        max_intent_recall_drop=args["max_intent_recall_drop"],
    ).set_display_name("Promotion gate: candidate vs live")
    verdict.set_caching_options(False)  # the live version it compares with changes
    with dsl.If(verdict.outputs["Output"] == True, name="blessed"):  # noqa: E712 (KFP condition)
        infra = infra_check(
            test_data=parts.outputs["test_data"], bot_id=bot_id, models_root=models_root,
            version=registered.outputs["version"],
        ).set_display_name("Infra check: load and query in a predictor")
        infra.set_caching_options(False)
        with dsl.If(infra.outputs["Output"] == True, name="infra-ok"):  # noqa: E712
            deploy(
                blessing=verdict.outputs["blessing"],
                infra_result=infra.outputs["result"],
                bot_id=bot_id,
                models_root=models_root,
                version=registered.outputs["version"],
                target=args["deploy_target"],
                namespace=args["namespace"],
                serving_mode=args["serving_mode"],
                canary_traffic_percent=args["canary_traffic_percent"],
                ready_timeout_s=args["ready_timeout_s"],
            ).set_display_name("Deploy model version").set_caching_options(False)
    return registered.outputs["version_uri"]


def build_bot_training(gpu: GpuConfig | None = None):
    gpu = gpu or GpuConfig()
    params = run_parameters() + config_parameters(TrainConfig)
    return dsl.pipeline(
        name=PIPELINE_NAME,
        description="Train, evaluate and register one bot's intent model; deploy it when it beats the live version.",
    )(pipeline_function(lambda args: _steps(args, gpu), "bot_training", params, str))


bot_training = build_bot_training()
