"""``botyard status``: recent training runs on a KFP endpoint and the trigger service's decisions."""

from __future__ import annotations

import argparse

from botyard.components.base.errors import ConfigError
from botyard.pipelines.commands.options import HOST_ENV, add_kfp_arguments, duration, kfp_endpoint, table

TRIGGER_COLUMNS = ("created_at", "bot_id", "trigger", "state", "run_id", "data_hash", "events", "reason")


def kfp_runs_table(runs) -> str:
    rows = [
        [
            r.created_at, r.bot_id, r.trigger, r.state, duration(r.duration_s), (r.data_hash or "")[:12] or None,
            r.metrics.get("accuracy"), r.metrics.get("macro_f1"), r.run_id, r.error,
        ]
        for r in runs
    ]
    return table(["STARTED (UTC)", "BOT", "TRIGGER", "STATE", "DURATION", "DATA", "ACCURACY", "MACRO-F1", "RUN ID", "ERROR"], rows)


def trigger_table(records: list[dict]) -> str:
    columns = [c for c in TRIGGER_COLUMNS if any(c in r for r in records)]
    rows = [[(str(r.get(c))[:12] if c == "data_hash" and r.get(c) else r.get(c)) for c in columns] for r in records]
    return table([c.upper().replace("_", " ") for c in columns], rows)


def handle(args: argparse.Namespace) -> int:
    if not args.host and not args.db_url:
        raise ConfigError(
            f"botyard status needs --host URL (runs on Kubeflow Pipelines; default ${HOST_ENV}) "
            "and/or --db-url URL (the trigger service's decisions)"
        )
    who = f"bot '{args.bot}'" if args.bot else "all bots"
    if args.host:
        from botyard.pipelines.kfp.runs import list_runs

        runs = list_runs(kfp_endpoint(args), bot_id=args.bot, limit=args.limit, with_metrics=not args.no_metrics)
        print(f"Training runs on {args.host} ({who}, newest first):")
        print(kfp_runs_table(runs) if runs else "  none yet")
        failed = [r for r in runs if r.state == "failed"]
        if failed:
            print(f"\n{len(failed)} failed; open one in the KFP UI: {failed[0].url}")
    if args.db_url:
        try:
            from botyard.pipelines.trigger.event_store import recent_runs
        except ImportError as exc:
            raise ConfigError(f"the trigger service is not installed here ({exc}); leave out --db-url") from exc
        records = recent_runs(args.db_url, bot_id=args.bot, limit=args.limit)
        if args.host:
            print()
        print(f"Trigger service decisions ({who}, newest first):")
        print(trigger_table(records) if records else "  none yet")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "status",
        help="show recent training runs (Kubeflow Pipelines) and the trigger service's decisions",
        description="List recent bot-training runs on a Kubeflow Pipelines endpoint: bot, trigger, state, duration, "
        "data hash and the registered model's test accuracy / macro-F1 (read from the model store when it is "
        "reachable from here). With --db-url, also list the trigger service's decisions (submitted, skipped as "
        "unchanged data, failed) from its database.",
    )
    p.add_argument("--bot", "--bot-id", dest="bot", metavar="BOT_ID", help="only this bot (default: all bots)")
    add_kfp_arguments(p)
    p.add_argument("--db-url", metavar="URL", help="the trigger service's database, e.g. sqlite:///botyard-events.db")
    p.add_argument("--limit", type=int, default=20, help="rows per list (default: 20)")
    p.add_argument("--no-metrics", action="store_true", help="do not read model metrics from the model store (faster for remote stores)")
    p.set_defaults(handler=handle)
