"""What botyard's KServe InferenceServices look like: names, labels, annotations and bodies.

This module only builds objects (dicts, as the Kubernetes API takes them); it never talks to
the API (``kube_api``) and never decides a rollout (``rollout``). The repository's example
manifests (``manifests/overlays/``) are the same objects written out, and
``tests/test_manifests.py`` checks that they carry exactly ``LABELS``.
"""

from __future__ import annotations

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
ANNOTATION_BOT_VERSION_PREFIX = "botyard.dev/version."  # + bot id, on the shared service
ANNOTATION_DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
DEPLOYMENT_MODE = "Serverless"  # canary rollout exists only in serverless mode
# gives each revision a tagged URL (status.components.predictor.traffic[].url), so the
# smoke check can reach the canary itself rather than the 90/10 mix
ANNOTATION_TAG_ROUTING = "serving.kserve.io/enable-tag-routing"

DEFAULT_RUNTIME = "botyard-predictor"
DEFAULT_MODEL_FORMAT = "botyard-intent"

# KServe's webhook wants names that start with a letter; Knative names the predictor's
# revisions "<name>-predictor-00001", which must fit in 63 characters.
ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_ISVC_NAME = 63 - len("-predictor-00001")
_ANNOTATION_NAME_MAX = 63  # the part after the "/" of an annotation key


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


def bot_version_annotation(bot_id: str) -> str:
    """The shared service's annotation key recording ``bot_id``'s deployed version."""
    key = ANNOTATION_BOT_VERSION_PREFIX + check_bot_id(bot_id)
    if len(key.split("/", 1)[1]) > _ANNOTATION_NAME_MAX:
        raise ConfigError(
            f"bot id '{bot_id}' is too long for shared mode: the annotation name "
            f"'{key.split('/', 1)[1]}' exceeds {_ANNOTATION_NAME_MAX} characters; "
            f"use a bot id of at most {_ANNOTATION_NAME_MAX - len('version.')} characters or per-bot mode"
        )
    return key


def _isvc_body(
    name: str,
    namespace: str,
    storage_uri: str,
    *,
    labels: dict[str, str],
    annotations: dict[str, str],
    runtime: str,
    model_format: str,
    service_account: str | None,
    canary_traffic_percent: int | None,
    resources: dict | None,
) -> dict:
    model: dict[str, Any] = {"modelFormat": {"name": model_format}, "runtime": runtime, "storageUri": storage_uri}
    if resources:
        model["resources"] = resources
    predictor: dict[str, Any] = {"model": model}
    if service_account:
        predictor["serviceAccountName"] = service_account
    if canary_traffic_percent is not None:
        predictor["canaryTrafficPercent"] = canary_traffic_percent
    return {
        "apiVersion": f"{GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {
                ANNOTATION_DEPLOYMENT_MODE: DEPLOYMENT_MODE,
                ANNOTATION_TAG_ROUTING: "true",
                **annotations,
            },
        },
        "spec": {"predictor": predictor},
    }


def build_inference_service(
    bot_id: str,
    storage_uri: str,
    namespace: str,
    *,
    runtime: str = DEFAULT_RUNTIME,
    model_format: str = DEFAULT_MODEL_FORMAT,
    service_account: str | None = None,
    canary_traffic_percent: int | None = None,
    resources: dict | None = None,
) -> dict:
    """The InferenceService serving one bot from one model version directory.

    ``storage_uri`` must be ``<models_root>/<bot_id>/<version>``; the version becomes the
    ``botyard.dev/model-version`` annotation. ``resources`` is a Kubernetes
    ``ResourceRequirements`` dict (``requests`` / ``limits``) for the model container.
    """
    _, version = split_version_uri(bot_id, storage_uri)
    return _isvc_body(
        inference_service_name(bot_id),
        namespace,
        storage_uri,
        labels=labels_for(bot_id),
        annotations={ANNOTATION_MODEL_VERSION: version},
        runtime=runtime,
        model_format=model_format,
        service_account=service_account,
        canary_traffic_percent=canary_traffic_percent,
        resources=resources,
    )


def build_shared_inference_service(
    models_root: str,
    namespace: str,
    *,
    name: str = "botyard-shared",
    bot_versions: dict[str, str] | None = None,
    runtime: str = DEFAULT_RUNTIME,
    model_format: str = DEFAULT_MODEL_FORMAT,
    service_account: str | None = None,
    resources: dict | None = None,
) -> dict:
    """The one InferenceService that serves every bot under ``models_root``."""
    return _isvc_body(
        name,
        namespace,
        models_root,
        labels=labels_for(shared=True),
        annotations={bot_version_annotation(b): v for b, v in (bot_versions or {}).items()},
        runtime=runtime,
        model_format=model_format,
        service_account=service_account,
        canary_traffic_percent=None,
        resources=resources,
    )
