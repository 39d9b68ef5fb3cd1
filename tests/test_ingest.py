"""Ingest: three formats, one canonical table; file-level problems name the file and line."""

from __future__ import annotations

import json

import pytest

from botyard.components.base import contracts as c
from botyard.components.base.errors import DataValidationError
from botyard.components.base.data_formats import parse_annotated, read_training_data
from botyard.components.base.table import data_hash, read_table, write_table

CSV = "text,intent\nbook a table for two,book\nhi there,greet\nwhat time is it in Paris,time\n"
JSONL = "\n".join(
    json.dumps(r)
    for r in [
        {"text": "book a table for two", "intent": "book", "entities": [{"start": 17, "end": 20, "value": "two", "entity": "party_size"}]},
        {"text": "hi there", "intent": "greet"},
        {"text": "what time is it in Paris", "intent": "time", "entities": [{"start": 19, "end": 24, "value": "Paris", "entity": "city"}]},
    ]
)
RASA = """version: "3.1"
nlu:
- intent: book
  examples: |
    - book a table for [two](party_size)
- intent: greet
  examples: |
    - hi there
- synonym: paris
  examples: |
    - Paris
- intent: time
  examples: |
    - what time is it in [Paris]{"entity": "city"}
"""


def _content(table):
    return table.drop(columns=[c.SOURCE_ROW]).sort_values(c.UTTERANCE).reset_index(drop=True)


def test_three_formats_give_the_same_canonical_table(write):
    csv_table = read_training_data(write("bot.csv", CSV))
    jsonl_table = read_training_data(write("bot.jsonl", JSONL))
    rasa_table = read_training_data(write("nlu.yml", RASA))
    # CSV carries no entity spans; everything else is identical
    assert _content(csv_table)[[c.UTTERANCE, c.INTENT]].equals(_content(rasa_table)[[c.UTTERANCE, c.INTENT]])
    assert _content(jsonl_table).equals(_content(rasa_table))
    assert data_hash(jsonl_table) == data_hash(rasa_table)
    assert list(rasa_table.columns) == list(c.CANONICAL_COLUMNS)


def test_rasa_rows_point_at_their_lines(write):
    table = read_training_data(write("nlu.yml", RASA))
    lines = RASA.splitlines()
    for utterance, row in zip(table[c.UTTERANCE], table[c.SOURCE_ROW]):
        assert utterance.split()[0] in lines[row - 1]


def test_annotations_become_spans():
    text, entities = parse_annotated("fly from [Berlin](city) to [NYC](city:New York) on [monday]{\"entity\": \"day\"}")
    assert text == "fly from Berlin to NYC on monday"
    assert [(e["entity"], text[e["start"] : e["end"]]) for e in entities] == [("city", "Berlin"), ("city", "NYC"), ("day", "monday")]


def test_data_hash_ignores_row_order_but_not_content(write):
    a = read_training_data(write("a.csv", CSV))
    b = read_training_data(write("b.csv", "text,intent\n" + "\n".join(reversed(CSV.strip().splitlines()[1:])) + "\n"))
    changed = read_training_data(write("c.csv", CSV.replace("hi there", "hello there")))
    assert data_hash(a) == data_hash(b) != data_hash(changed)


def test_table_round_trips_through_jsonl(tmp_path, write):
    table = read_training_data(write("bot.jsonl", JSONL))
    write_table(table, str(tmp_path / "t.jsonl"))
    assert read_table(str(tmp_path / "t.jsonl")).equals(table)


def test_split_column_is_kept(write):
    table = read_training_data(write("bot.csv", "text,intent,split\nhello,greet,train\nbye,bye,test\n"))
    assert table[c.SPLIT].tolist() == ["train", "test"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.csv", None, "missing.csv: cannot read the file"),
        ("latin1.csv", "text,intent\ncaf\xe9,order\n".encode("latin-1"), "latin1.csv: line 2: not valid UTF-8 (byte 0xe9"),
        ("bot.txt", "hello", "unknown training data format '.txt'"),
        ("nolabel.csv", "text,label\nhi,greet\n", "missing column(s) ['intent'] in the header"),
        ("notext.csv", "utterance,intent\nhi,greet\n", "missing column(s) ['text'] in the header"),
        ("broken.jsonl", '{"text": "hi", "intent": "greet"}\n{"text": oops}\n', "broken.jsonl: line 2: not valid JSON"),
        ("list.jsonl", '["hi", "greet"]\n', "line 1: expected a JSON object"),
        ("bad.yml", "nlu:\n- intent: greet\n  examples: |\n    - hi\n  - bad: [\n", "bad.yml: line"),
        ("norasa.yml", "version: 3.1\n", "needs a top-level 'nlu:' list"),
    ],
)
def test_file_level_problems_name_the_file(tmp_path, write, name, content, message):
    path = write(name, content) if content is not None else str(tmp_path / name)
    with pytest.raises(DataValidationError) as err:
        read_training_data(path)
    assert message in str(err.value)
