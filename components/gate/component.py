"""KFP interface of the promotion gate."""

from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from botyard.components.base.kfp_component import botyard_component


@botyard_component
def gate(
    test_data: Input[Dataset],
    bot_id: str,
    models_root: str,
    version: str,
    min_accuracy: float,
    max_accuracy_drop: float,
    max_intent_recall_drop: float,
    blessing: Output[Artifact],
    report: Output[Markdown],
) -> bool:
    """Bless the candidate only if it meets the thresholds and does not lose to the live version.

    Args:
        test_data: Test rows both versions are scored on.
        bot_id: The bot.
        models_root: Model store root.
        version: The candidate model version.
        min_accuracy: Minimum test accuracy (negative: unset).
        max_accuracy_drop: Maximum accuracy loss against the live version (negative: unset).
        max_intent_recall_drop: Maximum recall loss of any intent against the live version (negative: unset).

    Returns:
        blessing: Folder with blessing.json and a BLESSED / NOT_BLESSED marker.
        report: The verdict and every reason, rendered in the KFP UI.
        Whether the deploy step may run (the task's Output).
    """
    from botyard.components.gate.core import GateConfig, run_gate, write_blessing
    from botyard.components.base.table import read_table

    def unset(value):
        return None if value < 0 else value

    config = GateConfig(min_accuracy=unset(min_accuracy), max_accuracy_drop=unset(max_accuracy_drop), max_intent_recall_drop=unset(max_intent_recall_drop))
    result = run_gate(models_root, bot_id, version, read_table(test_data.path), config)
    write_blessing(result, blessing.path)
    with open(report.path, "w", encoding="utf-8") as f:
        f.write(result.to_markdown())
    blessing.metadata.update({"blessed": result.blessed, "version": version})
    return result.blessed
