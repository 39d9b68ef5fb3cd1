"""Run ``bot_training`` on this machine through ``kfp.local`` (the embedded default).

Bad data is caught before any step starts (the same ingest/validate cores the pipeline
runs), so the user gets one clear message instead of a failed subprocess. Step output
goes to ``<pipeline_root>/<run>.log``; the console shows one line per step.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import logging
import os
import threading
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources

from botyard.components.base import contracts as c
from botyard.components.base import storage
from botyard.components.base.config import ValidationConfig
from botyard.components.base.errors import BotyardError
from botyard.components.base.model_store import ModelStore, check_bot_id
from botyard.components.base.training_data import TrainingData, load_training_data
from botyard.pipelines.kfp.parameters import check_parameter_values

SAMPLE_BOT_ID = "sample-bot"
SAMPLE_EXAMPLE = "can I get a large latte"
EXECUTOR_OUTPUT_FILE = "executor_output.json"  # what kfp.local writes in each task's folder


def sample_bot_data() -> str:
    """Path of the shipped sample bot's training file."""
    return str(resources.files("botyard.pipelines") / "sample_bot" / "nlu.yml")


def preflight(data_uri: str, parameters: dict | None = None) -> TrainingData:
    """Ingest and validate in-process with the run's validation parameters (``min_examples_per_intent``,
    ``on_label_conflict``); raises ``DataValidationError`` with the full message."""
    return load_training_data(data_uri, ValidationConfig.from_run_parameters(parameters))


@dataclass
class LocalRun:
    bot_id: str
    version: str
    version_uri: str
    metadata: dict
    run_dir: str | None
    log_path: str
    seconds: float
    example_utterance: str = SAMPLE_EXAMPLE  # one of the bot's own utterances, to try the served model with

    @property
    def confusion_matrix_csv(self) -> str:
        return storage.join(self.version_uri, c.EVALUATION_DIR, c.CONFUSION_MATRIX_FILE)

    @property
    def confusion_matrix_artifact(self) -> str | None:
        if not self.run_dir:
            return None
        return os.path.join(self.run_dir, "evaluate", "confusion_matrix")

    def _artifact_json(self, *parts: str) -> dict | None:
        path = os.path.join(self.run_dir or "", *parts)
        if not self.run_dir or not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def task_outputs(self) -> dict[str, dict]:
        """Every task's outputs as kfp.local recorded them, in the order the tasks finished.

        ``{task: {"parameters": {name: value}, "artifacts": {name: {"uri": ..., "metadata": {...}}}}}``,
        read from ``<run_dir>/<task>/executor_output.json`` (a Metrics artifact's figures are its
        metadata). Empty when the run left no folder.
        """
        if not self.run_dir or not os.path.isdir(self.run_dir):
            return {}
        recorded = []
        for task in os.listdir(self.run_dir):
            path = os.path.join(self.run_dir, task, EXECUTOR_OUTPUT_FILE)
            if os.path.isfile(path):
                recorded.append((os.path.getmtime(path), task, path))
        outputs = {}
        for _, task, path in sorted(recorded):
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
            artifacts = {
                name: {"uri": entry["artifacts"][0].get("uri"), "metadata": entry["artifacts"][0].get("metadata") or {}}
                for name, entry in (doc.get("artifacts") or {}).items()
                if entry.get("artifacts")
            }
            outputs[task] = {"parameters": doc.get("parameterValues") or {}, "artifacts": artifacts}
        return outputs

    @property
    def blessing(self) -> dict | None:
        """The promotion gate's verdict, or None if the gate did not run."""
        return self._artifact_json("gate", "blessing", c.BLESSING_FILE)

    @property
    def infra_result(self) -> dict | None:
        """The infra check's verdict, or None if it did not run (candidate not blessed)."""
        return self._artifact_json("infra-check", "result", c.INFRA_CHECK_FILE)

    @property
    def deployment(self) -> dict | None:
        """What the deploy step did, or None if it did not run."""
        return self._artifact_json("deploy", "deployment", c.DEPLOYMENT_FILE)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PROGRESS = re.compile(r"(Executing task|Task .* finished with status|Pipeline .* finished with status)")
_FAILED_TASK = re.compile(r"Inner task failed: '([^']+)'")
# the exception a failed step ended with, as its traceback's last line prints it
_STEP_ERROR = re.compile(r"^\s*(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception)): (.+)$")
LOG_TAIL_BYTES = 256 * 1024  # where a failed step's last exception is looked for


def failure_reason(exc: BaseException, log_path: str) -> str:
    """What to tell a user when kfp.local's run failed: the failed step and the exception it ended
    with (read from the end of the run's log), without kfp.local's colour codes."""
    message = _ANSI.sub("", str(exc))
    task = _FAILED_TASK.search(message)
    try:
        with open(log_path, "rb") as f:
            f.seek(max(0, os.path.getsize(log_path) - LOG_TAIL_BYTES))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        tail = ""
    errors = [m for m in map(_STEP_ERROR.match, _ANSI.sub("", tail).splitlines()) if m]
    if task and errors:
        name, text = errors[-1].groups()
        return f"step '{task.group(1)}' failed: {name}: {text}"
    return message


class ProgressTee(io.TextIOBase):
    """Writes everything to the log; echoes step start/finish lines to the console."""

    def __init__(self, log, console):
        self.log, self.console, self.buffer_ = log, console, ""
        self.started = time.perf_counter()

    _lock = threading.Lock()  # kfp.local's loop threads write at once

    def write(self, text: str) -> int:
        with self._lock:
            return self._write(text)

    def _write(self, text: str) -> int:
        self.log.write(text)
        self.buffer_ += text
        while "\n" in self.buffer_:
            line, self.buffer_ = self.buffer_.split("\n", 1)
            plain = _ANSI.sub("", line)
            if _PROGRESS.search(plain):
                message = plain.split(" - INFO - ", 1)[-1].replace("'", "")
                self.console.write(f"[{time.perf_counter() - self.started:6.1f}s] {message}\n")
                self.console.flush()
        return len(text)

    def flush(self) -> None:
        self.log.flush()


@contextlib.contextmanager
def _contained_output(tee):
    """Send stdout, stderr and logging to ``tee`` during a kfp.local run; restore all three after.

    kfp.local's loop threads each swap ``builtins.print`` (to indent step output) and the root
    logger's handlers, without a lock, so a run with ``ParallelFor`` can leave them swapped
    (later prints indented, its log lines on the console). Pointing the root logger at the tee
    while it runs and restoring both afterwards keeps that inside the run's log file.
    """
    root = logging.getLogger()
    saved_print, saved_handlers, saved_level = builtins.print, root.handlers[:], root.level
    root.handlers[:] = [logging.StreamHandler(tee)]
    try:
        with contextlib.redirect_stdout(tee), contextlib.redirect_stderr(tee):
            yield
    finally:
        builtins.print = saved_print
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


@dataclass
class LocalSession:
    """Where one kfp.local run writes: its step log, and its run folder once it has finished."""

    log_path: str
    started: float
    run_dir: str | None = None

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


@contextlib.contextmanager
def local_session(pipeline_name: str, pipeline_root: str, label: str, console):
    """Run a pipeline through kfp.local inside: step output to ``<pipeline_root>/<name>-<label>-<time>.log``,
    one progress line per step on ``console``; a failed run becomes a ``BotyardError`` naming the log."""
    from kfp import local

    os.makedirs(pipeline_root, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    session = LocalSession(os.path.join(pipeline_root, f"{pipeline_name}-{label}-{stamp}.log"), time.perf_counter())
    before = set(os.listdir(pipeline_root))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=pipeline_root, raise_on_error=True)
    with open(session.log_path, "w", encoding="utf-8") as log:
        try:
            with _contained_output(ProgressTee(log, console)):
                yield session
        except (RuntimeError, ValueError) as exc:  # kfp.local: RuntimeError, or ValueError when a loop iteration crashed
            log.flush()
            reason = failure_reason(exc, session.log_path)
            raise BotyardError(f"pipeline {pipeline_name} failed ({label}): {reason}; see the step logs in {session.log_path}") from exc
    new_dirs = sorted(d for d in set(os.listdir(pipeline_root)) - before if d.startswith(pipeline_name) and not d.endswith(".log"))
    session.run_dir = os.path.join(pipeline_root, new_dirs[-1]) if new_dirs else None


def run_bot_training_locally(
    bot_id: str = SAMPLE_BOT_ID,
    data_uri: str | None = None,
    models_root: str = "models",
    pipeline_root: str = "runs",
    parameters: dict | None = None,
    console=None,
) -> LocalRun:
    """Run the whole pipeline on one bot; returns the new model version and where its outputs are."""
    from botyard.pipelines.bot_training import PIPELINE_NAME, bot_training

    console = console or sys.stdout
    check_bot_id(bot_id)
    data_uri = data_uri or sample_bot_data()
    parameters = dict(parameters or {})
    check_parameter_values(parameters)  # a bad value fails now, not in a step minutes in
    if parameters.get("deploy_target") == "cluster":  # the cluster's pods must reach both
        from botyard.components.deploy.config import check_cluster_locations

        check_cluster_locations(data_uri=data_uri, models_root=models_root)
    checked = preflight(data_uri, parameters)
    for line in checked.report.conflict_summary():  # warn / drop: the user sees what was kept or dropped
        console.write(f"botyard: {line}\n")
    models_root = storage.absolute(models_root)  # s3:// and gs:// stay as they are
    storage.exists(storage.check_uri(models_root))  # a bad scheme, no credentials, no endpoint: fail now, not in register
    with local_session(PIPELINE_NAME, os.path.abspath(pipeline_root), bot_id, console) as session:
        task = bot_training(bot_id=bot_id, data_uri=data_uri, models_root=models_root, **parameters)
    version_uri = task.output
    version = os.path.basename(version_uri.rstrip("/"))
    return LocalRun(
        bot_id=bot_id,
        version=version,
        version_uri=version_uri,
        metadata=ModelStore(models_root).metadata(bot_id, version),
        run_dir=session.run_dir,
        log_path=session.log_path,
        seconds=session.seconds,
        example_utterance=example_utterance(checked.table),
    )


def example_utterance(table) -> str:
    """An utterance of the bot's own to try its served model with: the first one with entity spans
    (the answer then shows entities too), else the first one."""
    annotated = [u for u, spans in zip(table[c.UTTERANCE], table[c.ENTITIES]) if len(spans or ())] if c.ENTITIES in table else []
    return (annotated or list(table[c.UTTERANCE]) or [SAMPLE_EXAMPLE])[0]
