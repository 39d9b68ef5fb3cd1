"""HWU64 suite: fold 1 of the authors' split, 64 intents, no out-of-scope rows.

``train.jsonl`` is read with the pipeline's own ingest core and split into train / val with
its split core (val picks the epoch); ``test.jsonl`` is scored once. Its entity spans are
dropped: this suite measures the intent model (``hwu64-entities`` measures the tagger).
"""

from __future__ import annotations

from pathlib import Path

from botyard.components.base import contracts as c
from botyard.components.base.config import SplitConfig
from botyard.components.base.data_formats import read_training_data
from botyard.components.split.core import split_table
from botyard.pipelines.bench.harness import (
    BASELINE,
    COST_TARGETS,
    LSTM,
    BenchContext,
    bench_baseline,
    bench_lstm,
    check_targets,
    require_file,
    versus_baseline,
    without_entities,
)

TRAIN_FILE = "hwu64/train.jsonl"
TEST_FILE = "hwu64/test.jsonl"
VAL_FRACTION = 0.1
TARGETS = [
    ("accuracy", LSTM, ">=", 0.88),
    ("train_seconds", LSTM, "<=", 62.0, "README's 62 s"),
]


def run(context: BenchContext) -> dict:
    train_all = read_training_data(str(require_file(Path(context.data_dir) / TRAIN_FILE)))
    test = read_training_data(str(require_file(Path(context.data_dir) / TEST_FILE)))
    # the files carry no ``split`` field: the split core makes a seeded, stratified val split
    train_all[c.SPLIT] = ""
    parts = split_table(train_all, SplitConfig(val_fraction=VAL_FRACTION, test_fraction=0.0))
    train, val = without_entities(parts["train"]), parts["val"]
    systems = {
        LSTM: bench_lstm(context, train, val, val, test),
        BASELINE: bench_baseline(context, train, val, test),
    }
    for figures in systems.values():  # no out-of-scope rows: these figures say nothing here
        for key in ("in_scope_accuracy", "oos_recall", "oos_threshold"):
            figures.pop(key, None)
    return {
        "description": "HWU64 fold 1: 64 intents",
        "protocol": [
            f"train: `train.jsonl` less a stratified {VAL_FRACTION:.0%} val split (botyard.components.split.core, seed 13) "
            f"= {len(train):,} rows; val {len(val):,} rows for early stopping",
            f"scored once on `test.jsonl` ({len(test):,} rows): intent accuracy and macro-F1 from the top intent",
        ],
        "systems": systems,
        "targets": check_targets(systems, [*TARGETS, versus_baseline(systems, "accuracy"), *COST_TARGETS]),
    }
