"""Shared fixtures: repository paths, the shared benchmark data, hand-written training files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLE_BOT = REPO / "pipelines" / "sample_bot"


@pytest.fixture
def write(tmp_path):
    """Write ``text`` (str or bytes) to ``tmp_path / name`` and return the path as str."""

    def _write(name: str, text) -> str:
        path = tmp_path / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        return str(path)

    return _write


def tiny_rows(intents=("greet", "bye", "weather"), per_intent: int = 6) -> list[dict]:
    """Small, clearly separable training rows for fast tests."""
    words = {
        "greet": ["hello", "hi", "hey", "good morning", "greetings", "howdy", "hiya", "hello there"],
        "bye": ["bye", "goodbye", "see you", "farewell", "later", "ciao", "bye bye", "see ya"],
        "weather": ["rain today", "is it sunny", "weather forecast", "will it snow", "how hot is it", "cold outside", "storm coming", "temperature now"],
    }
    return [{"utterance": words[i][j % 8] + ("" if j < 8 else f" {j}"), "intent": i} for i in intents for j in range(per_intent)]
