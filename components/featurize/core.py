"""Featurize step: learn the featurizer (vocabularies, idf weights) from the training split only.

Validation and test utterances never reach the vocabularies, so their unseen words are
featurized as they will be for a user (out of vocabulary, shared character n-grams). The
result is one featurizer artifact (``featurizer.json``, see ``botyard.components.base.featurizer``)
that train builds its model on and exports inside the SavedModel.
"""

from __future__ import annotations

import pandas as pd

from botyard.components.base import contracts as c
from botyard.components.base import featurizer
from botyard.components.base.config import TrainConfig
from botyard.components.base.errors import DataValidationError


def fit_featurizer(train: pd.DataFrame, config: TrainConfig) -> dict:
    """The featurizer spec adapted on ``train``'s utterances."""
    if train.empty:
        raise DataValidationError("the training split is empty; give each intent more examples")
    return featurizer.adapt_spec(config, train[c.UTTERANCE].tolist())


def featurize(train: pd.DataFrame, config: TrainConfig, output_dir: str) -> dict:
    """Fit the featurizer on ``train`` and write it to ``output_dir``; returns its vocabulary sizes.

    With ``config.word_vectors_uri``, the vectors of the word vocabulary are read from that file
    and saved beside the featurizer (the train step initialises the word embedding with them).
    """
    spec = fit_featurizer(train, config)
    rows = None
    if config.word_vectors_uri:
        rows, dim, found = featurizer.read_word_vectors(config.word_vectors_uri, spec["views"][featurizer.TOKEN_IDS]["vocabulary"])
        spec["word_vectors"] = {"uri": config.word_vectors_uri, "dim": dim, "found": found}
    featurizer.save(spec, output_dir, rows)
    return featurizer.summary(spec)
