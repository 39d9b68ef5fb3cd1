"""``botyard bench --suite serving``: the KServe predictor measured over HTTP on 127.0.0.1.

Protocol (every figure is client-observed over loopback, one keep-alive connection, the
predictor a real ``botyard serve`` subprocess started with ``start_predictor``):

1. Train the sample bot (``pipelines/sample_bot/nlu.yml``) with the tuned ``TrainConfig``
   (``epochs`` capped at ``TRAIN_EPOCHS``: latency and memory do not depend on the epoch
   count), and a second model on the first half of its intents.
2. One-bot predictor: V1 single-utterance latency p50 / p99 over ``LATENCY_REQUESTS``
   requests (held-out utterances, after ``WARMUP_REQUESTS``), the same for V2, and
   utterances/s with V1 batches of ``BATCH``.
3. ``FLEET`` bots in one predictor: the two models registered alternately under 100 bot ids
   (copies: training 100 models would take too long; a copy costs the server as much as a
   distinct model, since every version is loaded on its own). Time from process start to
   ``/v2/health/ready`` (the store listed: bots load on their first request), the time for
   every bot to answer once (each a cold load), the sum of per-bot load times from
   ``/metrics``, and the process's resident memory once every bot has answered.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import statistics
import tempfile
import time
from importlib import resources

from botyard.components.base import contracts as c
from botyard.components.base.config import TrainConfig
from botyard.components.base.model_store import ModelStore
from botyard.pipelines.bench.stats import percentile

log = logging.getLogger(__name__)

TRAIN_EPOCHS = 5
WARMUP_REQUESTS = 50
LATENCY_REQUESTS = 1000
BATCH = 32
BATCH_REQUESTS = 100
FLEET = 100
TARGETS = [  # (figure, op, value)
    ("latency_p50_ms", "<=", 5.0),
    ("latency_p99_ms", "<=", 15.0),
    ("fleet_rss_mb", "<=", 4096.0),
]


def _sample_bot() -> tuple[str, list[str]]:
    folder = resources.files("botyard.pipelines") / "sample_bot"
    with open(str(folder / "heldout.csv"), encoding="utf-8") as f:
        heldout = [row["text"] for row in csv.DictReader(f)]
    return str(folder / "nlu.yml"), heldout


def _train(table, out_dir: str) -> dict:
    from botyard.components.base.table import data_hash
    from botyard.pipelines.in_process import train_model

    config = TrainConfig(epochs=TRAIN_EPOCHS)
    result = train_model(table, table.iloc[:0], config, out_dir)
    return {
        c.DATA_HASH: data_hash(table), c.LABELS: result.labels, c.OOS_THRESHOLD: 0.5,
        c.HYPERPARAMETERS: config.to_dict(), c.METRICS: {},
    }  # fmt: skip


def _time_requests(send, payloads: list) -> list[float]:
    times = []
    for payload in payloads:
        started = time.perf_counter()
        status, body = send(payload)
        times.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise RuntimeError(f"bench request failed with HTTP {status}: {body}")
    return times


def _rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def _load_seconds_sum(metrics_text: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        s.value for f in text_string_to_metric_families(metrics_text) for s in f.samples if s.name == "botyard_model_load_seconds"
    )


def run(output_dir: str) -> dict:
    """Run the serving suite; returns JSON-able figures (predictor logs go to ``output_dir/serving``)."""
    from botyard.components.base.data_formats import read_training_data
    from botyard.components.base.predictor_client import start_predictor

    logs = os.path.join(output_dir, "serving")
    os.makedirs(logs, exist_ok=True)
    nlu, heldout = _sample_bot()
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="work-", dir=logs) as work:
        table = read_training_data(nlu)
        intents = sorted(table[c.INTENT].unique())
        half = table[table[c.INTENT].isin(intents[: max(2, len(intents) // 2)])].reset_index(drop=True)
        started = time.perf_counter()
        models = []
        for name, data in (("full", table), ("half", half)):
            out = os.path.join(work, "trained", name)
            os.makedirs(out)
            models.append((os.path.join(out, c.SAVED_MODEL_DIR), _train(data, out)))
        figures["train_seconds"] = round(time.perf_counter() - started, 1)

        # --- one bot: latency and throughput ---------------------------------------------------
        store = ModelStore(os.path.join(work, "one"))
        store.promote("beanbot", store.register("beanbot", *models[0]))
        pool = (heldout * (1 + (WARMUP_REQUESTS + LATENCY_REQUESTS) // len(heldout)))[: WARMUP_REQUESTS + LATENCY_REQUESTS]
        with start_predictor(store.root, log_path=os.path.join(logs, "predictor-one-bot.log")) as p:
            _time_requests(lambda u: p.predict("beanbot", [u]), pool[:WARMUP_REQUESTS])
            # other work on the machine moves p99 most: record how busy it was
            figures["load_average_1m"] = round(os.getloadavg()[0], 2)
            figures["cpu_count"] = os.cpu_count()
            v1 = _time_requests(lambda u: p.predict("beanbot", [u]), pool[WARMUP_REQUESTS:])
            v2 = _time_requests(lambda u: p.infer("beanbot", [u]), pool[WARMUP_REQUESTS:])
            batch = (heldout * (1 + BATCH // len(heldout)))[:BATCH]
            _time_requests(lambda b: p.predict("beanbot", b), [batch] * 5)
            batch_times = _time_requests(lambda b: p.predict("beanbot", b), [batch] * BATCH_REQUESTS)
            figures.update(
                latency_p50_ms=round(percentile(v1, 0.50), 2),
                latency_p99_ms=round(percentile(v1, 0.99), 2),
                latency_mean_ms=round(statistics.fmean(v1), 2),
                v2_latency_p50_ms=round(percentile(v2, 0.50), 2),
                v2_latency_p99_ms=round(percentile(v2, 0.99), 2),
                latency_requests=len(v1),
                batch32_utterances_per_s=round(BATCH * BATCH_REQUESTS / (sum(batch_times) / 1000), 0),
                batch32_request_p50_ms=round(percentile(batch_times, 0.5), 2),
                one_bot_rss_mb=round(_rss_mb(p.process.pid), 0),
            )

        # --- a fleet of bots in one predictor: load time and memory ------------------------------
        fleet = ModelStore(os.path.join(work, "fleet"))
        bots = [f"bot-{i:03d}" for i in range(FLEET)]
        for i, bot in enumerate(bots):
            fleet.promote(bot, fleet.register(bot, *models[i % len(models)]))
        started = time.perf_counter()
        with start_predictor(fleet.root, ready_timeout=1800, log_path=os.path.join(logs, "predictor-fleet.log")) as p:
            figures["fleet_ready_seconds"] = round(time.perf_counter() - started, 1)
            loaded_at_ready = sum(p.ready(bot) for bot in bots)
            first_answers = time.perf_counter()
            for bot in bots:  # every bot answers once (a cold load each): memory after real use
                status, body = p.predict(bot, [heldout[0]])
                if status != 200:
                    raise RuntimeError(f"bench: bot {bot} answered HTTP {status}: {body}")
            figures["fleet_all_answered_seconds"] = round(time.perf_counter() - first_answers, 1)
            figures.update(
                fleet_bots=FLEET,
                fleet_bots_loaded_at_ready=loaded_at_ready,
                fleet_load_seconds_sum=round(_load_seconds_sum(p.request("GET", "/metrics")[1]), 1),
                fleet_rss_mb=round(_rss_mb(p.process.pid), 0),
            )
            figures["fleet_rss_per_bot_mb"] = round((figures["fleet_rss_mb"] - figures["one_bot_rss_mb"]) / (FLEET - 1), 1)
            figures["fleet_latency_p50_ms"] = round(
                percentile(_time_requests(lambda b: p.predict(b, [heldout[1]]), bots * 3), 0.5), 2
            )
        shutil.rmtree(os.path.join(work, "fleet"), ignore_errors=True)

    targets = []
    for figure, op, value in TARGETS:
        measured = figures.get(figure)
        met = None if measured is None else (measured <= value if op == "<=" else measured >= value)
        targets.append({"figure": figure, "system": "predictor", "op": op, "value": value, "measured": measured, "met": met})
    notes = [
        f"The {FLEET} bots are copies of 2 trained models registered under {FLEET} bot ids: training {FLEET} models "
        "would take too long. Each copy is a separate model version on disk and is loaded separately, so load time "
        "and memory are those of distinct models of this size.",
        f"Models: the tuned TrainConfig with epochs capped at {TRAIN_EPOCHS}, trained on the sample bot "
        f"({len(table)} utterances, {len(intents)} intents) and on its first {half[c.INTENT].nunique()} intents.",
        "Latency is client-observed over loopback with one keep-alive connection (Python http.client), "
        "so it includes the client's own overhead; the machine's cores are shared with other work.",
        "fleet_ready_seconds runs from process start (TensorFlow import included) to /v2/health/ready, when "
        "the store is listed; each bot then loads on its first request (fleet_all_answered_seconds: all of them, "
        "one after another).",
    ]
    return {
        "description": "KServe predictor (botyard serve): latency, throughput, and a 100-bot fleet's load time and memory",
        "protocol": [
            f"V1 single-utterance latency over {LATENCY_REQUESTS} requests after {WARMUP_REQUESTS} warm-up requests; V2 likewise",
            f"throughput: {BATCH_REQUESTS} V1 requests of {BATCH} utterances",
            f"fleet: {FLEET} bots in one predictor; RSS after every bot answered once",
        ],
        **figures,
        "targets": targets,
        "notes": notes,
        "markdown": _markdown(figures, targets, notes),
    }


def _markdown(figures: dict, targets: list[dict], notes: list[str]) -> str:
    titles = {
        "latency_p50_ms": "V1 batch-1 latency p50 (ms)",
        "latency_p99_ms": "V1 batch-1 latency p99 (ms)",
        "latency_mean_ms": "V1 batch-1 latency mean (ms)",
        "v2_latency_p50_ms": "V2 batch-1 latency p50 (ms)",
        "v2_latency_p99_ms": "V2 batch-1 latency p99 (ms)",
        "batch32_utterances_per_s": f"Throughput at batch {BATCH} (utterances/s)",
        "batch32_request_p50_ms": f"Batch-{BATCH} request p50 (ms)",
        "one_bot_rss_mb": "RSS, one bot (MiB)",
        "fleet_ready_seconds": f"{FLEET} bots: start to ready (s)",
        "fleet_all_answered_seconds": f"{FLEET} bots: each answering once, cold (s)",
        "fleet_load_seconds_sum": f"{FLEET} bots: sum of load + warm-up (s)",
        "fleet_rss_mb": f"{FLEET} bots: RSS (MiB)",
        "fleet_rss_per_bot_mb": "RSS per extra bot (MiB)",
        "fleet_latency_p50_ms": f"{FLEET} bots: batch-1 latency p50 (ms)",
        "train_seconds": "Training the two models (s)",
        "load_average_1m": "Machine load average (1 min) when latency was measured",
        "cpu_count": "CPU cores",
    }
    lines = ["| figure | value |", "| --- | ---: |"]
    lines += [f"| {title} | {figures[key]:,} |" for key, title in titles.items() if key in figures]
    lines += ["", "| target | measured | met |", "| --- | ---: | :---: |"]
    for t in targets:
        met = {True: "yes", False: "**no**", None: "–"}[t["met"]]
        lines.append(f"| {titles[t['figure']]} {t['op']} {t['value']:g} | {t['measured']} | {met} |")
    lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines)
