"""The tagger's extra training rows: every span's value swapped for another value of its type."""

import pandas as pd

from botyard.components.base import contracts as c
from botyard.components.train.augment import swap_values


def _frame():
    rows = [
        ("wake me up at 7am please", "alarm", [{"entity": "time", "value": "7am", "start": 14, "end": 17}]),
        ("book a table for two at half past six", "book",
         [{"entity": "party_size", "value": "two", "start": 17, "end": 20},
          {"entity": "time", "value": "half past six", "start": 24, "end": 37}]),
        ("a table for four", "book", [{"entity": "party_size", "value": "four", "start": 12, "end": 16}]),
        ("hello there", "greet", []),
    ]
    return pd.DataFrame({c.UTTERANCE: [r[0] for r in rows], c.INTENT: [r[1] for r in rows], c.ENTITIES: [r[2] for r in rows]})


def test_each_annotated_row_gets_copies_whose_spans_point_at_their_new_values():
    frame = _frame()
    rows = swap_values(frame, copies=2, seed=3)
    assert len(rows) == len(frame) + 2 * 3  # the row without spans is not copied
    assert rows.head(len(frame)).equals(frame)
    seen = {(s["entity"], s["value"]) for spans in frame[c.ENTITIES] for s in spans}
    for text, intent, spans in zip(rows[c.UTTERANCE][4:], rows[c.INTENT][4:], rows[c.ENTITIES][4:]):
        assert intent in {"alarm", "book"}
        for span in spans:
            assert text[span["start"]: span["end"]] == span["value"]
            assert (span["entity"], span["value"]) in seen  # a value of the same type, from training
    assert "wake me up at " in rows[c.UTTERANCE][4] and rows[c.UTTERANCE][4].endswith(" please")


def test_swapping_is_deterministic_and_off_at_zero_copies():
    frame = _frame()
    assert swap_values(frame, 1, seed=5).equals(swap_values(frame, 1, seed=5))
    assert swap_values(frame, 0, seed=5) is frame
