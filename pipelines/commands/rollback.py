"""``botyard rollback``: make an earlier model version of a bot live again."""

from __future__ import annotations

import argparse


def handle(args: argparse.Namespace) -> int:
    from botyard.components.deploy.config import ClusterDeployConfig
    from botyard.components.deploy.core import rollback

    cluster = ClusterDeployConfig(namespace=args.namespace, mode=args.serving_mode) if args.target == "cluster" else None
    done = rollback(args.models_root, args.bot, args.to, args.target, cluster, force=args.force)
    if done.previous == done.version:  # re-applied: on a cluster this puts a drifted service back
        print(f"bot '{done.bot_id}': still serving {done.version} (it was already the live version; applied again) [{done.target}]")
    else:
        print(f"bot '{done.bot_id}': now serving {done.version} (was {done.previous or 'none'}) [{done.target}]")
    if done.warning:
        print(f"warning: {done.warning}")
    if done.url:
        print(f"url: {done.url}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "rollback",
        help="make an earlier model version of a bot live again (local model store or KServe)",
        description="Restore an earlier model version: by default the newest version older than the live one. "
        "Locally this moves the bot's CURRENT pointer (a running `botyard serve` picks it up); with "
        "--target cluster it also rolls the bot's InferenceService back. No version is deleted. A version the "
        "promotion gate rejected is refused (the message says why) unless --force is given.",
    )
    p.add_argument("--bot", "--bot-id", dest="bot", required=True, metavar="BOT_ID", help="bot id")
    p.add_argument("--to", metavar="VERSION", help="version to restore (default: the one before the live version)")
    p.add_argument("--models-root", default="models", metavar="DIR_OR_URI", help="model store root: a folder, s3://... or gs://... (default: ./models)")
    p.add_argument("--force", action="store_true", help="roll back to a version even though the promotion gate rejected it")
    p.add_argument("--target", choices=["local", "cluster"], default="local", help="where the bot is served (default: local)")
    p.add_argument("--namespace", default="", help="namespace of the InferenceServices (cluster target; default: "
                   "the namespace this pod runs in, so required outside a cluster)")
    p.add_argument("--serving-mode", choices=["per-bot", "shared"], default="per-bot", help="cluster serving layout (default: per-bot)")
    p.set_defaults(handler=handle)
