"""The bench harness: suite registry, measurement helpers, results merge and report writers.

A suite is a function named in ``SUITES`` by ``"module:function"`` and imported only when
the suite is selected, so a suite whose module is absent fails with a clear message then
and never otherwise. Data suites take a ``BenchContext`` and return a result dict (shape
below); a suite registered with ``takes_context=False`` is called as ``run(output_dir)``.

Result of a data suite (every figure of every system side by side)::

    {"description": str, "protocol": [str, ...],
     "systems": {"bilstm": {figure: value, ...}, "tfidf_logreg": {...}},
     "per_bot": {bot: {system: {figure: value}}},        # optional
     "targets": [{"figure", "system", "op", "value", "measured", "met"}, ...]}

``results.json`` holds ``{"environment": {...}, "suites": {name: result}}``; a run replaces
only the suites it ran, so running one suite keeps the others' figures.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib
import importlib.util
import json
import logging
import os
import platform
import shutil
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable

import numpy as np

from botyard.components.base import contracts as c
from botyard.components.base.config import TrainConfig
from botyard.components.base.errors import ConfigError, DataValidationError
from botyard.pipelines.bench.stats import percentile

log = logging.getLogger(__name__)

DATA_ENV = "BOTYARD_DATA_DIR"  # where the shared data sets are read from, unless --data-dir is given
DEFAULT_DATA_DIR = Path("..") / "shared" / "data"  # relative to the current directory, never to the source tree
DEFAULT_OUTPUT_DIR = Path("bench")  # relative to the current directory; a suite writes only under it
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"

LSTM = "bilstm"
BASELINE = "tfidf_logreg"
SYSTEM_TITLES = {
    LSTM: "BiLSTM (botyard)", BASELINE: "TF-IDF + LogReg",
    "bilstm_cnn_crf": "botyard (intent + BiLSTM-CNN-CRF tagger)", "bilstm_intent_only": "botyard, intent only",
    "crf_baseline": "CRF (sklearn-crfsuite)",
}

LATENCY_CALLS = 500  # batch-of-1 calls timed per model (p50 / p99)
THROUGHPUT_BATCH = 64
THROUGHPUT_BATCHES = 20  # batches of 64 timed per model
# a tiny model for smoke tests of the harness (figures are meaningless)
QUICK_TRAIN_CONFIG = {
    "embedding_dim": 8,
    "lstm_units": 8,
    "epochs": 1,
    "min_epochs": 1,
    "min_steps": 0,
    "min_steps_per_intent": 0,
    "patience_steps": 0,
    "batch_size": 64,
    "max_tokens": 500,
    "sequence_length": 12,
    "max_ngrams": 200,
    "max_char_ngrams": 200,
    "ngram_units": 8,
    "patience": 1,
}


@dataclass(frozen=True)
class Suite:
    name: str
    target: str  # "module:function", imported only when the suite runs
    description: str
    takes_context: bool = True  # False: called as ``run(output_dir: str) -> dict``


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite("sample-bot", "botyard.pipelines.bench.sample:run", "The shipped sample bot: its own split and its held-out utterances"),
        Suite("clinc150-full", "botyard.pipelines.bench.clinc:run_full", "CLINC150 Full: one model over 150 intents + out-of-scope"),
        Suite("clinc150-small", "botyard.pipelines.bench.clinc:run_small", "CLINC150 Small: 50 training utterances an intent"),
        Suite("clinc150-imbalanced", "botyard.pipelines.bench.clinc:run_imbalanced", "CLINC150 Imbalanced: 25 to 100 training utterances an intent"),
        Suite("clinc150-bots", "botyard.pipelines.bench.clinc:run_bots", "CLINC150 as a fleet of 10 domain bots"),
        Suite("hwu64", "botyard.pipelines.bench.hwu:run", "HWU64 fold 1: 64 intents"),
        Suite("fewshot", "botyard.pipelines.bench.fewshot:run", "Few-shot bots: 5 and 10 utterances an intent (CLINC150 domains, HWU64), 3 seeds"),
        Suite("run-clinc150", "botyard.pipelines.bench.runs:run_clinc150",
              "`botyard run --param on_label_conflict=drop` on the whole CLINC150 Full file, end to end"),
        Suite("run-long-bot", "botyard.pipelines.bench.runs:run_long_bot",
              "`botyard run` on a 15,000-utterance, 7-intent bot of long utterances, end to end"),
        Suite("hwu64-entities", "botyard.pipelines.bench.hwu_entities:run", "HWU64 fold 1: entity extraction, beside a CRF baseline"),
        Suite("serving", "botyard.pipelines.bench.serving:run", "Model server latency and throughput", takes_context=False),
        Suite("serving-fleet", "botyard.pipelines.bench.serving_fleet:run", "1,000 bots in one predictor: memory budget, Zipf traffic, cold loads"),
        Suite("trigger", "botyard.pipelines.bench.trigger:run", "Event trigger service: ingest rate and 1,000 bots to submitted runs", takes_context=False),
        Suite("submit", "botyard.pipelines.bench.submit:run", "1,000 KFP run submissions against the stub KFP API", takes_context=False),
    )
}


@dataclass(frozen=True)
class BenchContext:
    """What every data suite gets: where data and outputs live and how to train."""

    data_dir: str
    output_dir: str
    train_config: TrainConfig = field(default_factory=TrainConfig)
    latency_calls: int = LATENCY_CALLS
    throughput_batches: int = THROUGHPUT_BATCHES
    max_bots: int = 0  # clinc150-bots, fewshot: 0 = every domain; fewer for a quick look
    max_seeds: int = 0  # fewshot: 0 = every seed; fewer for a quick look
    quick: bool = False  # --quick: smoke-test sizes (figures meaningless)


# --- locating inputs ----------------------------------------------------------------------


def resolve_data_dir(data_dir: str | None = None) -> Path:
    """``data_dir``, else ``$BOTYARD_DATA_DIR``, else ``../shared/data`` from the current directory."""
    path = Path(data_dir or os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR)
    if not path.is_dir():
        raise DataValidationError(
            f"bench data folder {path} does not exist; pass --data-dir or set ${DATA_ENV} to the folder "
            "holding clinc150/ and hwu64/"
        )
    return path


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise DataValidationError(f"bench data file {path} is missing; see ../shared/data/README.md for the layout")
    return path


def without_entities(table):
    """``table`` with every row's entity spans removed: what an intent suite trains on, so it
    measures the intent model alone (``hwu64-entities`` measures the tagger)."""
    if c.ENTITIES not in table.columns:
        return table
    return table.assign(**{c.ENTITIES: [[] for _ in range(len(table))]})


def train_config_with(overrides: dict[str, Any] | None = None, quick: bool = False) -> TrainConfig:
    """The tuned ``TrainConfig`` defaults, then the quick preset, then ``overrides``."""
    values = TrainConfig().to_dict()
    if quick:
        values.update(QUICK_TRAIN_CONFIG)
    values.update(overrides or {})
    return TrainConfig.from_dict(values)


# --- measurements ---------------------------------------------------------------------------


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class PeakRss:
    """Samples this process's resident set size in a thread; ``peak_mb`` and ``growth_mb`` after the block."""

    def __init__(self, interval_s: float = 0.02):
        self.interval_s = interval_s
        self.start_mb = self.peak_mb = 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_mb = max(self.peak_mb, rss_mb())

    def __enter__(self) -> "PeakRss":
        self.start_mb = self.peak_mb = rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb())

    @property
    def growth_mb(self) -> float:
        return self.peak_mb - self.start_mb


def size_mb(path: str) -> float:
    """Bytes under ``path`` (a file or a folder), in MiB."""
    if os.path.isfile(path):
        return os.path.getsize(path) / 2**20
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
    return total / 2**20


def latency(
    predict: Callable[[list[str]], Any],
    utterances: list[str],
    calls: int = LATENCY_CALLS,
    batches: int = THROUGHPUT_BATCHES,
    batch_size: int = THROUGHPUT_BATCH,
) -> dict[str, float]:
    """In-process latency of ``predict``: batch-of-1 p50/p99 (ms) and batch-of-64 utterances/s."""
    pool = (utterances * (1 + (max(calls, batch_size) // max(len(utterances), 1))))[: max(calls, batch_size)]
    for text in pool[:20]:  # warm up: first calls trace / allocate
        predict([text])
    times = []
    for text in pool[:calls]:
        started = time.perf_counter()
        predict([text])
        times.append(time.perf_counter() - started)
    batch = pool[:batch_size]
    predict(batch)
    started = time.perf_counter()
    for _ in range(batches):
        predict(batch)
    elapsed = time.perf_counter() - started
    return {
        "latency_p50_ms": float(percentile(times, 0.50) * 1000),
        "latency_p99_ms": float(percentile(times, 0.99) * 1000),
        "batch64_per_s": float(batches * batch_size / elapsed),
    }


def check_targets(systems: dict[str, dict], targets: list[tuple]) -> list[dict]:
    """``(figure, system, op, value[, note])`` tuples -> the report's target rows with ``measured`` and ``met``."""
    rows = []
    for figure, system, op, value, *note in targets:
        measured = systems.get(system, {}).get(figure)
        met = None if measured is None else (measured >= value if op == ">=" else measured <= value)
        row = {"figure": figure, "system": system, "op": op, "value": value, "measured": measured, "met": met}
        if note:
            row["note"] = note[0]
        rows.append(row)
    return rows


def versus_baseline(systems: dict[str, dict], figure: str, margin: float = 0.0) -> tuple:
    """The target "botyard's ``figure`` >= the baseline's in the same run (+ ``margin``)"."""
    note = "the baseline's, same run" + (f", + {100 * margin:.0f} points" if margin else "")
    return (figure, LSTM, ">=", systems[BASELINE][figure] + margin, note)


# today's figures (README, 2026-11-22 run): none of them may get worse
README_MODEL_MB = 62.0
README_LATENCY_P50_MS = 1.4
COST_TARGETS = [
    ("model_mb", LSTM, "<=", README_MODEL_MB, "README's 62 MiB"),
    ("latency_p50_ms", LSTM, "<=", README_LATENCY_P50_MS, "README's 0.9-1.4 ms"),
]


def mean_figures(per_item: list[dict[str, float]]) -> dict[str, float]:
    """The mean of every numeric figure the items share."""
    keys = [k for k in per_item[0] if all(isinstance(p.get(k), (int, float)) for p in per_item)]
    return {k: float(np.mean([p[k] for p in per_item])) for k in keys}


# --- running suites --------------------------------------------------------------------------


def resolve_suite(name: str) -> Callable:
    """Import the suite's function; an unknown suite or an absent module raises ``ConfigError``."""
    if name not in SUITES:
        raise ConfigError(f"unknown bench suite {name!r}; known: {', '.join(SUITES)}")
    module_name, function = SUITES[name].target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(
                f"bench suite {name!r} needs module {module_name} (function {function}), which is not there; "
                f"add {module_name.replace('.', '/')}.py or leave the suite out"
            ) from exc
        raise
    if not hasattr(module, function):
        raise ConfigError(f"bench suite {name!r}: module {module_name} has no function {function!r}")
    return getattr(module, function)


@contextlib.contextmanager
def _scratch_under(output_dir: str):
    """Point the temporary folder (``tempfile``, ``$TMPDIR``) under ``output_dir`` while a suite runs.

    Libraries write scratch files too (TensorFlow's autograph, kfp.local): this keeps every file
    a suite writes under ``--output-dir``. The folder is removed afterwards.
    """
    os.makedirs(output_dir, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="scratch-", dir=output_dir)
    saved_dir, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = os.environ["TMPDIR"] = scratch
    try:
        yield scratch
    finally:
        tempfile.tempdir = saved_dir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(scratch, ignore_errors=True)


def run_suite(name: str, context: BenchContext) -> dict:
    """Run one suite in this process; the result carries ``seconds`` and ``ran_at``."""
    fn = resolve_suite(name)
    started = time.perf_counter()
    log.info("bench: running %s", name)
    with _scratch_under(context.output_dir):
        result = fn(context) if SUITES[name].takes_context else fn(context.output_dir)
    result = dict(result)
    result.setdefault("description", SUITES[name].description)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["ran_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    if SUITES[name].takes_context:
        result["train_config"] = context.train_config.to_dict()
    return result


def _run_isolated(name: str, context: BenchContext) -> dict:
    # a fresh interpreter per suite: peak memory and TensorFlow state do not leak between suites
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(run_suite, name, context).result()


def environment() -> dict:
    import psutil

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }
    for package in ("tensorflow", "keras", "sklearn"):
        try:
            info[package] = importlib.import_module(package).__version__
        except ImportError:
            pass
    return info


def run_bench(suites: list[str], context: BenchContext, isolate: bool = True) -> dict:
    """Run ``suites`` and merge their results into ``results.json`` / ``results.md`` after each one."""
    for name in suites:  # fail before any work on a name that is not registered
        if name not in SUITES:
            raise ConfigError(f"unknown bench suite {name!r}; known: {', '.join(SUITES)}")
    os.makedirs(context.output_dir, exist_ok=True)
    results = read_results(context.output_dir)
    for name in suites:
        resolve_suite(name)  # a missing module fails here, before the earlier suites' long runs
    for name in suites:
        result = _run_isolated(name, context) if isolate else run_suite(name, context)
        results = merge_results(results, {name: result})
        write_results(results, context.output_dir)
    return results


# --- results ---------------------------------------------------------------------------------


def read_results(output_dir: str) -> dict:
    path = os.path.join(output_dir, RESULTS_JSON)
    if not os.path.exists(path):
        return {"suites": {}}
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as exc:
            raise DataValidationError(f"{path}: not valid JSON ({exc.msg}); delete it to start afresh") from exc


def merge_results(existing: dict, new_suites: dict[str, dict]) -> dict:
    """``existing`` with ``new_suites`` replacing the suites of the same name; the environment is this run's."""
    suites = dict(existing.get("suites", {}))
    suites.update(new_suites)
    ordered = {name: suites[name] for name in SUITES if name in suites}
    ordered.update({name: r for name, r in suites.items() if name not in ordered})
    return {"environment": environment(), "suites": ordered}


def write_results(results: dict, output_dir: str) -> None:
    os.makedirs(output_dir, exist_ok=True)
    for name, text in ((RESULTS_JSON, json.dumps(results, indent=2) + "\n"), (RESULTS_MD, render_markdown(results))):
        path = os.path.join(output_dir, name)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(path + ".tmp", path)


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _num(digits: int) -> Callable[[float], str]:
    return lambda v: f"{v:,.{digits}f}"


# (figure key, row title, format): the report's row order
FIGURES: list[tuple[str, str, Callable[[float], str]]] = [
    ("in_scope_accuracy", "In-scope accuracy (threshold applied)", _pct),
    ("oos_recall", "Out-of-scope recall", _pct),
    ("accuracy", "Intent accuracy (top intent)", _pct),
    ("macro_f1", "Macro-F1 (in-scope intents, top intent)", _num(3)),
    ("heldout_accuracy", "Held-out utterances: intent accuracy (top intent)", _pct),
    ("heldout_in_scope_accuracy", "Held-out utterances: accuracy (threshold applied)", _pct),
    ("combined_accuracy", "Test split + held-out: intent accuracy (top intent)", _pct),
    ("oos_threshold", "Confidence threshold (chosen on val)", _num(3)),
    ("entity_micro_f1", "Entity micro-F1 (exact span and type)", _num(3)),
    ("entity_micro_precision", "Entity micro precision", _num(3)),
    ("entity_micro_recall", "Entity micro recall", _num(3)),
    ("val_entity_micro_f1", "Entity micro-F1 on the val split (data drawn like the training file)", _num(3)),
    ("possessive_neutral_entity_micro_f1", "Entity micro-F1, a trailing possessive 's cut from both sides (diagnostic)", _num(3)),
    ("entity_train_seconds", "Entity tagger training (s)", _num(1)),
    ("entity_epochs_run", "Entity tagger epochs run", _num(0)),
    ("epochs_run", "Epochs run", _num(0)),
    ("run_seconds", "Whole `botyard run` wall time (s)", _num(1)),
    ("train_seconds", "Training wall time (s)", _num(1)),
    ("max_train_seconds", "Slowest bot's training (s)", _num(1)),
    ("peak_rss_mb", "Peak RSS while training (MiB)", _num(0)),
    ("rss_growth_mb", "RSS growth while training (MiB)", _num(0)),
    ("model_mb", "Model size on disk (MiB)", _num(1)),
    ("latency_p50_ms", "Batch-1 latency p50 (ms)", _num(2)),
    ("latency_p99_ms", "Batch-1 latency p99 (ms)", _num(2)),
    ("batch64_per_s", "Batch-64 throughput (utterances/s)", _num(0)),
]
_FORMATS = {key: fmt for key, _, fmt in FIGURES}


def _fmt(figure: str, value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _FORMATS.get(figure, _num(3))(value)
    return str(value)


def _systems_table(systems: dict[str, dict]) -> list[str]:
    names = list(systems)
    lines = ["| figure | " + " | ".join(SYSTEM_TITLES.get(n, n) for n in names) + " |"]
    lines.append("| --- |" + " ---: |" * len(names))
    for key, title, _ in FIGURES:
        if any(key in systems[n] for n in names):
            lines.append(f"| {title} | " + " | ".join(_fmt(key, systems[n].get(key)) for n in names) + " |")
    return lines


def _per_bot_table(per_bot: dict[str, dict[str, dict]]) -> list[str]:
    systems = list(next(iter(per_bot.values())))
    columns = [(s, k) for s in systems for k in ("in_scope_accuracy", "oos_recall", "train_seconds")]
    short = {"in_scope_accuracy": "in-scope acc.", "oos_recall": "oos recall", "train_seconds": "train s"}
    lines = ["| bot | " + " | ".join(f"{SYSTEM_TITLES.get(s, s)} {short[k]}" for s, k in columns) + " |"]
    lines.append("| --- |" + " ---: |" * len(columns))
    for bot, by_system in per_bot.items():
        lines.append(f"| {bot} | " + " | ".join(_fmt(k, by_system.get(s, {}).get(k)) for s, k in columns) + " |")
    return lines


def _targets_table(targets: list[dict]) -> list[str]:
    lines = ["| target | measured | met |", "| --- | ---: | :---: |"]
    for t in targets:
        title = next((title for key, title, _ in FIGURES if key == t["figure"]), t["figure"])
        met = {True: "yes", False: "**no**", None: "–"}[t["met"]]
        wanted = f"{SYSTEM_TITLES.get(t['system'], t['system'])}: {title} {t['op']} {_fmt(t['figure'], t['value'])}"
        if t.get("note"):
            wanted += f" ({t['note']})"
        lines.append(f"| {wanted} | {_fmt(t['figure'], t['measured'])} | {met} |")
    return lines


def _generic_table(result: dict) -> list[str]:
    lines = ["| figure | value |", "| --- | ---: |"]
    for key, value in result.items():
        if key in ("description", "seconds", "ran_at") or isinstance(value, (dict, list)):
            continue
        lines.append(f"| {key} | {_fmt(key, value)} |")
    return lines


def render_markdown(results: dict) -> str:
    """The human-readable report of ``results`` (the same figures as ``results.json``)."""
    env = results.get("environment", {})
    lines = [
        "# botyard bench",
        "",
        "Written by `botyard bench`; figures of suites not re-run are kept from earlier runs. "
        f"Machine: {env.get('cpu_count', '?')} CPU cores, {env.get('memory_gb', '?')} GB, "
        f"Python {env.get('python', '?')}, TensorFlow {env.get('tensorflow', '?')}, scikit-learn {env.get('sklearn', '?')}.",
    ]
    for name, result in results.get("suites", {}).items():
        lines += ["", f"## {name}", "", f"{result.get('description', '')} (ran {result.get('ran_at', '?')}, {result.get('seconds', '?')} s)."]
        for step in result.get("protocol", []):
            lines.append(f"- {step}")
        lines.append("")
        if "markdown" in result:
            lines.append(str(result["markdown"]).rstrip())
            continue
        if result.get("summary_table"):
            lines += [str(result["summary_table"]).rstrip(), ""]
        if "systems" in result:
            lines += _systems_table(result["systems"])
        else:
            lines += _generic_table(result)
        if result.get("per_bot"):
            lines += ["", "Per bot:", ""] + _per_bot_table(result["per_bot"])
        if result.get("targets"):
            lines += ["", "Targets:", ""] + _targets_table(result["targets"])
    return "\n".join(lines) + "\n"


# --- one system on one data set: shared by the suites ------------------------------------------


def bench_lstm(context: BenchContext, train, val_stop, val_threshold, test, measure_latency: bool = True, also: dict | None = None) -> dict:
    """Train with the pipeline's train core, evaluate with its evaluate core, measure cost.

    ``val_stop`` drives early stopping (as the pipeline's val split does); ``val_threshold``
    is what the out-of-scope threshold is chosen on; ``test`` is scored once, and so is every
    table of ``also`` (its figures prefixed with its name: ``heldout_accuracy``).
    """
    import tensorflow as tf

    from botyard.components.base.model_io import load_signature
    from botyard.components.evaluate.core import evaluate
    from botyard.pipelines.in_process import train_model

    os.makedirs(context.output_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="work-", dir=context.output_dir)
    try:
        with PeakRss() as rss:
            started = time.perf_counter()
            trained = train_model(train, val_stop, context.train_config, work)
            seconds = time.perf_counter() - started
        saved_model = os.path.join(work, c.SAVED_MODEL_DIR)
        signature = load_signature(saved_model)
        evaluation = evaluate(signature, trained.labels, val_threshold, test)
        figures = _evaluation_figures(evaluation)
        for name, table in (also or {}).items():
            figures.update(_prefixed(name, evaluate(signature, trained.labels, val_threshold, table)))
        figures.update(
            epochs_run=trained.epochs_run,
            train_seconds=seconds,
            peak_rss_mb=rss.peak_mb,
            rss_growth_mb=rss.growth_mb,
            model_mb=size_mb(saved_model),
            device=trained.device,
        )
        if measure_latency:
            predict = lambda texts: signature(**{c.SIGNATURE_INPUT: tf.constant(texts)})[c.OUTPUT_PROBABILITIES].numpy()  # noqa: E731
            figures.update(latency(predict, test[c.UTTERANCE].tolist(), context.latency_calls, context.throughput_batches))
        return figures
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _evaluation_figures(evaluation) -> dict:
    m = evaluation.metrics
    return {
        "in_scope_accuracy": m["in_scope_accuracy"],
        "oos_recall": m["oos_recall"],
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "oos_threshold": evaluation.oos_threshold,
    }


def _prefixed(name: str, evaluation) -> dict:
    return {f"{name}_{k}": v for k, v in _evaluation_figures(evaluation).items() if k in ("accuracy", "in_scope_accuracy")}


def bench_baseline(context: BenchContext, train, val_threshold, test, measure_latency: bool = True, also: dict | None = None) -> dict:
    """The TF-IDF + logistic-regression baseline, scored by the same evaluate core."""
    import pickle

    from botyard.components.evaluate.core import evaluate
    from botyard.pipelines.bench.baseline import SklearnSignature, train_baseline

    with PeakRss() as rss:
        started = time.perf_counter()
        model = train_baseline(train)
        seconds = time.perf_counter() - started
    evaluation = evaluate(SklearnSignature(model), list(model.classes_), val_threshold, test)
    figures = _evaluation_figures(evaluation)
    for name, table in (also or {}).items():
        figures.update(_prefixed(name, evaluate(SklearnSignature(model), list(model.classes_), val_threshold, table)))
    with tempfile.TemporaryDirectory(prefix="work-", dir=context.output_dir) as work:
        path = os.path.join(work, "model.pkl")
        with open(path, "wb") as f:
            pickle.dump(model, f)
        figures.update(train_seconds=seconds, peak_rss_mb=rss.peak_mb, rss_growth_mb=rss.growth_mb, model_mb=size_mb(path))
    if measure_latency:
        figures.update(latency(model.predict_proba, test[c.UTTERANCE].tolist(), context.latency_calls, context.throughput_batches))
    return figures



def default_suites() -> list[str]:
    """Every registered suite whose module is there (an absent one is skipped with a warning)."""
    names = []
    for name, suite in SUITES.items():
        if importlib.util.find_spec(suite.target.split(":")[0]) is None:
            log.warning("bench: skipping suite %s: module %s is not there", name, suite.target.split(":")[0])
            continue
        names.append(name)
    return names
