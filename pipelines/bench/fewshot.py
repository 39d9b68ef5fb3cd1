"""Few-shot suite: bots with 5 and 10 training utterances an intent, as most bots on a platform start.

Two sources, three fixed seeds each, both shot counts:

- CLINC150 per-domain bots (10 bots of 15 intents): for each intent of the domain, ``shots``
  utterances of ``train`` (train) and ``VAL_PER_INTENT`` of ``val`` (early stopping, threshold);
  scored on the domain's whole ``test`` (30 an intent). No out-of-scope rows: this suite measures
  how well a small bot tells its own intents apart.
- HWU64 (one bot of 64 intents): ``shots`` + ``VAL_PER_INTENT`` utterances an intent drawn from
  ``train.jsonl`` (disjoint), scored on the whole ``test.jsonl``.

Both systems train on the same rows. The figure is intent accuracy (top intent) on the test
rows; a seed's CLINC figure is the mean over its 10 bots; the report gives the mean and the
spread (standard deviation) over the seeds. The rows a bot was not given (``dev``: the rest of
``val``, or of ``train.jsonl``) are what settings may be tuned on; test rows never are.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from botyard.components.base import contracts as c
from botyard.components.base.data_formats import read_training_data
from botyard.components.base.table import make_table
from botyard.pipelines.bench.harness import (
    BASELINE,
    LSTM,
    BenchContext,
    bench_baseline,
    bench_lstm,
    check_targets,
    require_file,
    without_entities,
)

log = logging.getLogger(__name__)

SHOTS = (5, 10)
SEEDS = (0, 1, 2)
VAL_PER_INTENT = 2
CLINC_FILE = "clinc150/data_full.json"
DOMAINS_FILE = "clinc150/domains.json"
HWU_TRAIN = "hwu64/train.jsonl"
HWU_TEST = "hwu64/test.jsonl"
MARGIN = 0.03  # botyard must beat the baseline by this much (accuracy points) on every mean
FIGURES = ("accuracy", "macro_f1", "train_seconds", "model_mb", "epochs_run")


def _rng(*key) -> np.random.Generator:
    """A generator fixed by ``key`` (seed, shots, bot): the same rows on every machine and run."""
    return np.random.default_rng([zlib.crc32(str(k).encode("utf-8")) for k in key])


def sample_per_intent(table: pd.DataFrame, counts: tuple[int, ...], rng: np.random.Generator) -> list[pd.DataFrame]:
    """Disjoint samples of ``counts[i]`` rows of every intent, then the rows left (the last item)."""
    ordered = table.sort_values([c.INTENT, c.UTTERANCE], kind="stable").reset_index(drop=True)
    parts: list[list[int]] = [[] for _ in range(len(counts) + 1)]
    for _, idx in ordered.groupby(c.INTENT, sort=True).indices.items():
        idx = rng.permutation(idx)
        start = 0
        for i, n in enumerate(counts):
            parts[i].extend(idx[start : start + n])
            start += n
        parts[-1].extend(idx[start:])
    return [ordered.iloc[sorted(p)].reset_index(drop=True) for p in parts]


def clinc_bots(data_dir: str, shots: int, seed: int) -> dict[str, dict[str, pd.DataFrame]]:
    """``{domain: {"train", "val", "dev", "test"}}`` for one shot count and seed."""
    import json

    with open(require_file(Path(data_dir) / CLINC_FILE), encoding="utf-8") as f:
        data = json.load(f)
    with open(require_file(Path(data_dir) / DOMAINS_FILE), encoding="utf-8") as f:
        domains = json.load(f)
    bots = {}
    for domain in sorted(domains):
        own = set(domains[domain])

        def rows(split: str) -> pd.DataFrame:
            return make_table({c.UTTERANCE: u, c.INTENT: i} for u, i in data[split] if i in own)

        rng = _rng("clinc", seed, shots, domain)
        (train,) = sample_per_intent(rows("train"), (shots,), rng)[:1]
        val, dev = sample_per_intent(rows("val"), (VAL_PER_INTENT,), rng)
        bots[domain] = {"train": train, "val": val, "dev": dev, "test": rows("test")}
    return bots


def hwu_bot(data_dir: str, shots: int, seed: int) -> dict[str, pd.DataFrame]:
    # spans dropped: an intent suite measures the intent model (hwu64-entities the tagger)
    table = without_entities(read_training_data(str(require_file(Path(data_dir) / HWU_TRAIN))))
    train, val, dev = sample_per_intent(table, (shots, VAL_PER_INTENT), _rng("hwu64", seed, shots))
    return {"train": train, "val": val, "dev": dev, "test": read_training_data(str(require_file(Path(data_dir) / HWU_TEST)))}


def _score_bot(context: BenchContext, bot: dict[str, pd.DataFrame], measure_latency: bool) -> dict[str, dict]:
    return {
        LSTM: bench_lstm(context, bot["train"], bot["val"], bot["val"], bot["test"], measure_latency=measure_latency),
        BASELINE: bench_baseline(context, bot["train"], bot["val"], bot["test"], measure_latency=measure_latency),
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "min": float(np.min(values)), "max": float(np.max(values))}


def run(context: BenchContext) -> dict:
    seeds = SEEDS[: context.max_seeds or None]
    per_run: dict[str, dict[str, dict]] = {}  # "clinc150-5shot-seed0" -> system -> figures
    first = True
    for shots in SHOTS:
        for seed in seeds:
            bots = clinc_bots(context.data_dir, shots, seed)
            names = list(bots)[: context.max_bots or None]
            scored = []
            for name in names:
                log.info("fewshot: clinc150 %s, %d shots, seed %d", name, shots, seed)
                scored.append(_score_bot(context, bots[name], measure_latency=first))
                first = False
            per_run[f"clinc150-{shots}shot-seed{seed}"] = {
                system: {k: float(np.mean([s[system][k] for s in scored])) for k in FIGURES if k in scored[0][system]}
                for system in (LSTM, BASELINE)
            }
            if shots == SHOTS[0] and seed == seeds[0]:
                latency = {system: {k: v for k, v in scored[0][system].items() if k.startswith(("latency_", "batch64_"))} for system in (LSTM, BASELINE)}
            log.info("fewshot: hwu64, %d shots, seed %d", shots, seed)
            hwu = _score_bot(context, hwu_bot(context.data_dir, shots, seed), measure_latency=False)
            per_run[f"hwu64-{shots}shot-seed{seed}"] = {
                system: {k: float(hwu[system][k]) for k in FIGURES if k in hwu[system]} for system in (LSTM, BASELINE)
            }

    groups: dict[str, dict[str, dict]] = {}
    systems: dict[str, dict] = {LSTM: dict(latency[LSTM]), BASELINE: dict(latency[BASELINE])}
    for source in ("clinc150", "hwu64"):
        for shots in SHOTS:
            key = f"{source}-{shots}shot"
            runs = [per_run[f"{key}-seed{seed}"] for seed in seeds]
            groups[key] = {
                system: {fig: _spread([r[system][fig] for r in runs]) for fig in FIGURES if fig in runs[0][system]}
                for system in (LSTM, BASELINE)
            }
            for system in (LSTM, BASELINE):
                systems[system][f"{key}_accuracy"] = groups[key][system]["accuracy"]["mean"]
                systems[system][f"{key}_accuracy_std"] = groups[key][system]["accuracy"]["std"]
    for system in (LSTM, BASELINE):
        systems[system]["accuracy"] = float(np.mean([systems[system][f"{k}_accuracy"] for k in groups]))
        systems[system]["train_seconds"] = float(np.mean([groups[k][system]["train_seconds"]["mean"] for k in groups]))
        systems[system]["model_mb"] = float(np.mean([groups[k][system]["model_mb"]["mean"] for k in groups]))
    targets = [(f"{k}_accuracy", LSTM, ">=", systems[BASELINE][f"{k}_accuracy"] + MARGIN) for k in groups]
    lines = [
        "| bots | BiLSTM (botyard) accuracy | TF-IDF + LogReg accuracy | difference | botyard train s | baseline train s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, g in groups.items():
        a, b = g[LSTM]["accuracy"], g[BASELINE]["accuracy"]
        lines.append(
            f"| {key} | {100 * a['mean']:.1f}% ± {100 * a['std']:.1f} | {100 * b['mean']:.1f}% ± {100 * b['std']:.1f} | "
            f"{100 * (a['mean'] - b['mean']):+.1f} | {g[LSTM]['train_seconds']['mean']:.1f} | {g[BASELINE]['train_seconds']['mean']:.1f} |"
        )
    return {
        "description": f"Few-shot bots: {' and '.join(map(str, SHOTS))} training utterances an intent, {len(seeds)} seeds",
        "protocol": [
            f"CLINC150: 10 per-domain bots (15 intents); per intent {'/'.join(map(str, SHOTS))} `train` utterances and "
            f"{VAL_PER_INTENT} `val` utterances (early stopping, threshold), seeded samples; scored on the domain's whole `test`",
            f"HWU64: one 64-intent bot; per intent {'/'.join(map(str, SHOTS))} + {VAL_PER_INTENT} disjoint utterances of "
            "`train.jsonl`; scored on the whole `test.jsonl` (1,076)",
            f"figure: intent accuracy (top intent), mean ± standard deviation over seeds {list(seeds)} "
            "(a CLINC150 seed's figure is the mean over its bots); no out-of-scope rows",
            f"target: botyard at least {100 * MARGIN:.0f} points above the baseline in every row",
        ],
        "systems": systems,
        "groups": groups,
        "per_run": per_run,
        "summary_table": "\n".join(lines),
        "targets": check_targets(systems, targets),
    }
