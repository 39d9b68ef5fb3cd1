"""Model store: immutable versions, atomic promotion, clear errors."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import pytest

from botyard.components.base import contracts as c
from botyard.components.base.errors import ConfigError, ModelLoadError, ModelStoreError
from botyard.components.base.model_store import ModelStore


def _meta(data_hash="ab" * 32):
    return {c.DATA_HASH: data_hash, c.LABELS: ["a", "b"], c.OOS_THRESHOLD: 0.5, c.HYPERPARAMETERS: {}, c.METRICS: {"accuracy": 1.0}}


@pytest.fixture
def saved_model(tmp_path):
    path = tmp_path / "sm"
    path.mkdir()
    (path / "saved_model.pb").write_bytes(b"x")
    return str(path)


def test_register_never_overwrites(tmp_path, saved_model):
    store = ModelStore(str(tmp_path / "models"))
    first = store.register("bot-a", saved_model, _meta())
    second = store.register("bot-a", saved_model, _meta())
    assert first != second and store.versions("bot-a") == sorted([first, second])
    meta = store.metadata("bot-a", first)
    assert meta[c.BOT_ID] == "bot-a" and meta[c.VERSION] == first and meta[c.CREATED_AT]
    assert os.path.exists(os.path.join(store.saved_model_dir("bot-a", first), "saved_model.pb"))
    assert not [n for n in os.listdir(store.bot_dir("bot-a")) if n.startswith(".")]  # no staging left


def test_version_ids_sort_by_time_and_carry_the_data_hash(tmp_path):
    store = ModelStore(str(tmp_path))
    version = store.new_version_id("bot-a", "0123456789" * 6, datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert version == "20260102T030405Z-01234567"


def test_promote_and_current(tmp_path, saved_model):
    store = ModelStore(str(tmp_path))
    v1 = store.register("bot-a", saved_model, _meta())
    assert store.current("bot-a") is None
    assert store.promote("bot-a", v1) is None
    v2 = store.register("bot-a", saved_model, _meta())
    assert store.promote("bot-a", v2) == v1 and store.current("bot-a") == v2
    assert store.bots() == ["bot-a"]
    with pytest.raises(ModelStoreError, match="bot 'bot-a' has no model version 'nope'"):
        store.promote("bot-a", "nope")


def test_broken_metadata_is_a_load_error(tmp_path, saved_model):
    store = ModelStore(str(tmp_path))
    v1 = store.register("bot-a", saved_model, _meta())
    path = os.path.join(store.version_dir("bot-a", v1), c.METADATA_FILE)
    json.dump({"bot_id": "bot-a"}, open(path, "w"))
    with pytest.raises(ModelLoadError, match="metadata lacks"):
        store.metadata("bot-a", v1)


def test_bot_ids_must_be_dns_names(tmp_path):
    with pytest.raises(ConfigError, match="bot id 'My Bot' is not valid"):
        ModelStore(str(tmp_path)).bot_dir("My Bot")
