"""Split: stratified, seeded, and the data's own split wins."""

from __future__ import annotations

from botyard.components.base import contracts as c
from botyard.components.base.config import SplitConfig
from botyard.components.split.core import split_table
from botyard.components.base.table import make_table

from conftest import tiny_rows


def test_split_is_stratified_and_repeatable():
    table = make_table(tiny_rows(per_intent=20))
    parts = split_table(table)
    assert {name: len(df) for name, df in parts.items()} == {"train": 48, "val": 6, "test": 6}
    for name in ("val", "test"):
        assert parts[name][c.INTENT].value_counts().to_dict() == {"greet": 2, "bye": 2, "weather": 2}
    shuffled = table.sample(frac=1.0, random_state=3)
    again = split_table(shuffled)
    for name in c.SPLITS:
        assert sorted(again[name][c.UTTERANCE]) == sorted(parts[name][c.UTTERANCE])
    other_seed = split_table(table, SplitConfig(seed=99))
    assert sorted(other_seed["test"][c.UTTERANCE]) != sorted(parts["test"][c.UTTERANCE])


def test_every_intent_keeps_training_rows_when_small():
    parts = split_table(make_table(tiny_rows(per_intent=5)))
    assert set(parts["train"][c.INTENT]) == {"greet", "bye", "weather"}
    assert all(len(parts[name]) == 3 for name in ("val", "test"))


def test_given_split_is_used_as_is():
    rows = [dict(r, split="test" if n % 4 == 0 else "train") for n, r in enumerate(tiny_rows(per_intent=8))]
    parts = split_table(make_table(rows))
    assert len(parts["test"]) == 6 and len(parts["val"]) == 0 and len(parts["train"]) == 18
