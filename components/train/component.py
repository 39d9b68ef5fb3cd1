"""KFP interface of the train step."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from botyard.components.base.kfp_component import botyard_component


@botyard_component
def train(
    train_data: Input[Dataset],
    val_data: Input[Dataset],
    model: Output[Model],
    training_metrics: Output[Metrics],
    embedding_dim: int,
    lstm_units: int,
    dropout: float,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    max_tokens: int,
    sequence_length: int,
    max_ngrams: int,
    max_char_ngrams: int,
    ngram_units: int,
    patience: int,
    label_smoothing: float,
    seed: int,
    mixed_precision: bool = False,
):
    """Train the bidirectional-LSTM intent classifier (on a GPU when the node has one).

    Hyperparameters have no defaults here: the pipeline passes ``TrainConfig``'s tuned ones.

    Args:
        train_data: Training rows.
        val_data: Validation rows, for early stopping on validation loss.
        embedding_dim: Word embedding size.
        lstm_units: LSTM units per direction.
        dropout: Dropout on embeddings and the sentence vector.
        epochs: Maximum epochs; early stopping usually ends sooner.
        batch_size: Utterances per training batch.
        learning_rate: Adam learning rate.
        max_tokens: Word vocabulary size.
        sequence_length: Tokens per utterance.
        max_ngrams: Word uni+bigram TF-IDF features (0 turns them off).
        max_char_ngrams: Character 3-5-gram TF-IDF features (0 turns them off).
        ngram_units: Dense units over each n-gram view.
        patience: Epochs without validation-loss improvement before stopping.
        label_smoothing: Target smoothing.
        mixed_precision: float16 compute on a GPU.
        seed: Training seed.

    Returns:
        model: Folder with the string-in SavedModel and training.json (labels, hyperparameters, history).
        training_metrics: Final and per-epoch training curves.
    """
    import os

    from botyard.components.base.config import TrainConfig
    from botyard.components.base.table import read_table
    from botyard.components.train.core import train_intent_model

    config = TrainConfig(
        embedding_dim=embedding_dim, lstm_units=lstm_units, dropout=dropout, epochs=epochs, batch_size=batch_size,
        learning_rate=learning_rate, max_tokens=max_tokens, sequence_length=sequence_length,
        max_ngrams=max_ngrams, max_char_ngrams=max_char_ngrams, ngram_units=ngram_units, patience=patience,
        label_smoothing=label_smoothing, mixed_precision=mixed_precision, seed=seed,
    )
    os.makedirs(model.path, exist_ok=True)
    result = train_intent_model(read_table(train_data.path), read_table(val_data.path), config, model.path)
    model.metadata.update({"labels": result.labels, "framework": "tensorflow", "device": result.device})
    training_metrics.log_metric("epochs_run", result.epochs_run)
    training_metrics.log_metric("train_seconds", result.train_seconds)
    for name, values in result.history.items():
        training_metrics.log_metric(f"final_{name}", round(values[-1], 4))
        for epoch, value in enumerate(values, start=1):
            training_metrics.log_metric(f"epoch_{epoch:03d}_{name}", round(value, 4))
