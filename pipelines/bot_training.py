"""The per-bot pipeline: ingest -> validate -> split -> featurize -> train -> evaluate -> register
-> promotion gate -> infra check -> deploy.

The infra check runs only for a blessed candidate, and deploy only when both verdicts bless it.

Caching: the steps that read or write state outside their input artifacts never cache
(``UNCACHED_TASKS``: ingest reads the data behind ``data_uri``, register, gate, infra check and
deploy read or write the model store and the cluster). Every other step is keyed by its input
artifacts, so new data always reaches training while a retried run reuses what it can.

Parameters: the run's own (bot, data, model store, gate thresholds, deploy settings) plus one
per ``TrainConfig`` field, named, typed and defaulted from the dataclass itself, so a new
hyperparameter reaches the pipeline, the dashboard and ``botyard run --param`` by being added
to ``TrainConfig`` alone. The train and featurize steps get them as one ``train_config`` dict;
the entity tagger's (``EntityConfig``) are ``entity_<field>`` parameters, one ``entity_config``
dict for the train step, which trains the tagger only when the training split has entity spans.
How evaluate chooses the out-of-scope threshold (``ThresholdConfig``: ``min_oos_recall``,
``reject_budget``) is one ``threshold_config`` dict for the evaluate step.

``build_bot_training(gpu, images=, storage=, train_retries=)`` makes the pipeline for a cluster:
GPU, images, storage secret, every task's CPU/memory and the train task's retries are compiled
into the YAML (``task_settings``). With a GPU requested, the train step fails when TensorFlow
sees none, unless the run sets ``allow_cpu_training``. ``bot_training`` is the kfp.local
pipeline (no GPU request, no retries).
"""

from __future__ import annotations

from kfp import dsl

from botyard.components.base.config import EntityConfig, GpuConfig, SplitConfig, ThresholdConfig, TrainConfig, ValidationConfig
from botyard.components.base.images import ImageConfig
from botyard.components.deploy.config import ClusterDeployConfig
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
from botyard.pipelines.task_settings import LOCAL_BUILD, TRAIN_RETRIES, ClusterSettings, StorageAccess, configure

PIPELINE_NAME = "bot-training"
UNCACHED_TASKS = ("ingest", "register", "gate", "infra-check", "deploy")  # see the module docstring
TRAIN_PARAMETERS = tuple(name for name, _, _ in TrainConfig.parameter_fields())
ENTITY_PARAMETERS = tuple(name for name, _, _ in EntityConfig.parameter_fields())  # entity_<field>
THRESHOLD_PARAMETERS = tuple(name for name, _, _ in ThresholdConfig.parameter_fields())


def _unset_below_zero(value: float | None) -> float:
    """A gate threshold as a pipeline parameter: KFP has no optional floats, so unset is -1."""
    return -1.0 if value is None else value


def run_parameters() -> list:
    """The pipeline's parameters that are not hyperparameters, with their defaults (one home: the configs)."""
    split_defaults, validation_defaults, gate_defaults, cluster_defaults = SplitConfig(), ValidationConfig(), GateConfig(), ClusterDeployConfig()
    return [
        parameter("bot_id", str, "sample-bot"),
        parameter("data_uri", str, ""),
        parameter("models_root", str, "models"),
        parameter("min_examples_per_intent", int, validation_defaults.min_examples_per_intent),
        parameter("min_examples_per_entity", int, validation_defaults.min_examples_per_entity),
        parameter("on_label_conflict", str, validation_defaults.on_label_conflict),
        parameter("val_fraction", float, split_defaults.val_fraction),
        parameter("test_fraction", float, split_defaults.test_fraction),
        parameter("split_seed", int, split_defaults.seed),
        parameter("min_accuracy", float, gate_defaults.min_accuracy),
        parameter("max_accuracy_drop", float, gate_defaults.max_accuracy_drop),
        parameter("max_intent_recall_drop", float, gate_defaults.max_intent_recall_drop),
        parameter("min_entity_f1", float, _unset_below_zero(gate_defaults.min_entity_f1)),
        parameter("max_entity_f1_drop", float, _unset_below_zero(gate_defaults.max_entity_f1_drop)),
        parameter("allow_cpu_training", bool, False),
        parameter("deploy_target", str, "local"),
        parameter("namespace", str, cluster_defaults.namespace),  # "": the namespace the run executes in
        parameter("serving_mode", str, cluster_defaults.mode),
        parameter("deployment_mode", str, cluster_defaults.deployment_mode),
        parameter("canary_traffic_percent", int, 0),
        parameter("ready_timeout_s", int, int(cluster_defaults.ready_timeout_s)),
        parameter("predictor_service_account", str, cluster_defaults.service_account),
    ]


def _steps(args: dict, settings: ClusterSettings):
    """The pipeline's tasks, from its arguments (one channel per parameter)."""
    train_config = {name: args[name] for name in TRAIN_PARAMETERS}
    entity_config = {name: args[name] for name in ENTITY_PARAMETERS}
    data_uri, bot_id, models_root = args["data_uri"], args["bot_id"], args["models_root"]
    ingested = ingest(data_uri=data_uri).set_display_name("Ingest training data")
    # reads the data behind data_uri, which changes while the URI stays: never reuse an old
    # result (a cache key of the URI would register yesterday's model again); each later
    # step is keyed by its input artifacts, so a fresh ingest output reruns them
    ingested.set_caching_options(False)
    configure(ingested, settings)
    checked = validate(
        dataset=ingested.outputs["dataset"], data_uri=data_uri, min_examples_per_intent=args["min_examples_per_intent"],
        min_examples_per_entity=args["min_examples_per_entity"], on_label_conflict=args["on_label_conflict"],
    ).set_display_name("Validate training data")
    configure(checked, settings)
    parts = split(
        dataset=checked.outputs["validated"], val_fraction=args["val_fraction"], test_fraction=args["test_fraction"],
        seed=args["split_seed"],
    ).set_display_name("Split train / val / test")
    configure(parts, settings)
    featurized = featurize(train_data=parts.outputs["train_data"], train_config=train_config)
    featurized.set_display_name("Featurize: vocabularies from the training split")
    configure(featurized, settings)
    trained = train(
        train_data=parts.outputs["train_data"],
        val_data=parts.outputs["val_data"],
        featurizer=featurized.outputs["featurizer"],
        train_config=train_config,
        entity_config=entity_config,
        gpu_requested=settings.gpu.enabled,
        allow_cpu_training=args["allow_cpu_training"],
    ).set_display_name("Train BiLSTM intent model (and entity tagger)")
    configure(trained, settings)
    evaluated = evaluate(
        model=trained.outputs["model"], val_data=parts.outputs["val_data"], test_data=parts.outputs["test_data"],
        threshold_config={name: args[name] for name in THRESHOLD_PARAMETERS},
    ).set_display_name("Evaluate on test split")
    configure(evaluated, settings)
    registered = register(
        model=trained.outputs["model"],
        evaluation=evaluated.outputs["evaluation"],
        bot_id=bot_id,
        models_root=models_root,
        data_hash=ingested.outputs["data_hash"],
    ).set_display_name("Register model version")
    registered.set_caching_options(False)  # writes to the model store: never skip it
    configure(registered, settings)
    verdict = gate(
        evaluation=evaluated.outputs["evaluation"],
        test_data=parts.outputs["test_data"],
        bot_id=bot_id,
        models_root=models_root,
        version=registered.outputs["version"],
        min_accuracy=args["min_accuracy"],
        max_accuracy_drop=args["max_accuracy_drop"],
        max_intent_recall_drop=args["max_intent_recall_drop"],
        min_entity_f1=args["min_entity_f1"],
        max_entity_f1_drop=args["max_entity_f1_drop"],
    ).set_display_name("Promotion gate: candidate vs live")
    verdict.set_caching_options(False)  # the live version it compares with changes
    configure(verdict, settings)
    with dsl.If(verdict.outputs["Output"] == True, name="blessed"):  # noqa: E712 (KFP condition)
        infra = infra_check(
            test_data=parts.outputs["test_data"], bot_id=bot_id, models_root=models_root,
            version=registered.outputs["version"],
        ).set_display_name("Infra check: load and query in a predictor")
        infra.set_caching_options(False)
        configure(infra, settings)
        with dsl.If(infra.outputs["Output"] == True, name="infra-ok"):  # noqa: E712
            deployed = deploy(
                blessing=verdict.outputs["blessing"],
                infra_result=infra.outputs["result"],
                test_data=parts.outputs["test_data"],
                bot_id=bot_id,
                models_root=models_root,
                version=registered.outputs["version"],
                target=args["deploy_target"],
                namespace=args["namespace"],
                serving_mode=args["serving_mode"],
                deployment_mode=args["deployment_mode"],
                canary_traffic_percent=args["canary_traffic_percent"],
                ready_timeout_s=args["ready_timeout_s"],
                predictor_service_account=args["predictor_service_account"],
                predictor_image=settings.images.predictor,
                storage_access=settings.storage.to_dict(),
            ).set_display_name("Deploy model version").set_caching_options(False)
            configure(deployed, settings)
    return registered.outputs["version_uri"]


def build_bot_training(gpu: GpuConfig | None = None, *, images: ImageConfig | None = None, storage: StorageAccess | None = None,
                       train_retries: int = TRAIN_RETRIES):
    """The pipeline for a cluster's GPU, image, storage and retry settings (``task_settings``)."""
    settings = ClusterSettings.of(gpu, images, storage, train_retries)
    params = run_parameters() + config_parameters(ThresholdConfig) + config_parameters(TrainConfig) + config_parameters(EntityConfig)
    return dsl.pipeline(
        name=PIPELINE_NAME,
        description="Train, evaluate and register one bot's intent model; deploy it when it beats the live version.",
    )(pipeline_function(lambda args: _steps(args, settings), "bot_training", params, str))


# for kfp.local (`botyard run`): no GPU request, no retries (a failing train step fails at once);
# `botyard compile` and `botyard submit` build the cluster's pipeline with build_bot_training(GpuConfig(), ...)
bot_training = build_bot_training(**LOCAL_BUILD)
