"""The predictor process: one KServe model server for every bot of a model store.

``PredictorServer`` puts the pieces together and runs them until SIGTERM / SIGINT:

* ``pool.BotPool`` -- which bots are loaded: load on demand, LRU eviction under the bounds,
  hot bots, hot swap;
* ``reload.StoreWatcher`` (a thread) -- the store's listing, promotions of loaded bots;
* ``wiring`` -- KServe's data plane and REST / gRPC servers over KServe's model registry;
* ``metrics`` -- the per-bot Prometheus series; ``errors`` -- the HTTP statuses.

Readiness: ``/v2/health/ready`` turns 200 once the store has been listed (seconds, with no
model loaded): the server can answer every bot from then on. ``/v2/models/<bot>/ready`` and
``/v1/models/<bot>`` say whether that bot is loaded (200) or not (503 with the reason: not
loaded yet, loading, or why its version failed to load); 404 for a bot with no live version.

``serve(config)`` is what ``botyard serve`` and ``python -m botyard.components.predictor``
call; ``base.predictor_client.start_predictor`` runs the latter in a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import warnings

from botyard.components.base import contracts, storage
from botyard.components.base.model_store import ModelStore
from botyard.components.predictor.config import ServeConfig, add_serve_arguments, config_from_args  # noqa: F401 (the serve command's imports)

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.001  # sys.setswitchinterval: how long a thread may keep Python's lock


class PredictorServer:
    """Serves the bots of ``config.models_root`` (discovery, hot swap, REST and gRPC)."""

    def __init__(self, config: ServeConfig):
        from botyard.components.predictor import import_kserve

        import_kserve()
        from kserve.model_repository import ModelRepository

        from botyard.components.predictor.admin import read_token, refusing_repository_extension
        from botyard.components.predictor.metrics import series
        from botyard.components.predictor.model import RequestLimits
        from botyard.components.predictor.pool import BotPool
        from botyard.components.predictor.reload import StoreWatcher
        from botyard.components.predictor.wiring import make_dataplane

        self.config = config
        # Imported here, before the server is ready, not by the first cold load: a request
        # must not wait for TensorFlow's import (seconds).
        import tensorflow as tf

        # Grappler runs once per version, at export (base.serving_graph); at a load it would
        # cost a version's first call 0.1-1 s for no latency gain: see README, Sizing.
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})

        self.repository = ModelRepository()
        series()  # created here, before the loader threads and the event loop race to do it
        limits = RequestLimits(config.max_batch, config.max_utterance_chars, config.top_k)
        self.pool = BotPool(ModelStore(config.models_root), self.repository, limits, config)
        self.watcher = StoreWatcher(self.pool, config.reload_interval)
        self.dataplane = make_dataplane(self.repository, self.pool)
        read_token(config.repository_token_file)  # a bad token file stops the start, before anything loads
        self.repository_extension = refusing_repository_extension(self.repository)
        self._stop = threading.Event()

    def run(self) -> None:
        """Serve until SIGTERM / SIGINT (blocking)."""
        # KServe logs every request's timings at INFO on this logger
        logging.getLogger("kserve.trace").setLevel(logging.WARNING)
        if not self.config.access_log:
            access = logging.getLogger("uvicorn.access")  # uvicorn logs requests iff it has handlers
            access.handlers, access.propagate = [], False
        warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")  # KServe's, once per route
        # TensorFlow, KServe and their imports are ~350,000 objects that live as long as the
        # process: keep them out of every later garbage collection (a full pass over them holds
        # Python's lock for a fraction of a second, stalling every request).
        gc.collect()
        gc.freeze()
        # A loader thread holds Python's lock in bursts; handing it over every 1 ms (not 5 ms)
        # keeps loaded bots' requests fast during cold loads (measured: a loaded bot's p99
        # 21 -> 13 ms while 15 bots loaded, and the loads themselves were faster too).
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        loader = threading.Thread(
            target=self.watcher.run, args=(self._stop,), name="botyard-store-watcher", daemon=True
        )
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
            self.pool.shutdown()
            loader.join(timeout=5)

    async def _serve(self) -> None:
        from botyard.components.predictor.wiring import make_grpc_server, make_rest_server

        rest = make_rest_server(self.config, self.dataplane, self.repository_extension, self.pool)
        grpc_server, grpc_task = None, None
        if self.config.grpc_port is not None:
            grpc_server = make_grpc_server(self.config, self.dataplane, self.repository_extension)
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


def serve(config: ServeConfig) -> None:
    """Serve ``config.models_root`` until interrupted (blocking).

    ``models_root`` may also be a single model version folder (what KServe's storage
    initializer puts in ``/mnt/models`` for a per-bot InferenceService): it is then served
    through a private store, promoted, as bot ``model_name`` (default: its metadata's bot id).
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
        single = dataclasses.replace(config, models_root=store.root, reload_interval=0.0, preload=(name,))
        PredictorServer(single).run()
