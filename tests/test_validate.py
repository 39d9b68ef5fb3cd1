"""Validate: every problem gets its own message naming the file and rows; warnings don't fail."""

from __future__ import annotations

import json

import pytest

from botyard.components.base.config import ValidationConfig
from botyard.components.base.errors import ConfigError, DataValidationError
from botyard.components.base.data_formats import read_training_data
from botyard.components.base.data_checks import validate_table
from botyard.components.base.training_data import load_training_data

from conftest import SAMPLE_BOT


def _csv(rows):
    return "text,intent\n" + "".join(f"{t},{i}\n" for t, i in rows)


GOOD = [(f"{w} number {n}", w) for w in ("alpha", "beta") for n in range(5)]


def _validate(path, **config):
    return validate_table(read_training_data(path), path, ValidationConfig(**config))


def _error(path, **config):
    with pytest.raises(DataValidationError) as err:
        _validate(path, **config).raise_for_errors()
    return str(err.value)


def test_good_file_passes_and_reports_counts(write):
    report = _validate(write("good.csv", _csv(GOOD)))
    assert report.ok and report.warnings == []
    assert report.intent_counts == {"alpha": 5, "beta": 5}
    assert "| alpha | 5 |" in report.to_markdown()


def test_sample_bot_is_valid():
    report = _validate(str(SAMPLE_BOT / "nlu.yml"))
    assert report.ok, report.errors
    assert len(report.intent_counts) >= 10 and min(report.intent_counts.values()) >= 20


def test_empty_utterance(write):
    path = write("bot.csv", _csv(GOOD + [("  ", "alpha")]))
    assert "empty utterance in row 12" in _error(path)


def test_missing_intent_value(write):
    path = write("bot.csv", _csv(GOOD + [("orphan", "")]))
    assert "missing 'intent' in row 12" in _error(path)


def test_missing_text_field_in_jsonl(write):
    lines = [json.dumps({"text": t, "intent": i}) for t, i in GOOD] + [json.dumps({"intent": "alpha"})]
    assert "missing 'text' in row 11" in _error(write("bot.jsonl", "\n".join(lines)))


def test_fewer_than_two_intents(write):
    path = write("bot.csv", _csv([(f"alpha {n}", "alpha") for n in range(6)]))
    assert "found 1 intent(s) ['alpha']; a bot needs at least 2 intents" in _error(path)


def test_intent_with_too_few_examples(write):
    path = write("bot.csv", _csv(GOOD + [("gamma one", "gamma"), ("gamma two", "gamma")]))
    message = _error(path)
    assert "bot.csv: training data is invalid (1 problem(s))" in message
    assert "intent 'gamma' has only 2 training example(s), minimum is 5 (rows 12, 13)" in message
    assert _validate(path, min_examples_per_intent=2).ok


def test_conflicting_labels_after_normalisation(write):
    path = write("bot.csv", _csv(GOOD + [("Alpha  Number 0", "beta")]))
    assert "utterance 'alpha number 0' is labelled with different intents: 'alpha' (row 2); 'beta' (row 12)" in _error(path)


def test_entity_span_outside_text(write):
    rows = [json.dumps({"text": t, "intent": i}) for t, i in GOOD]
    rows.append(json.dumps({"text": "fly to rome", "intent": "alpha", "entities": [{"start": 7, "end": 40, "value": "rome", "entity": "city"}]}))
    assert "row 11: entity 'city' span [7, 40) lies outside the text (length 11)" in _error(write("bot.jsonl", "\n".join(rows)))


def test_entity_span_not_matching_value(write):
    rows = [json.dumps({"text": t, "intent": i}) for t, i in GOOD]
    rows.append(json.dumps({"text": "fly to rome", "intent": "alpha", "entities": [{"start": 0, "end": 3, "value": "rome", "entity": "city"}]}))
    assert "row 11: entity 'city' span [0, 3) is 'fly' but its value is 'rome'" in _error(write("bot.jsonl", "\n".join(rows)))


def test_all_problems_reported_at_once(write):
    path = write("bot.csv", _csv(GOOD + [("", "alpha"), ("x", "gamma")]))
    message = _error(path)
    assert "(2 problem(s))" in message and "empty utterance" in message and "intent 'gamma'" in message


def test_imbalance_and_duplicates_warn_but_pass(write):
    rows = GOOD + [(f"alpha extra {n}", "alpha") for n in range(70)] + [("beta number 0", "beta")]
    report = _validate(write("bot.csv", _csv(rows)))
    assert report.ok
    assert any("heavy class imbalance: 'alpha' has 75 examples, 'beta' has 6 (ratio 12.5 > 10)" in w for w in report.warnings)
    assert any("1 exact duplicate utterance(s)" in w for w in report.warnings)
    assert "## Warnings" in report.to_markdown()


def test_bad_split_values(write):
    path = write("bot.csv", "text,intent,split\n" + "".join(f"{t},{i},{'dev' if n == 0 else 'train'}\n" for n, (t, i) in enumerate(GOOD)))
    assert "unknown split value(s) ['dev'] in row 2" in _error(path)


def test_config_out_of_range_names_the_field():
    with pytest.raises(ConfigError, match=r"ValidationConfig.min_examples_per_intent = 0 is out of range"):
        ValidationConfig(min_examples_per_intent=0)


# --- label conflicts: on_label_conflict = fail / warn / drop ------------------------------------

# rows 2-11 are GOOD; row 12 repeats row 2's utterance with another intent (no split column)
CONFLICT = GOOD + [("Alpha  Number 0", "beta")]


def _split_csv(rows):
    return "text,intent,split\n" + "".join(f"{t},{i},{s}\n" for t, i, s in rows)


# a file with its own split: the conflict's train row 2 and val row 13 go, its test row 14 stays
SPLIT_ROWS = [(t, i, "train") for t, i in GOOD] + [("beta number 9", "beta", "val"), ("alpha number 0", "beta", "val"), ("ALPHA number 0", "gamma", "test")]


def test_conflict_fails_by_default_and_names_the_policy(write):
    message = _error(write("bot.csv", _csv(CONFLICT)))
    assert ("utterance 'alpha number 0' is labelled with different intents: 'alpha' (row 2); 'beta' (row 12); "
            "keep one label (or run with on_label_conflict=warn or drop)") in message


def test_conflict_warn_keeps_every_row_and_lists_it(write):
    path = write("bot.csv", _csv(CONFLICT))
    table = read_training_data(path)
    report = validate_table(table, path, ValidationConfig(on_label_conflict="warn"))
    assert report.ok and report.dropped_rows == []
    assert report.conflicts == ["'alpha number 0': 'alpha' (row 2); 'beta' (row 12)"]
    assert len(report.kept(table)) == len(table) == 11
    assert report.intent_counts == {"alpha": 5, "beta": 6}
    assert report.conflict_summary() == [
        "kept 1 utterance(s) labelled with different intents (on_label_conflict=warn):",
        "  - 'alpha number 0': 'alpha' (row 2); 'beta' (row 12)",
    ]
    assert "## Label conflicts: rows kept\n\n- 'alpha number 0': 'alpha' (row 2); 'beta' (row 12)" in report.to_markdown()


def test_conflict_drop_removes_train_and_val_rows_and_keeps_test_rows(write):
    path = write("bot.csv", _split_csv(SPLIT_ROWS))
    table = read_training_data(path)
    report = validate_table(table, path, ValidationConfig(on_label_conflict="drop", min_examples_per_intent=1))
    assert report.ok, report.errors
    assert report.dropped_rows == [2, 13]
    assert report.conflicts == ["'alpha number 0': 'alpha' (row 2); 'beta' (row 13); 'gamma' (row 14); dropped rows 2, 13; kept test row 14"]
    kept = report.kept(table)
    assert sorted(kept["source_row"]) == [r for r in range(3, 15) if r != 13]
    assert kept.loc[kept["source_row"] == 14, "split"].item() == "test"
    assert report.intent_counts == {"alpha": 4, "beta": 6, "gamma": 1}
    assert report.conflict_summary()[0] == (
        "dropped 2 train/val row(s) of 1 utterance(s) labelled with different intents (on_label_conflict=drop):"
    )
    markdown = report.to_markdown()
    assert "## Label conflicts: rows dropped\n\n2 train/val row(s) removed (rows 2, 13); test rows are kept as given." in markdown


def test_conflict_drop_without_a_split_removes_every_conflicting_row(write):
    path = write("bot.csv", _csv(CONFLICT))
    report = validate_table(read_training_data(path), path, ValidationConfig(on_label_conflict="drop"))
    assert report.dropped_rows == [2, 12]
    # what is left is checked as it will be trained on: alpha now has 4 examples
    assert report.errors == [
        "intent 'alpha' has only 4 training example(s), minimum is 5 (rows 3, 4, 5, 6); add examples or lower min_examples_per_intent"
    ]


def test_validate_step_passes_on_the_kept_rows(write, tmp_path):
    from botyard.components.base.table import read_table, write_table
    from botyard.components.validate.core import validate

    path = write("bot.csv", _split_csv(SPLIT_ROWS))
    ingested = str(tmp_path / "ingested.jsonl")
    write_table(read_training_data(path), ingested)
    out, md = str(tmp_path / "validated.jsonl"), str(tmp_path / "report.md")
    validate(ingested, path, ValidationConfig(on_label_conflict="drop", min_examples_per_intent=1), out, md)
    assert sorted(read_table(out)["source_row"]) == [r for r in range(3, 15) if r != 13]
    assert "rows dropped" in open(md).read()
    validate(ingested, path, ValidationConfig(on_label_conflict="warn", min_examples_per_intent=1), out, md)
    assert len(read_table(out)) == 13
    with pytest.raises(DataValidationError, match="labelled with different intents"):
        validate(ingested, path, ValidationConfig(min_examples_per_intent=1), out, md)
    assert "# Training data validation: FAILED" in open(md).read()


def test_conflict_policy_is_checked_and_read_from_run_parameters():
    with pytest.raises(ConfigError, match=r"ValidationConfig.on_label_conflict = 'skip' is not allowed; use one of fail, warn, drop"):
        ValidationConfig(on_label_conflict="skip")
    config = ValidationConfig.from_run_parameters({"on_label_conflict": "drop", "min_examples_per_intent": "3", "epochs": 4})
    assert (config.on_label_conflict, config.min_examples_per_intent) == ("drop", 3)
    assert ValidationConfig.from_run_parameters(None) == ValidationConfig()


# --- field types: a JSON Lines value of the wrong type fails here, not in train ----------------


def _jsonl(rows):
    return "\n".join(json.dumps(r) for r in rows) + "\n"


GOOD_JSONL = [{"text": t, "intent": i} for t, i in GOOD]


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"text": "gamma 1", "intent": 7}, "'intent' is a number, not a string, in row 11; write it as a JSON string, e.g. \"intent\": \"greet\""),
        ({"text": "gamma 1", "intent": 7.5}, "'intent' is a number, not a string, in row 11"),
        ({"text": "gamma 1", "intent": True}, "'intent' is a boolean, not a string, in row 11"),
        ({"text": "gamma 1", "intent": ["alpha"]}, "'intent' is a list, not a string, in row 11"),
        ({"text": 12, "intent": "alpha"}, "'text' is a number, not a string, in row 11; write it as a JSON string, e.g. \"text\": \"hi there\""),
        ({"text": {"en": "hi"}, "intent": "alpha"}, "'text' is an object, not a string, in row 11"),
        ({"text": "gamma 1", "intent": "alpha", "split": 1}, "'split' is a number, not a string, in row 11; write it as a JSON string, e.g. \"split\": \"train\""),
        ({"text": None, "intent": "alpha"}, "missing 'text' in row 11"),
        ({"text": "gamma 1", "intent": None}, "missing 'intent' in row 11"),
    ],
)
def test_non_string_fields_fail_validation_naming_the_row(write, bad, message):
    assert message in _error(write("bot.jsonl", _jsonl(GOOD_JSONL + [bad])))


def test_numeric_intents_never_pass_validation(write):
    """Numbers as intents used to pass validation (and the model trained on them failed in train)."""
    rows = [{"text": f"utterance {n}", "intent": n % 2} for n in range(20)]
    path = write("bot.jsonl", _jsonl(rows))
    report = _validate(path)
    assert not report.ok and report.intent_counts == {}
    assert report.errors[0] == "'intent' is a number, not a string, in rows 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 10 more; write it as a JSON string, e.g. \"intent\": \"greet\""
    with pytest.raises(DataValidationError):
        load_training_data(path)


def test_rows_of_the_wrong_type_do_not_hide_the_good_ones(write):
    report = _validate(write("bot.jsonl", _jsonl(GOOD_JSONL + [{"text": 1, "intent": "alpha"}, {"text": "x", "intent": 2}])))
    assert report.intent_counts == {"alpha": 5, "beta": 5}
    assert report.errors == [
        "'intent' is a number, not a string, in row 12; write it as a JSON string, e.g. \"intent\": \"greet\"",
        "'text' is a number, not a string, in row 11; write it as a JSON string, e.g. \"text\": \"hi there\"",
    ]


def test_entity_names_must_be_strings(write):
    rows = GOOD_JSONL + [{"text": "fly to rome", "intent": "alpha", "entities": [{"start": 7, "end": 11, "value": "rome", "entity": 5}]}]
    assert "row 11: entity {'start': 7, 'end': 11, 'value': 'rome', 'entity': 5} needs integer 'start', 'end' and an 'entity' name" in _error(write("bot.jsonl", _jsonl(rows)))


def test_entities_without_integer_spans_are_reported_not_crashed_on(tmp_path, write):
    """The ingest step hashes the table before validate runs, so unvalidated spans must not crash it."""
    from botyard.components.ingest.core import ingest

    rows = GOOD_JSONL + [{"text": "fly to rome", "intent": "alpha", "entities": [{"entity": "city"}, {"start": "7", "end": None, "entity": "city"}, {"start": 1, "end": 2, "entity": "x", "value": "l"}]}]
    path = write("bot.jsonl", _jsonl(rows))
    result = ingest(path, str(tmp_path / "table.jsonl"))
    assert result.rows == 11 and len(result.data_hash) == 64
    assert "row 11: entity {'entity': 'city'} needs integer 'start', 'end' and an 'entity' name" in _error(path)


def test_overlapping_entity_spans_fail_naming_the_row(write):
    from botyard.components.base.data_formats import read_training_data
    from botyard.components.base.data_checks import validate_table

    rows = [{"text": f"fly to paris {i}", "intent": "travel"} for i in range(5)]
    rows += [{"text": f"hello {i}", "intent": "greet"} for i in range(5)]
    rows[0]["entities"] = [{"start": 7, "end": 12, "value": "paris", "entity": "city"},
                           {"start": 10, "end": 14, "value": "is 0", "entity": "code"}]
    path = write("bot.jsonl", "\n".join(json.dumps(r) for r in rows))
    report = validate_table(read_training_data(path), path)
    assert report.errors == ["row 1: entity spans overlap: 'city' [7, 12) 'paris' and 'code' [10, 14) 'is 0'; "
                             "an utterance's entities must not overlap"]


def test_an_entity_type_with_few_examples_warns_with_its_count(write):
    from botyard.components.base.config import ValidationConfig
    from botyard.components.base.data_formats import read_training_data
    from botyard.components.base.data_checks import validate_table

    rows = [{"text": f"fly to paris {i}", "intent": "travel",
             "entities": [{"start": 7, "end": 12, "value": "paris", "entity": "city"}] if i < 2 else []} for i in range(5)]
    rows += [{"text": f"hello {i}", "intent": "greet"} for i in range(5)]
    path = write("bot.jsonl", "\n".join(json.dumps(r) for r in rows))
    report = validate_table(read_training_data(path), path, ValidationConfig(min_examples_per_entity=3))
    assert report.ok
    assert "entity 'city' has only 2 annotated example(s), minimum is 3 (rows 1, 2); add examples or the tagger will rarely find it" in report.warnings


def test_an_entity_value_left_unmarked_warns_naming_the_rows(write):
    from botyard.components.base.data_formats import read_training_data
    from botyard.components.base.data_checks import validate_table

    rows = [{"text": f"fly to paris {i}", "intent": "travel",
             "entities": [{"start": 7, "end": 12, "value": "paris", "entity": "city"}]} for i in range(4)]
    rows += [{"text": "paris in spring", "intent": "travel"}, {"text": "hello paris", "intent": "greet"}]
    rows += [{"text": f"hello {i}", "intent": "greet"} for i in range(4)]
    path = write("bot.jsonl", "\n".join(json.dumps(r) for r in rows))
    report = validate_table(read_training_data(path), path)
    assert report.ok  # a warning: the run goes on
    assert report.warnings == [
        "1 entity value(s) marked in some utterances are left unmarked in 2 other place(s): 'paris' (city, marked 4x, "
        "unmarked in rows 5, 6); the tagger learns from both, so mark each where it is meant "
        "(data_checks.unmarked_entity_values, shown in notebook 1, lists them all)"
    ]
    assert "left unmarked" in report.to_markdown()
