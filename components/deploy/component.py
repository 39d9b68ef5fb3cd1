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
    import json
    import os
    from collections import namedtuple

    from botyard.components.deploy.cluster import ClusterDeployConfig
    from botyard.components.deploy.core import check_blessed, deploy_version
    from botyard.components.gate.core import read_blessing
    from botyard.components.infra_check.core import read_infra_result

    check_blessed(read_blessing(blessing.path), read_infra_result(infra_result.path))
    cluster = None
    if target == "cluster":
        cluster = ClusterDeployConfig(
            namespace=namespace, mode=serving_mode, ready_timeout_s=ready_timeout_s,
            canary_traffic_percent=canary_traffic_percent or None,
        )
    done = deploy_version(models_root, bot_id, version, target, cluster)
    os.makedirs(deployment.path, exist_ok=True)
    with open(os.path.join(deployment.path, "deployment.json"), "w", encoding="utf-8") as f:
        json.dump(done.to_json(), f, indent=2)
    deployment.metadata.update(done.to_json())
    return namedtuple("DeployOutputs", ["action"])(done.action)
