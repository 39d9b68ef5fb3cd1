"""``botyard schedule``: retrain a bot on a cron schedule on Kubeflow Pipelines; list, pause, resume, delete."""

from __future__ import annotations

import argparse

from botyard.components.base.config import GpuConfig
from botyard.components.base.errors import ConfigError
from botyard.pipelines.commands.options import HOST_ENV, add_kfp_arguments, add_service_account_argument, kfp_endpoint, parse_parameters, table

EXAMPLES = """examples:
  botyard schedule --bot pizza --data gs://bots/pizza/nlu.yml --cron "0 3 * * *" --host http://localhost:8080
  botyard schedule list --host http://localhost:8080
  botyard schedule pause --bot pizza --host http://localhost:8080
  botyard schedule resume --bot pizza --host http://localhost:8080
  botyard schedule delete --bot pizza --host http://localhost:8080
"""


def _host(args: argparse.Namespace):
    endpoint = kfp_endpoint(args)
    if endpoint is None:
        raise ConfigError(f"schedules live on a Kubeflow Pipelines endpoint: give --host URL (or set ${HOST_ENV})")
    return endpoint


def _bot(args: argparse.Namespace) -> str:
    if not getattr(args, "bot", None):
        raise ConfigError("give --bot BOT_ID")
    return args.bot


def _show(schedules) -> str:
    rows = [[s.bot_id, s.cron, "enabled" if s.enabled else "paused", s.max_concurrency, s.no_catchup, s.created_at, s.schedule_id] for s in schedules]
    return table(["BOT", "CRON (s m h dom mon dow)", "STATE", "MAX CONCURRENT", "NO CATCHUP", "CREATED (UTC)", "SCHEDULE ID"], rows)


def create(args: argparse.Namespace) -> int:
    from botyard.pipelines.kfp.schedules import schedule_bot

    missing = [flag for flag, value in (("--bot", args.bot), ("--data", args.data), ("--cron", args.cron)) if not value]
    if missing:
        raise ConfigError(f"botyard schedule needs {', '.join(missing)} (or one of: list, pause, resume, delete); see botyard schedule --help")
    endpoint = _host(args)
    schedule = schedule_bot(
        args.bot, args.data, args.cron, endpoint, models_root=args.models_root, parameters=parse_parameters(args.param),
        gpu=GpuConfig(enabled=False) if args.no_gpu else None, service_account=args.service_account,
    )
    print(f"botyard: bot '{args.bot}' now retrains on {endpoint.host} at cron '{schedule.cron}' (one run at a time, no backfill)")
    print(_show([schedule]))
    return 0


def list_(args: argparse.Namespace) -> int:
    from botyard.pipelines.kfp.schedules import list_schedules

    schedules = list_schedules(_host(args), bot_id=getattr(args, "bot", None))
    print(_show(schedules) if schedules else "no botyard schedules")
    return 0


def _change(action: str):
    def handler(args: argparse.Namespace) -> int:
        from botyard.pipelines.kfp import schedules

        fn = {"pause": schedules.pause_schedule, "resume": schedules.resume_schedule, "delete": schedules.delete_schedule}[action]
        schedule = fn(_bot(args), _host(args))
        done = {"pause": "paused (runs already started go on)", "resume": "resumed", "delete": "deleted (its past runs are kept)"}[action]
        print(f"botyard: schedule {schedule.name} ({schedule.schedule_id}) {done}")
        return 0

    return handler


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "schedule",
        help="retrain a bot on a cron schedule on Kubeflow Pipelines (also: list, pause, resume, delete)",
        description="Create a KFP recurring run bot-<bot id>-schedule that trains the bot on its data at the given "
        "cron times, one run at a time (max_concurrency=1) and without backfilling missed times (no_catchup). "
        "Cron: 5 fields (minute hour day-of-month month day-of-week, e.g. '0 3 * * *' = 03:00 UTC daily) or KFP's 6 "
        "with seconds first; @daily/@hourly/@weekly work too. The schedule runs this code's pipeline version.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--bot", "--bot-id", dest="bot", metavar="BOT_ID", help="the bot to retrain")
    p.add_argument("--data", metavar="URI", help="its training file: a gs://, s3:// URI or an absolute path the pods mount")
    p.add_argument("--cron", help="when to run, e.g. \"0 3 * * *\"")
    add_kfp_arguments(p)
    add_service_account_argument(p)
    p.add_argument("--models-root", metavar="URI", help="model store the runs register into (default: $BOTYARD_MODELS_ROOT or ./models)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="override a pipeline parameter (repeatable)")
    p.add_argument("--no-gpu", action="store_true", help="compile the pipeline for a CPU-only cluster")
    p.set_defaults(handler=create)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    # SUPPRESS: values typed before the action (botyard schedule --host X list) are not reset to None
    keep = argparse.SUPPRESS
    lister = actions.add_parser("list", help="list botyard's schedules", description="List botyard's schedules on the endpoint (all bots, or --bot).")
    lister.add_argument("--bot", "--bot-id", dest="bot", default=keep, metavar="BOT_ID", help="only this bot's schedule")
    add_kfp_arguments(lister, default=keep)
    lister.set_defaults(handler=list_)
    for action, text in (
        ("pause", "stop a bot's schedule from starting runs (it keeps its cron)"),
        ("resume", "start a paused schedule again"),
        ("delete", "delete a bot's schedule (its past runs are kept)"),
    ):
        sub = actions.add_parser(action, help=text, description=text[0].upper() + text[1:] + ".")
        sub.add_argument("--bot", "--bot-id", dest="bot", default=keep, metavar="BOT_ID", help="the bot whose schedule to change")
        add_kfp_arguments(sub, default=keep)
        sub.set_defaults(handler=_change(action))
