"""Stratified, seeded train/val/test split (or the split the data gives)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from botyard.components.base import contracts as c
from botyard.components.base.config import SplitConfig


def _held_out(n: int, fraction: float) -> int:
    """How many of an intent's ``n`` examples to hold out: at least one when asked for and affordable."""
    if fraction <= 0 or n < 3:
        return 0
    return max(1, int(round(n * fraction)))


def split_table(table: pd.DataFrame, config: SplitConfig | None = None) -> dict[str, pd.DataFrame]:
    """``{"train", "val", "test"}`` tables; the same data and seed always give the same split.

    When every row carries a ``split`` value, that split is used as given.
    """
    config = config or SplitConfig()
    if len(table) and (table[c.SPLIT] != "").all():
        return {name: table[table[c.SPLIT] == name].reset_index(drop=True) for name in c.SPLITS}
    # sort first so the split does not depend on the file's row order
    ordered = table.sort_values([c.INTENT, c.UTTERANCE, c.SOURCE_ROW], kind="stable").reset_index(drop=True)
    rng = np.random.default_rng(config.seed)
    assignment = np.empty(len(ordered), dtype=object)
    for _, idx in ordered.groupby(c.INTENT, sort=True).indices.items():
        idx = rng.permutation(idx)
        n_val = _held_out(len(idx), config.val_fraction)
        n_test = _held_out(len(idx), config.test_fraction)
        assignment[idx[:n_test]] = "test"
        assignment[idx[n_test : n_test + n_val]] = "val"
        assignment[idx[n_test + n_val :]] = "train"
    ordered[c.SPLIT] = assignment
    return {name: ordered[ordered[c.SPLIT] == name].reset_index(drop=True) for name in c.SPLITS}
