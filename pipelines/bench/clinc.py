"""CLINC150 suites: one 150-intent model (``clinc150-full``) and ten domain bots (``clinc150-bots``).

Data: ``<data>/clinc150/data_full.json`` and ``domains.json`` (see ``../shared/data/README.md``).
Test rows are scored once and never used to choose anything.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from botyard.components.base import contracts as c
from botyard.components.base.table import make_table
from botyard.pipelines.bench.harness import (
    BASELINE,
    COST_TARGETS,
    LSTM,
    BenchContext,
    bench_baseline,
    bench_lstm,
    check_targets,
    mean_figures,
    require_file,
    versus_baseline,
)

log = logging.getLogger(__name__)

DATA_FILE = "clinc150/data_full.json"
DOMAINS_FILE = "clinc150/domains.json"
TRAIN_WITH_OOS = True  # the 100 ``oos_train`` rows become the models' own ``oos`` intent
# fleet negatives: a domain bot also learns, as ``oos``, this many ``train`` utterances of each
# intent of the other nine domains (the other bots' training data; never val or test rows)
FLEET_NEGATIVES_PER_INTENT = 10
NEGATIVES_SEED = 0

FULL_TARGETS = [
    ("in_scope_accuracy", LSTM, ">=", 0.935),
    ("oos_recall", LSTM, ">=", 0.50),
    ("train_seconds", LSTM, "<=", 134.0, "README's 134 s"),
]
SMALL_TARGETS = [("in_scope_accuracy", LSTM, ">=", 0.915, "MLP on USE embeddings, published")]
IMBALANCED_TARGETS = [("in_scope_accuracy", LSTM, ">=", 0.925, "MLP on USE embeddings, published")]
BOTS_TARGETS = [
    ("in_scope_accuracy", LSTM, ">=", 0.97),
    ("oos_recall", LSTM, ">=", 0.80),
    ("train_seconds", LSTM, "<=", 32.0, "README's 32 s mean"),
]
# the paper's other training conditions: same val and test rows as Full, fewer training rows
CONDITIONS = {
    "full": ("clinc150/data_full.json", "CLINC150 Full: one model over all 150 intents", "`train` (15,000)", FULL_TARGETS),
    "small": ("clinc150/data_small.json", "CLINC150 Small: 50 training utterances an intent", "`train` of data_small.json (7,500)", SMALL_TARGETS),
    "imbalanced": (
        "clinc150/data_imbalanced.json", "CLINC150 Imbalanced: 25, 50, 75 or 100 training utterances an intent",
        "`train` of data_imbalanced.json (10,525)", IMBALANCED_TARGETS,
    ),
}


def load_clinc(data_dir: str, data_file: str = DATA_FILE) -> tuple[dict[str, list], dict[str, list[str]]]:
    """A CLINC150 data file (split -> ``[utterance, intent]`` rows) and ``domains.json`` (domain -> intents)."""
    with open(require_file(Path(data_dir) / data_file), encoding="utf-8") as f:
        data = json.load(f)
    with open(require_file(Path(data_dir) / DOMAINS_FILE), encoding="utf-8") as f:
        domains = json.load(f)
    return data, domains


def rows_table(rows: list, relabel_as: str | None = None) -> pd.DataFrame:
    """A canonical table of ``[utterance, intent]`` rows; ``relabel_as`` replaces every intent."""
    return make_table({c.UTTERANCE: u, c.INTENT: relabel_as or i} for u, i in rows)


def _concat(*tables: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(tables, ignore_index=True)


def run_condition(context: BenchContext, condition: str) -> dict:
    data_file, description, train_rows, targets = CONDITIONS[condition]
    data, _ = load_clinc(context.data_dir, data_file)
    oos = TRAIN_WITH_OOS
    train = rows_table(data["train"] + (data["oos_train"] if oos else []))
    val = rows_table(data["val"] + data["oos_val"])
    test = rows_table(data["test"] + data["oos_test"])
    systems = {
        LSTM: bench_lstm(context, train, val, val, test),
        BASELINE: bench_baseline(context, train, val, test),
    }
    return {
        "description": description,
        "protocol": [
            f"train: {train_rows}{' + `oos_train` (100) as an `oos` intent' if oos else ''}; "
            "early stopping and the out-of-scope threshold on `val` + `oos_val`",
            "scored once on `test` (4,500) + `oos_test` (1,000); an in-scope row predicted out of scope counts as wrong",
            "macro-F1 over the 150 in-scope intents from the top intent; latency is the exported SavedModel signature in-process",
        ],
        "systems": systems,
        "targets": check_targets(systems, [*targets, versus_baseline(systems, "in_scope_accuracy"), *COST_TARGETS]),
    }


def run_full(context: BenchContext) -> dict:
    return run_condition(context, "full")


def run_small(context: BenchContext) -> dict:
    return run_condition(context, "small")


def run_imbalanced(context: BenchContext) -> dict:
    return run_condition(context, "imbalanced")


def bot_tables(data: dict, domains: dict[str, list[str]], domain: str) -> dict[str, pd.DataFrame]:
    """One domain bot's rows: its own intents in scope; other domains and ``oos_*`` out of scope."""
    own = set(domains[domain])

    def split(name: str) -> tuple[list, list]:
        rows = data[name]
        return [r for r in rows if r[1] in own], [r for r in rows if r[1] not in own]

    train_in, train_other = split("train")
    val_in, val_other = split("val")
    test_in, test_other = split("test")
    oos_val = rows_table(data["oos_val"], c.OOS_INTENT)
    negatives = fleet_negatives(train_other, FLEET_NEGATIVES_PER_INTENT)
    return {
        "train": _concat(
            rows_table(train_in), rows_table(negatives, c.OOS_INTENT), rows_table(data["oos_train"] if TRAIN_WITH_OOS else [], c.OOS_INTENT)
        ),
        "val_stop": _concat(rows_table(val_in), oos_val),
        "val_threshold": _concat(rows_table(val_in), rows_table(val_other, c.OOS_INTENT), oos_val),
        "test": _concat(rows_table(test_in), rows_table(test_other, c.OOS_INTENT), rows_table(data["oos_test"], c.OOS_INTENT)),
    }


def fleet_negatives(rows: list, per_intent: int) -> list:
    """A seeded sample of ``per_intent`` rows of every intent in ``rows``."""
    import numpy as np

    by_intent: dict[str, list] = {}
    for row in rows:
        by_intent.setdefault(row[1], []).append(row)
    rng = np.random.default_rng(NEGATIVES_SEED)
    return [
        group[i]
        for _, group in sorted(by_intent.items())
        for i in sorted(rng.choice(len(group), min(per_intent, len(group)), replace=False))
    ]


def run_bots(context: BenchContext) -> dict:
    data, domains = load_clinc(context.data_dir)
    names = sorted(domains)[: context.max_bots or None]
    per_bot: dict[str, dict[str, dict]] = {}
    for i, domain in enumerate(names):
        t = bot_tables(data, domains, domain)
        log.info("clinc150-bots: %s (%d/%d)", domain, i + 1, len(names))
        per_bot[domain] = {
            # latency of one bot is the fleet's: every bot has the same architecture and size
            LSTM: bench_lstm(context, t["train"], t["val_stop"], t["val_threshold"], t["test"], measure_latency=i == 0),
            BASELINE: bench_baseline(context, t["train"], t["val_threshold"], t["test"], measure_latency=i == 0),
        }
    systems = {}
    for system in (LSTM, BASELINE):
        items = [per_bot[d][system] for d in names]
        figures = mean_figures(items)
        figures["max_train_seconds"] = max(item["train_seconds"] for item in items)
        figures.update({k: v for k, v in items[0].items() if k.startswith(("latency_", "batch64_"))})
        systems[system] = figures
    return {
        "description": f"CLINC150 as a fleet of {len(names)} domain bots (15 intents each); figures are means over bots",
        "protocol": [
            "each bot trains on its domain's `train` rows"
            + (" + `oos_train` (100) as an `oos` intent" if TRAIN_WITH_OOS else "")
            + f" + fleet negatives: {FLEET_NEGATIVES_PER_INTENT} `train` utterances of each of the other domains' 135 intents, also as `oos`"
            + "; early stopping on its domain's `val` + `oos_val`",
            "threshold chosen on val only: the domain's `val` rows in scope; the other nine domains' `val` rows and `oos_val` out of scope",
            "scored on the domain's `test` rows (in scope) and the other nine domains' `test` rows + `oos_test` (out of scope)",
            "latency and model size from the first bot (all bots share one architecture)",
        ],
        "systems": systems,
        "per_bot": per_bot,
        "targets": check_targets(systems, [*BOTS_TARGETS, versus_baseline(systems, "in_scope_accuracy"), *COST_TARGETS]),
    }
