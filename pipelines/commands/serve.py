"""``botyard serve``: serve every bot of a model store with a KServe model server."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from botyard.components.predictor.server import add_serve_arguments

    parser = subparsers.add_parser(
        "serve",
        help="serve every bot under a model store (KServe V1/V2 REST, optional gRPC), with hot reload",
        description=(
            "Serve each bot's CURRENT model version (a bot never promoted: its latest version) from one "
            "KServe model server; new bots and newly promoted versions are picked up without a restart."
        ),
    )
    add_serve_arguments(parser)
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from botyard.components.predictor.server import config_from_args, serve

    serve(config_from_args(args))
    return 0
