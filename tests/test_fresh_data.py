"""Fresh data on every retrain: new rows behind the same data_uri reach the model, with caching on.

kfp.local 2.17 caches like the KFP backend does (``local.init(enable_caching=True)``: a task's
key is its image, command and arguments, so ingest's key is the ``data_uri`` string). With the
cache holding ingest's result for the old file, the same ingest call (caching on) hands back
the old data, which is what KFP did to retrains; ``bot_training`` (ingest never cached, see
``UNCACHED_TASKS``) trains on the new rows.
"""


import json
import os

import pandas as pd
import pytest
from kfp import dsl, local

from botyard.components.base import contracts as c
from botyard.components.base.model_store import ModelStore
from botyard.components.ingest.component import ingest
from botyard.pipelines.bot_training import bot_training

from conftest import tiny_rows

pytestmark = pytest.mark.slow

TINY = {"epochs": 2, "embedding_dim": 8, "lstm_units": 8, "max_ngrams": 200, "max_char_ngrams": 200, "ngram_units": 8,
        "max_tokens": 500, "sequence_length": 12, "batch_size": 64, "patience": 1,
        "min_accuracy": 1.0}  # the gate (almost surely) refuses: no infra check or deploy, a shorter run


def write_rows(path, intents) -> None:
    pd.DataFrame(tiny_rows(intents=intents, per_intent=8)).rename(columns={"utterance": "text"}).to_csv(path, index=False)


@pytest.fixture
def cached_local(tmp_path):
    """kfp.local with its task cache on, as a KFP cluster has it."""
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "runs"),
               raise_on_error=True, enable_caching=True)
    yield tmp_path
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "runs"))


@dsl.pipeline(name="cached-ingest")
def cached_ingest(data_uri: str) -> str:
    return ingest(data_uri=data_uri).outputs["data_hash"]  # caching left on: the hazard


def test_a_run_at_the_same_uri_trains_on_the_new_rows_even_where_the_cache_holds_the_old(cached_local):
    data, models = str(cached_local / "nlu.csv"), str(cached_local / "models")
    write_rows(data, ("greet", "bye"))
    old_hash = cached_ingest(data_uri=data).output  # the cache now holds ingest(data_uri=data)
    write_rows(data, ("greet", "bye", "weather"))
    # control: the same ingest call with caching on hands back the old data (what KFP did)
    assert cached_ingest(data_uri=data).output == old_hash

    version = os.path.basename(bot_training(bot_id="fresh-bot", data_uri=data, models_root=models, **TINY).output)
    meta = ModelStore(models).metadata("fresh-bot", version)
    assert meta[c.LABELS] == ["bye", "greet", "weather"]
    assert meta[c.DATA_HASH] != old_hash
    runs = sorted(d for d in os.listdir(cached_local / "runs") if d.startswith("bot-training"))
    with open(os.path.join(cached_local, "runs", runs[-1], "ingest", "executor_output.json")) as f:
        outputs = json.load(f)["parameterValues"]
    assert (outputs["rows"], outputs["data_hash"]) == (24, meta[c.DATA_HASH])  # three intents of 8, read again
