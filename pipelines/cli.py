"""The ``botyard`` command line: parse arguments, call a core function, map errors to exit codes."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from botyard.components.base.errors import BotyardError, StorageError
from botyard.pipelines.commands import COMMAND_MODULES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="botyard",
        description="Train and serve one intent and entity model per chatbot with Kubeflow Pipelines and KServe.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logs (TensorFlow and KFP included)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"botyard.pipelines.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if not args.verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # child processes (KFP steps) inherit it
    try:
        return int(args.handler(args) or 0)
    except BotyardError as exc:
        print(f"botyard: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a file or folder this machine would not read or write: say which, not a traceback
        if args.verbose:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"botyard: error: {where}{exc.strerror or exc} (-v shows the traceback)", file=sys.stderr)
        return StorageError.exit_code
    except KeyboardInterrupt:
        print("botyard: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
