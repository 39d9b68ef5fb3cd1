"""Names botyard gives its KFP objects, and the check on a run's trigger label.

    pipeline    bot-training                    one KFP pipeline for every bot
    experiment  bot-<bot_id>                    one per bot: holds its runs and its schedule
    run         "<bot_id> <trigger> data=<hash[:12]>"
    schedule    recurring run bot-<bot_id>-schedule
"""

from __future__ import annotations

import re
from importlib import metadata as importlib_metadata

from botyard.components.base.errors import ConfigError

PIPELINE_NAME = "bot-training"  # == botyard.pipelines.bot_training.PIPELINE_NAME (not imported: kfp is slow to import)
PIPELINE_FILE = "bot_training"  # its key in botyard.pipelines.builders.pipeline_builders()
EXPERIMENT_PREFIX = "bot-"
SCHEDULE_SUFFIX = "-schedule"
LABELS_KEY = "botyard_labels"  # a run's description: {"botyard_labels": {...}} (JSON)
LOCAL_HOST = "local"
MANUAL, SCHEDULED = "manual", "schedule"  # triggers botyard itself uses; the trigger service adds its own
DEFAULT_SERVICE_ACCOUNT = "default-editor"  # what a Kubeflow profile namespace runs pipelines as
TRIGGER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,62}$")
TRIGGER_RULE = "1-63 letters, digits and '_.:/-', starting with a letter or digit"


def experiment_name(bot_id: str) -> str:
    return f"{EXPERIMENT_PREFIX}{bot_id}"


def schedule_name(bot_id: str) -> str:
    return f"{EXPERIMENT_PREFIX}{bot_id}{SCHEDULE_SUFFIX}"


def is_schedule_name(name: str | None) -> bool:
    return bool(name) and name.startswith(EXPERIMENT_PREFIX) and name.endswith(SCHEDULE_SUFFIX)


def run_name(bot_id: str, trigger: str, data_hash: str) -> str:
    return f"{bot_id} {trigger} data={data_hash[:12]}"


def botyard_version() -> str:
    try:
        return importlib_metadata.version("botyard")
    except importlib_metadata.PackageNotFoundError:
        return "0+unknown"


def check_trigger(trigger: str) -> str:
    if not isinstance(trigger, str) or not TRIGGER_PATTERN.match(trigger):
        raise ConfigError(f"trigger {trigger!r} is not valid: use {TRIGGER_RULE}")
    return trigger
