"""How a cluster deploy runs (``ClusterDeployConfig``), where (``run_namespace``), and what it reports.

In a pipeline pod the namespace defaults to the one the run executes in, read from the pod's
service-account namespace file: on multi-user Kubeflow that is the profile namespace whose
``default-editor`` account runs the pipeline, so deploying there needs no extra grant beyond
``manifests/base/rbac.yaml``. ``check_cluster_locations`` refuses, before any work, the local
paths that no pod of a cluster can reach.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Literal

from botyard.components.base.config import ConfigBase
from botyard.components.base.errors import ConfigError
from botyard.components.base.images import ImageConfig
from botyard.components.deploy.inference_service import (
    DEFAULT_MODEL_FORMAT,
    DEFAULT_RUNTIME,
    DEFAULT_SERVICE_ACCOUNT,
    DEFAULT_SHARED_NAME,
    ISVC_NAME,
    MAX_ISVC_NAME,
    PER_BOT_RESOURCES,
    RAW,
    SHARED_RESOURCES,
    check_deployment_mode,
)

ACTIONS = ("created", "updated", "unchanged", "canary-promoted", "rolled-back")
MODES = ("per-bot", "shared")
SERVICE_ACCOUNT_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def run_namespace(path: str | None = None) -> str:
    """The namespace this pod runs in (its service-account namespace file); ``ConfigError`` outside a pod."""
    path = path or SERVICE_ACCOUNT_NAMESPACE_FILE
    try:
        with open(path, encoding="utf-8") as f:
            namespace = f.read().strip()
    except OSError:
        raise ConfigError(
            f"no namespace given and none to default to: {path} does not exist (not running in a pod); "
            "pass the namespace of the InferenceServices (pipeline parameter namespace, or --namespace)"
        ) from None
    if not _DNS_LABEL.match(namespace):
        raise ConfigError(f"{path} holds {namespace!r}, which is not a namespace; pass the namespace explicitly")
    return namespace


_EXAMPLES = {"models_root": "models", "data_uri": "bots/<bot_id>/nlu.yml"}


def check_cluster_locations(**locations: str) -> None:
    """A run meant for a cluster needs each location as a URI or an absolute path, never relative.

    A relative path names a folder in whichever pod reads it: register would write the model
    into its own pod, where no later step and no predictor can see it.
    """
    for name, value in locations.items():
        if not value or _SCHEME.match(value) or os.path.isabs(value):
            continue
        example = _EXAMPLES.get(name, name)
        raise ConfigError(
            f"{name} {value!r} is a relative path: on a cluster it names a path inside one pod, which no other "
            f"step and no predictor can see; pass an object store URI every pod can reach, e.g. s3://BUCKET/{example} "
            f"(MinIO: s3:// with AWS_ENDPOINT_URL) or gs://BUCKET/{example}, or an absolute path mounted in every pod"
        )


@dataclass(frozen=True)
class ClusterDeployConfig(ConfigBase):
    namespace: str = ""  # where the InferenceServices live; "" = the namespace this pod runs in
    deployment_mode: Literal["RawDeployment", "Serverless"] = RAW  # KServe's; canary needs Serverless
    canary_traffic_percent: int | None = None  # None: replace at once; 1-99: canary first, then promote
    ready_timeout_s: float = 600  # how long a rollout may take to become Ready (and serve) before it fails
    poll_interval_s: float = 5  # between status reads while waiting
    mode: Literal["per-bot", "shared"] = "per-bot"  # one service per bot, or one for all
    shared_service_name: str = DEFAULT_SHARED_NAME  # the service of "shared" mode
    runtime: str = DEFAULT_RUNTIME  # the (Cluster)ServingRuntime that runs botyard's predictor
    model_format: str = DEFAULT_MODEL_FORMAT
    service_account: str = DEFAULT_SERVICE_ACCOUNT  # the predictor pods' account (model store access); "" = default
    resources: dict = field(default_factory=lambda: dict(PER_BOT_RESOURCES))  # per-bot model container
    predictor_image: str = field(default_factory=lambda: ImageConfig().predictor)  # shared mode's container
    shared_resources: dict = field(default_factory=lambda: dict(SHARED_RESOURCES))
    storage_secret: str = ""  # shared mode: Secret with the store's credentials, mounted by reference
    storage_secret_keys: dict = field(default_factory=lambda: {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
                                                               "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"})
    storage_endpoint: str = ""  # shared mode: AWS_ENDPOINT_URL of the predictor

    _ranges = {"ready_timeout_s": (1, 86_400), "poll_interval_s": (0.01, 3600)}

    def __post_init__(self) -> None:
        super().__post_init__()
        pct = self.canary_traffic_percent
        if pct is not None and (isinstance(pct, bool) or not isinstance(pct, int) or not 1 <= pct <= 99):
            raise ConfigError(
                f"ClusterDeployConfig.canary_traffic_percent = {pct!r} is out of range; "
                "allowed: None (no canary) or 1 to 99"
            )
        if self.mode not in MODES:
            raise ConfigError(f"ClusterDeployConfig.mode = {self.mode!r} is not known; allowed: {', '.join(MODES)}")
        if self.mode == "shared" and pct is not None:
            raise ConfigError(
                "a canary needs per-bot mode: the shared predictor serves every bot from one process and "
                "takes a new version when its CURRENT pointer moves; use mode per-bot or no canary"
            )
        check_deployment_mode(self.deployment_mode, pct)
        if not isinstance(self.namespace, str) or (self.namespace and not _DNS_LABEL.match(self.namespace)):
            raise ConfigError(
                f"ClusterDeployConfig.namespace = {self.namespace!r} is not a valid namespace: "
                "use 1-63 lower-case letters, digits and '-' (or leave it empty for the run's own namespace)"
            )
        name = self.shared_service_name
        if not isinstance(name, str) or not ISVC_NAME.match(name) or len(name) > MAX_ISVC_NAME:
            raise ConfigError(
                f"ClusterDeployConfig.shared_service_name = {name!r} is not a valid InferenceService name: "
                f"use 1-{MAX_ISVC_NAME} lower-case letters, digits and '-', starting with a letter"
            )
        if self.service_account and not re.match(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", self.service_account):
            raise ConfigError(f"ClusterDeployConfig.service_account = {self.service_account!r} is not a service account name")


@dataclass
class DeployResult:
    bot_id: str
    version: str
    action: str  # one of ACTIONS
    url: str | None  # status.url of the InferenceService
    reasons: list[str] = field(default_factory=list)  # what was done and why, in order


def cluster_config_from_parameters(
    *,
    namespace: str,
    serving_mode: str,
    deployment_mode: str,
    canary_traffic_percent: int,
    ready_timeout_s: float,
    service_account: str,
    predictor_image: str,
    storage_access: dict | None = None,
) -> ClusterDeployConfig:
    """The deploy step's pipeline parameters as a config: ``canary_traffic_percent`` 0 means none;
    ``storage_access`` is the compile-time ``StorageAccess`` (secret, keys, endpoint_url) as a dict."""
    storage = dict(storage_access or {})
    extra = {}
    if storage.get("keys"):
        extra["storage_secret_keys"] = dict(storage["keys"])
    return ClusterDeployConfig(
        namespace=namespace, mode=serving_mode, deployment_mode=deployment_mode,
        canary_traffic_percent=int(canary_traffic_percent) or None, ready_timeout_s=float(ready_timeout_s),
        service_account=service_account, predictor_image=predictor_image,
        storage_secret=storage.get("secret") or "", storage_endpoint=storage.get("endpoint_url") or "", **extra,
    )
