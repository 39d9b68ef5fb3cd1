"""HTTP hygiene in front of KServe: bounded request bodies, quiet client disconnects.

``BodyLimitMiddleware`` (ASGI) reads every request body itself before KServe sees it:

* a ``Content-Length`` over ``max_body_bytes`` gets 413 at once, before any of the body is
  read; a chunked body is counted as it arrives and gets 413 as soon as it passes the cap,
  so no body larger than the cap is ever held in memory;
* a ``Content-Length`` that is not a number gets 400;
* a body that has not fully arrived within ``body_timeout_s`` gets 408 (a slow client cannot
  hold a request open for ever);
* a client that disconnects before its body is complete (a cut-off body) is logged on one
  line (``client disconnected after N of M body bytes``) and gets no answer: there is no one
  to answer, and a traceback per cut-off body would let a client flood the log cheaply.

The body read is then replayed to the app, which never waits on the network. Responses
refused here have KServe's error shape ``{"error": "<message>"}`` and close the connection
(the rest of a refused body is never read).
"""

from __future__ import annotations

import asyncio
import json
import logging

log = logging.getLogger(__name__)

_BODY_METHODS = {"POST", "PUT", "PATCH"}


class BodyLimitMiddleware:
    def __init__(self, app, max_body_bytes: int, body_timeout_s: float):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in _BODY_METHODS:
            return await self.app(scope, receive, send)
        where = f"{scope['method']} {scope.get('path', '')}"
        declared = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                text = value.decode("latin-1").strip()
                if not text.isdigit():
                    return await _refuse(send, 400, f"Content-Length {text[:40]!r} is not a number of bytes", where)
                declared = int(text)
        if declared is not None and declared > self.max_body_bytes:
            return await _refuse(send, 413, self._too_large(f"{declared:,}"), where)
        try:
            body = await asyncio.wait_for(self._read(receive, declared, where), self.body_timeout_s)
        except asyncio.TimeoutError:
            return await _refuse(send, 408, f"the request body did not arrive within {self.body_timeout_s:g}s", where)
        except _TooLarge:
            return await _refuse(send, 413, self._too_large(f"over {self.max_body_bytes:,}"), where)
        if body is None:
            return  # the client went away; nothing to answer
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # afterwards: only the disconnect, when it comes

        return await self.app(scope, replay, send)

    def _too_large(self, size: str) -> str:
        return (
            f"the request body has {size} bytes; this predictor accepts at most {self.max_body_bytes:,} "
            "(--max-body-bytes): send fewer or shorter utterances per request"
        )

    async def _read(self, receive, declared: int | None, where: str) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                expected = f" of {declared:,}" if declared is not None else ""
                log.info("%s: client disconnected after %s%s body bytes; request dropped", where, f"{size:,}", expected)
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _TooLarge(Exception):
    pass


async def _refuse(send, status: int, message: str, where: str) -> None:
    log.info("%s -> %d: %s", where, status, message)
    body = json.dumps({"error": message}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close")],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})
