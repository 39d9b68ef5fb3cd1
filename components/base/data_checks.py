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

import math
import numbers
import re
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from botyard.components.base import contracts as c
from botyard.components.base.config import ValidationConfig
from botyard.components.base.errors import ConfigError, DataValidationError
from botyard.components.base.table import intent_counts
from botyard.components.base.tokenizer import tokenize

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


_EXAMPLE = {"text": "hi there", "intent": "greet", "split": "train"}  # shown in the fix for a non-string field


def _json_kind(value) -> str:
    """The JSON type of a non-string value as the user who wrote the file would call it, with its article."""
    if isinstance(value, (bool, np.bool_)):
        return "a boolean"
    if isinstance(value, numbers.Number):
        return "a number"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _is_missing(value) -> bool:
    # pandas stores a None among numbers as NaN; a JSON NaN never gets this far (``data_formats`` refuses it)
    return value is None or (isinstance(value, float) and math.isnan(value))


def _check_fields(table: pd.DataFrame, report: ValidationReport) -> pd.DataFrame:
    """Missing, non-string or empty text/intent/split; returns the rows usable for the other checks."""
    missing: dict[str, list[int]] = defaultdict(list)  # field -> rows
    wrong_type: dict[tuple[str, str], list[int]] = defaultdict(list)  # (field, JSON type) -> rows
    empty: list[int] = []
    usable = []
    for utterance, intent, split, row in zip(table[c.UTTERANCE], table[c.INTENT], table[c.SPLIT], table[c.SOURCE_ROW]):
        ok = True
        for field, value in (("text", utterance), ("intent", intent), ("split", split)):
            if _is_missing(value) or (field == "intent" and isinstance(value, str) and not value.strip()):
                if field != "split":  # no split means "not given"
                    missing[field].append(row)
                    ok = False
            elif not isinstance(value, str):
                wrong_type[(field, _json_kind(value))].append(row)
                ok = False
        if isinstance(utterance, str) and not utterance.strip():
            empty.append(row)
            ok = False
        usable.append(ok)
    for field, rows in missing.items():
        report.errors.append(f"missing '{field}' in {_rows(rows)}")
    for (field, kind), rows in sorted(wrong_type.items()):
        report.errors.append(
            f"'{field}' is {kind}, not a string, in {_rows(rows)}; write it as a JSON string, e.g. \"{field}\": \"{_EXAMPLE[field]}\""
        )
    if empty:
        report.errors.append(f"empty utterance in {_rows(empty)}")
    return table.loc[np.array(usable, dtype=bool)]


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


def _conflicts(table: pd.DataFrame) -> list[tuple[str, list[str], list[tuple[str, int]]]]:
    """``(normalised utterance, its intents sorted, its (intent, row) pairs)`` for every utterance with several intents."""
    by_text: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for utterance, intent, row in zip(table[c.UTTERANCE], table[c.INTENT], table[c.SOURCE_ROW]):
        by_text[normalise(utterance)].append((intent, row))
    found = []
    for text, labelled in by_text.items():
        intents = sorted({intent for intent, _ in labelled})
        if len(intents) > 1:
            found.append((text, intents, labelled))
    return found


def _check_conflicts_and_duplicates(table: pd.DataFrame, config: ValidationConfig, report: ValidationReport) -> pd.DataFrame:
    """Label conflicts (by ``config.on_label_conflict``) and exact duplicates; returns the rows kept."""
    exact: dict[tuple[str, str], list[int]] = defaultdict(list)
    for utterance, intent, row in zip(table[c.UTTERANCE], table[c.INTENT], table[c.SOURCE_ROW]):
        exact[(utterance, intent)].append(row)
    split_of = dict(zip(table[c.SOURCE_ROW], table[c.SPLIT]))
    report.on_label_conflict = config.on_label_conflict
    for text, intents, labelled in _conflicts(table):
        where = "; ".join(f"'{i}' ({_rows([r for j, r in labelled if j == i])})" for i in intents)
        if config.on_label_conflict == "fail":
            report.errors.append(
                f"utterance '{text}' is labelled with different intents: {where}; keep one label "
                "(or run with on_label_conflict=warn or drop)"
            )
            continue
        line = f"'{text}': {where}"
        if config.on_label_conflict == "drop":
            dropped = sorted(r for _, r in labelled if split_of[r] != "test")
            kept = sorted(r for _, r in labelled if split_of[r] == "test")
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


def _check_entities(table: pd.DataFrame, config: ValidationConfig, report: ValidationReport) -> None:
    per_type: dict[str, list[int]] = defaultdict(list)
    for utterance, entities, row in zip(table[c.UTTERANCE], table[c.ENTITIES], table[c.SOURCE_ROW]):
        spans = []
        for e in entities:
            start, end, value = e.get("start"), e.get("end"), e.get("value")
            if type(start) is not int or type(end) is not int or not e.get("entity") or not isinstance(e.get("entity"), str):
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
            else:
                spans.append((start, end, e["entity"]))
                per_type[e["entity"]].append(row)
        spans.sort()
        for (s1, e1, n1), (s2, e2, n2) in zip(spans, spans[1:]):
            if s2 < e1:
                report.errors.append(
                    f"row {row}: entity spans overlap: '{n1}' [{s1}, {e1}) '{utterance[s1:e1]}' and "
                    f"'{n2}' [{s2}, {e2}) '{utterance[s2:e2]}'; an utterance's entities must not overlap"
                )
    for name in sorted(per_type):
        rows = per_type[name]
        if len(rows) < config.min_examples_per_entity:
            report.warnings.append(
                f"entity '{name}' has only {len(rows)} annotated example(s), minimum is {config.min_examples_per_entity} "
                f"({_rows(rows)}); add examples or the tagger will rarely find it"
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
    _check_entities(usable, config, report)
    if not report.errors:
        _check_unmarked_values(usable, report)
    _check_splits(usable, report)
    return report


UNMARKED_NAMED = 3  # values named in the validation warning; the table lists them all


def _check_unmarked_values(table: pd.DataFrame, report: ValidationReport) -> None:
    """One warning when entity values are marked in some utterances and left plain in others."""
    if not any(len(e) for e in table[c.ENTITIES]):
        return
    found = unmarked_entity_values(table, limit=None)
    if found.empty:
        return
    named = "; ".join(
        f"'{v.value}' ({v.entity}, marked {v.marked}x, unmarked in {_rows(v.rows, 5)})"
        for v in found.head(UNMARKED_NAMED).itertuples()
    )
    more = f"; and {len(found) - UNMARKED_NAMED} more value(s)" if len(found) > UNMARKED_NAMED else ""
    report.warnings.append(
        f"{len(found)} entity value(s) marked in some utterances are left unmarked in {int(found['unmarked'].sum())} "
        f"other place(s): {named}{more}; the tagger learns from both, so mark each where it is meant "
        "(data_checks.unmarked_entity_values, shown in notebook 1, lists them all)"
    )


# --- tables a person can act on (explore notebook); neither fails a run -----------------------

CONFLICT_COLUMNS = ("utterance", "intents", "rows")
NEAR_DUPLICATE_COLUMNS = ("similarity", "utterance_a", "intent_a", "row_a", "utterance_b", "intent_b", "row_b")
NEAR_DUPLICATE_NGRAMS = (3, 5)  # character n-gram lengths compared (within word boundaries)
NEAR_DUPLICATE_CHUNK = 512  # rows compared against all others at a time (bounds memory on large bots)


def _usable(table: pd.DataFrame) -> pd.DataFrame:
    """The rows validation checks beyond the fields: a non-empty utterance and an intent."""
    return _check_fields(table, ValidationReport(source="", intent_counts={}))


def label_conflicts(table: pd.DataFrame) -> pd.DataFrame:
    """One row per utterance (case/whitespace-normalised) labelled with different intents.

    The same rule as validation's conflicting-labels error: columns ``utterance`` (normalised),
    ``intents`` (sorted) and ``rows`` (the source rows, each as ``(intent, row)``).
    """
    rows = [
        {"utterance": text, "intents": intents, "rows": sorted(labelled, key=lambda pair: pair[1])}
        for text, intents, labelled in _conflicts(_usable(table))
    ]
    return pd.DataFrame(rows, columns=list(CONFLICT_COLUMNS))


def near_duplicates(table: pd.DataFrame, min_similarity: float = 0.8, limit: int | None = 200) -> pd.DataFrame:
    """Pairs of utterances of *different* intents whose wording is nearly the same.

    Similarity is the cosine of the two utterances' TF-IDF vectors of character 3-5-grams
    (within word boundaries, case-folded): 1.0 for the same words, about 0.8 for one word
    changed in a short sentence. Utterances that are equal once normalised are left out:
    ``label_conflicts`` lists those. Columns ``NEAR_DUPLICATE_COLUMNS``, most similar first,
    at most ``limit`` pairs (``None``: all); ``row_a`` / ``row_b`` are source rows.
    """
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not 0.0 < min_similarity <= 1.0:
        raise ConfigError(f"min_similarity = {min_similarity!r} is out of range; allowed: above 0 to 1")
    usable = _usable(table)
    texts = [normalise(str(u)) for u in usable[c.UTTERANCE]]
    intents = usable[c.INTENT].astype(str).to_numpy()
    rows = usable[c.SOURCE_ROW].to_numpy()
    originals = usable[c.UTTERANCE].astype(str).to_numpy()
    found: list[tuple] = []
    if len(set(intents)) > 1:
        vectors = TfidfVectorizer(analyzer="char_wb", ngram_range=NEAR_DUPLICATE_NGRAMS).fit_transform(texts)
        normalised = np.asarray(texts, dtype=object)
        for start in range(0, len(texts), NEAR_DUPLICATE_CHUNK):
            block = (vectors[start : start + NEAR_DUPLICATE_CHUNK] @ vectors.T).toarray()
            for offset, similarities in enumerate(block):
                i = start + offset
                # each pair once (j > i), across intents, not an exact conflict
                candidates = np.flatnonzero(similarities >= min_similarity - 1e-9)
                for j in candidates[candidates > i]:
                    if intents[i] != intents[j] and normalised[i] != normalised[j]:
                        found.append((round(float(similarities[j]), 3), originals[i], intents[i], int(rows[i]),
                                      originals[j], intents[j], int(rows[j])))
    found.sort(key=lambda pair: (-pair[0], pair[3], pair[6]))
    return pd.DataFrame(found[:limit] if limit is not None else found, columns=list(NEAR_DUPLICATE_COLUMNS))


UNMARKED_COLUMNS = ("value", "entity", "marked", "unmarked", "rows", "example")
UNMARKED_MAX_TOKENS = 6  # longest value (in tokens) looked for unmarked


def unmarked_entity_values(table: pd.DataFrame, min_marked: int = 2, min_marked_share: float = 0.5,
                           limit: int | None = 200) -> pd.DataFrame:
    """Entity values marked in some utterances and left unmarked in others.

    A value marked as an entity in at least ``min_marked`` utterances (case-folded, as whole
    tokens) that also appears, as whole tokens and covered by no span, in other utterances is
    an annotation the tagger learns both ways: "set the [den](house_place) light" beside "turn
    off the den light". Only values marked in at least ``min_marked_share`` of the utterances
    they appear in are listed: a word marked now and then ("start" as a player setting) is
    usually one whose context decides, not a forgotten mark. Columns ``UNMARKED_COLUMNS``: the
    value as first marked, the entity type it is marked as most often, how many times it is
    marked and left unmarked, the source rows where it is unmarked (all of them) and one such
    utterance; most unmarked first, at most ``limit`` values (``None``: all). Mark those rows
    (or unmark the value everywhere), then retrain. ``validate_table`` warns with the first few.
    """
    if min_marked < 1:
        raise ConfigError(f"min_marked = {min_marked!r} is out of range; allowed: 1 or more")
    if not 0.0 <= min_marked_share <= 1.0:
        raise ConfigError(f"min_marked_share = {min_marked_share!r} is out of range; allowed: 0 to 1")
    usable = _usable(table)
    rows = []  # (tokens, covered token mask, source row, utterance)
    marked: dict[tuple[str, ...], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    written: dict[tuple[str, ...], str] = {}  # a value's case-folded tokens -> its first marked text
    for utterance, entities, row in zip(usable[c.UTTERANCE], usable[c.ENTITIES], usable[c.SOURCE_ROW]):
        text = str(utterance)
        tokens = tokenize(text)
        covered = [False] * len(tokens)
        for span in entities or []:
            start, end = span.get("start"), span.get("end")
            if type(start) is not int or type(end) is not int or not isinstance(span.get("entity"), str):
                continue  # validation names malformed spans
            inside = [i for i, t in enumerate(tokens) if t.start < end and start < t.end]
            for i in inside:
                covered[i] = True
            if inside and tokens[inside[0]].start == start and tokens[inside[-1]].end == end and len(inside) <= UNMARKED_MAX_TOKENS:
                key = tuple(tokens[i].text.casefold() for i in inside)
                marked[key][span["entity"]] += 1
                written.setdefault(key, text[start:end])
        rows.append(([t.text.casefold() for t in tokens], covered, int(row), text))
    unmarked: dict[tuple[str, ...], list[tuple[int, str]]] = defaultdict(list)
    for words, covered, row, text in rows:
        seen_here = set()
        for n in range(1, UNMARKED_MAX_TOKENS + 1):
            for i in range(len(words) - n + 1):
                value = tuple(words[i : i + n])
                if value in marked and value not in seen_here and not any(covered[i : i + n]):
                    seen_here.add(value)
                    unmarked[value].append((row, text))
    found = []
    for value, where in unmarked.items():
        types = marked[value]
        count = sum(types.values())
        if count >= min_marked and count >= min_marked_share * (count + len(where)):
            entity = max(sorted(types), key=types.get)
            found.append((written[value], entity, count, len(where), [r for r, _ in where], where[0][1]))
    found.sort(key=lambda f: (-f[3], -f[2], f[0]))
    return pd.DataFrame(found[:limit] if limit is not None else found, columns=list(UNMARKED_COLUMNS))
