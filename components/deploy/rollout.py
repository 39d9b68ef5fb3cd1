"""The rollout: put a model version live on KServe and wait until it serves, or roll back.

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
and Ready sends no write request. The objects come from ``inference_service``, the API
calls from ``kube_api``, readiness from ``isvc_status``; nothing here imports ``kfp``.
"""

from __future__ import annotations

import time
from typing import Any, Callable, NoReturn

from botyard.components.base.errors import ConfigError, DeployError
from botyard.components.deploy import isvc_status as status
from botyard.components.deploy.config import ClusterDeployConfig, DeployResult
from botyard.components.deploy.inference_service import (
    ANNOTATION_MODEL_VERSION,
    LABEL_BOT_ID,
    LABELS,
    bot_version_annotation,
    build_inference_service,
    build_shared_inference_service,
    inference_service_name,
    split_version_uri,
)
from botyard.components.deploy.kube_api import InferenceServiceApi


class _Timeout(Exception):
    """The service did not become Ready in time; carries the last status seen."""

    def __init__(self, summary: str):
        super().__init__(summary)
        self.summary = summary


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
        self.kube = InferenceServiceApi(self.config.namespace, api_client)
        self._clock = clock
        self._sleep = sleep

    # --- Kubernetes API ---------------------------------------------------------------------
    def _get(self, name: str, bot: str) -> dict | None:
        return self.kube.get(name, bot)

    def _create(self, body: dict, bot: str, allow: tuple[int, ...] = ()) -> dict | None:
        return self.kube.create(body, bot, allow)

    def _patch(self, name: str, bot: str, patch: dict) -> dict:
        return self.kube.patch(name, bot, patch)

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
            if status.is_ready(obj, generation):
                return obj
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise _Timeout(status.status_summary(obj))
            self._sleep(min(self.config.poll_interval_s, remaining))

    def _check_owner(self, obj: dict, bot: str, expected_bot: str | None) -> None:
        """Refuse an InferenceService without botyard's ``LABELS``, or one of another bot."""
        labels = status.labels(obj)
        name = obj["metadata"]["name"]
        where = f"InferenceService '{name}' in namespace '{self.config.namespace}'"
        wrong = {k: labels.get(k) for k, v in LABELS.items() if labels.get(k) != v}
        if wrong:
            found = ", ".join(f"{k}={v!r}" for k, v in wrong.items())
            raise DeployError(
                f"{where} exists but is not managed by botyard (label {found}); refusing to overwrite it for bot '{bot}'"
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
            return DeployResult(bot_id, version, "unchanged", status.url(obj), [f"'{name}' already serves {version} and is Ready"])
        patched = self._patch(name, bot_id, self._rollout_patch(to_storage_uri, version, None))
        obj = self._wait_or_fail(name, bot_id, version, patched)
        return DeployResult(bot_id, version, "rolled-back", status.url(obj), [f"rolled '{name}' back to {version}"])

    # --- per-bot mode -----------------------------------------------------------------------
    @staticmethod
    def _serves(obj: dict, storage_uri: str) -> bool:
        """Already fully rolled out on ``storage_uri``: nothing to write."""
        return status.storage_uri(obj) == storage_uri and status.canary_percent(obj) is None and status.is_ready(obj)

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
            failure = self._smoke(smoke_check, status.url(obj))
            if failure:
                raise DeployError(
                    f"bot '{bot}' version {version}: {failure}; InferenceService '{name}' in namespace "
                    f"'{cfg.namespace}' was just created, so there is no earlier version to roll back to"
                )
            return DeployResult(bot, version, "created", status.url(obj), [f"created InferenceService '{name}' in namespace '{cfg.namespace}'"])

        self._check_owner(obj, bot, bot)
        if self._serves(obj, storage_uri):
            return DeployResult(bot, version, "unchanged", status.url(obj), [f"'{name}' already serves {version} and is Ready"])
        previous_uri = status.storage_uri(obj)
        previous_version = status.annotations(obj).get(ANNOTATION_MODEL_VERSION)
        # same URI: a rollout of this version was interrupted, the version before it is unknown
        previous = (previous_uri, previous_version) if previous_uri != storage_uri else None
        if cfg.canary_traffic_percent is not None:
            return self._canary(name, bot, version, storage_uri, previous, smoke_check)

        patched = self._patch(name, bot, self._rollout_patch(storage_uri, version, None))
        reasons = [f"patched '{name}' from {previous_version or previous_uri} to {version}"]
        # Knative keeps routing to the last ready revision: the old version still serves
        obj = self._wait_or_fail(name, bot, version, patched, "; the previous revision keeps serving, "
                                 "fix the model and deploy again or roll back")
        failure = self._smoke(smoke_check, status.url(obj))
        if failure:
            self._roll_back(name, bot, version, previous, None, failure)
        if smoke_check is not None:
            reasons.append("smoke check passed")
        return DeployResult(bot, version, "updated", status.url(obj), reasons)

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
        failure = self._smoke(smoke_check, status.canary_url(obj))
        if failure:
            self._roll_back(name, bot, version, previous, 0, failure)
        if smoke_check is not None:
            reasons.append("smoke check passed")
        promoted = self._patch(name, bot, {"spec": {"predictor": {"canaryTrafficPercent": None}}})
        obj = self._wait_or_fail(name, bot, version, promoted, " after promoting the canary to 100%")
        reasons.append(f"promoted {version} to 100%")
        return DeployResult(bot, version, "canary-promoted", status.url(obj), reasons)

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
        served_root = status.storage_uri(obj)
        if served_root is not None and served_root.rstrip("/") != models_root.rstrip("/"):
            raise DeployError(
                f"shared InferenceService '{name}' in namespace '{cfg.namespace}' serves models from "
                f"{served_root}, but bot '{bot}' version {version} is under {models_root}; "
                "use one model store root per shared service"
            )
        if status.annotations(obj).get(key) == version:
            if not status.is_ready(obj):
                obj = self._wait_or_fail(name, bot, version, obj)
            return DeployResult(bot, version, "unchanged", status.url(obj), [f"'{name}' already records {bot}={version}"])
        patched = self._patch(name, bot, {"metadata": {"annotations": {key: version}}})
        obj = self._wait_or_fail(name, bot, version, patched)
        return self._shared_result(bot, version, "updated", obj, smoke_check, f"recorded {bot}={version} on '{name}'")

    def _shared_result(self, bot, version, action, obj, smoke_check, reason) -> DeployResult:
        failure = self._smoke(smoke_check, status.url(obj))
        if failure:
            raise DeployError(
                f"bot '{bot}' version {version} on shared InferenceService '{obj['metadata']['name']}' "
                f"in namespace '{self.config.namespace}': {failure}; move the bot's CURRENT pointer back to roll back"
            )
        return DeployResult(bot, version, action, status.url(obj), [reason] + (["smoke check passed"] if smoke_check else []))
