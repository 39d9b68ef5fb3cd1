"""KServe wiring: botyard's data plane and REST / gRPC servers on KServe's classes.

* ``make_dataplane`` -- KServe's ``DataPlane`` over ``pool.BotPool``: server readiness (the
  store is listed), per-bot readiness (loaded), 404 for a bot with no live version, a
  prediction pinning its bot (loaded on demand), metadata with the loaded version.
* ``make_rest_server`` -- KServe's FastAPI/uvicorn server bound to ``config.host`` (KServe
  binds 0.0.0.0), with botyard's error handlers and per-bot request metrics.
* ``make_grpc_server`` -- KServe's V2 gRPC server bound to ``config.host`` instead of ``[::]``.

Everything KServe-specific lives here, so the rest of the predictor deals in bots and versions.
"""

from __future__ import annotations

from botyard.components.predictor import import_kserve

import_kserve()
from kserve.protocol.dataplane import DataPlane  # noqa: E402


def make_dataplane(repository, pool) -> DataPlane:
    import asyncio

    from kserve.errors import ModelNotFound

    class BotyardDataPlane(DataPlane):
        """Readiness from the pool; a prediction pins its bot (loading it first) for its whole run."""

        async def ready(self) -> bool:
            return pool.listed.is_set()

        def get_model_from_registry(self, name: str):
            pool.check_live(name)
            return super().get_model_from_registry(name)

        async def model_ready(self, model_name: str, disable_predictor_health_check: bool = False) -> bool:
            model = self.get_model_from_registry(model_name)
            if disable_predictor_health_check:
                return True  # a prediction request: ``infer`` loads the bot if it has to
            if model.active is None:  # a readiness probe: is it loaded? (and does it have a live version?)
                await asyncio.to_thread(pool.check_live_now, model_name)
            return model.ready

        async def infer(self, model_name: str, request, headers=None):
            if self._model_registry.get_model(model_name) is None:
                raise ModelNotFound(model_name)
            await pool.acquire(model_name)
            try:
                return await super().infer(model_name, request, headers)
            finally:
                pool.release(model_name)

        async def model_metadata(self, model_name: str) -> dict:
            metadata = await super().model_metadata(model_name)
            active = self.get_model_from_registry(model_name).active
            return {**metadata, "platform": "tensorflow_savedmodel", "versions": [active.version] if active else []}

    return BotyardDataPlane(model_registry=repository)


def make_rest_server(config, dataplane, repository_extension, pool):
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.protocol.rest.server import RESTServer

    from botyard.components.predictor.errors import install_exception_handlers
    from botyard.components.predictor.metrics import RequestMetricsMiddleware

    class BotyardRESTServer(RESTServer):
        def _add_middlewares(self, app):
            super()._add_middlewares(app)
            app.add_middleware(RequestMetricsMiddleware, is_served=pool.is_known)

        def _add_exception_handlers(self, app):
            super()._add_exception_handlers(app)
            install_exception_handlers(app, pool.served_bots, pool.not_ready_reason, pool.server_not_ready_reason)

    rest = BotyardRESTServer(FASTAPI_APP_IMPORT_STRING, dataplane, repository_extension, config.http_port, grace_period=10)
    rest.config.host = config.host
    rest.config.access_log = config.access_log
    return rest


def make_grpc_server(config, dataplane, repository_extension):
    from grpc import aio
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
    from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
    from kserve.protocol.grpc.server import GRPCServer
    from kserve.protocol.grpc.servicer import InferenceServicer

    from botyard.components.base.errors import RequestError
    from botyard.components.predictor.errors import to_grpc_error

    host = config.host

    class StatusInterceptor(ExceptionToStatusInterceptor):
        """Client errors raised before a model runs (unknown bot, no live version) get their
        gRPC status rather than INTERNAL."""

        async def handle_exception(self, ex, request_or_iterator, context, method_name):
            if isinstance(ex, RequestError):
                ex = to_grpc_error(ex)
            return await super().handle_exception(ex, request_or_iterator, context, method_name)

    class BotyardGRPCServer(GRPCServer):
        async def start(self, max_workers):
            from concurrent import futures

            self._server = aio.server(
                futures.ThreadPoolExecutor(max_workers=max_workers),
                interceptors=(LoggingInterceptor(), StatusInterceptor()),
            )
            grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
                InferenceServicer(self._data_plane, self._model_repository_extension), self._server
            )
            self._server.add_insecure_port(f"{host}:{self._port}")
            await self._server.start()
            await self._server.wait_for_termination()

    return BotyardGRPCServer(config.grpc_port, dataplane, repository_extension, kwargs={}, grace_period=5)
