"""The trigger service's manifests (manifests/trigger/): valid, secure, and consistent with the CLI.

Every source document and every object ``kustomize build manifests/trigger`` renders is checked
with ``k8s_schemas`` (kubernetes-validate for these built-in kinds); the container's arguments
are parsed by the real ``botyard`` parser, so a flag the manifest uses cannot drift from the CLI.
Rendering needs kubectl or kustomize (``k8s_schemas.KUSTOMIZE_INSTALL``); without it the build
tests fail, naming the install step.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from pathlib import Path

import pytest

import k8s_schemas
from botyard.pipelines.trigger import DB_URL_ENV, SECRET_ENV

REPO = Path(__file__).resolve().parents[1]
TRIGGER = REPO / "manifests" / "trigger"
NAMESPACE = "botyard"
NAME = "botyard-trigger"
IMAGE_REPOSITORY = "ghcr.io/botyard/botyard-trigger"
KINDS = Counter({"ServiceAccount": 1, "Deployment": 1, "Service": 1, "PodDisruptionBudget": 1, "NetworkPolicy": 1})
SOURCE_DOCS = [
    pytest.param(doc, id=f"{path.name}#{i}")
    for path in sorted(TRIGGER.glob("*.yaml"))
    if path.name != "kustomization.yaml"
    for i, doc in enumerate(k8s_schemas.load_yaml_documents(path))
]


@pytest.fixture(scope="module")
def built() -> list[dict]:
    try:
        k8s_schemas.kustomize_command()
    except k8s_schemas.KustomizeUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    return k8s_schemas.kustomize_build(TRIGGER)


def only(objs: list[dict], kind: str) -> dict:
    [found] = [o for o in objs if o["kind"] == kind]
    return found


@pytest.fixture(scope="module")
def pod(built) -> dict:
    return only(built, "Deployment")["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def container(pod) -> dict:
    [c] = pod["containers"]
    return c


def parsed_args(container: dict, monkeypatch):
    """The container's arguments as ``botyard`` parses them (with the Secret-provided env set)."""
    from botyard.pipelines.cli import build_parser

    monkeypatch.setenv(DB_URL_ENV, "postgresql://from-the-secret/botyard")
    return build_parser().parse_args(container["args"])


@pytest.mark.parametrize("doc", SOURCE_DOCS)
def test_source_document_is_valid(doc):
    k8s_schemas.validate(doc)


def test_build_renders_the_expected_objects_in_the_namespace(built):
    assert Counter(o["kind"] for o in built) == KINDS
    assert {o["metadata"]["namespace"] for o in built} == {NAMESPACE}
    assert {o["metadata"]["name"] for o in built} == {NAME}
    assert all(o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "botyard" for o in built)
    k8s_schemas.validate_all(built)


def test_no_rbac_and_no_secret_values_in_the_manifests(built):
    assert not {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "Secret"} & {o["kind"] for o in built}
    account = only(built, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert "no Role" in (TRIGGER / "serviceaccount.yaml").read_text()  # the reason is written down


def test_container_is_non_root_unprivileged_with_resources(built, pod, container):
    assert k8s_schemas.container_problems(only(built, "Deployment")) == []
    assert container["securityContext"]["runAsUser"] == 10001  # the images' user: a high UID (checkov CKV_K8S_40)
    assert pod["serviceAccountName"] == NAME and pod["automountServiceAccountToken"] is False


def test_two_replicas_on_postgresql_with_a_disruption_budget(built, container, monkeypatch):
    deployment = only(built, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = only(built, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    args = parsed_args(container, monkeypatch)
    assert args.command == "trigger-server" and args.handler.__module__ == "botyard.pipelines.commands.trigger_server"
    assert args.db_url.startswith("postgresql://")  # SQLite would not be shared by the replicas
    assert (args.host, args.max_concurrent_runs, args.quiet_period) == ("0.0.0.0", 4, 30.0)
    assert args.allowed_data_prefix == ["gs://botyard-data/"]


def test_secrets_come_from_secret_objects_never_literals(pod, container, monkeypatch):
    env = {e["name"]: e for e in container["env"]}
    assert env[DB_URL_ENV] == {"name": DB_URL_ENV, "valueFrom": {"secretKeyRef": {"name": "botyard-trigger-db", "key": "url"}}}
    assert SECRET_ENV not in env
    args = parsed_args(container, monkeypatch)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret_mount = mounts["webhook-secret"]
    assert secret_mount["readOnly"] is True
    assert args.secret_file == f"{secret_mount['mountPath']}/secret"
    assert volumes["webhook-secret"]["secret"] == {
        "secretName": "botyard-webhook", "defaultMode": 0o440, "items": [{"key": "secret", "path": "secret"}]
    }
    [token] = volumes["kfp-token"]["projected"]["sources"]
    assert token["serviceAccountToken"]["audience"] == "pipelines.kubeflow.org"  # not usable on the Kubernetes API


def test_probes_port_and_service_match_the_server(built, container, monkeypatch):
    args = parsed_args(container, monkeypatch)
    [port] = container["ports"]
    assert (port["name"], port["containerPort"]) == ("http", args.port)
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = only(built, "Service")
    pod_labels = only(built, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()  # the Service selects the trigger pods
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]


def test_image_is_the_project_image(container):
    with open(REPO / "pyproject.toml", "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    assert container["image"] == f"{IMAGE_REPOSITORY}:{version}"


def test_network_policy_admits_only_labelled_senders_and_the_needed_egress(built, container, monkeypatch):
    policy = only(built, "NetworkPolicy")["spec"]
    assert policy["podSelector"] == only(built, "Deployment")["spec"]["selector"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    [ingress] = policy["ingress"]
    assert ingress["ports"] == [{"port": parsed_args(container, monkeypatch).port, "protocol": "TCP"}]
    assert all(next(iter(peer.values())) == {"matchLabels": {"botyard.io/trigger-client": "true"}} for peer in ingress["from"])
    egress_ports = sorted(p["port"] for rule in policy["egress"] for p in rule["ports"])
    assert egress_ports == [53, 53, 443, 5432, 8888]  # DNS, object storage, PostgreSQL, KFP API


def test_audit_token_and_data_limits_fit_the_container(pod, container, monkeypatch):
    args = parsed_args(container, monkeypatch)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["read-token"]["readOnly"] is True
    assert args.read_token_file == f"{mounts['read-token']['mountPath']}/token"
    assert volumes["read-token"]["secret"] == {
        "secretName": "botyard-trigger-read", "defaultMode": 0o440, "items": [{"key": "token", "path": "token"}]
    }
    assert args.dev is False and args.allow_local_data is False  # object-store data under the prefix only
    assert args.namespace and args.kfp_host.startswith("http://ml-pipeline.kubeflow")
    limit = container["resources"]["limits"]["memory"]
    assert limit.endswith("Gi") or limit.endswith("Mi")
    limit_mb = int(limit[:-2]) * (1024 if limit.endswith("Gi") else 1)
    server_bound_mb = 400  # the trigger replica's stated bound (tests/test_trigger_security.py measures it)
    assert server_bound_mb + args.parse_workers * args.parse_memory_mb <= limit_mb
