"""The Kubernetes manifests (manifests/), the image definition (containers/) and the validator they are checked with.

Every document under manifests/ and every object ``kustomize build`` renders for the base and
each overlay is validated: KServe resources against the CRDs in ../shared/crds/kserve/,
built-in kinds with kubernetes-validate (see tests/k8s_schemas.py). Rendering needs kustomize
or kubectl; where neither is installed the tests fail and name the install step
(k8s_schemas.KUSTOMIZE_INSTALL).
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from pathlib import Path

import pytest

import k8s_schemas
from botyard.components.base import model_store

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "manifests"
NAMESPACE = "botyard"
KSERVE_GROUP = "serving.kserve.io"
IMAGE_REPOSITORY = "ghcr.io/botyard/botyard-predictor"
MODELS_BUCKET = "gs://botyard-models"
RUNTIME = "botyard-predictor"
MODEL_FORMAT = "botyard-intent"
PIPELINE_ACCOUNT = "botyard-pipeline"
PREDICTOR_ACCOUNT = "botyard-predictor"
DEPLOYER_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]

BASE_KINDS = Counter({"ServiceAccount": 2, "Role": 1, "RoleBinding": 1, "ServingRuntime": 1})
BUILDS = {
    "base": BASE_KINDS,
    "overlays/per-bot": BASE_KINDS + Counter({"InferenceService": 1}),
    "overlays/shared": BASE_KINDS + Counter({"InferenceService": 1}),
}

MANIFEST_FILES = sorted(MANIFESTS.rglob("*.yaml"))
RESOURCE_DOCS = [
    pytest.param(doc, id=f"{path.relative_to(MANIFESTS)}#{i}")
    for path in MANIFEST_FILES
    if path.name != "kustomization.yaml"
    for i, doc in enumerate(k8s_schemas.load_yaml_documents(path))
]


@pytest.fixture(scope="module")
def crds():
    try:
        return k8s_schemas.load_crds()
    except k8s_schemas.SchemaUnavailable as exc:
        pytest.skip(f"KServe CRDs unavailable, custom resources cannot be validated: {exc}")


def kustomize_missing() -> str | None:
    try:
        k8s_schemas.kustomize_command()
    except k8s_schemas.KustomizeUnavailable as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict]]:
    """``kustomize build`` of the base and each overlay; fails (never skips) without a binary."""
    missing = kustomize_missing()
    if missing:
        pytest.fail(missing, pytrace=False)
    return {name: k8s_schemas.kustomize_build(MANIFESTS / name) for name in BUILDS}


def only(objs: list[dict], kind: str) -> dict:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def project_version() -> str:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


# --- every manifest is valid ---------------------------------------------------------------
def test_kustomize_is_installed():
    """CI installs it with k8s_schemas.KUSTOMIZE_INSTALL; without it the build tests cannot run."""
    missing = kustomize_missing()
    if missing:
        pytest.fail(missing, pytrace=False)


def test_manifest_tree_has_base_and_overlays():
    for name in BUILDS:
        assert (MANIFESTS / name / "kustomization.yaml").is_file(), name
    assert RESOURCE_DOCS, "no resource documents under manifests/"


def validate_built_in_then_custom(objs: list[dict], request) -> None:
    """Built-in kinds always; custom resources only where the CRDs are there (else skip)."""
    custom = [o for o in objs if o["apiVersion"].startswith(KSERVE_GROUP + "/")]
    k8s_schemas.validate_all([o for o in objs if o not in custom])
    if custom:
        request.getfixturevalue("crds")
        k8s_schemas.validate_all(custom)


@pytest.mark.parametrize("doc", RESOURCE_DOCS)
def test_source_document_is_valid(doc, request):
    validate_built_in_then_custom([doc], request)


@pytest.mark.parametrize("name", BUILDS)
def test_build_renders_expected_kinds_in_namespace(name, built):
    objs = built[name]
    assert Counter(o["kind"] for o in objs) == BUILDS[name]
    expected_namespace = None if name == "base" else NAMESPACE
    assert {o["metadata"].get("namespace") for o in objs} == {expected_namespace}
    for subject in only(objs, "RoleBinding")["subjects"]:
        assert subject.get("namespace") == expected_namespace


@pytest.mark.parametrize("name", BUILDS)
def test_built_objects_are_valid(name, built, request):
    validate_built_in_then_custom(built[name], request)


# --- security -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BUILDS)
def test_every_container_is_non_root_unprivileged_with_resources(name, built):
    objs = built[name]
    containers = [c for o in objs for c in k8s_schemas.iter_containers(o)]
    assert containers, "no containers found: iter_containers does not know these kinds"
    assert [p for o in objs for p in k8s_schemas.container_problems(o)] == []
    for where, container, pod_sc in containers:
        sc = container["securityContext"]
        assert sc.get("runAsUser", pod_sc.get("runAsUser")) == 1000, where  # the image's user


def test_container_problems_reports_root_and_missing_resources():
    pod = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bad"},
        "spec": {"template": {"spec": {
            "securityContext": {"runAsNonRoot": True},
            "containers": [{"name": "app", "image": "x", "securityContext": {"runAsUser": 0}}],
        }}},
    }
    assert k8s_schemas.container_problems(pod) == [
        "Deployment/bad: spec.template.spec.containers[0](app): runAsUser is 0",
        "Deployment/bad: spec.template.spec.containers[0](app): allowPrivilegeEscalation is not false",
        "Deployment/bad: spec.template.spec.containers[0](app): capabilities.drop lacks ALL",
        "Deployment/bad: spec.template.spec.containers[0](app): readOnlyRootFilesystem is not true",
        "Deployment/bad: spec.template.spec.containers[0](app): resources.requests lacks ['cpu', 'memory']",
        "Deployment/bad: spec.template.spec.containers[0](app): resources.limits lacks ['cpu', 'memory']",
    ]


def test_deployer_role_grants_only_inferenceservice_verbs(built):
    role = only(built["base"], "Role")
    assert role["metadata"]["name"] == "botyard-deployer"
    assert role["rules"] == [
        {"apiGroups": [KSERVE_GROUP], "resources": ["inferenceservices"], "verbs": DEPLOYER_VERBS}
    ]


def test_rolebinding_gives_the_deployer_role_to_the_pipeline_account_only(built):
    objs = built["overlays/per-bot"]
    binding = only(objs, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "botyard-deployer"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": PIPELINE_ACCOUNT, "namespace": NAMESPACE}]
    accounts = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ServiceAccount"}
    assert set(accounts) == {PIPELINE_ACCOUNT, PREDICTOR_ACCOUNT}
    assert accounts[PREDICTOR_ACCOUNT]["automountServiceAccountToken"] is False


# --- what each object promises ------------------------------------------------------------
def test_serving_runtime_serves_botyard_models_from_mnt_models(built):
    runtime = only(built["base"], "ServingRuntime")
    assert runtime["metadata"]["name"] == RUNTIME
    assert runtime["spec"]["supportedModelFormats"] == [{"name": MODEL_FORMAT, "version": "1", "autoSelect": True}]
    assert runtime["spec"]["protocolVersions"] == ["v1", "v2"]
    [container] = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"] == f"{IMAGE_REPOSITORY}:{project_version()}"
    # one version folder at /mnt/models, served under the InferenceService name KServe substitutes
    assert container["args"] == ["serve", "--models-root", "/mnt/models", "--model-name", "{{.Name}}", "--host", "0.0.0.0", "--port", "8080"]
    assert runtime["metadata"]["annotations"]["prometheus.kserve.io/path"] == "/metrics"


def test_per_bot_inference_service_points_at_one_model_version(built):
    objs = built["overlays/per-bot"]
    isvc = only(objs, "InferenceService")
    bot_id = isvc["metadata"]["name"]
    assert model_store.check_bot_id(bot_id) == "sample-bot"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    predictor = isvc["spec"]["predictor"]
    assert "canaryTrafficPercent" not in predictor
    assert predictor["serviceAccountName"] == PREDICTOR_ACCOUNT
    model = predictor["model"]
    assert model["modelFormat"]["name"] == MODEL_FORMAT
    assert model["runtime"] == only(objs, "ServingRuntime")["metadata"]["name"]
    match = re.fullmatch(rf"{re.escape(MODELS_BUCKET)}/([^/]+)/([^/]+)", model["storageUri"])
    assert match, model["storageUri"]
    assert match.group(1) == bot_id
    assert model_store._VERSION_PATTERN.match(match.group(2)), f"{match.group(2)} is not a model version id"


def test_shared_inference_service_reads_the_whole_store(built):
    isvc = only(built["overlays/shared"], "InferenceService")
    assert isvc["metadata"]["name"] == "botyard-shared"
    predictor = isvc["spec"]["predictor"]
    assert "model" not in predictor  # no storage initializer: the server reads the store itself
    assert predictor["serviceAccountName"] == PREDICTOR_ACCOUNT
    [container] = predictor["containers"]
    assert container["image"] == f"{IMAGE_REPOSITORY}:{project_version()}"
    assert container["args"] == ["serve", "--models-root", MODELS_BUCKET, "--host", "0.0.0.0", "--port", "8080"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}


# --- the validator can fail -------------------------------------------------------------------
@pytest.fixture()
def per_bot_isvc() -> dict:
    """The per-bot example as written (no kustomize needed), to break in each test."""
    path = MANIFESTS / "overlays" / "per-bot" / "inferenceservice.yaml"
    return only(k8s_schemas.load_yaml_documents(path), "InferenceService")


def test_validator_rejects_a_non_string_storage_uri(per_bot_isvc, crds):
    per_bot_isvc["spec"]["predictor"]["model"]["storageUri"] = 42
    assert k8s_schemas.errors(per_bot_isvc) == [
        "InferenceService/sample-bot: spec.predictor.model.storageUri: 42 is not of type 'string'"
    ]
    with pytest.raises(k8s_schemas.ManifestInvalid, match="storageUri"):
        k8s_schemas.validate(per_bot_isvc)


def test_validator_rejects_unknown_fields_only_in_strict_mode(per_bot_isvc, crds):
    per_bot_isvc["spec"]["predictor"]["canaryPercent"] = 10  # misspelt canaryTrafficPercent
    assert k8s_schemas.errors(per_bot_isvc) == [
        "InferenceService/sample-bot: spec.predictor: Additional properties are not allowed "
        "('canaryPercent' was unexpected)"
    ]
    assert k8s_schemas.errors(per_bot_isvc, strict=False) == []  # the API server would prune it


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda o: o["spec"]["predictor"]["model"]["resources"]["limits"].update(memory="2 GB"),
         "spec.predictor.model.resources.limits.memory: '2 GB' does not match"),
        (lambda o: o["spec"]["predictor"].update(minReplicas=2**31),
         "spec.predictor.minReplicas: 2147483648 is not a 'int32'"),
        (lambda o: o["spec"]["predictor"]["model"].update(env=[{"name": "A"}, {"name": "A", "value": "x"}]),
         "spec.predictor.model.env: items 0 and 1 share the key name='A'"),
        (lambda o: o["metadata"]["labels"].update(tier=3), "metadata.labels.tier: 3 is not of type"),
        (lambda o: o["metadata"].update(name="Sample_Bot"),
         "metadata.name: 'Sample_Bot' is not a DNS-1123 subdomain"),
        (lambda o: o.update(apiVersion="serving.kserve.io/v1alpha1"),
         "no CRD serves InferenceService in serving.kserve.io/v1alpha1"),
        (lambda o: o["spec"].pop("predictor"), "spec: 'predictor' is a required property"),
    ],
    ids=["bad-quantity", "int32-overflow", "duplicate-env", "non-string-label", "bad-name", "unserved-version",
         "no-predictor"],
)
def test_validator_rejects_broken_inference_services(per_bot_isvc, crds, edit, expected):
    edit(per_bot_isvc)
    found = k8s_schemas.errors(per_bot_isvc)
    assert any(expected in e for e in found), found


def test_validator_accepts_a_body_built_in_code(crds):
    body = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "other-bot", "namespace": NAMESPACE},
        "spec": {"predictor": {
            "canaryTrafficPercent": 10,
            "model": {"modelFormat": {"name": MODEL_FORMAT}, "runtime": RUNTIME,
                      "storageUri": f"{MODELS_BUCKET}/other-bot/20261101T120000Z-0123abcd",
                      "resources": {"limits": {"cpu": 1, "memory": "2Gi"}}},
        }},
    }
    assert k8s_schemas.errors(body) == []


def test_validator_rejects_broken_builtin_kinds():
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "r"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"], "resourceName": ["p"]}],
    }
    [error] = k8s_schemas.errors(role)  # resourceNames, misspelt
    assert error.startswith("Role/r: rules[0]:") and "'resourceName' was unexpected" in error
    assert k8s_schemas.errors(role, strict=False) == []
    del role["rules"][0]["verbs"]
    assert k8s_schemas.errors(role, strict=False) == ["Role/r: rules[0]: 'verbs' is a required property"]


def test_validator_rejects_unknown_kinds_and_non_objects(crds):
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    [error] = k8s_schemas.errors(unknown)
    assert error.startswith("Widget/w: no schema for example.com/v1 Widget: no built-in kind of Kubernetes")
    assert k8s_schemas.errors({"kind": "Role"}) == [
        "Role/<no name>: not a Kubernetes object (needs string apiVersion and kind)"
    ]


@pytest.mark.parametrize(
    "obj",
    [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
        }},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p"},
         "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "d"}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
         "spec": {"selector": {"app": "d"}, "ports": [{"port": 80, "targetPort": "http"}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "n"},
         "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
    ],
    ids=lambda o: o["kind"],
)
def test_validator_knows_the_built_in_kinds_botyard_will_add(obj):
    assert k8s_schemas.errors(obj) == []
