"""The predictor's Prometheus series and the ASGI middleware that counts prediction requests.

Series (beside KServe's own ``request_*_seconds{model_name}`` histograms)::

    botyard_predict_requests_total{bot_id, protocol, code}   prediction requests, any status
    botyard_predict_request_seconds{bot_id, protocol}        their server-side latency
    botyard_model_version_info{bot_id, version}              1 for the version a bot answers with
    botyard_model_load_seconds{bot_id}                       the last load + warm-up
    botyard_model_load_failures_total{bot_id}                versions that failed to load

A name the predictor does not serve is counted as ``bot_id="_unknown"``, so clients cannot
grow the label set.
"""

from __future__ import annotations

import functools
import re
import time

UNKNOWN_BOT_LABEL = "_unknown"


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
            m = series()
            m["requests"].labels(bot, protocol, str(status)).inc()
            m["latency"].labels(bot, protocol).observe(time.perf_counter() - started)
