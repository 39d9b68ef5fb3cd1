"""KFP interface of the ingest step."""

from typing import NamedTuple

from kfp.dsl import Dataset, Output

from botyard.components.base.kfp_component import botyard_component


@botyard_component
def ingest(data_uri: str, dataset: Output[Dataset]) -> NamedTuple("IngestOutputs", [("data_hash", str), ("rows", int), ("intents", int)]):
    """Read one bot's training data (CSV, JSON Lines or Rasa nlu.yml) into botyard's canonical table.

    Args:
        data_uri: Path or URI (gs://, s3://, ...) of the bot's training file.

    Returns:
        dataset: The canonical table (JSON Lines) with the data hash and counts in its metadata.
        data_hash: Content fingerprint of the data: the data version.
        rows: Number of utterances read.
        intents: Number of distinct intents.
    """
    from collections import namedtuple

    from botyard.components.base import contracts as c
    from botyard.components.ingest.core import read_training_data
    from botyard.components.base.table import data_hash as fingerprint
    from botyard.components.base.table import write_table

    table = read_training_data(data_uri)
    digest = fingerprint(table)
    write_table(table, dataset.path)
    n_intents = int(table[c.INTENT].nunique())
    dataset.metadata.update({c.META_DATA_HASH: digest, c.META_ROWS: len(table), c.META_INTENTS: n_intents, c.META_SOURCE: data_uri})
    return namedtuple("IngestOutputs", ["data_hash", "rows", "intents"])(digest, len(table), n_intents)
