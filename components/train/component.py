"""KFP interface of the train step."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from botyard.components.base.kfp_component import botyard_component


@botyard_component
def train(
    train_data: Input[Dataset],
    val_data: Input[Dataset],
    featurizer: Input[Artifact],
    train_config: dict,
    entity_config: dict,
    gpu_requested: bool,
    allow_cpu_training: bool,
    model: Output[Model],
    training_metrics: Output[Metrics],
):
    """Train the bidirectional-LSTM intent classifier, and the entity tagger when the data has entity spans (on a GPU when the node has one).

    Args:
        train_data: Training rows.
        val_data: Validation rows, for early stopping on validation loss.
        featurizer: The featurize step's featurizer; exported inside the SavedModel.
        train_config: TrainConfig values (every hyperparameter; see botyard.components.base.config).
        entity_config: EntityConfig values (the entity tagger's; trained only when the training split has entity spans).
        gpu_requested: The pipeline was compiled to hold a GPU for this step: fail if TensorFlow sees none.
        allow_cpu_training: Train on the CPU anyway when a requested GPU is not visible.

    Returns:
        model: Folder with the string-in SavedModel and training.json (labels, entity tags, hyperparameters, history).
            Checkpoints go to ``<model URI>-checkpoint`` after every epoch; a retried step resumes
            from the last one, and they are removed once the model is exported.
        training_metrics: Final and per-epoch training curves, and the device used (device, gpu = 1 or 0).
    """
    import os

    from botyard.components.base.config import EntityConfig, TrainConfig
    from botyard.components.base.featurizer import load_spec
    from botyard.components.base.table import read_table
    from botyard.components.train.checkpoints import location_for
    from botyard.components.train.core import configure_devices, train_intent_model

    config = TrainConfig.from_parameters(train_config)
    configure_devices(config, gpu_requested=gpu_requested, allow_cpu=allow_cpu_training)  # fails before any work
    os.makedirs(model.path, exist_ok=True)
    result = train_intent_model(
        read_table(train_data.path), read_table(val_data.path), config, model.path, load_spec(featurizer.path),
        EntityConfig.from_parameters(entity_config),
        checkpoint_dir=location_for(model.uri, model.path),  # beside the model artifact; resumed after a kill
    )
    model.metadata.update({"labels": result.labels, "framework": "tensorflow", "device": result.device})
    for name, value in result.logged_metrics().items():
        training_metrics.log_metric(name, value)
    training_metrics.log_metric("gpu", 1.0 if result.device == "GPU" else 0.0)
    training_metrics.metadata["device"] = result.device
