"""The out-of-scope decision rule, shared by evaluation, the promotion gate and the predictor.

A prediction's answer is the most probable *in-scope* intent (a bot's own learned ``oos``
intent is never an answer); it is reported as out of scope when that intent's *lead* is below
the model version's ``oos_threshold``. The lead is the intent's probability less the learned
``oos`` intent's probability, floored at 0 (a bot without an ``oos`` intent: the probability
itself). Measured on CLINC150 validation data, the lead separates in-scope from out-of-scope
utterances better than the probability alone: at the same out-of-scope floor it kept 0 to 0.9
points more in-scope accuracy and rejected as many or more out-of-scope utterances.
``evaluate.threshold`` chooses the threshold; its criterion:

* the validation data has out-of-scope examples (intent ``oos``): the threshold that
  maximises in-scope accuracy (a rejected in-scope utterance counts as wrong) among those
  that reject at least ``min_oos_recall`` (default 70%) of the validation out-of-scope
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
    intent is the most probable in-scope one, and the threshold applies to its lead over the
    ``oos`` intent (``leads``), so one threshold weighs both signals.
    """
    names = np.asarray(labels, dtype=object)
    top = answerable_scores(probabilities, labels).argmax(axis=1)
    return names[top], (leads(probabilities, labels) < threshold) | (names[top] == c.OOS_INTENT)


def leads(probabilities: np.ndarray, labels: list[str]) -> np.ndarray:
    """Per row, what the threshold is compared with: the top in-scope intent's probability less
    the learned ``oos`` intent's, floored at 0 (no ``oos`` intent: the top probability)."""
    top = answerable_scores(probabilities, labels).max(axis=1)
    oos = np.asarray(labels, dtype=object) == c.OOS_INTENT
    if not oos.any() or oos.all():
        return top
    return np.maximum(top - probabilities[:, oos].sum(axis=1), 0.0)


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
