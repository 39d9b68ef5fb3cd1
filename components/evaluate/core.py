"""Evaluate step: score the trained model on the test split and choose its out-of-scope threshold.

The threshold is chosen on the validation split (``threshold.choose_threshold``); the test
figures come from ``botyard.components.base.scoring.score``, the same function the promotion
gate scores the live version with. Writes the evaluation folder (see ``contracts``):
``evaluation.json`` (metrics, threshold, per-intent figures), ``confusion_matrix.csv``,
``per_intent.md``, ``misclassified.csv``; for a model with an entity tagger also the entity
figures (exact span and type: micro and per entity type, ``base.entities.span_scores``) in the
metrics and report, and ``entity_mistakes.csv`` (utterances whose spans differ).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from botyard.components.base import contracts as c
from botyard.components.base.artifacts import read_training_info, write_json
from botyard.components.base.config import ThresholdConfig
from botyard.components.base.entities import MICRO_F1, MICRO_PRECISION, MICRO_RECALL, choose_entity_threshold, span_scores
from botyard.components.base.model_io import load_signature, predict_all, signature_outputs
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
    per_entity: dict[str, dict[str, float]] | None = None  # None: the model has no entity tagger
    entity_mistakes: pd.DataFrame = field(default_factory=pd.DataFrame)
    entity_threshold: float | None = None  # spans below it are left out (chosen on val); None: no tagger

    def to_json(self) -> dict:
        return {
            c.LABELS: self.labels,
            c.OOS_THRESHOLD: self.oos_threshold,
            "threshold_criterion": self.threshold_criterion,
            c.METRICS: self.metrics,
            "per_intent": self.per_intent,
            **({"per_entity": self.per_entity} if self.per_entity is not None else {}),
            **({c.ENTITY_THRESHOLD: self.entity_threshold} if self.entity_threshold is not None else {}),
        }

    def logged_metrics(self) -> dict[str, float]:
        """The scalar figures the KFP ``Metrics`` artifact shows."""
        logged = {k: round(float(v), 4) for k, v in self.metrics.items() if isinstance(v, (int, float))}
        logged[c.OOS_THRESHOLD] = round(self.oos_threshold, 4)
        if self.entity_threshold is not None:
            logged[c.ENTITY_THRESHOLD] = round(self.entity_threshold, 4)
        return logged


def entity_figures(expected: list[list[dict]], predicted: list[list[dict]]) -> tuple[dict, dict]:
    """``(metrics, per entity type)``: exact span-and-type precision, recall and F1."""
    scored = span_scores(expected, predicted)
    metrics = {k: scored[k] for k in (MICRO_PRECISION, MICRO_RECALL, MICRO_F1)}
    metrics["entity_support"] = scored["entity_support"]
    return metrics, scored["per_entity"]


def entity_mistakes(test: pd.DataFrame, predicted: list[list[dict]]) -> pd.DataFrame:
    """Test utterances whose predicted spans differ from the expected ones (spans as JSON)."""
    def key(spans):
        return sorted((s["start"], s["end"], s["entity"]) for s in spans)

    def shown(spans):
        return json.dumps([{k: s[k] for k in ("entity", "value", "start", "end")} for s in spans], ensure_ascii=False)

    rows = [
        {c.UTTERANCE: text, "expected": shown(want), "predicted": shown(got)}
        for text, want, got in zip(test[c.UTTERANCE], test[c.ENTITIES], predicted)
        if key(want) != key(got)
    ]
    return pd.DataFrame(rows, columns=[c.UTTERANCE, "expected", "predicted"])


def evaluate(signature, labels: list[str], val: pd.DataFrame, test: pd.DataFrame, entity_tags: list[str] | None = None,
             threshold_config: ThresholdConfig | None = None) -> Evaluation:
    """Choose the threshold on ``val`` (``threshold_config``'s criterion), then score ``test`` with
    it (and its entity spans, with a tagger)."""
    outputs_of = signature_outputs(signature)
    val_probs, val_spans = predict_all(outputs_of, val[c.UTTERANCE].tolist(), len(labels), entity_tags)
    threshold, criterion = choose_threshold(val_probs, val[c.INTENT].to_numpy(dtype=object), labels, threshold_config)
    # the entity threshold too is chosen on val (0, every span, when val has no spans)
    entity_threshold = choose_entity_threshold(list(val[c.ENTITIES]), val_spans) if val_spans is not None else None
    intents = test[c.INTENT].to_numpy(dtype=object)
    probs, spans = predict_all(outputs_of, test[c.UTTERANCE].tolist(), len(labels), entity_tags, entity_threshold or 0.0)
    scored = score(probs, labels, threshold, intents)
    metrics = {**scored.metrics, "val_size": int(len(val))}
    per_entity, mistakes = None, pd.DataFrame()
    if spans is not None:
        entity_metrics, per_entity = entity_figures(list(test[c.ENTITIES]), spans)
        metrics.update(entity_metrics)
        mistakes = entity_mistakes(test, spans)
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
    return Evaluation(labels, threshold, criterion, metrics, scored.per_intent, scored.confusion, misclassified,
                      per_entity, mistakes, entity_threshold)


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
    if evaluation.per_entity is not None:
        lines += [
            "",
            "## Entities",
            "",
            f"Micro-F1 **{m[MICRO_F1]:.3f}** (precision {m[MICRO_PRECISION]:.3f}, recall {m[MICRO_RECALL]:.3f}) over "
            f"{m['entity_support']} expected spans (exact span and type); "
            f"{len(evaluation.entity_mistakes)} test utterances with a mistaken span ({c.ENTITY_MISTAKES_FILE}); "
            f"spans less confident than **{evaluation.entity_threshold or 0.0:.2f}** are left out "
            "(the threshold of span confidence that maximises micro-F1 on validation data).",
            "",
            "| entity | precision | recall | F1 | support |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for name, s in evaluation.per_entity.items():
            lines.append(f"| {name} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['support']} |")
        if len(evaluation.entity_mistakes):
            lines += ["", "| utterance | expected | predicted |", "| --- | --- | --- |"]
            for _, row in evaluation.entity_mistakes.head(20).iterrows():
                lines.append(f"| {row[c.UTTERANCE]} | `{row['expected']}` | `{row['predicted']}` |")
    return "\n".join(lines) + "\n"


def write_evaluation(evaluation: Evaluation, output_dir: str) -> None:
    write_json(output_dir, c.EVALUATION_FILE, evaluation.to_json())
    pd.DataFrame(evaluation.confusion, index=evaluation.labels, columns=evaluation.labels).to_csv(
        os.path.join(output_dir, c.CONFUSION_MATRIX_FILE), index_label="expected\\predicted"
    )
    with open(os.path.join(output_dir, c.PER_INTENT_FILE), "w", encoding="utf-8") as f:
        f.write(per_intent_markdown(evaluation))
    evaluation.misclassified.to_csv(os.path.join(output_dir, c.MISCLASSIFIED_FILE), index=False)
    if evaluation.per_entity is not None:
        evaluation.entity_mistakes.to_csv(os.path.join(output_dir, c.ENTITY_MISTAKES_FILE), index=False)


def evaluate_model_dir(model_dir: str, val: pd.DataFrame, test: pd.DataFrame, output_dir: str,
                       threshold_config: ThresholdConfig | None = None) -> Evaluation:
    """Evaluate the Model artifact folder written by ``train`` and write the evaluation folder."""
    training = read_training_info(model_dir)
    signature = load_signature(os.path.join(model_dir, c.SAVED_MODEL_DIR))
    evaluation = evaluate(signature, training[c.LABELS], val, test, training.get(c.ENTITY_TAGS), threshold_config)
    write_evaluation(evaluation, output_dir)
    return evaluation
