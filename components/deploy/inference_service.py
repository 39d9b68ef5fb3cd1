"""What botyard's KServe InferenceServices look like: names, labels, annotations and bodies.

This module only builds objects (dicts, as the Kubernetes API takes them); it never talks to
the API (``kube_api``) and never decides a rollout (``rollout``). The repository's example
manifests (``manifests/overlays/per-bot`` and ``manifests/overlays/shared``) are these same
objects written out: ``tests/test_manifests.py`` builds them here and compares, so the
labels deploy requires (``LABELS``) are exactly the ones the overlays carry.

Two designs, one each:

``per-bot``
    ``spec.predictor.model``: the ``botyard-predictor`` ClusterServingRuntime
    (``manifests/cluster/``) with ``storageUri`` = one model version directory, downloaded
    by KServe's storage initializer (credentials: the ``serviceAccountName``'s secrets).
    ``deploymentMode`` Serverless (Knative: canary rollouts, tagged revision URLs) or
    RawDeployment (a plain Deployment; no canary).
``shared``
    ``spec.predictor.containers``: ``botyard serve --models-root <models_root>`` reading the
    model store *live*: it polls every bot's ``CURRENT`` pointer and swaps in a newly promoted
    version without a restart, so promoting a bot never touches this object. No storage
    initializer (there is no one model to download); the container reads the store with the
    credentials in its environment. Always RawDeployment: one warm process, no scale to zero.
"""

from __future__ import annotations

import copy
import hashlib
import re
from typing import Any

from botyard.components.base.errors import ConfigError
from botyard.components.base.model_store import check_bot_id

# --- the InferenceService API -------------------------------------------------------------
GROUP = "serving.kserve.io"
API_VERSION = "v1beta1"
PLURAL = "inferenceservices"
KIND = "InferenceService"

# --- labels and annotations botyard puts on what it deploys -------------------------------
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_BOT_ID = "botyard.dev/bot-id"
LABEL_MODE = "botyard.dev/mode"
# The one definition of the labels: every InferenceService botyard deploys carries these, and
# deploy refuses to touch one that does not (``rollout.ClusterDeployer`` checks them).
LABELS = {LABEL_MANAGED_BY: "botyard"}
MANAGED_BY = LABELS[LABEL_MANAGED_BY]
ANNOTATION_MODEL_VERSION = "botyard.dev/model-version"
ANNOTATION_DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
# gives each Knative revision a tagged URL (status.components.predictor.traffic[].url), so the
# smoke check can reach the canary itself rather than the 90/10 mix (Serverless only)
ANNOTATION_TAG_ROUTING = "serving.kserve.io/enable-tag-routing"
ANNOTATION_PROMETHEUS = "serving.kserve.io/enable-prometheus-scraping"

SERVERLESS, RAW = "Serverless", "RawDeployment"
DEPLOYMENT_MODES = (RAW, SERVERLESS)  # KServe 0.15+ installs default to RawDeployment

DEFAULT_RUNTIME = "botyard-predictor"  # the ClusterServingRuntime in manifests/cluster/
DEFAULT_MODEL_FORMAT = "botyard-intent"
MODEL_FORMAT_VERSION = "1"
DEFAULT_SERVICE_ACCOUNT = "botyard-predictor"  # manifests/base/serviceaccounts.yaml
DEFAULT_SHARED_NAME = "botyard-shared"
PREDICTOR_PORT = 8080

# what every predictor container gets (the per-bot model container too: KServe merges it into
# the runtime's container, which says the same)
SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
PER_BOT_RESOURCES = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
# the shared predictor's 3 GiB --memory-budget + 10% + one load in progress (README "Sizing")
SHARED_RESOURCES = {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
PER_BOT_REPLICAS = (1, 3)  # (minReplicas, maxReplicas)
SHARED_REPLICAS = (2, 4)
# flags of the shared predictor after --models-root (manifests/overlays/shared says the same)
SHARED_SERVE_ARGS = (
    "--host", "0.0.0.0", "--port", str(PREDICTOR_PORT),
    "--memory-budget", "3GiB", "--preload-most-requested", "20", "--keep-alive-timeout", "65",
)  # fmt: skip
TMP_SIZE = "256Mi"  # the emptyDir at /tmp: HOME and TMPDIR (the root filesystem is read-only)

# KServe's webhook wants names that start with a letter; Knative names the predictor's
# revisions "<name>-predictor-00001", which must fit in 63 characters.
ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_ISVC_NAME = 63 - len("-predictor-00001")


def labels_for(bot_id: str | None = None, *, shared: bool = False) -> dict[str, str]:
    """The labels of a per-bot (``bot_id``) or the shared InferenceService: ``LABELS`` plus its own."""
    own = {LABEL_MODE: "shared"} if shared else {LABEL_BOT_ID: check_bot_id(bot_id)}
    return {**LABELS, **own}


def inference_service_name(bot_id: str) -> str:
    """The per-bot InferenceService name: the bot id itself where KServe allows it.

    Bot ids starting with a digit get a ``bot-`` prefix; ids too long for Knative's
    revision names are cut and suffixed with a hash of the full id. The label
    ``botyard.dev/bot-id`` on the service is checked before any write, so a name two
    bots could share is caught rather than overwritten.
    """
    check_bot_id(bot_id)
    name = bot_id if bot_id[0].isalpha() else f"bot-{bot_id}"
    if len(name) > MAX_ISVC_NAME:
        digest = hashlib.sha256(bot_id.encode()).hexdigest()[:8]
        name = f"{name[: MAX_ISVC_NAME - 9].rstrip('-')}-{digest}"
    return name


def split_version_uri(bot_id: str, storage_uri: str) -> tuple[str, str]:
    """``<models_root>/<bot_id>/<version>`` -> ``(models_root, version)``."""
    parts = storage_uri.rstrip("/").rsplit("/", 2)
    if len(parts) != 3 or parts[1] != bot_id or not parts[0] or not parts[2]:
        raise ConfigError(
            f"storage_uri {storage_uri!r} is not a model version directory of bot '{bot_id}': "
            f"expected <models_root>/{bot_id}/<version>"
        )
    return parts[0], parts[2]


def check_deployment_mode(mode: str, canary_traffic_percent: int | None = None) -> None:
    if mode not in DEPLOYMENT_MODES:
        raise ConfigError(f"deployment mode {mode!r} is not known; allowed: {', '.join(DEPLOYMENT_MODES)}")
    if mode == RAW and canary_traffic_percent:
        raise ConfigError(
            f"a canary ({canary_traffic_percent}% of the traffic) needs KServe's Serverless deployment mode "
            "(Knative splits the traffic); RawDeployment has no traffic split: deploy without a canary "
            "(canary_traffic_percent 0) or use deployment_mode Serverless on a cluster with Knative"
        )


def build_inference_service(
    bot_id: str,
    storage_uri: str,
    namespace: str,
    *,
    deployment_mode: str = RAW,
    runtime: str = DEFAULT_RUNTIME,
    model_format: str = DEFAULT_MODEL_FORMAT,
    service_account: str | None = DEFAULT_SERVICE_ACCOUNT,
    canary_traffic_percent: int | None = None,
    resources: dict | None = None,
) -> dict:
    """The InferenceService serving one bot from one model version directory.

    ``storage_uri`` must be ``<models_root>/<bot_id>/<version>``; the version becomes the
    ``botyard.dev/model-version`` annotation. ``resources`` is a Kubernetes
    ``ResourceRequirements`` dict for the model container (default ``PER_BOT_RESOURCES``).
    """
    _, version = split_version_uri(bot_id, storage_uri)
    check_deployment_mode(deployment_mode, canary_traffic_percent)
    annotations = {ANNOTATION_DEPLOYMENT_MODE: deployment_mode, ANNOTATION_PROMETHEUS: "true"}
    if deployment_mode == SERVERLESS:
        annotations[ANNOTATION_TAG_ROUTING] = "true"
    annotations[ANNOTATION_MODEL_VERSION] = version
    predictor: dict[str, Any] = {}
    if service_account:
        predictor["serviceAccountName"] = service_account
    predictor["minReplicas"], predictor["maxReplicas"] = PER_BOT_REPLICAS
    if canary_traffic_percent is not None:
        predictor["canaryTrafficPercent"] = canary_traffic_percent
    predictor["model"] = {
        "modelFormat": {"name": model_format, "version": MODEL_FORMAT_VERSION},
        "runtime": runtime,
        "storageUri": storage_uri,
        "resources": copy.deepcopy(resources or PER_BOT_RESOURCES),
        "securityContext": copy.deepcopy(SECURITY_CONTEXT),
    }
    return {
        "apiVersion": f"{GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": inference_service_name(bot_id), "namespace": namespace, "labels": labels_for(bot_id),
                     "annotations": annotations},
        "spec": {"predictor": predictor},
    }


def shared_serve_args(models_root: str) -> list[str]:
    return ["serve", "--models-root", models_root, *SHARED_SERVE_ARGS]


def shared_models_root(obj: dict) -> str | None:
    """The ``--models-root`` a shared InferenceService's predictor reads, from its container args."""
    for container in (((obj.get("spec") or {}).get("predictor") or {}).get("containers") or []):
        args = container.get("args") or []
        if "--models-root" in args[:-1]:
            return args[args.index("--models-root") + 1]
    return None


def _storage_env(storage_secret: str, secret_keys: dict[str, str], endpoint_url: str) -> list[dict]:
    env = [{"name": var, "valueFrom": {"secretKeyRef": {"name": storage_secret, "key": key}}}
           for key, var in secret_keys.items()] if storage_secret else []
    if endpoint_url:
        env.append({"name": "AWS_ENDPOINT_URL", "value": endpoint_url})
    return env


def build_shared_inference_service(
    models_root: str,
    namespace: str,
    image: str,
    *,
    name: str = DEFAULT_SHARED_NAME,
    service_account: str | None = DEFAULT_SERVICE_ACCOUNT,
    resources: dict | None = None,
    storage_secret: str = "",
    secret_keys: dict[str, str] | None = None,
    endpoint_url: str = "",
) -> dict:
    """The one InferenceService that serves every bot under ``models_root``, reading it live.

    ``storage_secret`` (with ``secret_keys``: secret key -> variable) and ``endpoint_url`` put the
    object store's credentials and endpoint into the predictor's environment by reference.
    """
    keys = secret_keys if secret_keys is not None else {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
                                                         "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}
    env = [
        {"name": "HOME", "value": "/tmp"},
        {"name": "TMPDIR", "value": "/tmp"},
        {"name": "TF_CPP_MIN_LOG_LEVEL", "value": "2"},
        *_storage_env(storage_secret, keys, endpoint_url),
    ]
    container = {
        "name": "kserve-container",
        "image": image,
        "args": shared_serve_args(models_root),
        "ports": [{"containerPort": PREDICTOR_PORT, "protocol": "TCP"}],
        "env": env,
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": PREDICTOR_PORT},
                           "initialDelaySeconds": 10, "periodSeconds": 10, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": PREDICTOR_PORT},
                          "initialDelaySeconds": 60, "periodSeconds": 20, "failureThreshold": 3},
        "resources": copy.deepcopy(resources or SHARED_RESOURCES),
        "securityContext": copy.deepcopy(SECURITY_CONTEXT),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    predictor: dict[str, Any] = {}
    if service_account:
        predictor["serviceAccountName"] = service_account
    predictor["minReplicas"], predictor["maxReplicas"] = SHARED_REPLICAS
    predictor["containers"] = [container]
    predictor["volumes"] = [{"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE}}]
    return {
        "apiVersion": f"{GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels_for(shared=True),
            "annotations": {ANNOTATION_DEPLOYMENT_MODE: RAW, ANNOTATION_PROMETHEUS: "true"},
        },
        "spec": {"predictor": predictor},
    }
