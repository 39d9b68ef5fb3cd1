"""``botyard bench --suite trigger``: the event trigger service over HTTP on 127.0.0.1.

Protocol (a real ``botyard trigger-server`` subprocess on SQLite in a temporary folder, the
stub back end below instead of KFP; the client threads share the machine's cores with it):

1. Ingest: ``INGEST_REQUESTS`` signed events (``INGEST_BOTS`` bots, unique event ids, about
   150-byte bodies) sent by ``CLIENT_THREADS`` threads over keep-alive connections after
   ``WARMUP_REQUESTS``; the quiet period is an hour, so the figure is the HTTP + HMAC +
   durable-commit path alone. Every answer must be a 202.
2. Fleet: ``FLEET`` bots each change once (one small CSV each, all different), sent as in 1;
   the server runs with ``--quiet-period FLEET_QUIET_S`` and ``--max-concurrent-runs FLEET``
   (the whole fleet may run at once). Timed from the first event sent until every bot's batch
   is in state submitted (the SQLite file is read beside the server), and from the last 202 to
   then. Dispatching overlaps the sending: a bot is due one quiet period after its own event.
   Each dispatch reads, validates and hashes the bot's data file in the sandboxed data-check
   workers (``--parse-workers 2``).
3. Sustained mixed load (``sustained_load``, ``LOAD_SECONDS``): ``CLIENT_THREADS`` keep-alive
   clients for a minute, each cycling a signed event (202), an unsigned one (401, or 429 once
   its address is over the refusal budget), ``/healthz`` (200) and an audit read with the read
   token (200). Any other answer or a dropped connection is an error; the server's resident
   memory is sampled every 0.5 s, and the refused requests stored are counted against the cap.

The stub submitter returns a run id at once and never calls out; its runs stay "running".
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from botyard.components.base.net import free_port
from botyard.pipelines.bench.stats import percentile
from botyard.pipelines.trigger import READ_TOKEN_ENV, SECRET_ENV

INGEST_REQUESTS = 2000
INGEST_BOTS = 200
WARMUP_REQUESTS = 50
CLIENT_THREADS = 4
FLEET = 1000
FLEET_QUIET_S = 1.0
BENCH_SECRET = "bench-webhook-secret-" + "0" * 32
BENCH_READ_TOKEN = "bench-read-token-" + "0" * 32
DATA_PREFIX = "gs://botyard-data/"
LOAD_SECONDS = 60.0
LOAD_MAX_REJECTED = 1000


# --- the stub back end (imported by the server subprocess through --submitter/--run-state) -----------
def stub_submit(bot_id: str, data_uri: str, data_hash: str, trigger: str) -> str:
    return f"stub-{bot_id}-{uuid.uuid4().hex[:8]}"


def stub_run_state(run_id: str) -> str:
    return "running"


# --- the server and its clients ---------------------------------------------------------------------------
@contextlib.contextmanager
def trigger_server(db_url: str, log_path: str, *args: str, module: str = __name__):
    """A ``botyard trigger-server`` subprocess with the stub back end (``module``'s); yields ``(port, Popen)``."""
    port = free_port()
    env = {**os.environ, SECRET_ENV: BENCH_SECRET, READ_TOKEN_ENV: BENCH_READ_TOKEN}
    argv = [
        sys.executable, "-m", "botyard.pipelines.cli", "trigger-server", "--host", "127.0.0.1", "--port", str(port),
        "--db-url", db_url, "--submitter", f"{module}:stub_submit", "--run-state", f"{module}:stub_run_state",
        "--allowed-data-prefix", DATA_PREFIX, *args,
    ]  # fmt: skip
    with open(log_path, "ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the trigger server exited with {process.returncode}; see {log_path}")
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the trigger server was not ready after 60 s; see {log_path}")
            time.sleep(0.1)
        yield port, process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _signed(payload: dict) -> tuple[bytes, dict]:
    from botyard.pipelines.trigger.auth import signed_headers

    body = json.dumps(payload).encode()
    return body, {**signed_headers(body, BENCH_SECRET.encode()), "Content-Type": "application/json"}


def sustained_load(port: int, pid: int, seconds: float, threads: int = CLIENT_THREADS) -> dict:
    """Mixed load for ``seconds`` from ``threads`` keep-alive clients; counts, errors and the server's RSS (MiB)."""
    import psutil

    server = psutil.Process(pid)
    stop = threading.Event()
    lock = threading.Lock()
    counts: dict[str, int] = {}
    errors: list[str] = []
    rss: list[float] = [server.memory_info().rss / 2**20]
    read = {"Authorization": f"Bearer {BENCH_READ_TOKEN}"}

    def sample() -> None:
        while not stop.wait(0.5):
            with contextlib.suppress(psutil.Error):
                rss.append(server.memory_info().rss / 2**20)

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = 0
        try:
            while not stop.is_set():
                i += 1
                bot = f"load-{n}-{i % 50}"
                event = {"bot_id": bot, "data_uri": f"{DATA_PREFIX}{bot}/nlu.yml", "event_id": f"load-{n}-{i}"}
                body, headers = _signed(event)
                unsigned = json.dumps(event).encode()
                for method, path, payload, head, ok in (
                    ("POST", "/events", body, headers, (202,)),
                    ("POST", "/events", unsigned, {"Content-Type": "application/json"}, (401, 429)),
                    ("GET", "/healthz", None, {}, (200,)),
                    ("GET", f"/bots/{bot}/runs?limit=5", None, read, (200,)),
                ):
                    conn.request(method, path, body=payload, headers=head)
                    response = conn.getresponse()
                    text = response.read()
                    key = f"{method} {path.split('?')[0] if not path.startswith('/bots/') else '/bots/{id}/runs'} {response.status}"
                    with lock:
                        counts[key] = counts.get(key, 0) + 1
                    if response.status not in ok:
                        with lock:
                            errors.append(f"{method} {path}: HTTP {response.status}: {text[:200]!r}")
        except (OSError, http.client.HTTPException) as exc:
            if not stop.is_set():
                with lock:
                    errors.append(f"connection: {type(exc).__name__}: {exc}")
        finally:
            conn.close()

    sampler = threading.Thread(target=sample, daemon=True)
    workers = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(threads)]
    started = time.perf_counter()
    sampler.start()
    for w in workers:
        w.start()
    stop.wait(seconds)
    stop.set()
    for w in workers:
        w.join(60)
    sampler.join(5)
    elapsed = time.perf_counter() - started
    total = sum(counts.values())
    return {
        "seconds": round(elapsed, 1), "requests": total, "requests_per_s": round(total / elapsed, 1), "errors": errors,
        "counts": dict(sorted(counts.items())), "rss_start_mb": round(rss[0], 1), "rss_peak_mb": round(max(rss), 1),
        "rss_end_mb": round(rss[-1], 1),
    }  # fmt: skip


def _post_all(port: int, requests: list[tuple[bytes, dict]], threads: int) -> list[float]:
    """Send ``requests`` from ``threads`` keep-alive clients; per-request milliseconds. Raises on a non-202."""
    times: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(share: list[tuple[bytes, dict]]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        try:
            for body, headers in share:
                started = time.perf_counter()
                conn.request("POST", "/events", body=body, headers=headers)
                response = conn.getresponse()
                text = response.read()
                mine.append((time.perf_counter() - started) * 1000)
                if response.status != 202:
                    errors.append(f"HTTP {response.status}: {text[:200]!r}")
                    return
        finally:
            conn.close()
            with lock:
                times.extend(mine)

    workers = [threading.Thread(target=client, args=(requests[i::threads],)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise RuntimeError(f"{len(errors)} bench request(s) failed, e.g. {errors[0]}")
    return times


def run(output_dir: str) -> dict:
    """Run the trigger suite; returns JSON-able figures (server logs go to ``output_dir/trigger``)."""
    from botyard.pipelines.trigger.event_store import Store

    logs = os.path.join(output_dir, "trigger")
    os.makedirs(logs, exist_ok=True)
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="work-", dir=logs) as work:
        # --- 1. ingest throughput ----------------------------------------------------------------
        db_url = f"sqlite:///{work}/ingest.db"
        with trigger_server(db_url, os.path.join(logs, "ingest.log"), "--quiet-period", "3600") as (port, _):
            def event(i: int) -> tuple[bytes, dict]:
                return _signed({"bot_id": f"bot-{i % INGEST_BOTS}", "data_uri": f"{DATA_PREFIX}bot-{i % INGEST_BOTS}/nlu.yml",
                                "event_id": f"ingest-{i}", "trigger": "bench"})

            _post_all(port, [event(-1 - i) for i in range(WARMUP_REQUESTS)], CLIENT_THREADS)
            requests = [event(i) for i in range(INGEST_REQUESTS)]
            started = time.perf_counter()
            times = _post_all(port, requests, CLIENT_THREADS)
            elapsed = time.perf_counter() - started
        figures.update(
            ingest_requests=INGEST_REQUESTS,
            ingest_client_threads=CLIENT_THREADS,
            events_accepted_per_s=round(INGEST_REQUESTS / elapsed, 0),
            accept_latency_p50_ms=round(percentile(times, 0.50), 2),
            accept_latency_p99_ms=round(percentile(times, 0.99), 2),
            accept_latency_mean_ms=round(statistics.fmean(times), 2),
        )

        # --- 2. a fleet of bots through to submitted runs ----------------------------------------
        data_dir = Path(work, "data")
        data_dir.mkdir()
        uris = []
        for i in range(FLEET):
            path = data_dir / f"bot-{i}.csv"
            rows = "".join(f"{word} {i} {k},{intent}\n" for word, intent in (("hello", "greet"), ("bye", "bye")) for k in range(5))
            path.write_text("text,intent\n" + rows, encoding="utf-8")  # valid: two intents, five examples each
            uris.append(str(path))
        db_path = os.path.join(work, "fleet.db")
        with trigger_server(f"sqlite:///{db_path}", os.path.join(logs, "fleet.log"), "--quiet-period", str(FLEET_QUIET_S),
                            "--max-concurrent-runs", str(FLEET), "--poll-interval", "0.1", "--run-poll-interval", "60",
                            "--allow-local-data", "--allowed-data-prefix", f"{data_dir}/") as (port, _):
            requests = [_signed({"bot_id": f"bot-{i}", "data_uri": uris[i], "event_id": f"fleet-{i}"}) for i in range(FLEET)]
            started = time.perf_counter()
            _post_all(port, requests, CLIENT_THREADS)
            accepted = time.perf_counter()
            store = Store(f"sqlite:///{db_path}", create=False)
            try:
                while True:
                    submitted = store.state_counts().get("submitted", 0)
                    if submitted >= FLEET:
                        break
                    if time.perf_counter() - accepted > 600:
                        raise RuntimeError(f"only {submitted} of {FLEET} bots were submitted after 600 s")
                    time.sleep(0.05)
                done = time.perf_counter()
            finally:
                store.close()
        figures.update(
            fleet_bots=FLEET,
            fleet_quiet_period_s=FLEET_QUIET_S,
            fleet_all_accepted_s=round(accepted - started, 2),
            fleet_first_event_to_all_submitted_s=round(done - started, 2),
            fleet_last_accept_to_all_submitted_s=round(done - accepted, 2),
            submitter="stub: returns a run id at once, no KFP call",
            database="SQLite (WAL, synchronous=FULL)",
        )

        # --- 3. a minute of mixed load ---------------------------------------------------------------
        db_path = os.path.join(work, "load.db")
        with trigger_server(f"sqlite:///{db_path}", os.path.join(logs, "load.log"), "--quiet-period", "3600",
                            "--max-rejected-records", str(LOAD_MAX_REJECTED), "--poll-interval", "0.5") as (port, process):
            load = sustained_load(port, process.pid, LOAD_SECONDS)
            time.sleep(1.0)  # one more dispatcher pass prunes the refused requests
            store = Store(f"sqlite:///{db_path}", create=False)
            try:
                rejected_stored = store.state_counts()["rejected"]
            finally:
                store.close()
        if load["errors"]:
            raise RuntimeError(f"{len(load['errors'])} request(s) failed under load, e.g. {load['errors'][0]}")
        figures.update(
            load_seconds=load["seconds"], load_requests=load["requests"], load_requests_per_s=load["requests_per_s"],
            load_errors=0, load_answers=load["counts"], load_rss_start_mb=load["rss_start_mb"],
            load_rss_peak_mb=load["rss_peak_mb"], load_rss_end_mb=load["rss_end_mb"],
            load_rejected_stored=rejected_stored, load_rejected_cap=LOAD_MAX_REJECTED,
        )  # fmt: skip
    return {
        "description": "Event trigger service: signed events accepted per second, and 1,000 bots' changes to submitted runs",
        "protocol": [
            f"a real `botyard trigger-server` subprocess on 127.0.0.1 with SQLite; {os.cpu_count()} CPU cores shared "
            "by the server and the load generator",
            f"ingest: {INGEST_REQUESTS} signed events ({INGEST_BOTS} bots) from {CLIENT_THREADS} keep-alive client "
            f"threads after {WARMUP_REQUESTS} warm-up requests; every answer a 202 (stored before it was sent)",
            f"fleet: {FLEET} bots change once (a small CSV each); quiet period {FLEET_QUIET_S:g} s, cap {FLEET} runs; "
            "timed from the first event sent (and from the last 202) to the last batch in state submitted; "
            "each dispatch hashes its data file",
            f"load: {LOAD_SECONDS:g} s of {CLIENT_THREADS} keep-alive clients cycling a signed event, an unsigned one, "
            "/healthz and an audit read; every answer checked, the server's RSS sampled every 0.5 s, refused "
            f"requests stored capped at {LOAD_MAX_REJECTED}",
            "the submitter is a stub that returns a run id at once: the figure is the trigger's own cost, not KFP's",
        ],
        **figures,
    }
