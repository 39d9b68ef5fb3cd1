"""Promotion gate (like TFX's Evaluator blessing): candidate vs the bot's live version, same test data.

Value thresholds bound the candidate alone; change thresholds bound its loss against the
live (promoted) version, both scored here on the candidate's test split. First run (no
live version): only the value thresholds apply. No threshold configured at all: never
blessed, since nothing was checked.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from botyard.components.base import contracts as c
from botyard.components.base.config import ConfigBase
from botyard.components.base.errors import ConfigError
from botyard.components.evaluate.core import load_signature, predict_probabilities
from botyard.components.base.model_store import ModelStore

BLESSED_MARKER = "BLESSED"
NOT_BLESSED_MARKER = "NOT_BLESSED"
BLESSING_FILE = "blessing.json"


@dataclass(frozen=True)
class GateConfig(ConfigBase):
    min_accuracy: float | None = 0.5  # candidate's test accuracy must reach this
    min_macro_f1: float | None = None  # optional value threshold on macro-F1
    max_accuracy_drop: float | None = 0.02  # at most this much below the live version (absolute)
    max_intent_recall_drop: float | None = 0.34  # any shared intent's recall may fall at most this much
    # (tiny test splits: with 2-3 test utterances an intent, one miss moves recall by 0.33-0.5)

    _ranges = {}

    def __post_init__(self) -> None:
        for name in ("min_accuracy", "min_macro_f1", "max_accuracy_drop", "max_intent_recall_drop"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ConfigError(f"GateConfig.{name} = {value!r} is out of range; allowed: 0 to 1, or unset")

    @property
    def any_threshold(self) -> bool:
        return any(v is not None for v in self.to_dict().values())


@dataclass
class Blessing:
    blessed: bool
    reasons: list[str]
    candidate: dict
    live: dict | None
    thresholds: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return self.__dict__.copy()

    def to_markdown(self) -> str:
        verdict = "BLESSED" if self.blessed else "NOT BLESSED"
        lines = [f"# Promotion gate: {verdict}", "", f"Candidate `{self.candidate['version']}`"]
        lines.append(f"vs live `{self.live['version']}`" if self.live else "(first run: no live version)")
        lines += ["", "| metric | candidate | live |", "| --- | ---: | ---: |"]
        for key in ("accuracy", "macro_f1"):
            live = f"{self.live[key]:.3f}" if self.live else "-"
            lines.append(f"| {key} | {self.candidate[key]:.3f} | {live} |")
        lines += ["", "## Reasons", ""] + [f"- {r}" for r in self.reasons]
        return "\n".join(lines) + "\n"


def score(signature, labels: list[str], test: pd.DataFrame) -> dict:
    """Accuracy, macro-F1 and per-intent recall of one model version on ``test`` (in-scope rows)."""
    from sklearn.metrics import f1_score

    rows = test[test[c.INTENT] != c.OOS_INTENT]
    intents = rows[c.INTENT].to_numpy(dtype=object)
    probs = predict_probabilities(signature, rows[c.UTTERANCE].tolist())
    predicted = np.asarray(labels, dtype=object)[probs.argmax(axis=1)] if len(rows) else np.array([], dtype=object)
    recall = {
        intent: float(np.mean(predicted[intents == intent] == intent)) for intent in sorted(set(intents))
    }
    return {
        "accuracy": float(np.mean(predicted == intents)) if len(rows) else 0.0,
        "macro_f1": float(f1_score(intents, predicted, average="macro", zero_division=0)) if len(rows) else 0.0,
        "per_intent_recall": recall,
        "labels": list(labels),
    }


def judge(candidate: dict, live: dict | None, config: GateConfig) -> tuple[bool, list[str]]:
    """The verdict and every reason for it, from the two versions' scores."""
    if not config.any_threshold:
        return False, ["no threshold is configured: refusing to bless an unchecked model"]
    failures, passes = [], []

    def check(ok: bool, text: str) -> None:
        (passes if ok else failures).append(("ok: " if ok else "FAIL: ") + text)

    if config.min_accuracy is not None:
        check(candidate["accuracy"] >= config.min_accuracy, f"accuracy {candidate['accuracy']:.3f} >= minimum {config.min_accuracy:.3f}")
    if config.min_macro_f1 is not None:
        check(candidate["macro_f1"] >= config.min_macro_f1, f"macro-F1 {candidate['macro_f1']:.3f} >= minimum {config.min_macro_f1:.3f}")
    if live is None:
        passes.append("first run: no live version, so only value thresholds apply")
    else:
        if config.max_accuracy_drop is not None:
            drop = live["accuracy"] - candidate["accuracy"]
            check(drop <= config.max_accuracy_drop + 1e-9, f"accuracy change {-drop:+.3f} vs live {live['version']} (maximum drop {config.max_accuracy_drop:.3f})")
        if config.max_intent_recall_drop is not None:
            shared = sorted(set(candidate["per_intent_recall"]) & set(live["per_intent_recall"]))
            worst = [(live["per_intent_recall"][i] - candidate["per_intent_recall"][i], i) for i in shared]
            bad = [(d, i) for d, i in worst if d > config.max_intent_recall_drop + 1e-9]
            if bad:
                for d, i in sorted(bad, reverse=True):
                    failures.append(f"FAIL: intent '{i}' recall fell {d:.3f} (from {live['per_intent_recall'][i]:.3f} to {candidate['per_intent_recall'][i]:.3f}; maximum drop {config.max_intent_recall_drop:.3f})")
            else:
                largest = max(worst, default=(0.0, "-"))
                passes.append(f"ok: no intent's recall fell more than {config.max_intent_recall_drop:.3f} (largest: '{largest[1]}' {largest[0]:+.3f})")
    return not failures, failures + passes


def run_gate(models_root: str, bot_id: str, candidate_version: str, test: pd.DataFrame, config: GateConfig) -> Blessing:
    """Score the candidate and the live version on ``test`` and judge them."""
    store = ModelStore(models_root)

    def scored(version: str) -> dict:
        meta = store.metadata(bot_id, version)
        result = score(load_signature(store.saved_model_dir(bot_id, version)), meta[c.LABELS], test)
        return {**result, "version": version}

    candidate = scored(candidate_version)
    live_version = store.current(bot_id)
    live = scored(live_version) if live_version and live_version != candidate_version else None
    blessed, reasons = judge(candidate, live, config)
    return Blessing(blessed, reasons, candidate, live, config.to_dict())


def write_blessing(blessing: Blessing, output_dir: str) -> None:
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, BLESSING_FILE), "w", encoding="utf-8") as f:
        json.dump(blessing.to_json(), f, indent=2)
    open(os.path.join(output_dir, BLESSED_MARKER if blessing.blessed else NOT_BLESSED_MARKER), "w").close()


def read_blessing(output_dir: str) -> dict:
    with open(os.path.join(output_dir, BLESSING_FILE), encoding="utf-8") as f:
        return json.load(f)
