"""KFP interface of the promotion gate."""

from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from botyard.components.base.kfp_component import botyard_component


@botyard_component
def gate(
    evaluation: Input[Artifact],
    test_data: Input[Dataset],
    bot_id: str,
    models_root: str,
    version: str,
    min_accuracy: float,
    max_accuracy_drop: float,
    max_intent_recall_drop: float,
    min_entity_f1: float,
    max_entity_f1_drop: float,
    blessing: Output[Artifact],
    report: Output[Markdown],
) -> bool:
    """Bless the candidate only if it meets the thresholds and does not lose to the live version.

    Args:
        evaluation: The evaluate step's folder: the candidate's figures, scored there once.
        test_data: Test rows the live version is scored on (the candidate's own test split).
        bot_id: The bot.
        models_root: Model store root.
        version: The candidate model version.
        min_accuracy: Minimum test accuracy (negative: unset).
        max_accuracy_drop: Maximum accuracy loss against the live version (negative: unset).
        max_intent_recall_drop: Maximum recall loss of any intent against the live version (negative: unset).
        min_entity_f1: Minimum entity micro-F1, for a model with an entity tagger (negative: unset).
        max_entity_f1_drop: Maximum entity micro-F1 loss against the live version (negative: unset).

    Returns:
        blessing: Folder with blessing.json and a BLESSED / NOT_BLESSED marker.
        report: The verdict and every reason, rendered in the KFP UI.
        Whether the deploy step may run (the task's Output).
    """
    from botyard.components.gate.core import GateConfig, gate as run_gate

    config = GateConfig.from_parameters_unset_below_zero(
        min_accuracy=min_accuracy, max_accuracy_drop=max_accuracy_drop, max_intent_recall_drop=max_intent_recall_drop,
        min_entity_f1=min_entity_f1, max_entity_f1_drop=max_entity_f1_drop,
    )
    result = run_gate(models_root, bot_id, version, evaluation.path, test_data.path, config, blessing.path, report.path)
    blessing.metadata.update({"blessed": result.blessed, "version": version})
    return result.blessed
