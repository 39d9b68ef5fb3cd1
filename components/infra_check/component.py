"""KFP interface of the infra check."""

from kfp.dsl import Artifact, Dataset, Input, Output

from botyard.components.base.kfp_component import botyard_component


@botyard_component
def infra_check(
    test_data: Input[Dataset],
    bot_id: str,
    models_root: str,
    version: str,
    result: Output[Artifact],
) -> bool:
    """Load the candidate into a real predictor process and send it sample requests.

    Args:
        test_data: Rows whose utterances are sent as sample requests.
        bot_id: The bot.
        models_root: Model store root.
        version: The candidate model version.

    Returns:
        result: Folder with infra_check.json (verdict, reasons, latency).
        Whether the version loaded and answered (the task's Output).
    """
    from botyard.components.base import contracts as c
    from botyard.components.infra_check.core import run_infra_check, write_infra_result
    from botyard.components.base.table import read_table

    verdict = run_infra_check(models_root, bot_id, version, read_table(test_data.path)[c.UTTERANCE].tolist())
    write_infra_result(verdict, result.path)
    result.metadata.update({"blessed": verdict.blessed, "version": version})
    return verdict.blessed
