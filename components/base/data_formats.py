"""Read one bot's training data (CSV, JSON Lines, one JSON document or Rasa ``nlu.yml``) into the canonical table.

File-level problems (unreadable, not UTF-8, unknown format, required columns absent, malformed
CSV/JSON/YAML, a limit exceeded) raise ``DataValidationError`` here, naming the file and line;
row-level problems (a missing or non-string text or intent, ...) are left in the table for
``validate`` to report all at once (``botyard.components.base.data_checks``).

Parsing is bounded, because a training file may come from anyone who can commit to a bot's
repository: ``ParseLimits`` caps the file's size, one field's size, the number of utterances and
the nesting depth, and a Rasa file may hold no YAML anchors, aliases, merge keys or tags (Rasa
training data needs none of them, and aliases are how a few hundred bytes expand to gigabytes).
YAML is read as a stream of events (libyaml when present), so a refused file is refused at its
first offending event, before anything is built from it.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import os
import re
from dataclasses import dataclass

import pandas as pd
import yaml

from botyard.components.base import contracts as c
from botyard.components.base.errors import DataValidationError, StorageError
from botyard.components.base.storage import open_uri
from botyard.components.base.table import make_table

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "json", ".yml": "rasa", ".yaml": "rasa"}
TEXT_FIELD = "text"  # the utterance field's name in CSV and JSONL files
INTENT_FIELD = "intent"


@dataclass(frozen=True)
class ParseLimits:
    """What one training file may hold; anything over a limit is refused with a message naming it.

    The defaults leave room for far larger bots than any seen (HWU64, 64 intents and 25,716
    utterances, is a 1.2 MB CSV) while keeping a parse's memory bounded (about 1.5 GB at the caps).
    """

    max_file_bytes: int = 64 * 1024 * 1024  # the whole file; read no further than this
    max_field_chars: int = 128 * 1024  # one text, intent or split value: the csv module's own limit
    max_rows: int = 1_000_000  # utterances in one file
    max_depth: int = 16  # nested lists/objects in JSON and YAML: a JSONL row needs 3, Rasa 4
    max_yaml_nodes: int = 1_000_000  # YAML scalars, lists and mappings (each example block is one)


DEFAULT_LIMITS = ParseLimits()


_CHUNK = 1024 * 1024  # read in pieces: ``read(n)`` allocates all n bytes before it reads any


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n % (1024 * 1024) == 0 else f"{n:,}-byte"


def read_bytes(uri: str, *, max_bytes: int | None = None) -> bytes:
    """The file's bytes; with ``max_bytes``, at most ``max_bytes + 1`` of them (so the caller can tell it is longer)."""
    try:
        with open_uri(uri, "rb") as f:
            if max_bytes is None:
                return f.read()
            chunks, left = [], max_bytes + 1
            while left > 0:
                chunk = f.read(min(_CHUNK, left))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
    except DataValidationError:
        raise
    except StorageError as exc:  # already names the URI and what to check
        raise DataValidationError(f"cannot read the training data: {exc}", source=uri) from exc
    except Exception as exc:  # OSError, and whatever a file system library raises
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
    if "://" not in uri and os.path.isdir(uri):
        raise DataValidationError(
            f"{uri}: is a folder; give the training file itself (one of {sorted(FORMATS)})", source=uri
        )
    if ext not in FORMATS:
        raise DataValidationError(
            f"{uri}: unknown training data format {ext or '(no extension)'!r}; use one of {sorted(FORMATS)}", source=uri
        )
    return FORMATS[ext]


def _fail(uri: str, line: int | None, message: str) -> DataValidationError:
    return DataValidationError(f"{uri}: {'' if line is None else f'line {line}: '}{message}", source=uri)


def _check_field_size(value, field: str, uri: str, line: int, limits: ParseLimits) -> None:
    if isinstance(value, str) and len(value) > limits.max_field_chars:
        raise _fail(
            uri, line, f"'{field}' is {len(value):,} characters, over the {limits.max_field_chars:,}-character limit "
            "on one field; an utterance is one short line (did a quote or bracket swallow the rows after it?)"
        )


def _check_row_count(rows: list, uri: str, line: int, limits: ParseLimits) -> None:
    if len(rows) > limits.max_rows:
        raise _fail(
            uri, line, f"more than {limits.max_rows:,} utterances, the limit for one bot's training file; "
            "remove duplicate or generated utterances"
        )


# --- CSV -------------------------------------------------------------------------------------

_CSV_FIX = "quote a text that holds a comma or a quote, doubling each quote inside it: \"say \"\"hi\"\", please\",greet"


def parse_csv(text: str, uri: str, limits: ParseLimits = DEFAULT_LIMITS) -> list[dict]:
    # strict: a stray quote is an error, not a silent merge of the rows after it
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    end = 0  # the last physical line consumed so far
    rows: list[dict] = []
    too_many: list[int] = []
    header = None
    try:
        for record in reader:
            start, end = end + 1, reader.line_num
            if end > start:
                raise _fail(
                    uri, start, f"a quoted field runs over lines {start}-{end}; an utterance is one line, so a "
                    f"quote is probably left open; {_CSV_FIX}"
                )
            if not record:
                continue  # blank line
            if header is None:
                header = [f.strip() for f in record]
                missing = [f for f in (TEXT_FIELD, INTENT_FIELD) if f not in header]
                if missing:
                    raise _fail(
                        uri, None, f"missing column(s) {missing} in the header (found {header}); "
                        f"a CSV needs a header row with '{TEXT_FIELD}' and '{INTENT_FIELD}'"
                    )
                continue
            if len(record) > len(header):
                too_many.append(start)
                continue
            row = dict(zip(header, record))
            for field in (TEXT_FIELD, INTENT_FIELD, c.SPLIT):
                _check_field_size(row.get(field), field, uri, start, limits)
            rows.append(
                {
                    c.UTTERANCE: row.get(TEXT_FIELD),
                    c.INTENT: (row.get(INTENT_FIELD) or "").strip() or None,
                    c.SPLIT: (row.get(c.SPLIT) or "").strip(),
                    c.SOURCE_ROW: start,
                }
            )
            _check_row_count(rows, uri, start, limits)
    except csv.Error as exc:
        start = end + 1
        if "unexpected end of data" in str(exc):
            raise _fail(uri, start, f"a quoted field is never closed (its '\"' runs to the end of the file); {_CSV_FIX}") from exc
        if "field larger than field limit" in str(exc):
            limit = min(limits.max_field_chars, csv.field_size_limit())
            raise _fail(
                uri, start, f"a field is over the {limit:,}-character limit on one field; an utterance is one short "
                "line (did a quote swallow the rows after it?)"
            ) from exc
        raise _fail(uri, reader.line_num, f"not valid CSV ({exc}); {_CSV_FIX}") from exc
    if header is None:
        raise _fail(uri, None, f"missing column(s) {[TEXT_FIELD, INTENT_FIELD]} in the header (found []); "
                    f"a CSV needs a header row with '{TEXT_FIELD}' and '{INTENT_FIELD}'")
    if too_many:
        others = too_many[1:]
        also = ""
        if others:
            shown = ", ".join(str(n) for n in others[:10]) + (f" and {len(others) - 10} more" if len(others) > 10 else "")
            also = f" (so do line{'s' if len(others) > 1 else ''} {shown})"
        raise _fail(
            uri, too_many[0], f"more fields than the header's {len(header)} ({', '.join(header)}){also}: a comma "
            f"inside an unquoted text splits it; {_CSV_FIX}"
        )
    return rows


# --- JSON (JSON Lines rows and Rasa's JSON entity annotations) -------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def load_json(source: str, max_depth: int) -> object:
    """``json.loads`` with strict JSON (no NaN/Infinity), bounded nesting and valid Unicode; ``ValueError`` says why not."""
    try:
        value = json.loads(source, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from exc
    except RecursionError as exc:
        raise ValueError(f"nested deeper than {max_depth} levels of lists/objects; a training row needs 3") from exc
    except ValueError as exc:  # NaN/Infinity, or an integer over Python's 4,300-digit limit
        why = "a number over 4,300 digits" if "digits" in str(exc) else str(exc)
        raise ValueError(f"not valid JSON ({why})") from exc
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > max_depth:
                raise ValueError(f"nested deeper than {max_depth} levels of lists/objects; a training row needs 3")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, str) and _SURROGATE.search(item):
            raise ValueError(f"a string holds an unpaired surrogate escape ({_SURROGATE.search(item).group()!a}), which is not valid Unicode")
    return value


def parse_jsonl(text: str, uri: str, limits: ParseLimits = DEFAULT_LIMITS) -> list[dict]:
    rows: list[dict] = []
    for i, line in enumerate(text.split("\n"), start=1):  # not splitlines(): U+2028 may sit inside a JSON string
        if not line.strip():
            continue
        try:
            obj = load_json(line, limits.max_depth)
        except ValueError as exc:
            raise _fail(uri, i, f"{exc}; each line must be one JSON object, e.g. {{\"text\": \"hi there\", \"intent\": \"greet\"}}") from exc
        rows.append(_object_row(obj, uri, i, limits))
        _check_row_count(rows, uri, i, limits)
    return rows


def _object_row(obj, uri: str, line: int, limits: ParseLimits) -> dict:
    """One ``{"text", "intent", "entities", "split"}`` object (a JSON Lines line, an item of a JSON list) as a row."""
    if not isinstance(obj, dict):
        raise _fail(uri, line, f"expected a JSON object, got {json_type(obj)}")
    entities = obj.get("entities") or []
    if not isinstance(entities, list) or not all(isinstance(e, dict) for e in entities):
        raise _fail(uri, line, "'entities' must be a list of objects")
    for field in (TEXT_FIELD, INTENT_FIELD, c.SPLIT):
        _check_field_size(obj.get(field), field, uri, line, limits)
    return {
        c.UTTERANCE: obj.get(TEXT_FIELD),
        c.INTENT: obj.get(INTENT_FIELD),
        c.ENTITIES: entities,
        c.SPLIT: obj.get(c.SPLIT) or "",
        c.SOURCE_ROW: line,
    }


def json_type(value) -> str:
    """A parsed JSON value's type as the person who wrote the file would name it: "an object", "a list", ..."""
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


# --- one JSON document (.json) ---------------------------------------------------------------

_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_JSON_LAYOUTS = (
    'a .json file is JSON Lines (one {"text", "intent"} object a line) or one JSON document: a list of '
    '{"text", "intent"} objects, or an object of split-keyed lists of [utterance, intent] pairs '
    '({"train": [["hi there", "greet"], ...], "val": [...], "test": [...]}, as CLINC150 ships)'
)


def split_of_key(key: str) -> str | None:
    """The split a key of the split-keyed layout holds: ``train``, ``val`` or ``test``, or a name
    ending ``_train`` / ``_val`` / ``_test`` (CLINC150's ``oos_train`` ...); ``None`` for any other key."""
    return next((split for split in c.SPLITS if key == split or key.endswith("_" + split)), None)


def _is_keyed_lists(value) -> bool:
    """Whether a JSON value is the split-keyed layout's shape: a non-empty object of lists."""
    return isinstance(value, dict) and bool(value) and all(isinstance(v, list) for v in value.values())


def _is_json_lines(text: str, max_depth: int) -> bool:
    """Whether a ``.json`` file is JSON Lines: its first line is one JSON object of its own that is
    not the split-keyed layout (a one-line document is a list, or an object of lists)."""
    first = text.lstrip().partition("\n")[0]  # the first line with content, not every line split
    if not first.startswith(("{", "[")):
        return True  # not a document either: JSON Lines names the line and what is wrong
    try:
        value = load_json(first, max_depth)
    except ValueError:
        return False  # a document over several lines (pretty-printed)
    return isinstance(value, dict) and not _is_keyed_lists(value)


class _Items:
    """The items of a JSON document's top-level list (or of the lists under its keys), each with
    the line it starts on: rows are named by line, as in the other formats. Run only over text
    ``load_json`` accepted, so the decoder meets valid, bounded JSON."""

    def __init__(self, text: str):
        self.text, self.at = text, 0
        self.decoder = json.JSONDecoder()
        self.newlines = [m.start() for m in re.finditer("\n", text)]

    def line(self, index: int) -> int:
        return bisect.bisect_left(self.newlines, index) + 1

    def _space(self) -> str:
        self.at = _JSON_SPACE.match(self.text, self.at).end()
        return self.text[self.at : self.at + 1]

    def _value(self):
        value, self.at = self.decoder.raw_decode(self.text, self.at)
        return value

    def list_items(self):
        """``(line, item)`` for each item of the list starting here."""
        self._space()
        self.at += 1  # [
        while self._space() != "]":
            line = self.line(self.at)
            yield line, self._value()
            if self._space() == ",":
                self.at += 1
        self.at += 1

    def keyed_lists(self):
        """``(key, line, items)`` for each key of the object starting here; ``items`` is ``None``
        where the key's value is not a list (a repeated key's first value may be anything)."""
        self._space()
        self.at += 1  # {
        while self._space() != "}":
            line = self.line(self.at)
            key = self._value()
            self._space()
            self.at += 1  # :
            if self._space() == "[":
                yield key, line, self.list_items()
            else:
                self._value()
                yield key, line, None
            if self._space() == ",":
                self.at += 1


def parse_json(text: str, uri: str, limits: ParseLimits = DEFAULT_LIMITS) -> list[dict]:
    """A ``.json`` file: JSON Lines (read as ``.jsonl``), or one JSON document (``_JSON_LAYOUTS``).

    In the split-keyed layout a key names its rows' split (``split_of_key``), so CLINC150's
    ``data_full.json`` is one bot's file as it is published: ``oos_*`` rows carry the intent
    ``oos``. Each row is named by the line its item starts on.
    """
    if _is_json_lines(text, limits.max_depth):
        return parse_jsonl(text, uri, limits)
    try:
        document = load_json(text, limits.max_depth)
    except ValueError as exc:
        line = exc.__cause__.lineno if isinstance(exc.__cause__, json.JSONDecodeError) else None
        raise _fail(uri, line, f"{exc}; {_JSON_LAYOUTS}") from exc
    items = _Items(text)
    rows: list[dict] = []
    if isinstance(document, list):
        for line, item in items.list_items():
            rows.append(_object_row(item, uri, line, limits))
            _check_row_count(rows, uri, line, limits)
        return rows
    if not _is_keyed_lists(document):
        shape = "an object whose values are not all lists" if isinstance(document, dict) and document else json_type(document)
        raise _fail(uri, 1, f"the document is {shape}; {_JSON_LAYOUTS}")
    seen: dict[str, int] = {}
    for key, key_line, pairs in items.keyed_lists():
        split = split_of_key(key)
        if split is None:
            raise _fail(uri, key_line, f"key {key!r} names no split; use train, val or test, or a name ending _train, _val or _test (oos_train)")
        if key in seen:
            raise _fail(uri, key_line, f"key {key!r} appears twice (first on line {seen[key]}); a JSON object's keys must differ")
        seen[key] = key_line
        if pairs is None:
            raise _fail(uri, key_line, f"{key!r}: expected a list of [utterance, intent] pairs")
        for line, pair in pairs:
            if not (isinstance(pair, list) and len(pair) == 2):
                shape = f"a list of {len(pair)}" if isinstance(pair, list) else json_type(pair)
                raise _fail(uri, line, f"{key!r}: expected an [utterance, intent] pair, got {shape}")
            for field, value in zip((TEXT_FIELD, INTENT_FIELD), pair):
                _check_field_size(value, field, uri, line, limits)
            rows.append({c.UTTERANCE: pair[0], c.INTENT: pair[1], c.ENTITIES: [], c.SPLIT: split, c.SOURCE_ROW: line})
            _check_row_count(rows, uri, line, limits)
    return rows


# --- Rasa nlu.yml ----------------------------------------------------------------------------

# [value](entity) or [value](entity:synonym) or [value]{"entity": "name", ...}; the character
# classes exclude the next opening bracket/brace, so a line of unclosed brackets is matched in
# linear time rather than quadratic
_ANNOTATION = re.compile(r"\[(?P<value>[^\[\]]+)\](?:\((?P<entity>[^()\[\]]+)\)|(?P<json>\{[^{}]*\}))")
# what is left of an annotation that does not close ("[7pm](time" , "[7pm]{"): a mistake, not text
_UNCLOSED = re.compile(r"\[[^\[\]]*\][({]")


def parse_annotated(example: str, max_depth: int = DEFAULT_LIMITS.max_depth) -> tuple[str, list[dict]]:
    """Strip Rasa entity markup from one example; return the plain text and its spans.

    Raises ``ValueError`` for a ``{...}`` annotation that is not a JSON object, and for one that
    is not complete (``[7pm](time`` would otherwise be trained on as text, brackets and all).
    """
    text, entities, pos = [], [], 0
    offset = 0
    for m in [*_ANNOTATION.finditer(example), None]:
        plain = example[pos : m.start() if m else len(example)]
        broken = _UNCLOSED.search(plain)
        if broken:
            snippet = plain[broken.start() : broken.start() + 40]
            raise ValueError(
                f"entity annotation {snippet!r} is not complete; write [value](entity) or [value]{{\"entity\": \"name\"}}"
            )
        if m is None:
            break
        text.append(plain)
        offset += m.start() - pos
        value = m.group("value")
        if m.group("json"):
            try:
                entity = load_json(m.group("json"), max_depth).get("entity")
            except ValueError as exc:
                raise ValueError(f"entity annotation {m.group('json')!r} is {exc}; write [value]{{\"entity\": \"name\"}}") from exc
        else:
            entity = m.group("entity").split(":", 1)[0]
        entities.append({"start": offset, "end": offset + len(value), "value": value, "entity": entity})
        text.append(value)
        offset += len(value)
        pos = m.end()
    text.append(example[pos:])
    return "".join(text), entities


_NO_YAML_FEATURES = "Rasa training data needs no anchors, aliases, merge keys or tags"
_YAML_NULLS = frozenset({"", "~", "null", "Null", "NULL"})


@dataclass
class _Node:
    """A YAML node as written: scalars keep their text (no implicit typing), collections their children."""

    kind: str  # "scalar" | "seq" | "map"
    line: int  # 1-based line where it starts
    value: object = None  # scalar: str; seq: list[_Node]; map: list[_Node] of alternating keys and values
    style: str | None = None  # scalar: "" plain, "'" '"' "|" ">"

    def items(self) -> list[tuple["_Node", "_Node"]]:
        return list(zip(self.value[0::2], self.value[1::2]))

    def get(self, key: str) -> "_Node | None":
        found = None
        for k, v in self.items():
            if k.kind == "scalar" and k.value == key:
                found = v  # like PyYAML, the last of duplicate keys wins
        return found


def _yaml_tag(tag: str) -> str:
    return "!!" + tag[len("tag:yaml.org,2002:") :] if tag.startswith("tag:yaml.org,2002:") else tag


def compose_yaml(text: str, uri: str, limits: ParseLimits = DEFAULT_LIMITS) -> _Node | None:
    """The single YAML document in ``text`` as ``_Node``s, refusing anchors, aliases, merge keys, tags and limits exceeded."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    stack: list[_Node] = []
    root: _Node | None = None
    documents = nodes = 0
    try:
        for event in yaml.parse(text, Loader=loader):
            line = event.start_mark.line + 1
            if isinstance(event, yaml.AliasEvent):
                raise _fail(uri, line, f"YAML alias '*{event.anchor}' is not allowed in training data ({_NO_YAML_FEATURES}); write the value out in full")
            if getattr(event, "anchor", None) is not None:
                raise _fail(uri, line, f"YAML anchor '&{event.anchor}' is not allowed in training data ({_NO_YAML_FEATURES}); remove it")
            if getattr(event, "tag", None) is not None:
                raise _fail(uri, line, f"YAML tag '{_yaml_tag(event.tag)}' is not allowed in training data ({_NO_YAML_FEATURES}); remove it")
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise _fail(uri, line, "a second YAML document ('---'); a training file holds one document")
                continue
            if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                node = stack.pop()
            elif isinstance(event, (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                nodes += 1
                if nodes > limits.max_yaml_nodes:
                    raise _fail(uri, line, f"more than {limits.max_yaml_nodes:,} YAML values, the limit for one training file")
                if isinstance(event, yaml.ScalarEvent):
                    parent = stack[-1] if stack else None
                    if not event.style and event.value == "<<" and parent is not None and parent.kind == "map" and len(parent.value) % 2 == 0:
                        raise _fail(uri, line, f"YAML merge key '<<' is not allowed in training data ({_NO_YAML_FEATURES}); write the keys out")
                    node = _Node("scalar", line, event.value, event.style or "")
                else:
                    stack.append(_Node("seq" if isinstance(event, yaml.SequenceStartEvent) else "map", line, []))
                    if len(stack) > limits.max_depth:
                        raise _fail(uri, line, f"nested deeper than {limits.max_depth} levels of lists/mappings; a Rasa file needs 4")
                    continue
            else:
                continue  # stream and document ends
            if stack:
                stack[-1].value.append(node)
            else:
                root = node
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = mark.line + 1 if mark else None
        raise _fail(uri, where, f"not valid YAML ({getattr(exc, 'problem', None) or exc})") from exc
    return root


def _intent_name(node: _Node, uri: str) -> str | None:
    if node.kind != "scalar":
        kind = "list" if node.kind == "seq" else "mapping"
        raise _fail(uri, node.line, f"'intent' must be a name, not a {kind}; write e.g. '- intent: greet'")
    if not node.style and node.value in _YAML_NULLS:
        return None
    return node.value.strip() or None


def parse_rasa(text: str, uri: str, limits: ParseLimits = DEFAULT_LIMITS) -> list[dict]:
    root = compose_yaml(text, uri, limits)
    nlu = root.get("nlu") if root is not None and root.kind == "map" else None
    if nlu is None or nlu.kind != "seq":
        raise _fail(uri, None, "a Rasa training file needs a top-level 'nlu:' list")
    rows: list[dict] = []
    for item in nlu.value:
        intent_node = item.get("intent") if item.kind == "map" else None
        if intent_node is None:
            continue  # synonyms, regexes and lookup tables carry no utterances
        intent = _intent_name(intent_node, uri)
        _check_field_size(intent, INTENT_FIELD, uri, intent_node.line, limits)
        examples = item.get("examples")
        if examples is None or examples.kind != "scalar":
            raise _fail(uri, item.line, f"intent {intent!r} has no 'examples: |' block")
        # a block scalar's content starts on the line after its '|' indicator
        first_line = examples.line + 1 if examples.style == "|" else examples.line
        for j, line in enumerate(examples.value.split("\n")):
            stripped = line.strip()
            if not stripped.startswith("-"):
                continue
            example = stripped[1:].strip()
            _check_field_size(example, TEXT_FIELD, uri, first_line + j, limits)
            try:
                utterance, entities = parse_annotated(example, limits.max_depth)
            except ValueError as exc:
                raise _fail(uri, first_line + j, str(exc)) from exc
            rows.append({c.UTTERANCE: utterance, c.INTENT: intent, c.ENTITIES: entities, c.SOURCE_ROW: first_line + j})
            _check_row_count(rows, uri, first_line + j, limits)
    return rows


PARSERS = {"csv": parse_csv, "jsonl": parse_jsonl, "json": parse_json, "rasa": parse_rasa}


def read_training_data(uri: str, limits: ParseLimits = DEFAULT_LIMITS) -> pd.DataFrame:
    """One bot's training file as the canonical table (see ``botyard.components.base.table``)."""
    fmt = detect_format(uri)
    raw = read_bytes(uri, max_bytes=limits.max_file_bytes)
    if len(raw) > limits.max_file_bytes:
        raise _fail(
            uri, None, f"the file is over the {_size(limits.max_file_bytes)} limit on one bot's training data "
            "(reading stopped there); remove duplicate or generated utterances, or split the bot"
        )
    text = decode_utf8(raw, uri)
    return make_table(PARSERS[fmt](text, uri, limits))
