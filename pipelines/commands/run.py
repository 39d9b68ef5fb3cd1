"""``botyard run``: train one bot locally through kfp.local."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys

from botyard.components.base import contracts as c
from botyard.components.base import storage
from botyard.pipelines.commands.options import parse_parameters


def bot_id_for(data: str | None) -> str:
    """The bot a run without ``--bot-id`` trains: the sample bot without ``--data``, else one named
    after the training file (``pizza-bot.csv`` -> ``pizza-bot``), so a user's own data never
    lands on the sample bot's model versions."""
    from botyard.components.base.errors import ConfigError
    from botyard.pipelines.local_run import SAMPLE_BOT_ID

    if not data:
        return SAMPLE_BOT_ID
    name = data.rstrip("/").rsplit("/", 1)[-1]
    stem = name.lstrip(".").split(".", 1)[0]
    bot_id = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:63].strip("-")  # a DNS label (check_bot_id)
    if not bot_id:
        raise ConfigError(f"cannot name a bot after the file {name!r}; name it with --bot-id (lower-case letters, digits, '-')")
    return bot_id


def handle(args: argparse.Namespace) -> int:
    from botyard.pipelines.local_run import run_bot_training_locally

    params = parse_parameters(args.param)
    named_after_file = not args.bot_id and bool(args.data)
    bot_id = args.bot_id or bot_id_for(args.data)
    note = " (named after its training file; --bot-id names it)" if named_after_file else ""
    print(f"botyard: training bot '{bot_id}'{note} locally through kfp.local ...")
    run = run_bot_training_locally(bot_id, args.data, args.models_root, args.pipeline_root, params)
    m = run.metadata[c.METRICS]
    print()
    print(f"bot:               {run.bot_id}")
    print(f"model version:     {run.version}")
    print(f"model version path: {run.version_uri}")
    print(f"test accuracy:     {m['accuracy']:.3f}   macro-F1: {m['macro_f1']:.3f}   "
          f"(on {m['test_size']} test utterances)")
    if "entity_micro_f1" in m:
        print(f"entity micro-F1:   {m['entity_micro_f1']:.3f}   precision: {m['entity_micro_precision']:.3f}   "
              f"recall: {m['entity_micro_recall']:.3f}   (on {m['entity_support']} test spans)")
        cut = run.metadata.get(c.ENTITY_THRESHOLD) or 0.0
        print(f"entity threshold:  {cut:.2f}   " + ("(spans less confident are left out)" if cut else "(every span kept)"))
    criterion = run.metadata.get("threshold_criterion")
    print(f"out-of-scope threshold: {run.metadata[c.OOS_THRESHOLD]:.3f}" + (f"   ({criterion})" if criterion else ""))
    print(f"confusion matrix:  {run.confusion_matrix_csv}")
    if run.confusion_matrix_artifact:
        print(f"KFP artifacts:     {run.run_dir}")
    print(f"step logs:         {run.log_path}")
    print(f"promotion gate:    {_verdict(run.blessing)}")
    if run.blessing and run.blessing["blessed"]:
        print(f"infra check:       {_verdict(run.infra_result)}")
    deployed = run.deployment
    print(f"deployed:          " + (f"yes ({deployed['action']}; previous version: {deployed['previous'] or 'none'})" if deployed else "no: the live version stays"))
    print(f"finished in {run.seconds:.1f}s")
    models_root = storage.absolute(args.models_root)
    if not args.serve:
        print(f"\nserve it:  botyard serve --models-root {models_root} --port {args.port}")
        return 0
    return _serve_foreground(models_root, run.bot_id, args.port, run.example_utterance)


def _verdict(verdict: dict | None) -> str:
    if verdict is None:
        return "did not run"
    failures = [r for r in verdict.get("reasons", []) if r.startswith("FAIL")]
    return "passed" if verdict["blessed"] else "failed: " + "; ".join(failures)


def curl_example(port: int, bot_id: str, utterance: str) -> str:
    """A shell line that asks the local predictor for ``bot_id``'s answer to ``utterance`` (KServe V1)."""
    body = json.dumps({"instances": [utterance]}, ensure_ascii=False)
    return (f"curl -s -X POST http://127.0.0.1:{port}/v1/models/{bot_id}:predict -H 'Content-Type: application/json' "
            f"-d {shlex.quote(body)}")


def _serve_foreground(models_root: str, bot_id: str, port: int, utterance: str) -> int:
    """Run a predictor on the models root until Ctrl-C (the user asked for --serve)."""
    from botyard.components.predictor.server import ServeConfig, serve

    print(f"\nserving every bot in {models_root} on http://127.0.0.1:{port} (Ctrl-C stops it); try:")
    print(f"  {curl_example(port, bot_id, utterance)}")
    sys.stdout.flush()
    serve(ServeConfig(models_root=models_root, host="127.0.0.1", http_port=port))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="train one bot locally (kfp.local): ingest, validate, split, featurize, train, evaluate, register, gate, deploy",
        description="Run the bot_training pipeline on this machine through kfp.local. With no --data it trains "
        "the shipped sample bot. Bad training data stops the run before any step with a message naming the "
        "file and rows at fault (exit code 2).",
    )
    p.add_argument("--bot-id", "--bot", dest="bot_id", metavar="BOT_ID",
                   help="bot id: lower-case letters, digits, '-' (default: sample-bot; with --data, the training file's "
                   "name: pizza-bot.csv trains 'pizza-bot')")
    p.add_argument("--data", metavar="PATH_OR_URI", help="training file: .csv, .jsonl, .json or Rasa nlu.yml; a path, s3://... or gs://... (default: the sample bot)")
    p.add_argument("--models-root", default="models", metavar="DIR_OR_URI", help="model store root: a folder, s3://bucket/prefix or gs://bucket/prefix (default: ./models)")
    p.add_argument("--pipeline-root", default="runs", metavar="DIR", help="where kfp.local keeps step artifacts and logs (default: ./runs)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="override a pipeline parameter, e.g. --param epochs=10 (repeatable)")
    p.add_argument("--serve", action="store_true", help="afterwards, serve the models root in the foreground and print a curl line to try it")
    p.add_argument("--port", type=int, default=8080, help="port for --serve (default: 8080)")
    p.set_defaults(handler=handle)
