"""Training runs: submit one bot's run (to KFP, or here through kfp.local), read a run's state, list runs.

Labels. KFP v2 runs and experiments have no labels (v1's resource references and labels are
gone from the v2beta1 API), so a run carries them three ways: the experiment ``bot-<bot_id>``
groups a bot's runs (the UI and ``list_runs(bot_id=...)`` filter on it); the run's display
name ``"<bot_id> <trigger> data=<hash[:12]>"`` shows bot id, trigger and data hash at a glance;
and the description holds every label as one JSON object (``{"botyard_labels": {...}}``),
which ``list_runs`` reads back. The runtime parameters (``bot_id``, ``data_uri``) are the
fallback for runs started by a schedule, which carry no description.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone

from botyard.components.base import contracts as c
from botyard.components.base.config import GpuConfig
from botyard.components.base.errors import ConfigError, SubmitError
from botyard.components.base.model_store import check_bot_id
from botyard.pipelines.kfp.client import REQUEST_TIMEOUT_S, Connection, Target, connect, status_of, ui_url
from botyard.pipelines.kfp.experiments import ensure_experiment, find_experiment
from botyard.pipelines.kfp.naming import (
    DEFAULT_SERVICE_ACCOUNT,
    LABELS_KEY,
    LOCAL_HOST,
    MANUAL,
    SCHEDULED,
    botyard_version,
    check_trigger,
    experiment_name,
    run_name,
)
from botyard.pipelines.kfp.parameters import check_cluster_uri, check_parameters, data_fingerprint, default_models_root
from botyard.pipelines.kfp.pipeline_versions import ensure_pipeline_version

# KFP's runtime states -> botyard's
STATES = {
    "RUNTIME_STATE_UNSPECIFIED": "unknown",
    "PENDING": "pending",
    "RUNNING": "running",
    "SUCCEEDED": "succeeded",
    "SKIPPED": "skipped",
    "FAILED": "failed",
    "CANCELING": "canceling",
    "CANCELED": "canceled",
    "PAUSED": "paused",
}
TERMINAL_STATES = frozenset({"succeeded", "failed", "skipped", "canceled"})
HEADLINE_METRICS = ("accuracy", "macro_f1", "test_size")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass
class SubmittedRun:
    run_id: str
    bot_id: str
    data_hash: str
    experiment: str
    pipeline_version: str
    host: str  # the KFP endpoint, or "local"
    url: str  # the run's page in the KFP UI, or the local run folder
    trigger: str = MANUAL
    run_name: str = ""
    pipeline_uploaded: bool = False  # this submission uploaded the pipeline version
    local: object | None = None  # botyard.pipelines.local_run.LocalRun for a local run


@dataclass
class RunInfo:
    run_id: str
    name: str
    state: str
    bot_id: str | None
    trigger: str | None
    data_hash: str | None
    created_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None  # finished - created; None while the run is not finished
    error: str | None
    pipeline_version: str | None
    url: str
    metrics: dict = field(default_factory=dict)  # headline metrics of the model version it registered
    model_version: str | None = None


def runtime_parameters(params: dict, bot_id: str, data_uri: str, models_root: str) -> dict:
    return {**params, "bot_id": bot_id, "data_uri": data_uri, "models_root": models_root}


def service_account_for(connection: Connection, service_account: str | None) -> str | None:
    """The Kubernetes service account a run executes as.

    None: ``default-editor`` on a multi-user server (what a profile namespace runs pipelines as),
    the server's own default (``pipeline-runner``) on a single-user one, which has no
    ``default-editor``; "" always means the server's default.
    """
    if service_account is None:
        return DEFAULT_SERVICE_ACCOUNT if connection.multi_user else None
    return service_account or None


# --- submitting ----------------------------------------------------------------------------------


def submit_bot_run(
    bot_id: str,
    data_uri: str,
    host: Target | None = None,
    trigger: str = MANUAL,
    models_root: str | None = None,
    parameters: dict | None = None,
    *,
    gpu: GpuConfig | None = None,
    pipeline_root: str = "runs",
    console=None,
    data_hash: str | None = None,
    service_account: str | None = None,
) -> SubmittedRun:
    """Start one training run of ``bot_id`` on its data: on the KFP endpoint ``host``, or locally when it is None.

    ``host`` is a URL (credentials from the environment) or a ``KfpEndpoint`` (namespace,
    token file, ...). The run executes as ``service_account`` (see ``service_account_for``).

    The data is read and validated here first (its hash labels the run), so bad data raises
    ``DataValidationError`` before anything is submitted; a caller that has checked the data
    already (the trigger service, in a sandboxed process) passes its ``data_hash`` and nothing
    is read here. ``models_root`` defaults to ``$BOTYARD_MODELS_ROOT`` or ``models``; on a
    cluster it and ``data_uri`` must be URIs the pods can reach. ``parameters`` are other
    bot_training inputs (``epochs``, ``min_accuracy``, ...).
    """
    check_bot_id(bot_id)
    check_trigger(trigger)
    params = check_parameters(parameters)
    models_root = models_root or default_models_root()
    if host is None:
        return _submit_locally(bot_id, data_uri, trigger, models_root, params, pipeline_root, console)
    import kfp_server_api

    check_cluster_uri("data_uri", data_uri)
    check_cluster_uri("models_root", models_root)
    digest = data_hash or data_fingerprint(data_uri, params)
    connection = connect(host)
    pipeline_id, version_id, version_name, uploaded = ensure_pipeline_version(connection, gpu)
    experiment_id = ensure_experiment(connection, bot_id)
    labels = {
        "bot_id": bot_id,
        "data_hash": digest,
        "trigger": trigger,
        "data_uri": data_uri,
        "pipeline_version": version_name,
        "botyard_version": botyard_version(),
    }
    name = run_name(bot_id, trigger, digest)
    body = kfp_server_api.V2beta1Run(
        experiment_id=experiment_id,
        display_name=name,
        description=json.dumps({LABELS_KEY: labels}, sort_keys=True),
        pipeline_version_reference=kfp_server_api.V2beta1PipelineVersionReference(pipeline_id=pipeline_id, pipeline_version_id=version_id),
        runtime_config=kfp_server_api.V2beta1RuntimeConfig(parameters=runtime_parameters(params, bot_id, data_uri, models_root)),
        service_account=service_account_for(connection, service_account),
    )
    with connection.errors(f"starting a run of bot '{bot_id}'"):
        run = connection.client.runs.run_service_create_run(body, _request_timeout=REQUEST_TIMEOUT_S)
    return SubmittedRun(
        run_id=run.run_id,
        bot_id=bot_id,
        data_hash=digest,
        experiment=experiment_name(bot_id),
        pipeline_version=version_name,
        host=connection.host,
        url=ui_url(connection.host, f"runs/details/{run.run_id}"),
        trigger=trigger,
        run_name=name,
        pipeline_uploaded=uploaded,
    )


def _submit_locally(bot_id, data_uri, trigger, models_root, params, pipeline_root, console) -> SubmittedRun:
    from botyard.pipelines.local_run import run_bot_training_locally

    result = run_bot_training_locally(bot_id, data_uri, models_root, pipeline_root, params, console=console)
    run_dir = result.run_dir or ""
    return SubmittedRun(
        run_id=os.path.basename(run_dir) or result.version,
        bot_id=bot_id,
        data_hash=result.metadata.get(c.DATA_HASH, ""),
        experiment=LOCAL_HOST,
        pipeline_version=LOCAL_HOST,
        host=LOCAL_HOST,
        url=run_dir,
        trigger=trigger,
        run_name=run_name(bot_id, trigger, result.metadata.get(c.DATA_HASH, "")),
        local=result,
    )


# --- following runs ------------------------------------------------------------------------------


def normalise_state(state) -> str:
    """botyard's name for a KFP runtime state (``RUNNING`` -> ``running``); unknown ones -> ``unknown``."""
    return STATES.get(str(state or "RUNTIME_STATE_UNSPECIFIED").upper(), "unknown")


def get_run_state(run_id: str, host: Target | None = None, *, pipeline_root: str = "runs") -> str:
    """The state of a run: pending, running, succeeded, failed, skipped, canceling, canceled, paused or unknown.

    Without a host, ``run_id`` is a local run folder under ``pipeline_root`` (local runs finish
    before ``submit_bot_run`` returns): succeeded when its register step wrote outputs, else failed.
    """
    if host is None:
        run_dir = os.path.join(pipeline_root, run_id)
        if not run_id or not os.path.isdir(run_dir):
            raise SubmitError(f"no local run '{run_id}' under {os.path.abspath(pipeline_root)}")
        done = os.path.exists(os.path.join(run_dir, "register", "executor_output.json"))
        return "succeeded" if done else "failed"
    import kfp_server_api

    connection = connect(host)
    with connection.errors(f"reading run '{run_id}'"):
        try:
            run = connection.client.runs.run_service_get_run(run_id, _request_timeout=REQUEST_TIMEOUT_S)
        except kfp_server_api.ApiException as exc:
            if status_of(exc) == 404:
                raise SubmitError(f"KFP at {connection.host}: no run with id '{run_id}' (HTTP 404)", status=404) from exc
            raise
    return normalise_state(run.state)


def as_utc(value) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    value = value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return None if value <= _EPOCH else value  # KFP reports "1970-01-01T00:00:00Z" for "not yet"


def labels_of(run) -> dict:
    """A run's botyard labels: from its description, else from its runtime parameters."""
    labels = {}
    try:
        doc = json.loads(run.description or "")
        if isinstance(doc, dict) and isinstance(doc.get(LABELS_KEY), dict):
            labels = dict(doc[LABELS_KEY])
    except ValueError:
        pass
    params = (run.runtime_config.parameters if run.runtime_config else None) or {}
    labels.setdefault("bot_id", params.get("bot_id"))
    if getattr(run, "recurring_run_id", None):
        labels.setdefault("trigger", SCHEDULED)
    return labels


def _headline_metrics(run, labels: dict) -> tuple[dict, str | None]:
    """The metrics of the model version a succeeded run registered, when its model store is readable from here.

    KFP v2's run API carries no metrics, so this reads ``metadata.json`` of the bot's version
    registered during the run (version ids start with their UTC creation time and end with
    the data hash's first 8 characters).
    """
    from botyard.components.base.model_store import ModelStore

    params = (run.runtime_config.parameters if run.runtime_config else None) or {}
    models_root, bot_id = params.get("models_root"), labels.get("bot_id")
    created, finished = as_utc(run.created_at), as_utc(run.finished_at)
    if not (models_root and bot_id and created and finished):
        return {}, None
    lo, hi = created.strftime("%Y%m%dT%H%M%SZ"), finished.strftime("%Y%m%dT%H%M%SZ")
    prefix = (labels.get("data_hash") or "")[:8]
    try:
        store = ModelStore(models_root)
        candidates = [v for v in store.versions(bot_id) if lo <= v[:16] <= hi and (not prefix or v[17:25] == prefix)]
        if not candidates:
            return {}, None
        meta = store.metadata(bot_id, candidates[-1])
    except Exception:  # noqa: BLE001 - best effort: a remote store's errors are not OSErrors; no metrics then
        return {}, None
    metrics = meta.get(c.METRICS, {})
    return {k: metrics[k] for k in HEADLINE_METRICS if k in metrics}, candidates[-1]


def run_info(run, host: str, with_metrics: bool = True) -> RunInfo:
    labels = labels_of(run)
    created, finished = as_utc(run.created_at), as_utc(run.finished_at)
    state = normalise_state(run.state)
    error = None
    if run.error is not None and (run.error.message or run.error.code):
        error = run.error.message or f"code {run.error.code}"
    metrics, version = _headline_metrics(run, labels) if with_metrics and state == "succeeded" else ({}, None)
    return RunInfo(
        run_id=run.run_id,
        name=run.display_name or "",
        state=state,
        bot_id=labels.get("bot_id"),
        trigger=labels.get("trigger"),
        data_hash=labels.get("data_hash"),
        created_at=created,
        finished_at=finished,
        duration_s=(finished - created).total_seconds() if created and finished and state in TERMINAL_STATES else None,
        error=error,
        pipeline_version=labels.get("pipeline_version"),
        url=ui_url(host, f"runs/details/{run.run_id}"),
        metrics=metrics,
        model_version=version,
    )


def list_runs(host: Target, bot_id: str | None = None, limit: int = 20, *, with_metrics: bool = True) -> list[RunInfo]:
    """The most recent runs (newest first), all bots or one bot's (its experiment's)."""
    if not 1 <= int(limit) <= 1000:
        raise ConfigError(f"limit = {limit!r} is out of range; allowed: 1 to 1000")
    connection = connect(host)
    with connection.errors("listing runs"):
        kwargs = connection.scope()
        if bot_id is not None:
            experiment = find_experiment(connection, experiment_name(check_bot_id(bot_id)))
            if experiment is None:
                return []
            kwargs = {"experiment_id": experiment.experiment_id}
        found = connection.client.runs.run_service_list_runs(
            page_size=int(limit), sort_by="created_at desc", _request_timeout=REQUEST_TIMEOUT_S, **kwargs
        )
    return [run_info(r, connection.host, with_metrics) for r in (found.runs or [])]
