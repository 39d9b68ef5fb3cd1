"""Evaluate a trained model artifact on the test split and pick its out-of-scope threshold.

Writes the evaluation folder (see ``contracts``): ``evaluation.json`` (metrics, threshold,
per-intent scores), ``confusion_matrix.csv``, ``per_intent.md``, ``misclassified.csv``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from botyard.components.base import contracts as c
from botyard.components.evaluate.threshold import choose_threshold, decisions, scores
from botyard.components.train.core import read_training_info

PREDICT_BATCH = 256


def load_signature(saved_model_dir: str):
    import tensorflow as tf

    return tf.saved_model.load(saved_model_dir).signatures[c.SERVING_SIGNATURE]


def predict_probabilities(signature, utterances: list[str]) -> np.ndarray:
    import tensorflow as tf

    if not utterances:
        return np.zeros((0, signature.structured_outputs[c.OUTPUT_PROBABILITIES].shape[-1]), dtype="float32")
    chunks = [
        signature(**{c.SIGNATURE_INPUT: tf.constant(utterances[i : i + PREDICT_BATCH])})[c.OUTPUT_PROBABILITIES].numpy()
        for i in range(0, len(utterances), PREDICT_BATCH)
    ]
    return np.concatenate(chunks)


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


def evaluate(signature, labels: list[str], val: pd.DataFrame, test: pd.DataFrame) -> Evaluation:
    """Metrics on ``test`` (argmax, then with the threshold chosen on ``val``)."""
    val_probs = predict_probabilities(signature, val[c.UTTERANCE].tolist())
    threshold, criterion = choose_threshold(val_probs, val[c.INTENT].to_numpy(dtype=object), labels)

    intents = test[c.INTENT].to_numpy(dtype=object)
    probs = predict_probabilities(signature, test[c.UTTERANCE].tolist())
    predicted, out_of_scope = decisions(probs, labels, threshold)
    known = np.isin(intents, labels)  # ``oos`` rows count only when the bot trained an ``oos`` intent
    in_scope = intents != c.OOS_INTENT
    scored = known & in_scope
    in_scope_labels = [label for label in labels if label != c.OOS_INTENT]
    p, r, f, support = precision_recall_fscore_support(
        intents[scored], predicted[scored], labels=in_scope_labels, zero_division=0
    )
    per_intent = {
        label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
        for i, label in enumerate(in_scope_labels)
    }
    at_threshold = scores(probs, intents, labels, threshold)
    metrics = {
        "accuracy": float(np.mean(predicted[scored] == intents[scored])) if scored.any() else 0.0,
        "macro_f1": float(f1_score(intents[scored], predicted[scored], labels=in_scope_labels, average="macro", zero_division=0)) if scored.any() else 0.0,
        "in_scope_accuracy": at_threshold["in_scope_accuracy"],
        "oos_recall": at_threshold["oos_recall"],
        "test_size": int(len(test)),
        "val_size": int(len(val)),
        "per_intent_recall": {label: v["recall"] for label, v in per_intent.items()},
    }
    wrong = known & (predicted != intents) | (in_scope & out_of_scope)
    misclassified = pd.DataFrame(
        {
            c.UTTERANCE: test[c.UTTERANCE].to_numpy()[wrong],
            "expected": intents[wrong],
            "predicted": predicted[wrong],
            "confidence": probs.max(axis=1)[wrong].round(4) if len(probs) else [],
            "out_of_scope": out_of_scope[wrong],
        }
    )
    # with a learned ``oos`` intent its column counts the rejections
    final = np.where(out_of_scope, c.OOS_INTENT, predicted) if c.OOS_INTENT in labels else predicted
    matrix = confusion_matrix(intents[known], final[known], labels=labels) if known.any() else np.zeros((len(labels),) * 2, int)
    return Evaluation(labels, threshold, criterion, metrics, per_intent, matrix, misclassified)


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
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, c.EVALUATION_FILE), "w", encoding="utf-8") as f:
        json.dump(evaluation.to_json(), f, indent=2)
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


def read_evaluation(evaluation_dir: str) -> dict:
    with open(os.path.join(evaluation_dir, c.EVALUATION_FILE), encoding="utf-8") as f:
        return json.load(f)
