"""``botyard serve``: serve every bot of a model store with a KServe model server."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from botyard.components.predictor.config import add_serve_arguments

    parser = subparsers.add_parser(
        "serve",
        help="serve every bot under a model store (KServe V1/V2 REST, optional gRPC), with hot reload",
        description=(
            "Serve each bot's promoted (CURRENT) model version from one KServe model server; a bot none of "
            "whose versions was promoted answers 404. New bots and newly promoted versions are picked up "
            "without a restart."
        ),
    )
    add_serve_arguments(parser)
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from botyard.components.predictor.config import config_from_args
    from botyard.components.predictor.server import serve

    serve(config_from_args(args))
    return 0
