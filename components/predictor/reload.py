"""Discovery and hot reload: which bots the store holds, and new versions of loaded bots.

What is served: each bot under ``models_root`` answers with its ``CURRENT`` (promoted)
version, and only that: a version becomes visible to the predictor only by promotion, so a
candidate the promotion gate rejected is never served. A bot that has versions but was never
promoted answers 404 saying it has no live version.

At start, one listing of the store's root registers every bot (nothing is loaded: see
``pool``); the server is ready as soon as that listing is done. Then the loader thread polls
every ``reload_interval`` seconds:

* the listing again, so a new bot answers without a restart;
* the ``CURRENT`` of each *loaded* bot: a newly promoted version is loaded beside the old
  one, which keeps answering, and swapped in (``pool.BotPool.swap``); a bot whose ``CURRENT``
  disappeared is unloaded. A bot that is not loaded reads its ``CURRENT`` when it next loads,
  so polling costs one read per loaded bot, not per bot in the store;
* the hot bots (``--preload``, ``--preload-most-requested``): any not loaded is loaded ahead.

With ``reload_interval`` 0 the store is listed once and only the hot bots are refreshed
(every ``HOT_REFRESH_S``). Bots removed from the store keep their folder's listing entry
until restart; their next load finds no ``CURRENT`` and answers 404.
"""

from __future__ import annotations

import logging
import threading

from botyard.components.base import storage
from botyard.components.base.errors import ModelStoreError

log = logging.getLogger(__name__)

HOT_REFRESH_S = 10.0  # how often hot bots are checked when hot reload is off


class StoreWatcher:
    """The loader thread's loop over the store for ``pool``."""

    def __init__(self, pool, reload_interval: float):
        self.pool = pool
        self.reload_interval = reload_interval

    def list_bots(self) -> None:
        try:
            new = self.pool.refresh_listing()
        except (OSError, ModelStoreError) as exc:
            log.error("cannot list bots under %s: %s", self.pool.store.root, exc)
            return
        if new:
            log.info("found %d new bot(s) under %s; %d in all", new, self.pool.store.root, len(self.pool.served_bots()))

    def check_promotions(self, stop: threading.Event) -> None:
        """Swap in newly promoted versions of the loaded bots."""
        for bot_id in self.pool.loaded_bots():
            if stop.is_set():
                return
            model = self.pool.repository.get_model(bot_id)
            active = model.active if model is not None else None
            if active is None:
                continue
            try:
                current = self.pool.store.current(bot_id)
            except (OSError, ModelStoreError) as exc:
                log.error("bot %s: cannot read its CURRENT pointer: %s", bot_id, exc)
                continue
            if current is None:
                self.pool.evict(bot_id, "no_live_version")
            elif current != active.version:
                log.info("bot %s: version %s was promoted; loading it beside %s", bot_id, current, active.version)
                self.pool.swap(bot_id)

    def poll(self, stop: threading.Event) -> None:
        self.list_bots()
        self.check_promotions(stop)
        self.pool.refresh_hot()

    def run(self, stop: threading.Event) -> None:
        """The loader thread: the first listing (then the server is ready), preloads, then polls."""
        try:
            self.list_bots()
        finally:
            self.pool.listed.set()
        root = self.pool.store.root
        log.info("listed %d bot(s) under %s; none loaded until asked for%s", len(self.pool.served_bots()),
                 root, f" (preloading {', '.join(self.pool.preload)})" if self.pool.preload else "")
        if not self.pool.served_bots() and not storage.is_remote(root) and not storage.exists(root):
            # a mistyped --models-root would otherwise serve nothing with no word why (an empty
            # bucket prefix is normal before the first run: object stores have no folders)
            log.warning("%s does not exist: no bot is served until a model version is promoted there "
                        "(check --models-root)", root)
        self.pool.refresh_hot()
        interval = self.reload_interval or HOT_REFRESH_S
        while not stop.wait(interval):
            try:
                if self.reload_interval:
                    self.poll(stop)
                else:
                    self.pool.refresh_hot()
            except Exception:  # the loader must outlive any one bad pass
                log.exception("poll of %s failed; trying again in %ss", self.pool.store.root, interval)
