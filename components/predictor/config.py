"""``ServeConfig``: how ``botyard serve`` runs, and its command-line flags.

``add_serve_arguments`` / ``config_from_args`` are shared by ``botyard serve`` and the
``python -m botyard.components.predictor`` process that ``start_predictor`` launches, so
both take the same flags. Nothing here imports KServe or TensorFlow.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from botyard.components.base.config import ConfigBase
from botyard.components.base.errors import ConfigError


@dataclass(frozen=True)
class ServeConfig(ConfigBase):
    """How ``botyard serve`` runs; each field is also a command-line flag."""

    models_root: str = ""  # the model store (local folder or tf.io.gfile URI); required
    host: str = "127.0.0.1"  # loopback by default; use 0.0.0.0 inside a container
    http_port: int = 8080  # KServe's default REST port
    grpc_port: int | None = None  # KServe V2 gRPC on this port; None turns gRPC off
    max_batch: int = 64  # utterances a request may carry; more is a 413
    max_utterance_chars: int = 512  # characters an utterance may have; more is a 413
    top_k: int = 3  # intents in each prediction's ranking
    reload_interval: float = 10.0  # seconds between polls of the store; 0 turns hot reload off
    access_log: bool = False  # uvicorn's per-request log line (costs latency)
    model_name: str = ""  # when models_root is one model version folder: the name to serve it under

    _ranges = {
        "http_port": (1, 65535),
        "max_batch": (1, 100_000),
        "max_utterance_chars": (1, 1_000_000),
        "top_k": (1, 1000),
        "reload_interval": (0.0, 86_400.0),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.models_root:
            raise ConfigError("ServeConfig.models_root is required: the model store to serve")
        if self.grpc_port is not None:
            if isinstance(self.grpc_port, bool) or not isinstance(self.grpc_port, int) or not 1 <= self.grpc_port <= 65535:
                raise ConfigError(f"ServeConfig.grpc_port = {self.grpc_port!r} is out of range; allowed: 1 to 65535 or None")
            if self.grpc_port == self.http_port:
                raise ConfigError(f"ServeConfig.grpc_port equals http_port ({self.http_port}); give them different ports")


# --- command line (shared by ``botyard serve`` and ``start_predictor``'s subprocess) -------------
def _grpc_port(value: str) -> int | None:
    if value.lower() in ("disabled", "off", "none", "0"):
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--grpc-port must be a port number or 'disabled', got {value!r}") from None


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    d = ServeConfig.__dataclass_fields__
    parser.add_argument("--models-root", required=True, help="model store to serve: <root>/<bot_id>/<version>/...")
    parser.add_argument("--host", default=d["host"].default, help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=d["http_port"].default, help="REST port (default %(default)s)")
    parser.add_argument(
        "--grpc-port", type=_grpc_port, default=None, metavar="N|disabled", help="V2 gRPC port (default: disabled)"
    )
    parser.add_argument("--max-batch", type=int, default=d["max_batch"].default, help="utterances a request may carry (default %(default)s)")
    parser.add_argument(
        "--max-utterance-chars", type=int, default=d["max_utterance_chars"].default,
        help="characters an utterance may have (default %(default)s)",
    )
    parser.add_argument("--top-k", type=int, default=d["top_k"].default, help="intents in each ranking (default %(default)s)")
    parser.add_argument(
        "--reload-interval", type=float, default=d["reload_interval"].default, metavar="S",
        help="seconds between polls of the store for new bots and promoted versions; 0 = never (default %(default)s)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every HTTP request")
    parser.add_argument(
        "--model-name", default="", metavar="NAME",
        help="when --models-root is one model version folder (a per-bot InferenceService's /mnt/models): "
        "serve it under NAME (default: the bot id in its metadata.json)",
    )


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    return ServeConfig(
        models_root=args.models_root,
        host=args.host,
        http_port=args.port,
        grpc_port=args.grpc_port,
        max_batch=args.max_batch,
        max_utterance_chars=args.max_utterance_chars,
        top_k=args.top_k,
        reload_interval=args.reload_interval,
        access_log=args.access_log,
        model_name=args.model_name,
    )
