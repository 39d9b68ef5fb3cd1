"""KFP interface of the fleet steps: the per-bot data check, the outcome recorder and the summary."""

from typing import List, NamedTuple

from kfp.dsl import Artifact, Markdown, Output

from botyard.components.base.kfp_component import botyard_component


@botyard_component
def check_bot_data(
    bot_id: str, data_uri: str, min_examples_per_intent: int, on_label_conflict: str = "fail"
) -> NamedTuple("CheckBotOutputs", [("ok", bool), ("outcome", str)]):
    """Check one bot's id and training data before its training; bad data is reported, never raised.

    Args:
        bot_id: The bot's id.
        data_uri: Path or URI of the bot's training file.
        min_examples_per_intent: Fewer examples for any intent fails the bot (not the run).
        on_label_conflict: fail, warn or drop: what an utterance labelled with different intents does.

    Returns:
        ok: True when the bot's training should run.
        outcome: The bot's outcome so far (JSON): ready, or failed with the stage and message.
    """
    import json
    from collections import namedtuple

    from botyard.components.base.config import ValidationConfig
    from botyard.components.fleet.core import READY, STATUS, check_bot_data as check

    outcome = check(bot_id, data_uri, ValidationConfig(min_examples_per_intent=min_examples_per_intent, on_label_conflict=on_label_conflict))
    return namedtuple("CheckBotOutputs", ["ok", "outcome"])(outcome[STATUS] == READY, json.dumps(outcome))


@botyard_component
def record_outcome(outcome: str, version_uri: str = "") -> str:
    """Finish one bot's outcome: with a model version, read its headline metrics; without, pass the failure on.

    Args:
        outcome: The data check's outcome (JSON).
        version_uri: The registered model version (empty for a bot that failed its data check).

    Returns:
        The bot's final outcome (JSON).
    """
    import json

    from botyard.components.fleet.core import record_success

    result = json.loads(outcome)
    if version_uri:
        result = record_success(result, version_uri)
    return json.dumps(result)


@botyard_component
def summarise_fleet(
    bots: list,
    summary: Output[Artifact],
    report: Output[Markdown],
    outcomes: List[str] = [],
) -> NamedTuple("FleetSummaryOutputs", [("succeeded", int), ("failed", int)]):
    """List every bot of the fleet run with its outcome: model version and metrics, or why it failed.

    Args:
        bots: The fleet's bot list ({"bot_id", "data_uri"} items).
        outcomes: Each bot's outcome (JSON), collected over the fleet's loop; a bot without one counts as failed.

    Returns:
        summary: summary.json: counts and one outcome per bot, in the bot list's order.
        report: The same as a Markdown table.
        succeeded: Bots with a new model version.
        failed: Bots without one.
    """
    import json
    import os
    from collections import namedtuple

    from botyard.components.fleet.core import FAILED, SUCCEEDED, SUMMARY_FILE, summarise, summary_markdown

    result = summarise(bots, outcomes)
    os.makedirs(summary.path, exist_ok=True)
    with open(os.path.join(summary.path, SUMMARY_FILE), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    with open(report.path, "w", encoding="utf-8") as f:
        f.write(summary_markdown(result))
    summary.metadata.update({SUCCEEDED: result[SUCCEEDED], FAILED: result[FAILED]})
    return namedtuple("FleetSummaryOutputs", ["succeeded", "failed"])(result[SUCCEEDED], result[FAILED])
