"""The one place where the predictor's errors become HTTP (and gRPC) statuses.

Request errors raised by ``BotModel`` (all from ``botyard.components.base.errors``)::

    RequestError (ValueError)            400  body is not JSON, ``instances`` missing / empty /
     |                                        not a list, an instance that is not a string,
     |                                        a V2 input that is not a 1-D BYTES tensor
     +-- UnknownBotError                 404  a bot this predictor does not serve
     |    +-- NoLiveVersionError         404  a bot with versions but none promoted
     +-- ForbiddenError                  403  a model-repository load / unload (``admin``)
     +-- RequestTooLargeError            413  a batch over ``--max-batch`` utterances, or an
                                              utterance over ``--max-utterance-chars``

413 is used for both limits: the request is well formed but larger than this server
accepts, and the client's fix is to split it, not to change its format.

KServe raises its own errors before a request reaches a model; their handlers are replaced
here so the message names what is wrong:

* ``kserve.errors.ModelNotFound`` -> 404 naming the bots that are served (405 for a ``GET`` of
  ``/v1/models/<bot>:predict``, which KServe routes as a bot named ``<bot>:predict``);
* ``kserve.errors.ModelNotReady`` -> 503 with the reason (still loading, or why its version
  failed to load);
* ``fastapi.exceptions.RequestValidationError`` (a V2 body that is not JSON or not an
  inference request) -> 400 instead of FastAPI's 422;
* ``kserve.errors.InvalidInput`` (e.g. a V1 body that is not JSON) -> 400, as in KServe;
* ``kserve.errors.ServerNotReady`` -> 503 saying the store is being listed;
* FastAPI's ``HTTPException`` (a body it cannot parse, e.g. not UTF-8; an unknown path) -> its
  status, in KServe's error shape.

Every error body is KServe's shape: ``{"error": "<message>"}``. Client errors are logged
on one line (INFO; DEBUG for GET, i.e. health probes), without a traceback: they are not
the server's failures.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Callable

from botyard.components.base.errors import RequestError, UnknownBotError
from botyard.components.predictor import import_kserve

import_kserve()
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from grpc_interceptor import exceptions as grpc_errors  # noqa: E402
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady, ServerNotReady  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

log = logging.getLogger(__name__)

_KSERVE_BAD_JSON = "Unrecognized request format"
_FASTAPI_BAD_BODY = "There was an error parsing the body"
MAX_LISTED_BOTS = 20  # an unknown-bot message names at most this many served bots
V1_VERBS = ("predict", "explain")  # the V1 protocol's ``/v1/models/<bot>:<verb>`` actions


_GRPC_ERRORS = {
    HTTPStatus.BAD_REQUEST: grpc_errors.InvalidArgument,
    HTTPStatus.FORBIDDEN: grpc_errors.PermissionDenied,
    HTTPStatus.NOT_FOUND: grpc_errors.NotFound,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: grpc_errors.InvalidArgument,
    HTTPStatus.SERVICE_UNAVAILABLE: grpc_errors.Unavailable,
}


def status_of(exc: Exception) -> int:
    """The HTTP status an error becomes (500 for anything that is not a known client error)."""
    if isinstance(exc, RequestError):
        return int(exc.status_code)
    if isinstance(exc, (InvalidInput, RequestValidationError)):
        return HTTPStatus.BAD_REQUEST
    if isinstance(exc, ModelNotFound):
        return HTTPStatus.NOT_FOUND
    if isinstance(exc, ModelNotReady):
        return HTTPStatus.SERVICE_UNAVAILABLE
    return HTTPStatus.INTERNAL_SERVER_ERROR


def to_grpc_error(exc: Exception) -> Exception:
    """The ``grpc_interceptor`` exception KServe's gRPC interceptor turns into ``exc``'s status.

    KServe's interceptor reads ``.reason``, which ``ModelNotReady`` lacks, and maps any
    other ``ValueError`` to INTERNAL; a ``GrpcException`` carries its status explicitly.
    """
    cls = _GRPC_ERRORS.get(HTTPStatus(status_of(exc)))
    return cls(str(exc)) if cls else exc


def _summarise_validation(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        if err.get("type") == "json_invalid":
            at = f" at character {loc[0]}" if loc else ""
            return f"the request body is not valid JSON ({err.get('ctx', {}).get('error', 'decode error')}{at})"
        if loc[:1] == ["bytes"]:
            continue  # the raw-bytes branch of KServe's ``Union[InferenceRequest, bytes]`` body
        if loc[:1] == ["InferenceRequest"]:
            loc = loc[1:]
        problems.append(f"{'.'.join(loc) or 'body'}: {err.get('msg', 'invalid')}")
    return "invalid V2 inference request: " + ("; ".join(problems[:5]) or "not an inference request")


def install_exception_handlers(
    app: FastAPI,
    served_bots: Callable[[], list[str]],
    not_ready_reason: Callable[[str], str],
    server_not_ready_reason: Callable[[], str],
) -> None:
    """Register the handlers on KServe's FastAPI app (once, after KServe's own)."""

    def error(request: Request, status: int, message: str) -> JSONResponse:
        # health probes repeat every few seconds: their not-ready answers are logged at DEBUG
        level = logging.DEBUG if request.method == "GET" else logging.INFO
        log.log(level, "%s %s -> %d: %s", request.method, request.url.path, int(status), message)
        return JSONResponse(status_code=int(status), content={"error": message})

    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return error(request, exc.status_code, str(exc))

    async def invalid_input(request: Request, exc: InvalidInput) -> JSONResponse:
        message = str(exc)
        if message.startswith(_KSERVE_BAD_JSON):  # KServe's V1 JSON decode failure
            message = "the request body is not valid JSON (" + message[len(_KSERVE_BAD_JSON):].strip(" :") + ")"
        else:
            message = f"invalid request: {message}"
        return error(request, HTTPStatus.BAD_REQUEST, message)

    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message = _summarise_validation(exc)
        return error(request, HTTPStatus.BAD_REQUEST, message)

    async def model_not_found(request: Request, exc: ModelNotFound) -> JSONResponse:
        name = request.path_params.get("model_name", "?")
        _, colon, verb = name.partition(":")
        if colon and verb in V1_VERBS:
            # ``GET /v1/models/<bot>:predict`` reaches KServe's model-status route with the verb in
            # the name (bot ids never hold a colon): the client's mistake is the method, not the bot
            message = f"{request.method} is not allowed on {request.url.path}: send the utterances with POST"
            response = error(request, HTTPStatus.METHOD_NOT_ALLOWED, message)
            response.headers["Allow"] = "POST"
            return response
        bots = served_bots()
        served = ", ".join(bots[:MAX_LISTED_BOTS]) + (f", ... ({len(bots)} in all)" if len(bots) > MAX_LISTED_BOTS else "")
        unknown = UnknownBotError(f"bot '{name}' is not served by this predictor; served bots: {served or 'none'}")
        return await request_error(request, unknown)

    async def model_not_ready(request: Request, exc: ModelNotReady) -> JSONResponse:
        name = request.path_params.get("model_name") or getattr(exc, "model_name", "?")
        message = f"bot '{name}' is not ready: {not_ready_reason(name)}"
        return error(request, HTTPStatus.SERVICE_UNAVAILABLE, message)

    async def server_not_ready(request: Request, exc: ServerNotReady) -> JSONResponse:
        return error(request, HTTPStatus.SERVICE_UNAVAILABLE, f"{exc} {server_not_ready_reason()}")

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own refusals (a body it cannot parse, an unknown path or method): KServe's shape
        message = {_FASTAPI_BAD_BODY: "the request body is not valid JSON (it may not be UTF-8)"}.get(exc.detail, str(exc.detail))
        response = error(request, exc.status_code, message)
        response.headers.update(exc.headers or {})
        return response

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestError, request_error)
    app.add_exception_handler(InvalidInput, invalid_input)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ModelNotFound, model_not_found)
    app.add_exception_handler(ModelNotReady, model_not_ready)
    app.add_exception_handler(ServerNotReady, server_not_ready)
