"""A bot's training data read outside the serving process: worker processes with memory and time limits.

The trigger service must hash a bot's data (the dedupe) and check it before it starts a run, but
a file is whatever its sender uploaded: a 554-byte YAML alias bomb grows a parser to gigabytes.
So the serving process never parses one. ``DataChecker`` keeps up to ``workers`` child processes
(``python -m botyard.pipelines.trigger.sandbox``: a fresh interpreter), each limited to
``memory_mb`` of address space (``RLIMIT_AS``: an allocation beyond it fails with MemoryError
inside the child) and given ``timeout_s`` of wall time per file (then it is killed). A worker
that ran out of memory, died or was killed is replaced for the next file; the others go on, and
the server's own threads (``/healthz``, ingest) never wait for one.

Each file goes through ``botyard.components.base.training_data.load_training_data`` (read,
validate, fingerprint: the one helper). What comes back is the data hash, or a ``DataCheckError``
whose reason says what kind of problem it was and never quotes the file: reasons are shown on
the audit endpoints, and a file's header or rows are its owner's data.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 120.0  # a fresh interpreter importing pandas on a loaded machine
SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # small, predictable mappings

# the kinds of failure a worker reports (never the exception's text)
NOT_FOUND = "not_found"
PERMISSION = "permission"
INVALID = "invalid"
UNREADABLE = "unreadable"
OUT_OF_MEMORY = "memory"
TIMED_OUT = "timeout"
DIED = "died"
OUTSIDE = "outside"


class DataCheckError(Exception):
    """A file the checker could not turn into a data hash; ``reason`` is safe to show (no file content)."""

    def __init__(self, kind: str, reason: str, detail: str = ""):
        self.kind = kind
        self.reason = reason
        self.detail = detail  # the worker's own message: it may quote the file, so it is never shown or logged
        super().__init__(reason)


@dataclass(frozen=True)
class Limits:
    memory_mb: int = 1024
    timeout_s: float = 60.0


# --- the worker process ------------------------------------------------------------------------------
def _outside_local_prefixes(uri: str, local_prefixes: tuple[str, ...]) -> bool:
    """A local path (a symlink, too) that really lives outside the allowed local folders."""
    if not local_prefixes or ("://" in uri and not uri.startswith("file://")):
        return False
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    real = os.path.realpath(path)
    return not any(real.startswith(os.path.realpath(p.rstrip("/")) + os.sep) for p in local_prefixes)


def _check(uri: str, local_prefixes: tuple[str, ...]) -> tuple:
    from botyard.components.base.errors import DataValidationError
    from botyard.components.base.training_data import load_training_data

    if _outside_local_prefixes(uri, local_prefixes):
        return ("error", OUTSIDE, "")
    try:
        return ("ok", load_training_data(uri).data_hash)
    except DataValidationError as exc:
        cause = exc.__cause__
        if isinstance(cause, FileNotFoundError):
            return ("error", NOT_FOUND, str(exc))
        if isinstance(cause, PermissionError):
            return ("error", PERMISSION, str(exc))
        if isinstance(cause, MemoryError):
            raise cause
        return ("error", INVALID, str(exc), exc.stage or "ingest", len(exc.problems))


def _serve(memory_mb: int, requests, replies) -> None:
    """The worker's loop: one JSON line in (``[uri, local_prefixes]``), one JSON line out, until EOF."""
    import json
    import resource

    def reply(message) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 2**20, memory_mb * 2**20))
    try:
        import botyard.components.base.training_data  # noqa: F401 - imported once, before the first file
    except MemoryError:
        reply(["error", OUT_OF_MEMORY, "importing the data readers"])
        return
    reply(["ready"])
    for line in requests:
        uri, local_prefixes = json.loads(line)
        try:
            result = _check(uri, tuple(local_prefixes))
        except MemoryError:
            result = None
        except Exception as exc:  # noqa: BLE001 - reported as a kind, never as a crash of the server
            result = ("error", UNREADABLE, f"{type(exc).__name__}: {exc}"[:2000], type(exc).__name__)
        if result is None:
            # the heap may be in any state after a failed allocation: report it and let a fresh worker take over
            reply(["error", OUT_OF_MEMORY, ""])
            return
        reply(list(result))


# --- the server's side ---------------------------------------------------------------------------------
class _Worker:
    """One ``python -m botyard.pipelines.trigger.sandbox`` child, spoken to in JSON lines over its stdin/stdout."""

    def __init__(self, limits: Limits):
        argv = [sys.executable, "-m", __name__, "--memory-mb", str(limits.memory_mb)]
        env = {**os.environ, **SINGLE_THREADED}
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, close_fds=True
        )
        message = self._read(STARTUP_TIMEOUT_S)
        if message is None or message[0] != "ready":
            self.kill()
            if message is not None and message[1] == OUT_OF_MEMORY:
                raise DataCheckError(OUT_OF_MEMORY, f"the data checker cannot start within {limits.memory_mb} MiB; raise --parse-memory-mb")
            raise DataCheckError(DIED, "the data checker process did not start")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def _read(self, timeout_s: float):
        """The next reply, None if the child died, or ``TIMED_OUT`` (the child is killed)."""
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        if not ready:
            self.kill()
            return ["error", TIMED_OUT, ""]
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(5)
            return None
        return json.loads(line)

    def run(self, uri: str, local_prefixes: tuple[str, ...], timeout_s: float) -> tuple:
        try:
            self.process.stdin.write((json.dumps([uri, list(local_prefixes)]) + "\n").encode())
            self.process.stdin.flush()
        except OSError:
            return ("error", DIED, "")
        reply = self._read(timeout_s)
        if reply is None:
            return ("error", DIED, f"exit code {self.process.returncode}")
        return tuple(reply)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(5)
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def stop(self) -> None:
        try:
            self.process.stdin.close()  # EOF: the loop ends
            self.process.wait(2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


class DataChecker:
    """``fingerprint(uri)``: the data hash of a bot's file, computed in a limited worker process.

    Thread-safe: up to ``workers`` files are read at once, one per worker; a caller beyond that
    waits for a free worker. Workers start on first use and are replaced when they die.
    """

    def __init__(self, workers: int = 2, limits: Limits | None = None, local_prefixes: tuple[str, ...] = ()):
        self.limits = limits or Limits()
        self.local_prefixes = tuple(local_prefixes)
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        self._slots = threading.BoundedSemaphore(workers)
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._closed = False
        self.replaced = 0  # workers that died, ran out of memory or time (the audit's count)

    def fingerprint(self, uri: str) -> str:
        with self._slots:
            worker = self._take()
            started = time.monotonic()
            result = worker.run(uri, self.local_prefixes, self.limits.timeout_s)
            if result[0] != "ok" and result[1] in (OUT_OF_MEMORY, TIMED_OUT, DIED):
                worker.kill()  # it exits after a MemoryError anyway: never hand it the next file
            self._give_back(worker)
        if result[0] == "ok":
            return result[1]
        kind, detail = result[1], result[2] if len(result) > 2 else ""
        error = DataCheckError(kind, self._reason(kind, result), detail)
        # the reason only: the worker's own message may quote the file, and logs travel further than the audit trail
        log.warning("trigger: data check of %s failed after %.1fs: %s", uri, time.monotonic() - started, error.reason)
        raise error

    def _reason(self, kind: str, result: tuple) -> str:
        if kind == INVALID:
            stage, problems = result[3], result[4]
            counted = f"; {problems} problem(s)" if problems else ""
            return (
                f"it is not valid training data: it would fail the pipeline's {stage} step{counted} (details are "
                "not shown here, they quote the file: run `botyard run --data URI` where the file is readable)"
            )
        return {
            NOT_FOUND: "there is no file at that URI",
            PERMISSION: "permission denied",
            OUTSIDE: "it resolves (through a link) outside the allowed locations",
            OUT_OF_MEMORY: f"reading it needed more than {self.limits.memory_mb} MiB (the limit is --parse-memory-mb)",
            TIMED_OUT: f"reading it took longer than {self.limits.timeout_s:g} s (the limit is --parse-timeout)",
            DIED: "the process reading it died",
        }.get(kind, f"it could not be read ({result[3] if len(result) > 3 else 'error'})")

    def _take(self) -> _Worker:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        worker = _Worker(self.limits)
        with self._lock:
            self._workers.append(worker)
            closed = self._closed
        if closed:
            worker.stop()
            raise DataCheckError(DIED, "the data checker is shut down")
        return worker

    def _give_back(self, worker: _Worker) -> None:
        if worker.alive:
            self._idle.put(worker)
            return
        worker.kill()
        with self._lock:
            self.replaced += 1
            if worker in self._workers:
                self._workers.remove(worker)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="botyard trigger: the data-check worker (started by DataChecker)")
    parser.add_argument("--memory-mb", type=int, required=True)
    args = parser.parse_args(argv)
    _serve(args.memory_mb, sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
