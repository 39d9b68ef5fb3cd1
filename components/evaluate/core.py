"""Evaluate step: score the trained model on the test split and choose its out-of-scope threshold.

The threshold is chosen on the validation split (``threshold.choose_threshold``); the test
figures come from ``botyard.components.base.scoring.score``, the same function the promotion
gate scores the live version with. Writes the evaluation folder (see ``contracts``):
``evaluation.json`` (metrics, threshold, per-intent figures), ``confusion_matrix.csv``,
``per_intent.md``, ``misclassified.csv``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from botyard.components.base import contracts as c
from botyard.components.base.artifacts import read_training_info, write_json
from botyard.components.base.model_io import load_signature, predict_probabilities
from botyard.components.base.scoring import score
from botyard.components.evaluate.threshold import choose_threshold


@dataclass
class Evaluation:
    labels: list[str]
    oos_threshold: float
    threshold_criterion: str
    metrics: dict
    per_intent: dict[str, dict[str, float]]
    confusion: np.ndarray
    misclassified: pd.DataFrame

    def to_json(self) -> dict:
        return {
            c.LABELS: self.labels,
            c.OOS_THRESHOLD: self.oos_threshold,
            "threshold_criterion": self.threshold_criterion,
            c.METRICS: self.metrics,
            "per_intent": self.per_intent,
        }

    def logged_metrics(self) -> dict[str, float]:
        """The scalar figures the KFP ``Metrics`` artifact shows."""
        logged = {k: round(float(v), 4) for k, v in self.metrics.items() if isinstance(v, (int, float))}
        logged[c.OOS_THRESHOLD] = round(self.oos_threshold, 4)
        return logged


def evaluate(signature, labels: list[str], val: pd.DataFrame, test: pd.DataFrame) -> Evaluation:
    """Choose the threshold on ``val``, then score ``test`` with it."""
    val_probs = predict_probabilities(signature, val[c.UTTERANCE].tolist())
    threshold, criterion = choose_threshold(val_probs, val[c.INTENT].to_numpy(dtype=object), labels)
    intents = test[c.INTENT].to_numpy(dtype=object)
    probs = predict_probabilities(signature, test[c.UTTERANCE].tolist())
    scored = score(probs, labels, threshold, intents)
    metrics = {**scored.metrics, "val_size": int(len(val))}
    in_scope = intents != c.OOS_INTENT
    wrong = (in_scope & ((scored.predicted != intents) | scored.out_of_scope)) | (~in_scope & ~scored.out_of_scope)
    misclassified = pd.DataFrame(
        {
            c.UTTERANCE: test[c.UTTERANCE].to_numpy()[wrong],
            "expected": intents[wrong],
            "predicted": scored.predicted[wrong],
            "confidence": scored.confidence[wrong].round(4),
            "out_of_scope": scored.out_of_scope[wrong],
        }
    )
    return Evaluation(labels, threshold, criterion, metrics, scored.per_intent, scored.confusion, misclassified)


def per_intent_markdown(evaluation: Evaluation) -> str:
    m = evaluation.metrics
    lines = [
        "# Intent model evaluation",
        "",
        f"Accuracy **{m['accuracy']:.3f}**, macro-F1 **{m['macro_f1']:.3f}** on {m['test_size']} test utterances; "
        f"out-of-scope threshold **{evaluation.oos_threshold:.3f}** ({evaluation.threshold_criterion}).",
        "",
        "| intent | precision | recall | F1 | support |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, s in evaluation.per_intent.items():
        lines.append(f"| {label} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['support']} |")
    return "\n".join(lines) + "\n"


def write_evaluation(evaluation: Evaluation, output_dir: str) -> None:
    write_json(output_dir, c.EVALUATION_FILE, evaluation.to_json())
    pd.DataFrame(evaluation.confusion, index=evaluation.labels, columns=evaluation.labels).to_csv(
        os.path.join(output_dir, c.CONFUSION_MATRIX_FILE), index_label="expected\\predicted"
    )
    with open(os.path.join(output_dir, c.PER_INTENT_FILE), "w", encoding="utf-8") as f:
        f.write(per_intent_markdown(evaluation))
    evaluation.misclassified.to_csv(os.path.join(output_dir, c.MISCLASSIFIED_FILE), index=False)


def evaluate_model_dir(model_dir: str, val: pd.DataFrame, test: pd.DataFrame, output_dir: str) -> Evaluation:
    """Evaluate the Model artifact folder written by ``train`` and write the evaluation folder."""
    labels = read_training_info(model_dir)[c.LABELS]
    evaluation = evaluate(load_signature(os.path.join(model_dir, c.SAVED_MODEL_DIR)), labels, val, test)
    write_evaluation(evaluation, output_dir)
    return evaluation
