"""Load the candidate model version into a real ``botyard serve`` process and send it requests.

The predictor runs on a private model store holding only the candidate (a link or copy),
on 127.0.0.1 and a free port, and is stopped afterwards: no step leaves a process behind.
A version that fails to load, to get ready or to answer sensibly is not deployed.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field

from botyard.components.base import contracts as c
from botyard.components.base.artifacts import write_json
from botyard.components.base.errors import BotyardError
from botyard.components.base.model_store import ModelStore
from botyard.components.base.predictor_client import start_predictor

MAX_SAMPLES = 16


@dataclass
class InfraResult:
    blessed: bool
    reasons: list[str] = field(default_factory=list)
    latency_ms: float | None = None

    def to_json(self) -> dict:
        return asdict(self)


def _stage_candidate(models_root: str, bot_id: str, version: str, workdir: str) -> str:
    """A model store under ``workdir`` with only the candidate, promoted."""
    staged = ModelStore(os.path.join(workdir, "models"))
    staged.stage(ModelStore(models_root).version_dir(bot_id, version), bot_id)
    return staged.root


def run_infra_check(models_root: str, bot_id: str, version: str, utterances: list[str], ready_timeout: float = 300.0) -> InfraResult:
    """Start a predictor on the candidate, send ``utterances`` (V1), check every answer."""
    samples = [u for u in utterances if u.strip()][:MAX_SAMPLES] or ["hello"]
    labels = set(ModelStore(models_root).metadata(bot_id, version)[c.LABELS])
    with tempfile.TemporaryDirectory(prefix="botyard-infra-") as workdir:
        try:
            root = _stage_candidate(models_root, bot_id, version, workdir)
            with start_predictor(root, ready_timeout=ready_timeout, wait_for_bots=[bot_id], log_path=os.path.join(workdir, "predictor.log")) as predictor:
                started = time.perf_counter()
                status, body = predictor.predict(bot_id, samples)
                latency = (time.perf_counter() - started) * 1000
        except BotyardError as exc:
            return InfraResult(False, [f"FAIL: the predictor did not serve version {version}: {exc}"])
    if status != 200:
        return InfraResult(False, [f"FAIL: prediction request answered HTTP {status}: {body}"])
    predictions = body.get("predictions", []) if isinstance(body, dict) else []
    problems = []
    if len(predictions) != len(samples):
        problems.append(f"FAIL: {len(samples)} utterances sent, {len(predictions)} predictions returned")
    for p in predictions:
        if p.get("intent") not in labels or p.get("model_version") != version:
            problems.append(f"FAIL: unexpected prediction {json.dumps(p)[:200]}")
            break
    if problems:
        return InfraResult(False, problems, round(latency, 2))
    return InfraResult(True, [f"ok: version {version} loaded, got ready and answered {len(samples)} utterances in {latency:.1f} ms"], round(latency, 2))


def write_infra_result(result: InfraResult, output_dir: str) -> None:
    write_json(output_dir, c.INFRA_CHECK_FILE, result.to_json())
