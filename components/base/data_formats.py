"""Read one bot's training data (CSV, JSON Lines or Rasa ``nlu.yml``) into the canonical table.

File-level problems (unreadable, not UTF-8, unknown format, required columns absent) raise
``DataValidationError`` here; row-level problems are left in the table for ``validate``
to report all at once (``botyard.components.base.data_checks``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re

import pandas as pd
import yaml

from botyard.components.base import contracts as c
from botyard.components.base.errors import DataValidationError
from botyard.components.base.storage import open_uri
from botyard.components.base.table import make_table

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".yml": "rasa", ".yaml": "rasa"}
TEXT_FIELD = "text"  # the utterance field's name in CSV and JSONL files
INTENT_FIELD = "intent"


def read_bytes(uri: str) -> bytes:
    try:
        with open_uri(uri, "rb") as f:
            return f.read()
    except (OSError, Exception) as exc:  # tf.errors.* are not OSErrors
        if isinstance(exc, DataValidationError):
            raise
        raise DataValidationError(f"{uri}: cannot read the file ({type(exc).__name__}: {exc})", source=uri) from exc


def decode_utf8(raw: bytes, uri: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataValidationError(
            f"{uri}: line {line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8",
            source=uri,
        ) from exc


def detect_format(uri: str) -> str:
    ext = os.path.splitext(uri.split("?")[0])[1].lower()
    if ext not in FORMATS:
        raise DataValidationError(
            f"{uri}: unknown training data format {ext or '(no extension)'!r}; use one of {sorted(FORMATS)}", source=uri
        )
    return FORMATS[ext]


def parse_csv(text: str, uri: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip() for f in (reader.fieldnames or [])]
    missing = [f for f in (TEXT_FIELD, INTENT_FIELD) if f not in fields]
    if missing:
        raise DataValidationError(
            f"{uri}: missing column(s) {missing} in the header (found {fields}); "
            f"a CSV needs a header row with '{TEXT_FIELD}' and '{INTENT_FIELD}'",
            source=uri,
        )
    rows = []
    for i, raw in enumerate(reader, start=2):  # row 1 is the header
        row = {k.strip(): v for k, v in raw.items() if k is not None}
        rows.append(
            {
                c.UTTERANCE: row.get(TEXT_FIELD),
                c.INTENT: (row.get(INTENT_FIELD) or "").strip() or None,
                c.SPLIT: (row.get(c.SPLIT) or "").strip(),
                c.SOURCE_ROW: i,
            }
        )
    return rows


def parse_jsonl(text: str, uri: str) -> list[dict]:
    rows = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataValidationError(f"{uri}: line {i}: not valid JSON ({exc.msg})", source=uri) from exc
        if not isinstance(obj, dict):
            raise DataValidationError(f"{uri}: line {i}: expected a JSON object, got {type(obj).__name__}", source=uri)
        entities = obj.get("entities") or []
        if not isinstance(entities, list) or not all(isinstance(e, dict) for e in entities):
            raise DataValidationError(f"{uri}: line {i}: 'entities' must be a list of objects", source=uri)
        rows.append(
            {
                c.UTTERANCE: obj.get(TEXT_FIELD),
                c.INTENT: obj.get(INTENT_FIELD),
                c.ENTITIES: entities,
                c.SPLIT: obj.get(c.SPLIT) or "",
                c.SOURCE_ROW: i,
            }
        )
    return rows


# [value](entity) or [value](entity:synonym) or [value]{"entity": "name", ...}
_ANNOTATION = re.compile(r"\[(?P<value>[^\]]+)\](?:\((?P<entity>[^)]+)\)|(?P<json>\{[^}]*\}))")


def parse_annotated(example: str) -> tuple[str, list[dict]]:
    """Strip Rasa entity markup from one example; return the plain text and its spans."""
    text, entities, pos = [], [], 0
    offset = 0
    for m in _ANNOTATION.finditer(example):
        text.append(example[pos : m.start()])
        offset += m.start() - pos
        value = m.group("value")
        if m.group("json"):
            entity = json.loads(m.group("json")).get("entity")
        else:
            entity = m.group("entity").split(":", 1)[0]
        entities.append({"start": offset, "end": offset + len(value), "value": value, "entity": entity})
        text.append(value)
        offset += len(value)
        pos = m.end()
    text.append(example[pos:])
    return "".join(text), entities


def parse_rasa(text: str, uri: str) -> list[dict]:
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise DataValidationError(f"{uri}: {where}not valid YAML ({getattr(exc, 'problem', exc)})", source=uri) from exc
    doc = yaml.safe_load(text) or {}
    if not isinstance(doc, dict) or not isinstance(doc.get("nlu"), list):
        raise DataValidationError(f"{uri}: a Rasa training file needs a top-level 'nlu:' list", source=uri)
    nlu_node = next(v for k, v in root.value if k.value == "nlu")
    rows = []
    for item, node in zip(doc["nlu"], nlu_node.value):
        if not isinstance(item, dict) or "intent" not in item:
            continue  # synonyms, regexes and lookup tables carry no utterances
        line0 = node.start_mark.line + 1
        examples_node = next((v for k, v in node.value if k.value == "examples"), None)
        if examples_node is None or not isinstance(item.get("examples"), str):
            raise DataValidationError(
                f"{uri}: line {line0}: intent {item['intent']!r} has no 'examples: |' block", source=uri
            )
        # a block scalar's content starts on the line after its '|' indicator
        first_line = examples_node.start_mark.line + 2 if examples_node.style == "|" else examples_node.start_mark.line + 1
        for j, line in enumerate(item["examples"].split("\n")):
            stripped = line.strip()
            if not stripped.startswith("-"):
                continue
            utterance, entities = parse_annotated(stripped[1:].strip())
            rows.append(
                {
                    c.UTTERANCE: utterance,
                    c.INTENT: str(item["intent"]).strip() or None,
                    c.ENTITIES: entities,
                    c.SOURCE_ROW: first_line + j,
                }
            )
    return rows


PARSERS = {"csv": parse_csv, "jsonl": parse_jsonl, "rasa": parse_rasa}


def read_training_data(uri: str) -> pd.DataFrame:
    """One bot's training file as the canonical table (see ``botyard.components.base.table``)."""
    fmt = detect_format(uri)
    text = decode_utf8(read_bytes(uri), uri)
    return make_table(PARSERS[fmt](text, uri))
