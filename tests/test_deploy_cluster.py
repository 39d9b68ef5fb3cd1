"""Cluster mode of the deploy step against an in-process fake Kubernetes API (``fake_kube``).

Every test asserts the exact requests sent: methods, paths, content types and bodies.
Polling runs on a fake clock, so timeouts cost no wall time. Per-bot mode runs in both of
KServe's deployment modes (Serverless: Knative revisions and canaries; RawDeployment: a
Deployment, no canary); shared mode creates its one service and never writes to it again.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import k8s_schemas
import pytest
from fake_kube import FakeKube, by_generation, manual, never_ready, ready_after, running_fake_kube
from kubernetes.client.exceptions import ApiException

from botyard.components.deploy import config as deploy_config
from botyard.components.deploy import inference_service, kube_api
from botyard.components.deploy.config import ClusterDeployConfig, DeployResult, check_cluster_locations, run_namespace
from botyard.components.deploy.inference_service import (
    build_inference_service,
    build_shared_inference_service,
    inference_service_name,
)
from botyard.components.deploy.rollout import ClusterDeployer
from botyard.components.deploy.smoke import SmokeCheck
from botyard.components.base.errors import ConfigError, DeployError

NS = "botyard"
BASE = "/apis/serving.kserve.io/v1beta1/namespaces/botyard/inferenceservices"
ROOT = "gs://models"
V1, V2 = "20261101T000000Z-aaaaaaaa", "20261102T000000Z-bbbbbbbb"
URI1, URI2 = f"{ROOT}/bot-a/{V1}", f"{ROOT}/bot-a/{V2}"
MERGE = "application/merge-patch+json"
SERVERLESS = {"deployment_mode": "Serverless"}
IMAGE = "registry.example.com/botyard-predictor:1.0"
SECURITY_CONTEXT = {
    "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
}


def assert_valid_isvc(body: dict) -> None:
    """``body`` satisfies the InferenceService CRD strictly (no field the API server would drop)."""
    k8s_schemas.validate(body)


# --- fixtures -----------------------------------------------------------------------------------
class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def kube():
    with running_fake_kube() as (server, api_client):
        yield server, api_client


@pytest.fixture
def clock():
    return FakeClock()


def deployer(kube, clock, **config) -> ClusterDeployer:
    """Serverless (canary-capable) unless the test says otherwise."""
    config = {"namespace": NS, "ready_timeout_s": 20, "poll_interval_s": 5, **SERVERLESS, **config}
    return ClusterDeployer(ClusterDeployConfig(**config), api_client=kube[1], clock=clock, sleep=clock.sleep)


def existing(server: FakeKube, uri: str = URI1, bot: str = "bot-a", mode: str = "Serverless", **kw) -> dict:
    return server.put(build_inference_service(bot, uri, NS, deployment_mode=mode), **kw)


def rollout_patch(uri: str, version: str | None, canary: int | None) -> dict:
    return {
        "metadata": {"annotations": {"botyard.dev/model-version": version}},
        "spec": {"predictor": {"canaryTrafficPercent": canary, "model": {"storageUri": uri}}},
    }


# --- manifests ----------------------------------------------------------------------------------
def test_build_inference_service_is_exact_and_valid():
    body = build_inference_service(
        "bot-a", URI1, NS, deployment_mode="Serverless", service_account="models-reader", canary_traffic_percent=10,
        resources={"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
    )
    assert body == {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": "bot-a",
            "namespace": NS,
            "labels": {"app.kubernetes.io/managed-by": "botyard", "botyard.dev/bot-id": "bot-a"},
            "annotations": {
                "serving.kserve.io/deploymentMode": "Serverless",
                "serving.kserve.io/enable-prometheus-scraping": "true",
                "serving.kserve.io/enable-tag-routing": "true",
                "botyard.dev/model-version": V1,
            },
        },
        "spec": {
            "predictor": {
                "serviceAccountName": "models-reader",
                "minReplicas": 1,
                "maxReplicas": 3,
                "canaryTrafficPercent": 10,
                "model": {
                    "modelFormat": {"name": "botyard-intent", "version": "1"},
                    "runtime": "botyard-predictor",
                    "storageUri": URI1,
                    "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
                    "securityContext": SECURITY_CONTEXT,
                },
            }
        },
    }
    assert_valid_isvc(body)


def test_raw_deployment_inference_service_has_no_knative_settings_and_default_resources():
    body = build_inference_service("bot-a", URI1, NS)
    assert body["metadata"]["annotations"] == {
        "serving.kserve.io/deploymentMode": "RawDeployment",
        "serving.kserve.io/enable-prometheus-scraping": "true",
        "botyard.dev/model-version": V1,
    }
    predictor = body["spec"]["predictor"]
    assert predictor["serviceAccountName"] == "botyard-predictor"
    assert predictor["model"]["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
    assert "canaryTrafficPercent" not in predictor
    assert "serviceAccountName" not in build_inference_service("bot-a", URI1, NS, service_account="")["spec"]["predictor"]
    assert_valid_isvc(body)
    assert k8s_schemas.container_problems(body) == []


def test_shared_inference_service_reads_the_store_live_with_secrets_by_reference():
    body = build_shared_inference_service(ROOT, NS, IMAGE, storage_secret="s3-credentials",
                                          endpoint_url="http://minio.kubeflow:9000")
    assert body["metadata"] == {
        "name": "botyard-shared", "namespace": NS,
        "labels": {"app.kubernetes.io/managed-by": "botyard", "botyard.dev/mode": "shared"},
        "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment", "serving.kserve.io/enable-prometheus-scraping": "true"},
    }
    predictor = body["spec"]["predictor"]
    assert "model" not in predictor  # no storage initializer: no copy of the store at pod start
    [container] = predictor["containers"]
    assert container["image"] == IMAGE
    assert container["args"] == [
        "serve", "--models-root", ROOT, "--host", "0.0.0.0", "--port", "8080",
        "--memory-budget", "3GiB", "--preload-most-requested", "20", "--keep-alive-timeout", "65",
    ]  # fmt: skip
    assert container["env"] == [
        {"name": "HOME", "value": "/tmp"},
        {"name": "TMPDIR", "value": "/tmp"},
        {"name": "TF_CPP_MIN_LOG_LEVEL", "value": "2"},
        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "s3-credentials", "key": "AWS_ACCESS_KEY_ID"}}},
        {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "s3-credentials", "key": "AWS_SECRET_ACCESS_KEY"}}},
        {"name": "AWS_ENDPOINT_URL", "value": "http://minio.kubeflow:9000"},
    ]
    assert container["securityContext"] == SECURITY_CONTEXT
    assert inference_service.shared_models_root(body) == ROOT
    assert_valid_isvc(body)
    assert k8s_schemas.container_problems(body) == []


def test_schema_check_catches_a_misplaced_field():
    body = build_inference_service("bot-a", URI1, NS)
    body["spec"]["predictor"]["storageUri"] = URI1  # belongs under model:
    body["spec"]["predictor"]["canaryTrafficPercent"] = "10"
    assert k8s_schemas.errors(body) == [
        "InferenceService/bot-a: spec.predictor: Additional properties are not allowed ('storageUri' was unexpected)",
        "InferenceService/bot-a: spec.predictor.canaryTrafficPercent: '10' is not of type 'integer'",
    ]


def test_storage_uri_must_be_a_version_directory_of_the_bot():
    with pytest.raises(ConfigError, match=r"not a model version directory of bot 'bot-a'.*<models_root>/bot-a/<version>"):
        build_inference_service("bot-a", f"{ROOT}/bot-b/{V1}", NS)


def test_inference_service_names_satisfy_kserve():
    assert inference_service_name("bot-a") == "bot-a"
    assert inference_service_name("7eleven") == "bot-7eleven"  # KServe names start with a letter
    long_id = "a" * 63
    name = inference_service_name(long_id)
    assert len(name) == inference_service.MAX_ISVC_NAME == 47
    assert name.startswith("a" * 38 + "-") and name != inference_service_name("a" * 62)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("canary_traffic_percent", 0, "canary_traffic_percent = 0 is out of range; allowed: None (no canary) or 1 to 99"),
        ("canary_traffic_percent", 100, "canary_traffic_percent = 100 is out of range"),
        ("canary_traffic_percent", True, "canary_traffic_percent = True is out of range"),
        ("ready_timeout_s", 0, "ready_timeout_s = 0 is out of range; allowed: 1 to 86400"),
        ("mode", "both", "mode = 'both' is not known; allowed: per-bot, shared"),
        ("namespace", "Bots", "namespace = 'Bots' is not a valid namespace"),
        ("shared_service_name", "1-shared", "shared_service_name = '1-shared' is not a valid InferenceService name"),
    ],
)
def test_config_rejects_out_of_range_values(field, value, message):
    with pytest.raises(ConfigError) as info:
        ClusterDeployConfig(**{field: value})
    assert f"ClusterDeployConfig.{message}" in str(info.value)


def test_a_canary_needs_serverless_and_per_bot_mode():
    with pytest.raises(ConfigError) as info:
        ClusterDeployConfig(canary_traffic_percent=10)  # RawDeployment, the default
    assert str(info.value) == (
        "a canary (10% of the traffic) needs KServe's Serverless deployment mode (Knative splits the traffic); "
        "RawDeployment has no traffic split: deploy without a canary (canary_traffic_percent 0) or use "
        "deployment_mode Serverless on a cluster with Knative"
    )
    with pytest.raises(ConfigError, match="^a canary needs per-bot mode: the shared predictor"):
        ClusterDeployConfig(canary_traffic_percent=10, mode="shared", **SERVERLESS)
    with pytest.raises(ConfigError, match="deployment mode 'Knative' is not known; allowed: RawDeployment, Serverless"):
        ClusterDeployConfig(deployment_mode="Knative")
    assert ClusterDeployConfig(canary_traffic_percent=10, **SERVERLESS).canary_traffic_percent == 10


# --- where: the run's own namespace -----------------------------------------------------------
def test_namespace_defaults_to_the_pods_own(kube, clock, tmp_path, monkeypatch):
    server, api_client = kube
    (tmp_path / "namespace").write_text("kubeflow-user-example-com\n")
    monkeypatch.setattr(deploy_config, "SERVICE_ACCOUNT_NAMESPACE_FILE", str(tmp_path / "namespace"))
    d = ClusterDeployer(ClusterDeployConfig(ready_timeout_s=20), api_client=api_client, clock=clock, sleep=clock.sleep)
    assert d.config.namespace == "kubeflow-user-example-com"
    d.deploy("bot-a", V1, URI1)
    assert server.requests[1].path == "/apis/serving.kserve.io/v1beta1/namespaces/kubeflow-user-example-com/inferenceservices"
    assert server.requests[1].body["metadata"]["namespace"] == "kubeflow-user-example-com"


def test_no_namespace_outside_a_pod_names_what_to_pass(tmp_path, monkeypatch):
    missing = str(tmp_path / "nope")
    monkeypatch.setattr(deploy_config, "SERVICE_ACCOUNT_NAMESPACE_FILE", missing)
    with pytest.raises(ConfigError) as info:
        ClusterDeployer(ClusterDeployConfig())
    assert str(info.value) == (
        f"no namespace given and none to default to: {missing} does not exist (not running in a pod); "
        "pass the namespace of the InferenceServices (pipeline parameter namespace, or --namespace)"
    )
    (tmp_path / "bad").write_text("Not A Namespace")
    with pytest.raises(ConfigError, match="holds 'Not A Namespace', which is not a namespace"):
        run_namespace(str(tmp_path / "bad"))


@pytest.mark.parametrize(("name", "value"), [("models_root", "models"), ("data_uri", "bots/a/nlu.yml"), ("data_uri", "./nlu.yml")])
def test_cluster_runs_refuse_relative_locations(name, value):
    with pytest.raises(ConfigError) as info:
        check_cluster_locations(**{name: value})
    example = "models" if name == "models_root" else "bots/<bot_id>/nlu.yml"
    assert str(info.value) == (
        f"{name} {value!r} is a relative path: on a cluster it names a path inside one pod, which no other step and "
        f"no predictor can see; pass an object store URI every pod can reach, e.g. s3://BUCKET/{example} (MinIO: "
        f"s3:// with AWS_ENDPOINT_URL) or gs://BUCKET/{example}, or an absolute path mounted in every pod"
    )


def test_cluster_runs_accept_uris_and_absolute_paths():
    check_cluster_locations(models_root="s3://bots/models", data_uri="gs://b/x/nlu.yml")
    check_cluster_locations(models_root="/mnt/models", data_uri="file:///data/nlu.yml")


# --- per-bot mode -------------------------------------------------------------------------------
def test_create_when_missing(kube, clock):
    server, _ = kube
    result = deployer(kube, clock).deploy("bot-a", V1, URI1)

    assert server.calls() == [("GET", "bot-a"), ("POST", None), ("GET", "bot-a")]
    post = server.requests[1]
    assert (post.path, post.content_type) == (BASE, "application/json")
    assert post.body == build_inference_service("bot-a", URI1, NS, deployment_mode="Serverless")
    assert_valid_isvc(post.body)
    assert result == DeployResult(
        "bot-a", V1, "created", "http://bot-a.botyard.example.com",
        ["created InferenceService 'bot-a' in namespace 'botyard'"],
    )
    assert clock.sleeps == []


def test_create_waits_for_ready_then_times_out(kube, clock):
    server, _ = kube
    server.policy("bot-a", manual())
    with pytest.raises(DeployError) as info:
        deployer(kube, clock).deploy("bot-a", V1, URI1)
    assert server.calls() == [("GET", "bot-a"), ("POST", None)] + [("GET", "bot-a")] * 5  # t = 0, 5, 10, 15, 20
    assert clock.sleeps == [5, 5, 5, 5]
    assert str(info.value) == (
        f"InferenceService 'bot-a' in namespace 'botyard' (bot 'bot-a', version {V1}) was not Ready "
        "within 20s; last status: no Ready condition yet; generation 1, observed None"
    )


def test_patch_to_new_version_waits_for_the_new_generation(kube, clock):
    server, _ = kube
    existing(server)
    server.policy("bot-a", ready_after(3))  # the old, Ready status is served twice more
    result = deployer(kube, clock).deploy("bot-a", V2, URI2)

    assert server.calls() == [("GET", "bot-a"), ("PATCH", "bot-a"), ("GET", "bot-a"), ("GET", "bot-a"), ("GET", "bot-a")]
    patch = server.requests[1]
    assert (patch.path, patch.content_type, patch.body) == (f"{BASE}/bot-a", MERGE, rollout_patch(URI2, V2, None))
    assert clock.sleeps == [5, 5]
    assert result.action == "updated" and result.url == "http://bot-a.botyard.example.com"
    obj = server.get("bot-a")
    assert obj["spec"]["predictor"]["model"]["storageUri"] == URI2
    assert obj["metadata"]["annotations"]["botyard.dev/model-version"] == V2
    assert_valid_isvc({k: v for k, v in obj.items() if k != "status"})


def test_rerun_is_idempotent(kube, clock):
    server, _ = kube
    first = deployer(kube, clock).deploy("bot-a", V1, URI1)
    server.requests.clear()
    second = deployer(kube, clock).deploy("bot-a", V1, URI1)

    assert first.action == "created"
    assert server.calls() == [("GET", "bot-a")]
    assert second == DeployResult("bot-a", V1, "unchanged", first.url, [f"'bot-a' already serves {V1} and is Ready"])


def test_leftover_canary_share_is_cleared(kube, clock):
    server, _ = kube
    body = build_inference_service("bot-a", URI2, NS, deployment_mode="Serverless", canary_traffic_percent=10)
    server.put(body)
    result = deployer(kube, clock).deploy("bot-a", V2, URI2)
    assert result.action == "updated"
    assert [r.body for r in server.writes()] == [rollout_patch(URI2, V2, None)]
    assert "canaryTrafficPercent" not in server.get("bot-a")["spec"]["predictor"]


def test_update_that_never_gets_ready_fails_without_touching_it_again(kube, clock):
    server, _ = kube
    existing(server)
    server.policy("bot-a", never_ready("Back-off restarting failed container"))
    with pytest.raises(DeployError) as info:
        deployer(kube, clock).deploy("bot-a", V2, URI2)
    assert [r.method for r in server.writes()] == ["PATCH"]
    assert str(info.value) == (
        f"InferenceService 'bot-a' in namespace 'botyard' (bot 'bot-a', version {V2}) was not Ready within 20s; "
        "last status: Ready=False; generation 2, observed 2; RevisionFailed: Back-off restarting failed container; "
        "latest created revision bot-a-predictor-00002, ready bot-a-predictor-00001; "
        "the previous version keeps serving, fix the model and deploy again or roll back"
    )


def test_update_with_failed_smoke_check_restores_previous_version(kube, clock):
    server, _ = kube
    existing(server)
    # the cluster-local address: what a pipeline pod can reach
    with pytest.raises(DeployError, match=f"smoke check against http://bot-a.botyard.svc.cluster.local failed; rolled back to {V1}$"):
        deployer(kube, clock).deploy("bot-a", V2, URI2, smoke_check=lambda url: False)
    assert [r.body for r in server.writes()] == [rollout_patch(URI2, V2, None), rollout_patch(URI1, V1, None)]


def test_canary_promote(kube, clock):
    server, _ = kube
    existing(server)
    server.policy("bot-a", ready_after(2))
    checked: list[str] = []
    result = deployer(kube, clock, canary_traffic_percent=10).deploy(
        "bot-a", V2, URI2, smoke_check=lambda url: checked.append(url) or True
    )

    assert server.calls() == [
        ("GET", "bot-a"),
        ("PATCH", "bot-a"),  # canary at 10 %
        ("GET", "bot-a"),  # stale status of generation 1
        ("GET", "bot-a"),  # generation 2 Ready
        ("PATCH", "bot-a"),  # promote
        ("GET", "bot-a"),
        ("GET", "bot-a"),
    ]
    canary, promote = server.writes()
    assert (canary.content_type, canary.body) == (MERGE, rollout_patch(URI2, V2, 10))
    assert (promote.content_type, promote.body) == (MERGE, {"spec": {"predictor": {"canaryTrafficPercent": None}}})
    assert checked == ["http://latest-bot-a-predictor.botyard.example.com"]  # the canary revision itself
    assert result == DeployResult(
        "bot-a", V2, "canary-promoted", "http://bot-a.botyard.example.com",
        ["canary: %s takes 10%% of the traffic of 'bot-a'" % V2, "canary Ready", "smoke check passed", f"promoted {V2} to 100%"],
    )
    obj = server.get("bot-a")
    assert "canaryTrafficPercent" not in obj["spec"]["predictor"]
    assert obj["status"]["components"]["predictor"]["traffic"][0]["revisionName"] == "bot-a-predictor-00002"
    assert obj["status"]["components"]["predictor"]["traffic"][0]["percent"] == 100


def test_canary_rolls_back_when_not_ready_in_time(kube, clock):
    server, _ = kube
    existing(server)
    server.policy("bot-a", by_generation({2: never_ready("OOMKilled")}))
    with pytest.raises(DeployError) as info:
        deployer(kube, clock, canary_traffic_percent=25).deploy("bot-a", V2, URI2)

    assert server.calls() == (
        [("GET", "bot-a"), ("PATCH", "bot-a")] + [("GET", "bot-a")] * 5 + [("PATCH", "bot-a"), ("GET", "bot-a")]
    )
    assert clock.sleeps == [5, 5, 5, 5]
    assert [r.body for r in server.writes()] == [rollout_patch(URI2, V2, 25), rollout_patch(URI1, V1, 0)]
    assert str(info.value) == (
        f"rollout of bot 'bot-a' version {V2} to InferenceService 'bot-a' in namespace 'botyard' failed: "
        "the canary was not Ready within 20s (Ready=False; generation 2, observed 2; RevisionFailed: OOMKilled; "
        "latest created revision bot-a-predictor-00002, ready bot-a-predictor-00001); "
        f"rolled back to {V1}"
    )
    obj = server.get("bot-a")
    assert obj["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert obj["spec"]["predictor"]["model"]["storageUri"] == URI1
    assert obj["metadata"]["annotations"]["botyard.dev/model-version"] == V1
    assert [t["revisionName"] for t in obj["status"]["components"]["predictor"]["traffic"]] == ["bot-a-predictor-00001"]


def test_canary_rolls_back_on_failed_smoke_check(kube, clock):
    server, _ = kube
    existing(server)

    def smoke(url: str) -> bool:
        raise ConnectionError("connection refused")

    with pytest.raises(DeployError) as info:
        deployer(kube, clock, canary_traffic_percent=10).deploy("bot-a", V2, URI2, smoke_check=smoke)
    assert server.calls() == [("GET", "bot-a"), ("PATCH", "bot-a"), ("GET", "bot-a"), ("PATCH", "bot-a"), ("GET", "bot-a")]
    assert [r.body for r in server.writes()] == [rollout_patch(URI2, V2, 10), rollout_patch(URI1, V1, 0)]
    assert str(info.value).endswith(
        "failed: smoke check against http://latest-bot-a-predictor.botyard.example.com raised "
        f"ConnectionError: connection refused; rolled back to {V1}"
    )


def test_canary_rollback_that_is_not_ready_either(kube, clock):
    server, _ = kube
    existing(server)
    server.policy("bot-a", never_ready("ImagePullBackOff"))
    with pytest.raises(DeployError, match=r"rolled back to .*, but the rollback was not Ready either \(Ready=False; generation 3"):
        deployer(kube, clock, canary_traffic_percent=10).deploy("bot-a", V2, URI2)


def test_first_deploy_with_canary_config_creates_without_canary(kube, clock):
    server, _ = kube
    result = deployer(kube, clock, canary_traffic_percent=10).deploy("bot-a", V1, URI1)
    assert result.action == "created"
    assert "canaryTrafficPercent" not in server.requests[1].body["spec"]["predictor"]


def test_rollback_to_earlier_version(kube, clock):
    server, _ = kube
    existing(server, URI2)
    result = deployer(kube, clock).rollback("bot-a", URI1, V1)
    assert server.calls() == [("GET", "bot-a"), ("PATCH", "bot-a"), ("GET", "bot-a")]
    assert server.writes()[0].body == rollout_patch(URI1, V1, None)
    assert (result.action, result.version) == ("rolled-back", V1)

    server.requests.clear()
    again = deployer(kube, clock).rollback("bot-a", URI1, V1)
    assert again.action == "unchanged" and server.writes() == []


def test_rollback_without_a_service(kube, clock):
    with pytest.raises(DeployError, match="cannot roll back bot 'bot-a': InferenceService 'bot-a' does not exist"):
        deployer(kube, clock).rollback("bot-a", URI1, V1)


def test_refuses_to_overwrite_a_service_botyard_does_not_manage(kube, clock):
    server, _ = kube
    body = build_inference_service("bot-a", URI1, NS)
    del body["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    server.put(body)
    with pytest.raises(DeployError, match="exists but is not managed by botyard .* refusing to overwrite it for bot 'bot-a'"):
        deployer(kube, clock).deploy("bot-a", V2, URI2)
    assert server.writes() == []


def test_version_must_match_storage_uri(kube, clock):
    with pytest.raises(ConfigError, match=f"holds version '{V1}', not '{V2}'"):
        deployer(kube, clock).deploy("bot-a", V2, URI1)


# --- per-bot, RawDeployment -------------------------------------------------------------------
def test_raw_deployment_create_then_roll_over(kube, clock):
    server, _ = kube
    d = deployer(kube, clock, deployment_mode="RawDeployment")
    created = d.deploy("bot-a", V1, URI1)
    assert server.requests[1].body == build_inference_service("bot-a", URI1, NS)
    assert created == DeployResult("bot-a", V1, "created", "http://bot-a-botyard.example.com",
                                   ["created InferenceService 'bot-a' in namespace 'botyard'"])
    server.requests.clear()
    checked = []
    updated = d.deploy("bot-a", V2, URI2, smoke_check=lambda url: checked.append(url) or True)
    assert [r.body for r in server.writes()] == [rollout_patch(URI2, V2, None)]
    assert checked == ["http://bot-a-predictor.botyard.svc.cluster.local"]  # KServe's raw address
    assert updated.action == "updated" and updated.reasons[-1] == "smoke check passed"
    obj = server.get("bot-a")
    assert obj["status"]["deploymentMode"] == "RawDeployment" and "traffic" not in obj["status"]["components"]["predictor"]


def test_raw_deployment_failed_smoke_check_restores_the_previous_version(kube, clock):
    server, _ = kube
    existing(server, mode="RawDeployment")
    with pytest.raises(DeployError) as info:
        deployer(kube, clock, deployment_mode="RawDeployment").deploy("bot-a", V2, URI2, smoke_check=lambda url: False)
    assert [r.body for r in server.writes()] == [rollout_patch(URI2, V2, None), rollout_patch(URI1, V1, None)]
    assert str(info.value) == (
        f"rollout of bot 'bot-a' version {V2} to InferenceService 'bot-a' in namespace 'botyard' failed: smoke check "
        f"against http://bot-a-predictor.botyard.svc.cluster.local failed; rolled back to {V1}"
    )


# --- shared mode --------------------------------------------------------------------------------
def shared(kube, clock, **config) -> ClusterDeployer:
    return deployer(kube, clock, mode="shared", deployment_mode="RawDeployment", predictor_image=IMAGE, **config)


def test_shared_mode_creates_the_service_once_and_never_writes_to_it_again(kube, clock):
    server, _ = kube
    d = shared(kube, clock)
    created = d.deploy("bot-a", V1, URI1)

    assert server.calls() == [("GET", "botyard-shared"), ("POST", None), ("GET", "botyard-shared")]
    post = server.requests[1].body
    assert post == build_shared_inference_service(ROOT, NS, IMAGE)
    assert_valid_isvc(post)
    assert (created.action, created.url) == ("created", "http://botyard-shared-botyard.example.com")

    server.requests.clear()
    checked = []
    updated = d.deploy("bot-b", V2, f"{ROOT}/bot-b/{V2}", smoke_check=lambda url: checked.append(url) or True)
    # the predictor follows bot-b's CURRENT pointer: nothing on the service changes, no pod restarts
    assert server.calls() == [("GET", "botyard-shared")] and server.writes() == []
    assert checked == ["http://botyard-shared-predictor.botyard.svc.cluster.local"]
    assert updated.action == "updated"
    assert updated.reasons == [f"'botyard-shared' serves {ROOT}; bot 'bot-b' follows its CURRENT pointer ({V2})",
                               "smoke check passed"]
    assert server.get("botyard-shared")["metadata"]["generation"] == 1


def test_shared_mode_survives_a_create_race(kube, clock):
    server, _ = kube
    server.before_next("POST", lambda: server.put(build_shared_inference_service(ROOT, NS, IMAGE)))
    result = shared(kube, clock).deploy("bot-a", V1, URI1)
    assert server.calls() == [("GET", "botyard-shared"), ("POST", None), ("GET", "botyard-shared")]  # 409, then read
    assert result.action == "updated"


def test_shared_mode_refuses_another_models_root(kube, clock):
    server, _ = kube
    server.put(build_shared_inference_service("s3://elsewhere", NS, IMAGE))
    with pytest.raises(DeployError, match=r"serves models from s3://elsewhere, but bot 'bot-a' version .* is under gs://models"):
        shared(kube, clock).deploy("bot-a", V1, URI1)
    assert server.writes() == []


def test_shared_mode_failed_smoke_check_fails_the_deploy(kube, clock):
    server, _ = kube
    server.put(build_shared_inference_service(ROOT, NS, IMAGE))
    with pytest.raises(DeployError) as info:
        shared(kube, clock).deploy("bot-a", V1, URI1, smoke_check=lambda url: False)
    assert str(info.value) == (
        f"bot 'bot-a' version {V1} on shared InferenceService 'botyard-shared' in namespace 'botyard': smoke check "
        "against http://botyard-shared-predictor.botyard.svc.cluster.local failed"
    )


# --- the RBAC verbs deploy needs ------------------------------------------------------------------
HTTP_VERBS = {"GET": "get", "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}


def test_every_request_deploy_and_rollback_send_needs_only_the_declared_verbs(kube, clock):
    """Create, update, canary, rollback, shared: the verbs of all requests are exactly kube_api.VERBS
    (and manifests/base/rbac.yaml grants exactly those: tests/test_manifests.py)."""
    server, _ = kube
    d = deployer(kube, clock)
    d.deploy("bot-a", V1, URI1)
    d.deploy("bot-a", V2, URI2)
    deployer(kube, clock, canary_traffic_percent=10).deploy("bot-a", V1, URI1, smoke_check=lambda url: True)
    d.rollback("bot-a", URI2, V2)
    shared(kube, clock).deploy("bot-b", V1, f"{ROOT}/bot-b/{V1}")
    assert {HTTP_VERBS[r.method] for r in server.requests} == set(kube_api.VERBS) == {"get", "create", "patch"}


# --- the smoke check against a server that answers -------------------------------------------------
@pytest.fixture
def answering_server():
    """A loopback HTTP server answering V1 predictions with the versions in ``answers`` (then the last)."""
    import http.server
    import threading

    state = {"answers": [V1], "requests": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["requests"].append((self.path, body))
            version = state["answers"].pop(0) if len(state["answers"]) > 1 else state["answers"][0]
            if version is None:
                data, code = b'{"error": "Model with name bot-a is not ready."}', 503
            else:
                data, code = json.dumps({"predictions": [{"intent": "greet", "model_version": version}]}).encode(), 200
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    httpd.shutdown()
    httpd.server_close()


def test_smoke_check_waits_until_the_new_version_answers(answering_server, clock):
    url, state = answering_server
    state["answers"] = [None, V1, V2]  # not ready, the old version, then the new one
    check = SmokeCheck("hello there", "bot-a", V2, timeout_s=20, interval_s=2, clock=clock, sleep=clock.sleep)
    assert check(url) is True
    assert state["requests"] == [("/v1/models/bot-a:predict", {"instances": ["hello there"]})] * 3
    assert check.answers[1:] == [f"version {V1} answered, not {V2}", f"version {V2} answered"]
    assert check.answers[0].startswith(f"HTTP 503 from {url}/v1/models/bot-a:predict: ")
    assert clock.sleeps == [2, 2]


def test_smoke_check_times_out_naming_the_last_answer(answering_server, clock):
    url, state = answering_server
    check = SmokeCheck("hello there", "bot-a", V2, timeout_s=5, interval_s=2, clock=clock, sleep=clock.sleep)
    with pytest.raises(DeployError) as info:
        check(url)
    assert str(info.value) == (
        f"'hello there' sent to model 'bot-a' for 5s: never answered by version {V2}; last: version {V1} answered, not {V2}"
    )
    assert clock.sleeps == [2, 2, 1]


def test_smoke_check_reports_an_unreachable_service(clock):
    server = FakeKube().start()
    url = server.host
    server.stop()
    check = SmokeCheck("hi", "bot-a", V1, timeout_s=1, interval_s=1, clock=clock, sleep=clock.sleep)
    with pytest.raises(DeployError, match=rf"last: {url}/v1/models/bot-a:predict unreachable \("):
        check(url)


# --- errors -------------------------------------------------------------------------------------
def test_api_error_becomes_deploy_error(kube, clock):
    server, _ = kube
    server.fail_next(
        "GET", 403, "Forbidden",
        'inferenceservices.serving.kserve.io "bot-a" is forbidden: User "system:serviceaccount:kubeflow:pipeline-runner" '
        'cannot get resource "inferenceservices" in API group "serving.kserve.io" in the namespace "botyard"',
    )
    with pytest.raises(DeployError) as info:
        deployer(kube, clock).deploy("bot-a", V1, URI1)
    message = str(info.value)
    assert message.startswith(
        "cannot read InferenceService 'bot-a' in namespace 'botyard' (bot 'bot-a'): HTTP 403 Forbidden: "
        'inferenceservices.serving.kserve.io "bot-a" is forbidden: User'
    )
    assert message.endswith(
        "; the service account needs get, create and patch on inferenceservices.serving.kserve.io "
        "in namespace 'botyard' (a Role and RoleBinding)"
    )
    assert isinstance(info.value.__cause__, ApiException) and info.value.__cause__.status == 403


def test_rejected_create_names_the_status(kube, clock):
    server, _ = kube
    server.fail_next("POST", 422, "Invalid", 'InferenceService.serving.kserve.io "bot-a" is invalid: spec.predictor: Required value')
    with pytest.raises(DeployError, match=r"^cannot create InferenceService 'bot-a' in namespace 'botyard' \(bot 'bot-a'\): "
                       r"HTTP 422 Unprocessable Entity: .*Required value; the API server rejected the manifest$"):
        deployer(kube, clock).deploy("bot-a", V1, URI1)


def test_unreachable_api_becomes_deploy_error(clock):
    server = FakeKube().start()
    host = server.host
    server.stop()  # nothing listens there any more
    from kubernetes import client

    api = client.ApiClient(client.Configuration(host=host))
    d = ClusterDeployer(ClusterDeployConfig(namespace=NS), api_client=api, clock=clock, sleep=clock.sleep)
    with pytest.raises(DeployError, match=rf"^cannot read InferenceService 'bot-a' .*: the Kubernetes API at {host} is unreachable"):
        d.deploy("bot-a", V1, URI1)


def test_missing_kubeconfig_becomes_deploy_error(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    d = ClusterDeployer(ClusterDeployConfig(namespace=NS))  # no cluster access needed to construct it
    with pytest.raises(DeployError) as info:
        d.deploy("bot-a", V1, URI1)
    assert str(info.value).startswith(
        "no Kubernetes credentials: not running in a cluster (Service host/port is not set.) and "
        f"no usable kubeconfig at {tmp_path / 'missing-kubeconfig'} ("
    )
    assert str(info.value).endswith("); set KUBECONFIG or run the step in the cluster")


# --- the fake itself ----------------------------------------------------------------------------
def test_fake_kube_json_patch_and_delete(kube):
    server, _ = kube
    existing(server)

    def call(method: str, body=None, content_type="application/json"):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{server.host}{BASE}/bot-a", data=data, method=method,
                                     headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    status, obj = call("PATCH", [{"op": "replace", "path": "/spec/predictor/model/storageUri", "value": URI2},
                                 {"op": "add", "path": "/spec/predictor/canaryTrafficPercent", "value": 10}],
                       "application/json-patch+json")
    assert status == 200 and obj["metadata"]["generation"] == 2
    assert obj["spec"]["predictor"]["canaryTrafficPercent"] == 10
    status, obj = call("PATCH", [{"op": "remove", "path": "/spec/nope"}], "application/json-patch+json")
    assert (status, obj["reason"]) == (422, "Invalid")
    status, obj = call("PATCH", {"spec": {}}, "application/strategic-merge-patch+json")
    assert (status, obj["reason"]) == (415, "UnsupportedMediaType")
    assert call("DELETE")[0] == 200
    status, obj = call("GET")
    assert (status, obj["kind"], obj["reason"], obj["code"]) == (404, "Status", "NotFound", 404)
    assert obj["message"] == 'inferenceservices.serving.kserve.io "bot-a" not found'


def test_botyard_run_for_a_cluster_refuses_the_local_models_folder_before_any_step(capsys, tmp_path):
    from botyard.pipelines.cli import main

    assert main(["run", "--param", "deploy_target=cluster", "--pipeline-root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "models_root 'models' is a relative path: on a cluster it names a path inside one pod" in err
    assert "s3://BUCKET/models" in err
    assert not (tmp_path / "runs").exists()  # no step ran
