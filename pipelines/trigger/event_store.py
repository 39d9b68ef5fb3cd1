"""The trigger service's database: tables and every transaction, for SQLite and PostgreSQL.

Tables (prefixed ``trigger_`` so they can share a database)::

    trigger_events   one row per request: accepted ("received") or refused ("rejected", with
                     its HTTP status and why); an accepted one gets ``batch_id`` when claimed
    trigger_batches  one row per decision: the events of one bot claimed together, their
                     latest ``data_uri``, the state (claimed -> submitted -> succeeded/failed,
                     or skipped/failed with a reason), run id, data hash, owner and lease
    trigger_bots     one row per bot: its pending events (for the debounce), the batch in
                     flight (one run at a time per bot) and the data hash of its last
                     successful run (the dedupe)
    trigger_locks    one row, ``claim``: held while a replica claims, so the global cap on
                     runs in flight is counted by one replica at a time

Concurrency, and why each transaction is safe with several replicas on PostgreSQL:

* ingest upserts the bot row and inserts the event in one transaction: an event is either
  committed and counted, or the client got no 202;
* a claim first takes the ``claim`` row with ``FOR UPDATE SKIP LOCKED`` (a replica that finds
  it taken skips this pass instead of waiting), counts the runs in flight, then takes the due
  bot rows with ``FOR UPDATE SKIP LOCKED`` (a bot whose event is being written right now is
  skipped, it is not quiet anyway) and moves their events into a new batch; a bot row locked
  by one replica is never claimed by another, and a batched event is never batched again;
* every later change of a batch is fenced: ``WHERE owner = <me> AND state IN (...)``; a replica
  whose lease ran out (paused, partitioned) finds zero rows updated and drops the batch;
* a batch whose lease is not renewed for ``lease_seconds`` (its replica died) is taken over by
  another replica (``FOR UPDATE SKIP LOCKED`` again): a submitted run is polled on, an
  unsubmitted claim is dispatched again.

SQLite (one replica): WAL mode, ``synchronous=FULL`` (a 202 survives a power cut, not only a
crash), every write transaction opened with ``BEGIN IMMEDIATE`` (no failing lock upgrades) and
taken under one in-process lock, and accepted events that arrive together committed together
(``_GroupCommit``: one fsync for many events). ``FOR UPDATE`` is left out there: SQLite has one
writer at a time.

Times are UNIX seconds (float) in the database and ISO 8601 UTC strings in what is returned.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import queue
import threading
from concurrent.futures import Future
from typing import Any, Iterator

from sqlalchemy import (
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    case,
    create_engine,
    event,
    func,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError

from botyard.components.base.errors import ConfigError
from botyard.pipelines.trigger import (
    ACTIVE_STATES,
    CLAIMED,
    FAILED,
    RECEIVED,
    REJECTED,
    SKIPPED,
    SUBMITTED,
    SUCCEEDED,
    EventConflictError,
)

log = logging.getLogger(__name__)

CLAIM_LOCK = "claim"
_PG_SCHEMA_LOCK = 0x626F7479  # advisory lock key: replicas starting together create the tables once
_READ_ONLY = "botyard_read_only"  # execution option: a SQLite read opens a deferred transaction

metadata = MetaData()

batches = Table(
    "trigger_batches",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bot_id", String(63), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text),  # why skipped / failed, or the last retried submit error
    Column("data_uri", Text, nullable=False),  # the latest event's: the latest data wins
    Column("trigger", String(64), nullable=False),
    Column("events", Integer, nullable=False),  # how many events the batch merges
    Column("last_event", Integer, nullable=False),  # trigger_events.id whose data_uri won
    Column("data_hash", String(64)),
    Column("run_id", String(256)),
    Column("owner", String(200)),  # the replica dispatching it
    Column("lease_until", Double),
    Column("attempts", Integer, nullable=False, default=0),  # submit attempts so far
    Column("next_action_at", Double),  # claimed: next submit attempt; submitted: next run_state poll
    Column("created_at", Double, nullable=False),
    Column("submitted_at", Double),
    Column("finished_at", Double),
)
Index("ix_trigger_batches_bot", batches.c.bot_id, batches.c.id)
Index("ix_trigger_batches_state", batches.c.state, batches.c.lease_until)

events = Table(
    "trigger_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(200), unique=True),  # the client's idempotency key (accepted events only)
    Column("bot_id", String(63)),  # as claimed by a rejected request, when it was a valid bot id
    Column("data_uri", Text),
    Column("trigger", String(64)),
    Column("state", String(16), nullable=False),  # received | rejected
    Column("batch_id", Integer, ForeignKey("trigger_batches.id")),
    Column("http_status", Integer, nullable=False),
    Column("error", Text),  # why it was rejected
    Column("received_at", Double, nullable=False),
    Column("replica", String(200)),
    Column("remote_addr", String(64)),
    Column("body_sha256", String(64)),
    Column("body_bytes", Integer),
)
Index("ix_trigger_events_bot", events.c.bot_id, events.c.id)
Index("ix_trigger_events_batch", events.c.batch_id)
Index("ix_trigger_events_state", events.c.state, events.c.id)  # the cap on refused requests

bots = Table(
    "trigger_bots",
    metadata,
    Column("bot_id", String(63), primary_key=True),
    Column("pending_events", Integer, nullable=False, default=0),
    Column("first_pending_at", Double),
    Column("last_event_at", Double),
    Column("active_batch_id", Integer),
    Column("last_success_hash", String(64)),
    Column("last_success_batch_id", Integer),
)

locks = Table("trigger_locks", metadata, Column("name", String(32), primary_key=True))

# the ingest path's statements, with bound parameters so each is compiled once
_EVENT_WITH_DECISION = select(events, batches.c.state.label("batch_state"), batches.c.run_id, batches.c.reason).select_from(
    events.outerjoin(batches, events.c.batch_id == batches.c.id)
)
_EVENT_BY_EVENT_ID = _EVENT_WITH_DECISION.where(events.c.event_id == bindparam("event_id"))
_INSERT_EVENT = events.insert()


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def normalize_url(db_url: str):
    """``db_url`` as a SQLAlchemy URL; plain ``postgresql://`` gets the psycopg 3 driver."""
    try:
        url = make_url(db_url)
    except ArgumentError as exc:
        raise ConfigError(f"--db-url {db_url!r} is not a database URL, e.g. sqlite:///botyard-events.db") from exc
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"--db-url: unsupported database {backend!r}; use sqlite:///FILE or postgresql://...")
    if backend == "sqlite" and (not url.database or url.database == ":memory:"):
        raise ConfigError("--db-url: SQLite needs a file (sqlite:///botyard-events.db); in-memory loses events")
    return url


def make_engine(db_url: str) -> Engine:
    url = normalize_url(db_url)
    if url.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    engine = create_engine(url, pool_size=10, max_overflow=20, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # the "begin" listener below opens transactions, not the driver
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=30000", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # writers take the write lock up front: a deferred transaction that later writes can fail
        # with "database is locked" at once instead of waiting on the busy timeout
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(_READ_ONLY) else "BEGIN IMMEDIATE")

    return engine


@contextlib.contextmanager
def _reaching(db_url: str) -> Iterator[None]:
    """A database that cannot be reached at start (server down, wrong host or password) becomes
    a ``ConfigError`` naming the URL (password hidden) and the driver's reason, not a traceback."""
    try:
        yield
    except OperationalError as exc:
        shown = make_url(db_url).render_as_string(hide_password=True)
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise ConfigError(f"cannot reach the trigger database at {shown}: {reason}; check --db-url and that "
                          "the database server is up") from exc


def _batch_dict(row) -> dict:
    m = row._mapping
    return {
        "batch_id": m["id"],
        "bot_id": m["bot_id"],
        "state": m["state"],
        "reason": m["reason"],
        "run_id": m["run_id"],
        "data_uri": m["data_uri"],
        "data_hash": m["data_hash"],
        "trigger": m["trigger"],
        "events": m["events"],
        "attempts": m["attempts"],
        "owner": m["owner"],
        "created_at": iso(m["created_at"]),
        "submitted_at": iso(m["submitted_at"]),
        "finished_at": iso(m["finished_at"]),
    }


class Store:
    """Every read and write of the trigger service, on one SQLAlchemy engine (thread-safe)."""

    def __init__(self, db_url: str, *, create: bool = True):
        self.db_url = db_url
        self.engine = make_engine(db_url)
        self.dialect = self.engine.dialect.name
        # SQLite has one writer: threads queue on this lock (woken at once) rather than on
        # SQLite's busy handler (which sleeps up to 100 ms between tries)
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None
        now = bindparam("now", type_=Double())
        self._upsert_bot = (  # built once: statements with bound parameters are compiled once
            self._insert(bots)
            .values(bot_id=bindparam("bot_id"), pending_events=1, first_pending_at=now, last_event_at=now)
            .on_conflict_do_update(
                index_elements=[bots.c.bot_id],
                set_={
                    "pending_events": bots.c.pending_events + 1,
                    "first_pending_at": func.coalesce(bots.c.first_pending_at, now),
                    "last_event_at": case((bots.c.last_event_at > now, bots.c.last_event_at), else_=now),
                },
            )
        )
        self._group_commit = _GroupCommit(self) if self.dialect == "sqlite" else None
        if create:
            with _reaching(db_url):
                self.create_schema()

    def close(self) -> None:
        if self._group_commit is not None:
            self._group_commit.stop()
        self.engine.dispose()

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._write_lock or contextlib.nullcontext(), self.engine.begin() as conn:
            yield conn

    # --- schema and health ----------------------------------------------------------------
    def create_schema(self) -> None:
        """Create missing tables and the claim row; safe when replicas start together."""
        with self._write() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_SCHEMA_LOCK})
            metadata.create_all(conn)
            conn.execute(self._insert(locks).values(name=CLAIM_LOCK).on_conflict_do_nothing())

    def has_schema(self) -> bool:
        return all(inspect(self.engine).has_table(t.name) for t in (events, batches, bots))

    def ping(self) -> None:
        """Raise unless the database answers a query (readiness)."""
        with self._read() as conn:
            conn.execute(select(func.count()).select_from(locks))

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(**{_READ_ONLY: True})
            yield conn

    def _insert(self, table: Table):
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)

    # --- ingest ---------------------------------------------------------------------------
    def accept_event(
        self,
        *,
        bot_id: str,
        data_uri: str,
        trigger: str,
        event_id: str | None,
        now: float,
        replica: str | None = None,
        remote_addr: str | None = None,
        body_sha256: str | None = None,
        body_bytes: int | None = None,
    ) -> tuple[dict, bool]:
        """Store an accepted event; ``(record, True)`` once committed.

        An ``event_id`` seen before returns ``(existing record, False)`` and stores nothing; the
        same ``event_id`` with another bot, data URI or trigger raises ``EventConflictError``.
        On SQLite, events arriving together are committed together (see ``_GroupCommit``).
        """
        values = dict(
            event_id=event_id, bot_id=bot_id, data_uri=data_uri, trigger=trigger, state=RECEIVED, http_status=202,
            received_at=now, replica=replica, remote_addr=remote_addr, body_sha256=body_sha256, body_bytes=body_bytes,
        )  # fmt: skip
        if self._group_commit is not None:
            return self._group_commit.submit(values)
        try:
            with self._write() as conn:
                return self._accept_in(conn, values)
        except IntegrityError:
            # two replicas received one event_id at once; the other one's row is committed now
            existing = self.event_by_event_id(event_id) if event_id is not None else None
            if existing is None:
                raise
            return self._same_event(existing, bot_id, data_uri, trigger), False

    def _accept_in(self, conn: Connection, values: dict) -> tuple[dict, bool]:
        """Insert one accepted event (and count it for its bot) inside the caller's transaction."""
        if values["event_id"] is not None:
            existing = self._event_by_event_id(conn, values["event_id"])
            if existing is not None:
                return self._same_event(existing, values["bot_id"], values["data_uri"], values["trigger"]), False
        conn.execute(self._upsert_bot, {"bot_id": values["bot_id"], "now": values["received_at"]})
        row_id = conn.execute(_INSERT_EVENT, values).inserted_primary_key[0]
        return self._event_record({**values, "id": row_id, "batch_id": None, "error": None}), True

    @staticmethod
    def _same_event(existing: dict, bot_id: str, data_uri: str, trigger: str) -> dict:
        if (existing["bot_id"], existing["data_uri"], existing["trigger"]) != (bot_id, data_uri, trigger):
            raise EventConflictError(
                f"event_id {existing['event_id']!r} was already used for another event (bot "
                f"{existing['bot_id']!r}, data_uri {existing['data_uri']!r}); send a new event_id for a new change"
            )
        return existing

    def reject_event(
        self,
        *,
        http_status: int,
        error: str,
        now: float,
        bot_id: str | None = None,
        replica: str | None = None,
        remote_addr: str | None = None,
        body_sha256: str | None = None,
        body_bytes: int | None = None,
    ) -> int:
        """Record a refused request (audit trail only); returns its row id."""
        with self._write() as conn:
            return conn.execute(
                events.insert().values(
                    bot_id=bot_id, state=REJECTED, http_status=http_status, error=error[:2000], received_at=now,
                    replica=replica, remote_addr=remote_addr, body_sha256=body_sha256, body_bytes=body_bytes,
                )  # fmt: skip
            ).inserted_primary_key[0]

    def prune_rejected(self, keep: int) -> int:
        """Delete refused requests but the newest ``keep`` (the audit trail's cap); returns how many went."""
        with self._read() as conn:
            cutoff = conn.execute(
                select(events.c.id).where(events.c.state == REJECTED).order_by(events.c.id.desc()).offset(keep).limit(1)
            ).scalar()
        if cutoff is None:
            return 0
        with self._write() as conn:
            return conn.execute(events.delete().where(events.c.state == REJECTED, events.c.id <= cutoff)).rowcount

    # --- claiming -------------------------------------------------------------------------
    def claim_due(
        self, owner: str, *, now: float, quiet_period: float, max_wait: float, max_active: int, lease_seconds: float
    ) -> list[dict]:
        """Batch the received events of every due bot, up to the free share of ``max_active``.

        A bot is due when it has received events, no batch in flight, and has been quiet for
        ``quiet_period`` seconds (or its oldest pending event waited ``max_wait``). Oldest
        waiting bots go first. Returns the new batches (state ``claimed``, owned by ``owner``).
        """
        claimed = []
        with self._write() as conn:
            if conn.execute(self._skip_locked(select(locks.c.name).where(locks.c.name == CLAIM_LOCK))).first() is None:
                return []  # another replica is claiming right now; its pass counts the cap
            active = conn.execute(
                select(func.count()).select_from(batches).where(batches.c.state.in_(ACTIVE_STATES))
            ).scalar_one()
            free = max_active - active
            if free <= 0:
                return []
            due = conn.execute(
                self._skip_locked(
                    select(bots.c.bot_id)
                    .where(
                        bots.c.pending_events > 0,
                        bots.c.active_batch_id.is_(None),
                        or_(bots.c.last_event_at <= now - quiet_period, bots.c.first_pending_at <= now - max_wait),
                    )
                    .order_by(bots.c.first_pending_at, bots.c.bot_id)
                    .limit(free)
                )
            ).scalars().all()
            for bot_id in due:
                pending = events.c.bot_id == bot_id, events.c.state == RECEIVED, events.c.batch_id.is_(None)
                count, last_id = conn.execute(select(func.count(), func.max(events.c.id)).where(*pending)).one()
                if not count:  # the counter drifted (a row removed by hand): reset it
                    conn.execute(update(bots).where(bots.c.bot_id == bot_id).values(pending_events=0, first_pending_at=None))
                    continue
                latest = conn.execute(select(events.c.data_uri, events.c.trigger).where(events.c.id == last_id)).one()
                batch = dict(
                    bot_id=bot_id, state=CLAIMED, data_uri=latest.data_uri, trigger=latest.trigger, events=count,
                    last_event=last_id, owner=owner, lease_until=now + lease_seconds, attempts=0, next_action_at=now,
                    created_at=now,
                )  # fmt: skip
                batch_id = conn.execute(batches.insert().values(**batch)).inserted_primary_key[0]
                conn.execute(update(events).where(*pending, events.c.id <= last_id).values(batch_id=batch_id))
                conn.execute(
                    update(bots)
                    .where(bots.c.bot_id == bot_id)
                    .values(pending_events=0, first_pending_at=None, active_batch_id=batch_id)
                )
                claimed.append(batch_id)
        return self.batches(claimed)

    def _skip_locked(self, stmt):
        return stmt.with_for_update(skip_locked=True) if self.dialect == "postgresql" else stmt

    def renew_leases(self, owner: str, *, now: float, lease_seconds: float) -> int:
        """Extend the lease of every batch ``owner`` has in flight; returns how many."""
        with self._write() as conn:
            return conn.execute(
                update(batches)
                .where(batches.c.owner == owner, batches.c.state.in_(ACTIVE_STATES))
                .values(lease_until=now + lease_seconds)
            ).rowcount

    def recover_expired(self, owner: str, *, now: float, lease_seconds: float) -> list[dict]:
        """Take over in-flight batches whose owner stopped renewing them (it died)."""
        with self._write() as conn:
            rows = conn.execute(
                self._skip_locked(
                    select(batches.c.id, batches.c.owner).where(
                        batches.c.state.in_(ACTIVE_STATES), batches.c.lease_until < now
                    )
                )
            ).all()
            for row in rows:
                log.warning("trigger: batch %s of replica %s had an expired lease; %s takes it over", row.id, row.owner, owner)
                conn.execute(
                    update(batches)
                    .where(batches.c.id == row.id)
                    .values(owner=owner, lease_until=now + lease_seconds, next_action_at=now)
                )
        return self.batches([r.id for r in rows])

    def due_batches(self, owner: str, state: str, *, now: float) -> list[dict]:
        """``owner``'s batches in ``state`` whose next action (submit / poll) is due."""
        with self._read() as conn:
            rows = conn.execute(
                select(batches)
                .where(batches.c.owner == owner, batches.c.state == state, batches.c.next_action_at <= now)
                .order_by(batches.c.id)
            ).all()
        return [_batch_dict(r) for r in rows]

    # --- fenced transitions (zero rows updated: another replica owns the batch now) -----------
    def _fenced(self, conn: Connection, batch_id: int, owner: str, states: tuple[str, ...], **values: Any) -> bool:
        return (
            conn.execute(
                update(batches)
                .where(batches.c.id == batch_id, batches.c.owner == owner, batches.c.state.in_(states))
                .values(**values)
            ).rowcount
            == 1
        )

    def touch(self, batch_id: int, owner: str, *, now: float, lease_seconds: float, **values: Any) -> bool:
        """Renew one batch's lease (and set ``values``) if ``owner`` still holds it."""
        with self._write() as conn:
            return self._fenced(conn, batch_id, owner, ACTIVE_STATES, lease_until=now + lease_seconds, **values)

    def mark_submitted(self, batch_id: int, owner: str, *, run_id: str, data_hash: str, now: float,
                       next_poll_at: float, attempts: int = 1) -> bool:
        with self._write() as conn:
            return self._fenced(
                conn, batch_id, owner, (CLAIMED,), state=SUBMITTED, run_id=run_id, data_hash=data_hash,
                submitted_at=now, next_action_at=next_poll_at, reason=None, attempts=attempts,
            )  # fmt: skip

    def finish(self, batch_id: int, owner: str, state: str, *, now: float, reason: str | None = None,
               data_hash: str | None = None) -> bool:
        """End a batch (succeeded / failed / skipped) and free its bot for the next one."""
        if state not in (SUCCEEDED, FAILED, SKIPPED):
            raise ValueError(f"not a final state: {state!r}")
        values: dict[str, Any] = {"state": state, "finished_at": now, "reason": reason, "lease_until": None}
        if data_hash is not None:
            values["data_hash"] = data_hash
        with self._write() as conn:
            if not self._fenced(conn, batch_id, owner, ACTIVE_STATES, **values):
                return False
            row = conn.execute(select(batches.c.bot_id, batches.c.data_hash).where(batches.c.id == batch_id)).one()
            freed: dict[str, Any] = {"active_batch_id": None}
            if state == SUCCEEDED:
                freed.update(last_success_hash=row.data_hash, last_success_batch_id=batch_id)
            conn.execute(
                update(bots).where(bots.c.bot_id == row.bot_id, bots.c.active_batch_id == batch_id).values(**freed)
            )
        return True

    # --- reading --------------------------------------------------------------------------
    def bot(self, bot_id: str) -> dict | None:
        with self._read() as conn:
            row = conn.execute(select(bots).where(bots.c.bot_id == bot_id)).first()
        return dict(row._mapping) if row else None

    def batches(self, ids: list[int]) -> list[dict]:
        if not ids:
            return []
        with self._read() as conn:
            rows = conn.execute(select(batches).where(batches.c.id.in_(ids)).order_by(batches.c.id)).all()
        return [_batch_dict(r) for r in rows]

    def bot_runs(self, bot_id: str | None = None, limit: int = 20) -> list[dict]:
        """Decisions (batches), newest first; all bots when ``bot_id`` is None."""
        stmt = select(batches).order_by(batches.c.id.desc()).limit(limit)
        if bot_id is not None:
            stmt = stmt.where(batches.c.bot_id == bot_id)
        with self._read() as conn:
            return [_batch_dict(r) for r in conn.execute(stmt).all()]

    def list_events(self, bot_id: str | None = None, limit: int = 50, state: str | None = None) -> list[dict]:
        """Events newest first, each with the decision of its batch (if claimed)."""
        stmt = _EVENT_WITH_DECISION.order_by(events.c.id.desc()).limit(limit)
        if bot_id is not None:
            stmt = stmt.where(events.c.bot_id == bot_id)
        if state == REJECTED:
            stmt = stmt.where(events.c.state == REJECTED)
        elif state == RECEIVED:
            stmt = stmt.where(events.c.state == RECEIVED, events.c.batch_id.is_(None))
        elif state is not None:
            stmt = stmt.where(batches.c.state == state)
        with self._read() as conn:
            return [self._event_record(dict(r._mapping)) for r in conn.execute(stmt).all()]

    def event_by_event_id(self, event_id: str) -> dict | None:
        with self._read() as conn:
            return self._event_by_event_id(conn, event_id)

    def _event_by_event_id(self, conn: Connection, event_id: str) -> dict | None:
        row = conn.execute(_EVENT_BY_EVENT_ID, {"event_id": event_id}).first()
        return self._event_record(dict(row._mapping)) if row else None

    @staticmethod
    def _event_record(m: dict) -> dict:
        batch_state = m.get("batch_state")
        return {
            "id": m["id"],
            "event_id": m["event_id"],
            "bot_id": m["bot_id"],
            "data_uri": m["data_uri"],
            "trigger": m["trigger"],
            # the event's place in the design's states: received -> claimed -> submitted -> ...
            "state": batch_state or m["state"],
            "http_status": m["http_status"],
            "error": m["error"],
            "received_at": iso(m["received_at"]),
            "batch_id": m["batch_id"],
            "run_id": m.get("run_id"),
            "reason": m.get("reason"),
            "remote_addr": m.get("remote_addr"),
        }

    def state_counts(self) -> dict[str, int]:
        """``{state: batches}`` plus ``received`` (unbatched events) and ``rejected`` (events)."""
        with self._read() as conn:
            counts = dict(conn.execute(select(batches.c.state, func.count()).group_by(batches.c.state)).all())
            counts[RECEIVED] = conn.execute(
                select(func.count()).where(events.c.state == RECEIVED, events.c.batch_id.is_(None))
            ).scalar_one()
            counts[REJECTED] = conn.execute(select(func.count()).where(events.c.state == REJECTED)).scalar_one()
        return counts


class _GroupCommit:
    """Commits the accepted events that arrive together in one SQLite transaction.

    With ``synchronous=FULL`` every commit waits for an fsync (a few ms on a typical disk), so
    one commit per request caps ingest at a few hundred events/s. Callers hand their event to
    one writer thread and wait; the writer takes every event queued by then (up to
    ``MAX_BATCH``), writes them in one transaction, commits once, and only then answers each
    caller: each 202 still follows its event's commit. A batch that fails is retried one
    event at a time, so a bad event fails alone.
    """

    MAX_BATCH = 256

    def __init__(self, store: Store):
        self.store = store
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, values: dict) -> tuple[dict, bool]:
        done: Future = Future()
        self.queue.put((values, done))
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="trigger-group-commit", daemon=True)
                    self._thread.start()
        return done.result()

    def stop(self) -> None:
        if self._thread is not None:
            self.queue.put(None)
            self._thread.join(30)
            self._thread = None

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.MAX_BATCH:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[tuple[dict, Future]]) -> None:
        outcomes: list = []
        try:
            with self.store._write() as conn:
                for values, _ in batch:
                    try:
                        outcomes.append(self.store._accept_in(conn, values))
                    except EventConflictError as exc:  # a read-only check: the transaction is intact
                        outcomes.append(exc)
        except Exception as exc:  # noqa: BLE001 - handed to the callers, never lost in this thread
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
            else:
                for one in batch:
                    self._commit([one])
            return
        for (_, done), outcome in zip(batch, outcomes):
            if isinstance(outcome, Exception):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)


def recent_runs(db_url: str, bot_id: str | None = None, limit: int = 20) -> list[dict]:
    """See ``botyard.pipelines.trigger.recent_runs``."""
    url = normalize_url(db_url)
    if url.get_backend_name() == "sqlite" and not os.path.exists(url.database):
        raise ConfigError(f"no trigger database at {url.database}: start `botyard trigger-server --db-url {db_url}` first")
    store = Store(db_url, create=False)
    try:
        with _reaching(db_url):
            if not store.has_schema():
                return []
            return store.bot_runs(bot_id, limit)
    finally:
        store.close()
