"""Cluster mode of the deploy step: create or roll out a KServe InferenceService per bot.

Two layouts (``ClusterDeployConfig.mode``):

``per-bot``
    one InferenceService per bot, named by ``inference_service_name(bot_id)``, whose
    ``storageUri`` is one model version directory ``<models_root>/<bot_id>/<version>``.
    A new version is rolled out by patching ``storageUri``; with
    ``canary_traffic_percent`` set it first takes that share of the traffic, must become
    Ready (and pass the optional smoke check) within ``ready_timeout_s``, and is then
    promoted to 100 %, or rolled back (``canaryTrafficPercent: 0`` plus the previous
    ``storageUri``) after which ``deploy`` **raises** ``DeployError`` naming the reason:
    a deploy that did not put the new version live must fail the pipeline run.
``shared``
    one InferenceService (``shared_service_name``) serves every bot from the model store
    root and follows each bot's ``CURRENT`` pointer, which the caller moves. Deploying
    makes sure that service exists and records the bot's version in the annotation
    ``botyard.dev/version.<bot_id>``.

Every step is idempotent: a re-run that finds the service already serving the version
and Ready sends no write request. Readiness follows KServe's own client
(``KServeClient.is_isvc_ready``): condition ``Ready`` is ``True`` *for the generation we
wrote* (``status.observedGeneration``), and the predictor's ``latestReadyRevision`` has
caught up with ``latestCreatedRevision``, so a stale status of the previous revision is
never taken for the new one.

Nothing here imports ``kfp``; Kubernetes API and kubeconfig errors become ``DeployError``
naming the bot, the InferenceService, the namespace and the HTTP status.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, NoReturn

from botyard.components.base.config import ConfigBase
from botyard.components.base.errors import ConfigError, DeployError
from botyard.components.base.model_store import check_bot_id

log = logging.getLogger(__name__)

# --- the InferenceService API -------------------------------------------------------------
GROUP = "serving.kserve.io"
API_VERSION = "v1beta1"
PLURAL = "inferenceservices"
KIND = "InferenceService"

# --- labels and annotations botyard puts on what it deploys -------------------------------
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "botyard"
LABEL_BOT_ID = "botyard.dev/bot-id"
LABEL_MODE = "botyard.dev/mode"
ANNOTATION_MODEL_VERSION = "botyard.dev/model-version"
ANNOTATION_BOT_VERSION_PREFIX = "botyard.dev/version."  # + bot id, on the shared service
ANNOTATION_DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
DEPLOYMENT_MODE = "Serverless"  # canary rollout exists only in serverless mode
# gives each revision a tagged URL (status.components.predictor.traffic[].url), so the
# smoke check can reach the canary itself rather than the 90/10 mix
ANNOTATION_TAG_ROUTING = "serving.kserve.io/enable-tag-routing"

DEFAULT_RUNTIME = "botyard-predictor"
DEFAULT_MODEL_FORMAT = "botyard-intent"

ACTIONS = ("created", "updated", "unchanged", "canary-promoted", "rolled-back")
MODES = ("per-bot", "shared")

# KServe's webhook wants names that start with a letter; Knative names the predictor's
# revisions "<name>-predictor-00001", which must fit in 63 characters.
_ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_ISVC_NAME = 63 - len("-predictor-00001")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_ANNOTATION_NAME_MAX = 63  # the part after the "/" of an annotation key
REQUEST_TIMEOUT_S = 30  # per API call; the rollout itself is bounded by ready_timeout_s


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
            "labels": {LABEL_MANAGED_BY: MANAGED_BY, **labels},
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
        labels={LABEL_BOT_ID: bot_id},
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
        labels={LABEL_MODE: "shared"},
        annotations={bot_version_annotation(b): v for b, v in (bot_versions or {}).items()},
        runtime=runtime,
        model_format=model_format,
        service_account=service_account,
        canary_traffic_percent=None,
        resources=resources,
    )


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
        if not isinstance(name, str) or not _ISVC_NAME.match(name) or len(name) > MAX_ISVC_NAME:
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


class _Timeout(Exception):
    """The service did not become Ready in time; carries the last status seen."""

    def __init__(self, summary: str):
        super().__init__(summary)
        self.summary = summary


def _condition(obj: dict, kind: str) -> dict | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def _predictor_status(obj: dict) -> dict:
    return ((obj.get("status") or {}).get("components") or {}).get("predictor") or {}


def is_ready(obj: dict, generation: int | None = None) -> bool:
    """Ready for ``generation`` (default: the object's own) with its newest revision serving."""
    cond = _condition(obj, "Ready")
    if not cond or str(cond.get("status", "")).lower() != "true":
        return False
    wanted = generation if generation is not None else (obj.get("metadata") or {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    if wanted is not None and (observed is None or observed < wanted):
        return False
    pred = _predictor_status(obj)
    created, ready = pred.get("latestCreatedRevision"), pred.get("latestReadyRevision")
    return not (created and created != ready)


def _status_summary(obj: dict) -> str:
    cond = _condition(obj, "Ready")
    pred = _predictor_status(obj)
    gen = (obj.get("metadata") or {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    parts = [
        f"Ready={cond.get('status')}" if cond else "no Ready condition yet",
        f"generation {gen}, observed {observed}",
    ]
    if cond and (cond.get("reason") or cond.get("message")):
        parts.append(f"{cond.get('reason') or ''}: {cond.get('message') or ''}".strip(": "))
    if pred.get("latestCreatedRevision"):
        parts.append(f"latest created revision {pred['latestCreatedRevision']}, ready {pred.get('latestReadyRevision')}")
    return "; ".join(parts)


def _url(obj: dict) -> str | None:
    return (obj.get("status") or {}).get("url")


def _canary_url(obj: dict) -> str | None:
    """The tagged URL of the newest revision where tag routing gives one, else the service URL."""
    for entry in _predictor_status(obj).get("traffic") or []:
        if entry.get("latestRevision") and entry.get("url"):
            return entry["url"]
    return _url(obj)


def _storage_uri(obj: dict) -> str | None:
    return (((obj.get("spec") or {}).get("predictor") or {}).get("model") or {}).get("storageUri")


def _canary_percent(obj: dict) -> int | None:
    return ((obj.get("spec") or {}).get("predictor") or {}).get("canaryTrafficPercent")


def _annotations(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("annotations") or {}


def _api_error_message(exc: Exception) -> str:
    """The ``message`` of a Kubernetes ``Status`` body, else the raw body, else the reason."""
    body = getattr(exc, "body", None)
    if body:
        try:
            return json.loads(body).get("message") or str(body)
        except (ValueError, AttributeError):
            return body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    return getattr(exc, "reason", None) or str(exc)


_HINTS = {
    401: "check the credentials of the kubeconfig or service account",
    403: "the service account needs get, create and patch on inferenceservices.serving.kserve.io in namespace '{ns}' (a Role and RoleBinding)",
    404: "is KServe installed (the InferenceService CRD) and does namespace '{ns}' exist?",
    422: "the API server rejected the manifest",
}


class ClusterDeployer:
    """Deploys model versions to KServe through the Kubernetes API.

    ``api_client`` is injected by tests and by callers that already hold one; without it
    the client is configured on first use, from the pod's service account when running
    in a cluster, else from ``$KUBECONFIG`` / ``~/.kube/config``. ``clock`` and ``sleep``
    drive the readiness polling.
    """

    def __init__(
        self,
        config: ClusterDeployConfig | None = None,
        api_client: Any | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.config = config or ClusterDeployConfig()
        self._api_client = api_client
        self._custom = None
        self._clock = clock
        self._sleep = sleep

    # --- Kubernetes API ---------------------------------------------------------------------
    @property
    def api(self):
        """``kubernetes.client.CustomObjectsApi``, built on first use."""
        if self._custom is None:
            from kubernetes import client

            self._custom = client.CustomObjectsApi(self._api_client or self._load_api_client())
        return self._custom

    @staticmethod
    def _load_api_client():
        from kubernetes import client
        from kubernetes import config as kube_config
        from kubernetes.config.config_exception import ConfigException

        configuration = client.Configuration()
        try:
            kube_config.load_incluster_config(client_configuration=configuration)
        except ConfigException as incluster_exc:
            path = os.environ.get("KUBECONFIG") or "~/.kube/config"
            try:
                kube_config.load_kube_config(
                    config_file=path, client_configuration=configuration, persist_config=False
                )
            except (ConfigException, OSError) as exc:
                raise DeployError(
                    f"no Kubernetes credentials: not running in a cluster ({incluster_exc}) and "
                    f"no usable kubeconfig at {path} ({exc}); set KUBECONFIG or run the step in the cluster"
                ) from exc
        return client.ApiClient(configuration)

    def _request(self, verb: str, name: str, bot: str, fn: Callable, *args, allow: tuple[int, ...] = ()) -> dict | None:
        """Call the API; ``None`` for an HTTP status in ``allow``, ``DeployError`` for any other failure."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        ns = self.config.namespace
        where = f"InferenceService '{name}' in namespace '{ns}' (bot '{bot}')"
        try:
            return fn(GROUP, API_VERSION, ns, PLURAL, *args, _request_timeout=REQUEST_TIMEOUT_S)
        except ApiException as exc:
            if exc.status in allow:
                return None
            hint = _HINTS.get(exc.status, "")
            raise DeployError(
                f"cannot {verb} {where}: HTTP {exc.status} {exc.reason}: {_api_error_message(exc)}"
                + (f"; {hint.format(ns=ns)}" if hint else "")
            ) from exc
        except HTTPError as exc:
            host = self.api.api_client.configuration.host
            raise DeployError(f"cannot {verb} {where}: the Kubernetes API at {host} is unreachable ({exc})") from exc

    def _get(self, name: str, bot: str) -> dict | None:
        """The InferenceService, or ``None`` when there is none (404)."""
        return self._request("read", name, bot, self.api.get_namespaced_custom_object, name, allow=(404,))

    def _create(self, body: dict, bot: str, allow: tuple[int, ...] = ()) -> dict | None:
        return self._request("create", body["metadata"]["name"], bot, self.api.create_namespaced_custom_object, body, allow=allow)

    def _patch(self, name: str, bot: str, patch: dict) -> dict:
        # kubernetes 30.1 sends every custom-object PATCH as application/merge-patch+json
        # (RFC 7386), where a None value deletes the field
        return self._request("patch", name, bot, self.api.patch_namespaced_custom_object, name, patch)

    def _wait_ready(self, name: str, bot: str, generation: int | None) -> dict:
        """Poll until Ready for ``generation``; raises ``_Timeout`` with the last status seen."""
        deadline = self._clock() + self.config.ready_timeout_s
        while True:
            obj = self._get(name, bot)
            if obj is None:
                raise DeployError(
                    f"InferenceService '{name}' in namespace '{self.config.namespace}' (bot '{bot}') "
                    "was deleted while waiting for it to become Ready"
                )
            if is_ready(obj, generation):
                return obj
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise _Timeout(_status_summary(obj))
            self._sleep(min(self.config.poll_interval_s, remaining))

    def _check_owner(self, obj: dict, bot: str, expected_bot: str | None) -> None:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        name = obj["metadata"]["name"]
        where = f"InferenceService '{name}' in namespace '{self.config.namespace}'"
        if labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
            raise DeployError(
                f"{where} exists but is not managed by botyard (label {LABEL_MANAGED_BY}="
                f"{labels.get(LABEL_MANAGED_BY)!r}); refusing to overwrite it for bot '{bot}'"
            )
        if expected_bot is not None and labels.get(LABEL_BOT_ID) != expected_bot:
            raise DeployError(
                f"{where} belongs to bot {labels.get(LABEL_BOT_ID)!r}, not '{expected_bot}'; "
                "two bot ids map to one service name, rename one of the bots"
            )

    # --- public API -------------------------------------------------------------------------
    def deploy(
        self,
        bot_id: str,
        version: str,
        storage_uri: str,
        smoke_check: Callable[[str], bool] | None = None,
    ) -> DeployResult:
        """Serve ``version`` of ``bot_id`` from ``storage_uri`` (``<models_root>/<bot_id>/<version>``).

        ``smoke_check(url)`` runs once a new rollout is Ready (against the canary's own
        URL when KServe gives one); ``False`` or an exception fails the rollout. Returns
        action ``created``, ``updated``, ``unchanged`` or ``canary-promoted``; a failed
        rollout raises ``DeployError``, after rolling back where there is an earlier
        version to go back to.
        """
        root, uri_version = split_version_uri(bot_id, storage_uri)
        if uri_version != version:
            raise ConfigError(f"storage_uri {storage_uri!r} holds version '{uri_version}', not '{version}'")
        if self.config.mode == "shared":
            return self._deploy_shared(bot_id, version, root, smoke_check)
        return self._deploy_per_bot(bot_id, version, storage_uri, smoke_check)

    def rollback(self, bot_id: str, to_storage_uri: str, version: str) -> DeployResult:
        """Point the bot back at an earlier version at once (no canary) and wait until it is Ready.

        Returns action ``rolled-back``, or ``unchanged`` when that version is already served.
        """
        root, uri_version = split_version_uri(bot_id, to_storage_uri)
        if uri_version != version:
            raise ConfigError(f"to_storage_uri {to_storage_uri!r} holds version '{uri_version}', not '{version}'")
        if self.config.mode == "shared":
            result = self._deploy_shared(bot_id, version, root, None)
            if result.action != "unchanged":
                result.action = "rolled-back"
            return result
        name = inference_service_name(bot_id)
        obj = self._get(name, bot_id)
        if obj is None:
            raise DeployError(
                f"cannot roll back bot '{bot_id}': InferenceService '{name}' does not exist in "
                f"namespace '{self.config.namespace}'; deploy a version first"
            )
        self._check_owner(obj, bot_id, bot_id)
        if self._serves(obj, to_storage_uri):
            return DeployResult(bot_id, version, "unchanged", _url(obj), [f"'{name}' already serves {version} and is Ready"])
        patched = self._patch(name, bot_id, self._rollout_patch(to_storage_uri, version, None))
        obj = self._wait_or_fail(name, bot_id, version, patched)
        return DeployResult(bot_id, version, "rolled-back", _url(obj), [f"rolled '{name}' back to {version}"])

    # --- per-bot mode -----------------------------------------------------------------------
    @staticmethod
    def _serves(obj: dict, storage_uri: str) -> bool:
        """Already fully rolled out on ``storage_uri``: nothing to write."""
        return _storage_uri(obj) == storage_uri and _canary_percent(obj) is None and is_ready(obj)

    @staticmethod
    def _rollout_patch(storage_uri: str, version: str | None, canary: int | None) -> dict:
        """Merge patch setting the model (and its version annotation) and the canary share.

        ``canary=None`` deletes ``canaryTrafficPercent``: a share left over from an earlier
        canary would otherwise keep the new revision off most of the traffic.
        """
        return {
            "metadata": {"annotations": {ANNOTATION_MODEL_VERSION: version}},
            "spec": {"predictor": {"canaryTrafficPercent": canary, "model": {"storageUri": storage_uri}}},
        }

    def _not_ready(self, name: str, bot: str, version: str, exc: _Timeout) -> str:
        return (
            f"InferenceService '{name}' in namespace '{self.config.namespace}' (bot '{bot}', version {version}) "
            f"was not Ready within {self.config.ready_timeout_s:g}s; last status: {exc.summary}"
        )

    def _wait_or_fail(self, name: str, bot: str, version: str, written: dict, hint: str = "") -> dict:
        try:
            return self._wait_ready(name, bot, (written.get("metadata") or {}).get("generation"))
        except _Timeout as exc:
            raise DeployError(self._not_ready(name, bot, version, exc) + hint) from None

    @staticmethod
    def _smoke(smoke_check: Callable[[str], bool] | None, url: str | None) -> str | None:
        """``None`` when the check passes (or there is none), else why it failed."""
        if smoke_check is None:
            return None
        if not url:
            return "smoke check not run: the InferenceService reports no URL"
        try:
            ok = smoke_check(url)
        except Exception as exc:  # noqa: BLE001 - any failure of the caller's check fails the rollout
            return f"smoke check against {url} raised {type(exc).__name__}: {exc}"
        return None if ok else f"smoke check against {url} failed"

    def _deploy_per_bot(self, bot: str, version: str, storage_uri: str, smoke_check) -> DeployResult:
        cfg = self.config
        name = inference_service_name(bot)
        obj = self._get(name, bot)
        if obj is None:
            body = build_inference_service(
                bot, storage_uri, cfg.namespace, runtime=cfg.runtime, model_format=cfg.model_format,
                service_account=cfg.service_account, resources=cfg.resources,
            )
            obj = self._wait_or_fail(name, bot, version, self._create(body, bot))
            failure = self._smoke(smoke_check, _url(obj))
            if failure:
                raise DeployError(
                    f"bot '{bot}' version {version}: {failure}; InferenceService '{name}' in namespace "
                    f"'{cfg.namespace}' was just created, so there is no earlier version to roll back to"
                )
            return DeployResult(bot, version, "created", _url(obj), [f"created InferenceService '{name}' in namespace '{cfg.namespace}'"])

        self._check_owner(obj, bot, bot)
        if self._serves(obj, storage_uri):
            return DeployResult(bot, version, "unchanged", _url(obj), [f"'{name}' already serves {version} and is Ready"])
        previous_uri = _storage_uri(obj)
        previous_version = _annotations(obj).get(ANNOTATION_MODEL_VERSION)
        # same URI: a rollout of this version was interrupted, the version before it is unknown
        previous = (previous_uri, previous_version) if previous_uri != storage_uri else None
        if cfg.canary_traffic_percent is not None:
            return self._canary(name, bot, version, storage_uri, previous, smoke_check)

        patched = self._patch(name, bot, self._rollout_patch(storage_uri, version, None))
        reasons = [f"patched '{name}' from {previous_version or previous_uri} to {version}"]
        # Knative keeps routing to the last ready revision: the old version still serves
        obj = self._wait_or_fail(name, bot, version, patched, "; the previous revision keeps serving, "
                                 "fix the model and deploy again or roll back")
        failure = self._smoke(smoke_check, _url(obj))
        if failure:
            self._roll_back(name, bot, version, previous, None, failure)
        if smoke_check is not None:
            reasons.append("smoke check passed")
        return DeployResult(bot, version, "updated", _url(obj), reasons)

    def _canary(self, name, bot, version, storage_uri, previous, smoke_check) -> DeployResult:
        cfg = self.config
        pct = cfg.canary_traffic_percent
        patched = self._patch(name, bot, self._rollout_patch(storage_uri, version, pct))
        reasons = [f"canary: {version} takes {pct}% of the traffic of '{name}'"]
        try:
            obj = self._wait_ready(name, bot, patched["metadata"].get("generation"))
        except _Timeout as exc:
            self._roll_back(name, bot, version, previous, 0,
                            f"the canary was not Ready within {cfg.ready_timeout_s:g}s ({exc.summary})")
        reasons.append("canary Ready")
        failure = self._smoke(smoke_check, _canary_url(obj))
        if failure:
            self._roll_back(name, bot, version, previous, 0, failure)
        if smoke_check is not None:
            reasons.append("smoke check passed")
        promoted = self._patch(name, bot, {"spec": {"predictor": {"canaryTrafficPercent": None}}})
        obj = self._wait_or_fail(name, bot, version, promoted, " after promoting the canary to 100%")
        reasons.append(f"promoted {version} to 100%")
        return DeployResult(bot, version, "canary-promoted", _url(obj), reasons)

    def _roll_back(self, name, bot, version, previous: tuple[str, str | None] | None, canary, reason: str) -> NoReturn:
        """Put the previous version back, wait for it, then raise ``DeployError`` naming ``reason``."""
        where = f"rollout of bot '{bot}' version {version} to InferenceService '{name}' in namespace '{self.config.namespace}'"
        if previous is None and canary is None:
            raise DeployError(f"{where} failed: {reason}; no earlier version is known to roll back to")
        if previous is None:
            # KServe pins all traffic to the last rolled-out revision at canaryTrafficPercent 0
            patch: dict = {"spec": {"predictor": {"canaryTrafficPercent": 0}}}
            back_to = "the last rolled-out revision"
        else:
            # restoring storageUri as well makes the spec say what is actually served
            patch = self._rollout_patch(previous[0], previous[1], canary)
            back_to = previous[1] or previous[0]
        patched = self._patch(name, bot, patch)
        message = f"{where} failed: {reason}; rolled back to {back_to}"
        try:
            self._wait_ready(name, bot, patched["metadata"].get("generation"))
        except _Timeout as exc:
            raise DeployError(f"{message}, but the rollback was not Ready either ({exc.summary})") from None
        raise DeployError(message)

    # --- shared mode ------------------------------------------------------------------------
    def _deploy_shared(self, bot: str, version: str, models_root: str, smoke_check) -> DeployResult:
        cfg = self.config
        name = cfg.shared_service_name
        key = bot_version_annotation(bot)
        obj = self._get(name, bot)
        if obj is None:
            body = build_shared_inference_service(
                models_root, cfg.namespace, name=name, bot_versions={bot: version}, runtime=cfg.runtime,
                model_format=cfg.model_format, service_account=cfg.service_account, resources=cfg.resources,
            )
            # bots deployed in parallel all race to create the shared service: 409 means one won
            created = self._create(body, bot, allow=(409,))
            if created is not None:
                obj = self._wait_or_fail(name, bot, version, created)
                return self._shared_result(bot, version, "created", obj, smoke_check,
                                           f"created shared InferenceService '{name}' serving {models_root}")
            obj = self._get(name, bot)
            if obj is None:
                raise DeployError(
                    f"shared InferenceService '{name}' in namespace '{cfg.namespace}' (bot '{bot}') "
                    "was reported as existing but cannot be read"
                )
        self._check_owner(obj, bot, None)
        served_root = _storage_uri(obj)
        if served_root is not None and served_root.rstrip("/") != models_root.rstrip("/"):
            raise DeployError(
                f"shared InferenceService '{name}' in namespace '{cfg.namespace}' serves models from "
                f"{served_root}, but bot '{bot}' version {version} is under {models_root}; "
                "use one model store root per shared service"
            )
        if _annotations(obj).get(key) == version:
            if not is_ready(obj):
                obj = self._wait_or_fail(name, bot, version, obj)
            return DeployResult(bot, version, "unchanged", _url(obj), [f"'{name}' already records {bot}={version}"])
        patched = self._patch(name, bot, {"metadata": {"annotations": {key: version}}})
        obj = self._wait_or_fail(name, bot, version, patched)
        return self._shared_result(bot, version, "updated", obj, smoke_check, f"recorded {bot}={version} on '{name}'")

    def _shared_result(self, bot, version, action, obj, smoke_check, reason) -> DeployResult:
        failure = self._smoke(smoke_check, _url(obj))
        if failure:
            raise DeployError(
                f"bot '{bot}' version {version} on shared InferenceService '{obj['metadata']['name']}' "
                f"in namespace '{self.config.namespace}': {failure}; move the bot's CURRENT pointer back to roll back"
            )
        return DeployResult(bot, version, action, _url(obj), [reason] + (["smoke check passed"] if smoke_check else []))
