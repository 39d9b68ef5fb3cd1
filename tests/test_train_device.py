"""The train step's device: recorded in its metrics; a requested GPU that TensorFlow cannot see fails the step.

This machine has no GPU, so the pipeline compiled for a GPU cluster (``build_bot_training(GpuConfig())``)
is exactly the broken-node case: its train step must fail with the message, unless the run
sets ``allow_cpu_training``, and then record ``device: CPU``. Runs through kfp.local.
"""

import json
import os

import pandas as pd
import pytest
from kfp import local

from botyard.components.base.config import GpuConfig, TrainConfig
from botyard.components.base.errors import ConfigError
from botyard.components.train.core import configure_devices
from botyard.pipelines.bot_training import build_bot_training

from conftest import tiny_rows

pytestmark = pytest.mark.slow

TINY = {"epochs": 1, "embedding_dim": 8, "lstm_units": 8, "max_ngrams": 200, "max_char_ngrams": 200, "ngram_units": 8,
        "max_tokens": 500, "sequence_length": 12, "batch_size": 64, "patience": 1, "min_accuracy": 1.0}
MESSAGE = "the pipeline asked for a GPU for the train step, but TensorFlow sees none"


def test_configure_devices_refuses_a_missing_gpu_that_was_asked_for():
    with pytest.raises(ConfigError) as info:
        configure_devices(TrainConfig(), gpu_requested=True)
    assert str(info.value).startswith(MESSAGE + " (TensorFlow 2.21.0, built with CUDA: ")
    assert str(info.value).endswith(
        "run the train step in the trainer image (CUDA and cuDNN) on a node whose GPU the NVIDIA device plugin "
        "exposes, or set the run parameter allow_cpu_training=true to train on the CPU"
    )
    assert configure_devices(TrainConfig(), gpu_requested=True, allow_cpu=True) == "CPU"
    assert configure_devices(TrainConfig()) == "CPU"


@pytest.fixture
def gpu_pipeline_run(tmp_path):
    data = tmp_path / "nlu.csv"
    pd.DataFrame(tiny_rows(intents=("greet", "bye"), per_intent=8)).rename(columns={"utterance": "text"}).to_csv(data, index=False)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "runs"), raise_on_error=True)
    # the cluster's pipeline, less its train retries: kfp.local would sleep through their backoff
    # (3.5 minutes) repeating the same error; tests/test_compile.py checks the retries themselves
    pipeline = build_bot_training(GpuConfig(), train_retries=0)

    def run(**params):
        return pipeline(bot_id="gpu-bot", data_uri=str(data), models_root=str(tmp_path / "models"), **TINY, **params)

    return run, tmp_path


def train_output(tmp_path) -> dict:
    [run_dir] = [d for d in os.listdir(tmp_path / "runs") if d.startswith("bot-training")]
    with open(tmp_path / "runs" / run_dir / "train" / "executor_output.json") as f:
        return json.load(f)


def test_gpu_pipeline_without_a_gpu_fails_at_train_with_the_reason(gpu_pipeline_run, capfd):
    run, tmp_path = gpu_pipeline_run
    with pytest.raises(RuntimeError, match="Inner task failed: .*train"):
        run()
    assert f"ConfigError: {MESSAGE}" in capfd.readouterr().out
    assert not os.path.exists(tmp_path / "models" / "gpu-bot")  # nothing registered


def test_cpu_fallback_trains_and_records_the_device(gpu_pipeline_run):
    run, tmp_path = gpu_pipeline_run
    run(allow_cpu_training=True)
    metrics = train_output(tmp_path)["artifacts"]["training_metrics"]["artifacts"][0]["metadata"]
    assert (metrics["device"], metrics["gpu"]) == ("CPU", 0.0)
    assert metrics["epochs_run"] == 1.0
