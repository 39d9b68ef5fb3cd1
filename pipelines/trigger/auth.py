"""Webhook authentication: an HMAC-SHA256 of the raw request body with a shared secret.

The scheme is GitHub's: the sender computes ``hmac_sha256(secret, body)`` over the exact
bytes it sends and puts ``sha256=<hex>`` in the ``X-Botyard-Signature-256`` header; the
server recomputes it over the bytes it received and compares in constant time. Example
sender (Python)::

    body = json.dumps({"bot_id": "beanbot", "data_uri": "gs://bucket/beanbot/nlu.yml"}).encode()
    headers = {"X-Botyard-Signature-256": sign(body, secret), "Content-Type": "application/json"}

and with a shell: ``printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET"``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from typing import Mapping

from botyard.components.base.errors import ConfigError
from botyard.pipelines.trigger import MIN_SECRET_BYTES, SECRET_ENV, SIGNATURE_HEADER, SIGNATURE_PREFIX, UnauthorizedError

_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")


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


def signature(body: bytes, secret: bytes) -> str:
    """The hex HMAC-SHA256 of ``body``."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: bytes) -> str:
    """The ``X-Botyard-Signature-256`` header value for ``body``."""
    return SIGNATURE_PREFIX + signature(body, secret)


def verify(body: bytes, header: str | None, secret: bytes) -> None:
    """Raise ``UnauthorizedError`` unless ``header`` is ``sha256=<hex>`` of ``body`` under ``secret``."""
    if not header:
        raise UnauthorizedError(f"missing {SIGNATURE_HEADER} header: sign the body with HMAC-SHA256 (sha256=<hex>)")
    value = header.strip()
    if not value.startswith(SIGNATURE_PREFIX) or not _HEX_DIGEST.match(value[len(SIGNATURE_PREFIX):].lower()):
        raise UnauthorizedError(f"malformed {SIGNATURE_HEADER} header: expected sha256=<64 hex digits>")
    given = value[len(SIGNATURE_PREFIX):].lower()
    if not hmac.compare_digest(given, signature(body, secret)):
        raise UnauthorizedError(f"{SIGNATURE_HEADER} does not match the body: wrong secret or a modified body")
