"""Choose a model version's out-of-scope confidence threshold on validation data.

A prediction whose top in-scope probability is below the threshold
is reported as out of scope (a bot's own ``oos`` intent is never an answer: see ``decisions``).
The criterion:

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

DEFAULT_REJECT_BUDGET = 0.02
DEFAULT_MIN_OOS_RECALL = 0.7


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


def choose_threshold(
    probabilities: np.ndarray,
    intents: np.ndarray,
    labels: list[str],
    reject_budget: float = DEFAULT_REJECT_BUDGET,
    min_oos_recall: float = DEFAULT_MIN_OOS_RECALL,
) -> tuple[float, str]:
    """The threshold and the criterion used (for the report)."""
    intents = np.asarray(intents, dtype=object)
    if len(intents) == 0:
        return 0.0, "no validation data: threshold 0 (nothing is rejected for low confidence)"
    if (intents == c.OOS_INTENT).any():
        grid = np.unique(np.concatenate([[0.0], answerable_scores(probabilities, labels).max(axis=1)]))
        candidates = [(float(t), scores(probabilities, intents, labels, float(t))) for t in grid]
        floor = [(t, s) for t, s in candidates if s["oos_recall"] >= min_oos_recall]
        if floor:
            best = max(floor, key=lambda ts: (ts[1]["in_scope_accuracy"] or 0.0, -ts[0]))
            return best[0], (
                f"maximises in-scope accuracy on validation data while rejecting at least {min_oos_recall:.0%} "
                "of its out-of-scope examples"
            )
        best = max(candidates, key=lambda ts: (ts[1]["in_scope_accuracy"] or 0.0) + ts[1]["oos_recall"])
        return best[0], "maximises in-scope accuracy + out-of-scope recall on validation data"
    predicted, _ = decisions(probabilities, labels, 0.0)
    correct = np.sort(answerable_scores(probabilities, labels).max(axis=1)[predicted == intents])
    if len(correct) == 0:
        return 0.0, "no correct validation prediction: threshold 0"
    allowed = int(np.floor(reject_budget * len(correct)))
    # accept ``correct[allowed]`` and everything above: at most ``allowed`` correct rows rejected
    return float(correct[allowed]), (
        f"highest threshold that rejects at most {reject_budget:.0%} of correctly classified validation utterances"
    )
