"""Promotion gate verdicts and the local deploy / rollback of model versions."""

from __future__ import annotations

import os

import pytest

from botyard.components.base import contracts as c
from botyard.components.base.config import TrainConfig
from botyard.components.deploy.core import check_blessed, deploy_version, rollback
from botyard.components.base.errors import ConfigError, DeployError, ModelStoreError
from botyard.components.base.artifacts import read_blessing, write_blessing
from botyard.components.base.contracts import BLESSED_MARKER, NOT_BLESSED_MARKER
from botyard.components.evaluate.core import evaluate_model_dir
from botyard.components.gate.core import GateConfig, judge, run_gate, score_live
from botyard.components.base.model_store import ModelStore
from botyard.components.base.table import make_table
from botyard.pipelines.in_process import train_model

from conftest import tiny_rows

TINY = dict(epochs=4, embedding_dim=8, lstm_units=8, max_ngrams=200, max_char_ngrams=200, ngram_units=16, batch_size=8)


def _scores(version, accuracy, recall, f1=None):
    return {"version": version, "accuracy": accuracy, "macro_f1": f1 if f1 is not None else accuracy, "per_intent_recall": recall}


def test_first_run_is_judged_on_value_thresholds_only():
    blessed, reasons = judge(_scores("v1", 0.8, {"a": 1.0}), None, GateConfig(min_accuracy=0.7))
    assert blessed
    assert "first run: no live version, so only value thresholds apply" in reasons
    blessed, reasons = judge(_scores("v1", 0.6, {"a": 1.0}), None, GateConfig(min_accuracy=0.7))
    assert not blessed and reasons[0] == "FAIL: accuracy 0.600 >= minimum 0.700"


def test_accuracy_drop_against_live_blocks():
    blessed, reasons = judge(_scores("v2", 0.80, {"a": 1.0}), _scores("v1", 0.90, {"a": 1.0}), GateConfig())
    assert not blessed
    assert "FAIL: accuracy change -0.100 vs live v1 (maximum drop 0.020)" in reasons


def test_intent_recall_drop_blocks_and_names_the_intent():
    live = _scores("v1", 0.9, {"a": 1.0, "b": 1.0})
    candidate = _scores("v2", 0.9, {"a": 1.0, "b": 0.5, "new": 1.0})
    blessed, reasons = judge(candidate, live, GateConfig())
    assert not blessed
    assert "FAIL: intent 'b' recall fell 0.500 (from 1.000 to 0.500; maximum drop 0.340)" in reasons


def test_better_candidate_is_blessed_with_every_reason():
    blessed, reasons = judge(_scores("v2", 0.95, {"a": 1.0}), _scores("v1", 0.90, {"a": 1.0}), GateConfig(min_macro_f1=0.9))
    assert blessed and len(reasons) == 4 and all(r.startswith("ok: ") for r in reasons)


def test_no_threshold_configured_is_never_blessed():
    config = GateConfig(min_accuracy=None, max_accuracy_drop=None, max_intent_recall_drop=None)
    blessed, reasons = judge(_scores("v1", 1.0, {}), None, config)
    assert not blessed and "no threshold is configured" in reasons[0]


def test_gate_config_range():
    with pytest.raises(ConfigError, match=r"GateConfig.min_accuracy = 1.5 is out of range"):
        GateConfig(min_accuracy=1.5)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A model store with two real tiny versions of one bot."""
    root = tmp_path_factory.mktemp("store")
    table = make_table(tiny_rows(per_intent=8))
    store = ModelStore(str(root / "models"))
    versions, evaluations = [], []
    for n in range(2):
        out = str(root / f"m{n}")
        result = train_model(table, table, TrainConfig(**TINY, seed=n), out)
        evaluation = evaluate_model_dir(out, table, table, str(root / f"e{n}")).to_json()
        meta = {c.DATA_HASH: f"{n:064d}", c.LABELS: result.labels, c.OOS_THRESHOLD: evaluation[c.OOS_THRESHOLD],
                c.HYPERPARAMETERS: {}, c.METRICS: evaluation[c.METRICS]}
        versions.append(store.register("bot-a", os.path.join(out, c.SAVED_MODEL_DIR), meta))
        evaluations.append(evaluation)
    return store, versions, table, evaluations


def test_run_gate_scores_candidate_and_live_on_the_same_data(store, tmp_path):
    models, (v1, v2), table, (e1, e2) = store
    first = run_gate(models.root, "bot-a", v1, e1, table, GateConfig(min_accuracy=0.0))
    assert first.blessed and first.live is None
    models.promote("bot-a", v1)
    second = run_gate(models.root, "bot-a", v2, e2, table, GateConfig(min_accuracy=0.0, max_accuracy_drop=1.0, max_intent_recall_drop=1.0))
    assert second.live["version"] == v1 and second.candidate["version"] == v2
    assert set(second.candidate["per_intent_recall"]) == {"bye", "greet", "weather"}
    # one scoring path: the live version scored by the gate == what evaluate reported for it
    assert second.live["accuracy"] == e1[c.METRICS]["accuracy"] and second.candidate["accuracy"] == e2[c.METRICS]["accuracy"]
    write_blessing(str(tmp_path), second.to_json())
    assert (tmp_path / BLESSED_MARKER).exists() and not (tmp_path / NOT_BLESSED_MARKER).exists()
    assert read_blessing(str(tmp_path))["blessed"] is True
    assert "# Promotion gate: BLESSED" in second.to_markdown()


def test_local_deploy_promotes_and_rollback_restores(store):
    models, (v1, v2), _, _ = store
    models.promote("bot-a", v1)
    deployed = deploy_version(models.root, "bot-a", v2)
    assert (deployed.action, deployed.previous, models.current("bot-a")) == ("promoted", v1, v2)
    assert deploy_version(models.root, "bot-a", v2).action == "unchanged"
    restored = rollback(models.root, "bot-a")
    assert (restored.version, restored.previous, models.current("bot-a")) == (v1, v2, v1)
    assert sorted(models.versions("bot-a")) == sorted([v1, v2])  # nothing deleted
    with pytest.raises(ModelStoreError, match="no model version older than"):
        rollback(models.root, "bot-a")
    assert rollback(models.root, "bot-a", to_version=v2).version == v2
    with pytest.raises(ModelStoreError, match="has no model version 'nope'"):
        rollback(models.root, "bot-a", to_version="nope")
    # a mistyped bot id (or models root) is named as such, not as a missing older version
    with pytest.raises(ModelStoreError, match=r"bot 'bot-z' has no model version under .*check the bot id and --models-root"):
        rollback(models.root, "bot-z")


def test_deploy_refuses_what_was_not_blessed():
    with pytest.raises(DeployError, match="not blessed: FAIL: accuracy 0.100"):
        check_blessed({"blessed": True}, {"blessed": False, "reasons": ["FAIL: accuracy 0.100 >= minimum 0.500"]})
    with pytest.raises(ConfigError, match="deploy target 'mars'"):
        deploy_version("/tmp", "bot-a", "v", target="mars")


def test_cluster_deploy_and_rollback_move_the_inference_service_and_the_pointer(store):
    """deploy_version / rollback with target=cluster against the fake Kubernetes API."""
    from fake_kube import running_fake_kube

    from botyard.components.deploy.config import ClusterDeployConfig

    models, (v1, v2), _, _ = store
    config = ClusterDeployConfig(namespace="botyard", ready_timeout_s=5, poll_interval_s=0.01)
    with running_fake_kube() as (server, api_client):
        first = deploy_version(models.root, "bot-a", v1, "cluster", config, api_client)
        second = deploy_version(models.root, "bot-a", v2, "cluster", config, api_client)
        assert (first.action, second.action, models.current("bot-a")) == ("created", "updated", v2)
        assert server.get("bot-a")["spec"]["predictor"]["model"]["storageUri"] == models.version_dir("bot-a", v2)
        back = rollback(models.root, "bot-a", target="cluster", cluster=config, api_client=api_client)
        assert (back.version, back.previous, models.current("bot-a")) == (v1, v2, v1)
        assert server.get("bot-a")["spec"]["predictor"]["model"]["storageUri"] == models.version_dir("bot-a", v1)


def test_the_gate_scores_a_bot_with_an_oos_intent_as_evaluate_does(tmp_path):
    """Regression: the gate once took argmax over every label, learned ``oos`` included, and
    reported a different accuracy than evaluate on the same rows."""
    rows = tiny_rows(intents=("greet", "bye"), per_intent=8)
    rows += [{"utterance": u, "intent": c.OOS_INTENT} for u in
             ("what is the capital of peru", "play some jazz", "how tall is everest", "sing a song",
              "book a flight", "translate this", "who won the game", "order pizza")]
    table = make_table(rows)
    out = str(tmp_path / "model")
    train_model(table, table, TrainConfig(**TINY), out)
    evaluation = evaluate_model_dir(out, table, table, str(tmp_path / "evaluation")).to_json()
    store = ModelStore(str(tmp_path / "models"))
    labels = ["bye", "greet", c.OOS_INTENT]
    version = store.register("oos-bot", os.path.join(out, c.SAVED_MODEL_DIR), {
        c.DATA_HASH: "0" * 64, c.LABELS: labels, c.OOS_THRESHOLD: evaluation[c.OOS_THRESHOLD],
        c.HYPERPARAMETERS: {}, c.METRICS: evaluation[c.METRICS]})
    live = score_live(store, "oos-bot", version, table)
    assert live["accuracy"] == store.metadata("oos-bot", version)[c.METRICS]["accuracy"]
    assert live["macro_f1"] == evaluation[c.METRICS]["macro_f1"]
    assert set(live["per_intent_recall"]) == {"bye", "greet"}  # ``oos`` is never an answer, so never an intent scored
