"""Model store on a local folder and on S3 (moto): immutable published versions, atomic promotion,
gate verdicts beside versions, checked local copies of remote versions, clear errors."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import pytest

from botyard.components.base import contracts as c
from botyard.components.base import storage
from botyard.components.base.errors import ConfigError, ModelLoadError, ModelStoreError
from botyard.components.base.model_store import ModelStore, code_version


def _meta(data_hash="ab" * 32):
    return {c.DATA_HASH: data_hash, c.LABELS: ["a", "b"], c.OOS_THRESHOLD: 0.5, c.HYPERPARAMETERS: {"lr": 0.1}, c.METRICS: {"accuracy": 1.0}}


@pytest.fixture
def saved_model(tmp_path):
    path = tmp_path / "sm"
    (path / "variables").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"x" * 100)
    (path / "variables" / "variables.index").write_bytes(b"index")
    return str(path)


@pytest.fixture
def evaluation(tmp_path):
    path = tmp_path / "eval"
    path.mkdir()
    (path / c.EVALUATION_FILE).write_text('{"accuracy": 1.0}')
    return str(path)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return ModelStore(str(tmp_path / "models"))
    return ModelStore(f"s3://{request.getfixturevalue('s3')}/models")


def test_register_publishes_a_complete_immutable_version(store, saved_model, evaluation):
    first = store.register("bot-a", saved_model, _meta(), evaluation)
    second = store.register("bot-a", saved_model, _meta())
    assert first != second and store.versions("bot-a") == sorted([first, second])
    meta = store.metadata("bot-a", first)
    assert meta[c.BOT_ID] == "bot-a" and meta[c.VERSION] == first and meta[c.CREATED_AT]
    assert meta[c.DATA_HASH] == "ab" * 32 and meta[c.HYPERPARAMETERS] == {"lr": 0.1} and meta[c.METRICS] == {"accuracy": 1.0}
    assert meta[c.CODE_VERSION] == code_version() and meta[c.CODE_VERSION]["botyard"] == "0.1.0"
    files = storage.file_sizes(store.version_dir("bot-a", first))
    assert files == {
        "saved_model/saved_model.pb": 100, "saved_model/variables/variables.index": 5,
        f"evaluation/{c.EVALUATION_FILE}": 17, c.METADATA_FILE: files[c.METADATA_FILE], c.PUBLISHED_MARKER: files[c.PUBLISHED_MARKER],
    }  # fmt: skip
    manifest = json.loads(storage.read_bytes(storage.join(store.version_dir("bot-a", first), c.PUBLISHED_MARKER)))
    assert manifest[c.VERSION] == first and sorted(manifest[c.MANIFEST_FILES]) == sorted(set(files) - {c.PUBLISHED_MARKER})
    assert manifest[c.MANIFEST_FILES]["saved_model/saved_model.pb"]["size"] == 100
    # nothing left in staging, and the bot folder holds only the versions
    assert storage.listdir(store.bot_dir("bot-a")) == sorted([first, second])


def test_version_ids_sort_by_time_and_carry_the_data_hash(tmp_path):
    store = ModelStore(str(tmp_path))
    version = store.new_version_id("bot-a", "0123456789" * 6, datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert version == "20260102T030405Z-01234567"


def test_promote_and_current(store, saved_model):
    v1 = store.register("bot-a", saved_model, _meta())
    assert store.current("bot-a") is None and store.bots() == ["bot-a"]
    assert store.promote("bot-a", v1) is None
    v2 = store.register("bot-a", saved_model, _meta())
    assert store.promote("bot-a", v2) == v1 and store.current("bot-a") == v2
    assert ModelStore(store.root).current("bot-a") == v2  # a fresh reader sees the pointer
    with pytest.raises(ModelStoreError, match="bot 'bot-a' has no model version 'nope'"):
        store.promote("bot-a", "nope")


def test_an_unpublished_version_is_not_there(store, saved_model):
    """A version folder without its PUBLISHED marker (an upload running or interrupted)."""
    v1 = store.register("bot-a", saved_model, _meta())
    partial = "20990101T000000Z-abababab"
    storage.write_text(storage.join(store.version_dir("bot-a", partial), c.METADATA_FILE), json.dumps({**_meta(), c.BOT_ID: "bot-a", c.VERSION: partial, c.CREATED_AT: ""}))
    storage.put_file(os.path.join(saved_model, "saved_model.pb"), storage.join(store.saved_model_dir("bot-a", partial), "saved_model.pb"))
    for reader in (store, ModelStore(store.root)):
        assert reader.versions("bot-a") == [v1] and reader.latest("bot-a") == v1 and reader.bots() == ["bot-a"]
    not_published = rf"bot 'bot-a': model version '{partial}' under {store.root} is not published \(no PUBLISHED marker: its upload is still running or was interrupted\)"
    with pytest.raises(ModelStoreError, match=not_published):
        store.metadata("bot-a", partial)
    with pytest.raises(ModelStoreError, match=not_published):
        store.promote("bot-a", partial)
    with pytest.raises(ModelStoreError, match=not_published):
        store.local_version("bot-a", partial)
    assert store.current("bot-a") is None
    # a bot whose only version is partial is not a bot yet
    storage.write_text(storage.join(store.version_dir("bot-b", partial), c.METADATA_FILE), "{}")
    assert store.bots() == ["bot-a"]


def test_gate_verdicts_are_recorded_beside_the_version(store, saved_model):
    v1 = store.register("bot-a", saved_model, _meta())
    assert store.verdict("bot-a", v1) is None
    before = storage.file_sizes(store.version_dir("bot-a", v1))
    path = store.record_verdict("bot-a", v1, {"blessed": False, "reasons": ["FAIL: accuracy 0.400 >= minimum 0.500"]})
    assert path == storage.join(store.root, "bot-a", c.VERDICTS_DIR, f"{v1}.json")
    verdict = ModelStore(store.root).verdict("bot-a", v1)
    assert verdict["blessed"] is False and verdict["reasons"] == ["FAIL: accuracy 0.400 >= minimum 0.500"]
    assert verdict[c.VERSION] == v1 and verdict[c.JUDGED_AT]
    assert storage.file_sizes(store.version_dir("bot-a", v1)) == before  # the version itself is untouched
    assert store.versions("bot-a") == [v1]  # verdicts/ is not a version
    with pytest.raises(ModelStoreError, match="has no model version '20990101T000000Z-00000000'"):
        store.record_verdict("bot-a", "20990101T000000Z-00000000", {"blessed": True})


def test_remote_versions_load_from_a_checked_local_cache(s3, saved_model, evaluation, tmp_path):
    store = ModelStore(f"s3://{s3}/models", cache_dir=str(tmp_path / "cache"))
    v1 = store.register("bot-a", saved_model, _meta(), evaluation)
    local = store.local_version("bot-a", v1)
    assert local.startswith(str(tmp_path / "cache")) and local.endswith(os.path.join("bot-a", v1))
    with open(os.path.join(local, c.SAVED_MODEL_DIR, "saved_model.pb"), "rb") as f:
        assert f.read() == b"x" * 100
    assert json.load(open(os.path.join(local, c.METADATA_FILE)))[c.VERSION] == v1
    assert store.local_version("bot-a", v1) == local  # cached: not downloaded again
    # a remote file that no longer matches its manifest is refused, and no copy is left
    v2 = store.register("bot-a", saved_model, _meta())
    storage.write_bytes(storage.join(store.saved_model_dir("bot-a", v2), "saved_model.pb"), b"y" * 100)
    with pytest.raises(ModelLoadError, match=rf"{store.version_dir('bot-a', v2)}: file saved_model/saved_model.pb does not match PUBLISHED \(100 bytes, sha256 "):
        store.local_version("bot-a", v2)
    storage.put_file(os.path.join(saved_model, "saved_model.pb"), storage.join(store.saved_model_dir("bot-a", v2), "saved_model.pb"))
    storage.remove_tree(storage.join(store.saved_model_dir("bot-a", v2), "variables"))
    with pytest.raises(ModelLoadError, match="file saved_model/variables/variables.index listed in PUBLISHED is missing"):
        store.local_version("bot-a", v2)
    assert sorted(os.listdir(os.path.dirname(local))) == [v1]


def test_stage_downloads_a_remote_version_into_a_local_store(s3, saved_model, tmp_path):
    remote = ModelStore(f"s3://{s3}/models")
    v1 = remote.register("bot-a", saved_model, _meta())
    staged = ModelStore(str(tmp_path / "staged"))
    assert staged.stage(remote.version_dir("bot-a", v1), "bot-a") == v1
    assert staged.current("bot-a") == v1 and staged.versions("bot-a") == [v1]
    assert staged.metadata("bot-a", v1)[c.VERSION] == v1


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


def test_missing_root_has_no_bots(store):
    assert store.bots() == [] and store.versions("bot-a") == [] and store.current("bot-a") is None
