"""``botyard fleet``: train a list of bots in one fleet_training run on this machine (kfp.local)."""

from __future__ import annotations

import argparse

from botyard.components.fleet.core import DEFAULT_PARALLELISM
from botyard.pipelines.commands.options import parse_parameters, table


def handle(args: argparse.Namespace) -> int:
    from botyard.components.fleet.core import FAILED, METRICS, REASON, STAGE, STATUS, SUCCEEDED, VERSION, read_bots_file
    from botyard.pipelines.fleet_training import check_parallelism, run_fleet_locally

    check_parallelism(args.parallelism, "--parallelism ")
    bots = read_bots_file(args.bots)
    params = parse_parameters(args.param)
    print(f"botyard: training {len(bots)} bot(s) locally through kfp.local, {args.parallelism} at a time "
          "(kfp.local itself runs at most 2 at once) ...")
    run = run_fleet_locally(bots, args.models_root, args.pipeline_root, params, args.parallelism)
    s = run.summary
    rows = []
    for o in s["outcomes"]:
        m = o.get(METRICS) or {}
        why = f"{o.get(STAGE)}: {o.get(REASON)}" if o[STATUS] == FAILED else None
        rows.append([o["bot_id"], o[STATUS], o.get(VERSION), m.get("accuracy"), m.get("macro_f1"), why])
    print()
    print(table(["BOT", "STATUS", "MODEL VERSION", "ACCURACY", "MACRO-F1", "WHY IT FAILED"], rows))
    for o in s["outcomes"]:
        if o[STATUS] == FAILED:
            print(f"\n{o['bot_id']} failed at {o.get(STAGE)}: {o.get(REASON)}")
    print(f"\n{s[SUCCEEDED]} of {s['bots']} bots succeeded in {run.seconds:.1f}s")
    print(f"summary:    {run.summary_path}")
    print(f"report:     {run.report_path}")
    print(f"step logs:  {run.log_path}")
    return 0 if s[FAILED] == 0 else 1


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fleet",
        help="train many bots in one run (fleet_training, locally); a bot with bad data does not stop the others",
        description="Run the fleet_training pipeline on this machine through kfp.local. --bots names a JSON file "
        "(a list of {\"bot_id\": ..., \"data_uri\": ...}, or {\"bots\": [...]}) or a CSV with a bot_id,data_uri header; "
        "relative data paths are read from the file's folder. Each bot is checked, trained, evaluated and registered; "
        "a bot whose data is invalid is reported as failed with the validation message while the others go on. "
        "Exit code 0 when every bot succeeded, 1 when any failed.",
    )
    p.add_argument("--bots", required=True, metavar="FILE", help="the bot list: .json or .csv")
    p.add_argument("--parallelism", type=int, default=DEFAULT_PARALLELISM, metavar="N", help=f"bots trained at once (compiled into the pipeline; default: {DEFAULT_PARALLELISM})")
    p.add_argument("--models-root", default="models", metavar="DIR", help="model store root (default: ./models)")
    p.add_argument("--pipeline-root", default="runs", metavar="DIR", help="where kfp.local keeps step artifacts and logs (default: ./runs)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a pipeline parameter for every bot, e.g. --param epochs=10 (repeatable)")
    p.set_defaults(handler=handle)
