"""Score one model version on labelled utterances: the one scoring path of botyard.

Evaluate scores the candidate with ``score``; the promotion gate scores the live version on
the same test rows with the same function and compares the two. Both apply the decision rule
the predictor answers with (``botyard.components.base.decision``), so a figure in
``metadata.json``, in the gate's ``blessing.json`` and what a client sees agree.

Which rows count:

* ``accuracy``, ``macro_f1`` and the per-intent figures: every in-scope row (intent other
  than ``oos``); the prediction is the top in-scope intent, with no threshold. A row whose
  intent the model does not know counts as wrong: a live version trained before an intent
  existed cannot answer it.
* ``in_scope_accuracy``: the same rows, with the threshold applied (a rejection is wrong).
* ``oos_recall``: the ``oos`` rows rejected at the threshold (``None`` without ``oos`` rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from botyard.components.base import contracts as c
from botyard.components.base.decision import decisions, scores

# keys of a version's metrics (metadata.json ``metrics``, evaluation.json, blessing.json)
ACCURACY = "accuracy"
MACRO_F1 = "macro_f1"
IN_SCOPE_ACCURACY = "in_scope_accuracy"
OOS_RECALL = "oos_recall"
TEST_SIZE = "test_size"
PER_INTENT_RECALL = "per_intent_recall"


@dataclass
class Scores:
    """A version's figures on one set of rows, and the per-row decisions behind them."""

    metrics: dict  # ACCURACY, MACRO_F1, IN_SCOPE_ACCURACY, OOS_RECALL, TEST_SIZE, PER_INTENT_RECALL
    per_intent: dict[str, dict[str, float]]  # intent -> precision, recall, f1, support
    confusion: np.ndarray  # rows: expected, columns: predicted, both in ``labels`` order
    predicted: np.ndarray  # top in-scope intent per row
    out_of_scope: np.ndarray  # rejected at the threshold
    confidence: np.ndarray  # the top in-scope intent's probability


def score(probabilities: np.ndarray, labels: list[str], threshold: float, intents) -> Scores:
    """Figures of a version whose ``probabilities`` (rows x ``labels``) answer utterances labelled ``intents``."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    intents = np.asarray(intents, dtype=object)
    labels = list(labels)
    predicted, out_of_scope = decisions(probabilities, labels, threshold) if len(intents) else (
        np.array([], dtype=object), np.array([], dtype=bool))
    confidence = np.take_along_axis(probabilities, np.asarray(
        [labels.index(p) for p in predicted], dtype=int)[:, None], axis=1)[:, 0] if len(intents) else np.zeros(0)
    in_scope = intents != c.OOS_INTENT
    expected, answered = intents[in_scope], predicted[in_scope]
    # the intents a user of this bot can get: the model's answers and the test's in-scope intents
    intent_names = sorted({label for label in labels if label != c.OOS_INTENT} | set(expected))
    if len(expected):
        p, r, f, support = precision_recall_fscore_support(expected, answered, labels=intent_names, zero_division=0)
    else:
        p = r = f = support = np.zeros(len(intent_names))
    per_intent = {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
        for i, name in enumerate(intent_names)
    }
    tested = [name for name in intent_names if per_intent[name]["support"] > 0]
    at_threshold = scores(probabilities, intents, labels, threshold) if len(intents) else {
        IN_SCOPE_ACCURACY: None, OOS_RECALL: None}
    metrics = {
        ACCURACY: float(np.mean(answered == expected)) if len(expected) else 0.0,
        # macro-F1 over the intents that have test rows (an intent without any has no recall to average)
        MACRO_F1: float(np.mean([per_intent[name]["f1"] for name in tested])) if tested else 0.0,
        IN_SCOPE_ACCURACY: at_threshold[IN_SCOPE_ACCURACY],
        OOS_RECALL: at_threshold[OOS_RECALL],
        TEST_SIZE: int(len(intents)),
        PER_INTENT_RECALL: {name: per_intent[name]["recall"] for name in tested},
    }
    # with a learned ``oos`` intent its column counts the rejections
    final = np.where(out_of_scope, c.OOS_INTENT, predicted) if c.OOS_INTENT in labels else predicted
    known = np.isin(intents, labels)
    matrix = (confusion_matrix(intents[known], final[known], labels=labels) if known.any()
              else np.zeros((len(labels),) * 2, dtype=int))
    return Scores(metrics, per_intent, matrix, predicted, out_of_scope, confidence)
