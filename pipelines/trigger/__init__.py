"""The event trigger service: "bot changed" webhooks in, one debounced training run per bot out.

How an event travels (each arrow is one database transaction, so a crash between two
arrows loses nothing and a restarted or second replica carries on from the last one)::

    POST /events --(size, signature + timestamp, fields, data_uri checked)--> stored: "received" --> 202
                  \\-- a 401 / 4xx is counted and stored (within budget): "rejected", never acted on
    dispatcher:  bot quiet for ``quiet_period`` s (or waiting ``max_wait`` s) and no run of
                 the bot in flight and fewer than ``max_concurrent_runs`` in flight
                 --> its received events become one batch: "claimed" (owner, lease)
                 --> data read + checked + hashed in a sandboxed worker process (``sandbox``)
                 --> data hash == last successful run's  --> "skipped" (reason)
                 --> data file not usable                 --> "failed" (the kind of problem, never its content)
                 --> submitter(...) -> run id             --> "submitted"
                 --> run_state(run id) polled             --> "succeeded" | "failed"

Modules: ``auth`` (timestamped HMAC signatures and the shared secret), ``data_uris`` (which
``data_uri`` an event may name), ``refusals`` (counting and limiting refused requests),
``sandbox`` (reading a bot's data in limited worker processes, never in the server's),
``event_store`` (the SQLAlchemy tables and every transaction, including the claim with ``FOR
UPDATE SKIP LOCKED`` and lease recovery), ``backends`` (KFP, or ``botyard run`` subprocesses in
dev mode), ``dispatcher`` (the background thread), ``app`` (the FastAPI app and ``serve``).
This module holds what they share: the configuration, the state names and the errors.
Nothing here imports FastAPI or SQLAlchemy, so ``botyard status`` and the CLI stay light.

Errors (all ``botyard.components.base.errors.RequestError``, so callers may catch the root)::

    RequestError (ValueError)          400  malformed JSON, a missing/invalid field, a data_uri not
     |                                      allowed, a bad query
     +-- UnauthorizedError             401  no signature or timestamp, a malformed, wrong or stale one;
     |                                      an audit read without the read token
     +-- ForbiddenError                403  the audit endpoints when no read token is configured
     +-- EventConflictError            409  an ``event_id`` reused for a different event
     +-- PayloadTooLargeError          413  a body over ``max_body_bytes``
     +-- TooManyRefusalsError          429  an address whose refused requests are over its budget
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

from botyard.components.base.config import ConfigBase
from botyard.components.base.errors import ConfigError, RequestError

# --- the wire contract -------------------------------------------------------------------------
SIGNATURE_HEADER = "X-Botyard-Signature-256"  # value: "sha256=<hex HMAC-SHA256 of '<timestamp>.<raw body>'>"
SIGNATURE_PREFIX = "sha256="
TIMESTAMP_HEADER = "X-Botyard-Timestamp"  # value: the Unix time in seconds when the request was signed
READ_TOKEN_ENV = "BOTYARD_TRIGGER_READ_TOKEN"  # the audit endpoints' bearer token, unless --read-token-file is given
IMPLICIT_EVENT_ID_PREFIX = "sig:"  # an event sent without event_id is keyed by its signature
SECRET_ENV = "BOTYARD_WEBHOOK_SECRET"  # the shared secret, unless --secret-file is given
DB_URL_ENV = "BOTYARD_TRIGGER_DB_URL"  # --db-url's default when set (a cluster keeps it in a Secret)
DEFAULT_DB_URL = "sqlite:///botyard-events.db"
DEFAULT_TRIGGER = "event"
MIN_SECRET_BYTES = 16  # shorter secrets are refused: a webhook secret should be random, 32+ bytes

# --- states (stored in the database; never rename one without a migration) -----------------------
RECEIVED = "received"  # accepted, waiting for its bot's quiet period
REJECTED = "rejected"  # a 401 / 4xx, kept for the audit trail only
CLAIMED = "claimed"  # batched and owned by one replica, not yet submitted
SUBMITTED = "submitted"  # a run exists (run_id); its state is polled
SUCCEEDED = "succeeded"
FAILED = "failed"  # the run failed, or the data could not be read, or the submit call failed
SKIPPED = "skipped"  # no run: the training data is unchanged since the last successful run
ACTIVE_STATES = (CLAIMED, SUBMITTED)  # count against the per-bot and the global limits
FINAL_STATES = (SUCCEEDED, FAILED, SKIPPED)
RUN_STATES = ("running", "succeeded", "failed")  # what a ``run_state`` callable returns


class UnauthorizedError(RequestError):
    """A request without a valid HMAC signature of its body."""

    status_code = 401


class ForbiddenError(RequestError):
    """An endpoint this server keeps closed."""

    status_code = 403


class TooManyRefusalsError(RequestError):
    """An address that sent more refused requests than its budget allows."""

    status_code = 429

    def __init__(self, message: str, retry_after: float):
        self.retry_after = retry_after
        super().__init__(message)


class EventConflictError(RequestError):
    """An ``event_id`` that was already used for an event with other content."""

    status_code = 409


class PayloadTooLargeError(RequestError):
    """A request body over the configured limit."""

    status_code = 413


def default_replica_id() -> str:
    """``<hostname>-<pid>-<random>``: unique per process, readable in the audit trail (the pod name)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class TriggerConfig(ConfigBase):
    """How ``botyard trigger-server`` runs; each field is also a command-line flag."""

    secret: bytes = field(default=b"", repr=False)  # the HMAC key; required (see auth.load_secret)
    db_url: str = DEFAULT_DB_URL  # SQLite (one replica) or postgresql://... (several replicas)
    host: str = "127.0.0.1"  # loopback by default; 0.0.0.0 inside a container
    port: int = 8090
    quiet_period: float = 30.0  # seconds a bot must stay quiet before its burst of changes runs
    max_wait: float = 600.0  # ...but a bot that never stays quiet runs after this long anyway
    max_concurrent_runs: int = 4  # runs in flight across all bots and all replicas
    max_body_bytes: int = 65_536  # larger request bodies get a 413 before they are read whole
    poll_interval: float = 1.0  # seconds between dispatcher passes
    run_poll_interval: float = 15.0  # seconds between run_state calls for one submitted run
    lease_seconds: float = 60.0  # a claim not renewed for this long is taken over by another replica
    allowed_data_prefixes: tuple[str, ...] = ()  # data_uri must start with one of these; required unless dev
    allow_local_data: bool = False  # accept local paths / file: URIs (under a local prefix; any with dev)
    dev: bool = False  # trying it out: no prefix needed (object-store URIs anywhere), audit endpoints open
    read_token: bytes = field(default=b"", repr=False)  # bearer token for GET /events and /bots/{id}/runs
    parse_workers: int = 2  # data files read at once, each in its own limited process
    parse_memory_mb: int = 1024  # address-space limit of one such process
    parse_timeout: float = 60.0  # seconds one file may take to read, validate and hash
    refusal_rate: float = 5.0  # refused requests per second one address may send (then 429)
    refusal_burst: int = 20  # ...after a burst of this many
    max_rejected_records: int = 10_000  # refused requests kept in the audit trail (newest)
    kfp_host: str = ""  # the KFP API the default back end submits to; "" = train on this machine (dev only)
    kfp_namespace: str = ""  # the profile namespace on a multi-user KFP
    kfp_token_file: str = ""  # a service-account token; "" = $KF_PIPELINES_SA_TOKEN_PATH or kfp's default path
    kfp_service_account: str = ""  # what runs execute as; "" = default-editor (multi-user) or the server's default
    replica_id: str = field(default_factory=default_replica_id)
    access_log: bool = False  # uvicorn's per-request log line

    _ranges = {
        "port": (1, 65535),
        "quiet_period": (0.0, 86_400.0),
        "max_wait": (0.0, 7 * 86_400.0),
        "max_concurrent_runs": (1, 10_000),
        "max_body_bytes": (256, 16 * 2**20),
        "poll_interval": (0.01, 3600.0),
        "run_poll_interval": (0.01, 86_400.0),
        "lease_seconds": (1.0, 86_400.0),
        "parse_workers": (1, 64),
        "parse_memory_mb": (128, 65_536),
        "parse_timeout": (0.5, 3600.0),
        "refusal_rate": (0.01, 100_000.0),
        "refusal_burst": (1, 1_000_000),
        "max_rejected_records": (10, 100_000_000),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        from botyard.pipelines.trigger.data_uris import check_prefix

        if not isinstance(self.secret, bytes) or len(self.secret) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"TriggerConfig.secret must be at least {MIN_SECRET_BYTES} bytes; set ${SECRET_ENV} or pass "
                "--secret-file (e.g. generate one with: openssl rand -hex 32)"
            )
        if self.read_token and len(self.read_token) < MIN_SECRET_BYTES:
            raise ConfigError(f"the read token must be at least {MIN_SECRET_BYTES} bytes (e.g. openssl rand -hex 32)")
        if not self.db_url or "://" not in self.db_url:
            raise ConfigError(f"TriggerConfig.db_url = {self.db_url!r} is not a database URL, e.g. {DEFAULT_DB_URL}")
        if self.max_wait < self.quiet_period:
            raise ConfigError(
                f"TriggerConfig.max_wait = {self.max_wait} is below quiet_period = {self.quiet_period}; "
                "it must be at least as long"
            )
        if self.lease_seconds <= 2 * self.poll_interval:
            raise ConfigError(
                f"TriggerConfig.lease_seconds = {self.lease_seconds} must exceed twice poll_interval = "
                f"{self.poll_interval}: a live replica renews its leases once per pass"
            )
        if not self.replica_id or len(self.replica_id) > 200:
            raise ConfigError("TriggerConfig.replica_id must be 1 to 200 characters")
        for prefix in self.allowed_data_prefixes:
            check_prefix(prefix, self.allow_local_data)
        if not self.dev and not self.allowed_data_prefixes:
            raise ConfigError(
                "the trigger service reads only data under the locations it is given: pass --allowed-data-prefix "
                "(e.g. s3://bots-data/ or gs://bots-data/; repeatable), or --dev to try it out without one"
            )


__all__ = [
    "ACTIVE_STATES", "CLAIMED", "DB_URL_ENV", "DEFAULT_DB_URL", "DEFAULT_TRIGGER", "EventConflictError", "FAILED",
    "FINAL_STATES", "ForbiddenError", "IMPLICIT_EVENT_ID_PREFIX", "PayloadTooLargeError", "READ_TOKEN_ENV", "RECEIVED",
    "REJECTED", "RUN_STATES", "SECRET_ENV", "SIGNATURE_HEADER", "SIGNATURE_PREFIX", "SKIPPED", "SUBMITTED", "SUCCEEDED",
    "TIMESTAMP_HEADER", "TooManyRefusalsError", "TriggerConfig", "UnauthorizedError",
]  # fmt: skip
