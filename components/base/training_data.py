"""A bot's training data, read, checked and fingerprinted: the one helper for all who need it.

The ingest and validate steps run the same two parts separately (``data_formats`` then
``data_checks``); everything that must judge a bot's data *before* a pipeline runs calls
``load_training_data``: ``botyard run``'s pre-flight check, ``botyard submit``, the fleet's
per-bot data check and the trigger service. So a file that fails here fails the pipeline's
validate step with the same message, and the data hash recorded here is the one a trained
model version records.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from botyard.components.base.config import ValidationConfig
from botyard.components.base.data_checks import ValidationReport, validate_table
from botyard.components.base.data_formats import read_training_data
from botyard.components.base.errors import DataValidationError
from botyard.components.base.table import data_hash

# ``DataValidationError.stage`` of a failure here: the pipeline step that would have failed
READ_STAGE = "ingest"  # the file cannot be read as training data at all
CHECK_STAGE = "validate"  # it was read, but its rows fail the checks


@dataclass
class TrainingData:
    source: str  # the file or URI it was read from
    table: pd.DataFrame  # the canonical table (``botyard.components.base.table``)
    report: ValidationReport
    data_hash: str  # the data version

    @property
    def rows(self) -> int:
        return len(self.table)


def load_training_data(uri: str, validation: ValidationConfig | None = None) -> TrainingData:
    """Read, validate and fingerprint one bot's training file.

    Raises ``DataValidationError`` naming the file and every row at fault when it is unusable;
    its ``stage`` says which step would have failed (``READ_STAGE`` or ``CHECK_STAGE``).
    """
    stage = READ_STAGE
    try:
        table = read_training_data(uri)
        stage = CHECK_STAGE
        report = validate_table(table, uri, validation or ValidationConfig())
        report.raise_for_errors()
    except DataValidationError as exc:
        exc.stage = stage
        raise
    return TrainingData(uri, table, report, data_hash(table))
