"""KFP interface of the train step."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from botyard.components.base.kfp_component import botyard_component


@botyard_component
def train(
    train_data: Input[Dataset],
    val_data: Input[Dataset],
    featurizer: Input[Artifact],
    train_config: dict,
    model: Output[Model],
    training_metrics: Output[Metrics],
):
    """Train the bidirectional-LSTM intent classifier (on a GPU when the node has one).

    Args:
        train_data: Training rows.
        val_data: Validation rows, for early stopping on validation loss.
        featurizer: The featurize step's featurizer; exported inside the SavedModel.
        train_config: TrainConfig values (every hyperparameter; see botyard.components.base.config).

    Returns:
        model: Folder with the string-in SavedModel and training.json (labels, hyperparameters, history).
        training_metrics: Final and per-epoch training curves.
    """
    import os

    from botyard.components.base.config import TrainConfig
    from botyard.components.base.featurizer import load_spec
    from botyard.components.base.table import read_table
    from botyard.components.train.core import train_intent_model

    os.makedirs(model.path, exist_ok=True)
    result = train_intent_model(
        read_table(train_data.path), read_table(val_data.path), TrainConfig.from_parameters(train_config),
        model.path, load_spec(featurizer.path),
    )
    model.metadata.update({"labels": result.labels, "framework": "tensorflow", "device": result.device})
    for name, value in result.logged_metrics().items():
        training_metrics.log_metric(name, value)
