"""``botyard bench --suite serving-fleet``: 1,000 bots in one predictor under a memory budget.

Protocol (every figure client-observed over loopback; the predictor a real ``botyard serve``
subprocess started with ``start_predictor``):

1. Train two 15-intent bots: the first two CLINC150 domains (``<data>/clinc150``; the sample
   bot and half of it when the data is not there), tuned ``TrainConfig`` with ``epochs``
   capped at ``TRAIN_EPOCHS``.
2. Build a store of ``BOTS`` bots: the two versions registered once, then linked under the
   other bot ids (``ModelStore.stage``: a bot id costs the server a full load either way;
   1,000 copies of the files would only fill the disk).
3. Start ``botyard serve --memory-budget BUDGET --preload-most-requested HOT``; time from
   the process start to ``/v2/health/ready``.
4. ``TRAFFIC_SECONDS`` of traffic: ``ZIPF_CLIENTS`` closed-loop clients send V1
   single-utterance requests to bots drawn from a Zipf distribution (exponent ``ZIPF_S``,
   fixed seed) -- the long tail keeps the predictor loading and evicting; one probe client
   sends a request every ``PROBE_INTERVAL_S`` to one of the ``HOT`` most popular bots (hot-bot
   latency); every ``PROMOTE_EVERY_S`` the other model is promoted for a popular and a tail
   bot. RSS of the process is sampled every 0.2 s.
5. Cold-load latency: each load's time as the predictor logs it (load + warm-up), and the
   latency of the Zipf requests that had to wait for one.
6. ``LOAD_SECONDS`` of bounded mixed load (good V1/V2, malformed, over-limit and unknown-bot
   requests) on the hot bots: every request must get its expected status; RSS before/after.
"""

from __future__ import annotations

import bisect
import csv
import itertools
import logging
import os
import random
import re
import statistics
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path

from botyard.components.base import contracts as c
from botyard.components.base.config import TrainConfig
from botyard.components.base.model_store import ModelStore

log = logging.getLogger(__name__)

BOTS = 1000
BUDGET = 2 * 2**30
HOT = 10
ZIPF_S = 1.1
ZIPF_CLIENTS = 2
TRAFFIC_SECONDS = 150.0
PROBE_INTERVAL_S = 0.02
PROMOTE_EVERY_S = 20.0
LOAD_SECONDS = 60.0
TRAIN_EPOCHS = 5
SEED = 7
TARGETS = [  # (figure, op, value)
    ("ready_seconds", "<=", 10.0),
    ("rss_max_over_budget", "<=", 1.10),
    ("hot_latency_p50_ms", "<=", 5.0),
    ("hot_latency_p99_ms", "<=", 15.0),
    ("cold_load_p99_s", "<=", 1.5),
    ("failed_requests", "<=", 0),
]
_LOAD_LINE = re.compile(r"bot (\S+): (?:loaded|now serving) version \S+ in ([0-9.]+)s \((\w+)\)")


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _two_bots(data_dir: str | None):
    """Two training tables of about 15 intents, their held-out utterances, and where they come from."""
    from botyard.components.base.data_formats import read_training_data
    from botyard.components.base.table import make_table

    if data_dir and (Path(data_dir) / "clinc150" / "data_full.json").exists():
        from botyard.pipelines.bench.clinc import load_clinc

        data, domains = load_clinc(data_dir)
        tables, heldout = [], []
        for domain in sorted(domains)[:2]:
            intents = set(domains[domain])
            tables.append(make_table({"utterance": u, "intent": i} for u, i in data["train"] if i in intents))
            heldout += [u for u, i in data["test"] if i in intents]
        return tables, heldout, f"CLINC150 domains {', '.join(sorted(domains)[:2])} (15 intents each)"
    folder = resources.files("botyard.pipelines") / "sample_bot"
    table = read_training_data(str(folder / "nlu.yml"))
    with open(str(folder / "heldout.csv"), encoding="utf-8") as f:
        heldout = [row["text"] for row in csv.DictReader(f)]
    intents = sorted(table[c.INTENT].unique())
    half = table[table[c.INTENT].isin(intents[: len(intents) // 2])].reset_index(drop=True)
    return [table, half], heldout, "the sample bot and its first half (CLINC150 not found)"


def _train(table, out_dir: str, config: TrainConfig) -> tuple[str, dict]:
    from botyard.components.base.table import data_hash
    from botyard.pipelines.in_process import train_model

    result = train_model(table, table.iloc[:0], config, out_dir)
    meta = {
        c.DATA_HASH: data_hash(table), c.LABELS: result.labels, c.OOS_THRESHOLD: 0.5,
        c.HYPERPARAMETERS: config.to_dict(), c.METRICS: {},
    }  # fmt: skip
    return os.path.join(out_dir, c.SAVED_MODEL_DIR), meta


def _zipf_sampler(n: int, s: float, seed: int):
    weights = list(itertools.accumulate(1.0 / (k**s) for k in range(1, n + 1)))
    rng = random.Random(seed)
    return lambda: bisect.bisect(weights, rng.random() * weights[-1])


def _metric(text: str, name: str, **labels) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        s.value for f in text_string_to_metric_families(text) for s in f.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )  # fmt: skip


def run(context) -> dict:
    """Run the suite; returns JSON-able figures (the predictor's log goes to ``output_dir/serving-fleet``)."""
    import psutil

    from botyard.components.base.predictor_client import PredictorClient, start_predictor

    from botyard.pipelines.bench.harness import LATENCY_CALLS

    quick = context.latency_calls < LATENCY_CALLS  # ``botyard bench --quick``: a short look at the harness
    n_bots, traffic_s, load_s = (100, 20.0, 10.0) if quick else (BOTS, TRAFFIC_SECONDS, LOAD_SECONDS)
    logs = os.path.join(context.output_dir, "serving-fleet")
    os.makedirs(logs, exist_ok=True)
    log_path = os.path.join(logs, "predictor.log")
    if os.path.exists(log_path):
        os.remove(log_path)
    figures: dict = {"bots": n_bots, "memory_budget_mib": BUDGET // 2**20, "zipf_s": ZIPF_S, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="botyard-bench-fleet-") as work:
        tables, heldout, source = _two_bots(context.data_dir)
        started = time.perf_counter()
        trained = []
        for k, table in enumerate(tables):
            out = os.path.join(work, "trained", str(k))
            os.makedirs(out)
            trained.append(_train(table, out, context.train_config if quick else TrainConfig(epochs=TRAIN_EPOCHS)))
        figures["train_seconds"] = round(time.perf_counter() - started, 1)
        figures["intents"] = [int(t[c.INTENT].nunique()) for t in tables]
        store = ModelStore(os.path.join(work, "models"))
        originals = [store.register(f"model-{k}", model_dir, meta) for k, (model_dir, meta) in enumerate(trained)]
        version_dirs = [store.version_dir(f"model-{k}", v) for k, v in enumerate(originals)]
        figures["model_size_mib"] = [round(sum(f.stat().st_size for f in Path(d).rglob("*") if f.is_file()) / 2**20, 1) for d in version_dirs]
        bots = [f"bot-{i:04d}" for i in range(n_bots)]
        for i, bot in enumerate(bots):
            store.stage(version_dirs[i % 2], bot)
        hot = bots[:HOT]
        extra = ["--memory-budget", str(BUDGET), "--preload-most-requested", str(HOT), "--popularity-window", "60"]

        started = time.perf_counter()
        with start_predictor(store.root, reload_interval=2.0, extra_args=extra, ready_timeout=300, log_path=log_path) as p:
            figures["ready_seconds"] = round(time.perf_counter() - started, 2)
            process = psutil.Process(p.process.pid)
            figures["rss_at_ready_mib"] = round(process.memory_info().rss / 2**20)
            figures["load_average_1m_at_start"] = round(os.getloadavg()[0], 2)
            stop = threading.Event()
            rss_samples: list[float] = []
            zipf_results: list[tuple[str, float, int]] = []
            probe_results: list[tuple[float, int]] = []
            promotions: list[str] = []

            def sample_rss():
                while not stop.is_set():
                    rss_samples.append(process.memory_info().rss / 2**20)
                    time.sleep(0.2)

            def zipf_client(seed: int):
                draw = _zipf_sampler(n_bots, ZIPF_S, seed)
                client = PredictorClient(p.host, p.port, timeout=120)
                rng = random.Random(seed)
                while not stop.is_set():
                    bot = bots[draw()]
                    t = time.perf_counter()
                    status, _ = client.predict(bot, [rng.choice(heldout)])
                    zipf_results.append((bot, time.perf_counter() - t, status))
                client.close()

            warm = PredictorClient(p.host, p.port, timeout=120)
            for bot in hot:  # the popular bots load first: the probe measures hot bots
                warm.predict(bot, ["hello"])
            warm.close()

            def probe():
                client = PredictorClient(p.host, p.port)
                rng = random.Random(SEED)
                while not stop.is_set():
                    t = time.perf_counter()
                    status, _ = client.predict(rng.choice(hot), [rng.choice(heldout)])
                    probe_results.append((time.perf_counter() - t, status))
                    time.sleep(PROBE_INTERVAL_S)
                client.close()

            def promote():
                rng = random.Random(SEED)
                turn = 0
                while not stop.wait(PROMOTE_EVERY_S):
                    for bot in (hot[turn % HOT], bots[rng.randrange(HOT, n_bots)]):
                        index = bots.index(bot)
                        target = version_dirs[(index + turn + 1) % 2]
                        version = os.path.basename(target)
                        if version in store.versions(bot):
                            store.promote(bot, version)
                        else:
                            store.stage(target, bot)
                        promotions.append(bot)
                    turn += 1

            threads = [threading.Thread(target=sample_rss), threading.Thread(target=probe), threading.Thread(target=promote)]
            threads += [threading.Thread(target=zipf_client, args=(SEED + k,)) for k in range(ZIPF_CLIENTS)]
            for t in threads:
                t.start()
            time.sleep(traffic_s)
            figures["load_average_1m"] = round(os.getloadavg()[0], 2)
            stop.set()
            for t in threads:
                t.join(timeout=180)
            metrics = p.request("GET", "/metrics")[1]

            # --- bounded mixed load on the hot bots --------------------------------------------
            mixed, rss_before = _mixed_load(p, hot, heldout, load_s, process)
            rss_after = process.memory_info().rss / 2**20

        with open(log_path, encoding="utf-8", errors="replace") as f:
            loads = [(m.group(1), float(m.group(2)), m.group(3)) for m in _LOAD_LINE.finditer(f.read())]

    cold = [s for _, s, reason in loads if reason == "cold"]
    probe_ok = [lat * 1000 for lat, status in probe_results if status == 200]
    zipf_lat = [lat * 1000 for _, lat, status in zipf_results if status == 200]
    failed = sum(status != 200 for _, _, status in zipf_results) + sum(status != 200 for _, status in probe_results)
    waited = [lat for lat in zipf_lat if lat >= 200]  # answered only after a load (a load takes far longer)
    figures.update(
        source=source,
        traffic_seconds=traffic_s,
        requests=len(zipf_results) + len(probe_results),
        zipf_requests=len(zipf_results),
        distinct_bots_requested=len({b for b, _, _ in zipf_results}),
        failed_requests=failed,
        hot_requests=len(probe_results),
        hot_latency_p50_ms=round(_percentile(probe_ok, 0.5), 2) if probe_ok else None,
        hot_latency_p99_ms=round(_percentile(probe_ok, 0.99), 2) if probe_ok else None,
        zipf_latency_p50_ms=round(_percentile(zipf_lat, 0.5), 1) if zipf_lat else None,
        zipf_latency_p99_ms=round(_percentile(zipf_lat, 0.99), 1) if zipf_lat else None,
        requests_that_waited_for_a_load=len(waited),
        waited_latency_p50_s=round(_percentile(waited, 0.5) / 1000, 2) if waited else None,
        waited_latency_p99_s=round(_percentile(waited, 0.99) / 1000, 2) if waited else None,
        cold_loads=len(cold),
        cold_load_p50_s=round(_percentile(cold, 0.5), 2) if cold else None,
        cold_load_p99_s=round(_percentile(cold, 0.99), 2) if cold else None,
        swaps=sum(reason == "swap" for _, _, reason in loads),
        promotions=len(promotions),
        evictions=int(_metric(metrics, "botyard_model_evictions_total")),
        loaded_bots_at_end=int(_metric(metrics, "botyard_loaded_bots")),
        rss_max_mib=round(max(rss_samples)) if rss_samples else None,
        rss_median_mib=round(statistics.median(rss_samples)) if rss_samples else None,
        mixed_load_seconds=load_s,
        mixed_load_requests=mixed["requests"],
        mixed_load_unexpected=mixed["unexpected"],
        mixed_load_rss_before_mib=round(rss_before),
        mixed_load_rss_after_mib=round(rss_after),
    )
    if figures["rss_max_mib"]:
        figures["rss_max_over_budget"] = round(figures["rss_max_mib"] / (BUDGET / 2**20), 3)
        figures["rss_per_loaded_bot_mib"] = round(
            (figures["rss_median_mib"] - figures["rss_at_ready_mib"]) / max(1, figures["loaded_bots_at_end"]), 1
        )
    targets = []
    for figure, op, value in TARGETS:
        measured = figures.get(figure)
        met = None if measured is None else (measured <= value if op == "<=" else measured >= value)
        targets.append({"figure": figure, "system": "predictor", "op": op, "value": value, "measured": measured, "met": met})
    notes = [
        f"{n_bots} bots: 2 trained versions ({source}) linked under {n_bots} bot ids; each bot id is loaded on its own.",
        f"Traffic: {ZIPF_CLIENTS} closed-loop clients, bots drawn from Zipf(s={ZIPF_S}); a probe every "
        f"{PROBE_INTERVAL_S * 1000:.0f} ms to one of the {HOT} most popular bots (kept loaded by "
        f"--preload-most-requested {HOT}); a popular and a tail bot promoted every {PROMOTE_EVERY_S:.0f} s.",
        "Cold-load times are the predictor's own (load + warm-up replay, from its log); 'waited' requests are "
        "Zipf requests slower than 200 ms, i.e. ones that had to wait for a load (queued behind other loads too).",
        "The 2 CPU cores are shared with other work on this machine (load average recorded): latency p99 and load "
        "times move most with it.",
    ]
    return {
        "description": f"{n_bots} bots in one predictor under a {BUDGET // 2**30} GiB memory budget, Zipf traffic",
        "protocol": [
            f"ready: process start to /v2/health/ready with {n_bots} bots in the store",
            f"{traffic_s:.0f} s of Zipf traffic with promotions; RSS sampled every 0.2 s",
            f"{load_s:.0f} s of mixed good/bad requests on the hot bots",
        ],
        **figures,
        "targets": targets,
        "notes": notes,
        "markdown": _markdown(figures, targets, notes),
    }


def _mixed_load(p, hot: list[str], heldout: list[str], seconds: float, process) -> tuple[dict, float]:
    """Two clients, good and bad requests in turn; counts answers whose status was not the expected one."""
    from botyard.components.base.predictor_client import PredictorClient

    mix = [
        (lambda c, b: c.predict(b, [heldout[0]]), 200),
        (lambda c, b: c.infer(b, heldout[:3]), 200),
        (lambda c, b: c.request("POST", f"/v1/models/{b}:predict", '{"instances": ['), 400),
        (lambda c, b: c.predict(b, ["x" * 10_000]), 413),
        (lambda c, b: c.predict("no-such-bot", ["hi"]), 404),
    ]
    counts = {"requests": 0, "unexpected": 0}
    lock = threading.Lock()

    def client_loop(seed: int, duration: float):
        client = PredictorClient(p.host, p.port)
        rng = random.Random(seed)
        deadline = time.monotonic() + duration
        i = 0
        while time.monotonic() < deadline:
            send, expected = mix[i % len(mix)]
            status = send(client, rng.choice(hot))[0]
            with lock:
                counts["requests"] += 1
                counts["unexpected"] += status != expected
            i += 1
        client.close()

    client_loop(0, min(5.0, seconds))  # warm-up, not counted
    counts.update(requests=0, unexpected=0)
    rss_before = process.memory_info().rss / 2**20
    threads = [threading.Thread(target=client_loop, args=(k, seconds)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts, rss_before


def _markdown(figures: dict, targets: list[dict], notes: list[str]) -> str:
    titles = {
        "ready_seconds": "start to ready (s)",
        "rss_at_ready_mib": "RSS at ready (MiB)",
        "hot_latency_p50_ms": "hot bot V1 latency p50 (ms)",
        "hot_latency_p99_ms": "hot bot V1 latency p99 (ms)",
        "cold_loads": "cold loads",
        "cold_load_p50_s": "cold load p50 (s)",
        "cold_load_p99_s": "cold load p99 (s)",
        "requests_that_waited_for_a_load": "requests that waited for a load",
        "waited_latency_p50_s": "their latency p50 (s)",
        "waited_latency_p99_s": "their latency p99 (s)",
        "zipf_requests": "Zipf requests",
        "distinct_bots_requested": "distinct bots requested",
        "evictions": "evictions",
        "promotions": "promotions",
        "swaps": "hot swaps",
        "failed_requests": "failed requests",
        "rss_max_mib": "RSS max (MiB)",
        "rss_max_over_budget": "RSS max / budget",
        "rss_median_mib": "RSS median (MiB)",
        "loaded_bots_at_end": "bots loaded at the end",
        "rss_per_loaded_bot_mib": "RSS per loaded bot (MiB)",
        "mixed_load_requests": "mixed load: requests",
        "mixed_load_unexpected": "mixed load: unexpected statuses",
        "mixed_load_rss_before_mib": "mixed load: RSS before (MiB)",
        "mixed_load_rss_after_mib": "mixed load: RSS after (MiB)",
        "train_seconds": "training the two bots (s)",
        "load_average_1m": "machine load average (1 min)",
    }
    lines = ["| figure | value |", "| --- | ---: |"]
    lines += [f"| {title} | {figures[key]} |" for key, title in titles.items() if figures.get(key) is not None]
    lines += ["", "| target | measured | met |", "| --- | ---: | :---: |"]
    for t in targets:
        met = {True: "yes", False: "**no**", None: "–"}[t["met"]]
        lines.append(f"| {titles.get(t['figure'], t['figure'])} {t['op']} {t['value']:g} | {t['measured']} | {met} |")
    lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines)
