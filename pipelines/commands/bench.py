"""``botyard bench``: run benchmark suites and merge their figures into ``bench/results.{json,md}``."""

from __future__ import annotations

import argparse
import dataclasses
import logging

from botyard.components.base.config import TrainConfig, naming_flags, unknown_names
from botyard.components.base.errors import ConfigError
from botyard.pipelines.commands.options import json_overrides

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    from botyard.pipelines.bench.harness import DATA_ENV, DEFAULT_OUTPUT_DIR, LATENCY_CALLS, SUITES

    parser = subparsers.add_parser(
        "bench",
        help="benchmark the pipeline's train/evaluate code on public data sets",
        description="Run benchmark suites with the pipeline's own train and evaluate code, beside a "
        "TF-IDF + logistic-regression baseline, and merge the figures into results.json and results.md "
        "(suites not run keep their earlier figures).",
    )
    parser.add_argument(
        "--suite", action="append", dest="suites", metavar="NAME", choices=list(SUITES),
        help=f"suite to run (repeatable); default: all of {', '.join(SUITES)} whose module is present",
    )
    parser.add_argument("--output-dir", default=str(DEFAULT_OUTPUT_DIR), help="where results.json / results.md go (default: %(default)s)")
    parser.add_argument("--data-dir", default=None, help=f"folder holding clinc150/ and hwu64/ (default: ${DATA_ENV}, else ../shared/data from the current directory)")
    parser.add_argument("--quick", action="store_true", help="a tiny model and few latency calls: checks the harness, figures are meaningless")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
        help="override a TrainConfig field, e.g. --set epochs=5 (repeatable)",
    )
    parser.add_argument("--max-bots", type=int, default=0, help="clinc150-bots, fewshot: run only the first N domain bots (default: all)")
    parser.add_argument("--max-seeds", type=int, default=0, help="fewshot: run only the first N seeds (default: all 3)")
    parser.add_argument("--latency-calls", type=int, default=None, help=f"batch-of-1 calls timed per model (default: {LATENCY_CALLS}; 50 with --quick)")
    parser.add_argument("--in-process", action="store_true", help="run suites in this process instead of one fresh process each")
    parser.set_defaults(handler=run_bench_command)


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """The suites' ``TrainConfig``: ``--quick``'s preset, then ``--set`` overrides, each error naming ``--set KEY=``."""
    from botyard.pipelines.bench.harness import train_config_with

    overrides = json_overrides(args.overrides, "--set")
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ConfigError(f"--set: unknown TrainConfig field(s) {unknown_names(unknown, fields)}")
    with naming_flags(TrainConfig, {name: f"--set {name}=" for name in fields}):
        return train_config_with(overrides, quick=args.quick)


def run_bench_command(args: argparse.Namespace) -> int:
    from botyard.pipelines.bench.harness import LATENCY_CALLS, SUITES, BenchContext, default_suites, resolve_data_dir, run_bench

    for flag, value in (("--max-bots", args.max_bots), ("--max-seeds", args.max_seeds)):
        if value < 0:
            raise ConfigError(f"{flag} = {value} is out of range; allowed: 0 (all) or more")
    train_config = _train_config(args)
    suites = args.suites or default_suites()
    needs_data = any(SUITES[name].takes_context for name in suites if name in SUITES)  # serving, trigger, submit: none
    context = BenchContext(
        data_dir=str(resolve_data_dir(args.data_dir)) if needs_data else (args.data_dir or ""),
        output_dir=args.output_dir,
        train_config=train_config,
        latency_calls=args.latency_calls or (50 if args.quick else LATENCY_CALLS),
        throughput_batches=5 if args.quick else 20,
        max_bots=args.max_bots,
        quick=args.quick,
        max_seeds=args.max_seeds,
    )
    results = run_bench(suites, context, isolate=not args.in_process)
    print(f"bench: ran {', '.join(suites)}; results in {args.output_dir}/results.json and results.md")
    for name in suites:
        for target in results["suites"][name].get("targets", []):
            if target["met"] is False:
                print(f"bench: {name}: target not met: {target['system']} {target['figure']} "
                      f"{target['op']} {target['value']} (measured {target['measured']:.4g})")
    return 0
