"""Tiny trained models for the predictor tests (real SavedModels, a few seconds each)."""

from __future__ import annotations

import os

from botyard.components.base import contracts as c
from botyard.components.base.config import TrainConfig
from botyard.components.base.table import data_hash, make_table

INTENTS_A = {
    "greet": ["hello", "hi there", "good morning", "hey", "hello friend", "hi bot"],
    "weather": ["what is the weather", "will it rain today", "is it sunny", "weather forecast please", "how hot is it", "is it cold outside"],
    "bye": ["goodbye", "see you later", "bye bye", "talk to you soon", "farewell", "see ya"],
}
INTENTS_B = {
    "order": ["i want a coffee", "order a latte", "get me an espresso", "one cappuccino please", "i'd like tea", "a mocha please"],
    "hours": ["when do you open", "what are your hours", "are you open now", "closing time", "open on sunday", "opening hours"],
}


def _train(intents: dict[str, list[str]], out_dir: str) -> dict:
    from botyard.pipelines.in_process import train_model

    table = make_table({"utterance": u, "intent": i} for i, us in intents.items() for u in us)
    config = TrainConfig(epochs=2, embedding_dim=8, lstm_units=8, max_ngrams=200, max_char_ngrams=200, ngram_units=8)
    result = train_model(table, table, config, out_dir)
    return {
        c.DATA_HASH: data_hash(table), c.LABELS: result.labels, c.OOS_THRESHOLD: 0.0,
        c.HYPERPARAMETERS: config.to_dict(), c.METRICS: {},
    }  # fmt: skip


def train_tiny_models(out_dir) -> dict:
    """``{"A": (saved_model_dir, metadata), "B": (...)}``: model A (greet / weather / bye), B (order / hours)."""
    trained = {}
    for name, intents in (("A", INTENTS_A), ("B", INTENTS_B)):
        model_dir = os.path.join(str(out_dir), name)
        os.makedirs(model_dir)
        trained[name] = (os.path.join(model_dir, c.SAVED_MODEL_DIR), _train(intents, model_dir))
    return trained
