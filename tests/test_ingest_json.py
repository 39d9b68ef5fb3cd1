"""A ``.json`` training file: JSON Lines as before, or one JSON document -- a list of row objects,
or CLINC150's object of split-keyed ``[utterance, intent]`` lists -- read into the same table,
every row named by the line its item starts on, every bad document refused naming file and line."""

from __future__ import annotations

import json

import pytest

from botyard.components.base import contracts as c
from botyard.components.base.data_formats import ParseLimits, read_training_data, split_of_key
from botyard.components.base.errors import DataValidationError
from conftest import SHARED

# CLINC150's layout, pretty-printed as it is published (json.dump with indent=4)
CLINC_LIKE = {
    "oos_val": [["is rice ok after 3 days in the refrigerator", "oos"]],
    "val": [["what's the weather like", "weather"], ["hi there", "greet"]],
    "train": [["will it rain today", "weather"], ["hello", "greet"], ["good morning", "greet"]],
    "oos_train": [["how much is an overdraft fee", "oos"]],
    "test": [["is it sunny", "weather"]],
}


def _rows(table):
    return sorted(zip(table[c.UTTERANCE], table[c.INTENT], table[c.SPLIT]))


def test_the_split_keyed_layout_gives_each_row_its_keys_split_and_line(write):
    path = write("data_full.json", json.dumps(CLINC_LIKE, indent=4))
    table = read_training_data(path)
    assert list(table.columns) == list(c.CANONICAL_COLUMNS)
    expected = [(text, intent, split_of_key(key)) for key, pairs in CLINC_LIKE.items() for text, intent in pairs]
    assert _rows(table) == sorted(expected)
    assert sorted(set(table[c.SPLIT])) == ["test", "train", "val"]  # oos_val -> val, oos_train -> train
    # each row is named by the line its [utterance, intent] item starts on
    lines = open(path, encoding="utf-8").read().split("\n")
    for text, row in zip(table[c.UTTERANCE], table[c.SOURCE_ROW]):
        assert lines[row - 1].strip() == "[" and json.dumps(text) in lines[row], (text, row)


def test_the_same_rows_read_alike_from_json_lines_and_both_document_layouts(write):
    objects = [{"text": t, "intent": i, "split": split_of_key(k)} for k, pairs in CLINC_LIKE.items() for t, i in pairs]
    as_lines = read_training_data(write("bot.jsonl", "\n".join(json.dumps(o) for o in objects)))
    as_json_lines = read_training_data(write("lines.json", "\n".join(json.dumps(o) for o in objects)))
    as_list = read_training_data(write("list.json", json.dumps(objects, indent=2)))
    as_keyed = read_training_data(write("keyed.json", json.dumps(CLINC_LIKE)))  # one line, too
    assert _rows(as_lines) == _rows(as_json_lines) == _rows(as_list) == _rows(as_keyed)
    assert as_json_lines[c.SOURCE_ROW].tolist() == as_lines[c.SOURCE_ROW].tolist() == list(range(1, len(objects) + 1))


def test_a_list_of_row_objects_keeps_entity_spans(write):
    rows = [{"text": "a large latte", "intent": "order", "entities": [{"start": 2, "end": 7, "value": "large", "entity": "size"}]},
            {"text": "hi", "intent": "greet"}]
    path = write("bot.json", json.dumps(rows, indent=2))
    table = read_training_data(path)
    assert table[c.ENTITIES].tolist() == [rows[0]["entities"], []]
    objects_start = [i for i, line in enumerate(open(path, encoding="utf-8").read().split("\n"), start=1) if line == "  {"]
    assert table[c.SOURCE_ROW].tolist() == objects_start and len(objects_start) == 2  # each object's "{" line


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"train": [["hi", "greet"],\n ["bye"]]}', "line 2: 'train': expected an [utterance, intent] pair, got a list of 1"),
        ('{"train": [["hi", "greet"],\n "bye"]}', "line 2: 'train': expected an [utterance, intent] pair, got a string"),
        ('{"train": [["hi", "greet"]],\n "dev": [["x", "y"]]}', "line 2: key 'dev' names no split; use train, val or test, or a name ending _train, _val or _test"),
        ('{"train": [["hi", "greet"]],\n "train": [["x", "y"]]}', "line 2: key 'train' appears twice (first on line 1)"),
        ('{"train": {"hi": "greet"},\n "train": [["x", "y"]]}', "line 1: 'train': expected a list of [utterance, intent] pairs"),
        ('[\n {"text": "hi", "intent": "greet"},\n 3\n]', "line 3: expected a JSON object, got a number"),
        ('{\n "text": "hi", "intent": "greet"\n}', "line 1: the document is an object whose values are not all lists; a .json file is JSON Lines"),
        ('{\n "train": [["hi", "greet"]],\n "test": [["a", "b"]]\n', "line 4: not valid JSON (Expecting ',' delimiter at column 1)"),
        ('{\n "train": [["hi", NaN]]\n}', "not valid JSON (NaN is not a JSON value)"),
        ('{\n "train": [["hi \\ud800", "greet"]]\n}', "a string holds an unpaired surrogate escape"),
        ('{\n "train": ' + "[" * 40 + "]" * 40 + "\n}", "nested deeper than 16 levels of lists/objects"),
    ],
)
def test_a_bad_document_is_refused_naming_file_and_line(write, content, message):
    path = write("bad.json", content)
    with pytest.raises(DataValidationError) as err:
        read_training_data(path)
    assert str(err.value).startswith(f"{path}: {message}")


def test_the_limits_hold_for_documents(write):
    keyed = write("many.json", json.dumps({"train": [[f"t{i}", "a"] for i in range(6)]}, indent=1))
    with pytest.raises(DataValidationError, match=r"line 23: more than 5 utterances"):
        read_training_data(keyed, ParseLimits(max_rows=5))
    listed = write("long.json", json.dumps([{"text": "hello there", "intent": "greet"}], indent=1))
    with pytest.raises(DataValidationError, match=r"line 2: 'text' is 11 characters, over the 5-character limit"):
        read_training_data(listed, ParseLimits(max_field_chars=5))


def test_row_problems_in_a_document_are_reported_by_line(tmp_path, write, capsys):
    from botyard.pipelines.cli import main

    pairs = [[f"hello {i}", "greet"] for i in range(6)] + [[f"bye {i}", 7] for i in range(6)]
    path = write("bot.json", json.dumps({"train": pairs}, indent=1))
    code = main(["run", "--data", path, "--models-root", str(tmp_path / "m"), "--pipeline-root", str(tmp_path / "r")])
    _, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err
    lines = ", ".join(str(3 + 4 * i) for i in range(6, 12))  # each pair spans 4 lines after '{' and '"train": ['
    assert f"'intent' is a number, not a string, in rows {lines}" in err
    assert not (tmp_path / "m").exists()  # no step ran


def test_clinc150_full_is_one_bots_file_as_published():
    table = read_training_data(str(SHARED / "data" / "clinc150" / "data_full.json"))
    assert table.groupby(c.SPLIT).size().to_dict() == {"train": 15_100, "val": 3_100, "test": 5_500}
    assert table[c.INTENT].nunique() == 151 and (table[c.INTENT] == "oos").sum() == 1_200
