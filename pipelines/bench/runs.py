"""End-to-end suites: the whole ``botyard run`` (a fresh CLI process, every pipeline step through
kfp.local) on a large bot, timed by the wall clock.

- ``run-clinc150``: the whole CLINC150 Full file, ``data_full.json`` as published, as one bot's
  training file (its keys give the splits: ``train`` + ``oos_train``, ``val`` + ``oos_val``,
  ``test`` + ``oos_test``; out-of-scope rows carry the intent ``oos``) with ``--param
  on_label_conflict=drop`` (the file has 4 conflicting utterances). Quality is the run's own
  evaluation of its test split.
- ``run-long-bot``: a 7-intent bot of long utterances, 15,000 training utterances: each
  utterance joins ``SENTENCES_PER_UTTERANCE`` CLINC150 ``train`` utterances of one domain (the
  domain is the intent), so utterances are about 50 words long.

Each reports the run's wall time (target <= 180 s on 2 CPU cores), the time of every step
(from the run's progress lines) and the machine's load average before the run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from botyard.components.base import contracts as c
from botyard.components.base.config import TrainConfig
from botyard.pipelines.bench.harness import BenchContext, require_file

CLINC_FILE = "clinc150/data_full.json"
DOMAINS_FILE = "clinc150/domains.json"
MAX_SECONDS = 180.0
LONG_INTENTS = 7
LONG_TRAIN, LONG_VAL, LONG_TEST = 15_000, 1_000, 1_000
SENTENCES_PER_UTTERANCE = 6
SEED = 0
_STEP = re.compile(r"\[\s*([\d.]+)s\] (Executing task|Task) (\S+)")


def write_long_bot_file(data_dir: str, path: str) -> int:
    """The long-utterance bot (see the module docstring); returns its rows."""
    with open(require_file(Path(data_dir) / CLINC_FILE), encoding="utf-8") as f:
        data = json.load(f)
    with open(require_file(Path(data_dir) / DOMAINS_FILE), encoding="utf-8") as f:
        domains = json.load(f)
    names = sorted(domains)[:LONG_INTENTS]
    rng = np.random.default_rng(SEED)
    rows = 0
    with open(path, "w", encoding="utf-8") as out:
        for split, source, total in (("train", "train", LONG_TRAIN), ("val", "val", LONG_VAL), ("test", "test", LONG_TEST)):
            for k, domain in enumerate(names):
                own = set(domains[domain])
                pool = [u for u, i in data[source] if i in own]
                for _ in range(total // len(names) + (1 if k < total % len(names) else 0)):
                    text = ". ".join(pool[j] for j in rng.choice(len(pool), SENTENCES_PER_UTTERANCE, replace=False))
                    out.write(json.dumps({"text": text, "intent": domain, "split": split}) + "\n")
                    rows += 1
    return rows


def _train_params(config: TrainConfig) -> list[str]:
    """``--param`` flags for every TrainConfig field that differs from its default (``--quick``, ``--set``)."""
    defaults = TrainConfig().to_dict()
    return [f"--param={k}={v}" for k, v in config.to_dict().items() if v != defaults[k]]


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def timed_run(context: BenchContext, bot_id: str, data_file: str, extra: list[str]) -> dict:
    """Run ``botyard run`` in a fresh process; its wall time, step times and the model's metrics."""
    work = tempfile.mkdtemp(prefix=f"run-{bot_id}-", dir=context.output_dir)
    try:
        return _timed_run(context, bot_id, data_file, extra, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _timed_run(context: BenchContext, bot_id: str, data_file: str, extra: list[str], work: str) -> dict:
    models, runs = os.path.join(work, "models"), os.path.join(work, "runs")
    command = [sys.executable, "-m", "botyard.pipelines.cli", "run", "--bot-id", bot_id, "--data", data_file,
               "--models-root", models, "--pipeline-root", runs, *extra, *_train_params(context.train_config)]
    load_before = _load()
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"botyard run failed (exit {done.returncode}): {done.stderr[-2000:]}")
    steps, begun = {}, {}
    for at, kind, task in _STEP.findall(done.stdout):
        task = task.strip("'")
        if kind == "Executing task":
            begun[task] = float(at)
        elif task in begun:
            steps[task] = round(float(at) - begun[task], 1)
    version = next(Path(models, bot_id).glob("*/metadata.json"))
    meta = json.loads(version.read_text())
    training = json.loads(next(Path(runs).glob(f"*/train/model/{c.TRAINING_FILE}")).read_text())
    metrics = meta[c.METRICS]
    return {
        "run_seconds": round(seconds, 1),
        "step_seconds": steps,
        "train_seconds": training["train_seconds"],
        "epochs_run": training["epochs_run"],
        "in_scope_accuracy": metrics.get("in_scope_accuracy"),
        "oos_recall": metrics.get("oos_recall"),
        "accuracy": metrics["accuracy"],
        "test_size": metrics["test_size"],
        "load_average_before": load_before,
        "load_average_after": _load(),
        "console_tail": done.stdout.strip().splitlines()[-12:],
    }


def _result(description: str, protocol: list[str], figures: dict, command: str) -> dict:
    steps = " · ".join(f"{k} {v:.1f}s" for k, v in figures["step_seconds"].items())
    return {
        "description": description,
        "protocol": [*protocol, f"command: `{command}`", f"steps: {steps}",
                     f"1-minute load average before / after the run: {figures['load_average_before']} / {figures['load_average_after']}"],
        "systems": {"botyard run": {k: v for k, v in figures.items() if isinstance(v, (int, float))}},
        "targets": [{"figure": "run_seconds", "system": "botyard run", "op": "<=", "value": MAX_SECONDS,
                     "measured": figures["run_seconds"], "met": figures["run_seconds"] <= MAX_SECONDS}],
        "console_tail": figures["console_tail"],
    }


def run_clinc150(context: BenchContext) -> dict:
    path = str(require_file(Path(context.data_dir) / CLINC_FILE))
    with open(path, encoding="utf-8") as f:
        rows = sum(len(pairs) for pairs in json.load(f).values())
    figures = timed_run(context, "clinc150", path, ["--param", "on_label_conflict=drop"])
    return _result(
        "`botyard run --param on_label_conflict=drop` on the whole CLINC150 Full file",
        [f"data: `data_full.json` as published ({rows:,} rows; its keys give the splits, out-of-scope rows carry the intent `oos`)",
         "wall time of a fresh `botyard run` process: every step, from ingest to deploy"],
        figures,
        "botyard run --bot-id clinc150 --data ../shared/data/clinc150/data_full.json --param on_label_conflict=drop",
    )


def run_long_bot(context: BenchContext) -> dict:
    with tempfile.TemporaryDirectory(prefix="data-", dir=context.output_dir) as folder:
        path = os.path.join(folder, "long_bot.jsonl")
        rows = write_long_bot_file(context.data_dir, path)
        figures = timed_run(context, "long-bot", path, [])
    return _result(
        f"`botyard run` on a {LONG_INTENTS}-intent bot of {LONG_TRAIN:,} long training utterances",
        [f"data: {rows:,} rows ({LONG_TRAIN:,} train, {LONG_VAL:,} val, {LONG_TEST:,} test, `split` given); each utterance "
         f"joins {SENTENCES_PER_UTTERANCE} CLINC150 utterances of one domain (the intent), seed {SEED}",
         "wall time of a fresh `botyard run` process: every step, from ingest to deploy"],
        figures,
        "botyard run --bot-id long-bot --data long_bot.jsonl",
    )
