"""KFP interface of the register step."""

from typing import NamedTuple

from kfp.dsl import Artifact, Input, Model

from botyard.components.base.kfp_component import botyard_component


@botyard_component
def register(
    model: Input[Model],
    evaluation: Input[Artifact],
    bot_id: str,
    models_root: str,
    data_hash: str,
) -> NamedTuple("RegisterOutputs", [("version", str), ("version_uri", str)]):
    """Publish the model as a new, immutable model version of the bot in the model store.

    The version is uploaded under a temporary prefix and becomes visible only once complete
    (its PUBLISHED manifest is written last).

    Args:
        model: Trained model folder.
        evaluation: Evaluation folder (metrics, threshold).
        bot_id: The bot the model belongs to.
        models_root: Root of the model store (local or mounted folder, s3://... or gs://...).
        data_hash: Data version the model was trained on.

    Returns:
        version: The new model version id.
        version_uri: ``<models_root>/<bot_id>/<version>``.
    """
    from collections import namedtuple

    from botyard.components.register.core import register_model_version

    version, uri = register_model_version(models_root, bot_id, model.path, evaluation.path, data_hash)
    return namedtuple("RegisterOutputs", ["version", "version_uri"])(version, uri)
