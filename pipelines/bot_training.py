"""The per-bot pipeline: ingest -> validate -> split -> train -> evaluate -> register -> gate -> infra check -> deploy.

The infra check runs only for a blessed candidate, and deploy only when both verdicts bless it.

``build_bot_training(gpu)`` makes the pipeline for a cluster's GPU settings (compiled into
the YAML); ``bot_training`` is the default (one NVIDIA GPU for the train step).
"""



from kfp import dsl, kubernetes

from botyard.components.base.config import GpuConfig, SplitConfig, TrainConfig, ValidationConfig
from botyard.components.deploy.cluster import ClusterDeployConfig
from botyard.components.deploy.component import deploy
from botyard.components.evaluate.component import evaluate
from botyard.components.gate.component import gate
from botyard.components.gate.core import GateConfig
from botyard.components.infra_check.component import infra_check
from botyard.components.ingest.component import ingest
from botyard.components.register.component import register
from botyard.components.split.component import split
from botyard.components.train.component import train
from botyard.components.validate.component import validate

PIPELINE_NAME = "bot-training"
_T, _S, _V, _G, _D = TrainConfig(), SplitConfig(), ValidationConfig(), GateConfig(), ClusterDeployConfig()  # defaults: one home


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


def build_bot_training(gpu: "GpuConfig | None" = None):
    gpu = gpu or GpuConfig()

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Train, evaluate and register one bot's intent model; deploy it when it beats the live version.",
    )
    def bot_training(
        bot_id: str = "sample-bot",
        data_uri: str = "",
        models_root: str = "models",
        min_examples_per_intent: int = _V.min_examples_per_intent,
        val_fraction: float = _S.val_fraction,
        test_fraction: float = _S.test_fraction,
        split_seed: int = _S.seed,
        embedding_dim: int = _T.embedding_dim,
        lstm_units: int = _T.lstm_units,
        dropout: float = _T.dropout,
        epochs: int = _T.epochs,
        batch_size: int = _T.batch_size,
        learning_rate: float = _T.learning_rate,
        max_tokens: int = _T.max_tokens,
        sequence_length: int = _T.sequence_length,
        max_ngrams: int = _T.max_ngrams,
        max_char_ngrams: int = _T.max_char_ngrams,
        ngram_units: int = _T.ngram_units,
        patience: int = _T.patience,
        label_smoothing: float = _T.label_smoothing,
        seed: int = _T.seed,
        min_accuracy: float = _G.min_accuracy,
        max_accuracy_drop: float = _G.max_accuracy_drop,
        max_intent_recall_drop: float = _G.max_intent_recall_drop,
        deploy_target: str = "local",
        namespace: str = _D.namespace,
        serving_mode: str = _D.mode,
        canary_traffic_percent: int = 0,
        ready_timeout_s: int = _D.ready_timeout_s,
    ) -> str:
        ingested = ingest(data_uri=data_uri).set_display_name("Ingest training data")
        checked = validate(
            dataset=ingested.outputs["dataset"], data_uri=data_uri, min_examples_per_intent=min_examples_per_intent
        ).set_display_name("Validate training data")
        parts = split(
            dataset=checked.outputs["validated"], val_fraction=val_fraction, test_fraction=test_fraction, seed=split_seed
        ).set_display_name("Split train / val / test")
        trained = train(
            train_data=parts.outputs["train_data"],
            val_data=parts.outputs["val_data"],
            embedding_dim=embedding_dim,
            lstm_units=lstm_units,
            dropout=dropout,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_tokens=max_tokens,
            sequence_length=sequence_length,
            max_ngrams=max_ngrams,
            max_char_ngrams=max_char_ngrams,
            ngram_units=ngram_units,
            patience=patience,
            label_smoothing=label_smoothing,
            seed=seed,
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
            test_data=parts.outputs["test_data"],
            bot_id=bot_id,
            models_root=models_root,
            version=registered.outputs["version"],
            min_accuracy=min_accuracy,
            max_accuracy_drop=max_accuracy_drop,
            max_intent_recall_drop=max_intent_recall_drop,
        ).set_display_name("Promotion gate: candidate vs live")
        verdict.set_caching_options(False)  # the live version it compares with changes
        with dsl.If(verdict.outputs["Output"] == True, name="blessed"):  # noqa: E712 (KFP condition)
            infra = infra_check(
                test_data=parts.outputs["test_data"], bot_id=bot_id, models_root=models_root, version=registered.outputs["version"]
            ).set_display_name("Infra check: load and query in a predictor")
            infra.set_caching_options(False)
            with dsl.If(infra.outputs["Output"] == True, name="infra-ok"):  # noqa: E712
                deploy(
                    blessing=verdict.outputs["blessing"],
                    infra_result=infra.outputs["result"],
                    bot_id=bot_id,
                    models_root=models_root,
                    version=registered.outputs["version"],
                    target=deploy_target,
                    namespace=namespace,
                    serving_mode=serving_mode,
                    canary_traffic_percent=canary_traffic_percent,
                    ready_timeout_s=ready_timeout_s,
                ).set_display_name("Deploy model version").set_caching_options(False)
        return registered.outputs["version_uri"]

    return bot_training


bot_training = build_bot_training()
