"""Many bots in one predictor: load on demand, LRU eviction, single-flight loads, honest health.

Real predictor processes (``start_predictor``, 127.0.0.1, free port) over stores of tiny
trained models registered under many bot ids; figures are read from ``/metrics``.
"""

from __future__ import annotations

import re
import statistics
import threading
import time

import pytest

from botyard.components.base.model_store import ModelStore
from botyard.components.base.predictor_client import PredictorClient, start_predictor

from predictor_models import train_tiny_models
from waiting import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return train_tiny_models(tmp_path_factory.mktemp("trained"))


def _fleet(root: str, models, n: int, prefix: str = "bot") -> tuple[ModelStore, list[str]]:
    store = ModelStore(root)
    bots = [f"{prefix}-{i:02d}" for i in range(n)]
    for i, bot in enumerate(bots):
        model_dir, meta = models["AB"[i % 2]]
        store.promote(bot, store.register(bot, model_dir, meta))
    return store, bots


@pytest.fixture(scope="module")
def unbounded(models, tmp_path_factory):
    """One predictor with no bound over 16 bots; each test uses bots no other test touched.

    ``base_rss`` is its resident memory before any bot was loaded; ``ready_after`` the seconds
    from process start to ready.
    """
    store, bots = _fleet(str(tmp_path_factory.mktemp("unbounded")), models, 16)
    started = time.monotonic()
    with start_predictor(store.root, reload_interval=0.5, ready_timeout=120) as p:
        p.ready_after = time.monotonic() - started
        p.base_rss = _value(_metrics(p), "botyard_resident_memory_bytes")
        p.store, p.bots = store, bots
        yield p


def _metrics(predictor) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    status, text = predictor.request("GET", "/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_ready_at_once_and_each_bot_loads_on_its_first_request(unbounded):
    p, store = unbounded, unbounded.store
    # ready once the store is listed: nothing is loaded yet (the process start includes
    # importing TensorFlow and KServe)
    assert p.request("GET", "/v2/health/ready") == (200, {"ready": True})
    assert p.ready_after < 60
    samples = _metrics(p)
    assert _value(samples, "botyard_known_bots") == 16
    assert _value(samples, "botyard_loaded_bots") == _value(samples, "botyard_model_loads_total", reason="cold")
    assert p.request("GET", "/v2/models")[1] == {"models": p.bots}
    for path in ("/v2/models/bot-00/ready", "/v1/models/bot-00"):
        assert p.request("GET", path) == (503, {"error": "bot 'bot-00' is not ready: not loaded: it loads on its first request"})

    loads = _value(samples, "botyard_model_loads_total", reason="cold")
    status, body = p.predict("bot-00", ["hello there"])  # a cold load, then the answer
    assert status == 200, body
    assert body["predictions"][0]["model_version"] == store.current("bot-00")
    assert p.request("GET", "/v2/models/bot-00/ready") == (200, {"name": "bot-00", "ready": True})
    assert p.request("GET", "/v2/models/bot-15/ready")[0] == 503  # still not loaded
    samples = _metrics(p)
    assert _value(samples, "botyard_model_loads_total", reason="cold") == loads + 1
    assert _value(samples, "botyard_model_load_duration_seconds_count", reason="cold") == loads + 1
    assert _value(samples, "botyard_resident_memory_bytes") > 100 * 2**20


def test_eviction_under_max_loaded_bots_and_evicted_bot_reloads(models, tmp_path):
    store, bots = _fleet(str(tmp_path / "models"), models, 4)
    with start_predictor(store.root, reload_interval=0.5, ready_timeout=120, extra_args=["--max-loaded-bots", "2"]) as p:
        for bot in bots[:3]:
            assert p.predict(bot, ["hello"])[0] == 200
        # bot-00 was least recently used when bot-02 needed room
        assert [p.ready(b) for b in bots] == [False, True, True, False]
        samples = _metrics(p)
        assert _value(samples, "botyard_loaded_bots") == 2
        assert _value(samples, "botyard_model_evictions_total", reason="max_loaded_bots") == 1
        assert _value(samples, "botyard_max_loaded_bots") == 2
        assert p.predict("bot-02", ["hi"])[0] == 200  # recently used: bot-01 goes next
        status, body = p.predict("bot-00", ["hello"])  # evicted: loads again, with its current version
        assert status == 200 and body["predictions"][0]["model_version"] == store.current("bot-00")
        assert [p.ready(b) for b in bots] == [True, False, True, False]
        assert _value(_metrics(p), "botyard_model_loads_total", reason="cold") == 4
        assert "bot bot-00: evicted (max-loaded-bots)" in open(p.log_path).read()


def test_concurrent_first_requests_for_one_bot_load_it_once(unbounded):
    p = unbounded
    results: list[int] = []
    barrier = threading.Barrier(8)

    def first_request():
        client = PredictorClient(p.host, p.port)
        barrier.wait()
        results.append(client.predict("bot-01", ["good morning"])[0])
        client.close()

    threads = [threading.Thread(target=first_request) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == [200] * 8
    assert len(re.findall(r"bot bot-01: loaded version \S+ in [0-9.]+s \(cold\)", open(p.log_path).read())) == 1


def test_cold_loads_do_not_stall_a_loaded_bot(unbounded):
    """A loaded bot's latency while other bots load, against its own warm latency in the same run."""
    p, bots = unbounded, unbounded.bots[2:8]
    assert p.predict(bots[0], ["hello"])[0] == 200

    def timed(n: int) -> list[float]:
        times = []
        for _ in range(n):
            started = time.perf_counter()
            assert p.predict(bots[0], ["will it rain today"])[0] == 200
            times.append(time.perf_counter() - started)
        return times

    warm = timed(50)
    loads_done = threading.Event()
    load_seconds: list[float] = []

    def cold_loads():
        client = PredictorClient(p.host, p.port)
        for bot in bots[1:]:
            started = time.perf_counter()
            assert client.predict(bot, ["hello"])[0] == 200
            load_seconds.append(time.perf_counter() - started)
        client.close()
        loads_done.set()

    loader = threading.Thread(target=cold_loads)
    loader.start()
    during: list[float] = []
    while not loads_done.is_set():
        during += timed(1)
    loader.join()
    warm_p50, during_p50 = statistics.median(warm), statistics.median(during)
    shortest_load = min(load_seconds)
    # Were requests queued behind a load, each would wait for most of it; they do not. The
    # loads share the process's CPU (and Python's lock) with the requests, so they do slow down.
    assert len(during) >= 4 * len(load_seconds), (len(during), load_seconds)
    assert during_p50 < max(5 * warm_p50, 0.02), (warm_p50, during_p50)
    # one request may meet a scheduling stall on a busy CI machine (loads take ~60 ms); queued
    # behind the loads, about every other request would wait for most of one
    stalled = [t for t in during if t >= 0.5 * shortest_load]
    assert len(stalled) <= max(1, len(during) // 10), (stalled, len(during), load_seconds)


def test_promotion_during_eviction_churn_fails_no_request(models, tmp_path):
    store, bots = _fleet(str(tmp_path / "models"), models, 4)
    extra = ["--max-loaded-bots", "2"]
    with start_predictor(store.root, reload_interval=0.2, ready_timeout=120, extra_args=extra) as p:
        answers: list[tuple[str, int, str]] = []
        stop = threading.Event()

        def churn(offset: int):
            client = PredictorClient(p.host, p.port)
            i = offset
            while not stop.is_set():
                bot = bots[i % len(bots)]
                status, body = client.predict(bot, ["hello", "a latte please"])
                answers.append((bot, status, body["predictions"][0]["model_version"] if status == 200 else str(body)))
                i += 1
            client.close()

        threads = [threading.Thread(target=churn, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: len(answers) >= 8, 60, "requests before the promotions", every=0.05)
            promoted = []
            for _ in range(1):  # bot-00 gets a new version while bots are evicted and reloaded
                model_dir, meta = models["B"]
                version = store.register("bot-00", model_dir, meta)
                store.promote("bot-00", version)
                promoted.append(version)
                wait_for(lambda: any(b == "bot-00" and v == version for b, _, v in answers[-8:]), 90,
                         f"version {version} to answer", every=0.05)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        assert [a for a in answers if a[1] != 200] == []
        samples = _metrics(p)
        assert _value(samples, "botyard_model_evictions_total", reason="max_loaded_bots") >= 2
        assert _value(samples, "botyard_model_loads_total", reason="swap") + _value(samples, "botyard_model_loads_total", reason="cold") >= 4
    seen = [v for b, _, v in answers if b == "bot-00"]
    last = seen.index(promoted[-1])
    assert set(seen[last + 2:]) <= {promoted[-1]}  # once live, never an older version again (2 client threads)


def test_memory_budget_holds_resident_memory(unbounded, models, tmp_path):
    # what the process costs with no bot loaded, and what 4 more bots add (in the unbounded predictor)
    p = unbounded
    bots = p.bots[8:12]
    before = _value(_metrics(p), "botyard_resident_memory_bytes")
    for bot in bots:
        assert p.predict(bot, ["hello"])[0] == 200
    per_bot = max((_value(_metrics(p), "botyard_resident_memory_bytes") - before) / len(bots), 2**20)
    budget = int(p.base_rss + 2.5 * per_bot)  # room for about 2.5 bots
    store, bots = _fleet(str(tmp_path / "models"), models, 8)
    extra = ["--memory-budget", str(budget)]
    with start_predictor(store.root, reload_interval=0, ready_timeout=120, extra_args=extra) as p:
        peak = 0.0
        for bot in bots:
            assert p.predict(bot, ["hello"])[0] == 200
            peak = max(peak, _value(_metrics(p), "botyard_resident_memory_bytes"))
        samples = _metrics(p)
        assert _value(samples, "botyard_memory_budget_bytes") == budget
        assert _value(samples, "botyard_model_evictions_total", reason="memory_budget") >= 4
        assert 1 <= _value(samples, "botyard_loaded_bots") < len(bots)
    assert peak <= 1.1 * budget, (peak, budget, per_bot)


def test_hot_bots_are_preloaded_and_evicted_last(models, tmp_path):
    store, bots = _fleet(str(tmp_path / "models"), models, 5)
    extra = ["--max-loaded-bots", "3", "--preload", "bot-04", "--preload-most-requested", "1"]
    with start_predictor(store.root, reload_interval=0.2, ready_timeout=120, extra_args=extra,
                         wait_for_bots=["bot-04"]) as p:
        assert p.ready("bot-04")  # loaded at start, before any request
        for _ in range(5):
            assert p.predict("bot-00", ["hello"])[0] == 200  # the most requested bot
        for bot in ("bot-01", "bot-02", "bot-03", "bot-01", "bot-02", "bot-03"):
            assert p.predict(bot, ["hello"])[0] == 200
        # cold bots went first: the preloaded and the most requested bot stayed loaded
        assert p.ready("bot-04") and p.ready("bot-00")
        assert _value(_metrics(p), "botyard_model_loads_total", reason="preload") == 1
