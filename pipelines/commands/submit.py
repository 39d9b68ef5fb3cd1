"""``botyard submit``: start one bot's training on Kubeflow Pipelines (or here, without --host)."""

from __future__ import annotations

import argparse

from botyard.components.base import contracts as c
from botyard.components.base.config import GpuConfig
from botyard.pipelines.commands.options import HOST_ENV, add_kfp_arguments, add_service_account_argument, kfp_endpoint, parse_parameters


def handle(args: argparse.Namespace) -> int:
    from botyard.pipelines.kfp.runs import submit_bot_run

    params = parse_parameters(args.param)
    gpu = GpuConfig(enabled=False) if args.no_gpu else None
    where = args.host or "this machine (kfp.local)"
    print(f"botyard: submitting bot '{args.bot}' to {where} ...")
    run = submit_bot_run(
        args.bot, args.data, host=kfp_endpoint(args), trigger=args.trigger, models_root=args.models_root,
        parameters=params, gpu=gpu, pipeline_root=args.pipeline_root, service_account=args.service_account,
    )
    if run.local is not None:
        m = run.local.metadata[c.METRICS]
        print(f"\nrun:               {run.run_id} (finished in {run.local.seconds:.1f}s)")
        print(f"model version:     {run.local.version}  ({run.local.version_uri})")
        print(f"test accuracy:     {m['accuracy']:.3f}   macro-F1: {m['macro_f1']:.3f}")
        print(f"step logs:         {run.local.log_path}")
        return 0
    uploaded = "uploaded now" if run.pipeline_uploaded else "already there, reused"
    print(f"\nrun id:            {run.run_id}")
    print(f"run name:          {run.run_name}")
    print(f"experiment:        {run.experiment}")
    print(f"pipeline version:  bot-training {run.pipeline_version} ({uploaded})")
    print(f"data hash:         {run.data_hash}")
    print(f"follow it:         {run.url}")
    namespace = f" --namespace {args.namespace}" if args.namespace else ""
    print(f"                   botyard status --bot {run.bot_id} --host {run.host}{namespace}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "submit",
        help="train one bot on a Kubeflow Pipelines cluster (--host), or locally without it",
        description="Validate the bot's training data here, then start a bot-training run on the KFP endpoint: the "
        "pipeline version for this code is uploaded once and reused, the run goes into the bot's experiment "
        "bot-<bot id>, and its name and description carry the bot id, data hash and trigger. Without --host (and "
        f"${HOST_ENV} unset) the run happens on this machine through kfp.local, like `botyard run`.",
    )
    p.add_argument("--bot", "--bot-id", dest="bot", required=True, metavar="BOT_ID", help="bot id: lower-case letters, digits, '-'")
    p.add_argument("--data", required=True, metavar="URI", help="training file (.csv, .jsonl, .json, Rasa nlu.yml); for a cluster a gs://, s3:// URI or an absolute path the pods mount")
    add_kfp_arguments(p, host_help="KFP endpoint, e.g. http://localhost:8080 after kubectl port-forward; none: run locally")
    add_service_account_argument(p)
    p.add_argument("--models-root", metavar="URI", help="model store the run registers into (default: $BOTYARD_MODELS_ROOT or ./models)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="override a pipeline parameter, e.g. --param epochs=10 (repeatable)")
    p.add_argument("--trigger", default="manual", help="why this run starts, recorded with it (default: manual)")
    p.add_argument("--no-gpu", action="store_true", help="compile the pipeline for a CPU-only cluster")
    p.add_argument("--pipeline-root", default="runs", metavar="DIR", help="local runs only: where kfp.local keeps step outputs (default: ./runs)")
    p.set_defaults(handler=handle)
