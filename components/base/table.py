"""The canonical training table: one row per utterance, shared by every step.

Columns are ``contracts.CANONICAL_COLUMNS``; a table travels between steps as JSON Lines
so entity spans survive unchanged.
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterable

import pandas as pd

from botyard.components.base import contracts as c
from botyard.components.base.storage import open_uri


def make_table(rows: Iterable[dict]) -> pd.DataFrame:
    """A canonical table from dict rows; absent columns get their empty value."""
    records = []
    for row in rows:
        records.append(
            {
                c.UTTERANCE: row.get(c.UTTERANCE),
                c.INTENT: row.get(c.INTENT),
                c.ENTITIES: list(row.get(c.ENTITIES) or []),
                c.SPLIT: row.get(c.SPLIT) or "",
                c.SOURCE_ROW: int(row.get(c.SOURCE_ROW) or 0),
            }
        )
    return pd.DataFrame.from_records(records, columns=list(c.CANONICAL_COLUMNS))


def write_table(table: pd.DataFrame, uri: str) -> None:
    with open_uri(uri, "w") as f:
        for row in table.to_dict(orient="records"):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_table(uri: str) -> pd.DataFrame:
    with open_uri(uri, "r") as f:
        return make_table(json.loads(line) for line in f if line.strip())


def _span_order(entity: dict) -> tuple:
    # ingest hashes the table before validation, so a span may lack its integer start/end yet
    if type(entity.get("start")) is int and type(entity.get("end")) is int:
        return (0, entity["start"], entity["end"], "")
    return (1, 0, 0, json.dumps(entity, sort_keys=True, ensure_ascii=False, default=str))


def data_hash(table: pd.DataFrame) -> str:
    """Content fingerprint (sha256) of the utterances, intents, spans and splits.

    Independent of file format and row order, so the same data always gets the same data version.
    """
    lines = sorted(
        json.dumps(
            [row[c.UTTERANCE], row[c.INTENT], sorted(row[c.ENTITIES], key=_span_order), row[c.SPLIT]],
            ensure_ascii=False,
            sort_keys=True,
        )
        for row in table.to_dict(orient="records")
    )
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def intent_counts(table: pd.DataFrame) -> dict[str, int]:
    """Examples per intent, sorted by intent name."""
    counts = table[c.INTENT].value_counts()
    return {str(k): int(counts[k]) for k in sorted(counts.index)}


ENTITY_SUMMARY_COLUMNS = ("entity", "mentions", "utterances", "distinct_values", "example_values", "intents")


def entity_summary(table: pd.DataFrame, examples: int = 5) -> pd.DataFrame:
    """One row per entity type annotated in the table, most mentioned first.

    ``mentions``: spans of that type; ``utterances``: rows with at least one; ``distinct_values``:
    different span values (case-folded); ``example_values``: the ``examples`` most frequent
    values; ``intents``: the intents whose utterances carry it, sorted. Empty (with these
    columns) when the bot has no entity annotations.
    """
    from collections import Counter, defaultdict

    mentions: Counter = Counter()
    rows: dict[str, set[int]] = defaultdict(set)
    values: dict[str, Counter] = defaultdict(Counter)
    intents: dict[str, set[str]] = defaultdict(set)
    for position, (entities, intent) in enumerate(zip(table[c.ENTITIES], table[c.INTENT])):
        for span in entities or []:
            name = span.get("entity")
            if not name:
                continue
            mentions[name] += 1
            rows[name].add(position)
            value = span.get("value")
            if value is not None:
                values[name][str(value).casefold()] += 1
            if intent is not None:
                intents[name].add(str(intent))
    records = [
        {
            "entity": name,
            "mentions": n,
            "utterances": len(rows[name]),
            "distinct_values": len(values[name]),
            "example_values": [v for v, _ in values[name].most_common(examples)],
            "intents": sorted(intents[name]),
        }
        for name, n in sorted(mentions.items(), key=lambda item: (-item[1], item[0]))
    ]
    return pd.DataFrame(records, columns=list(ENTITY_SUMMARY_COLUMNS))
