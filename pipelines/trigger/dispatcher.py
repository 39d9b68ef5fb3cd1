"""The dispatcher: turns due bots into runs, and runs into final states.

One pass (``tick``), repeated every ``poll_interval`` seconds by a background thread:

1. renew the leases of this replica's batches in flight; take over batches whose lease ran
   out (their replica died);
2. poll ``run_state(run_id)`` for submitted runs whose poll is due; a finished run frees its
   bot (and, if it succeeded, records its data hash for the dedupe);
3. claim due bots (debounced, one batch per bot, within the global cap; see ``store``);
4. dispatch every claimed batch: its latest data file is read, validated and hashed in a
   sandboxed worker process (``sandbox.DataChecker``: memory and time limits), several at once,
   and the pass waits at most ``HASH_WAIT_S`` for them: a slow or hostile file holds one worker,
   never the pass, the other bots or the HTTP server. A batch whose hash is known is skipped
   when the hash equals the last successful run's; otherwise ``submitter`` is called and the
   run id recorded. A file that cannot be used is a failed decision whose reason names the
   kind of problem, never the file's content; a failing submit is retried ``SUBMIT_ATTEMPTS``
   times with a back-off;
5. every ``PRUNE_INTERVAL_S``, delete the refused requests beyond ``max_rejected_records``.

The back end is two callables, injectable for tests and other orchestrators::

    submitter(bot_id, data_uri, data_hash, trigger) -> run_id (str)
    run_state(run_id) -> "running" | "succeeded" | "failed"
                         (also "pending", "paused", "canceling", "unknown": still running;
                          "canceled", "skipped": ended without a model, like "failed")

``backends`` gives the default pairs (KFP; ``botyard run`` subprocesses in dev mode). A submitter
that raises a ``ValueError`` (e.g. ``ConfigError``) fails the batch at once; any other error is
retried ``SUBMIT_ATTEMPTS`` times.

Exactly once: a batch is submitted only by the replica holding its lease, which renews the
lease (a fenced update) right before the call and records the run id right after. Only a
crash in between (after KFP created the run, before the run id was committed) makes the
replica that takes the batch over submit it again: the one window for a duplicate run.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from typing import Callable

from botyard.pipelines.trigger import CLAIMED, FAILED, RUN_STATES, SKIPPED, SUBMITTED, SUCCEEDED, TriggerConfig
from botyard.pipelines.trigger.backends import RunState, Submitter
from botyard.pipelines.trigger.event_store import Store

log = logging.getLogger(__name__)


SUBMIT_ATTEMPTS = 3  # a submit that fails this often fails its batch
# botyard.pipelines.kfp.runs.get_run_state's finer states, folded into RUN_STATES
STILL_RUNNING = frozenset({"pending", "paused", "canceling", "unknown"})
ENDED_UNSUCCESSFULLY = frozenset({"canceled", "skipped"})  # a failed run, for the dedupe and the audit
SUBMIT_BACKOFF_S = (5.0, 30.0)  # wait before the 2nd and the 3rd attempt
MAX_REASON_CHARS = 1000
HASH_WAIT_S = 1.0  # a pass waits this long for data checks; slower ones finish in a later pass
PRUNE_INTERVAL_S = 10.0  # the cap on stored refusals is applied this often


def data_checker_for(config: TriggerConfig):
    """The sandbox that reads bots' data for this service (``config``'s worker count and limits)."""
    from botyard.pipelines.trigger.data_uris import is_local
    from botyard.pipelines.trigger.sandbox import DataChecker, Limits

    local_prefixes = tuple(p for p in config.allowed_data_prefixes if is_local(p))
    limits = Limits(memory_mb=config.parse_memory_mb, timeout_s=config.parse_timeout)
    return DataChecker(workers=config.parse_workers, limits=limits, local_prefixes=local_prefixes)


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if not str(exc).startswith(type(exc).__name__) else str(exc)
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


def _data_reason(data_uri: str, exc: BaseException) -> str:
    """Why a bot's data could not be used, without quoting the file (reasons are shown on /events)."""
    from botyard.pipelines.trigger.sandbox import DataCheckError

    why = exc.reason if isinstance(exc, DataCheckError) else f"it could not be read ({type(exc).__name__})"
    return f"cannot use the training data at {data_uri}: {why}"


def _submit_reason(exc: BaseException) -> str:
    """A submitter's error; a data error's text may quote the file, so only its kind is kept."""
    from botyard.components.base.errors import DataValidationError

    if isinstance(exc, DataValidationError):
        return (f"DataValidationError: the training data would fail the pipeline's {exc.stage or 'validate'} step "
                "(details are not shown here, they quote the file)")
    return _short(exc)


class Dispatcher:
    """Moves one replica's share of batches through their states; ``start`` runs it in a thread."""

    def __init__(
        self,
        store: Store,
        config: TriggerConfig,
        submitter: Submitter,
        run_state: RunState,
        *,
        clock: Callable[[], float] = time.time,
        hash_data: Callable[[str], str] | None = None,
    ):
        self.store = store
        self.config = config
        self.owner = config.replica_id
        self.submitter = submitter
        self.run_state = run_state
        self.clock = clock
        self._checker = data_checker_for(config) if hash_data is None else None  # owned: closed by stop()
        self.hash_data = hash_data or self._checker.fingerprint
        self._hash_pool = ThreadPoolExecutor(config.parse_workers, thread_name_prefix="trigger-data-check")
        self._hashing: dict[int, Future] = {}  # batch id -> its data check in flight
        self._pruned_at = float("-inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0
        self.last_error: str | None = None

    # --- one pass ----------------------------------------------------------------------------
    def tick(self, wait_s: float | None = None) -> None:
        cfg, now = self.config, self.clock()
        self.store.renew_leases(self.owner, now=now, lease_seconds=cfg.lease_seconds)
        self.store.recover_expired(self.owner, now=now, lease_seconds=cfg.lease_seconds)
        for batch in self.store.due_batches(self.owner, SUBMITTED, now=now):
            self._poll(batch)
        claimed_at = self.clock()
        claimed = self.store.claim_due(
            self.owner, now=claimed_at, quiet_period=cfg.quiet_period, max_wait=cfg.max_wait,
            max_active=cfg.max_concurrent_runs, lease_seconds=cfg.lease_seconds,
        )  # fmt: skip
        just_claimed = {b["batch_id"] for b in claimed}
        due = self.store.due_batches(self.owner, CLAIMED, now=self.clock())
        due_ids = {b["batch_id"] for b in due}
        for batch_id in [b for b, check in self._hashing.items() if b not in due_ids and check.done()]:
            del self._hashing[batch_id]  # a batch another replica took over while its file was being read
        for batch in due:  # every claimed batch's data check runs in the sandbox, several at once
            if batch["batch_id"] not in self._hashing:
                self._hashing[batch["batch_id"]] = self._hash_pool.submit(self.hash_data, batch["data_uri"])
        wait_for([self._hashing[b["batch_id"]] for b in due], timeout=wait_s if wait_s is not None else HASH_WAIT_S)
        renewed = claimed_at
        for batch in due:
            check = self._hashing[batch["batch_id"]]
            if not check.done():
                continue  # still being read: a later pass dispatches it (its lease is renewed each pass)
            del self._hashing[batch["batch_id"]]
            if self.clock() - renewed > cfg.lease_seconds / 3:  # a long pass (many bots, slow storage)
                renewed = self.clock()
                self.store.renew_leases(self.owner, now=renewed, lease_seconds=cfg.lease_seconds)
            self._dispatch(batch, check, leased_at=claimed_at if batch["batch_id"] in just_claimed else None)
        if self.clock() - self._pruned_at >= PRUNE_INTERVAL_S:
            self._pruned_at = self.clock()
            self.store.prune_rejected(keep=cfg.max_rejected_records)
        self.passes += 1

    @property
    def checking(self) -> int:
        """Data checks in flight (tests wait for them with ``settle``)."""
        return len(self._hashing)

    def settle(self, timeout: float = 60.0) -> None:
        """Run passes until no data check is in flight (tests: every claimed batch decided)."""
        deadline = time.monotonic() + timeout
        self.tick(wait_s=timeout)
        while self._hashing and time.monotonic() < deadline:
            self.tick(wait_s=max(0.0, deadline - time.monotonic()))

    def _dispatch(self, batch: dict, check: Future, leased_at: float | None = None) -> None:
        cfg, batch_id, bot_id = self.config, batch["batch_id"], batch["bot_id"]
        try:
            digest = check.result()
        except Exception as exc:  # noqa: BLE001 - any unusable file is a decision, never a crash
            reason = _data_reason(batch["data_uri"], exc)
            self.store.finish(batch_id, self.owner, FAILED, now=self.clock(), reason=reason)
            log.warning("trigger: bot %s batch %s failed: %s", bot_id, batch_id, reason)
            return
        last = self.store.bot(bot_id) or {}
        if last.get("last_success_hash") == digest:
            reason = (
                f"training data unchanged since batch {last['last_success_batch_id']} "
                f"(data hash {digest[:12]}); no run"
            )
            self.store.finish(batch_id, self.owner, SKIPPED, now=self.clock(), reason=reason, data_hash=digest)
            log.info("trigger: bot %s batch %s skipped: %s", bot_id, batch_id, reason)
            return
        attempt = batch["attempts"] + 1
        # a lease this replica set less than a third of its length ago cannot have been taken over:
        # a batch claimed in this pass skips the check (one commit less), older ones (retries,
        # batches taken over, a slow pass) renew their lease first, fenced, and stop if it was lost
        fresh = leased_at is not None and self.clock() - leased_at < cfg.lease_seconds / 3
        if not fresh and not self.store.touch(batch_id, self.owner, now=self.clock(),
                                              lease_seconds=cfg.lease_seconds, attempts=attempt):
            log.warning("trigger: batch %s is no longer ours (lease lost); not submitting it", batch_id)
            return
        try:
            run_id = self.submitter(bot_id, batch["data_uri"], digest, batch["trigger"])
            if not isinstance(run_id, str) or not run_id:
                raise TypeError(f"the submitter returned {run_id!r}, not a run id")
        except Exception as exc:  # noqa: BLE001 - a back end's failure is recorded, and retried
            # a ValueError (DataValidationError, ConfigError: data the pipeline would refuse, a
            # local path sent to a cluster) fails the same way every time: no retry
            permanent = isinstance(exc, ValueError)
            reason = (
                f"submit refused: {_submit_reason(exc)}" if permanent
                else f"submit attempt {attempt} of {SUBMIT_ATTEMPTS} failed: {_short(exc)}"
            )
            if permanent or attempt >= SUBMIT_ATTEMPTS:
                self.store.touch(batch_id, self.owner, now=self.clock(), lease_seconds=cfg.lease_seconds,
                                 attempts=attempt)
                self.store.finish(batch_id, self.owner, FAILED, now=self.clock(), reason=reason, data_hash=digest)
            else:
                retry_at = self.clock() + SUBMIT_BACKOFF_S[min(attempt, len(SUBMIT_BACKOFF_S)) - 1]
                self.store.touch(batch_id, self.owner, now=self.clock(), lease_seconds=cfg.lease_seconds,
                                 reason=reason, next_action_at=retry_at, attempts=attempt)
            log.warning("trigger: bot %s batch %s: %s", bot_id, batch_id, reason)
            return
        now = self.clock()
        if self.store.mark_submitted(batch_id, self.owner, run_id=run_id, data_hash=digest, now=now,
                                     next_poll_at=now + cfg.run_poll_interval, attempts=attempt):
            log.info("trigger: bot %s batch %s (%d event(s)) submitted as run %s", bot_id, batch_id, batch["events"], run_id)
        else:
            log.error("trigger: batch %s was taken over while run %s was being submitted; it may run twice", batch_id, run_id)

    def _poll(self, batch: dict) -> None:
        batch_id, run_id = batch["batch_id"], batch["run_id"]
        try:
            state = self.run_state(run_id)
        except Exception as exc:  # noqa: BLE001 - the run goes on; ask again later
            state = "running"
            log.warning("trigger: cannot get the state of run %s (batch %s): %s", run_id, batch_id, _short(exc))
        if state not in RUN_STATES and state not in ENDED_UNSUCCESSFULLY and state not in STILL_RUNNING:
            log.warning("trigger: run_state(%s) returned %r, not one of %s; asking again later", run_id, state, RUN_STATES)
            state = "running"
        now = self.clock()
        if state == "running" or state in STILL_RUNNING:
            self.store.touch(batch_id, self.owner, now=now, lease_seconds=self.config.lease_seconds,
                             next_action_at=now + self.config.run_poll_interval)
            return
        final = SUCCEEDED if state == "succeeded" else FAILED
        reason = None if final == SUCCEEDED else f"run {run_id} {'failed' if state == 'failed' else 'ended ' + state}"
        if self.store.finish(batch_id, self.owner, final, now=now, reason=reason):
            log.info("trigger: bot %s batch %s run %s %s", batch["bot_id"], batch_id, run_id, final)

    # --- the background thread ---------------------------------------------------------------
    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - e.g. the database restarting; retry next pass
                self.last_error = _short(exc)
                log.exception("trigger: dispatcher pass failed; retrying in %.1fs", self.config.poll_interval)
            self._stop.wait(self.config.poll_interval)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run_forever, name="trigger-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.close()

    def close(self) -> None:
        """Stop the data checks (their worker processes end); the dispatcher cannot tick after this."""
        self._hash_pool.shutdown(wait=False, cancel_futures=True)
        if self._checker is not None:
            self._checker.close()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
