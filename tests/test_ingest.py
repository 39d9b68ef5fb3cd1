"""Ingest: three formats, one canonical table; file-level problems name the file and line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tracemalloc

import pytest

from botyard.components.base import contracts as c
from botyard.components.base.errors import DataValidationError
from botyard.components.base.data_formats import ParseLimits, parse_annotated, read_bytes, read_training_data
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


def test_a_folder_given_as_the_training_file_is_named_as_a_folder(tmp_path):
    (tmp_path / "bot.csv").mkdir()  # even with a data file's extension
    with pytest.raises(DataValidationError, match=r"bot.csv: is a folder; give the training file itself"):
        read_training_data(str(tmp_path / "bot.csv"))


# --- bounded parsing: every bad file is refused with the file and line named ------------------

GOOD_CSV_ROWS = "".join(f"hello number {i},greet\nbye number {i},bye\n" for i in range(6))


def alias_bomb() -> str:
    """The billion-laughs file of issue 14: nine levels of nine aliases each (9**9 strings once expanded)."""
    lines = ['a0: &a0 "lol"'] + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return "\n".join(lines) + "\nnlu:\n- intent: *a9\n  examples: |\n    - hi\n"


NO_YAML_FEATURES = "is not allowed in training data (Rasa training data needs no anchors, aliases, merge keys or tags)"
CSV_FIX = "quote a text that holds a comma or a quote, doubling each quote inside it"

# (file name, content, the message after "<path>: "), shared with the CLI tests below
BAD_FILES = [
    ("bomb.yml", alias_bomb(), f"line 1: YAML anchor '&a0' {NO_YAML_FEATURES}; remove it"),
    ("alias.yml", "nlu:\n- intent: greet\n  examples: |\n    - hi\n- intent: *greet\n", f"line 5: YAML alias '*greet' {NO_YAML_FEATURES}; write the value out in full"),
    ("merge.yml", "nlu:\n- <<: {intent: greet}\n  examples: |\n    - hi\n", f"line 2: YAML merge key '<<' {NO_YAML_FEATURES}; write the keys out"),
    ("tag.yml", "nlu:\n- intent: !!python/object/apply:os.system [echo hi]\n  examples: |\n    - hi\n", f"line 2: YAML tag '!!python/object/apply:os.system' {NO_YAML_FEATURES}; remove it"),
    ("include.yml", "nlu:\n- intent: greet\n  examples: !include more.yml\n", f"line 3: YAML tag '!include' {NO_YAML_FEATURES}; remove it"),
    ("str-tag.yml", "nlu:\n- intent: !!str greet\n  examples: |\n    - hi\n", f"line 2: YAML tag '!!str' {NO_YAML_FEATURES}; remove it"),
    ("deep.yml", "nlu:\n- intent: greet\n  examples: " + "[" * 40 + "]" * 40 + "\n", "line 3: nested deeper than 16 levels of lists/mappings; a Rasa file needs 4"),
    ("two-docs.yml", "nlu: []\n---\nnlu: []\n", "line 2: a second YAML document ('---'); a training file holds one document"),
    ("list-intent.yml", "nlu:\n- intent: [a, b]\n  examples: |\n    - hi\n", "line 2: 'intent' must be a name, not a list; write e.g. '- intent: greet'"),
    ("bad-annotation.yml", "nlu:\n- intent: greet\n  examples: |\n    - hi\n    - fly to [Rome]{city}\n",
     "line 5: entity annotation '{city}' is not valid JSON (Expecting property name enclosed in double quotes at column 2); write [value]{\"entity\": \"name\"}"),
    ("long-example.yml", "nlu:\n- intent: greet\n  examples: |\n    - hi\n    - " + "x" * 140_000 + "\n",
     "line 5: 'text' is 140,000 characters, over the 131,072-character limit on one field"),
    ("nan.jsonl", '{"text": "hi", "intent": "greet"}\n{"text": NaN, "intent": "greet"}\n', "line 2: not valid JSON (NaN is not a JSON value); each line must be one JSON object"),
    ("deep.jsonl", '{"text": "hi", "intent": "greet", "x": ' + "[" * 30 + "]" * 30 + "}\n", "line 1: nested deeper than 16 levels of lists/objects; a training row needs 3"),
    ("very-deep.jsonl", '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n", "line 1: nested deeper than 16 levels of lists/objects"),
    ("surrogate.jsonl", '{"text": "hi \\ud800", "intent": "greet"}\n', "line 1: a string holds an unpaired surrogate escape ('\\ud800'), which is not valid Unicode"),
    ("huge-number.jsonl", '{"text": "hi", "intent": ' + "9" * 5000 + "}\n", "line 1: not valid JSON (a number over 4,300 digits)"),
    ("long-text.jsonl", json.dumps({"text": "x" * 140_000, "intent": "greet"}) + "\n", "line 1: 'text' is 140,000 characters, over the 131,072-character limit on one field"),
    ("long-field.csv", "text,intent\nhi,greet\n" + "x" * 140_000 + ",greet\n", "line 3: a field is over the 131,072-character limit on one field"),
    ("open-quote.csv", 'text,intent\n"hello,greet\n' + GOOD_CSV_ROWS, f"line 2: a quoted field is never closed (its '\"' runs to the end of the file); {CSV_FIX}"),
    ("merged-rows.csv", 'text,intent\n"hello,greet\nbye",bye\n' + GOOD_CSV_ROWS, f"line 2: a quoted field runs over lines 2-3; an utterance is one line, so a quote is probably left open; {CSV_FIX}"),
    ("stray-quote.csv", 'text,intent\n"hi" there,greet\n' + GOOD_CSV_ROWS, f"line 2: not valid CSV (',' expected after '\"'); {CSV_FIX}"),
    ("comma.csv", "text,intent\nbook a table, please,book\n" + GOOD_CSV_ROWS + "no, thanks,bye\n",
     f"line 2: more fields than the header's 2 (text, intent) (so do line 15): a comma inside an unquoted text splits it; {CSV_FIX}"),
]


@pytest.mark.parametrize("name, content, message", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_files_are_refused_naming_file_and_line(write, name, content, message):
    path = write(name, content)
    with pytest.raises(DataValidationError) as err:
        read_training_data(path)
    assert str(err.value).startswith(f"{path}: {message}")
    assert err.value.source == path


def test_alias_bomb_is_refused_in_milliseconds_with_bounded_memory(write):
    path = write("nlu.yml", alias_bomb())
    assert len(alias_bomb()) < 600  # a few hundred bytes; expanded, 9**9 = 387,420,489 strings
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(DataValidationError, match="YAML anchor '&a0' is not allowed"):
        read_training_data(path)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seconds < 0.5, seconds  # measured: about 1 ms
    assert peak < 4_000_000, peak  # bytes (the issue saw 2.9 GB); measured: 1.06 MB, the 1 MiB read buffer


def test_aliases_deep_in_a_valid_file_are_refused_too(write):
    # the first anchor is far down: nothing before it is expanded, and nothing after it is read
    content = RASA + "".join(f"- intent: i{n}\n  examples: |\n    - e{n}\n" for n in range(2000)) + "- intent: &x last\n  examples: |\n    - *x\n"
    with pytest.raises(DataValidationError, match=r"nlu.yml: line 6015: YAML anchor '&x' is not allowed"):
        read_training_data(write("nlu.yml", content))


def test_yaml_values_are_read_as_written(write):
    """No implicit typing: an intent named yes/no/on/1.0 stays that name (YAML 1.1 would make it a bool or float)."""
    content = "version: \"3.1\"\nnlu:\n" + "".join(f"- intent: {name}\n  examples: |\n    - say {name}\n" for name in ("yes", "no", "on", "1.0", "'quoted'"))
    content += "- regex: zip\n  examples: |\n    - \\d{5}\n- lookup: city\n  examples: |\n    - Rome\n- intent: \"~\"\n  examples: |-\n    - tilde\n"
    table = read_training_data(write("nlu.yml", content))
    assert table[c.INTENT].tolist() == ["yes", "no", "on", "1.0", "quoted", "~"]
    assert table[c.UTTERANCE].tolist() == ["say yes", "say no", "say on", "say 1.0", "say 'quoted'", "tilde"]


def test_null_intent_in_yaml_is_missing(write):
    table = read_training_data(write("nlu.yml", "nlu:\n- intent: ~\n  examples: |\n    - hi\n- intent:\n  examples: |\n    - yo\n"))
    assert table[c.INTENT].tolist() == [None, None]


def test_quoted_csv_fields_still_work(write):
    table = read_training_data(write("bot.csv", 'text,intent\n"book a table, please",book\n"say ""hi""",greet\n\nbye,bye\n'))
    assert table[c.UTTERANCE].tolist() == ["book a table, please", 'say "hi"', "bye"]
    assert table[c.SOURCE_ROW].tolist() == [2, 3, 5]  # the blank line 4 keeps later rows on their own line numbers


def test_jsonl_keeps_line_separators_inside_strings(write):
    table = read_training_data(write("bot.jsonl", '{"text": "a\u2028b\u0085c", "intent": "greet"}\n{"text": "d", "intent": "bye"}\n'))
    assert table[c.UTTERANCE].tolist() == ["a\u2028b\u0085c", "d"] and table[c.SOURCE_ROW].tolist() == [1, 2]


# --- limits on size: refused with a message, read no further than the limit -------------------


def test_file_over_the_size_limit_is_refused_without_reading_it_whole(write):
    limits = ParseLimits(max_file_bytes=1024 * 1024)
    line = "hello there my friend,greet\n"
    path = write("big.csv", "text,intent\n" + line * (20 * 1024 * 1024 // len(line)))  # 20 MiB
    tracemalloc.start()
    with pytest.raises(DataValidationError) as err:
        read_training_data(path, limits)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert str(err.value) == (
        f"{path}: the file is over the 1 MiB limit on one bot's training data (reading stopped there); "
        "remove duplicate or generated utterances, or split the bot"
    )
    assert peak < 3 * 1024 * 1024, peak  # the 1 MiB read, not the 20 MiB file


def test_file_at_the_size_limit_is_read(write):
    content = "text,intent\n" + GOOD_CSV_ROWS
    path = write("bot.csv", content)
    assert len(read_training_data(path, ParseLimits(max_file_bytes=len(content)))) == 12
    with pytest.raises(DataValidationError, match=f"the file is over the {len(content) - 1:,}-byte limit on one bot's training data"):
        read_training_data(path, ParseLimits(max_file_bytes=len(content) - 1))


def test_read_bytes_reads_at_most_one_byte_past_the_limit(write):
    path = write("bot.csv", "x" * 1000)
    assert len(read_bytes(path, max_bytes=10)) == 11
    assert len(read_bytes(path)) == 1000


@pytest.mark.parametrize(
    "name, content, limits, message",
    [
        ("rows.csv", "text,intent\n" + GOOD_CSV_ROWS, ParseLimits(max_rows=5), "line 7: more than 5 utterances, the limit for one bot's training file"),
        ("rows.jsonl", "\n".join(json.dumps({"text": f"t{i}", "intent": "a"}) for i in range(6)), ParseLimits(max_rows=5), "line 6: more than 5 utterances"),
        ("rows.yml", "nlu:\n- intent: a\n  examples: |\n" + "".join(f"    - t{i}\n" for i in range(6)), ParseLimits(max_rows=5), "line 9: more than 5 utterances"),
        ("nodes.yml", "nlu:\n" + "".join(f"- intent: i{i}\n  examples: |\n    - t{i}\n" for i in range(10)), ParseLimits(max_yaml_nodes=20), "line 11: more than 20 YAML values"),
        ("field.csv", "text,intent\nhello there,greet\n", ParseLimits(max_field_chars=5), "line 2: 'text' is 11 characters, over the 5-character limit on one field"),
        ("field.jsonl", '{"text": "hi", "intent": "greetings"}\n', ParseLimits(max_field_chars=5), "line 1: 'intent' is 9 characters, over the 5-character limit"),
        ("field.yml", "nlu:\n- intent: greetings\n  examples: |\n    - hi\n", ParseLimits(max_field_chars=5), "line 2: 'intent' is 9 characters, over the 5-character limit"),
        ("depth.jsonl", '{"text": "hi", "intent": "greet", "entities": [{"start": 0, "end": 2, "entity": "x"}]}\n', ParseLimits(max_depth=2), "line 1: nested deeper than 2 levels"),
    ],
)
def test_each_limit_is_enforced_with_its_own_message(write, name, content, limits, message):
    path = write(name, content)
    with pytest.raises(DataValidationError) as err:
        read_training_data(path, limits)
    assert str(err.value).startswith(f"{path}: {message}")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "yml"])
def test_large_valid_files_still_work(write, fmt):
    """Well under the limits but far over any real bot: 100,000 utterances in each format."""
    n, intents = 100_000, [f"intent_{i}" for i in range(50)]
    if fmt == "csv":
        content = "text,intent\n" + "".join(f"utterance number {i},{intents[i % 50]}\n" for i in range(n))
    elif fmt == "jsonl":
        content = "".join(json.dumps({"text": f"utterance number {i}", "intent": intents[i % 50]}) + "\n" for i in range(n))
    else:
        content = "nlu:\n" + "".join(
            f"- intent: {intent}\n  examples: |\n" + "".join(f"    - utterance number {i}\n" for i in range(k, n, 50)) for k, intent in enumerate(intents)
        )
    table = read_training_data(write(f"bot.{fmt}", content))
    assert len(table) == n and table[c.INTENT].nunique() == 50
    assert sorted(table[c.UTTERANCE])[:2] == ["utterance number 0", "utterance number 1"]


@pytest.mark.parametrize("line", ["[" * 131_072, "[x](" * 32_768, "[x]{" * 32_768, "[x](" + "a" * 131_068, "[x]{\"" + "[x]" * 43_690])
def test_entity_markup_is_matched_in_linear_time(line):
    started = time.perf_counter()
    try:
        text, _ = parse_annotated(line)
        assert text == line  # nothing here is a complete annotation
    except ValueError as exc:  # an annotation begun and never closed
        assert "is not complete" in str(exc)
    assert time.perf_counter() - started < 1.0  # quadratic backtracking took minutes on the first two


@pytest.mark.parametrize("example, shown", [
    ("a table at [7pm](time", "'[7pm](time'"),
    ("on [monday]{\"entity\": \"day\" please", "'[monday]{\"entity\": \"day\" please'"),
    ("for [two](party_size) at [7pm](", "'[7pm]('"),
    ("[](time) at 7", "'[](time) at 7'"),
])
def test_an_annotation_that_is_not_complete_is_refused_not_trained_on_as_text(example, shown):
    with pytest.raises(ValueError) as err:
        parse_annotated(example)
    assert str(err.value).startswith(f"entity annotation {shown} is not complete; write [value](entity)")


def test_an_incomplete_annotation_names_its_file_and_line(write):
    path = write("nlu.yml", "nlu:\n- intent: book\n  examples: |\n    - a table for [two](party_size)\n    - a table at [7pm](time\n")
    with pytest.raises(DataValidationError) as err:
        read_training_data(path)
    assert "nlu.yml: line 5: entity annotation '[7pm](time' is not complete" in str(err.value)


# --- the CLI: exit 2 before any step, one message, no traceback -------------------------------

CLI_CASES = [b for b in BAD_FILES if b[0] in ("bomb.yml", "merge.yml", "tag.yml", "long-field.csv", "open-quote.csv", "merged-rows.csv")] + [
    ("numeric-intent.jsonl", "\n".join(json.dumps({"text": f"hello {i}", "intent": i % 2}) for i in range(12)) + "\n",
     "training data is invalid (2 problem(s)):\n  - 'intent' is a number, not a string, in rows 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 2 more; "
     "write it as a JSON string, e.g. \"intent\": \"greet\""),
    ("list-text.jsonl", "\n".join(json.dumps({"text": [f"hello {i}"], "intent": "greet" if i % 2 else "bye"}) for i in range(12)) + "\n",
     "training data is invalid (2 problem(s)):\n  - 'text' is a list, not a string, in rows 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 2 more; "
     "write it as a JSON string, e.g. \"text\": \"hi there\""),
]


@pytest.mark.parametrize("name, content, message", CLI_CASES, ids=[b[0] for b in CLI_CASES])
def test_cli_run_exits_2_before_any_step(tmp_path, write, capsys, name, content, message):
    from botyard.pipelines.cli import main

    path = write(name, content)
    code = main(["run", "--data", path, "--models-root", str(tmp_path / "m"), "--pipeline-root", str(tmp_path / "r")])
    out, err = capsys.readouterr()
    assert code == 2
    assert f"botyard: error: {path}: {message}" in err
    assert "Traceback" not in out + err
    assert not (tmp_path / "m").exists() and not (tmp_path / "r").exists()  # no step ran


@pytest.mark.parametrize("name", ["bomb.yml", "tag.yml", "open-quote.csv", "numeric-intent.jsonl"])
def test_cli_run_exits_2_in_a_subprocess(tmp_path, write, name):
    _, content, message = next(b for b in CLI_CASES if b[0] == name)
    path = write(name, content)
    result = subprocess.run(
        [sys.executable, "-m", "botyard.pipelines.cli", "run", "--data", path, "--models-root", str(tmp_path / "m"), "--pipeline-root", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert f"botyard: error: {path}: {message}" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "m").exists() and not (tmp_path / "r").exists()
