"""Sample-bot suite: the shipped sample bot, trained as ``make run`` trains it.

The bot's file is split by the pipeline's own split core (default settings, as ``botyard run``
splits it); both systems train on the train split, the out-of-scope threshold is chosen on
val, and they are scored on the test split (2 deliberately varied utterances an intent) and on
``heldout.csv`` (28 utterances no split ever sees). The bot has no out-of-scope examples, so
the headline figure is intent accuracy (top intent), the figure ``make run`` prints.

Like every intent suite it trains on the rows without their entity spans, so its training time,
size and latency are the intent model's (``make run`` prints the sample bot's entity figures;
``hwu64-entities`` measures the tagger).
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

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
    versus_baseline,
    without_entities,
)

MARGIN = 0.03  # botyard must beat the baseline by 3 points on the test split


def sample_bot_files() -> tuple[str, str]:
    folder = resources.files("botyard.pipelines") / "sample_bot"
    return str(folder / "nlu.yml"), str(folder / "heldout.csv")


def run(context: BenchContext) -> dict:
    data, heldout_file = sample_bot_files()
    parts = split_table(read_training_data(data), SplitConfig())
    heldout = read_training_data(heldout_file)
    train, val, test = (without_entities(parts[name]) for name in ("train", "val", "test"))
    also = {"heldout": heldout}
    systems = {
        LSTM: bench_lstm(context, train, val, val, test, also=also),
        BASELINE: bench_baseline(context, train, val, test, also=also),
    }
    n_test, n_heldout = len(test), len(heldout)
    for figures in systems.values():
        figures["combined_accuracy"] = (figures["accuracy"] * n_test + figures["heldout_accuracy"] * n_heldout) / (n_test + n_heldout)
    return {
        "description": "The shipped sample bot (13 intents, 22 utterances each): its own split and its held-out utterances",
        "protocol": [
            f"split by the pipeline's split core with its defaults: {len(train)} train, {len(val)} val (early stopping, threshold), "
            f"{n_test} test utterances",
            f"scored on the test split and on `pipelines/sample_bot/heldout.csv` ({n_heldout} utterances); no out-of-scope rows, "
            "so the headline figure is intent accuracy (top intent), the figure `make run` prints",
        ],
        "systems": systems,
        "targets": check_targets(
            systems,
            [versus_baseline(systems, "accuracy", MARGIN), versus_baseline(systems, "heldout_accuracy"),
             versus_baseline(systems, "combined_accuracy", MARGIN), *COST_TARGETS],
        ),
    }
