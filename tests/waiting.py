"""Polling for a condition in tests that watch a server or a process change state."""

from __future__ import annotations

import time


def wait_for(condition, timeout: float, what: str, every: float = 0.1):
    """``condition()``'s first truthy value, polled every ``every`` seconds; fails the test
    naming ``what`` when ``timeout`` seconds pass without one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
