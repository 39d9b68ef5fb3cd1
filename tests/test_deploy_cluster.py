"""Cluster mode of the deploy step against an in-process fake Kubernetes API (``fake_kube``).

Every test asserts the exact requests sent: methods, paths, content types and bodies.
Polling runs on a fake clock, so timeouts cost no wall time.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import k8s_schemas
import pytest
from fake_kube import FakeKube, by_generation, manual, never_ready, ready_after, running_fake_kube
from kubernetes.client.exceptions import ApiException

from botyard.components.deploy import inference_service
from botyard.components.deploy.config import ClusterDeployConfig, DeployResult
from botyard.components.deploy.inference_service import (
    build_inference_service,
    build_shared_inference_service,
    inference_service_name,
)
from botyard.components.deploy.rollout import ClusterDeployer
from botyard.components.base.errors import ConfigError, DeployError

NS = "botyard"
BASE = "/apis/serving.kserve.io/v1beta1/namespaces/botyard/inferenceservices"
ROOT = "gs://models"
V1, V2 = "20261101T000000Z-aaaaaaaa", "20261102T000000Z-bbbbbbbb"
URI1, URI2 = f"{ROOT}/bot-a/{V1}", f"{ROOT}/bot-a/{V2}"
MERGE = "application/merge-patch+json"


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
    config = {"ready_timeout_s": 20, "poll_interval_s": 5, **config}
    return ClusterDeployer(ClusterDeployConfig(**config), api_client=kube[1], clock=clock, sleep=clock.sleep)


def existing(server: FakeKube, uri: str = URI1, bot: str = "bot-a", **kw) -> dict:
    return server.put(build_inference_service(bot, uri, NS), **kw)


def rollout_patch(uri: str, version: str | None, canary: int | None) -> dict:
    return {
        "metadata": {"annotations": {"botyard.dev/model-version": version}},
        "spec": {"predictor": {"canaryTrafficPercent": canary, "model": {"storageUri": uri}}},
    }


# --- manifests ----------------------------------------------------------------------------------
def test_build_inference_service_is_exact_and_valid():
    body = build_inference_service(
        "bot-a", URI1, NS, service_account="models-reader", canary_traffic_percent=10,
        resources={"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
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
                "serving.kserve.io/enable-tag-routing": "true",
                "botyard.dev/model-version": V1,
            },
        },
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "botyard-intent"},
                    "runtime": "botyard-predictor",
                    "storageUri": URI1,
                    "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
                },
                "serviceAccountName": "models-reader",
                "canaryTrafficPercent": 10,
            }
        },
    }
    assert_valid_isvc(body)
    assert_valid_isvc(build_shared_inference_service(ROOT, NS, bot_versions={"bot-a": V1}))


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


# --- per-bot mode -------------------------------------------------------------------------------
def test_create_when_missing(kube, clock):
    server, _ = kube
    result = deployer(kube, clock).deploy("bot-a", V1, URI1)

    assert server.calls() == [("GET", "bot-a"), ("POST", None), ("GET", "bot-a")]
    post = server.requests[1]
    assert (post.path, post.content_type) == (BASE, "application/json")
    assert post.body == build_inference_service("bot-a", URI1, NS)
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
    body = build_inference_service("bot-a", URI2, NS, canary_traffic_percent=10)
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
        "the previous revision keeps serving, fix the model and deploy again or roll back"
    )


def test_update_with_failed_smoke_check_restores_previous_version(kube, clock):
    server, _ = kube
    existing(server)
    with pytest.raises(DeployError, match=f"smoke check against http://bot-a.botyard.example.com failed; rolled back to {V1}$"):
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


# --- shared mode --------------------------------------------------------------------------------
def test_shared_mode_creates_then_annotates(kube, clock):
    server, _ = kube
    d = deployer(kube, clock, mode="shared")
    created = d.deploy("bot-a", V1, URI1)

    assert server.calls() == [("GET", "botyard-shared"), ("POST", None), ("GET", "botyard-shared")]
    post = server.requests[1].body
    assert_valid_isvc(post)
    assert post == build_shared_inference_service(ROOT, NS, bot_versions={"bot-a": V1})
    assert post["spec"]["predictor"]["model"]["storageUri"] == ROOT
    assert post["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "botyard", "botyard.dev/mode": "shared"}
    assert post["metadata"]["annotations"]["botyard.dev/version.bot-a"] == V1
    assert (created.action, created.url) == ("created", "http://botyard-shared.botyard.example.com")

    server.requests.clear()
    b_uri = f"{ROOT}/bot-b/{V2}"
    updated = d.deploy("bot-b", V2, b_uri)
    assert server.calls() == [("GET", "botyard-shared"), ("PATCH", "botyard-shared"), ("GET", "botyard-shared")]
    patch = server.requests[1]
    assert (patch.content_type, patch.body) == (MERGE, {"metadata": {"annotations": {"botyard.dev/version.bot-b": V2}}})
    assert updated.action == "updated"
    assert server.get("botyard-shared")["metadata"]["generation"] == 1  # annotations are no spec change

    server.requests.clear()
    assert d.deploy("bot-b", V2, b_uri).action == "unchanged"
    assert server.calls() == [("GET", "botyard-shared")]


def test_shared_mode_survives_a_create_race(kube, clock):
    server, _ = kube
    other = build_shared_inference_service(ROOT, NS, bot_versions={"bot-b": V2})
    server.before_next("POST", lambda: server.put(other))  # another bot's deploy wins the race
    result = deployer(kube, clock, mode="shared").deploy("bot-a", V1, URI1)

    assert server.calls() == [
        ("GET", "botyard-shared"),
        ("POST", None),  # 409 AlreadyExists
        ("GET", "botyard-shared"),
        ("PATCH", "botyard-shared"),
        ("GET", "botyard-shared"),
    ]
    assert result.action == "updated"
    annotations = server.get("botyard-shared")["metadata"]["annotations"]
    assert (annotations["botyard.dev/version.bot-a"], annotations["botyard.dev/version.bot-b"]) == (V1, V2)


def test_shared_mode_refuses_another_models_root(kube, clock):
    server, _ = kube
    server.put(build_shared_inference_service("s3://elsewhere", NS))
    with pytest.raises(DeployError, match=r"serves models from s3://elsewhere, but bot 'bot-a' version .* is under gs://models"):
        deployer(kube, clock, mode="shared").deploy("bot-a", V1, URI1)
    assert server.writes() == []


def test_shared_mode_rejects_bot_ids_too_long_for_an_annotation():
    with pytest.raises(ConfigError, match="too long for shared mode"):
        inference_service.bot_version_annotation("b" * 56)
    assert inference_service.bot_version_annotation("b" * 55) == "botyard.dev/version." + "b" * 55


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
    d = ClusterDeployer(ClusterDeployConfig(), api_client=api, clock=clock, sleep=clock.sleep)
    with pytest.raises(DeployError, match=rf"^cannot read InferenceService 'bot-a' .*: the Kubernetes API at {host} is unreachable"):
        d.deploy("bot-a", V1, URI1)


def test_missing_kubeconfig_becomes_deploy_error(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    d = ClusterDeployer(ClusterDeployConfig())  # no cluster access needed to construct it
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
