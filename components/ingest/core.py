"""Ingest step: one bot's training file into the canonical table the other steps read.

The formats (CSV, JSON Lines, Rasa ``nlu.yml``) are parsed by
``botyard.components.base.data_formats``; this step writes the table and records what the
data is (its hash: the data version) in the artifact's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

from botyard.components.base import contracts as c
from botyard.components.base.data_formats import read_training_data
from botyard.components.base.table import data_hash, write_table


@dataclass
class IngestResult:
    data_hash: str
    rows: int
    intents: int

    def artifact_metadata(self, data_uri: str) -> dict:
        return {c.META_DATA_HASH: self.data_hash, c.META_ROWS: self.rows, c.META_INTENTS: self.intents, c.META_SOURCE: data_uri}


def ingest(data_uri: str, table_path: str) -> IngestResult:
    """Read ``data_uri`` and write its canonical table (JSON Lines) to ``table_path``."""
    table = read_training_data(data_uri)
    write_table(table, table_path)
    # distinct string intents: a non-string one (a JSON list, say) is validate's to report, not a crash here
    intents = {i for i in table[c.INTENT] if isinstance(i, str)}
    return IngestResult(data_hash(table), len(table), len(intents))
