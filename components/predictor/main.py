"""``python -m botyard.components.predictor``: parse ``botyard serve``'s flags, serve, map errors to exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from typing import Sequence

from botyard.components.base.errors import ConfigError
from botyard.components.predictor.config import add_serve_arguments, config_from_args


def _exit_with_parent() -> None:
    """SIGTERM this process once its parent is gone, so a killed test run or pipeline step
    never leaves a predictor behind (a thread polls the parent pid: safe where
    ``preexec_fn`` is not, in a parent running TensorFlow's threads)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="botyard-parent-watch", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``start_predictor``'s subprocess (same flags as ``botyard serve``)."""
    parser = argparse.ArgumentParser(prog="botyard-predictor")
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    _exit_with_parent()
    try:
        from botyard.components.predictor.server import serve

        serve(config_from_args(args))
    except ConfigError as exc:
        print(f"botyard-predictor: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0
