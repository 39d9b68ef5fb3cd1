"""KServe wiring: botyard's data plane and REST / gRPC servers on KServe's classes.

* ``make_dataplane`` -- KServe's ``DataPlane`` over ``pool.BotPool``: server readiness (the
  store is listed), per-bot readiness (loaded), 404 for a bot with no live version, a
  prediction pinning its bot (loaded on demand), metadata with the loaded version.
* ``make_rest_server`` -- KServe's FastAPI/uvicorn server bound to ``config.host`` (KServe
  binds 0.0.0.0), with botyard's error handlers, per-bot request metrics, bounded bodies
  (``hygiene``), the idle keep-alive timeout and the model-repository routes (``admin``).
* ``decode_v2_request`` -- V2 bodies, including the binary data extension, checked so that a
  malformed one is a 400 with a message, never a 500.
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

        def decode_inference_request(self, body, headers, model_name):
            return decode_v2_request(body, headers or {}, model_name)

        async def model_metadata(self, model_name: str) -> dict:
            metadata = await super().model_metadata(model_name)
            active = self.get_model_from_registry(model_name).active
            return {**metadata, "platform": "tensorflow_savedmodel", "versions": [active.version] if active else []}

    return BotyardDataPlane(model_registry=repository)


def decode_v2_request(body, headers: dict, model_name: str):
    """A V2 body (parsed JSON, or raw bytes of the binary extension) as an ``InferRequest``.

    Every malformed binary request is a ``RequestError`` (400) naming what is wrong, where
    KServe would fail with a 500: a missing, non-numeric or out-of-range
    ``Inference-Header-Content-Length``, a JSON header that is not an object with inputs,
    binary data that does not match its declared size, text that is not UTF-8.
    """
    import struct

    import orjson
    from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
    from kserve.errors import InferenceError, InvalidInput
    from kserve.protocol.infer_type import InferRequest

    from botyard.components.base.errors import RequestError

    header = "Inference-Header-Content-Length"
    if not isinstance(body, bytes):
        try:
            return InferRequest.from_inference_request(body, model_name)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise RequestError(f"invalid V2 inference request: {exc}") from exc
    raw = headers.get(INFERENCE_CONTENT_LENGTH_HEADER)
    if raw is None:
        raise RequestError(
            f"a V2 request that is not JSON (the binary data extension) needs a '{header}' header giving the length "
            "of its JSON part; send JSON with 'Content-Type: application/json' otherwise"
        )
    if not raw.strip().isdigit():
        raise RequestError(f"'{header}' must be a whole number of bytes; got {raw[:40]!r}")
    length = int(raw)
    if not 0 < length <= len(body):
        raise RequestError(
            f"'{header}' is {length:,} but the body has {len(body):,} bytes: it must be the length of the JSON "
            "part at the start of the body"
        )
    try:
        head = orjson.loads(body[:length])
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"the first {length:,} bytes ('{header}') are not valid JSON ({exc})") from exc
    if not isinstance(head, dict) or not isinstance(head.get("inputs"), list) or not all(isinstance(i, dict) for i in head["inputs"]):
        raise RequestError(f"the JSON part of a binary V2 request must be an object with a list of 'inputs'; got {str(head)[:100]}")
    for i, tensor in enumerate(head["inputs"]):
        size = (tensor.get("parameters") or {}).get("binary_data_size") if isinstance(tensor.get("parameters"), dict) else None
        if "data" not in tensor and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise RequestError(f"inputs[{i}]: give 'data' or a whole-number 'parameters.binary_data_size'")
    declared = sum(t["parameters"]["binary_data_size"] for t in head["inputs"] if "data" not in t)
    if length + declared != len(body):
        raise RequestError(
            f"the binary data is {len(body) - length:,} bytes after the JSON part, but its inputs declare "
            f"{declared:,} (binary_data_size)"
        )
    try:
        return InferRequest.from_bytes(body, length, model_name)
    except InvalidInput:
        raise
    except (UnicodeDecodeError, InferenceError) as exc:
        cause = exc if isinstance(exc, UnicodeDecodeError) else exc.__context__
        where = f" ({cause.reason} at byte {cause.start})" if isinstance(cause, UnicodeDecodeError) else ""
        raise RequestError(f"binary V2 request: a BYTES element is not valid UTF-8 text{where}") from exc
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, struct.error) as exc:
        raise RequestError(f"invalid binary V2 request: {str(exc)[:200]}") from exc


def make_rest_server(config, dataplane, repository_extension, pool):
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.protocol.rest.server import RESTServer

    from botyard.components.predictor.admin import install_repository_routes
    from botyard.components.predictor.errors import install_exception_handlers
    from botyard.components.predictor.hygiene import BodyLimitMiddleware
    from botyard.components.predictor.metrics import RequestMetricsMiddleware

    class BotyardRESTServer(RESTServer):
        def _add_middlewares(self, app):
            super()._add_middlewares(app)
            # the last added runs first: bodies are bounded before anything else, refusals counted
            app.add_middleware(BodyLimitMiddleware, max_body_bytes=config.max_body_bytes, body_timeout_s=config.body_timeout_s)
            app.add_middleware(RequestMetricsMiddleware, is_served=pool.is_known)

        def _register_endpoints(self, app):
            super()._register_endpoints(app)
            install_repository_routes(app, pool, config.repository_token_file)

        def _add_exception_handlers(self, app):
            super()._add_exception_handlers(app)
            install_exception_handlers(app, pool.served_bots, pool.not_ready_reason, pool.server_not_ready_reason)

    rest = BotyardRESTServer(
        FASTAPI_APP_IMPORT_STRING, dataplane, repository_extension, config.http_port, grace_period=10,
        timeout_keep_alive=config.keep_alive_timeout_s,
    )
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
