"""Check a bot's canonical training table before any training time is spent on it.

Errors fail the run with one message that names the file and every row / intent at fault;
warnings (imbalance, exact duplicates) are reported but do not fail.

An utterance labelled with different intents (after case and whitespace normalisation) is
handled by ``ValidationConfig.on_label_conflict``: ``fail`` makes it an error, ``warn`` keeps
every row and lists the conflict, ``drop`` removes the conflicting rows from train and
validation (a row whose given split is ``test`` stays: test data is scored as given) and
lists what was dropped; ``ValidationReport.kept`` applies it to the table.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

import pandas as pd

from botyard.components.base import contracts as c
from botyard.components.base.config import ValidationConfig
from botyard.components.base.errors import DataValidationError
from botyard.components.base.table import intent_counts

MAX_LISTED = 10  # rows named per problem before "and N more"


@dataclass
class ValidationReport:
    source: str
    intent_counts: dict[str, int]
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # one line per conflicting utterance (warn / drop)
    dropped_rows: list[int] = field(default_factory=list)  # source rows removed by ``on_label_conflict=drop``
    on_label_conflict: str = "fail"

    @property
    def ok(self) -> bool:
        return not self.errors

    def kept(self, table: pd.DataFrame) -> pd.DataFrame:
        """``table`` without the rows the label-conflict policy dropped."""
        if not self.dropped_rows:
            return table
        return table[~table[c.SOURCE_ROW].isin(self.dropped_rows)].reset_index(drop=True)

    def conflict_summary(self) -> list[str]:
        """What the run's output says about label conflicts (empty when there were none or they failed it)."""
        if not self.conflicts:
            return []
        if self.on_label_conflict == "drop":
            head = (f"dropped {len(self.dropped_rows)} train/val row(s) of {len(self.conflicts)} utterance(s) "
                    "labelled with different intents (on_label_conflict=drop):")
        else:
            head = f"kept {len(self.conflicts)} utterance(s) labelled with different intents (on_label_conflict=warn):"
        return [head] + [f"  - {line}" for line in self.conflicts]

    def to_markdown(self) -> str:
        status = "passed" if self.ok else "FAILED"
        lines = [f"# Training data validation: {status}", "", f"Source: `{self.source}`", ""]
        lines += [f"{sum(self.intent_counts.values())} utterances, {len(self.intent_counts)} intents.", ""]
        for title, items in (("Errors", self.errors), ("Warnings", self.warnings)):
            if items:
                lines += [f"## {title}", ""] + [f"- {item}" for item in items] + [""]
        if self.conflicts:
            if self.on_label_conflict == "drop":
                lines += ["## Label conflicts: rows dropped", "",
                          f"{len(self.dropped_rows)} train/val row(s) removed ({_rows(self.dropped_rows, limit=None)}); "
                          "test rows are kept as given.", ""]
            else:
                lines += ["## Label conflicts: rows kept", ""]
            lines += [f"- {item}" for item in self.conflicts] + [""]
        lines += ["## Utterances per intent", "", "| intent | utterances |", "| --- | ---: |"]
        lines += [f"| {intent} | {n} |" for intent, n in self.intent_counts.items()]
        return "\n".join(lines) + "\n"

    def raise_for_errors(self) -> None:
        if self.errors:
            head = f"{self.source}: training data is invalid ({len(self.errors)} problem(s)):"
            raise DataValidationError("\n  - ".join([head, *self.errors]), source=self.source, problems=self.errors)


def _rows(rows: list[int], limit: int | None = MAX_LISTED) -> str:
    rows = sorted(rows)
    limit = limit or len(rows)
    shown = ", ".join(str(r) for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def normalise(utterance: str) -> str:
    return re.sub(r"\s+", " ", utterance).strip().casefold()


def _check_fields(table: pd.DataFrame, report: ValidationReport) -> pd.DataFrame:
    """Missing text/intent and empty utterances; returns the rows usable for the other checks."""
    missing_text = table[c.UTTERANCE].isna()
    missing_intent = table[c.INTENT].isna() | (table[c.INTENT].astype(str).str.strip() == "")
    empty = ~missing_text & (table[c.UTTERANCE].fillna("").astype(str).str.strip() == "")
    for mask, what in ((missing_text, "missing 'text'"), (missing_intent, "missing 'intent'"), (empty, "empty utterance")):
        if mask.any():
            report.errors.append(f"{what} in {_rows(table.loc[mask, c.SOURCE_ROW].tolist())}")
    return table[~(missing_text | missing_intent | empty)]


def _check_intents(table: pd.DataFrame, config: ValidationConfig, report: ValidationReport) -> None:
    counts = intent_counts(table)
    in_scope = [i for i in counts if i != c.OOS_INTENT]
    if len(in_scope) < config.min_intents:
        report.errors.append(
            f"found {len(in_scope)} intent(s) {in_scope}; a bot needs at least {config.min_intents} intents to classify"
        )
    for intent, n in counts.items():
        if n < config.min_examples_per_intent:
            rows = table.loc[table[c.INTENT] == intent, c.SOURCE_ROW].tolist()
            report.errors.append(
                f"intent '{intent}' has only {n} training example(s), minimum is {config.min_examples_per_intent} "
                f"({_rows(rows)}); add examples or lower min_examples_per_intent"
            )
    if len(counts) >= 2:
        largest, smallest = max(counts.values()), min(counts.values())
        if smallest and largest / smallest > config.imbalance_warn_ratio:
            big = max(counts, key=counts.get)
            small = min(counts, key=counts.get)
            report.warnings.append(
                f"heavy class imbalance: '{big}' has {largest} examples, '{small}' has {smallest} "
                f"(ratio {largest / smallest:.1f} > {config.imbalance_warn_ratio:g})"
            )


def _check_conflicts_and_duplicates(table: pd.DataFrame, config: ValidationConfig, report: ValidationReport) -> pd.DataFrame:
    """Label conflicts (by ``config.on_label_conflict``) and exact duplicates; returns the rows kept."""
    by_text: dict[str, list[tuple[str, int, str]]] = defaultdict(list)
    exact: dict[tuple[str, str], list[int]] = defaultdict(list)
    for utterance, intent, row, split in zip(table[c.UTTERANCE], table[c.INTENT], table[c.SOURCE_ROW], table[c.SPLIT]):
        by_text[normalise(utterance)].append((intent, row, split))
        exact[(utterance, intent)].append(row)
    report.on_label_conflict = config.on_label_conflict
    for text, labelled in by_text.items():
        intents = sorted({intent for intent, _, _ in labelled})
        if len(intents) < 2:
            continue
        where = "; ".join(f"'{i}' ({_rows([r for j, r, _ in labelled if j == i])})" for i in intents)
        if config.on_label_conflict == "fail":
            report.errors.append(
                f"utterance '{text}' is labelled with different intents: {where}; keep one label "
                "(or run with on_label_conflict=warn or drop)"
            )
            continue
        line = f"'{text}': {where}"
        if config.on_label_conflict == "drop":
            dropped = sorted(r for _, r, split in labelled if split != "test")
            kept = sorted(r for _, r, split in labelled if split == "test")
            report.dropped_rows.extend(dropped)
            line += f"; dropped {_rows(dropped)}" if dropped else ""
            line += f"; kept test {_rows(kept)}" if kept else ""
        report.conflicts.append(line)
    report.dropped_rows.sort()
    dupes = [rows for rows in exact.values() if len(rows) > 1]
    if dupes:
        report.warnings.append(
            f"{sum(len(r) - 1 for r in dupes)} exact duplicate utterance(s), e.g. {_rows(dupes[0])}; duplicates weigh more in training"
        )
    return report.kept(table)


def _check_entities(table: pd.DataFrame, report: ValidationReport) -> None:
    for utterance, entities, row in zip(table[c.UTTERANCE], table[c.ENTITIES], table[c.SOURCE_ROW]):
        for e in entities:
            start, end, value = e.get("start"), e.get("end"), e.get("value")
            if not isinstance(start, int) or not isinstance(end, int) or not e.get("entity"):
                report.errors.append(f"row {row}: entity {e} needs integer 'start', 'end' and an 'entity' name")
            elif not 0 <= start < end <= len(utterance):
                report.errors.append(
                    f"row {row}: entity '{e.get('entity')}' span [{start}, {end}) lies outside the text "
                    f"(length {len(utterance)})"
                )
            elif value is not None and utterance[start:end] != value:
                report.errors.append(
                    f"row {row}: entity '{e.get('entity')}' span [{start}, {end}) is '{utterance[start:end]}' "
                    f"but its value is '{value}'"
                )


def _check_splits(table: pd.DataFrame, report: ValidationReport) -> None:
    given = table[c.SPLIT] != ""
    if not given.any():
        return
    bad = given & ~table[c.SPLIT].isin(c.SPLITS)
    if bad.any():
        report.errors.append(f"unknown split value(s) {sorted(set(table.loc[bad, c.SPLIT]))} in {_rows(table.loc[bad, c.SOURCE_ROW].tolist())}; use {list(c.SPLITS)}")
    if not given.all():
        report.errors.append(f"'split' is given for some rows but not for {_rows(table.loc[~given, c.SOURCE_ROW].tolist())}; give it for all rows or none")
    elif not (table[c.SPLIT] == "train").any():
        report.errors.append("'split' is given but no row is in 'train'")


def validate_table(table: pd.DataFrame, source: str, config: ValidationConfig | None = None) -> ValidationReport:
    """Every problem in the table, as a report; call ``raise_for_errors`` to fail on errors."""
    config = config or ValidationConfig()
    report = ValidationReport(source=source, intent_counts={})
    usable = _check_fields(table, report)
    # conflicts first: with ``drop``, the other checks judge the rows that will be trained on
    usable = _check_conflicts_and_duplicates(usable, config, report)
    report.intent_counts = intent_counts(usable) if len(usable) else {}
    _check_intents(usable, config, report)
    _check_entities(usable, report)
    _check_splits(usable, report)
    return report
