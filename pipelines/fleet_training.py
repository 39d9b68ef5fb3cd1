"""The fleet pipeline: train a list of bots in one KFP run, one bot's failure never stopping the others.

Shape of one run (``bots`` is a list of ``{"bot_id", "data_uri"}``)::

    ParallelFor(bots, parallelism=N)
      fleet-bot (sub-pipeline, one per bot)
        check_bot_data - ok ----> bot-training (the same sub-pipeline as a single-bot run)
            |                         -> record_outcome(version_uri)  -> succeeded outcome
            +---------- not ok -----> record_outcome()                -> failed outcome
        returns dsl.OneOf(...)  : exactly one outcome per bot
    summarise_fleet(bots, dsl.Collected(outcomes))  -> summary.json + Markdown report

Why this shape: in KFP v2 a failed task fails its loop iteration, and a failed iteration leaves
the loop's ``dsl.Collected`` output incomplete (kfp.local drops it entirely) and fails the loop,
which on a cluster may also stop iterations not yet started. So failure must not be a task status for the common cause, bad data: the data check
(``check_bot_data``) reads and validates the data in-process and turns a ``BotyardError`` into a
*failed outcome*, ``dsl.If``/``dsl.Else`` skip that bot's training, and ``dsl.OneOf`` gives the
sub-pipeline one output either way. The summary also runs with ``.ignore_upstream_failure()``
and gets the bot list itself, so on a cluster a bot whose training *crashed* (out of memory, a
lost node) still shows up, as failed with "no outcome recorded"; kfp.local cannot run that case
(its loop aggregation needs every iteration), so locally a crash fails the run.

The fleet's inputs are ``bots`` plus every bot_training input except ``bot_id`` and ``data_uri``
(same names, types and defaults, read from bot_training's component spec by ``shared_inputs``),
so a setting such as ``epochs`` applies to every bot and the two pipelines cannot drift apart.

``parallelism`` is compiled into the YAML (KFP's ``ParallelFor(parallelism=...)`` takes a
compile-time int, not a pipeline parameter): ``build_fleet_training(gpu, parallelism)`` makes a
pipeline for it; ``fleet_training`` uses ``DEFAULT_PARALLELISM``. kfp.local runs at most two
iterations at a time whatever the setting.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from dataclasses import dataclass

from kfp import dsl

from botyard.components.base.config import GpuConfig
from botyard.components.base.images import ImageConfig
from botyard.components.base.errors import BotyardError, ConfigError
from botyard.components.fleet.component import check_bot_data, record_outcome, summarise_fleet
from botyard.components.fleet.core import DEFAULT_PARALLELISM
from botyard.pipelines.bot_training import build_bot_training
from botyard.pipelines.kfp.parameters import check_parameter_values
from botyard.pipelines.local_run import local_session
from botyard.pipelines.signatures import parameter, pipeline_function
from botyard.pipelines.task_settings import LOCAL_BUILD, TRAIN_RETRIES, ClusterSettings, StorageAccess, configure

PIPELINE_NAME = "fleet-training"
MAX_PARALLELISM = 256
PER_BOT_INPUTS = ("bot_id", "data_uri")  # come from each item of ``bots``; every other input is shared
_PYTHON_TYPES = {"String": str, "Integer": int, "Float": float, "Boolean": bool, "List": list, "Struct": dict}


def shared_inputs(bot_training) -> list[inspect.Parameter]:
    """bot_training's inputs other than the per-bot ones, with their types and defaults.

    The fleet pipeline takes exactly these (plus ``bots``), so a parameter added to
    bot_training reaches the fleet without being written out twice.
    """
    params = []
    for name, spec in bot_training.component_spec.inputs.items():
        if name in PER_BOT_INPUTS:
            continue
        params.append(parameter(name, _PYTHON_TYPES[spec.type], inspect.Parameter.empty if spec.default is None else spec.default))
    return params


def check_parallelism(parallelism, named: str = "parallelism = ") -> None:
    """``ConfigError`` unless 1 to ``MAX_PARALLELISM`` bots at once; ``named`` leads the message
    (``--parallelism `` for the command line)."""
    if isinstance(parallelism, bool) or not isinstance(parallelism, int) or not 1 <= parallelism <= MAX_PARALLELISM:
        raise ConfigError(f"{named}{parallelism!r} is out of range; allowed: 1 to {MAX_PARALLELISM}")


def build_fleet_training(
    gpu: "GpuConfig | None" = None,
    parallelism: int = DEFAULT_PARALLELISM,
    *,
    images: ImageConfig | None = None,
    storage: StorageAccess | None = None,
    train_retries: int = TRAIN_RETRIES,
):
    """The fleet pipeline for a cluster's GPU, image, storage and retry settings and a number of bots trained at once."""
    settings = ClusterSettings.of(gpu, images, storage, train_retries)
    check_parallelism(parallelism)
    bot_training = build_bot_training(settings.gpu, images=settings.images, storage=settings.storage,
                                      train_retries=settings.train_retries)
    shared = shared_inputs(bot_training)

    def fleet_bot(args: dict):
        data_check = check_bot_data(bot_id=args["bot_id"], data_uri=args["data_uri"], min_examples_per_intent=args["min_examples_per_intent"],
                                    on_label_conflict=args["on_label_conflict"])
        data_check.set_display_name("Check bot data").set_caching_options(False)  # the data behind a URI may change
        configure(data_check, settings)
        with dsl.If(data_check.outputs["ok"] == True, name="data-ok"):  # noqa: E712 (a KFP condition, not Python)
            trained = bot_training(**args).set_display_name("Train bot")
            succeeded = record_outcome(outcome=data_check.outputs["outcome"], version_uri=trained.output)
            succeeded.set_display_name("Record model version").set_caching_options(False)
            configure(succeeded, settings)
        with dsl.Else(name="data-invalid"):
            rejected = record_outcome(outcome=data_check.outputs["outcome"])
            rejected.set_display_name("Record data problem").set_caching_options(False)
            configure(rejected, settings)
        return dsl.OneOf(succeeded.output, rejected.output)

    # inside the loop every input is passed explicitly: no defaults on the sub-pipeline
    fleet_bot_inputs = [parameter(n, str) for n in PER_BOT_INPUTS] + [p.replace(default=inspect.Parameter.empty) for p in shared]
    fleet_bot_pipeline = dsl.pipeline(
        name="fleet-bot", description="One bot of a fleet run: check its data, train it, record its outcome."
    )(pipeline_function(fleet_bot, "fleet_bot", fleet_bot_inputs, str))

    def fleet(args: dict):
        bots = args.pop("bots")
        with dsl.ParallelFor(bots, parallelism=parallelism, name="bots") as bot:
            per_bot = fleet_bot_pipeline(bot_id=bot.bot_id, data_uri=bot.data_uri, **args).set_display_name("Bot")
        summary = summarise_fleet(bots=bots, outcomes=dsl.Collected(per_bot.output))
        summary.set_display_name("Summarise fleet").set_caching_options(False).ignore_upstream_failure()
        configure(summary, settings)

    return dsl.pipeline(
        name=PIPELINE_NAME,
        description=f"Train, evaluate and register many bots in one run ({parallelism} at a time); "
        "a bot with bad data is reported as failed and the others go on.",
    )(pipeline_function(fleet, "fleet_training", [parameter("bots", list)] + shared))


fleet_training = build_fleet_training(**LOCAL_BUILD)  # for kfp.local, like bot_training


# --- running it on this machine ---------------------------------------------------------------


@dataclass
class FleetRun:
    summary: dict  # botyard.components.fleet.core.summarise's result
    summary_path: str | None
    report_path: str | None
    run_dir: str | None
    log_path: str
    seconds: float


def run_fleet_locally(
    bots: list[dict],
    models_root: str = "models",
    pipeline_root: str = "runs",
    parameters: dict | None = None,
    parallelism: int = DEFAULT_PARALLELISM,
    console=None,
) -> FleetRun:
    """Run ``fleet_training`` through kfp.local; bots with bad data come back as failed outcomes."""
    from botyard.components.fleet.core import SUMMARY_FILE, parse_bots

    console = console or sys.stdout
    bots = parse_bots(bots)
    pipeline = build_fleet_training(parallelism=parallelism, **LOCAL_BUILD)
    parameters = dict(parameters or {})
    check_parameter_values(parameters)  # a bad value fails now, not in every bot's steps
    models_root = os.path.abspath(models_root)
    with local_session(PIPELINE_NAME, os.path.abspath(pipeline_root), f"{len(bots)}-bots", console) as session:
        pipeline(bots=bots, models_root=models_root, **parameters)
    run_dir, log_path = session.run_dir, session.log_path
    summary_path = os.path.join(run_dir, "summarise-fleet", "summary", SUMMARY_FILE) if run_dir else None
    report_path = os.path.join(run_dir, "summarise-fleet", "report") if run_dir else None
    if not summary_path or not os.path.exists(summary_path):
        raise BotyardError(f"pipeline {PIPELINE_NAME} wrote no summary under {run_dir}; see the step logs in {log_path}")
    with open(summary_path, encoding="utf-8") as f:
        summary = json.load(f)
    return FleetRun(summary, summary_path, report_path, run_dir, log_path, session.seconds)
