"""End to end on object storage: ``botyard run`` with data and model store on S3 (moto on
127.0.0.1; the kfp.local steps are subprocesses and reach it through the inherited AWS_*
variables), then a predictor on ``--models-root s3://bots/models`` answers for the bot over
HTTP and never serves a version whose upload did not finish."""

from __future__ import annotations

import contextlib
import io
import json
import time

import boto3
import pytest

from botyard.components.base import contracts as c
from botyard.components.base.contracts import NO_LIVE_VERSION
from botyard.components.base import storage
from botyard.components.base.model_store import ModelStore
from botyard.components.base.predictor_client import start_predictor
from botyard.pipelines.cli import main

from conftest import SAMPLE_BOT

pytestmark = pytest.mark.slow

TINY = {"epochs": 3, "embedding_dim": 8, "lstm_units": 8, "max_ngrams": 300, "max_char_ngrams": 300, "ngram_units": 16,
        "batch_size": 16, "min_accuracy": 0.0,
        "entity_epochs": 2, "entity_embedding_dim": 8, "entity_lstm_units": 8, "entity_char_filters": 4}  # fmt: skip
ROOT = "s3://bots/models"


def _copy_unpublished(store: ModelStore, bot_id: str, version: str, to_bot: str, to_version: str) -> None:
    """Every file of a published version but its PUBLISHED marker: what a crashed upload leaves
    (a complete, loadable SavedModel that was never published)."""
    source = store.version_dir(bot_id, version)
    for rel in storage.file_sizes(source):
        if rel != c.PUBLISHED_MARKER:
            storage.copy_file(storage.join(source, rel), storage.join(store.version_dir(to_bot, to_version), rel))


def test_run_on_s3_then_serve_from_s3(s3, s3_server, tmp_path):
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="bots")
    storage.put_file(str(SAMPLE_BOT / "nlu.yml"), "s3://bots/x/nlu.yml")
    args = ["run", "--bot-id", "x", "--data", "s3://bots/x/nlu.yml", "--models-root", ROOT,
            "--pipeline-root", str(tmp_path / "runs")]  # fmt: skip
    for key, value in TINY.items():
        args += ["--param", f"{key}={value}"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(args)
    printed = out.getvalue()
    assert code == 0, printed

    store = ModelStore(ROOT)
    (version,) = store.versions("x")
    assert f"model version path: {ROOT}/x/{version}" in printed and "promotion gate:    passed" in printed
    assert "infra check:       passed" in printed and "deployed:          yes (promoted; previous version: none)" in printed
    assert f"serve it:  botyard serve --models-root {ROOT} " in printed
    assert store.current("x") == version  # deploy moved the pointer on S3
    meta = store.metadata("x", version)
    assert meta[c.DATA_HASH] and version.endswith(meta[c.DATA_HASH][:8]) and meta[c.CODE_VERSION]["botyard"] == "0.1.0"
    assert meta[c.HYPERPARAMETERS]["epochs"] == 3 and set(meta[c.METRICS]) >= {"accuracy", "macro_f1"}
    verdict = store.verdict("x", version)
    assert verdict["blessed"] is True and verdict[c.VERSION] == version
    assert storage.exists(storage.join(store.version_dir("x", version), c.EVALUATION_DIR, c.CONFUSION_MATRIX_FILE))
    assert not storage.exists(storage.join(store.bot_dir("x"), c.STAGING_DIR))  # no staging left

    # what crashed uploads leave behind: a newer unpublished version of a bot with a promoted
    # one, and a bot whose only version is unpublished
    _copy_unpublished(store, "x", version, "x", "20991231T235959Z-ffffffff")
    _copy_unpublished(store, "x", version, "half", version)
    assert store.latest("x") == version and store.bots() == ["x"]

    with start_predictor(ROOT, reload_interval=0.5, wait_for_bots=["x"], log_path=str(tmp_path / "predictor.log")) as predictor:
        status, body = predictor.predict("x", ["can I get a large latte", "hello"])
        assert status == 200, body
        assert [p["model_version"] for p in body["predictions"]] == [version, version]
        assert all(p["intent"] in meta[c.LABELS] for p in body["predictions"])
        status, body = predictor.predict("half", ["hello"])
        assert status == 404, body
        time.sleep(2.0)  # a few reloads over the unpublished files: still nothing new served
        assert predictor.predict("x", ["hello"])[1]["predictions"][0]["model_version"] == version
        assert predictor.predict("half", ["hello"])[0] == 404
        # publishing (the marker, last) is what makes a version appear
        manifest = json.loads(storage.read_bytes(storage.join(store.version_dir("x", version), c.PUBLISHED_MARKER)))
        storage.write_bytes(storage.join(store.version_dir("half", version), c.PUBLISHED_MARKER), json.dumps(manifest).encode())
        # ... and promotion what makes it live: published but never promoted is still not served
        deadline = time.monotonic() + 60
        while NO_LIVE_VERSION not in str(predictor.predict("half", ["hello"])[1]) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert predictor.predict("half", ["hello"])[0] == 404
        store.promote("half", version)
        deadline = time.monotonic() + 120
        while predictor.predict("half", ["hello"])[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert predictor.predict("half", ["hello"])[1]["predictions"][0]["model_version"] == version
