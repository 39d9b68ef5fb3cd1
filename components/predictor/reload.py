"""Discovery and hot reload: which bots the store holds, which version each one serves.

What is served: each bot under ``models_root`` answers with its ``CURRENT`` (promoted)
version, and only that: a version becomes visible to the predictor only by promotion, so a
candidate the promotion gate rejected is never served. A bot that has versions but was never
promoted answers 404 saying it has no live version.

Hot reload: ``StoreWatcher.scan`` runs on the loader thread every ``reload_interval``
seconds. A new bot is registered as not ready, loaded, warmed up, then marked ready. When a
bot's ``CURRENT`` moves, the new version is loaded and warmed up beside the old one, which
keeps answering; then one reference swap makes it live (see ``model.BotModel``); no request
is dropped. A version that fails to load is logged, counted in
``botyard_model_load_failures_total`` and skipped: a new bot stays not ready (503 with the
reason), a bot that was serving keeps its previous version. A failed version is retried after
``RETRY_FAILED_AFTER_S`` seconds, in case the failure was a passing storage error. Bots
removed from the store keep serving until the server restarts.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from botyard.components.base import contracts as c
from botyard.components.base.errors import ModelStoreError, NoLiveVersionError
from botyard.components.base.model_store import ModelStore
from botyard.components.predictor.metrics import series

log = logging.getLogger(__name__)

RETRY_FAILED_AFTER_S = 60.0  # a version that failed to load is tried again after this long


def no_live_version_error(bot_id: str, n_versions: int) -> NoLiveVersionError:
    versions = f"{n_versions} model version{'s' if n_versions != 1 else ''}"
    return NoLiveVersionError(
        f"bot '{bot_id}' {c.NO_LIVE_VERSION}: it has {versions} but none was promoted (a version goes live only "
        "once the promotion gate blessed it and deploy promoted it)"
    )


class StoreWatcher:
    """Keeps ``repository`` (KServe's model registry) in step with the model store."""

    def __init__(self, store: ModelStore, repository, limits):
        self.store = store
        self.repository = repository
        self.limits = limits
        self.unpromoted: dict[str, int] = {}  # bot id -> number of versions, for bots never promoted
        self.first_scan_done = threading.Event()
        self._failed_at: dict[tuple[str, str], float] = {}

    # --- what requests see ---------------------------------------------------------------------
    def served_bots(self) -> list[str]:
        return sorted(list(self.repository.get_models()))

    def is_served(self, bot_id: str) -> bool:
        return self.repository.get_model(bot_id) is not None

    def check_live(self, bot_id: str) -> None:
        """Raise ``NoLiveVersionError`` for a bot with versions but none promoted."""
        if self.repository.get_model(bot_id) is None and bot_id in self.unpromoted:
            raise no_live_version_error(bot_id, self.unpromoted[bot_id])

    def not_ready_reason(self, bot_id: str) -> str:
        model = self.repository.get_model(bot_id)
        return model.not_ready_reason() if model is not None else "it is not served"

    def server_not_ready_reason(self) -> str:
        models = list(self.repository.get_models().values())
        return f"Loading the bots in {self.store.root}: {sum(m.ready for m in models)} of {len(models)} found so far are ready."

    # --- one pass over the store ---------------------------------------------------------------
    def scan(self, stop: threading.Event) -> None:
        """Register new bots, load versions that were promoted."""
        from botyard.components.predictor.model import BotModel

        try:
            bots = self.store.bots()
        except (OSError, ModelStoreError) as exc:
            log.error("cannot list bots under %s: %s", self.store.root, exc)
            return
        for bot_id in bots:
            if stop.is_set():
                return
            try:
                target = self.store.current(bot_id)
                if target is None:
                    self.unpromoted[bot_id] = len(self.store.versions(bot_id))
            except (OSError, ModelStoreError) as exc:
                log.error("bot %s: cannot read its CURRENT pointer: %s", bot_id, exc)
                continue
            if target is None:
                continue
            self.unpromoted.pop(bot_id, None)
            model = self.repository.get_model(bot_id)
            if model is None:
                model = BotModel(bot_id, self.limits)
                model.target_version = target
                self.repository.update(model)
                log.info("bot %s: found, loading version %s", bot_id, target)
            if model.active is not None and model.active.version == target:
                continue
            failed_at = self._failed_at.get((bot_id, target))
            if failed_at is not None and time.monotonic() - failed_at < RETRY_FAILED_AFTER_S:
                continue
            self._load(model, target)

    def _load(self, model, version: str) -> None:
        from botyard.components.base.model_io import load_version

        bot_id = model.name
        model.target_version = version
        model.load_error = None
        m = series()
        try:
            loaded = load_version(self.store, bot_id, version)
        except Exception as exc:
            # Any failure (corrupt files, TF errors) skips this version; it must not stop the
            # loader or the other bots. Expected store errors are logged without a traceback.
            expected = isinstance(exc, ModelStoreError)
            model.load_error = f"version {version} {c.LOAD_FAILED}: {exc}"
            self._failed_at[(bot_id, version)] = time.monotonic()
            m["load_failures"].labels(bot_id).inc()
            serving = f"; still serving version {model.active.version}" if model.active else ""
            log.error("bot %s: %s%s", bot_id, model.load_error, serving, exc_info=not expected)
            return
        previous = model.swap(loaded)
        self._failed_at.pop((bot_id, version), None)
        m["load_seconds"].labels(bot_id).set(loaded.load_seconds)
        m["version"].labels(bot_id, version).set(1)
        if previous is not None:
            with contextlib.suppress(KeyError):
                m["version"].remove(bot_id, previous.version)
            log.info("bot %s: now serving version %s (was %s)", bot_id, version, previous.version)
        else:
            log.info("bot %s: ready with version %s", bot_id, version)

    def run(self, reload_interval: float, stop: threading.Event) -> None:
        """The loader thread: a first scan, then one every ``reload_interval`` seconds."""
        try:
            self.scan(stop)
        finally:
            self.first_scan_done.set()
        models = list(self.repository.get_models().values())
        log.info("first scan done: %d bot(s) ready of %d", sum(m.ready for m in models), len(models))
        while reload_interval > 0 and not stop.wait(reload_interval):
            try:
                self.scan(stop)
            except Exception:  # the loader must outlive any one bad pass
                log.exception("scan of %s failed; trying again in %ss", self.store.root, reload_interval)
