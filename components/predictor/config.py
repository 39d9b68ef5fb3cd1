"""``ServeConfig``: how ``botyard serve`` runs, and its command-line flags.

``add_serve_arguments`` / ``config_from_args`` are shared by ``botyard serve`` and the
``python -m botyard.components.predictor`` process that ``start_predictor`` launches, so
both take the same flags. Nothing here imports KServe or TensorFlow.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from botyard.components.base.config import ConfigBase, cli_flags, naming_flags
from botyard.components.base.errors import ConfigError
from botyard.components.base.model_store import check_bot_id

MIN_MEMORY_BUDGET = 512 * 2**20


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
    # --- how many bots are loaded (see ``pool``) ---
    max_loaded_bots: int = 0  # least recently used bots are evicted beyond this many; 0 = no bound
    memory_budget: int = 0  # bytes of resident memory (measured); LRU bots are evicted above it; 0 = no bound
    preload: tuple[str, ...] = ()  # bots loaded at start (and again after an eviction), evicted last
    preload_most_requested: int = 0  # also keep the N most requested bots of the last window loaded
    popularity_window_s: float = 3600.0  # the window over which requests are counted for that
    load_workers: int = 1  # versions loaded at the same time (each load takes about one core)
    # --- HTTP hygiene ---
    max_body_bytes: int = 4 * 2**20  # a request body over this is refused with 413 before it is read whole
    body_timeout_s: float = 30.0  # a request body not received within this is refused with 408
    keep_alive_timeout_s: float = 5.0  # an idle keep-alive connection is closed after this
    repository_token_file: str = ""  # enables KServe's model-repository extension behind this bearer token

    _ranges = {
        "http_port": (1, 65535),
        "max_batch": (1, 100_000),
        "max_utterance_chars": (1, 1_000_000),
        "top_k": (1, 1000),
        "reload_interval": (0.0, 86_400.0),
        "max_loaded_bots": (0, 1_000_000),
        "memory_budget": (0, 2**50),
        "preload_most_requested": (0, 1_000_000),
        "popularity_window_s": (1.0, 30 * 86_400.0),
        "load_workers": (1, 64),
        "max_body_bytes": (1024, 2**31),
        "body_timeout_s": (0.1, 3600.0),
        "keep_alive_timeout_s": (0.1, 3600.0),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.models_root:
            raise ConfigError("ServeConfig.models_root is required: the model store to serve")
        if self.grpc_port is not None:
            if isinstance(self.grpc_port, bool) or not isinstance(self.grpc_port, int) or not 1 <= self.grpc_port <= 65535:
                raise ConfigError(f"ServeConfig.grpc_port = {self.grpc_port!r} is out of range; allowed: 1 to 65535 or None")
            if self.grpc_port == self.http_port:
                raise ConfigError(f"ServeConfig.grpc_port equals ServeConfig.http_port ({self.http_port}); give them different ports")
        for bot_id in self.preload:
            check_bot_id(bot_id)
        if self.memory_budget and self.memory_budget < MIN_MEMORY_BUDGET:
            raise ConfigError(
                f"ServeConfig.memory_budget = {self.memory_budget} bytes is below {MIN_MEMORY_BUDGET // 2**20} MiB, "
                "less than TensorFlow and the server need before any bot is loaded"
            )


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(value: str) -> int:
    """``"2GiB"``, ``"1500MiB"``, ``"512M"`` or a number of bytes, as bytes (units are powers of 1024)."""
    match = _SIZE.match(str(value))
    if not match:
        raise argparse.ArgumentTypeError(f"expected a size such as 2GiB, 512MiB or a number of bytes; got {value!r}")
    number, unit = match.groups()
    return int(float(number) * _UNITS[(unit or "").upper()[:1]])


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
    fleet = parser.add_argument_group("many bots: load on demand, evict the least recently used")
    fleet.add_argument(
        "--max-loaded-bots", type=int, default=0, metavar="N",
        help="keep at most N bots loaded; 0 = no bound (default %(default)s)",
    )
    fleet.add_argument(
        "--memory-budget", type=parse_size, default=0, metavar="SIZE",
        help="evict bots while the process's measured resident memory is over SIZE (e.g. 2GiB); 0 = no bound",
    )
    fleet.add_argument(
        "--preload", nargs="+", action="extend", default=[], metavar="BOT",
        help="load these bots at start, and again after an eviction; they are evicted last",
    )
    fleet.add_argument(
        "--preload-most-requested", type=int, default=0, metavar="N",
        help="also keep the N most requested bots of the last --popularity-window loaded (default %(default)s)",
    )
    fleet.add_argument(
        "--popularity-window", type=float, default=d["popularity_window_s"].default, metavar="S",
        help="seconds over which requests are counted for --preload-most-requested (default %(default)s)",
    )
    fleet.add_argument(
        "--load-workers", type=int, default=d["load_workers"].default, metavar="N",
        help="versions loaded at the same time (default %(default)s)",
    )
    http = parser.add_argument_group("HTTP limits and admin surface")
    http.add_argument(
        "--max-body-bytes", type=parse_size, default=d["max_body_bytes"].default, metavar="SIZE",
        help="refuse a larger request body with 413 before reading it whole (default 4MiB)",
    )
    http.add_argument(
        "--body-timeout", type=float, default=d["body_timeout_s"].default, metavar="S",
        help="refuse a request whose body has not arrived within S seconds with 408 (default %(default)s)",
    )
    http.add_argument(
        "--keep-alive-timeout", type=float, default=d["keep_alive_timeout_s"].default, metavar="S",
        help="close idle keep-alive connections after S seconds (default %(default)s)",
    )
    http.add_argument(
        "--model-repository-token-file", default="", metavar="PATH",
        help="enable KServe's model-repository extension (POST /v2/repository/models/<bot>/load|unload), "
        "for requests with 'Authorization: Bearer <the token in PATH>'; off by default",
    )


# the flags whose names differ from their ``ServeConfig`` field (the others are the field's name
# with dashes): errors name the flag a user typed
_FLAG_FIELDS = {"http_port": "port", "body_timeout_s": "body_timeout", "keep_alive_timeout_s": "keep_alive_timeout",
                "popularity_window_s": "popularity_window", "repository_token_file": "model_repository_token_file"}


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    with naming_flags(ServeConfig, cli_flags(ServeConfig, _FLAG_FIELDS)):
        return _config(args)


def _config(args: argparse.Namespace) -> ServeConfig:
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
        max_loaded_bots=args.max_loaded_bots,
        memory_budget=args.memory_budget,
        preload=tuple(dict.fromkeys(args.preload)),
        preload_most_requested=args.preload_most_requested,
        popularity_window_s=args.popularity_window,
        load_workers=args.load_workers,
        max_body_bytes=args.max_body_bytes,
        body_timeout_s=args.body_timeout,
        keep_alive_timeout_s=args.keep_alive_timeout,
        repository_token_file=args.model_repository_token_file,
    )
