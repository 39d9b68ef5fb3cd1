"""The loaded bots: load on demand, evict the least recently used, stay inside the bounds.

Every bot of the store has a ``BotModel`` in KServe's registry from the start (a listing, no
model loaded); at most a bounded set of them holds a loaded version at a time:

* **Cold load.** A request for a bot that is not loaded waits for its promoted (``CURRENT``)
  version to load on a loader thread (``load_workers`` of them, each load on one core,
  through TensorFlow's C API with Python's lock released: ``model_io.SessionSignature``), then is answered. Concurrent
  first requests for one bot wait on the same load; requests for loaded bots are answered
  meanwhile (the event loop never waits for a load).
* **Hot bots.** ``preload`` bots, and the ``preload_most_requested`` bots with the most
  requests over the last ``popularity_window_s``, are loaded ahead of time (again after an
  eviction) and are evicted only when no other bot can be.
* **Eviction.** Before and after each load, the least recently used bots are evicted while
  more than ``max_loaded_bots`` are loaded or the process's measured resident memory (RSS,
  read from the OS, after freed memory is handed back with ``malloc_trim``) is over
  ``memory_budget`` -- before a load, with room for one more bot (the median measured cost
  of the loads so far). A bot in use (a request between its load and its answer, or waiting
  for its load) is never evicted; if every loaded bot is in use the bound is exceeded until
  they finish rather than failing a request. An evicted bot loads again on its next request,
  with the version promoted then.
* **Hot swap.** ``swap`` loads a newly promoted version beside the loaded one, which keeps
  answering, then swaps the reference (``model.BotModel``): no request fails or waits.
* **Failures.** A version that fails to load answers 503 with the reason and is retried
  after ``RETRY_FAILED_AFTER_S``; a bot whose ``CURRENT`` is missing answers 404 (no live
  version), remembered for ``NO_LIVE_RECHECK_S`` so a stream of requests does not read the
  store each time.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import logging
import os
import statistics
import threading
import time

from botyard.components.base import contracts as c
from botyard.components.base import storage
from botyard.components.base.errors import ModelStoreError, NoLiveVersionError
from botyard.components.base.model_store import BOT_ID_PATTERN, ModelStore
from botyard.components.predictor.metrics import series

log = logging.getLogger(__name__)

RETRY_FAILED_AFTER_S = 60.0  # a version that failed to load is tried again after this long
NO_LIVE_RECHECK_S = 2.0  # a bot found without CURRENT is looked at again after this long
DEFAULT_BOT_COST = 40 * 2**20  # assumed RSS of one loaded bot until loads have been measured
MiB = 2**20


def no_live_version_error(bot_id: str, n_versions: int) -> NoLiveVersionError:
    versions = f"{n_versions} model version{'s' if n_versions != 1 else ''}"
    return NoLiveVersionError(
        f"bot '{bot_id}' {c.NO_LIVE_VERSION}: it has {versions} but none was promoted (a version goes live only "
        "once the promotion gate blessed it and deploy promoted it)"
    )


class _Memory:
    """The process's resident memory, and handing freed heap back to the OS."""

    def __init__(self):
        import psutil

        self._process = psutil.Process(os.getpid())
        name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(name) if name else None
        self._trim = getattr(libc, "malloc_trim", None)  # glibc only

    def rss(self) -> int:
        return self._process.memory_info().rss

    def release(self) -> None:
        """Return free heap pages to the OS.

        No garbage collection: a version loaded through the C API (``model_io.SessionSignature``)
        is freed when its last reference goes, and a full collection held Python's lock for
        6-10 ms at every eviction, stalling every request meanwhile.
        """
        if self._trim is not None:
            self._trim(0)  # ctypes releases the GIL during the call


class BotPool:
    """Which bots are loaded; loads, evicts and swaps their versions (see the module docstring)."""

    def __init__(self, store: ModelStore, repository, limits, config):
        from botyard.components.predictor.model import BotModel

        self._bot_model = BotModel
        self.store = store
        self.repository = repository
        self.limits = limits
        self.max_loaded = config.max_loaded_bots  # 0: no bound
        self.budget = config.memory_budget  # bytes; 0: no bound
        self.preload = tuple(config.preload)
        self.most_requested = config.preload_most_requested
        self.window_s = config.popularity_window_s
        self.memory = _Memory()
        self._executor = concurrent.futures.ThreadPoolExecutor(config.load_workers, thread_name_prefix="botyard-load")
        self._lock = threading.RLock()
        self._lru: collections.OrderedDict[str, None] = collections.OrderedDict()  # loaded bots, least recent first
        self._pins: collections.Counter[str] = collections.Counter()  # requests using or waiting for a bot
        self._jobs: dict[str, concurrent.futures.Future] = {}  # bot -> its load or swap in progress
        self._failed_at: dict[tuple[str, str], float] = {}
        self._no_live: dict[str, tuple[int, float]] = {}  # bot -> (versions, when seen without CURRENT)
        self._costs: collections.deque[int] = collections.deque(maxlen=50)  # measured RSS of recent loads
        self._requests: collections.Counter[str] = collections.Counter()  # this popularity window
        self._previous_requests: collections.Counter[str] = collections.Counter()
        self._window_started = time.monotonic()
        self.listed = threading.Event()  # the first listing of the store is done
        m = series()
        m["loaded_bots"].set_function(lambda: len(self._lru))
        m["known_bots"].set_function(lambda: len(self.repository.get_models()))
        m["resident_memory"].set_function(self.memory.rss)
        m["memory_budget"].set(self.budget)
        m["max_loaded_bots"].set(self.max_loaded)

    # --- the listing ---------------------------------------------------------------------------
    def refresh_listing(self) -> int:
        """Register every bot folder of the store (one listing; nothing is loaded); returns how many are new."""
        root = self.store.root
        names = storage.listdir(root) if storage.exists(root) else []
        new = 0
        for name in names:
            if BOT_ID_PATTERN.match(name) and self.repository.get_model(name) is None:
                self.repository.update(self._bot_model(name, self.limits))
                new += 1
        self.listed.set()
        return new

    def served_bots(self) -> list[str]:
        return sorted(list(self.repository.get_models()))

    def is_known(self, bot_id: str) -> bool:
        return self.repository.get_model(bot_id) is not None

    def not_ready_reason(self, bot_id: str) -> str:
        model = self.repository.get_model(bot_id)
        return model.not_ready_reason() if model is not None else "it is not served"

    def server_not_ready_reason(self) -> str:
        return f"Listing the bots in {self.store.root}."

    def loaded_bots(self) -> list[str]:
        with self._lock:
            return list(self._lru)

    def check_live(self, bot_id: str) -> None:
        """Raise ``NoLiveVersionError`` for a bot recently seen without a promoted version."""
        seen = self._no_live.get(bot_id)
        if seen is not None and time.monotonic() - seen[1] < NO_LIVE_RECHECK_S:
            raise no_live_version_error(bot_id, seen[0])

    def check_live_now(self, bot_id: str) -> None:
        """``check_live`` after reading the bot's ``CURRENT`` if it is not loaded (blocking I/O)."""
        model = self.repository.get_model(bot_id)
        if model is None or model.active is not None:
            return
        self.check_live(bot_id)
        with contextlib.suppress(OSError, ModelStoreError):
            if self.store.current(bot_id) is None:
                self._no_live[bot_id] = (len(self.store.versions(bot_id)), time.monotonic())
                self.check_live(bot_id)

    # --- requests (event loop) -------------------------------------------------------------------
    async def acquire(self, bot_id: str):
        """Pin ``bot_id`` for one request, loading it first if needed; pair with ``release``.

        Raises ``NoLiveVersionError`` (404), or ``ModelNotReady`` (503) when its version fails to load.
        """
        model = self.repository.get_model(bot_id)  # the data plane checked that it exists
        self.check_live(bot_id)
        with self._lock:
            self._pins[bot_id] += 1  # from here on the bot is not evicted
            self._count_request(bot_id)
        try:
            while True:
                with self._lock:
                    if model.active is not None:
                        self._lru[bot_id] = None
                        self._lru.move_to_end(bot_id)
                        return model
                    job = self._submit(bot_id, "cold")
                await asyncio.wrap_future(job)
        except BaseException:
            self.release(bot_id)
            raise

    def release(self, bot_id: str) -> None:
        with self._lock:
            self._pins[bot_id] -= 1
            if self._pins[bot_id] <= 0:
                del self._pins[bot_id]

    def _count_request(self, bot_id: str) -> None:
        now = time.monotonic()
        if now - self._window_started >= self.window_s:
            self._previous_requests, self._requests = self._requests, collections.Counter()
            self._window_started = now
        self._requests[bot_id] += 1

    # --- loading (loader threads) ----------------------------------------------------------------
    def _submit(self, bot_id: str, reason: str) -> concurrent.futures.Future:
        """The bot's load job in progress, or a new one (single flight). Call with the lock held."""
        job = self._jobs.get(bot_id)
        if job is None:
            job = self._executor.submit(self._load_job, bot_id, reason)
            self._jobs[bot_id] = job
        return job

    def load_ahead(self, bot_id: str, reason: str = "preload") -> concurrent.futures.Future | None:
        """Start loading a bot that is not loaded (hot, or asked for); ``None`` if it is loaded or unknown."""
        model = self.repository.get_model(bot_id)
        if model is None:
            return None
        with self._lock:
            if model.active is not None:
                return None
            return self._submit(bot_id, reason)

    def swap(self, bot_id: str) -> concurrent.futures.Future | None:
        """Load the bot's newly promoted version beside the loaded one, then swap it in."""
        with self._lock:
            if bot_id in self._jobs:
                return None  # a load in progress reads CURRENT itself
            return self._submit(bot_id, "swap")

    def _load_job(self, bot_id: str, reason: str) -> None:
        from kserve.errors import ModelNotReady

        from botyard.components.base.model_io import SESSION, load_version

        model = self.repository.get_model(bot_id)
        m = series()
        try:
            try:
                version = self.store.current(bot_id)
                if version is None:
                    n_versions = len(self.store.versions(bot_id))
            except (OSError, ModelStoreError) as exc:
                model.load_error = f"cannot read its {c.CURRENT_POINTER} pointer: {exc}"
                log.error("bot %s: %s", bot_id, model.load_error)
                raise ModelNotReady(bot_id, model.load_error) from exc
            if version is None:
                self._no_live[bot_id] = (n_versions, time.monotonic())
                if model.active is not None:  # it was promoted and is no longer: stop serving it
                    self.evict(bot_id, "no_live_version")
                raise no_live_version_error(bot_id, n_versions)
            self._no_live.pop(bot_id, None)
            if model.active is not None and model.active.version == version:
                return  # a swap that found nothing new
            failed_at = self._failed_at.get((bot_id, version))
            if failed_at is not None and time.monotonic() - failed_at < RETRY_FAILED_AFTER_S:
                raise ModelNotReady(bot_id, model.load_error)
            model.target_version, model.load_error = version, None
            self._make_room(exclude=bot_id)
            before = self.memory.rss()
            try:
                loaded = load_version(self.store, bot_id, version, runtime=SESSION)
            except Exception as exc:
                # Any failure (corrupt files, TF errors) skips this version; it must not stop the
                # loader or the other bots. Expected store errors are logged without a traceback.
                expected = isinstance(exc, ModelStoreError)
                model.load_error = f"version {version} {c.LOAD_FAILED}: {exc}"
                self._failed_at[(bot_id, version)] = time.monotonic()
                m["load_failures"].labels(bot_id).inc()
                serving = f"; still serving version {model.active.version}" if model.active else ""
                log.error("bot %s: %s%s", bot_id, model.load_error, serving, exc_info=not expected)
                raise ModelNotReady(bot_id, model.load_error) from exc
            with self._lock:
                previous = model.swap(loaded)
                self._lru[bot_id] = None
                self._lru.move_to_end(bot_id)
            self._failed_at.pop((bot_id, version), None)
            replaced = previous.version if previous is not None else None
            if previous is not None:
                del previous  # in-flight requests that began on it still hold it
                self.memory.release()
            cost = self.memory.rss() - before
            if replaced is None and cost > 0:
                self._costs.append(cost)
            m["loads"].labels(reason).inc()
            m["load_duration"].labels(reason).observe(loaded.load_seconds)
            m["load_seconds"].labels(bot_id).set(loaded.load_seconds)
            m["version"].labels(bot_id, version).set(1)
            if replaced is not None and replaced != version:
                with contextlib.suppress(KeyError):
                    m["version"].remove(bot_id, replaced)
            log.info(
                "bot %s: %s version %s in %.2fs (%s); %d bot(s) loaded, RSS %.0f MiB",
                bot_id, "now serving" if reason == "swap" else "loaded", version, loaded.load_seconds, reason,
                len(self._lru), self.memory.rss() / MiB,
            )  # fmt: skip
            self._enforce_bounds()
        finally:
            with self._lock:
                self._jobs.pop(bot_id, None)

    # --- eviction -----------------------------------------------------------------------------
    def bot_cost(self) -> int:
        """The RSS one more loaded bot is expected to add: the median of measured loads."""
        return int(statistics.median(self._costs)) if self._costs else DEFAULT_BOT_COST

    def _over(self, extra_bots: int = 0, extra_bytes: int = 0) -> str | None:
        if self.max_loaded and len(self._lru) + extra_bots > self.max_loaded:
            return "max_loaded_bots"
        if self.budget and self.memory.rss() + extra_bytes > self.budget:
            return "memory_budget"
        return None

    def _victim(self, exclude: str | None) -> str | None:
        """The least recently used loaded bot not in use, cold bots before hot ones."""
        with self._lock:
            candidates = [b for b in self._lru if b != exclude and not self._pins.get(b) and b not in self._jobs]
        hot = self.hot_bots()
        for bot_id in candidates:
            if bot_id not in hot:
                return bot_id
        return candidates[0] if candidates else None

    def _make_room(self, exclude: str) -> None:
        """Evict until one more bot fits."""
        evicted = False
        while (why := self._over(1, self.bot_cost())) and (victim := self._victim(exclude)):
            # the memory bound is judged on measured RSS: hand each eviction's memory back first
            evicted = self.evict(victim, why, release=why == "memory_budget") or evicted
        if evicted:
            self.memory.release()

    def _enforce_bounds(self) -> None:
        while (why := self._over()) and (victim := self._victim(None)):
            self.evict(victim, why)

    def evict(self, bot_id: str, reason: str, release: bool = True) -> bool:
        """Unload ``bot_id`` (unless in use); its next request loads it again."""
        model = self.repository.get_model(bot_id)
        with self._lock:
            if model is None or self._pins.get(bot_id) or bot_id not in self._lru:
                return False
            del self._lru[bot_id]
            previous = model.unload()
        m = series()
        m["evictions"].labels(reason).inc()
        if previous is not None:
            with contextlib.suppress(KeyError):
                m["version"].remove(bot_id, previous.version)
            del previous
        if release:
            self.memory.release()
        log.info("bot %s: evicted (%s); %d bot(s) loaded, RSS %.0f MiB", bot_id, reason.replace("_", "-"),
                 len(self._lru), self.memory.rss() / MiB)
        return True

    # --- hot bots -----------------------------------------------------------------------------
    def _most_requested(self) -> list[str]:
        if not self.most_requested:
            return []
        with self._lock:
            counts = self._previous_requests + self._requests
        return [b for b, _ in counts.most_common(self.most_requested)]

    def hot_bots(self) -> set[str]:
        """The hot bots now: ``preload`` and the most requested of the popularity window (counted
        at each eviction, not at the last refresh: a bot that just became popular is kept)."""
        return set(self.preload) | set(self._most_requested())

    def refresh_hot(self) -> None:
        """Load hot bots that are not loaded (if they fit without evicting a hot bot)."""
        top = self._most_requested()
        hot = set(self.preload) | set(top)
        for bot_id in [*self.preload, *top]:
            model = self.repository.get_model(bot_id)
            if model is None or model.active is not None or bot_id in self._jobs:
                continue
            if (bot_id, model.target_version) in self._failed_at or bot_id in self._no_live:
                continue
            if self._over(1, self.bot_cost()) and self._victim(None) in hot | {None}:
                continue  # it would push out another hot bot
            self.load_ahead(bot_id)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
