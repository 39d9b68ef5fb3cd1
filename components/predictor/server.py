"""Serve every bot of a model store from one KServe model server, with hot reload.

What is served: each bot under ``models_root`` answers with its ``CURRENT`` version. A bot
that has versions but was never promoted (no ``CURRENT``) answers with its latest version
(version ids sort by creation time), so a freshly registered bot can be tried before the
promotion gate has run; promote a version to pin it.

Hot reload: a loader thread polls the store every ``reload_interval`` seconds. A new bot
is registered as not ready, loaded, warmed up, then marked ready. When a bot's ``CURRENT``
moves, the new version is loaded and warmed up beside the old one, which keeps answering;
then one reference swap makes it live (see ``model.BotModel``); no request is dropped. A
version that fails to load is logged, counted in ``botyard_model_load_failures_total`` and
skipped: a new bot stays not ready (503 with the reason), a bot that was serving keeps its
previous version. A failed version is retried after ``RETRY_FAILED_AFTER_S`` seconds, in case
the failure was a passing storage error. Bots removed from the store keep serving until the
server restarts.

Readiness: ``/v2/health/ready`` turns 200 once the first scan of the store has finished
(every bot found then has loaded or failed); ``/v2/models/<bot>/ready`` and
``/v1/models/<bot>`` turn 200 once that bot's version answered its warm-up requests.

Endpoints are KServe's (V1, V2, health, model metadata, ``/metrics``); see ``model`` for
the request and response layouts and ``errors`` for the error statuses. ``/metrics`` adds
per-bot series to KServe's ``request_*_seconds{model_name}`` histograms:

* ``botyard_predict_requests_total{bot_id, protocol, code}`` and
  ``botyard_predict_request_seconds{bot_id, protocol}`` (a name the predictor does not serve
  is counted as ``bot_id="_unknown"``, so clients cannot grow the label set);
* ``botyard_model_version_info{bot_id, version}`` (1 for the version answering);
* ``botyard_model_load_seconds{bot_id}``, ``botyard_model_load_failures_total{bot_id}``.

``start_predictor`` runs the server in a subprocess for the infra check and tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import dataclasses
from dataclasses import dataclass
from typing import Iterator, Sequence

from botyard.components.base import contracts, storage
from botyard.components.base.contracts import LOAD_FAILED
from botyard.components.base.config import ConfigBase
from botyard.components.base.errors import ConfigError, DeployError, ModelStoreError
from botyard.components.base.model_store import ModelStore

log = logging.getLogger(__name__)

RETRY_FAILED_AFTER_S = 60.0  # a version that failed to load is tried again after this long
UNKNOWN_BOT_LABEL = "_unknown"


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


# --- Prometheus series ------------------------------------------------------------------------
@functools.cache
def _metrics():
    """Created once per process (the Prometheus registry refuses duplicates)."""
    from prometheus_client import Counter, Gauge, Histogram

    return {
        "requests": Counter("botyard_predict_requests", "prediction requests by bot, protocol and HTTP status", ["bot_id", "protocol", "code"]),
        "latency": Histogram(
            "botyard_predict_request_seconds", "prediction request latency (server side, whole request)", ["bot_id", "protocol"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
        ),
        "version": Gauge("botyard_model_version_info", "1 for the model version a bot answers with", ["bot_id", "version"]),
        "load_seconds": Gauge("botyard_model_load_seconds", "seconds the last version load + warm-up took", ["bot_id"]),
        "load_failures": Counter("botyard_model_load_failures", "model versions that failed to load", ["bot_id"]),
    }


_PREDICT_PATHS = (
    ("v1", re.compile(r"^/v1/models/([^/:]+):predict$")),
    ("v2", re.compile(r"^/v2/models/([^/]+)(?:/versions/[^/]+)?/infer$")),
)


class RequestMetricsMiddleware:
    """ASGI middleware counting prediction requests (any status) and timing them, per bot."""

    def __init__(self, app, is_served):
        self.app = app
        self.is_served = is_served

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        for protocol, pattern in _PREDICT_PATHS:
            match = pattern.match(path)
            if match:
                break
        else:
            return await self.app(scope, receive, send)
        bot = match.group(1) if self.is_served(match.group(1)) else UNKNOWN_BOT_LABEL
        status = 500

        async def send_recording_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            m = _metrics()
            m["requests"].labels(bot, protocol, str(status)).inc()
            m["latency"].labels(bot, protocol).observe(time.perf_counter() - started)


# --- the server -----------------------------------------------------------------------------------
class PredictorServer:
    """Discovers bots in a model store, loads and hot-swaps their versions, serves them."""

    def __init__(self, config: ServeConfig):
        from botyard.components.predictor import import_kserve

        import_kserve()
        from kserve.model_repository import ModelRepository
        from kserve.protocol.model_repository_extension import ModelRepositoryExtension

        from botyard.components.predictor.model import RequestLimits

        self.config = config
        self.store = ModelStore(config.models_root)
        self.limits = RequestLimits(config.max_batch, config.max_utterance_chars, config.top_k)
        self.repository = ModelRepository()
        self.dataplane = _make_dataplane(self)
        self.repository_extension = ModelRepositoryExtension(model_registry=self.repository)
        _metrics()  # created here, before the loader thread and the event loop race to do it
        self.first_scan_done = threading.Event()
        self._stop = threading.Event()
        self._failed_at: dict[tuple[str, str], float] = {}

    # --- discovery and hot swap -----------------------------------------------------------------
    # The loader thread adds models while requests read the registry: copy it before iterating.
    def _models(self) -> list:
        return list(self.repository.get_models().values())

    def served_bots(self) -> list[str]:
        return sorted(list(self.repository.get_models()))

    def is_served(self, bot_id: str) -> bool:
        return self.repository.get_model(bot_id) is not None

    def not_ready_reason(self, bot_id: str) -> str:
        model = self.repository.get_model(bot_id)
        return model.not_ready_reason() if model is not None else "it is not served"

    def server_not_ready_reason(self) -> str:
        models = self._models()
        return f"Loading the bots in {self.config.models_root}: {sum(m.ready for m in models)} of {len(models)} found so far are ready."

    def target_version(self, bot_id: str) -> str | None:
        """``CURRENT``, or the latest version for a bot that was never promoted."""
        return self.store.current(bot_id) or self.store.latest(bot_id)

    def scan(self) -> None:
        """One pass over the store: register new bots, load versions that changed."""
        from botyard.components.predictor.model import BotModel

        try:
            bots = self.store.bots()
        except (OSError, ModelStoreError) as exc:
            log.error("cannot list bots under %s: %s", self.config.models_root, exc)
            return
        for bot_id in bots:
            if self._stop.is_set():
                return
            try:
                target = self.target_version(bot_id)
            except (OSError, ModelStoreError) as exc:
                log.error("bot %s: cannot read its CURRENT pointer: %s", bot_id, exc)
                continue
            model = self.repository.get_model(bot_id)
            if model is None:
                model = BotModel(bot_id, self.limits)
                model.target_version = target
                self.repository.update(model)
                log.info("bot %s: found, loading version %s", bot_id, target)
            if target is None or (model.active is not None and model.active.version == target):
                continue
            failed_at = self._failed_at.get((bot_id, target))
            if failed_at is not None and time.monotonic() - failed_at < RETRY_FAILED_AFTER_S:
                continue
            self._load(model, target)

    def _load(self, model, version: str) -> None:
        from botyard.components.base.model_io import load_version

        bot_id = model.name
        model.target_version = version
        model.load_error = None
        m = _metrics()
        try:
            loaded = load_version(self.store, bot_id, version)
        except Exception as exc:
            # Any failure (corrupt files, TF errors) skips this version; it must not stop the
            # loader or the other bots. Expected store errors are logged without a traceback.
            expected = isinstance(exc, ModelStoreError)
            model.load_error = f"version {version} {LOAD_FAILED}: {exc}"
            self._failed_at[(bot_id, version)] = time.monotonic()
            m["load_failures"].labels(bot_id).inc()
            serving = f"; still serving version {model.active.version}" if model.active else ""
            log.error("bot %s: %s%s", bot_id, model.load_error, serving, exc_info=not expected)
            return
        previous = model.swap(loaded)
        self._failed_at.pop((bot_id, version), None)
        m["load_seconds"].labels(bot_id).set(loaded.load_seconds)
        m["version"].labels(bot_id, version).set(1)
        if previous is not None:
            with contextlib.suppress(KeyError):
                m["version"].remove(bot_id, previous.version)
            log.info("bot %s: now serving version %s (was %s)", bot_id, version, previous.version)
        else:
            log.info("bot %s: ready with version %s", bot_id, version)

    def _loader(self) -> None:
        try:
            self.scan()
        finally:
            self.first_scan_done.set()
        models = self._models()
        log.info("first scan done: %d bot(s) ready of %d", sum(m.ready for m in models), len(models))
        while self.config.reload_interval > 0 and not self._stop.wait(self.config.reload_interval):
            try:
                self.scan()
            except Exception:  # the loader must outlive any one bad pass
                log.exception("scan of %s failed; trying again in %ss", self.config.models_root, self.config.reload_interval)

    # --- running ---------------------------------------------------------------------------------
    def run(self) -> None:
        """Serve until SIGTERM / SIGINT (blocking)."""
        # KServe logs every request's timings at INFO on this logger
        logging.getLogger("kserve.trace").setLevel(logging.WARNING)
        if not self.config.access_log:
            access = logging.getLogger("uvicorn.access")  # uvicorn logs requests iff it has handlers
            access.handlers, access.propagate = [], False
        warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")  # KServe's, once per route
        loader = threading.Thread(target=self._loader, name="botyard-model-loader", daemon=True)
        loader.start()
        # Before uvicorn installs its own handler (and after it re-raises the signal on exit),
        # SIGTERM only sets ``_stop``; ``_serve`` turns that into a graceful shutdown.
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        try:
            try:
                import uvloop

                loop_factory = uvloop.new_event_loop
            except ImportError:  # pragma: no cover - uvloop ships with kserve
                loop_factory = None
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run(self._serve())
        finally:
            self._stop.set()
            loader.join(timeout=5)

    async def _serve(self) -> None:
        rest = _make_rest_server(self)
        grpc_server, grpc_task = None, None
        if self.config.grpc_port is not None:
            grpc_server = _make_grpc_server(self)
            grpc_task = asyncio.create_task(grpc_server.start(4))
        log.info("serving %s on http://%s:%d%s", self.config.models_root, self.config.host, self.config.http_port,
                 f" and gRPC {self.config.host}:{self.config.grpc_port}" if grpc_server else "")

        async def stop_when_asked() -> None:
            while not self._stop.is_set():
                await asyncio.sleep(0.2)
            rest._server.should_exit = True  # uvicorn's graceful shutdown

        watcher = asyncio.create_task(stop_when_asked())
        try:
            await rest.start()  # returns after SIGTERM / SIGINT, once in-flight requests finished
        finally:
            watcher.cancel()
            if grpc_server is not None:
                await grpc_server.stop()
                grpc_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await grpc_task


def _make_dataplane(server: PredictorServer):
    from kserve.protocol.dataplane import DataPlane

    class BotyardDataPlane(DataPlane):
        async def ready(self) -> bool:
            return server.first_scan_done.is_set()

        async def model_metadata(self, model_name: str) -> dict:
            metadata = await super().model_metadata(model_name)
            active = self.get_model_from_registry(model_name).active
            return {**metadata, "platform": "tensorflow_savedmodel", "versions": [active.version] if active else []}

    return BotyardDataPlane(model_registry=server.repository)


def _make_rest_server(server: PredictorServer):
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.protocol.rest.server import RESTServer

    from botyard.components.predictor.errors import install_exception_handlers

    class BotyardRESTServer(RESTServer):
        """KServe's REST server bound to ``config.host`` (KServe binds 0.0.0.0), with botyard's
        error handlers and per-bot request metrics."""

        def _add_middlewares(self, app):
            super()._add_middlewares(app)
            app.add_middleware(RequestMetricsMiddleware, is_served=server.is_served)

        def _add_exception_handlers(self, app):
            super()._add_exception_handlers(app)
            install_exception_handlers(app, server.served_bots, server.not_ready_reason, server.server_not_ready_reason)

    rest = BotyardRESTServer(
        FASTAPI_APP_IMPORT_STRING,
        server.dataplane,
        server.repository_extension,
        server.config.http_port,
        grace_period=10,
    )
    rest.config.host = server.config.host
    rest.config.access_log = server.config.access_log
    return rest


def _make_grpc_server(server: PredictorServer):
    from grpc import aio
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
    from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
    from kserve.protocol.grpc.server import GRPCServer
    from kserve.protocol.grpc.servicer import InferenceServicer

    host = server.config.host

    class BotyardGRPCServer(GRPCServer):
        """KServe's gRPC server bound to ``config.host`` instead of ``[::]``."""

        async def start(self, max_workers):
            from concurrent import futures

            self._server = aio.server(
                futures.ThreadPoolExecutor(max_workers=max_workers),
                interceptors=(LoggingInterceptor(), ExceptionToStatusInterceptor()),
            )
            grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
                InferenceServicer(self._data_plane, self._model_repository_extension), self._server
            )
            self._server.add_insecure_port(f"{host}:{self._port}")
            await self._server.start()
            await self._server.wait_for_termination()

    return BotyardGRPCServer(server.config.grpc_port, server.dataplane, server.repository_extension, kwargs={}, grace_period=5)


def serve(config: ServeConfig) -> None:
    """Serve ``config.models_root`` until interrupted (blocking).

    ``models_root`` may also be a single model version folder (what KServe's storage
    initializer puts in ``/mnt/models`` for a per-bot InferenceService): it is then served
    through a private store as bot ``model_name`` (default: its metadata's bot id).
    """
    version_metadata = storage.join(config.models_root, contracts.METADATA_FILE)
    if not storage.exists(version_metadata):
        PredictorServer(config).run()
        return
    with storage.open_uri(version_metadata) as f:
        name = config.model_name or json.load(f)[contracts.BOT_ID]
    with tempfile.TemporaryDirectory(prefix="botyard-serve-") as workdir:
        store = ModelStore(os.path.join(workdir, "models"))
        store.stage(config.models_root, name)
        PredictorServer(dataclasses.replace(config, models_root=store.root, reload_interval=0.0)).run()


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
        serve(config_from_args(args))
    except ConfigError as exc:
        print(f"botyard-predictor: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0
