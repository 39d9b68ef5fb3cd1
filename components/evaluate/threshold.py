"""Choose a model version's out-of-scope confidence threshold on validation data.

The rule it is applied with lives in ``botyard.components.base.decision``; the criterion is
described there.
"""

from __future__ import annotations

import numpy as np

from botyard.components.base import contracts as c
from botyard.components.base.config import ThresholdConfig
from botyard.components.base.decision import answerable_scores, decisions, scores


def choose_threshold(
    probabilities: np.ndarray,
    intents: np.ndarray,
    labels: list[str],
    config: ThresholdConfig | None = None,
) -> tuple[float, str]:
    """The threshold and the criterion used (for the report)."""
    config = config or ThresholdConfig()
    reject_budget, min_oos_recall = config.reject_budget, config.min_oos_recall
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
