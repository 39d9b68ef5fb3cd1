"""Training rows for the entity tagger with their values swapped: more contexts for every value.

A bot's annotated utterances show each value in a few contexts only ("wake me up at [7am](time)");
a copy of each such row with every span's value replaced by another value of the same entity type
seen in training ("wake me up at [half past six](time)") teaches the tagger that a type's values
go where its other values go (mention replacement, Dai & Adel 2020). Copies are drawn with a
fixed seed, so the same data always gives the same rows; only the tagger trains on them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from botyard.components.base import contracts as c


def swap_values(frame: pd.DataFrame, copies: int, seed: int) -> pd.DataFrame:
    """``frame`` followed by ``copies`` copies of each of its rows with spans, every span's
    value drawn anew from the values of its type in ``frame`` (offsets moved to match)."""
    if copies <= 0 or c.ENTITIES not in frame:
        return frame
    values: dict[str, list[str]] = {}
    for spans in frame[c.ENTITIES]:
        for span in spans or ():
            values.setdefault(span["entity"], []).append(span["value"])
    rng = np.random.default_rng(seed)
    annotated = frame[[bool(spans) for spans in frame[c.ENTITIES]]]
    extra = []
    for _ in range(copies):
        for _, row in annotated.iterrows():
            text, spans = row[c.UTTERANCE], sorted(row[c.ENTITIES], key=lambda s: s["start"])
            swapped, moved, end = "", [], 0
            for span in spans:
                choices = values[span["entity"]]
                value = choices[int(rng.integers(len(choices)))]
                swapped += text[end: span["start"]]
                moved.append({**span, "value": value, "start": len(swapped), "end": len(swapped) + len(value)})
                swapped += value
                end = span["end"]
            copy = row.copy()
            copy[c.UTTERANCE], copy[c.ENTITIES] = swapped + text[end:], moved
            extra.append(copy)
    return pd.concat([frame, pd.DataFrame(extra)], ignore_index=True) if extra else frame
