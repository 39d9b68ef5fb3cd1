"""Tables a person acts on when reviewing a bot's data: conflicting labels, near-duplicates across
intents, entity types; and a local run's task outputs read back (what the notebooks show)."""

from __future__ import annotations

import json
import os

import pytest

from botyard.components.base.data_checks import (
    NEAR_DUPLICATE_COLUMNS,
    UNMARKED_COLUMNS,
    label_conflicts,
    near_duplicates,
    unmarked_entity_values,
    validate_table,
)
from botyard.components.base.data_formats import read_training_data
from botyard.components.base.errors import ConfigError
from botyard.components.base.table import ENTITY_SUMMARY_COLUMNS, entity_summary, make_table
from botyard.pipelines.local_run import LocalRun

from conftest import SAMPLE_BOT


def _table(rows):
    return make_table({"utterance": u, "intent": i, "source_row": n} for n, (u, i) in enumerate(rows, start=2))


# --- conflicting labels --------------------------------------------------------------------------


def test_label_conflicts_lists_each_utterance_with_its_intents_and_rows():
    table = _table([("Hello there", "greet"), ("hello  there", "bye"), ("bye", "bye"), ("HELLO THERE", "greet"), ("", "greet")])
    conflicts = label_conflicts(table)
    assert conflicts.to_dict(orient="records") == [
        {"utterance": "hello there", "intents": ["bye", "greet"], "rows": [("greet", 2), ("bye", 3), ("greet", 5)]}
    ]


def test_label_conflicts_is_the_rule_validation_fails_on():
    table = _table([("Hello there", "greet"), ("hello  there", "bye")] + [(f"x {n}", "greet") for n in range(5)] + [(f"y {n}", "bye") for n in range(5)])
    errors = validate_table(table, "bot.csv").errors
    assert errors == ["utterance 'hello there' is labelled with different intents: 'bye' (row 3); 'greet' (row 2); keep one label (or run with on_label_conflict=warn or drop)"]
    assert list(label_conflicts(table)["utterance"]) == ["hello there"]


def test_no_conflicts_gives_an_empty_table_with_its_columns():
    conflicts = label_conflicts(read_training_data(str(SAMPLE_BOT / "nlu.yml")))
    assert conflicts.empty and list(conflicts.columns) == ["utterance", "intents", "rows"]


# --- near-duplicates -----------------------------------------------------------------------------

ROWS = [
    ("turn the kitchen lights on please", "lights_on"),  # row 2
    ("turn the kitchen lights off please", "lights_off"),  # row 3: one word from row 2, other intent
    ("turn the kitchen lights on now", "lights_on"),  # row 4: close to row 2, same intent: not listed
    ("what is the weather in paris", "weather"),  # row 5
    ("Turn the kitchen lights OFF please", "lights_on"),  # row 6: a conflict with row 3, not a near-duplicate
    ("play some jazz music", "music"),  # row 7
]


def test_near_duplicates_pairs_similar_utterances_of_different_intents_most_similar_first():
    pairs = near_duplicates(_table(ROWS), min_similarity=0.5)
    assert list(pairs.columns) == list(NEAR_DUPLICATE_COLUMNS)
    listed = [(row_a, row_b) for row_a, row_b in zip(pairs["row_a"], pairs["row_b"])]
    assert (2, 3) in listed  # on / off, across intents
    assert (2, 4) not in listed  # same intent
    assert (3, 6) not in listed  # the same text once normalised: label_conflicts lists it
    assert all(5 not in pair and 7 not in pair for pair in listed)  # unrelated wording
    assert list(pairs["similarity"]) == sorted(pairs["similarity"], reverse=True)
    first = pairs.iloc[0].to_dict()
    assert 0.5 <= first["similarity"] < 1.0
    assert {first["intent_a"], first["intent_b"]} in ({"lights_on", "lights_off"},)


def test_near_duplicates_threshold_and_limit():
    table = _table(ROWS)
    every = near_duplicates(table, min_similarity=0.3, limit=None)
    assert len(every) >= 2
    assert len(near_duplicates(table, min_similarity=0.3, limit=1)) == 1
    assert (near_duplicates(table, min_similarity=0.99)["similarity"] >= 0.99).all()
    assert (every["similarity"] >= 0.3).all()


def test_near_duplicates_of_one_intent_or_an_empty_table_are_empty():
    assert near_duplicates(_table([("hello", "greet"), ("hello you", "greet")]), 0.1).empty
    empty = near_duplicates(_table([]))
    assert empty.empty and list(empty.columns) == list(NEAR_DUPLICATE_COLUMNS)


@pytest.mark.parametrize("value", [0, -0.1, 1.5])
def test_near_duplicates_refuses_a_similarity_outside_0_to_1(value):
    with pytest.raises(ConfigError, match=rf"min_similarity = {value!r} is out of range; allowed: above 0 to 1"):
        near_duplicates(_table(ROWS), value)


# --- entities ------------------------------------------------------------------------------------


def test_entity_summary_counts_types_values_and_intents():
    table = make_table([
        {"utterance": "a large latte", "intent": "order", "entities": [
            {"start": 2, "end": 7, "value": "large", "entity": "size"}, {"start": 8, "end": 13, "value": "latte", "entity": "drink"}]},
        {"utterance": "a Latte please", "intent": "order", "entities": [{"start": 2, "end": 7, "value": "Latte", "entity": "drink"}]},
        {"utterance": "my mocha was cold", "intent": "complaint", "entities": [{"start": 3, "end": 8, "value": "mocha", "entity": "drink"}]},
        {"utterance": "hi", "intent": "greet"},
    ])
    summary = entity_summary(table)
    assert list(summary.columns) == list(ENTITY_SUMMARY_COLUMNS)
    assert summary.to_dict(orient="records") == [
        {"entity": "drink", "mentions": 3, "utterances": 3, "distinct_values": 2, "example_values": ["latte", "mocha"], "intents": ["complaint", "order"]},
        {"entity": "size", "mentions": 1, "utterances": 1, "distinct_values": 1, "example_values": ["large"], "intents": ["order"]},
    ]


def test_entity_summary_of_the_sample_bot_and_of_a_bot_without_entities():
    summary = entity_summary(read_training_data(str(SAMPLE_BOT / "nlu.yml")))
    assert set(summary["entity"]) == {"drink", "food", "size", "day", "place", "order_number"}
    assert summary.iloc[0]["entity"] == "drink"
    none = entity_summary(_table([("hi", "greet"), ("bye", "bye")]))
    assert none.empty and list(none.columns) == list(ENTITY_SUMMARY_COLUMNS)


def _span(text, value, entity):
    start = text.index(value)
    return {"start": start, "end": start + len(value), "value": value, "entity": entity}


def test_unmarked_entity_values_lists_a_value_left_unmarked_with_its_rows():
    rows = [
        ("set the den light to blue", "house_place", "den"),
        ("dim the Den lamp", "house_place", "Den"),
        ("turn off the den light, and the garage", None, None),  # row 4: "den" left unmarked
        ("play some jazz", "music_genre", "jazz"),
        ("play some jazz now", None, None),  # row 6: marked once only: below min_marked
        ("a garden party", None, None),  # "den" inside a word is not the value
    ]
    table = make_table(
        {"utterance": u, "intent": "iot", "source_row": n, "entities": [_span(u, v, e)] if e else []}
        for n, (u, e, v) in enumerate(rows, start=1)
    )
    found = unmarked_entity_values(table)
    assert list(found.columns) == list(UNMARKED_COLUMNS)
    assert found.to_dict(orient="records") == [
        {"value": "den", "entity": "house_place", "marked": 2, "unmarked": 1, "rows": [3],
         "example": "turn off the den light, and the garage"},
    ]
    assert list(unmarked_entity_values(table, min_marked=1)["value"]) == ["den", "jazz"]


def test_unmarked_entity_values_skips_words_marked_only_now_and_then_and_covered_words():
    rows = [("start the song", "player_setting", "start")] + [(f"start alarm {i}", None, None) for i in range(3)]
    rows += [("fly to new york city", "place_name", "new york city"), ("fly to new york", "place_name", "new york"),
             ("new york city at noon", "place_name", "new york city")]
    table = make_table(
        {"utterance": u, "intent": "x", "source_row": n, "entities": [_span(u, v, e)] if e else []}
        for n, (u, e, v) in enumerate(rows, start=1)
    )
    # "start": marked 1 of 4 times (below the share); "new york" inside a marked "new york city" is covered
    assert unmarked_entity_values(table, min_marked=1).empty
    assert list(unmarked_entity_values(table, min_marked=1, min_marked_share=0.0)["value"]) == ["start"]
    with pytest.raises(ConfigError, match="min_marked_share"):
        unmarked_entity_values(table, min_marked_share=2)
    with pytest.raises(ConfigError, match="min_marked"):
        unmarked_entity_values(table, min_marked=0)


def test_unmarked_entity_values_of_the_sample_bot_and_of_a_bot_without_entities():
    assert unmarked_entity_values(read_training_data(str(SAMPLE_BOT / "nlu.yml"))).empty
    none = unmarked_entity_values(_table([("hi", "greet"), ("bye", "bye")]))
    assert none.empty and list(none.columns) == list(UNMARKED_COLUMNS)


# --- a local run's outputs -----------------------------------------------------------------------


def test_local_run_task_outputs_reads_each_tasks_executor_output_in_finishing_order(tmp_path):
    run_dir = tmp_path / "bot-training-2026"
    outputs = {
        "ingest": {"parameterValues": {"rows": 3}, "artifacts": {"dataset": {"artifacts": [{"name": "dataset", "uri": "/x/ingest/dataset", "metadata": {"rows": 3}}]}}},
        "evaluate": {"artifacts": {"metrics": {"artifacts": [{"name": "metrics", "uri": "/x/evaluate/metrics", "metadata": {"accuracy": 0.9}}]}}},
        "gate": {"parameterValues": {"Output": True}},
    }
    for n, (task, doc) in enumerate(outputs.items()):
        (run_dir / task).mkdir(parents=True)
        path = run_dir / task / "executor_output.json"
        path.write_text(json.dumps(doc))
        os.utime(path, (1_000_000 + n, 1_000_000 + n))
    (run_dir / "deploy").mkdir()  # a task that did not run: no executor output
    run = LocalRun("b", "v", "/m/b/v", {}, str(run_dir), "log", 1.0)
    assert run.task_outputs() == {
        "ingest": {"parameters": {"rows": 3}, "artifacts": {"dataset": {"uri": "/x/ingest/dataset", "metadata": {"rows": 3}}}},
        "evaluate": {"parameters": {}, "artifacts": {"metrics": {"uri": "/x/evaluate/metrics", "metadata": {"accuracy": 0.9}}}},
        "gate": {"parameters": {"Output": True}, "artifacts": {}},
    }
    assert LocalRun("b", "v", "/m/b/v", {}, None, "log", 1.0).task_outputs() == {}
