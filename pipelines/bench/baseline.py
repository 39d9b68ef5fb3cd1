"""The bag-of-words baseline every suite reports beside the BiLSTM: TF-IDF + logistic regression.

Word 1-2-grams and character 2-5-grams (within word boundaries), sublinear TF-IDF, then a
multinomial logistic regression. Fixed settings (no tuning), trained on the same rows as
the BiLSTM; scikit-learn is already a runtime dependency of botyard.
``SklearnSignature`` makes it look like a SavedModel's ``serving_default`` so the
pipeline's own evaluate core scores both systems the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from botyard.components.base import contracts as c

INVERSE_REGULARISATION = 10.0  # inverse regularisation; TF-IDF features are L2-normalised per view
MAX_ITER = 300


def train_baseline(train: pd.DataFrame):
    """A fitted scikit-learn pipeline; ``classes_`` are the intents in sorted order."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline

    features = FeatureUnion(
        [
            ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
            ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)),
        ]
    )
    model = make_pipeline(features, LogisticRegression(C=INVERSE_REGULARISATION, max_iter=MAX_ITER))
    model.fit(train[c.UTTERANCE].tolist(), train[c.INTENT].to_numpy())
    return model


class _Tensor:
    def __init__(self, array: np.ndarray):
        self._array = array

    def numpy(self) -> np.ndarray:
        return self._array


class SklearnSignature:
    """Callable like a ``serving_default`` signature: ``utterances=`` strings in, ``probabilities`` out."""

    def __init__(self, model):
        self.model = model

    def __call__(self, **inputs) -> dict[str, _Tensor]:
        texts = inputs[c.SIGNATURE_INPUT]
        texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in np.asarray(texts.numpy() if hasattr(texts, "numpy") else texts)]
        return {c.OUTPUT_PROBABILITIES: _Tensor(self.model.predict_proba(texts).astype("float32"))}
