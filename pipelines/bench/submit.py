"""``botyard bench --suite submit``: 1,000 bots' training submissions through ``submit_bot_run``.

Protocol (everything in this process, on 127.0.0.1):

1. Write ``BOTS`` small training CSVs (3 intents x 6 utterances each, every file different).
2. Start the KFP API stub (``botyard.pipelines.bench.kfp_stub``, which the tests use too: a
   ThreadingHTTPServer that answers the v2beta1 REST calls kfp.Client 2.17 makes and keeps
   everything in memory).
3. First submission (compiles bot_training, uploads the pipeline and its version, creates the
   bot's experiment) is timed on its own; it pays the one-time costs.
4. ``BOTS`` submissions, one per bot, sequentially, as one trigger-service thread does: each
   reads, validates and hashes the bot's file, looks up the pipeline version (reused), creates
   the bot's experiment and starts a labelled run; one shared kfp.Client (``client_for``).
5. The same for ``THREADS`` threads sharing that client, on a new set of bots.

The figure is botyard's and kfp.Client's cost per submission plus loopback HTTP to a fake that
does almost nothing; a real KFP API server (database writes, Argo workflow creation) is slower.
"""

from __future__ import annotations

import csv
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from botyard.pipelines.bench.kfp_stub import FakeKfp
from botyard.pipelines.bench.stats import percentile

BOTS = 1000
THREADS = 4
INTENTS = {
    "greet": ["hello", "hi there", "good morning", "hey", "greetings", "howdy"],
    "bye": ["goodbye", "see you later", "bye now", "farewell", "catch you later", "ciao"],
    "order": ["order a pizza", "i want food", "get me a burger", "deliver dinner", "buy lunch", "order noodles"],
}


def _write_bots(folder: str, prefix: str, n: int) -> list[tuple[str, str]]:
    bots = []
    for i in range(n):
        bot_id = f"{prefix}-{i:04d}"
        path = os.path.join(folder, f"{bot_id}.csv")
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "intent"])
            for intent, texts in INTENTS.items():
                for text in texts:
                    w.writerow([f"{text} {i}", intent])  # a different data hash per bot
        bots.append((bot_id, path))
    return bots


def run(output_dir: str) -> dict:
    from botyard.pipelines.kfp.parameters import data_fingerprint
    from botyard.pipelines.kfp.runs import submit_bot_run

    output_dir = os.path.abspath(output_dir)  # data URIs sent to a cluster must be absolute
    os.makedirs(output_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="submit-", dir=output_dir) as tmp, FakeKfp() as kfp:
        models_root = os.path.join(tmp, "models")
        sequential = _write_bots(tmp, "seq", BOTS)
        threaded = _write_bots(tmp, "par", BOTS)
        warm_bot, warm_path = _write_bots(tmp, "warm", 1)[0]

        started = time.perf_counter()
        first = submit_bot_run(warm_bot, warm_path, host=kfp.url, models_root=models_root, trigger="bench")
        first_s = time.perf_counter() - started
        requests_before = len(kfp.requests)

        latencies = []
        started = time.perf_counter()
        for bot_id, path in sequential:
            t0 = time.perf_counter()
            run_ = submit_bot_run(bot_id, path, host=kfp.url, models_root=models_root, trigger="bench")
            latencies.append(time.perf_counter() - t0)
            if run_.pipeline_uploaded or run_.pipeline_version != first.pipeline_version:
                raise RuntimeError(f"submission of {bot_id} uploaded the pipeline again: version reuse is broken")
        total_s = time.perf_counter() - started
        requests_per_submit = (len(kfp.requests) - requests_before) / BOTS

        started = time.perf_counter()
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(lambda b: submit_bot_run(b[0], b[1], host=kfp.url, models_root=models_root, trigger="bench"), threaded))
        threaded_s = time.perf_counter() - started

        hash_started = time.perf_counter()
        for _, path in sequential[:200]:
            data_fingerprint(path)
        hash_ms = (time.perf_counter() - hash_started) / 200 * 1000
        runs_created = len(kfp.runs)
        uploads = len(kfp.calls("POST", "/pipelines/upload")) + len(kfp.calls("POST", "/pipelines/upload_version"))
        if kfp.crashes:
            raise RuntimeError(f"the KFP fake failed during the bench: {kfp.crashes[0]!r}")

    return {
        "description": f"{BOTS:,} bots' training submissions through submit_bot_run against an in-process KFP API fake",
        "protocol": [
            f"{BOTS} bots, one small CSV each (18 utterances, every file different); the KFP v2beta1 stub on 127.0.0.1 "
            f"in this process; {os.cpu_count()} CPU cores shared by client and fake",
            "first submission timed alone: compiles bot_training, uploads pipeline + version, creates the experiment",
            "then one submission per bot, sequentially: read + validate + hash the data, look the version up (reused), "
            "create the bot's experiment, start a labelled run; one shared kfp.Client",
            f"then {BOTS} more bots from {THREADS} threads sharing that client",
            "a real KFP API server does more per run (database, Argo workflow): these are botyard's and kfp.Client's costs",
        ],
        "bots": BOTS,
        "first_submission_s": round(first_s, 3),
        "total_s": round(total_s, 2),
        "runs_per_s": round(BOTS / total_s, 1),
        "submit_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "submit_p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "http_requests_per_submission": round(requests_per_submit, 2),
        "data_hash_ms": round(hash_ms, 2),
        f"threads_{THREADS}_total_s": round(threaded_s, 2),
        f"threads_{THREADS}_runs_per_s": round(BOTS / threaded_s, 1),
        "runs_created": runs_created,
        "upload_requests": uploads,  # 2: the pipeline and its version, once
    }
