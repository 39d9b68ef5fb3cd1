"""Fuzzing the way into botyard: whatever a training file holds, ingest ends in the table or in botyard's own error.

Each example is written to a file and taken the whole way a user's file goes: the ingest step
(parse, write the table, hash it), the validate step on the table ingest wrote, and
``load_training_data`` (``botyard run``'s pre-flight check). The only exception allowed out is
a ``BotyardError``; where the file is accepted, both routes must give the same data hash.

Kept fast for a loaded 2-core machine: ``FUZZ_EXAMPLES`` examples per test (default 40) and no
per-example deadline (timing on a shared machine is noise; the limits tests bound time instead).
A longer run: ``BOTYARD_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest -q tests/test_ingest_fuzz.py``.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
from collections import Counter

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botyard.components.base.config import ValidationConfig
from botyard.components.base.errors import BotyardError, DataValidationError
from botyard.components.base.training_data import load_training_data
from botyard.components.ingest.core import ingest
from botyard.components.validate.core import validate

FUZZ_EXAMPLES = int(os.environ.get("BOTYARD_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    print_blob=True,  # a failure prints the line that replays it
)
EXTENSIONS = (".csv", ".jsonl", ".json", ".yml", ".yaml")
_counter = itertools.count()
OUTCOMES: Counter = Counter()  # (case, how it ended): for a long run's summary


def _write(tmp_path, name: str, content: bytes):
    work = tmp_path / f"case-{next(_counter)}"
    work.mkdir()
    path = work / name
    path.write_bytes(content)
    return path


def take_the_whole_way(tmp_path, name: str, content: bytes, case: str) -> None:
    """Ingest, validate and pre-flight one file; only botyard's own errors may come out."""
    path = _write(tmp_path, name, content)
    work = path.parent
    table = str(work / "table.jsonl")
    try:
        result = ingest(str(path), table)
    except BotyardError as exc:
        assert isinstance(exc, DataValidationError) and str(exc).startswith(f"{path}: "), exc
        OUTCOMES[case, "refused by ingest"] += 1
        return
    try:
        validate(table, str(path), ValidationConfig(), str(work / "validated.jsonl"), str(work / "report.md"))
        valid = True
    except DataValidationError as exc:
        assert str(exc).startswith(f"{path}: training data is invalid"), exc
        valid = False
    try:
        loaded = load_training_data(str(path))
    except DataValidationError as exc:
        assert not valid and str(exc).startswith(f"{path}: training data is invalid"), exc
        OUTCOMES[case, "refused by validate"] += 1
        return
    assert valid and loaded.data_hash == result.data_hash
    OUTCOMES[case, "accepted"] += 1


# --- arbitrary bytes -------------------------------------------------------------------------


@FUZZ
@given(ext=st.sampled_from(EXTENSIONS), content=st.binary(max_size=2000))
def test_arbitrary_bytes(tmp_path, ext, content):
    take_the_whole_way(tmp_path, "bot" + ext, content, "arbitrary bytes")


# the characters each of the three grammars gives a meaning to, tokens that change what follows them,
# and a few that break decoders (a lone surrogate becomes bytes that are not UTF-8)
SPECIAL_CHARS = ',"\'\n\r\t\\[](){}:-&*!|>#%@`<~?=\x00\x85\u2028\ufeff\udcff'
TOKENS = ["<<", "---", "...", "!!python/object", "&a", "*a", "\\ud800", "NaN", "1e999", "9" * 5000, "x" * 140_000]
_text = st.lists(
    st.one_of(st.text(st.characters(codec="utf-8"), max_size=6), st.sampled_from(SPECIAL_CHARS), st.sampled_from(TOKENS[:-2])),
    max_size=10,
).map("".join)


# --- near-valid files, cut and spliced ----------------------------------------------------------

# valid as they stand (two intents, enough examples each), so a small splice may leave them valid
_WORDS = {"book": ["book a table", "reserve seats", "table for two", "a booking please", "book dinner", "seats tonight"],
          "greet": ["hi there", "hello", "good morning", "hey, you", "greetings", "howdy"]}
VALID = {
    "bot.csv": "text,intent,split\n" + "".join(f'"{t}",{i},{"test" if n == 5 else "train"}\n' for i, ts in _WORDS.items() for n, t in enumerate(ts)),
    "bot.jsonl": "\n".join(
        json.dumps({"text": t, "intent": i, "entities": [{"start": 0, "end": len(t.split()[0]), "value": t.split()[0], "entity": "w"}] if n == 0 else []})
        for i, ts in _WORDS.items()
        for n, t in enumerate(ts)
    ),
    "nlu.yml": 'version: "3.1"\nnlu:\n'
    + "".join(f"- intent: {i}\n  examples: |\n" + "".join(f"    - {t}\n" for t in ts) for i, ts in _WORDS.items()).replace("book dinner", "[book](verb) dinner")
    + '- synonym: paris\n  examples: |\n    - Paris\n- intent: greet\n  examples: |\n    - hi [Paris]{"entity": "city"}\n',
}


def test_the_valid_files_are_valid(tmp_path):
    for name, content in VALID.items():
        assert load_training_data(str(_write(tmp_path, name, content.encode()))).report.ok


@FUZZ
@given(
    name=st.sampled_from(sorted(VALID)),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 8), st.one_of(st.sampled_from(list(SPECIAL_CHARS) + TOKENS), _text)), max_size=6),
)
def test_valid_files_cut_and_spliced(tmp_path, name, edits):
    content = VALID[name]
    for where, cut, insert in edits:
        at = int(where * len(content))
        content = content[:at] + insert + content[at + cut :]
    take_the_whole_way(tmp_path, name, content.encode("utf-8", "surrogatepass"), f"spliced {name}")


# --- structured but wrong: right shape of file, wrong values ------------------------------------

_json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(allow_nan=False, allow_infinity=False), _text)
_json_value = st.recursive(_json_scalar, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)), max_leaves=20)
_entity = st.dictionaries(st.sampled_from(["start", "end", "value", "entity", "role"]), st.one_of(st.integers(-3, 30), _json_value), max_size=5)


@st.composite
def jsonl_files(draw) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 14))):
        kind = draw(st.sampled_from(["row", "row", "row", "value", "raw"]))
        if kind == "row":
            row = {}
            for key in draw(st.lists(st.sampled_from(["text", "intent", "entities", "split", "extra"]), unique=True)):
                if key == "entities":
                    row[key] = draw(st.one_of(st.lists(_entity, max_size=3), _json_value))
                elif key == "split":
                    row[key] = draw(st.one_of(st.sampled_from(["train", "val", "test", "dev", ""]), _json_value))
                else:
                    row[key] = draw(st.one_of(_text, st.sampled_from(["alpha", "beta"]), _json_value))
            lines.append(json.dumps(row, ensure_ascii=draw(st.booleans())))
        elif kind == "value":
            lines.append(json.dumps(draw(_json_value)))
        else:
            lines.append(draw(_text))
    return "\n".join(lines)


@FUZZ
@given(content=jsonl_files())
def test_structured_but_wrong_jsonl(tmp_path, content):
    take_the_whole_way(tmp_path, "bot.jsonl", content.encode("utf-8", "surrogatepass"), "structured JSONL")


@st.composite
def csv_files(draw) -> str:
    header = draw(st.lists(st.sampled_from(["text", "intent", "split", " text ", "label", ""]), min_size=0, max_size=4))
    records = draw(st.lists(st.lists(st.one_of(_text, st.sampled_from(["alpha", "beta", "train", "x" * 140_000])), max_size=5), max_size=14))
    if draw(st.booleans()):  # well quoted: only the values are wrong
        out = io.StringIO()
        writer = csv.writer(out)
        for record in [header, *records]:
            writer.writerow(record)
        return out.getvalue()
    return "\n".join(",".join(record) for record in [header, *records])  # raw: quotes and commas land anywhere


@FUZZ
@given(content=csv_files())
def test_structured_but_wrong_csv(tmp_path, content):
    take_the_whole_way(tmp_path, "bot.csv", content.encode("utf-8", "surrogatepass"), "structured CSV")


_yaml_value = st.recursive(
    st.one_of(_json_scalar, st.sampled_from(["alpha", "- hi\n- there\n", "- [x](y)\n- [x]{bad}\n"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.sampled_from(["intent", "examples", "nlu", "<<"]), _text), inner, max_size=3)),
    max_leaves=20,
)
_nlu_item = st.dictionaries(st.sampled_from(["intent", "examples", "synonym", "regex", "lookup", "<<", "extra"]), _yaml_value, max_size=4)


@st.composite
def yaml_files(draw) -> str:
    items = draw(st.lists(_nlu_item, max_size=6))
    if items and draw(st.booleans()):
        items.append(items[0])  # the same object twice: safe_dump writes an anchor and an alias
    doc = draw(st.one_of(st.just({"version": "3.1", "nlu": items}), st.dictionaries(_text, _yaml_value, max_size=3), _yaml_value))
    text = yaml.safe_dump(doc, allow_unicode=draw(st.booleans()), default_flow_style=draw(st.sampled_from([None, False, True])), sort_keys=False)
    if draw(st.booleans()):  # and a YAML feature Rasa data never needs, somewhere
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["&a ", "*a", "!!python/object:os.system ", "!x ", "<<: ", "\n---\n", "%YAML 1.1\n"])) + text[at:]
    return text


@FUZZ
@given(content=yaml_files())
def test_structured_but_wrong_rasa_yaml(tmp_path, content):
    take_the_whole_way(tmp_path, "nlu.yml", content.encode("utf-8", "surrogatepass"), "structured YAML")
