"""Validate step: check the canonical table and pass it on only when it is usable.

The checks themselves are ``botyard.components.base.data_checks`` (shared with the
pre-flight check of ``botyard run`` and ``botyard submit``); this step writes their report
for the KFP UI and fails the run on any error. Rows the label-conflict policy drops
(``on_label_conflict=drop``) are left out of the table it passes on, and listed in the report.
"""

from __future__ import annotations

from botyard.components.base.config import ValidationConfig
from botyard.components.base.data_checks import ValidationReport, validate_table
from botyard.components.base.table import read_table, write_table


def validate(table_path: str, data_uri: str, config: ValidationConfig, validated_path: str, report_path: str) -> ValidationReport:
    """Write the Markdown report to ``report_path``; raise ``DataValidationError`` on errors, else
    write the table to train on (less any rows dropped for label conflicts) to ``validated_path``."""
    table = read_table(table_path)
    report = validate_table(table, data_uri, config)
    with open(report_path, "w", encoding="utf-8") as f:
        f.write(report.to_markdown())
    report.raise_for_errors()
    write_table(report.kept(table), validated_path)
    for line in report.conflict_summary():  # the step's log, beside the report
        print(f"validate: {line}")
    return report
