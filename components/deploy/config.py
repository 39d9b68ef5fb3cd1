"""How a cluster deploy runs (``ClusterDeployConfig``) and what it reports (``DeployResult``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from botyard.components.base.config import ConfigBase
from botyard.components.base.errors import ConfigError
from botyard.components.deploy.inference_service import (
    DEFAULT_MODEL_FORMAT,
    DEFAULT_RUNTIME,
    ISVC_NAME,
    MAX_ISVC_NAME,
)

ACTIONS = ("created", "updated", "unchanged", "canary-promoted", "rolled-back")
MODES = ("per-bot", "shared")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class ClusterDeployConfig(ConfigBase):
    namespace: str = "botyard"  # where the InferenceServices live
    canary_traffic_percent: int | None = None  # None: replace at once; 1-99: canary first, then promote
    ready_timeout_s: float = 600  # how long a rollout may take to become Ready before it fails
    poll_interval_s: float = 5  # between status reads while waiting
    mode: Literal["per-bot", "shared"] = "per-bot"  # one service per bot, or one for all
    shared_service_name: str = "botyard-shared"  # the service of "shared" mode
    runtime: str = DEFAULT_RUNTIME  # ServingRuntime that runs botyard's predictor
    model_format: str = DEFAULT_MODEL_FORMAT
    service_account: str | None = None  # for the predictor pods (model store credentials)
    resources: dict | None = None  # ResourceRequirements of the model container

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
        if not isinstance(self.namespace, str) or not _DNS_LABEL.match(self.namespace):
            raise ConfigError(
                f"ClusterDeployConfig.namespace = {self.namespace!r} is not a valid namespace: "
                "use 1-63 lower-case letters, digits and '-'"
            )
        name = self.shared_service_name
        if not isinstance(name, str) or not ISVC_NAME.match(name) or len(name) > MAX_ISVC_NAME:
            raise ConfigError(
                f"ClusterDeployConfig.shared_service_name = {name!r} is not a valid InferenceService name: "
                f"use 1-{MAX_ISVC_NAME} lower-case letters, digits and '-', starting with a letter"
            )


@dataclass
class DeployResult:
    bot_id: str
    version: str
    action: str  # one of ACTIONS
    url: str | None  # status.url of the InferenceService
    reasons: list[str] = field(default_factory=list)  # what was done and why, in order
