"""Shared mode end to end: a real ``botyard serve`` process behind the fake Kubernetes API.

The fake reports the shared InferenceService's address as the loopback predictor, so the
deploy step's smoke check (a real utterance, answered by the deployed version) runs against
the real server. Promoting a second version moves only the ``CURRENT`` pointer: the same
predictor process answers with it after its next poll, and nothing is written to the
InferenceService (no pod would restart on a cluster).
"""

from __future__ import annotations

import os

import pytest
from fake_kube import running_fake_kube

from botyard.components.base import contracts as c
from botyard.components.base.config import TrainConfig
from botyard.components.base.errors import DeployError
from botyard.components.base.model_store import ModelStore
from botyard.components.base.predictor_client import start_predictor
from botyard.components.base.table import make_table
from botyard.components.deploy.config import ClusterDeployConfig
from botyard.components.deploy.core import deploy_version
from botyard.pipelines.in_process import train_model

from conftest import tiny_rows

pytestmark = pytest.mark.slow

TINY = dict(epochs=3, embedding_dim=8, lstm_units=8, max_ngrams=200, max_char_ngrams=200, ngram_units=8, batch_size=8)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("shared")
    table = make_table(tiny_rows(per_intent=8))
    store = ModelStore(str(root / "models"))
    versions = []
    for n in range(2):
        out = str(root / f"m{n}")
        result = train_model(table, table, TrainConfig(**TINY, seed=n), out)
        meta = {c.DATA_HASH: f"{n:064d}", c.LABELS: result.labels, c.OOS_THRESHOLD: 0.0, c.HYPERPARAMETERS: {},
                c.METRICS: {"accuracy": 1.0}}
        versions.append(store.register("bot-a", os.path.join(out, c.SAVED_MODEL_DIR), meta))
    return store, versions


def test_promotion_reaches_the_running_shared_predictor_without_touching_the_service(store, tmp_path):
    models, (v1, v2) = store
    config = ClusterDeployConfig(namespace="botyard", mode="shared", ready_timeout_s=90, poll_interval_s=0.2,
                                 predictor_image="registry.example.com/botyard-predictor:1.0")
    with start_predictor(models.root, reload_interval=0.3, log_path=str(tmp_path / "predictor.log")) as predictor, \
            running_fake_kube() as (kube, api_client):
        kube.serve_at("botyard-shared", predictor.base_url)
        pid = predictor.process.pid

        first = deploy_version(models.root, "bot-a", v1, "cluster", config, api_client, smoke_utterance="good morning")
        assert (first.action, first.previous, models.current("bot-a")) == ("created", None, v1)
        assert [r.method for r in kube.writes()] == ["POST"]
        assert kube.writes()[0].body["spec"]["predictor"]["containers"][0]["args"][:3] == ["serve", "--models-root", models.root]

        second = deploy_version(models.root, "bot-a", v2, "cluster", config, api_client, smoke_utterance="good morning")
        assert (second.action, second.previous, models.current("bot-a")) == ("updated", v1, v2)
        assert [r.method for r in kube.writes()] == ["POST"]  # promotion wrote nothing to the service
        assert predictor.process.pid == pid and predictor.process.poll() is None  # the same process
        status, body = predictor.predict("bot-a", ["see you"])
        assert status == 200 and body["predictions"][0]["model_version"] == v2

        again = deploy_version(models.root, "bot-a", v2, "cluster", config, api_client, smoke_utterance="good morning")
        assert again.action == "unchanged"


def test_a_shared_rollout_the_predictor_never_serves_puts_the_pointer_back(store, tmp_path):
    models, (v1, v2) = store
    models.promote("bot-a", v1)
    config = ClusterDeployConfig(namespace="botyard", mode="shared", ready_timeout_s=2, poll_interval_s=0.5)
    with running_fake_kube() as (kube, api_client):
        kube.serve_at("botyard-shared", "http://127.0.0.1:9")  # nothing listens: the version never answers
        with pytest.raises(DeployError) as info:
            deploy_version(models.root, "bot-a", v2, "cluster", config, api_client, smoke_utterance="good morning")
    assert models.current("bot-a") == v1
    assert "smoke check against http://127.0.0.1:9 raised DeployError: 'good morning' sent to model 'bot-a' for 2s: " \
           f"never answered by version {v2}; last: http://127.0.0.1:9/v1/models/bot-a:predict unreachable" in str(info.value)
