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

    from botyard.components.ingest.core import ingest as run_ingest

    result = run_ingest(data_uri, dataset.path)
    dataset.metadata.update(result.artifact_metadata(data_uri))
    return namedtuple("IngestOutputs", ["data_hash", "rows", "intents"])(result.data_hash, result.rows, result.intents)
