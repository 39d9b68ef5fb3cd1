"""The trigger service's back ends: where a batch's run goes, and how its state is read.

A back end is two callables (``Submitter``, ``RunState``, see ``dispatcher``)::

    kfp_backend(host, ...)     runs on Kubeflow Pipelines (``botyard.pipelines.kfp.runs``); the data
                               hash the sandbox computed labels the run, so nothing is read here
    local_backend(...)         --dev without --kfp-host: each run is a ``botyard run`` subprocess
                               on this machine (kfp.local), so the server never trains or parses
                               in its own process; its state is the subprocess's exit code

Tests and other orchestrators pass their own pair (``--submitter`` / ``--run-state``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import uuid
from typing import Callable

log = logging.getLogger(__name__)

Submitter = Callable[[str, str, str, str], str]
RunState = Callable[[str], str]
LOCAL_RUN_PREFIX = "local-"


def kfp_backend(
    host: str, *, namespace: str | None = None, token_file: str | None = None, service_account: str | None = None
) -> tuple[Submitter, RunState]:
    """``(submitter, run_state)`` on the KFP API at ``host`` (``namespace``, ``token_file`` as ``KfpEndpoint`` takes them).

    Connects once now: a multi-user server without a namespace, or an unreadable token file, is a
    ``ConfigError`` before the service starts; an API that is down is only logged.
    """
    from botyard.pipelines.kfp import runs
    from botyard.pipelines.kfp.client import KfpEndpoint

    target = KfpEndpoint.from_environment(host, namespace=namespace, token_file=token_file)
    _preflight(target)

    def submitter(bot_id: str, data_uri: str, data_hash: str, trigger: str) -> str:
        return runs.submit_bot_run(
            bot_id, data_uri, host=target, trigger=trigger, service_account=service_account, data_hash=data_hash
        ).run_id

    def run_state(run_id: str) -> str:
        return runs.get_run_state(run_id, host=target)

    return submitter, run_state


def _preflight(target) -> None:
    from botyard.components.base.errors import SubmitError
    from botyard.pipelines.kfp import client

    try:
        client.connect(target)
    except SubmitError as exc:
        log.warning("trigger: KFP is not reachable yet (%s); runs are submitted once it is", exc)


def local_backend(models_root: str, pipeline_root: str) -> tuple[Submitter, RunState]:
    """``(submitter, run_state)`` running ``botyard run`` subprocesses (dev mode; logs in ``pipeline_root``).

    The submitter returns at once; a run is "running" while its process lives, then
    "succeeded" (exit code 0) or "failed". Runs started by an earlier server process are
    "failed" (their outcome is not known here).
    """
    processes: dict[str, subprocess.Popen] = {}
    lock = threading.Lock()
    os.makedirs(pipeline_root, exist_ok=True)

    def submitter(bot_id: str, data_uri: str, data_hash: str, trigger: str) -> str:
        run_id = f"{LOCAL_RUN_PREFIX}{bot_id}-{uuid.uuid4().hex[:8]}"
        argv = [sys.executable, "-m", "botyard.pipelines.cli", "run", "--bot-id", bot_id, "--data", data_uri,
                "--models-root", models_root, "--pipeline-root", pipeline_root]  # fmt: skip
        with open(os.path.join(pipeline_root, f"{run_id}.log"), "ab") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        with lock:
            processes[run_id] = process
        return run_id

    def run_state(run_id: str) -> str:
        with lock:
            process = processes.get(run_id)
        if process is None:
            return "failed"
        code = process.poll()  # the Popen stays: its exit code is the run's final state
        if code is None:
            return "running"
        return "succeeded" if code == 0 else "failed"

    return submitter, run_state
