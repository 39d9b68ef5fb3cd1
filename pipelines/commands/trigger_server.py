"""``botyard trigger-server``: receive signed "bot changed" events and start debounced training runs."""

from __future__ import annotations

import argparse
import os

from botyard.components.base.config import cli_flags, naming_flags
from botyard.components.base.errors import ConfigError
from botyard.pipelines.commands.options import add_kfp_arguments, add_service_account_argument, load_callable
from botyard.pipelines.trigger import DB_URL_ENV, DEFAULT_DB_URL, READ_TOKEN_ENV, SECRET_ENV, TriggerConfig


# the flags whose names differ from their ``TriggerConfig`` field (the others are the field's name
# with dashes): errors name the flag a user typed
_FLAG_FIELDS = {"secret": "secret_file", "read_token": "read_token_file", "allowed_data_prefixes": "allowed_data_prefix",
                "kfp_namespace": "namespace", "kfp_token_file": "token_file", "kfp_service_account": "service_account"}


def config_from_args(args: argparse.Namespace) -> TriggerConfig:
    with naming_flags(TriggerConfig, cli_flags(TriggerConfig, _FLAG_FIELDS)):
        return _config(args)


def _config(args: argparse.Namespace) -> TriggerConfig:
    from botyard.pipelines.trigger.auth import load_read_token, load_secret

    d_max_wait = TriggerConfig.__dataclass_fields__["max_wait"].default

    values = dict(
        secret=load_secret(args.secret_file), db_url=args.db_url, host=args.host, port=args.port,
        quiet_period=args.quiet_period,
        max_wait=args.max_wait if args.max_wait is not None else max(d_max_wait, args.quiet_period),
        max_concurrent_runs=args.max_concurrent_runs, max_body_bytes=args.max_body_bytes,
        poll_interval=args.poll_interval, run_poll_interval=args.run_poll_interval, lease_seconds=args.lease_seconds,
        allowed_data_prefixes=tuple(args.allowed_data_prefix), allow_local_data=args.allow_local_data, dev=args.dev,
        read_token=load_read_token(args.read_token_file), parse_workers=args.parse_workers,
        parse_memory_mb=args.parse_memory_mb, parse_timeout=args.parse_timeout, refusal_rate=args.refusal_rate,
        refusal_burst=args.refusal_burst, max_rejected_records=args.max_rejected_records, kfp_host=args.kfp_host or "",
        kfp_namespace=args.namespace or "", kfp_token_file=args.token_file or "", kfp_service_account=args.service_account or "",
        access_log=args.access_log,
    )  # fmt: skip
    if args.replica_id:
        values["replica_id"] = args.replica_id
    return TriggerConfig(**values)


def handle(args: argparse.Namespace) -> int:
    from botyard.pipelines.trigger.app import serve

    config = config_from_args(args)  # ConfigError (no secret, a bad value): exit code 2, before binding
    if bool(args.submitter) != bool(args.run_state):
        raise ConfigError("--submitter and --run-state go together: a back end that starts runs also reports them")
    submitter = load_callable(args.submitter, "--submitter") if args.submitter else None
    run_state = load_callable(args.run_state, "--run-state") if args.run_state else None
    serve(config, submitter, run_state)
    return 0


def register(subparsers) -> None:
    d = TriggerConfig.__dataclass_fields__
    p = subparsers.add_parser(
        "trigger-server",
        help="receive signed 'bot changed' events and start one debounced, deduplicated training run per bot",
        description=(
            "Serve POST /events (header X-Botyard-Timestamp: <unix seconds> and X-Botyard-Signature-256: "
            "sha256=<hex HMAC-SHA256 of '<timestamp>.<body>'>; older than 5 minutes or in the future: 401), GET /events "
            "and GET /bots/{bot_id}/runs (read token), /healthz, /readyz and /metrics. Accepted events are stored "
            "before the 202; a burst of changes to one bot within the quiet period becomes one run with the latest "
            "data_uri; unchanged training data (same data hash as the last successful run) starts none. Data files "
            "are read in worker processes with memory and time limits, never in the server. The webhook secret "
            f"comes from --secret-file or ${SECRET_ENV}; without one, or without --allowed-data-prefix outside "
            "--dev, the server refuses to start (exit code 2)."
        ),
    )
    p.add_argument("--host", default=d["host"].default, help="address to bind (default %(default)s)")
    p.add_argument("--port", type=int, default=d["port"].default, help="port (default %(default)s)")
    p.add_argument(
        "--db-url", default=os.environ.get(DB_URL_ENV) or DEFAULT_DB_URL, metavar="URL",
        help=f"event store: sqlite:///FILE (one replica) or postgresql://USER:PASS@HOST/DB (several replicas); "
        f"default ${DB_URL_ENV} or {DEFAULT_DB_URL}",
    )  # fmt: skip
    p.add_argument(
        "--quiet-period", type=float, default=d["quiet_period"].default, metavar="S",
        help="seconds a bot must receive no event before its changes run (default %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--max-wait", type=float, default=None, metavar="S",
        help=f"a bot whose events never pause runs after this long anyway (default {d['max_wait'].default:g}, "
        "or the quiet period if longer)",
    )  # fmt: skip
    p.add_argument(
        "--max-concurrent-runs", type=int, default=d["max_concurrent_runs"].default, metavar="N",
        help="runs in flight across all bots and replicas (default %(default)s)",
    )  # fmt: skip
    p.add_argument("--secret-file", metavar="PATH", help=f"file holding the webhook secret (default: ${SECRET_ENV})")
    p.add_argument(
        "--max-body-bytes", type=int, default=d["max_body_bytes"].default, metavar="N",
        help="larger request bodies get a 413 (default %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--allowed-data-prefix", action="append", default=[], metavar="PREFIX",
        help="accept only data_uri values under PREFIX, e.g. s3://bots-data/ or gs://bots-data/ (repeatable; "
        "ends with '/'; required unless --dev)",
    )  # fmt: skip
    p.add_argument("--allow-local-data", action="store_true",
                   help="accept local paths and file:/// URIs too (under a local --allowed-data-prefix; anywhere with --dev)")
    p.add_argument("--dev", action="store_true",
                   help="trying it out: no --allowed-data-prefix needed (any s3:// or gs:// URI), audit endpoints open "
                   "without a read token, and without --kfp-host runs are `botyard run` subprocesses here")
    p.add_argument("--read-token-file", metavar="PATH",
                   help=f"bearer token GET /events and /bots/{{id}}/runs require (default: ${READ_TOKEN_ENV}; none: "
                   "those endpoints are closed, 403, outside --dev)")
    p.add_argument("--parse-workers", type=int, default=d["parse_workers"].default, metavar="N",
                   help="data files read at once, each in its own limited process (default %(default)s)")
    p.add_argument("--parse-memory-mb", type=int, default=d["parse_memory_mb"].default, metavar="MB",
                   help="address-space limit of one such process (default %(default)s)")
    p.add_argument("--parse-timeout", type=float, default=d["parse_timeout"].default, metavar="S",
                   help="seconds one file may take to read, check and hash (default %(default)s)")
    p.add_argument("--refusal-rate", type=float, default=d["refusal_rate"].default, metavar="PER_S",
                   help="refused requests per second one address may send before it gets 429 (default %(default)s)")
    p.add_argument("--refusal-burst", type=int, default=d["refusal_burst"].default, metavar="N",
                   help="...after a burst of this many (default %(default)s)")
    p.add_argument("--max-rejected-records", type=int, default=d["max_rejected_records"].default, metavar="N",
                   help="refused requests kept in the audit trail, newest first (default %(default)s)")
    add_kfp_arguments(p, host_flag="--kfp-host", host_help="KFP API endpoint the runs go to (none: train on this machine)")
    add_service_account_argument(p)
    p.add_argument("--poll-interval", type=float, default=d["poll_interval"].default, metavar="S",
                   help="seconds between dispatcher passes (default %(default)s)")
    p.add_argument("--run-poll-interval", type=float, default=d["run_poll_interval"].default, metavar="S",
                   help="seconds between state checks of one submitted run (default %(default)s)")
    p.add_argument("--lease-seconds", type=float, default=d["lease_seconds"].default, metavar="S",
                   help="a dead replica's claims are taken over after this long (default %(default)s)")
    p.add_argument("--replica-id", help="this replica's name in the audit trail (default: host-pid-random)")
    p.add_argument(
        "--submitter", metavar="MODULE:FUNCTION",
        help="replace the KFP back end: submitter(bot_id, data_uri, data_hash, trigger) -> run_id "
        "(tests and benchmarks use stubs)",
    )  # fmt: skip
    p.add_argument("--run-state", metavar="MODULE:FUNCTION",
                   help="with --submitter: run_state(run_id) -> 'running' | 'succeeded' | 'failed'")
    p.add_argument("--access-log", action="store_true", help="log every HTTP request")
    p.set_defaults(handler=handle)
