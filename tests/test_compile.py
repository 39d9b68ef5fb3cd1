"""Compiled pipeline YAML: loads back with kfp; the train step carries (or drops) its GPU settings.

The YAML is compiled fresh in each test (``botyard compile --output-dir DIR`` does the same).
"""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from kfp import components

from botyard.components.base.config import GpuConfig, TrainConfig
from botyard.pipelines.bot_training import bot_training
from botyard.pipelines.builders import compile_all


def _load(path):
    docs = list(yaml.safe_load_all(open(path)))
    spec = docs[0]
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}
    return spec, platform


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    gpu_dir, cpu_dir = tmp_path_factory.mktemp("gpu"), tmp_path_factory.mktemp("cpu")
    return compile_all(str(gpu_dir))[0], compile_all(str(cpu_dir), GpuConfig(enabled=False))[0]


def test_yaml_loads_back_with_kfp(compiled):
    for path in compiled:
        loaded = components.load_component_from_file(path)
        assert loaded.name == "bot-training"
        assert "data_uri" in loaded.component_spec.inputs


def test_train_task_requests_a_gpu_and_gpu_nodes(compiled):
    spec, platform = _load(compiled[0])
    resources = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["accelerator"]["resourceCount"] == "1"
    assert platform["exec-train"]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    assert platform["exec-train"]["tolerations"] == [{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}]
    # only the train step asks for a GPU
    others = [name for name, ex in spec["deploymentSpec"]["executors"].items() if "accelerator" in ex["container"].get("resources", {})]
    assert others == ["exec-train"] and set(platform) == {"exec-train"}


def test_cpu_cluster_yaml_has_no_gpu_settings(compiled):
    spec, platform = _load(compiled[1])
    assert "resources" not in spec["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert platform == {}


def test_custom_gpu_settings_compile(tmp_path):
    gpu = GpuConfig(accelerator_limit=2, node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"}, tolerations=({"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},))
    spec, platform = _load(compile_all(str(tmp_path), gpu)[0])
    assert spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]["accelerator"]["resourceCount"] == "2"
    assert platform["exec-train"]["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}


def test_steps_read_well_in_the_dashboard(compiled):
    spec, _ = _load(compiled[0])
    tasks = spec["root"]["dag"]["tasks"]
    assert [tasks[t]["taskInfo"]["name"] for t in ("ingest", "validate", "split", "train", "evaluate", "register")] == [
        "Ingest training data", "Validate training data", "Split train / val / test", "Train BiLSTM intent model",
        "Evaluate on test split", "Register model version",
    ]
    assert spec["pipelineInfo"]["description"].startswith("Train, evaluate and register one bot's intent model")
    gate = tasks["gate"]
    assert gate["taskInfo"]["name"] == "Promotion gate: candidate vs live"
    blessed = tasks["condition-1"]
    assert blessed["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--gate-Output'] == true"
    inner = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    assert inner["infra-check"]["taskInfo"]["name"] == "Infra check: load and query in a predictor"
    deploy = spec["components"]["comp-condition-2"]["dag"]["tasks"]["deploy"]
    assert deploy["taskInfo"]["name"] == "Deploy model version"
    assert tasks["register"]["cachingOptions"] == {}  # caching off: it writes the model store
    for executor in spec["deploymentSpec"]["executors"].values():
        assert executor["container"]["image"].startswith("ghcr.io/botyard/botyard:")
        assert "pip install" not in " ".join(executor["container"]["command"])  # image already has kfp


def test_pipeline_defaults_are_train_config_defaults():
    inputs = bot_training.component_spec.inputs
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("mixed_precision",):
            continue
        assert inputs[f.name].default == getattr(TrainConfig(), f.name), f.name


def container_tasks(spec: dict) -> dict[str, dict]:
    """Every task that runs a container, in every DAG of a compiled pipeline, by task name."""
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    found = {}
    for dag in dags:
        for name, task in dag["tasks"].items():
            if "executorLabel" in spec["components"][task["componentRef"]["name"]]:
                found[name] = task
    return found


FLEET_UNCACHED = ("check-bot-data", "record-outcome", "record-outcome-2", "summarise-fleet")


@pytest.mark.parametrize("which", ["bot_training", "fleet_training"])
def test_steps_reading_outside_state_never_cache(tmp_path, which):
    """Fresh data on every retrain: ingest (the data behind data_uri) and the steps that read or
    write the model store or the cluster run every time; the others are keyed by their inputs."""
    from botyard.pipelines.bot_training import UNCACHED_TASKS

    path = {p.rsplit("/", 1)[-1]: p for p in compile_all(str(tmp_path))}[f"{which}.yaml"]
    spec, _ = _load(path)
    tasks = container_tasks(spec)
    uncached = set(UNCACHED_TASKS) | (set(FLEET_UNCACHED) if which == "fleet_training" else set())
    assert set(uncached) <= set(tasks)
    assert {name for name, task in tasks.items() if task["cachingOptions"].get("enableCache") is not True} == uncached
    assert tasks["ingest"]["cachingOptions"] == {}
    assert {"validate", "split", "featurize", "train", "evaluate"} <= set(tasks) - uncached
