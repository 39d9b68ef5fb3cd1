"""KFP interface of the deploy step."""

from typing import NamedTuple

from kfp.dsl import Artifact, Dataset, Input, Output

from botyard.components.base.kfp_component import botyard_component


@botyard_component
def deploy(
    blessing: Input[Artifact],
    infra_result: Input[Artifact],
    test_data: Input[Dataset],
    bot_id: str,
    models_root: str,
    version: str,
    target: str,
    namespace: str,
    serving_mode: str,
    deployment_mode: str,
    canary_traffic_percent: int,
    ready_timeout_s: int,
    predictor_service_account: str,
    predictor_image: str,
    storage_access: dict,
    deployment: Output[Artifact],
) -> NamedTuple("DeployOutputs", [("action", str)]):
    """Put the blessed model version live: promote it locally, or roll it out to KServe.

    Args:
        blessing: The promotion gate's verdict.
        infra_result: The infra check's verdict.
        test_data: The test split; its first utterance smoke-checks a cluster rollout.
        bot_id: The bot.
        models_root: Model store root (a URI or absolute path on a cluster).
        version: The model version to deploy.
        target: "local" (promote in the model store) or "cluster" (KServe InferenceService).
        namespace: Namespace of the InferenceService; empty: the namespace the run executes in.
        serving_mode: "per-bot" (one InferenceService per bot) or "shared" (one multi-bot predictor).
        deployment_mode: KServe's "RawDeployment" or "Serverless" (per-bot; a canary needs Serverless).
        canary_traffic_percent: Canary share for the rollout, 0 for none (cluster target, per-bot, Serverless).
        ready_timeout_s: How long to wait for the InferenceService to be Ready and answer with the version.
        predictor_service_account: serviceAccountName of the predictor pods (model store access); empty: none.
        predictor_image: Image of the shared predictor (compile time).
        storage_access: Storage secret, its keys and endpoint for the shared predictor (compile time).

    Returns:
        deployment: deployment.json with the action taken and the previous version.
        action: created / updated / unchanged / canary-promoted / promoted.
    """
    from collections import namedtuple

    from botyard.components.base import contracts as c
    from botyard.components.base.table import read_table
    from botyard.components.deploy.config import cluster_config_from_parameters
    from botyard.components.deploy.core import deploy_blessed

    cluster = cluster_config_from_parameters(
        namespace=namespace, serving_mode=serving_mode, deployment_mode=deployment_mode,
        canary_traffic_percent=canary_traffic_percent, ready_timeout_s=ready_timeout_s,
        service_account=predictor_service_account, predictor_image=predictor_image, storage_access=storage_access,
    ) if target == "cluster" else None
    utterances = read_table(test_data.path)[c.UTTERANCE].tolist() if target == "cluster" else ()
    done = deploy_blessed(
        blessing.path, infra_result.path, models_root, bot_id, version, target, deployment.path,
        test_utterances=utterances, cluster=cluster,
    )
    deployment.metadata.update(done.to_json())
    return namedtuple("DeployOutputs", ["action"])(done.action)
