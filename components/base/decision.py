"""The out-of-scope decision rule, shared by evaluation, the promotion gate and the predictor.

A prediction's answer is the most probable *in-scope* intent (a bot's own learned ``oos``
intent is never an answer); it is reported as out of scope when that intent's probability
is below the model version's ``oos_threshold``. ``evaluate.threshold`` chooses the threshold;
its criterion:

* the validation data has out-of-scope examples (intent ``oos``): the threshold that
  maximises in-scope accuracy (a rejected in-scope utterance counts as wrong) among those
  that reject at least ``min_oos_recall`` (``base.config.ThresholdConfig``, default 70%) of the validation out-of-scope
  examples; if none reaches that, the one maximising in-scope accuracy + out-of-scope
  recall. Answering in-scope users well comes first; the floor keeps the bot from
  answering most of what it was never built for;
* it has none: the highest threshold that still accepts all but ``reject_budget`` (default
  2%) of the correctly classified validation utterances.
"""

from __future__ import annotations

import numpy as np

from botyard.components.base import contracts as c


def decisions(probabilities: np.ndarray, labels: list[str], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Top in-scope intent per row and whether the row is out of scope at ``threshold``.

    When the bot learned an ``oos`` intent, its probability is not a candidate answer: the top
    intent is the most probable in-scope one, and the ``oos`` mass lowers that intent's
    confidence, so one threshold weighs both signals.
    """
    names = np.asarray(labels, dtype=object)
    scored = answerable_scores(probabilities, labels)
    top = scored.argmax(axis=1)
    confidence = scored.max(axis=1)
    return names[top], (confidence < threshold) | (names[top] == c.OOS_INTENT)


def answerable_scores(probabilities: np.ndarray, labels: list[str]) -> np.ndarray:
    """The probabilities with a learned ``oos`` intent's column masked out (-1)."""
    answerable = np.asarray(labels, dtype=object) != c.OOS_INTENT
    if answerable.all() or not answerable.any():
        return probabilities
    return np.where(answerable, probabilities, -1.0)


def scores(probabilities: np.ndarray, intents: np.ndarray, labels: list[str], threshold: float) -> dict[str, float | None]:
    """In-scope accuracy (rejections count as wrong) and out-of-scope recall at ``threshold``."""
    predicted, out_of_scope = decisions(probabilities, labels, threshold)
    is_oos = intents == c.OOS_INTENT
    in_scope = ~is_oos
    return {
        "in_scope_accuracy": float(np.mean((predicted == intents) & ~out_of_scope & in_scope, where=in_scope)) if in_scope.any() else None,
        "oos_recall": float(np.mean(out_of_scope[is_oos])) if is_oos.any() else None,
    }
