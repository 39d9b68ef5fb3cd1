"""Webhook authentication: an HMAC-SHA256 over a timestamp and the raw body, with a shared secret.

The scheme is Stripe's and Slack's: the sender puts the current Unix time in seconds in
``X-Botyard-Timestamp``, computes ``hmac_sha256(secret, "<timestamp>.<body>")`` over the exact
bytes it sends and puts ``sha256=<hex>`` in ``X-Botyard-Signature-256``. The server recomputes
it over what it received, compares in constant time, and refuses (401) a timestamp more than
``MAX_AGE_S`` (5 minutes) old or more than ``MAX_CLOCK_SKEW_S`` in the future: a captured
request cannot be replayed later. Within the window a replay is the same delivery again: an
event without an ``event_id`` is keyed by its signature, so it is stored once (see ``app``).
Example sender (Python)::

    body = json.dumps({"bot_id": "beanbot", "data_uri": "gs://bucket/beanbot/nlu.yml"}).encode()
    headers = {**signed_headers(body, secret), "Content-Type": "application/json"}

and with a shell (README): ``printf '%s.%s' "$TS" "$BODY" | openssl dgst -sha256 -hmac "$SECRET"``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from typing import Mapping

from botyard.components.base.errors import ConfigError
from botyard.pipelines.trigger import (
    MIN_SECRET_BYTES,
    READ_TOKEN_ENV,
    SECRET_ENV,
    SIGNATURE_HEADER,
    SIGNATURE_PREFIX,
    TIMESTAMP_HEADER,
    UnauthorizedError,
)

MAX_AGE_S = 300  # an older timestamp is refused: a replay, or a sender whose clock is wrong
MAX_CLOCK_SKEW_S = 5  # a timestamp this far ahead of the server's clock still passes (NTP-synced hosts)
_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")


def load_secret(secret_file: str | None = None, environ: Mapping[str, str] | None = None) -> bytes:
    """The shared secret from ``secret_file`` (a mounted Secret) or else ``$BOTYARD_WEBHOOK_SECRET``.

    Surrounding whitespace (the newline ``echo`` and editors add) is stripped. Raises
    ``ConfigError`` (exit code 2) when neither gives a secret of ``MIN_SECRET_BYTES`` or more.
    """
    environ = os.environ if environ is None else environ
    if secret_file:
        try:
            with open(secret_file, "rb") as f:
                secret = f.read().strip()
        except OSError as exc:
            raise ConfigError(f"--secret-file {secret_file}: cannot read the webhook secret ({exc.strerror})") from exc
        where = f"--secret-file {secret_file}"
    else:
        secret = environ.get(SECRET_ENV, "").strip().encode("utf-8")
        where = f"${SECRET_ENV}"
    if not secret:
        raise ConfigError(
            f"no webhook secret: set ${SECRET_ENV} or pass --secret-file PATH; the trigger server refuses to "
            "run unauthenticated (generate a secret with: openssl rand -hex 32)"
        )
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"the webhook secret from {where} has {len(secret)} bytes; use at least {MIN_SECRET_BYTES} "
            "(e.g. openssl rand -hex 32)"
        )
    return secret


def signed_message(timestamp: int | str, body: bytes) -> bytes:
    """What is signed: ``b"<timestamp>." + body``."""
    return str(timestamp).encode("ascii") + b"." + body


def signature(body: bytes, secret: bytes, timestamp: int | str) -> str:
    """The hex HMAC-SHA256 of ``<timestamp>.<body>``."""
    return hmac.new(secret, signed_message(timestamp, body), hashlib.sha256).hexdigest()


def sign(body: bytes, secret: bytes, timestamp: int | str) -> str:
    """The ``X-Botyard-Signature-256`` header value for ``body`` sent at ``timestamp``."""
    return SIGNATURE_PREFIX + signature(body, secret, timestamp)


def signed_headers(body: bytes, secret: bytes, now: float | None = None) -> dict:
    """Both headers a sender adds, for ``body`` sent now (or at ``now``)."""
    timestamp = int(time.time() if now is None else now)
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(body, secret, timestamp)}


def verify(body: bytes, header: str | None, timestamp: str | None, secret: bytes, now: float) -> str:
    """The signature's hex digest, or ``UnauthorizedError`` unless both headers are there, match and are fresh."""
    if not header:
        raise UnauthorizedError(
            f"missing {SIGNATURE_HEADER} header: sign '<timestamp>.<body>' with HMAC-SHA256 (sha256=<hex>) "
            f"and send the timestamp in {TIMESTAMP_HEADER}"
        )
    value = header.strip()
    if not value.startswith(SIGNATURE_PREFIX) or not _HEX_DIGEST.match(value[len(SIGNATURE_PREFIX):].lower()):
        raise UnauthorizedError(f"malformed {SIGNATURE_HEADER} header: expected sha256=<64 hex digits>")
    if not timestamp:
        raise UnauthorizedError(f"missing {TIMESTAMP_HEADER} header: send the Unix time in seconds, and sign '<timestamp>.<body>'")
    stamp = timestamp.strip()
    if not _TIMESTAMP.match(stamp):
        raise UnauthorizedError(f"malformed {TIMESTAMP_HEADER} header: expected the Unix time in whole seconds")
    given = value[len(SIGNATURE_PREFIX):].lower()
    if not hmac.compare_digest(given, signature(body, secret, stamp)):
        raise UnauthorizedError(
            f"{SIGNATURE_HEADER} does not match: wrong secret, a modified body or timestamp, or the body signed "
            f"without '<timestamp>.'"
        )
    age = now - int(stamp)
    if age > MAX_AGE_S:
        raise UnauthorizedError(
            f"{TIMESTAMP_HEADER} is {int(age)} s old; requests older than {MAX_AGE_S} s are refused (a replay, or the "
            "sender's clock is wrong): sign each delivery with the current time"
        )
    if age < -MAX_CLOCK_SKEW_S:
        raise UnauthorizedError(
            f"{TIMESTAMP_HEADER} is {int(-age)} s in the future; check the sender's clock (at most {MAX_CLOCK_SKEW_S} s "
            "ahead is accepted)"
        )
    return given


def load_read_token(token_file: str | None = None, environ: Mapping[str, str] | None = None) -> bytes:
    """The audit endpoints' bearer token from ``token_file`` or ``$BOTYARD_TRIGGER_READ_TOKEN``; b"" when neither is set."""
    environ = os.environ if environ is None else environ
    if token_file:
        try:
            with open(token_file, "rb") as f:
                return f.read().strip()
        except OSError as exc:
            raise ConfigError(f"--read-token-file {token_file}: cannot read the read token ({exc.strerror})") from exc
    return environ.get(READ_TOKEN_ENV, "").strip().encode("utf-8")
