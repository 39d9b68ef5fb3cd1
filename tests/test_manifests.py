"""The Kubernetes manifests (manifests/) and the validator they are checked with.

Every document under manifests/ and every object ``kustomize build`` renders for the cluster
part, the base and each overlay is validated: KServe resources against the CRDs in
../shared/crds/kserve/, built-in kinds with kubernetes-validate (see tests/k8s_schemas.py).
The example InferenceServices are compared with what the deploy step builds in code, so the
two designs (per-bot, shared) and the labels deploy requires cannot drift from the manifests;
the Role is compared with the verbs the deploy code uses. Rendering needs kustomize or
kubectl; where neither is installed the tests fail and name the install step
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
from botyard.components.deploy import inference_service as isvc
from botyard.components.deploy import kube_api

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "manifests"
NAMESPACE = "kubeflow-user-example-com"  # the profile namespace of a stock Kubeflow's example user
KSERVE_GROUP = "serving.kserve.io"
IMAGE_REPOSITORY = "ghcr.io/botyard/botyard-predictor"
MODELS_BUCKET = "s3://botyard-models"
RUNTIME = "botyard-predictor"
MODEL_FORMAT = "botyard-intent"
RUN_ACCOUNT = "default-editor"  # what KFP runs in a profile namespace execute as
PREDICTOR_ACCOUNT = "botyard-predictor"
STORAGE_SECRET = "botyard-storage"
MINIO = "http://minio-service.kubeflow:9000"

BASE_KINDS = Counter({"ServiceAccount": 1, "Role": 1, "RoleBinding": 1})
BUILDS = {
    "cluster": Counter({"ClusterServingRuntime": 1}),
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
    """``kustomize build`` of the cluster part, the base and each overlay; fails (never skips) without a binary."""
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


def test_manifest_tree_has_cluster_base_and_overlays():
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
    expected_namespace = NAMESPACE if name.startswith("overlays/") else None
    assert {o["metadata"].get("namespace") for o in objs} == {expected_namespace}
    for binding in (o for o in objs if o["kind"] == "RoleBinding"):
        for subject in binding["subjects"]:
            assert subject.get("namespace") == expected_namespace


@pytest.mark.parametrize("name", BUILDS)
def test_built_objects_are_valid(name, built, request):
    validate_built_in_then_custom(built[name], request)


# --- security -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BUILDS)
def test_every_container_is_non_root_unprivileged_read_only_with_resources(name, built):
    objs = built[name]
    containers = [c for o in objs for c in k8s_schemas.iter_containers(o)]
    if name == "base":
        assert containers == []  # accounts and RBAC only
        return
    assert containers, "no containers found: iter_containers does not know these kinds"
    assert [p for o in objs for p in k8s_schemas.container_problems(o)] == []
    for where, container, pod_sc in containers:
        sc = container["securityContext"]
        assert sc.get("runAsUser", pod_sc.get("runAsUser")) == 10001, where  # the images' user


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


def test_no_secret_value_is_in_the_repository():
    """Secrets only by reference: no Secret object, no literal credential in any manifest."""
    for path in MANIFEST_FILES:
        for doc in k8s_schemas.load_yaml_documents(path):
            assert doc.get("kind") != "Secret", path
        text = path.read_text(encoding="utf-8")
        for pattern in (r"AKIA[0-9A-Z]{16}", r"(?i)(password|secret_access_key)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{8,}"):
            assert not re.search(pattern, text), (path, pattern)


def test_deployer_role_grants_exactly_the_verbs_the_deploy_code_uses(built):
    role = only(built["base"], "Role")
    assert role["metadata"]["name"] == "botyard-deployer"
    assert role["rules"] == [
        {"apiGroups": [isvc.GROUP], "resources": [isvc.PLURAL], "verbs": list(kube_api.VERBS)}
    ]


def test_rolebinding_gives_the_deployer_role_to_the_account_runs_execute_as(built):
    objs = built["overlays/per-bot"]
    binding = only(objs, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "botyard-deployer"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RUN_ACCOUNT, "namespace": NAMESPACE}]
    [account] = [o for o in objs if o["kind"] == "ServiceAccount"]
    assert account["metadata"]["name"] == PREDICTOR_ACCOUNT == isvc.DEFAULT_SERVICE_ACCOUNT
    assert account["automountServiceAccountToken"] is False
    assert account["secrets"] == [{"name": STORAGE_SECRET}]  # by reference; created in the namespace, never in Git


# --- what each object promises ------------------------------------------------------------
def test_cluster_serving_runtime_serves_botyard_models_from_mnt_models_in_every_namespace(built):
    runtime = only(built["cluster"], "ClusterServingRuntime")  # cluster-scoped: every profile namespace
    assert runtime["metadata"]["name"] == RUNTIME == isvc.DEFAULT_RUNTIME
    assert "namespace" not in runtime["metadata"]
    assert runtime["spec"]["supportedModelFormats"] == [{"name": MODEL_FORMAT, "version": "1", "autoSelect": True}]
    assert runtime["spec"]["protocolVersions"] == ["v1", "v2"]
    [container] = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"] == f"{IMAGE_REPOSITORY}:{project_version()}"
    # one version folder at /mnt/models, served under the InferenceService name KServe substitutes
    assert container["args"] == ["serve", "--models-root", "/mnt/models", "--model-name", "{{.Name}}", "--host", "0.0.0.0", "--port", "8080"]
    assert container["securityContext"] == isvc.SECURITY_CONTEXT
    assert container["resources"] == isvc.PER_BOT_RESOURCES
    assert runtime["metadata"]["annotations"]["prometheus.kserve.io/path"] == "/metrics"


def test_per_bot_overlay_is_exactly_what_deploy_builds(built):
    objs = built["overlays/per-bot"]
    example = only(objs, "InferenceService")
    bot_id = example["metadata"]["name"]
    assert model_store.check_bot_id(bot_id) == "sample-bot"
    uri = example["spec"]["predictor"]["model"]["storageUri"]
    match = re.fullmatch(rf"{re.escape(MODELS_BUCKET)}/([^/]+)/([^/]+)", uri)
    assert match and match.group(1) == bot_id, uri
    assert model_store._VERSION_PATTERN.match(match.group(2)), f"{match.group(2)} is not a model version id"
    assert example == isvc.build_inference_service(bot_id, uri, NAMESPACE)
    assert example["metadata"]["labels"] == isvc.labels_for(bot_id) == {**isvc.LABELS, isvc.LABEL_BOT_ID: bot_id}
    assert example["spec"]["predictor"]["model"]["runtime"] == only(built["cluster"], "ClusterServingRuntime")["metadata"]["name"]
    assert example["spec"]["predictor"]["serviceAccountName"] == PREDICTOR_ACCOUNT


def test_shared_overlay_is_exactly_what_deploy_builds(built):
    """One design for shared mode: the predictor reads the store live (no storage initializer,
    no copy at pod start). The overlay's args and resources are the predictor's; when they
    change, inference_service.SHARED_SERVE_ARGS / SHARED_RESOURCES change with them."""
    example = only(built["overlays/shared"], "InferenceService")
    expected = isvc.build_shared_inference_service(
        MODELS_BUCKET, NAMESPACE, f"{IMAGE_REPOSITORY}:{project_version()}", storage_secret=STORAGE_SECRET,
        endpoint_url=MINIO,
    )
    assert example == expected
    assert example["metadata"]["labels"] == isvc.labels_for(shared=True) == {**isvc.LABELS, isvc.LABEL_MODE: "shared"}
    assert "model" not in example["spec"]["predictor"]
    assert isvc.shared_models_root(example) == MODELS_BUCKET


def test_shared_overlay_args_parse_with_the_real_serve_command(built):
    from botyard.pipelines.cli import build_parser

    [container] = only(built["overlays/shared"], "InferenceService")["spec"]["predictor"]["containers"]
    args = build_parser().parse_args(container["args"])
    assert (args.models_root, args.host, args.port) == (MODELS_BUCKET, "0.0.0.0", 8080)
    assert (args.memory_budget, args.preload_most_requested, args.keep_alive_timeout) == (3 * 2**30, 20, 65.0)


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
