"""Refused requests: counted always, answered 429 when one address sends too many, stored within a budget.

Anyone who can reach the service can send it unsigned requests; each refusal costs a database
write for the audit trail. So:

* every refusal is counted (by HTTP status) and shown on ``/metrics``;
* each client address has a token bucket of ``refusal_burst`` refusals refilled at
  ``refusal_rate`` per second: past it, the address gets 429 (with ``Retry-After``) and
  nothing is stored. Valid signed requests never spend tokens and are never limited;
* all addresses together store at most ``refusal_rate * 10`` refusals a second (a spread-out
  flood is counted, not stored), and the store keeps the newest ``max_rejected_records``
  refused requests (older ones are deleted by the dispatcher's pass).
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict

MAX_ADDRESSES = 10_000  # buckets kept; the least recently seen address is forgotten first
GLOBAL_STORE_FACTOR = 10.0


class TokenBucket:
    def __init__(self, rate: float, burst: float, now: float):
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, now

    def take(self, now: float) -> float:
        """0.0 when a token was taken, else the seconds until one is there."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RefusalLimiter:
    """Thread-safe: ``admit(address, status, now)`` -> (answer it?, store it?, retry-after seconds)."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._store: TokenBucket | None = None
        self._lock = threading.Lock()
        self.refused: Counter = Counter()  # HTTP status -> refusals answered
        self.limited = 0  # answered 429 instead
        self.not_stored = 0  # answered, but over the global storing budget

    def admit(self, address: str | None, status: int, now: float) -> tuple[bool, bool, float]:
        key = address or "unknown"
        with self._lock:
            bucket = self._buckets.pop(key, None) or TokenBucket(self.rate, self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > MAX_ADDRESSES:
                self._buckets.popitem(last=False)
            wait = bucket.take(now)
            if wait:
                self.limited += 1
                return False, False, wait
            self.refused[status] += 1
            if self._store is None:
                self._store = TokenBucket(self.rate * GLOBAL_STORE_FACTOR, self.burst * GLOBAL_STORE_FACTOR, now)
            store = self._store.take(now) == 0.0
            if not store:
                self.not_stored += 1
            return True, store, 0.0

    def snapshot(self) -> dict:
        with self._lock:
            return {"refused": dict(self.refused), "rate_limited": self.limited, "not_stored": self.not_stored}
