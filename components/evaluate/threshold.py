"""Choose a model version's out-of-scope confidence threshold on validation data.

A prediction whose top probability is below the threshold (or whose top intent is ``oos``)
is reported as out of scope. The criterion:

* the validation data has out-of-scope examples (intent ``oos``): the threshold maximises
  ``in-scope accuracy + out-of-scope recall`` on validation data (in-scope accuracy counts
  a rejected in-scope utterance as wrong);
* it has none: the highest threshold that still accepts all but ``reject_budget`` (default
  2%) of the correctly classified validation utterances.
"""

from __future__ import annotations

import numpy as np

from components import contracts as c

DEFAULT_REJECT_BUDGET = 0.02


def decisions(probabilities: np.ndarray, labels: list[str], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Top intent per row and whether the row is out of scope at ``threshold``."""
    top = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    predicted = np.asarray(labels, dtype=object)[top]
    out_of_scope = (confidence < threshold) | (predicted == c.OOS_INTENT)
    return predicted, out_of_scope


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
    probabilities: np.ndarray, intents: np.ndarray, labels: list[str], reject_budget: float = DEFAULT_REJECT_BUDGET
) -> tuple[float, str]:
    """The threshold and the criterion used (for the report)."""
    intents = np.asarray(intents, dtype=object)
    if len(intents) == 0:
        return 0.0, "no validation data: threshold 0 (nothing is rejected for low confidence)"
    confidence = probabilities.max(axis=1)
    if (intents == c.OOS_INTENT).any():
        candidates = np.unique(np.concatenate([[0.0], confidence]))
        best, best_score = 0.0, -1.0
        for t in candidates:
            s = scores(probabilities, intents, labels, float(t))
            total = (s["in_scope_accuracy"] or 0.0) + (s["oos_recall"] or 0.0)
            if total > best_score + 1e-12:
                best, best_score = float(t), total
        return best, "maximises in-scope accuracy + out-of-scope recall on validation data"
    predicted, _ = decisions(probabilities, labels, 0.0)
    correct = np.sort(confidence[predicted == intents])
    if len(correct) == 0:
        return 0.0, "no correct validation prediction: threshold 0"
    allowed = int(np.floor(reject_budget * len(correct)))
    # accept ``correct[allowed]`` and everything above: at most ``allowed`` correct rows rejected
    return float(correct[allowed]), (
        f"highest threshold that rejects at most {reject_budget:.0%} of correctly classified validation utterances"
    )
