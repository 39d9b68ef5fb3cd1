"""The pipeline's steps called in this process, without KFP: for notebooks, benchmarks and tests.

Each function chains the same step cores the components call (nothing is re-implemented), so
a model trained here is the model the pipeline would train on the same splits.
"""

from __future__ import annotations

import os

import pandas as pd

from botyard.components.base.config import EntityConfig, TrainConfig
from botyard.components.featurize.core import featurize
from botyard.components.train.core import TrainResult, train_intent_model

FEATURIZER_DIR = "featurizer"  # beside the model's files in ``output_dir``


def train_model(
    train: pd.DataFrame, val: pd.DataFrame, config: TrainConfig, output_dir: str, entity_config: EntityConfig | None = None,
    checkpoint_dir: str | None = None,
) -> TrainResult:
    """featurize + train: the featurizer adapted on ``train`` goes to ``<output_dir>/featurizer/``,
    the Model artifact (``saved_model/``, ``training.json``) to ``output_dir``. The entity tagger
    trains (``entity_config``, default ``EntityConfig()``) when ``train`` has entity spans; with
    ``checkpoint_dir``, training checkpoints every epoch there and resumes from it (as the train
    step does)."""
    from botyard.components.base.featurizer import load_spec

    featurizer_dir = os.path.join(output_dir, FEATURIZER_DIR)
    featurize(train, config, featurizer_dir)
    return train_intent_model(
        train, val, config, output_dir, load_spec(featurizer_dir), entity_config or EntityConfig(), checkpoint_dir=checkpoint_dir
    )
