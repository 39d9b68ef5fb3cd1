"""The trigger service's HTTP API (FastAPI) and ``serve`` (uvicorn).

Endpoints::

    POST /events              a signed "bot changed" event -> 202 {"event": {...}} once stored;
                              the same event_id (or the same signed delivery) again -> 200
                              {"duplicate": true, "event": {...}}
    GET  /events?bot_id=&state=&limit=   events newest first (rejected ones too), each with
                              the decision of its batch: state, run_id, reason   [read token]
    GET  /bots/{bot_id}/runs?limit=      one bot's decisions (runs, skips, failures)  [read token]
    GET  /healthz             200 while the process and its dispatcher thread live (liveness)
    GET  /readyz              200 when the database answers, else 503 (readiness)
    GET  /metrics             Prometheus text: refused requests by status, rate-limited ones,
                              data-check workers replaced

An event is JSON: ``{"bot_id": str, "data_uri": str, "trigger": str?, "event_id": str?}`` (other
keys are ignored), signed as ``auth`` describes. Requests are checked in this order; a refusal
is counted, and stored in the audit trail (``state: "rejected"``) within the budget
``refusals`` describes, before it is answered:

    body over max_body_bytes                                        413
    no / malformed / wrong / stale X-Botyard-Signature-256 or -Timestamp   401  (never acted on)
    not JSON, not an object, bot_id or data_uri missing or invalid, a bad trigger or
    event_id, a data_uri the server may not read (see ``data_uris``)   400
    an event_id already used for a different event                  409
    an address over its budget of refusals                          429  (not stored)

Audit reads need ``Authorization: Bearer <read token>`` (``--read-token-file`` or
``$BOTYARD_TRIGGER_READ_TOKEN``): 401 without it; without a configured token they are closed
(403), except in ``--dev`` mode. Every error body is ``{"error": "<message>"}``; a database
that is down gives 503 (retry), a client's mistake never gives a 500, and a client that hangs
up mid-body gets one log line.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import re
import time
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from botyard.components.base.errors import ConfigError, RequestError
from botyard.components.base.model_store import check_bot_id
from botyard.pipelines.kfp.naming import TRIGGER_PATTERN
from botyard.pipelines.trigger import (
    ACTIVE_STATES,
    DEFAULT_TRIGGER,
    FINAL_STATES,
    IMPLICIT_EVENT_ID_PREFIX,
    RECEIVED,
    REJECTED,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ForbiddenError,
    PayloadTooLargeError,
    TooManyRefusalsError,
    TriggerConfig,
    UnauthorizedError,
    auth,
)
from botyard.pipelines.trigger.backends import RunState, Submitter, kfp_backend, local_backend
from botyard.pipelines.trigger.data_uris import check_data_uri
from botyard.pipelines.trigger.dispatcher import Dispatcher
from botyard.pipelines.trigger.event_store import Store
from botyard.pipelines.trigger.refusals import RefusalLimiter

log = logging.getLogger(__name__)

MAX_DATA_URI_CHARS = 2048
MAX_EVENT_ID_CHARS = 200
MAX_LIST_LIMIT = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
QUERY_STATES = (RECEIVED, REJECTED, *ACTIVE_STATES, *FINAL_STATES)


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


# --- reading and checking a request ------------------------------------------------------------
async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) one over ``limit`` bytes before reading it whole."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(f"Content-Length {declared!r} is not a number")
        if int(declared) > limit:
            raise PayloadTooLargeError(f"body of {int(declared)} bytes is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _string_field(obj: dict, name: str, max_chars: int) -> str:
    value = obj[name]
    if not isinstance(value, str) or not value.strip():
        raise RequestError(f"'{name}' must be a non-empty string, got {json.dumps(value)[:80]}")
    if len(value) > max_chars:
        raise RequestError(f"'{name}' has {len(value)} characters; at most {max_chars} are allowed")
    if _CONTROL.search(value):
        raise RequestError(f"'{name}' contains control characters")
    return value


def parse_event(body: bytes, config: TriggerConfig) -> dict:
    """``{bot_id, data_uri, trigger, event_id}`` from a request body; ``RequestError`` (400) if unusable."""
    try:
        obj = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RequestError(f"body is not UTF-8 JSON ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise RequestError(f"body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    if not isinstance(obj, dict):
        raise RequestError(f"body must be a JSON object with bot_id and data_uri, got a JSON {type(obj).__name__}")
    missing = [k for k in ("bot_id", "data_uri") if k not in obj]
    if missing:
        raise RequestError(f"missing field(s) {missing}: an event needs 'bot_id' and 'data_uri'")
    try:
        bot_id = check_bot_id(obj["bot_id"])
    except ConfigError as exc:
        raise RequestError(str(exc)) from exc
    data_uri = check_data_uri(
        _string_field(obj, "data_uri", MAX_DATA_URI_CHARS), config.allowed_data_prefixes, allow_local=config.allow_local_data
    )
    trigger = DEFAULT_TRIGGER
    if obj.get("trigger") is not None:
        trigger = _string_field(obj, "trigger", 63)
        if not TRIGGER_PATTERN.match(trigger):
            raise RequestError(f"'trigger' {trigger!r} must be 1-63 letters, digits and _ . : / -, starting with a letter or digit")
    event_id = None
    if obj.get("event_id") is not None:
        event_id = _string_field(obj, "event_id", MAX_EVENT_ID_CHARS)
    return {"bot_id": bot_id, "data_uri": data_uri, "trigger": trigger, "event_id": event_id}


def claimed_bot_id(body: bytes) -> str | None:
    """The bot a refused request names, if it names a valid one (for the audit trail only)."""
    try:
        bot_id = json.loads(body).get("bot_id")
        return check_bot_id(bot_id)
    except Exception:  # noqa: BLE001 - anything unparsable simply names no bot
        return None


def check_read_token(request: Request, config: TriggerConfig) -> None:
    """The audit endpoints' guard: ``Authorization: Bearer <read token>``, compared in constant time."""
    if not config.read_token:
        if config.dev:
            return
        raise ForbiddenError(
            "the audit endpoints are closed: start the server with --read-token-file (or $BOTYARD_TRIGGER_READ_TOKEN) "
            "and send Authorization: Bearer <token>"
        )
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode("utf-8", "replace"), config.read_token):
        raise UnauthorizedError("the audit endpoints need Authorization: Bearer <read token>")


def _query_limit(request: Request, default: int) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIST_LIMIT:
        raise RequestError(f"limit must be an integer from 1 to {MAX_LIST_LIMIT}, got {raw!r}")
    return int(raw)


def _query_bot_id(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_bot_id(value)
    except ConfigError as exc:
        raise RequestError(str(exc)) from exc


# --- the app --------------------------------------------------------------------------------------
def create_app(
    config: TriggerConfig,
    submitter: Submitter | None = None,
    run_state: RunState | None = None,
    *,
    store: Store | None = None,
    clock: Callable[[], float] = time.time,
    hash_data: Callable[[str], str] | None = None,
    start_dispatcher: bool = True,
) -> FastAPI:
    """The trigger service as a FastAPI app.

    ``submitter``/``run_state`` default to the KFP back end at ``config.kfp_host`` (``backends``;
    ``botyard run`` subprocesses in dev mode without a host). ``hash_data`` defaults to the
    sandboxed data checker. ``start_dispatcher=False`` leaves the dispatcher to the caller
    (tests call ``app.state.dispatcher.tick()``). ``store`` defaults to ``Store(config.db_url)``;
    the app closes only a store it opened.
    """
    if submitter is None or run_state is None:
        default_submitter, default_run_state = default_backend(config)
        submitter = submitter or default_submitter
        run_state = run_state or default_run_state
    owns_store = store is None
    store = store or Store(config.db_url)
    dispatcher = Dispatcher(store, config, submitter, run_state, clock=clock, hash_data=hash_data)
    refusals = RefusalLimiter(config.refusal_rate, config.refusal_burst)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if start_dispatcher:
            dispatcher.start()
        log.info(
            "trigger: replica %s serving on %s:%s with %s (quiet period %.1fs, at most %d runs in flight)",
            config.replica_id, config.host, config.port, store.engine.url.render_as_string(hide_password=True),
            config.quiet_period, config.max_concurrent_runs,
        )  # fmt: skip
        try:
            yield
        finally:
            dispatcher.stop(timeout=15)  # within the pod's grace period, after the preStop pause
            if owns_store:
                store.close()

    app = FastAPI(title="botyard trigger", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config = config
    app.state.store = store
    app.state.dispatcher = dispatcher
    app.state.refusals = refusals

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError):
        return error_response(exc.status_code, str(exc))

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect):
        log.info("trigger: %s %s: the client hung up before its body arrived", request.method, request.url.path)
        return Response(status_code=400)  # nobody reads it

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return error_response(400, "; ".join(str(e.get("msg")) for e in exc.errors()) or "invalid request")

    @app.exception_handler(SQLAlchemyError)
    async def _database_error(request: Request, exc: SQLAlchemyError):
        log.error("trigger: database error on %s %s: %s", request.method, request.url.path, exc)
        return error_response(503, "the event store is unavailable; retry later")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("trigger: unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error; see the server log")

    async def refuse(exc: RequestError, request: Request, now: float, body: bytes | None) -> JSONResponse:
        """Count a refused request, record it within budget, then answer it (429 past the address's budget).

        A failing audit write does not change the answer.
        """
        host = request.client.host if request.client else None
        answer, store_it, retry_after = refusals.admit(host, exc.status_code, now)
        if not answer:
            limited = TooManyRefusalsError(
                "too many refused requests from this address; sign requests (see the README) and retry later", retry_after
            )
            response = error_response(429, str(limited))
            response.headers["Retry-After"] = str(max(1, int(retry_after + 0.999)))
            return response
        log.info("trigger: refused %s from %s: %s", exc.status_code, host, exc)
        if store_it:
            try:
                await run_in_threadpool(
                    store.reject_event, http_status=exc.status_code, error=str(exc), now=now,
                    bot_id=claimed_bot_id(body) if body else None, replica=config.replica_id, remote_addr=host,
                    body_sha256=hashlib.sha256(body).hexdigest() if body is not None else None,
                    body_bytes=len(body) if body is not None else None,
                )  # fmt: skip
            except SQLAlchemyError as db_exc:
                log.error("trigger: could not record the refused request in the audit trail: %s", db_exc)
        return error_response(exc.status_code, str(exc))

    @app.post("/events")
    async def post_event(request: Request):
        now = clock()
        body = None
        try:
            body = await read_body(request, config.max_body_bytes)
            digest = auth.verify(body, request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER),
                                 config.secret, now)  # fmt: skip
            fields = parse_event(body, config)
            if fields["event_id"] is None:  # the same signed delivery again is the same event (a replay in the window)
                fields["event_id"] = IMPLICIT_EVENT_ID_PREFIX + digest
            record, created = await run_in_threadpool(
                store.accept_event, **fields, now=now, replica=config.replica_id,
                remote_addr=request.client.host if request.client else None,
                body_sha256=hashlib.sha256(body).hexdigest(), body_bytes=len(body),
            )  # fmt: skip
        except RequestError as exc:
            # a 401's body is hashed and scanned for its bot id for the audit trail, never acted on
            return await refuse(exc, request, now, body)
        if created:
            return JSONResponse({"duplicate": False, "event": record}, status_code=202)
        return JSONResponse({"duplicate": True, "event": record}, status_code=200)

    @app.get("/events")
    async def get_events(request: Request):
        check_read_token(request, config)
        bot_id = _query_bot_id(request.query_params.get("bot_id"))
        state = request.query_params.get("state")
        if state is not None and state not in QUERY_STATES:
            raise RequestError(f"state must be one of {list(QUERY_STATES)}, got {state!r}")
        limit = _query_limit(request, 50)
        found = await run_in_threadpool(store.list_events, bot_id, limit, state)
        return {"events": found}

    @app.get("/bots/{bot_id}/runs")
    async def get_bot_runs(bot_id: str, request: Request):
        check_read_token(request, config)
        bot_id = _query_bot_id(bot_id)
        limit = _query_limit(request, 20)
        return {"bot_id": bot_id, "runs": await run_in_threadpool(store.bot_runs, bot_id, limit)}

    @app.get("/healthz")
    async def healthz():
        if start_dispatcher and not dispatcher.alive:
            return error_response(503, "the dispatcher thread has stopped")
        return {"status": "ok", "replica": config.replica_id, "dispatcher_passes": dispatcher.passes}

    @app.get("/metrics")
    async def metrics():
        counts = refusals.snapshot()
        lines = ["# HELP botyard_trigger_refused_total Refused requests answered, by HTTP status.",
                 "# TYPE botyard_trigger_refused_total counter"]
        lines += [f'botyard_trigger_refused_total{{status="{status}"}} {n}' for status, n in sorted(counts["refused"].items())]
        lines += ["# HELP botyard_trigger_rate_limited_total Refused requests answered 429 (over the address's budget).",
                  "# TYPE botyard_trigger_rate_limited_total counter",
                  f"botyard_trigger_rate_limited_total {counts['rate_limited']}",
                  "# HELP botyard_trigger_refused_not_stored_total Refusals answered but not stored (over the global budget).",
                  "# TYPE botyard_trigger_refused_not_stored_total counter",
                  f"botyard_trigger_refused_not_stored_total {counts['not_stored']}",
                  "# HELP botyard_trigger_data_checks_in_flight Data files being read in the sandbox.",
                  "# TYPE botyard_trigger_data_checks_in_flight gauge",
                  f"botyard_trigger_data_checks_in_flight {dispatcher.checking}"]  # fmt: skip
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    @app.get("/readyz")
    async def readyz():
        try:
            await run_in_threadpool(store.ping)
        except SQLAlchemyError as exc:
            return error_response(503, f"the event store is unavailable: {type(exc).__name__}")
        return {"status": "ready", "replica": config.replica_id}

    return app


def default_backend(config: TriggerConfig) -> tuple[Submitter, RunState]:
    """KFP at ``config.kfp_host``; without one, ``botyard run`` subprocesses, in dev mode only."""
    import os

    if config.kfp_host:
        return kfp_backend(
            config.kfp_host, namespace=config.kfp_namespace or None, token_file=config.kfp_token_file or None,
            service_account=config.kfp_service_account or None,
        )  # fmt: skip
    if not config.dev:
        raise ConfigError(
            "give --kfp-host URL (the Kubeflow Pipelines API the runs go to); training on this machine "
            "(no --kfp-host) is for --dev only"
        )
    from botyard.pipelines.kfp.parameters import default_models_root

    return local_backend(default_models_root(), os.path.abspath("runs"))


def serve(config: TriggerConfig, submitter: Submitter | None = None, run_state: RunState | None = None) -> None:
    """Run the trigger service with uvicorn until SIGINT/SIGTERM (the dispatcher finishes its pass)."""
    import uvicorn

    app = create_app(config, submitter, run_state)
    uvicorn.run(
        app, host=config.host, port=config.port, access_log=config.access_log, log_level="info",
        timeout_graceful_shutdown=20,
    )  # fmt: skip
