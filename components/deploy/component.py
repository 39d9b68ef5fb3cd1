"""KFP interface of the deploy step."""

from typing import NamedTuple

from kfp.dsl import Artifact, Input, Output

from botyard.components.base.kfp_component import botyard_component


@botyard_component
def deploy(
    blessing: Input[Artifact],
    infra_result: Input[Artifact],
    bot_id: str,
    models_root: str,
    version: str,
    target: str,
    namespace: str,
    serving_mode: str,
    canary_traffic_percent: int,
    ready_timeout_s: int,
    deployment: Output[Artifact],
) -> NamedTuple("DeployOutputs", [("action", str)]):
    """Put the blessed model version live: promote it locally, or roll it out to KServe.

    Args:
        blessing: The promotion gate's verdict.
        infra_result: The infra check's verdict.
        bot_id: The bot.
        models_root: Model store root.
        version: The model version to deploy.
        target: "local" (promote in the model store) or "cluster" (KServe InferenceService).
        namespace: Kubernetes namespace of the InferenceService (cluster target).
        serving_mode: "per-bot" (one InferenceService per bot) or "shared" (one multi-bot predictor).
        canary_traffic_percent: Canary share for the rollout, 0 for none (cluster target, per-bot).
        ready_timeout_s: How long to wait for the InferenceService to be Ready.

    Returns:
        deployment: deployment.json with the action taken and the previous version.
        action: created / updated / unchanged / canary-promoted / promoted.
    """
    from collections import namedtuple

    from botyard.components.deploy.core import deploy_blessed

    done = deploy_blessed(
        blessing.path, infra_result.path, models_root, bot_id, version, target, deployment.path,
        namespace=namespace, serving_mode=serving_mode, canary_traffic_percent=canary_traffic_percent,
        ready_timeout_s=ready_timeout_s,
    )
    deployment.metadata.update(done.to_json())
    return namedtuple("DeployOutputs", ["action"])(done.action)
