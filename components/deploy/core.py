"""Deploy step: put a blessed model version live, locally (model store pointer) or on a cluster.

``local``   promote the version in the model store (atomic ``CURRENT`` rewrite; earlier
            versions stay); a running ``botyard serve`` on that root picks it up.
``cluster`` per-bot: roll the bot's InferenceService out to the version
            (``botyard.components.deploy.rollout``), then move the pointer, so the next run's
            gate compares against what is live. Shared: move the pointer first (the shared
            predictor reads it live), then check that the service serves it; move it back
            if not.

The step reads the gate's and the infra check's verdicts from their artifacts and refuses
anything not blessed by both. On a cluster the rollout is smoke-checked with a real utterance
from the bot's test split (``smoke.SmokeCheck``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from botyard.components.base import contracts as c
from botyard.components.base.artifacts import read_blessing, read_infra_result, write_json
from botyard.components.base.contracts import DEPLOYMENT_FILE
from botyard.components.base.errors import ConfigError, DeployError, ModelStoreError
from botyard.components.base.model_store import ModelStore
from botyard.components.deploy.config import ClusterDeployConfig, check_cluster_locations
from botyard.components.deploy.inference_service import inference_service_name
from botyard.components.deploy.rollout import ClusterDeployer
from botyard.components.deploy.smoke import SmokeCheck, first_utterance

TARGETS = ("local", "cluster")


@dataclass
class Deployment:
    bot_id: str
    version: str
    target: str
    action: str
    previous: str | None
    url: str | None = None
    warning: str | None = None  # e.g. a forced rollback to a version the gate rejected

    def to_json(self) -> dict:
        return asdict(self)


def check_blessed(*verdicts: dict) -> None:
    for verdict in verdicts:
        if not verdict.get("blessed"):
            reasons = "; ".join(r for r in verdict.get("reasons", []) if r.startswith("FAIL")) or "not blessed"
            raise DeployError(f"refusing to deploy a model version that was not blessed: {reasons}")


def check_target(target: str) -> None:
    if target not in TARGETS:
        raise ConfigError(f"deploy target {target!r} is not valid; use one of {list(TARGETS)}")


def smoke_check_for(bot_id: str, version: str, utterance: str, cluster: ClusterDeployConfig) -> SmokeCheck:
    """The smoke check of ``version``: ``utterance`` answered by it, under the model name the mode serves it as."""
    model_name = bot_id if cluster.mode == "shared" else inference_service_name(bot_id)
    return SmokeCheck(utterance, model_name, version, timeout_s=cluster.ready_timeout_s,
                      interval_s=min(cluster.poll_interval_s, 5.0))


def deploy_version(
    models_root: str,
    bot_id: str,
    version: str,
    target: str = "local",
    cluster: ClusterDeployConfig | None = None,
    api_client=None,
    smoke_utterance: str | None = None,
    deployer: ClusterDeployer | None = None,
) -> Deployment:
    """Make ``version`` the bot's live model; idempotent for an already-live version.

    On a cluster, ``smoke_utterance`` (when given) must come back answered by ``version``
    before the rollout counts as done.
    """
    check_target(target)
    store = ModelStore(models_root)
    previous = store.current(bot_id)
    if target == "local":
        store.promote(bot_id, version)
        return Deployment(bot_id, version, target, "unchanged" if previous == version else "promoted", previous)
    check_cluster_locations(models_root=models_root)
    cluster = cluster or ClusterDeployConfig()
    deployer = deployer or ClusterDeployer(cluster, api_client=api_client)
    smoke = smoke_check_for(bot_id, version, smoke_utterance, cluster) if smoke_utterance else None
    if cluster.mode == "shared":
        store.promote(bot_id, version)  # the shared predictor follows the pointer
        try:
            result = deployer.deploy(bot_id, version, store.version_dir(bot_id, version), smoke)
        except DeployError:
            if previous:
                store.promote(bot_id, previous)
            raise
        if result.action == "updated" and previous == version:
            result.action = "unchanged"
    else:
        result = deployer.deploy(bot_id, version, store.version_dir(bot_id, version), smoke)
        store.promote(bot_id, version)
    return Deployment(bot_id, version, target, result.action, previous, result.url)


def deploy_blessed(
    blessing_dir: str,
    infra_dir: str,
    models_root: str,
    bot_id: str,
    version: str,
    target: str,
    deployment_dir: str,
    *,
    test_utterances=(),
    cluster: ClusterDeployConfig | None = None,
) -> Deployment:
    """The deploy step: refuse unless the gate and the infra check blessed ``version``, deploy it
    (on a cluster: smoke-checked with the first of ``test_utterances``), write ``deployment.json``."""
    check_blessed(read_blessing(blessing_dir), read_infra_result(infra_dir))
    utterance = first_utterance(test_utterances) if target == "cluster" else None
    done = deploy_version(models_root, bot_id, version, target, cluster, smoke_utterance=utterance)
    write_json(deployment_dir, DEPLOYMENT_FILE, done.to_json())
    return done


def previous_version(store: ModelStore, bot_id: str) -> str:
    """The version promoted before the current one: the newest version older than it that the
    gate did not reject (a rejected candidate was never live)."""
    current = store.current(bot_id)
    versions = store.versions(bot_id)
    if not versions:
        raise ModelStoreError(
            f"bot '{bot_id}' has no model version under {store.root}: nothing to roll back to (check the bot id and --models-root)"
        )
    older = [v for v in versions if current is None or v < current]
    for version in reversed(older):
        verdict = store.verdict(bot_id, version)
        if verdict is None or verdict[c.VERDICT_BLESSED]:
            return version
    raise ModelStoreError(
        f"bot '{bot_id}' has no model version older than {current or 'the current one'} to roll back to"
        + (f" that the promotion gate did not reject ({len(older)} rejected; name one with --to and --force)" if older else "")
    )


def _failures(verdict: dict) -> str:
    return "; ".join(r for r in verdict.get(c.VERDICT_REASONS, []) if r.startswith("FAIL")) or "not blessed"


def check_not_rejected(store: ModelStore, bot_id: str, version: str, force: bool) -> dict | None:
    """Refuse a version the promotion gate rejected unless ``force``; returns its verdict (None: never judged)."""
    verdict = store.verdict(bot_id, version)
    if verdict is not None and not verdict[c.VERDICT_BLESSED] and not force:
        raise DeployError(
            f"bot '{bot_id}': model version {version} was rejected by the promotion gate"
            f"{' on ' + verdict[c.JUDGED_AT] if verdict.get(c.JUDGED_AT) else ''} ({_failures(verdict)}); "
            "pass --force to roll back to it anyway"
        )
    return verdict


def rollback(
    models_root: str,
    bot_id: str,
    to_version: str | None = None,
    target: str = "local",
    cluster: ClusterDeployConfig | None = None,
    api_client=None,
    force: bool = False,
) -> Deployment:
    """Restore an earlier version (default: the one before the current) as the live model.

    A version the promotion gate rejected is refused unless ``force``."""
    check_target(target)
    store = ModelStore(models_root)
    version = to_version or previous_version(store, bot_id)
    if version not in store.versions(bot_id):
        raise ModelStoreError(f"bot '{bot_id}' has no model version '{version}'; known: {store.versions(bot_id) or 'none'}")
    verdict = check_not_rejected(store, bot_id, version, force)
    previous = store.current(bot_id)
    cluster = cluster or ClusterDeployConfig()
    if target == "cluster" and cluster.mode == "per-bot":
        # back to the earlier storageUri without a canary; then move the pointer
        url = ClusterDeployer(cluster, api_client=api_client).rollback(bot_id, store.version_dir(bot_id, version), version).url
        store.promote(bot_id, version)
    else:  # local, or the shared predictor: the same path as a deploy
        url = deploy_version(models_root, bot_id, version, target, cluster, api_client).url
    warning = None
    if verdict is not None and not verdict[c.VERDICT_BLESSED]:
        warning = f"version {version} was rejected by the promotion gate ({_failures(verdict)}); serving it because of --force"
    return Deployment(bot_id, version, target, "rolled-back", previous, url, warning)
