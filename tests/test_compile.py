"""Compiled pipeline YAML: loads back with kfp; the train step carries (or drops) its GPU settings.

The YAML is compiled fresh in each test (``botyard compile --output-dir DIR`` does the same).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml
from kfp import components

from botyard.components.base.config import GpuConfig, TrainConfig
from botyard.components.base.errors import ConfigError
from botyard.pipelines.bot_training import bot_training, build_bot_training
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
    # ...and is told so: it fails rather than train on the CPU, unless the run allows it
    train = spec["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]
    assert train["gpu_requested"] == {"runtimeValue": {"constant": True}}
    assert train["allow_cpu_training"] == {"componentInputParameter": "allow_cpu_training"}
    assert spec["root"]["inputDefinitions"]["parameters"]["allow_cpu_training"]["defaultValue"] is False


def test_cpu_cluster_yaml_has_no_gpu_settings(compiled):
    spec, platform = _load(compiled[1])
    assert "accelerator" not in spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
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
        "Ingest training data", "Validate training data", "Split train / val / test", "Train BiLSTM intent model (and entity tagger)",
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
        assert "pip install" not in " ".join(executor["container"]["command"])  # image already has kfp


def test_pipeline_defaults_are_train_config_defaults():
    inputs = bot_training.component_spec.inputs
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("mixed_precision",):
            continue
        assert inputs[f.name].default == getattr(TrainConfig(), f.name), f.name


def test_entity_hyperparameters_are_pipeline_parameters_with_their_defaults(compiled):
    """Every ``EntityConfig`` field is an ``entity_<field>`` input of the compiled pipeline, the
    dashboard's form showing its default (the word vectors among them)."""
    from botyard.components.base.config import EntityConfig

    spec, _ = _load(compiled[0])
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    for f in dataclasses.fields(EntityConfig):
        assert inputs[f"entity_{f.name}"]["defaultValue"] == getattr(EntityConfig(), f.name), f.name
    assert inputs["entity_word_vectors"] == {"defaultValue": 200000, "isOptional": True, "parameterType": "NUMBER_INTEGER"}


def test_the_out_of_scope_criterion_is_a_pipeline_parameter_that_reaches_evaluate(compiled):
    inputs = bot_training.component_spec.inputs
    assert (inputs["min_oos_recall"].default, inputs["reject_budget"].default) == (0.7, 0.02)
    spec, _ = _load(compiled[0])
    config = container_tasks(spec)["evaluate"]["inputs"]["parameters"]["threshold_config"]
    assert "min_oos_recall" in json.dumps(config) and "reject_budget" in json.dumps(config)


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


# --- images, resources and storage credentials: compile-time settings ---------------------------
def compile_cli(tmp_path, *flags) -> dict[str, tuple[dict, dict]]:
    """``botyard compile`` into tmp_path; each YAML's (spec, kubernetes platform executors), by file name."""
    from botyard.pipelines.cli import main

    assert main(["compile", "--output-dir", str(tmp_path), *flags]) == 0
    return {name: _load(tmp_path / f"{name}.yaml") for name in ("bot_training", "fleet_training")}


def images_by_executor(spec: dict) -> dict[str, str]:
    return {name: ex["container"]["image"] for name, ex in spec["deploymentSpec"]["executors"].items()}


def test_every_image_comes_from_the_registry_and_tag(tmp_path):
    compiled = compile_cli(tmp_path, "--registry", "registry.example.com:5000/ml", "--tag", "1.2.3")
    steps, trainer = "registry.example.com:5000/ml/botyard:1.2.3", "registry.example.com:5000/ml/botyard-trainer:1.2.3"
    bot = images_by_executor(compiled["bot_training"][0])
    assert bot == {name: trainer if name == "exec-train" else steps for name in bot}
    assert set(bot) == {f"exec-{t}" for t in ("ingest", "validate", "split", "featurize", "train", "evaluate", "register",
                                               "gate", "infra-check", "deploy")}
    fleet = images_by_executor(compiled["fleet_training"][0])
    assert fleet == {name: trainer if name == "exec-train" else steps for name in fleet}
    assert {"exec-check-bot-data", "exec-summarise-fleet", "exec-record-outcome"} <= set(fleet)


def test_cpu_only_cluster_trains_in_the_cpu_image_and_defaults_follow_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BOTYARD_IMAGE_REGISTRY", "mirror.example.com")
    monkeypatch.delenv("BOTYARD_IMAGE_TAG", raising=False)
    from botyard.components.base.images import botyard_version

    images = images_by_executor(compile_cli(tmp_path, "--no-gpu")["bot_training"][0])
    assert set(images.values()) == {f"mirror.example.com/botyard:{botyard_version()}"}


@pytest.mark.parametrize(("flags", "message"), [
    (["--tag", "latest"], "botyard: error: --tag 'latest' is refused: pin a version"),
    (["--registry", "Registry.Example.com"], "botyard: error: --registry 'Registry.Example.com' is not a registry"),
    (["--tag", "v 1"], "botyard: error: --tag 'v 1' is not a valid image tag"),
    (["--storage-secret-key", "accesskey=AWS_ACCESS_KEY_ID"], "--storage-secret-key needs --storage-secret NAME"),
    (["--storage-secret", "Bad_Name"], "botyard: error: --storage-secret 'Bad_Name' is not a Kubernetes Secret name"),
    (["--storage-secret", "s3", "--storage-endpoint", "minio:9000"], "botyard: error: --storage-endpoint 'minio:9000' is not an http(s) URL"),
])
def test_compile_refuses_bad_settings(tmp_path, capsys, flags, message):
    from botyard.pipelines.cli import main

    assert main(["compile", "--output-dir", str(tmp_path / "pipelines"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # not even the output folder


def test_every_task_has_cpu_and_memory_requests_and_limits(compiled):
    from botyard.pipelines.task_settings import DEFAULT_RESOURCES, TASK_RESOURCES

    for path in compiled:
        spec, _ = _load(path)
        for name, ex in spec["deploymentSpec"]["executors"].items():
            resources = ex["container"]["resources"]
            expected = TASK_RESOURCES.get(name.removeprefix("exec-"), DEFAULT_RESOURCES)
            assert (resources["resourceCpuRequest"], resources["resourceMemoryRequest"],
                    resources["resourceCpuLimit"], resources["resourceMemoryLimit"]) == expected, name
    train = _load(compiled[0])[0]["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert (train["resourceCpuLimit"], train["resourceMemoryLimit"]) == ("4", "16Gi")


def test_storage_secret_and_endpoint_reach_exactly_the_tasks_that_touch_storage(tmp_path):
    compiled = compile_cli(tmp_path, "--storage-secret", "mlpipeline-minio-artifact",
                           "--storage-secret-key", "accesskey=AWS_ACCESS_KEY_ID",
                           "--storage-secret-key", "secretkey=AWS_SECRET_ACCESS_KEY",
                           "--storage-endpoint", "http://minio-service.kubeflow:9000")
    expected_secret = [{
        "keyToEnv": [{"envVar": "AWS_ACCESS_KEY_ID", "secretKey": "accesskey"},
                     {"envVar": "AWS_SECRET_ACCESS_KEY", "secretKey": "secretkey"}],
        "optional": False,
        "secretName": "mlpipeline-minio-artifact",
        "secretNameParameter": {"runtimeValue": {"constant": "mlpipeline-minio-artifact"}},
    }]
    storage = {"bot_training": {"ingest", "train", "register", "gate", "infra-check", "deploy"},
               "fleet_training": {"ingest", "train", "register", "gate", "infra-check", "deploy", "check-bot-data"}}
    for name, (spec, platform) in compiled.items():
        with_secret = {e.removeprefix("exec-") for e, cfg in platform.items() if cfg.get("secretAsEnv")}
        assert with_secret == storage[name], name
        for e in with_secret:
            assert platform[f"exec-{e}"]["secretAsEnv"] == expected_secret
        with_endpoint = {e.removeprefix("exec-") for e, ex in spec["deploymentSpec"]["executors"].items()
                         if {"name": "AWS_ENDPOINT_URL", "value": "http://minio-service.kubeflow:9000"} in ex["container"].get("env", [])}
        assert with_endpoint == storage[name], name


def test_default_storage_secret_keys_keep_their_names(tmp_path):
    _, platform = compile_cli(tmp_path, "--no-gpu", "--storage-secret", "s3-credentials")["bot_training"]
    assert platform["exec-ingest"]["secretAsEnv"][0]["keyToEnv"] == [
        {"envVar": "AWS_ACCESS_KEY_ID", "secretKey": "AWS_ACCESS_KEY_ID"},
        {"envVar": "AWS_SECRET_ACCESS_KEY", "secretKey": "AWS_SECRET_ACCESS_KEY"},
    ]
    assert "exec-split" not in platform and "exec-featurize" not in platform


def test_deploy_gets_a_test_utterance_the_predictor_image_and_the_run_namespace_by_default(tmp_path):
    compiled = compile_cli(tmp_path, "--registry", "registry.example.com/ml", "--tag", "2.0.0",
                           "--storage-secret", "s3-credentials", "--storage-endpoint", "http://minio:9000")
    spec, _ = compiled["bot_training"]
    deploy = spec["components"]["comp-condition-2"]["dag"]["tasks"]["deploy"]["inputs"]
    assert deploy["artifacts"]["test_data"] == {
        "componentInputArtifact": "pipelinechannel--split-test_data"}  # the smoke check's utterance
    params = deploy["parameters"]
    assert params["predictor_image"] == {"runtimeValue": {"constant": "registry.example.com/ml/botyard-predictor:2.0.0"}}
    assert params["storage_access"] == {"runtimeValue": {"constant": {
        "secret": "s3-credentials", "keys": {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"},
        "endpoint_url": "http://minio:9000"}}}
    defaults = {k: v.get("defaultValue") for k, v in spec["root"]["inputDefinitions"]["parameters"].items()}
    assert (defaults["namespace"], defaults["deployment_mode"], defaults["predictor_service_account"]) == (
        "", "RawDeployment", "botyard-predictor")


def test_train_task_is_retried_so_a_preempted_pod_resumes_from_its_checkpoint(compiled):
    from botyard.pipelines.task_settings import TRAIN_RETRIES

    spec, _ = _load(compiled[0])
    train = spec["root"]["dag"]["tasks"]["train"]
    assert train["retryPolicy"]["maxRetryCount"] == TRAIN_RETRIES == 3
    assert train["retryPolicy"]["backoffDuration"] == "30s"
    others = [t for name, t in spec["root"]["dag"]["tasks"].items() if name != "train"]
    assert others and not any("retryPolicy" in t for t in others)


def _retry_policies(pipeline, tmp_path) -> dict:
    """Every task's retryPolicy in ``pipeline``'s compiled YAML, by task name, sub-pipelines included."""
    from kfp import compiler

    path = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(pipeline, package_path=str(path))
    spec, _ = _load(path)
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    return {name: t["retryPolicy"] for dag in dags for name, t in dag["tasks"].items() if "retryPolicy" in t}


def test_the_fleets_train_task_is_retried_on_a_cluster_too(tmp_path):
    from botyard.pipelines.fleet_training import build_fleet_training

    policies = _retry_policies(build_fleet_training(GpuConfig()), tmp_path)
    assert policies == {"train": {"maxRetryCount": 3, "backoffDuration": "30s", "backoffFactor": 2.0, "backoffMaxDuration": "3600s"}}


def test_the_local_pipelines_never_retry_a_failed_train_step(tmp_path):
    """kfp.local honours retries and sleeps through their backoff (30 + 60 + 120 s) but has no
    preemption to resume after: a local train step that fails must fail at once."""
    from botyard.pipelines.fleet_training import fleet_training

    assert _retry_policies(bot_training, tmp_path) == {}
    assert _retry_policies(fleet_training, tmp_path) == {}
    assert _retry_policies(build_bot_training(GpuConfig(), train_retries=1), tmp_path)["train"]["maxRetryCount"] == 1


@pytest.mark.parametrize("bad", [-1, True, 2.0, "3"])
def test_a_bad_train_retries_value_is_refused_by_name(bad):
    with pytest.raises(ConfigError, match=f"train_retries = {bad!r} is not a whole number >= 0"):
        build_bot_training(GpuConfig(), train_retries=bad)
