"""Unblessed is never served, shown through the real pipeline and a real predictor process.

One predictor (``start_predictor``, hot reload every 0.3 s) watches a model store while
``bot_training`` runs twice on a small bot through kfp.local: first with
``min_accuracy=0.999`` so the promotion gate rejects the candidate (registered, never
promoted: the predictor answers 404, no live version), then with ``min_accuracy=0.0`` (blessed,
infra-checked, promoted: the predictor answers 200 with that version).
"""

from __future__ import annotations

import csv
import io
import time

import pytest

from botyard.components.base.model_store import ModelStore
from botyard.components.base.predictor_client import start_predictor
from botyard.pipelines.local_run import run_bot_training_locally

from conftest import tiny_rows
from waiting import wait_for

pytestmark = pytest.mark.slow

SMALL = {  # small train settings: this test is about what gets served, not quality
    "epochs": 3, "embedding_dim": 8, "lstm_units": 8, "max_ngrams": 200, "max_char_ngrams": 200, "ngram_units": 8,
}  # fmt: skip


def test_rejected_run_is_404_and_a_later_blessed_run_is_served(tmp_path):
    data = tmp_path / "bot.csv"
    with open(data, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "intent"])
        writer.writerows([row["utterance"], row["intent"]] for row in tiny_rows(per_intent=10))
    models, runs = str(tmp_path / "models"), str(tmp_path / "runs")
    store = ModelStore(models)
    with start_predictor(models, reload_interval=0.3, ready_timeout=180) as predictor:
        rejected = run_bot_training_locally(
            "tiny-bot", str(data), models, runs, parameters={**SMALL, "min_accuracy": 0.999}, console=io.StringIO()
        )
        assert store.versions("tiny-bot") == [rejected.version] and store.current("tiny-bot") is None
        # once the watcher has seen the bot's version, it says why it does not serve it
        wait_for(lambda: "no live version" in str(predictor.request("GET", "/v2/models/tiny-bot/ready")[1]), 30,
                  "the bot to be listed")
        time.sleep(1.0)  # a few more polls: still not served
        status, body = predictor.predict("tiny-bot", ["hello"])
        assert (status, body) == (404, {"error": (
            "bot 'tiny-bot' has no live version: it has 1 model version but none was promoted (a version goes live "
            "only once the promotion gate blessed it and deploy promoted it)"
        )})  # fmt: skip

        blessed = run_bot_training_locally(
            "tiny-bot", str(data), models, runs, parameters={**SMALL, "min_accuracy": 0.0}, console=io.StringIO()
        )
        assert store.current("tiny-bot") == blessed.version != rejected.version
        # bots load on their first request: once the watcher sees the promotion, a request is served
        status, body = wait_for(
            lambda: (answer := predictor.predict("tiny-bot", ["hello there"]))[0] != 404 and answer, 60,
            "the blessed version to be served",
        )
        assert status == 200, body
        assert body["predictions"][0]["model_version"] == blessed.version


def test_a_models_root_that_does_not_exist_serves_nothing_and_says_so(tmp_path):
    missing = tmp_path / "modles"  # a mistyped --models-root
    log_path = tmp_path / "predictor.log"

    def warning_logged() -> str:
        text = log_path.read_text(encoding="utf-8")
        return text if "does not exist" in text else ""

    with start_predictor(str(missing), reload_interval=0.3, ready_timeout=120, log_path=str(log_path)) as predictor:
        assert predictor.request("GET", "/v2/health/ready")[0] == 200  # up: the store may fill later
        assert predictor.predict("sample-bot", ["hello"])[0] == 404
        log = wait_for(warning_logged, 30, "the warning about the missing models root")
    assert f"{missing} does not exist: no bot is served until a model version is promoted there (check --models-root)" in log
