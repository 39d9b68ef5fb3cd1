"""The rollout: put a model version live on KServe and wait until it serves, or roll back.

Two layouts (``ClusterDeployConfig.mode``; the objects are ``inference_service``'s):

``per-bot``
    one InferenceService per bot, named by ``inference_service_name(bot_id)``, whose
    ``storageUri`` is one model version directory ``<models_root>/<bot_id>/<version>``.
    A new version is rolled out by patching ``storageUri``. In Serverless mode with
    ``canary_traffic_percent`` set it first takes that share of the traffic, must become
    Ready (and pass the smoke check against its own tagged URL) within ``ready_timeout_s``,
    and is then promoted to 100 %, or rolled back (``canaryTrafficPercent: 0`` plus the
    previous ``storageUri``). In RawDeployment mode (no traffic split: a canary is refused
    when the config is built) the Deployment rolls its pods over. Either way a failed smoke
    check restores the previous ``storageUri``, and ``deploy`` **raises** ``DeployError``
    naming the reason: a deploy that did not put the new version live fails the run.
``shared``
    one InferenceService (``shared_service_name``) runs ``botyard serve`` over the model store
    root and follows each bot's ``CURRENT`` pointer, which the caller moves *before*
    deploying. Deploying makes sure that service exists (creating it once) and that it
    serves, then the smoke check waits until the bot answers with the new version: promotion
    never writes to the InferenceService, so no pod restarts.

Every step is idempotent: a re-run that finds the service already serving the version and
Ready sends no write request. The API calls are ``kube_api``'s (RBAC verbs ``kube_api.VERBS``),
readiness is ``isvc_status``'s; nothing here imports ``kfp``.

The smoke check (``smoke.SmokeCheck`` in the pipeline) is called with the URL to test: the
canary's tagged URL, else the cluster-local address (``status.address.url``), which a
pipeline pod in the same cluster can reach.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, NoReturn

from botyard.components.base.errors import ConfigError, DeployError
from botyard.components.deploy import isvc_status as status
from botyard.components.deploy.config import ClusterDeployConfig, DeployResult, run_namespace
from botyard.components.deploy.inference_service import (
    ANNOTATION_MODEL_VERSION,
    LABEL_BOT_ID,
    LABELS,
    build_inference_service,
    build_shared_inference_service,
    inference_service_name,
    shared_models_root,
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
    in a cluster, else from ``$KUBECONFIG`` / ``~/.kube/config``. An empty
    ``config.namespace`` becomes the namespace this pod runs in (``run_namespace``).
    ``clock`` and ``sleep`` drive the readiness polling.
    """

    def __init__(
        self,
        config: ClusterDeployConfig | None = None,
        api_client: Any | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        config = config or ClusterDeployConfig()
        if not config.namespace:
            config = dataclasses.replace(config, namespace=run_namespace())
        self.config = config
        self.kube = InferenceServiceApi(config.namespace, api_client)
        self._clock = clock
        self._sleep = sleep

    # --- waiting and checking -----------------------------------------------------------------
    def _wait_ready(self, name: str, bot: str, generation: int | None) -> dict:
        """Poll until Ready for ``generation``; raises ``_Timeout`` with the last status seen."""
        deadline = self._clock() + self.config.ready_timeout_s
        while True:
            obj = self.kube.get(name, bot)
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

    # --- public API -------------------------------------------------------------------------
    def deploy(
        self,
        bot_id: str,
        version: str,
        storage_uri: str,
        smoke_check: Callable[[str], bool] | None = None,
    ) -> DeployResult:
        """Serve ``version`` of ``bot_id`` from ``storage_uri`` (``<models_root>/<bot_id>/<version>``).

        ``smoke_check(url)`` runs once a new rollout is Ready; ``False`` or an exception fails
        the rollout. Returns action ``created``, ``updated``, ``unchanged`` or
        ``canary-promoted``; a failed rollout raises ``DeployError``, after rolling back where
        there is an earlier version to go back to.
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
        Shared mode: the caller moves the pointer back; this checks that the service is there.
        """
        root, uri_version = split_version_uri(bot_id, to_storage_uri)
        if uri_version != version:
            raise ConfigError(f"to_storage_uri {to_storage_uri!r} holds version '{uri_version}', not '{version}'")
        if self.config.mode == "shared":
            result = self._deploy_shared(bot_id, version, root, None)
            result.action = "rolled-back"
            return result
        name = inference_service_name(bot_id)
        obj = self.kube.get(name, bot_id)
        if obj is None:
            raise DeployError(
                f"cannot roll back bot '{bot_id}': InferenceService '{name}' does not exist in "
                f"namespace '{self.config.namespace}'; deploy a version first"
            )
        self._check_owner(obj, bot_id, bot_id)
        if self._serves(obj, to_storage_uri):
            return DeployResult(bot_id, version, "unchanged", status.url(obj), [f"'{name}' already serves {version} and is Ready"])
        patched = self.kube.patch(name, bot_id, self._rollout_patch(to_storage_uri, version, None))
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

    def _deploy_per_bot(self, bot: str, version: str, storage_uri: str, smoke_check) -> DeployResult:
        cfg = self.config
        name = inference_service_name(bot)
        obj = self.kube.get(name, bot)
        if obj is None:
            body = build_inference_service(
                bot, storage_uri, cfg.namespace, deployment_mode=cfg.deployment_mode, runtime=cfg.runtime,
                model_format=cfg.model_format, service_account=cfg.service_account, resources=cfg.resources,
            )
            obj = self._wait_or_fail(name, bot, version, self.kube.create(body, bot))
            failure = self._smoke(smoke_check, status.internal_url(obj))
            if failure:
                raise DeployError(
                    f"bot '{bot}' version {version}: {failure}; InferenceService '{name}' in namespace "
                    f"'{cfg.namespace}' was just created, so there is no earlier version to roll back to"
                )
            reasons = [f"created InferenceService '{name}' in namespace '{cfg.namespace}'"]
            return DeployResult(bot, version, "created", status.url(obj), reasons + (["smoke check passed"] if smoke_check else []))

        self._check_owner(obj, bot, bot)
        if self._serves(obj, storage_uri):
            return DeployResult(bot, version, "unchanged", status.url(obj), [f"'{name}' already serves {version} and is Ready"])
        previous_uri = status.storage_uri(obj)
        previous_version = status.annotations(obj).get(ANNOTATION_MODEL_VERSION)
        # same URI: a rollout of this version was interrupted, the version before it is unknown
        previous = (previous_uri, previous_version) if previous_uri != storage_uri else None
        if cfg.canary_traffic_percent is not None:
            return self._canary(name, bot, version, storage_uri, previous, smoke_check)

        patched = self.kube.patch(name, bot, self._rollout_patch(storage_uri, version, None))
        reasons = [f"patched '{name}' from {previous_version or previous_uri} to {version}"]
        # Knative keeps routing to the last ready revision, a Deployment keeps its old pods
        # until the new ones are ready: the old version still serves
        obj = self._wait_or_fail(name, bot, version, patched, "; the previous version keeps serving, "
                                 "fix the model and deploy again or roll back")
        failure = self._smoke(smoke_check, status.internal_url(obj))
        if failure:
            self._roll_back(name, bot, version, previous, None, failure)
        if smoke_check is not None:
            reasons.append("smoke check passed")
        return DeployResult(bot, version, "updated", status.url(obj), reasons)

    def _canary(self, name, bot, version, storage_uri, previous, smoke_check) -> DeployResult:
        cfg = self.config
        pct = cfg.canary_traffic_percent
        patched = self.kube.patch(name, bot, self._rollout_patch(storage_uri, version, pct))
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
        promoted = self.kube.patch(name, bot, {"spec": {"predictor": {"canaryTrafficPercent": None}}})
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
        patched = self.kube.patch(name, bot, patch)
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
        action, reasons = "updated", []
        obj = self.kube.get(name, bot)
        if obj is None:
            body = build_shared_inference_service(
                models_root, cfg.namespace, cfg.predictor_image, name=name, service_account=cfg.service_account,
                resources=cfg.shared_resources, storage_secret=cfg.storage_secret,
                secret_keys=cfg.storage_secret_keys, endpoint_url=cfg.storage_endpoint,
            )
            # bots deployed in parallel all race to create the shared service: 409 means one won
            created = self.kube.create(body, bot, allow=(409,))
            if created is not None:
                obj = created
                action = "created"
                reasons.append(f"created shared InferenceService '{name}' serving {models_root}")
            else:
                obj = self.kube.get(name, bot)
                if obj is None:
                    raise DeployError(
                        f"shared InferenceService '{name}' in namespace '{cfg.namespace}' (bot '{bot}') "
                        "was reported as existing but cannot be read"
                    )
        self._check_owner(obj, bot, None)
        served_root = shared_models_root(obj)
        if served_root is None or served_root.rstrip("/") != models_root.rstrip("/"):
            raise DeployError(
                f"shared InferenceService '{name}' in namespace '{cfg.namespace}' serves models from "
                f"{served_root or 'no --models-root'}, but bot '{bot}' version {version} is under {models_root}; "
                "use one model store root per shared service"
            )
        if not status.is_ready(obj):
            obj = self._wait_or_fail(name, bot, version, obj)
        failure = self._smoke(smoke_check, status.internal_url(obj))
        if failure:
            raise DeployError(
                f"bot '{bot}' version {version} on shared InferenceService '{name}' in namespace "
                f"'{cfg.namespace}': {failure}"
            )
        reasons.append(f"'{name}' serves {models_root}; bot '{bot}' follows its CURRENT pointer ({version})")
        if smoke_check is not None:
            reasons.append("smoke check passed")
        return DeployResult(bot, version, action, status.url(obj), reasons)
