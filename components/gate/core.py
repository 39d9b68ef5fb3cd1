"""Promotion gate (like TFX's Evaluator blessing): candidate vs the bot's live version, same test data.

The candidate's figures are read from the evaluate step's artifact (it is scored once, there);
the live (promoted) version is scored here on the same test rows with the same function,
``botyard.components.base.scoring.score``, and its own out-of-scope threshold. Value
thresholds bound the candidate alone; change thresholds bound its loss against the live
version. First run (no live version): only the value thresholds apply. No threshold
configured at all: never blessed, since nothing was checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from botyard.components.base import contracts as c
from botyard.components.base import entities, scoring
from botyard.components.base.config import ConfigBase
from botyard.components.base.errors import ConfigError
from botyard.components.base.model_io import load_version
from botyard.components.base.model_store import ModelStore

# the figures a verdict compares (keys of a version's metrics)
COMPARED = (
    scoring.ACCURACY, scoring.MACRO_F1, scoring.IN_SCOPE_ACCURACY, scoring.OOS_RECALL, scoring.PER_INTENT_RECALL,
    entities.MICRO_F1,  # None for a version without an entity tagger
)


@dataclass(frozen=True)
class GateConfig(ConfigBase):
    min_accuracy: float | None = 0.5  # candidate's test accuracy must reach this
    min_macro_f1: float | None = None  # optional value threshold on macro-F1
    max_accuracy_drop: float | None = 0.02  # at most this much below the live version (absolute)
    max_intent_recall_drop: float | None = 0.34  # any shared intent's recall may fall at most this much
    # (tiny test splits: with 2-3 test utterances an intent, one miss moves recall by 0.33-0.5)
    min_entity_f1: float | None = None  # optional: the candidate's entity micro-F1 must reach this
    max_entity_f1_drop: float | None = 0.1  # entity micro-F1 at most this much below the live version's
    # (entity thresholds apply to a candidate with an entity tagger; a candidate that lost the
    # live version's tagger fails the drop check)

    _ranges = {}

    def __post_init__(self) -> None:
        for name in ("min_accuracy", "min_macro_f1", "max_accuracy_drop", "max_intent_recall_drop", "min_entity_f1",
                     "max_entity_f1_drop"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ConfigError(f"GateConfig.{name} = {value!r} is out of range; allowed: 0 to 1, or unset")

    @classmethod
    def from_parameters_unset_below_zero(cls, **values: float) -> "GateConfig":
        """From pipeline parameters, where a negative value means "unset" (KFP has no optional floats)."""
        return cls(**{k: (None if v is None or v < 0 else v) for k, v in values.items()})

    @property
    def any_threshold(self) -> bool:
        """Whether any intent threshold is set (entity thresholds alone check nothing on most bots)."""
        return any(v is not None for k, v in self.to_dict().items() if "entity" not in k)


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
        def shown(value) -> str:
            return "-" if value is None else f"{value:.3f}"

        for key in ("accuracy", "macro_f1", entities.MICRO_F1):
            if key == entities.MICRO_F1 and self.candidate.get(key) is None and not (self.live or {}).get(key):
                continue  # no entity tagger on either side
            lines.append(f"| {key} | {shown(self.candidate.get(key))} | {shown((self.live or {}).get(key))} |")
        lines += ["", "## Reasons", ""] + [f"- {r}" for r in self.reasons]
        return "\n".join(lines) + "\n"


def figures(metrics: dict, version: str) -> dict:
    """The compared figures of one version, from its metrics (``base.scoring`` keys)."""
    return {**{key: metrics.get(key) for key in COMPARED}, "version": version}


def score_live(store: ModelStore, bot_id: str, version: str, test: pd.DataFrame) -> dict:
    """The live version's figures on ``test``, scored as evaluate scored the candidate."""
    live = load_version(store, bot_id, version)
    probabilities, spans = live.predict_all(test[c.UTTERANCE].tolist())
    scored = scoring.score(probabilities, list(live.labels), live.oos_threshold, test[c.INTENT].to_numpy(dtype=object))
    metrics = dict(scored.metrics)
    if spans is not None:
        metrics[entities.MICRO_F1] = entities.span_scores(list(test[c.ENTITIES]), spans)[entities.MICRO_F1]
    return figures(metrics, version)


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
    entity_f1 = candidate.get(entities.MICRO_F1)
    if config.min_entity_f1 is not None and entity_f1 is not None:
        check(entity_f1 >= config.min_entity_f1, f"entity micro-F1 {entity_f1:.3f} >= minimum {config.min_entity_f1:.3f}")
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
        live_f1 = live.get(entities.MICRO_F1)
        if config.max_entity_f1_drop is not None and live_f1 is not None:
            if entity_f1 is None:
                failures.append(f"FAIL: the live version {live['version']} extracts entities (micro-F1 {live_f1:.3f}); the candidate has no entity tagger")
            else:
                drop = live_f1 - entity_f1
                check(drop <= config.max_entity_f1_drop + 1e-9, f"entity micro-F1 change {-drop:+.3f} vs live {live['version']} (maximum drop {config.max_entity_f1_drop:.3f})")
    return not failures, failures + passes


def run_gate(
    models_root: str, bot_id: str, candidate_version: str, evaluation: dict, test: pd.DataFrame, config: GateConfig
) -> Blessing:
    """Judge the candidate (figures from its ``evaluation.json``) against the live version scored on ``test``."""
    store = ModelStore(models_root)
    candidate = figures(evaluation[c.METRICS], candidate_version)
    live_version = store.current(bot_id)
    live = score_live(store, bot_id, live_version, test) if live_version and live_version != candidate_version else None
    blessed, reasons = judge(candidate, live, config)
    return Blessing(blessed, reasons, candidate, live, config.to_dict())


def gate(
    models_root: str, bot_id: str, version: str, evaluation_dir: str, test_path: str, config: GateConfig,
    blessing_dir: str, report_path: str,
) -> Blessing:
    """The promotion gate step: judge, record the verdict in the model store, then write
    ``blessing.json`` + marker and the Markdown report."""
    from botyard.components.base.artifacts import read_evaluation, write_blessing
    from botyard.components.base.table import read_table

    blessing = run_gate(models_root, bot_id, version, read_evaluation(evaluation_dir), read_table(test_path), config)
    # recorded in the store first, beside the immutable version: it outlives the run's artifacts,
    # and rollback reads it; a crash before this line leaves no verdict and so no deploy
    ModelStore(models_root).record_verdict(bot_id, version, blessing.to_json())
    write_blessing(blessing_dir, blessing.to_json())
    with open(report_path, "w", encoding="utf-8") as f:
        f.write(blessing.to_markdown())
    return blessing
