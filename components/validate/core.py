"""Validate step: check the canonical table and pass it on only when it is usable.

The checks themselves are ``botyard.components.base.data_checks`` (shared with the
pre-flight check of ``botyard run`` and ``botyard submit``); this step writes their report
for the KFP UI and fails the run on any error.
"""

from __future__ import annotations

import shutil

from botyard.components.base.config import ValidationConfig
from botyard.components.base.data_checks import ValidationReport, validate_table
from botyard.components.base.table import read_table


def validate(table_path: str, data_uri: str, config: ValidationConfig, validated_path: str, report_path: str) -> ValidationReport:
    """Write the Markdown report to ``report_path``; raise ``DataValidationError`` on errors, else copy the table on."""
    report = validate_table(read_table(table_path), data_uri, config)
    with open(report_path, "w", encoding="utf-8") as f:
        f.write(report.to_markdown())
    report.raise_for_errors()
    shutil.copyfile(table_path, validated_path)
    return report
