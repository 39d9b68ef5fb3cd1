"""The predictor's Prometheus series and the ASGI middleware that counts prediction requests.

Series (beside KServe's own ``request_*_seconds{model_name}`` histograms)::

    botyard_predict_requests_total{bot_id, protocol, code}   prediction requests, any status
    botyard_predict_request_seconds{bot_id, protocol}        their server-side latency
    botyard_model_version_info{bot_id, version}              1 for the version a bot answers with
    botyard_model_load_seconds{bot_id}                       the last load + warm-up
    botyard_model_load_failures_total{bot_id}                versions that failed to load
    botyard_model_loads_total{reason}                        loads: cold (a request waited), preload, swap
    botyard_model_load_duration_seconds{reason}              load + warm-up time (cold-load latency)
    botyard_model_evictions_total{reason}                    evictions: max_loaded_bots, memory_budget, ...
    botyard_loaded_bots, botyard_known_bots                  bots loaded now; bots in the store's listing
    botyard_resident_memory_bytes                            the process's RSS, read at each scrape
    botyard_memory_budget_bytes, botyard_max_loaded_bots     the configured bounds (0: none)

A name the predictor does not serve is counted as ``bot_id="_unknown"``, so clients cannot
grow the label set.
"""

from __future__ import annotations

import functools
import re
import time

UNKNOWN_BOT_LABEL = "_unknown"
CLIENT_GONE = 499  # the ``code`` of a request whose client disconnected before the answer (as nginx counts it)


@functools.cache
def series():
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
        "loads": Counter("botyard_model_loads", "model versions loaded, by why: cold (a request waited), preload, swap", ["reason"]),
        "load_duration": Histogram(
            "botyard_model_load_duration_seconds", "load + warm-up time of one version, by why it was loaded", ["reason"],
            buckets=(0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0),
        ),
        "evictions": Counter("botyard_model_evictions", "loaded bots unloaded, by the bound that made room", ["reason"]),
        "loaded_bots": Gauge("botyard_loaded_bots", "bots with a loaded version"),
        "known_bots": Gauge("botyard_known_bots", "bots in the model store's listing"),
        "resident_memory": Gauge("botyard_resident_memory_bytes", "the predictor process's resident memory (RSS)"),
        "memory_budget": Gauge("botyard_memory_budget_bytes", "--memory-budget (0: none)"),
        "max_loaded_bots": Gauge("botyard_max_loaded_bots", "--max-loaded-bots (0: none)"),
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
        status = CLIENT_GONE  # no response was sent: the client disconnected first

        async def send_recording_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            m = series()
            m["requests"].labels(bot, protocol, str(status)).inc()
            m["latency"].labels(bot, protocol).observe(time.perf_counter() - started)
