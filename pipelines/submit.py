"""Submit a bot's training to Kubeflow Pipelines (or run it here), follow runs, and schedule retraining.

How botyard maps onto KFP v2's objects::

    pipeline    bot-training                            one KFP pipeline for every bot
    version     <botyard version>-<sha256(YAML)[:12]>   one per code version: looked up first, uploaded once
    experiment  bot-<bot_id>                            one per bot: holds its runs and its schedule
    run         "<bot_id> <trigger> data=<hash[:12]>"   description: {"botyard_labels": {...}} (JSON)
    schedule    recurring run bot-<bot_id>-schedule     cron, max_concurrency=1, no_catchup=True

Labels. KFP v2 runs and experiments have no labels (v1's resource references and labels are
gone from the v2beta1 API), so a run carries them three ways: the experiment groups a bot's
runs (the UI and ``list_runs(bot_id=...)`` filter on it); the run's display name shows bot id,
trigger and data hash at a glance; and the description holds every label as one JSON object
(``LABELS_KEY``), which ``list_runs`` reads back. The runtime parameters (``bot_id``,
``data_uri``) are the fallback for runs started by a schedule, which carry no description.

Version reuse. The pipeline is compiled here; its version name is botyard's package version
plus a hash of the compiled YAML (which includes the container image), so re-submitting the
same code finds the version by name and uploads nothing, while any change to the code, the
image or the GPU settings gets a new version. A brand-new ``bot-training`` pipeline is
uploaded first (KFP gives it a default version named after the pipeline), then the named
version. Concurrent submitters that race on an upload take the winner's copy on HTTP 409.

Errors. Every KFP or HTTP failure becomes a ``SubmitError`` naming the endpoint, what was being
done, the HTTP status and the server's own message; a host that does not answer the health
check fails in seconds instead of kfp.Client's five 5-second retries.

Calls go through the REST services kfp.Client exposes (``client.runs``, ``client.experiments``,
``client.pipeline_uploads``, ...): its convenience methods cannot set a run's description and
print links on stdout, which a trigger service does not want.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata

from botyard.components.base import contracts as c
from botyard.components.base.config import GpuConfig, ValidationConfig
from botyard.components.base.errors import BotyardError, ConfigError, SubmitError
from botyard.components.base.model_store import check_bot_id

PIPELINE_NAME = "bot-training"  # == botyard.pipelines.bot_training.PIPELINE_NAME (not imported: kfp is slow to import)
PIPELINE_FILE = "bot_training"  # its key in botyard.pipelines.builders.pipeline_builders()
EXPERIMENT_PREFIX = "bot-"
SCHEDULE_SUFFIX = "-schedule"
LABELS_KEY = "botyard_labels"
LOCAL_HOST = "local"
MANUAL, SCHEDULED = "manual", "schedule"  # triggers botyard itself uses; the trigger service adds its own
REQUEST_TIMEOUT_S = 60
PROBE_TIMEOUT_S = 10
HEALTHZ_PATH = "/apis/v2beta1/healthz"
PER_BOT_PARAMETERS = ("bot_id", "data_uri", "models_root")  # set by submit_bot_run's own arguments
MODELS_ROOT_ENV = "BOTYARD_MODELS_ROOT"

_TRIGGER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,62}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

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


# --- results -------------------------------------------------------------------------------------


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


@dataclass
class ScheduleInfo:
    schedule_id: str
    name: str
    bot_id: str | None
    cron: str | None
    enabled: bool
    max_concurrency: int | None
    no_catchup: bool | None
    experiment_id: str | None
    created_at: datetime | None
    pipeline_version_id: str | None


# --- names and checks ----------------------------------------------------------------------------


def experiment_name(bot_id: str) -> str:
    return f"{EXPERIMENT_PREFIX}{bot_id}"


def schedule_name(bot_id: str) -> str:
    return f"{EXPERIMENT_PREFIX}{bot_id}{SCHEDULE_SUFFIX}"


def run_name(bot_id: str, trigger: str, data_hash: str) -> str:
    return f"{bot_id} {trigger} data={data_hash[:12]}"


def botyard_version() -> str:
    try:
        return importlib_metadata.version("botyard")
    except importlib_metadata.PackageNotFoundError:
        return "0+unknown"


def check_trigger(trigger: str) -> str:
    if not isinstance(trigger, str) or not _TRIGGER.match(trigger):
        raise ConfigError(
            f"trigger {trigger!r} is not valid: use 1-63 letters, digits and '_.:/-', starting with a letter or digit"
        )
    return trigger


_CRON_FIELDS = (  # name, low, high, names allowed (robfig/cron, which KFP uses)
    ("second", 0, 59, False),
    ("minute", 0, 59, False),
    ("hour", 0, 23, False),
    ("day of month", 1, 31, False),
    ("month", 1, 12, True),
    ("day of week", 0, 6, True),
)
_CRON_DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_CRON_NAMES = re.compile(r"^(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|SUN|MON|TUE|WED|THU|FRI|SAT)$", re.I)


def normalize_cron(cron: str) -> str:
    """KFP's 6-field cron (with seconds) from a 5-field (``m h dom mon dow``) or 6-field expression.

    A 5-field expression gets ``0`` seconds prefixed; ``@daily``-style shortcuts are expanded.
    Anything else raises ``ConfigError`` naming the field at fault.
    """
    text = " ".join(str(cron or "").split())
    if text.lower() in _CRON_DESCRIPTORS:
        return _CRON_DESCRIPTORS[text.lower()]
    fields = text.split(" ") if text else []
    if len(fields) == 5:
        fields = ["0", *fields]
    elif len(fields) != 6:
        raise ConfigError(
            f"cron {cron!r} has {len(fields)} field(s); use 5 (minute hour day-of-month month day-of-week, "
            "e.g. '0 3 * * *' for 03:00 daily) or 6 with seconds first ('0 0 3 * * *')"
        )
    for value, (name, low, high, names_ok) in zip(fields, _CRON_FIELDS):
        _check_cron_field(cron, value, name, low, high, names_ok)
    return " ".join(fields)


def _check_cron_field(cron: str, value: str, name: str, low: int, high: int, names_ok: bool) -> None:
    def bad(why: str):
        return ConfigError(f"cron {cron!r}: {name} field {value!r} {why}; allowed: {low}-{high}, '*', lists (a,b), ranges (a-b) and steps (*/n)")

    for part in value.split(","):
        base, _, step = part.partition("/")
        if step and (not step.isdigit() or int(step) < 1):
            raise bad(f"has an invalid step {step!r}")
        if base in ("*", "?"):
            continue
        for bound in base.split("-", 1):
            if bound.isdigit():
                if not low <= int(bound) <= high:
                    raise bad(f"is out of range ({bound})")
            elif not (names_ok and _CRON_NAMES.match(bound)):
                raise bad("is not a number, '*', range, list or step")


def _check_parameters(parameters: dict | None) -> dict:
    """``parameters`` checked against bot_training's inputs (bot_id, data_uri, models_root excluded)."""
    params = dict(parameters or {})
    if not params:
        return params
    from botyard.pipelines.bot_training import bot_training

    known = sorted(k for k in (bot_training.component_spec.inputs or {}) if k not in PER_BOT_PARAMETERS)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(f"unknown pipeline parameter(s) {unknown}; known: {known}")
    return params


def _check_cluster_uri(name: str, uri: str) -> None:
    """A path the cluster's pods can reach: a URI with a scheme, or an absolute path (a mounted volume)."""
    if "://" not in uri and not os.path.isabs(uri):
        raise ConfigError(
            f"{name} {uri!r} is a relative local path, which a pod on the cluster cannot see; use a URI the "
            "pipeline's pods can reach (gs://bucket/..., s3://...) or an absolute path on a volume they mount"
        )


def data_fingerprint(data_uri: str, parameters: dict | None = None) -> str:
    """The data hash of a bot's training file, after the same validation the pipeline runs
    (with the run's ``min_examples_per_intent`` and ``on_label_conflict``).

    Bad data raises ``DataValidationError`` here, before any cluster time is spent.
    """
    from botyard.components.base.training_data import load_training_data

    return load_training_data(data_uri, ValidationConfig.from_run_parameters(parameters)).data_hash


def default_models_root() -> str:
    return os.environ.get(MODELS_ROOT_ENV, "models")


# --- talking to KFP ------------------------------------------------------------------------------


def _server_message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if body:
        try:
            doc = json.loads(body)
            if isinstance(doc, dict):
                return str(doc.get("message") or doc.get("error") or body).strip()
        except ValueError:
            pass
        return " ".join(str(body).split())[:300]
    return str(getattr(exc, "reason", "") or exc)


def _hint(status: int | None) -> str:
    if status in (401, 403):
        return " (not authorised: pass an authenticated kfp.Client, or reach the API through `kubectl port-forward`)"
    if status and status >= 500:
        return " (the KFP API server failed; its logs: kubectl logs -n kubeflow deploy/ml-pipeline)"
    return ""


@contextlib.contextmanager
def kfp_errors(host: str, action: str):
    """Translate what kfp.Client and its REST client raise into ``SubmitError``."""
    import kfp_server_api
    import urllib3

    try:
        yield
    except BotyardError:
        raise
    except kfp_server_api.ApiException as exc:
        status = getattr(exc, "status", None)
        raise SubmitError(
            f"KFP at {host}: {action} failed: HTTP {status}: {_server_message(exc)}{_hint(status)}", status=status
        ) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise SubmitError(f"cannot reach KFP at {host} while {action} ({reason}); check the host URL and that the API server is up") from exc
    except ValueError as exc:  # kfp.Client's own checks, e.g. two experiments with one name
        raise SubmitError(f"KFP at {host}: {action} failed: {exc}") from exc


def _normalise_host(host: str) -> str:
    host = host.strip().rstrip("/")
    return host if host.startswith(("http://", "https://")) else "https://" + host  # kfp.Client's default too


def probe(host: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast with a clear message when ``host`` is not a KFP API that answers its health check."""
    url = _normalise_host(host) + HEALTHZ_PATH
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the same direct route kfp.Client takes
    try:
        with opener.open(url, timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise SubmitError(
            f"KFP at {host}: the health check {HEALTHZ_PATH} answered HTTP {exc.code}{_hint(exc.code)}; is {host} the "
            "KFP API or UI endpoint (e.g. http://localhost:8080 after `kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`)?",
            status=exc.code,
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise SubmitError(f"cannot reach KFP at {host} ({reason}); check the host URL and that the API server is up") from exc


def make_client(host: str):
    """A ``kfp.Client`` for ``host`` (after a quick health probe); pass your own for authenticated endpoints."""
    import kfp

    probe(host)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "This client only works with KFP v2.0.0-beta.2 and later"
        with kfp_errors(host, "connecting"):
            return kfp.Client(host=_normalise_host(host))


_CLIENTS: dict = {}  # normalised host -> kfp.Client, shared by every call in this process
_CLIENTS_LOCK = threading.Lock()


def client_for(host: str):
    """The process's shared ``kfp.Client`` for ``host`` (made on first use).

    A trigger service submits and polls many runs: one client keeps one connection pool and
    skips the health checks a new client makes.
    """
    key = _normalise_host(host)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
    if client is None:
        client = make_client(host)
        with _CLIENTS_LOCK:
            client = _CLIENTS.setdefault(key, client)
    return client


def _filter(**equals) -> str:
    # the same form kfp.Client sends (operation 1 = EQUALS)
    return json.dumps({"predicates": [{"operation": 1, "key": k, "stringValue": v} for k, v in equals.items()]})


def _namespace(client) -> str | None:
    return client.get_user_namespace() or None


def _status(exc) -> int | None:
    return getattr(exc, "status", None)


def _ui_url(host: str, path: str) -> str:
    base = os.environ.get("KF_PIPELINES_UI_ENDPOINT") or host
    return f"{_normalise_host(base)}/#/{path}"


# --- pipeline versions ---------------------------------------------------------------------------

_COMPILED: dict[str, tuple[str, str]] = {}  # GPU settings (JSON) -> (YAML, version name)
_COMPILE_LOCK = threading.Lock()


def compiled_pipeline(gpu: GpuConfig | None = None) -> tuple[str, str]:
    """bot_training's YAML for ``gpu`` and its version name; compiled once per process."""
    gpu = gpu or GpuConfig()
    key = json.dumps(gpu.to_dict(), sort_keys=True)
    with _COMPILE_LOCK:
        if key not in _COMPILED:
            from kfp import compiler

            from botyard.pipelines.builders import pipeline_builders

            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, f"{PIPELINE_FILE}.yaml")
                compiler.Compiler().compile(pipeline_builders()[PIPELINE_FILE](gpu), package_path=path)
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            _COMPILED[key] = (text, pipeline_version_name(text))
        return _COMPILED[key]


def pipeline_version_name(pipeline_yaml: str) -> str:
    return f"{botyard_version()}-{hashlib.sha256(pipeline_yaml.encode('utf-8')).hexdigest()[:12]}"


def _find_pipeline(client) -> str | None:
    found = client.pipelines.pipeline_service_list_pipelines(filter=_filter(display_name=PIPELINE_NAME), page_size=2, _request_timeout=REQUEST_TIMEOUT_S)
    pipelines = [p for p in found.pipelines or [] if p.display_name == PIPELINE_NAME]
    return pipelines[0].pipeline_id if pipelines else None


def _find_version(client, pipeline_id: str, version_name: str) -> str | None:
    found = client.pipelines.pipeline_service_list_pipeline_versions(
        pipeline_id, filter=_filter(display_name=version_name), page_size=2, _request_timeout=REQUEST_TIMEOUT_S
    )
    versions = [v for v in found.pipeline_versions or [] if v.display_name == version_name]
    return versions[0].pipeline_version_id if versions else None


def ensure_pipeline_version(client, host: str, gpu: GpuConfig | None = None) -> tuple[str, str, str, bool]:
    """``(pipeline_id, version_id, version_name, uploaded)`` of this code's bot-training version on ``host``."""
    import kfp_server_api

    text, version_name = compiled_pipeline(gpu)
    with kfp_errors(host, f"looking up pipeline '{PIPELINE_NAME}' version '{version_name}'"):
        pipeline_id = _find_pipeline(client)
        version_id = _find_version(client, pipeline_id, version_name) if pipeline_id else None
    if version_id:
        return pipeline_id, version_id, version_name, False
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{PIPELINE_FILE}.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        if not pipeline_id:
            with kfp_errors(host, f"uploading pipeline '{PIPELINE_NAME}'"):
                try:
                    pipeline_id = client.pipeline_uploads.upload_pipeline(
                        path, name=PIPELINE_NAME, description="botyard: train, evaluate and register one bot's intent model",
                        _request_timeout=REQUEST_TIMEOUT_S,
                    ).pipeline_id
                except kfp_server_api.ApiException as exc:
                    if _status(exc) != 409 or not (pipeline_id := _find_pipeline(client)):
                        raise
        with kfp_errors(host, f"uploading pipeline version '{version_name}'"):
            try:
                version_id = client.pipeline_uploads.upload_pipeline_version(
                    path, name=version_name, pipelineid=pipeline_id,
                    description=f"botyard {botyard_version()}; YAML sha256 {hashlib.sha256(text.encode('utf-8')).hexdigest()}",
                    _request_timeout=REQUEST_TIMEOUT_S,
                ).pipeline_version_id
            except kfp_server_api.ApiException as exc:
                if _status(exc) != 409 or not (version_id := _find_version(client, pipeline_id, version_name)):
                    raise
                return pipeline_id, version_id, version_name, False
    return pipeline_id, version_id, version_name, True


def _find_experiment(client, name: str):
    kwargs = {"namespace": ns} if (ns := _namespace(client)) else {}
    found = client.experiments.experiment_service_list_experiments(
        filter=_filter(display_name=name), page_size=2, _request_timeout=REQUEST_TIMEOUT_S, **kwargs
    )
    experiments = [e for e in found.experiments or [] if e.display_name == name]
    return experiments[0] if experiments else None


def ensure_experiment(client, host: str, bot_id: str) -> str:
    """The id of the bot's experiment ``bot-<bot_id>``, created on first use."""
    import kfp_server_api

    name = experiment_name(bot_id)
    with kfp_errors(host, f"creating experiment '{name}'"):
        experiment = _find_experiment(client, name)
        if experiment is None:
            body = kfp_server_api.V2beta1Experiment(
                display_name=name, description=json.dumps({LABELS_KEY: {"bot_id": bot_id}}), namespace=_namespace(client)
            )
            try:
                experiment = client.experiments.experiment_service_create_experiment(body, _request_timeout=REQUEST_TIMEOUT_S)
            except kfp_server_api.ApiException as exc:
                if _status(exc) != 409 or (experiment := _find_experiment(client, name)) is None:
                    raise
    return experiment.experiment_id


# --- submitting ----------------------------------------------------------------------------------


def submit_bot_run(
    bot_id: str,
    data_uri: str,
    host: str | None = None,
    trigger: str = MANUAL,
    models_root: str | None = None,
    parameters: dict | None = None,
    client=None,
    *,
    gpu: GpuConfig | None = None,
    pipeline_root: str = "runs",
    console=None,
) -> SubmittedRun:
    """Start one training run of ``bot_id`` on its data: on the KFP endpoint ``host``, or locally when it is None.

    The data is read and validated here first (its hash labels the run), so bad data raises
    ``DataValidationError`` before anything is submitted. ``models_root`` defaults to
    ``$BOTYARD_MODELS_ROOT`` or ``models``; on a cluster it must be a URI the pods can reach.
    ``parameters`` are other bot_training inputs (``epochs``, ``min_accuracy``, ...).
    """
    check_bot_id(bot_id)
    check_trigger(trigger)
    params = _check_parameters(parameters)
    models_root = models_root or default_models_root()
    if host is None and client is None:
        return _submit_locally(bot_id, data_uri, trigger, models_root, params, pipeline_root, console)
    import kfp_server_api

    _check_cluster_uri("data_uri", data_uri)
    _check_cluster_uri("models_root", models_root)
    digest = data_fingerprint(data_uri, params)
    host = host or getattr(getattr(client, "_existing_config", None), "host", None) or "kfp"
    client = client or client_for(host)
    pipeline_id, version_id, version_name, uploaded = ensure_pipeline_version(client, host, gpu)
    experiment_id = ensure_experiment(client, host, bot_id)
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
        runtime_config=kfp_server_api.V2beta1RuntimeConfig(
            parameters={**params, "bot_id": bot_id, "data_uri": data_uri, "models_root": models_root}
        ),
    )
    with kfp_errors(host, f"starting a run of bot '{bot_id}'"):
        run = client.runs.run_service_create_run(body, _request_timeout=REQUEST_TIMEOUT_S)
    return SubmittedRun(
        run_id=run.run_id,
        bot_id=bot_id,
        data_hash=digest,
        experiment=experiment_name(bot_id),
        pipeline_version=version_name,
        host=host,
        url=_ui_url(host, f"runs/details/{run.run_id}"),
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


def get_run_state(run_id: str, host: str | None = None, client=None, *, pipeline_root: str = "runs") -> str:
    """The state of a run: pending, running, succeeded, failed, skipped, canceling, canceled, paused or unknown.

    Without a host, ``run_id`` is a local run folder under ``pipeline_root`` (local runs finish
    before ``submit_bot_run`` returns): succeeded when its register step wrote outputs, else failed.
    """
    if host is None and client is None:
        run_dir = os.path.join(pipeline_root, run_id)
        if not run_id or not os.path.isdir(run_dir):
            raise SubmitError(f"no local run '{run_id}' under {os.path.abspath(pipeline_root)}")
        done = os.path.exists(os.path.join(run_dir, "register", "executor_output.json"))
        return "succeeded" if done else "failed"
    import kfp_server_api

    host = host or "kfp"
    client = client or client_for(host)
    with kfp_errors(host, f"reading run '{run_id}'"):
        try:
            run = client.runs.run_service_get_run(run_id, _request_timeout=REQUEST_TIMEOUT_S)
        except kfp_server_api.ApiException as exc:
            if _status(exc) == 404:
                raise SubmitError(f"KFP at {host}: no run with id '{run_id}' (HTTP 404)", status=404) from exc
            raise
    return normalise_state(run.state)


def _time(value) -> datetime | None:
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
    created, finished = _time(run.created_at), _time(run.finished_at)
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
    except Exception:  # noqa: BLE001 - best effort: tf.errors.* (remote stores) are not OSErrors; no metrics then
        return {}, None
    metrics = meta.get(c.METRICS, {})
    return {k: metrics[k] for k in ("accuracy", "macro_f1", "test_size") if k in metrics}, candidates[-1]


def run_info(run, host: str, with_metrics: bool = True) -> RunInfo:
    labels = labels_of(run)
    created, finished = _time(run.created_at), _time(run.finished_at)
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
        url=_ui_url(host, f"runs/details/{run.run_id}"),
        metrics=metrics,
        model_version=version,
    )


def list_runs(host: str, bot_id: str | None = None, limit: int = 20, client=None, *, with_metrics: bool = True) -> list[RunInfo]:
    """The most recent runs (newest first), all bots or one bot's (its experiment's)."""
    if not 1 <= int(limit) <= 1000:
        raise ConfigError(f"limit = {limit!r} is out of range; allowed: 1 to 1000")
    client = client or client_for(host)
    with kfp_errors(host, "listing runs"):
        kwargs = {}
        if bot_id is not None:
            experiment = _find_experiment(client, experiment_name(check_bot_id(bot_id)))
            if experiment is None:
                return []
            kwargs["experiment_id"] = experiment.experiment_id
        elif ns := _namespace(client):
            kwargs["namespace"] = ns
        found = client.runs.run_service_list_runs(page_size=int(limit), sort_by="created_at desc", _request_timeout=REQUEST_TIMEOUT_S, **kwargs)
    return [run_info(r, host, with_metrics) for r in (found.runs or [])]


# --- schedules -----------------------------------------------------------------------------------


def _schedule_info(rr) -> ScheduleInfo:
    params = (rr.runtime_config.parameters if rr.runtime_config else None) or {}
    cron = rr.trigger.cron_schedule.cron if rr.trigger and rr.trigger.cron_schedule else None
    status = str(rr.status or "").upper()
    enabled = status == "ENABLED" if status in ("ENABLED", "DISABLED") else str(rr.mode or "").upper() != "DISABLE"
    concurrency = int(rr.max_concurrency) if rr.max_concurrency not in (None, "") else None
    ref = rr.pipeline_version_reference
    return ScheduleInfo(
        schedule_id=rr.recurring_run_id,
        name=rr.display_name or "",
        bot_id=params.get("bot_id"),
        cron=cron,
        enabled=enabled,
        max_concurrency=concurrency,
        no_catchup=rr.no_catchup,
        experiment_id=rr.experiment_id,
        created_at=_time(rr.created_at),
        pipeline_version_id=ref.pipeline_version_id if ref else rr.pipeline_version_id,
    )


def _list_recurring(client, experiment_id: str | None = None, name: str | None = None) -> list:
    kwargs = {"experiment_id": experiment_id} if experiment_id else ({"namespace": ns} if (ns := _namespace(client)) else {})
    if name:
        kwargs["filter"] = _filter(display_name=name)
    found, token = [], ""
    for _ in range(100):  # 100 pages of 100
        page = client.recurring_runs.recurring_run_service_list_recurring_runs(
            page_size=100, page_token=token, sort_by="created_at desc", _request_timeout=REQUEST_TIMEOUT_S, **kwargs
        )
        found += page.recurring_runs or []
        token = page.next_page_token
        if not token:
            break
    return [rr for rr in found if not name or rr.display_name == name]


def schedule_bot(
    bot_id: str,
    data_uri: str,
    cron: str,
    host: str,
    client=None,
    *,
    models_root: str | None = None,
    parameters: dict | None = None,
    gpu: GpuConfig | None = None,
) -> ScheduleInfo:
    """Retrain ``bot_id`` on ``data_uri`` on a cron schedule: a KFP recurring run ``bot-<bot_id>-schedule``.

    One run at a time (``max_concurrency=1``) and no backfill of missed times (``no_catchup``).
    The schedule runs this code's pipeline version; re-create it to move it to newer code.
    A bot has at most one schedule: delete the old one first.
    """
    import kfp_server_api

    check_bot_id(bot_id)
    cron6 = normalize_cron(cron)
    params = _check_parameters(parameters)
    models_root = models_root or default_models_root()
    _check_cluster_uri("data_uri", data_uri)
    _check_cluster_uri("models_root", models_root)
    data_fingerprint(data_uri, params)  # fail now, not at 3 a.m.
    client = client or client_for(host)
    pipeline_id, version_id, version_name, _ = ensure_pipeline_version(client, host, gpu)
    experiment_id = ensure_experiment(client, host, bot_id)
    name = schedule_name(bot_id)
    with kfp_errors(host, f"looking up schedule '{name}'"):
        existing = _list_recurring(client, experiment_id, name)
    if existing:
        raise ConfigError(
            f"bot '{bot_id}' already has a schedule ({existing[0].recurring_run_id}, cron "
            f"'{_schedule_info(existing[0]).cron}'); delete it first: botyard schedule delete --bot {bot_id} --host {host}"
        )
    labels = {"bot_id": bot_id, "trigger": SCHEDULED, "data_uri": data_uri, "pipeline_version": version_name, "cron": cron6}
    body = kfp_server_api.V2beta1RecurringRun(
        display_name=name,
        description=json.dumps({LABELS_KEY: labels}, sort_keys=True),
        experiment_id=experiment_id,
        pipeline_version_reference=kfp_server_api.V2beta1PipelineVersionReference(pipeline_id=pipeline_id, pipeline_version_id=version_id),
        runtime_config=kfp_server_api.V2beta1RuntimeConfig(
            parameters={**params, "bot_id": bot_id, "data_uri": data_uri, "models_root": models_root}
        ),
        trigger=kfp_server_api.V2beta1Trigger(cron_schedule=kfp_server_api.V2beta1CronSchedule(cron=cron6)),
        mode=kfp_server_api.RecurringRunMode.ENABLE,
        max_concurrency=1,
        no_catchup=True,
    )
    with kfp_errors(host, f"creating schedule '{name}'"):
        created = client.recurring_runs.recurring_run_service_create_recurring_run(body, _request_timeout=REQUEST_TIMEOUT_S)
    return _schedule_info(created)


def list_schedules(host: str, bot_id: str | None = None, client=None) -> list[ScheduleInfo]:
    """botyard's schedules on ``host`` (recurring runs named ``bot-*-schedule``), one bot's or all."""
    client = client or client_for(host)
    with kfp_errors(host, "listing schedules"):
        if bot_id is not None:
            experiment = _find_experiment(client, experiment_name(check_bot_id(bot_id)))
            found = _list_recurring(client, experiment.experiment_id, schedule_name(bot_id)) if experiment else []
        else:
            found = [rr for rr in _list_recurring(client) if (rr.display_name or "").startswith(EXPERIMENT_PREFIX) and rr.display_name.endswith(SCHEDULE_SUFFIX)]
    return [_schedule_info(rr) for rr in found]


def _the_schedule(client, host: str, bot_id: str) -> ScheduleInfo:
    found = list_schedules(host, bot_id, client)
    if not found:
        raise SubmitError(f"KFP at {host}: bot '{bot_id}' has no schedule (no recurring run '{schedule_name(bot_id)}')", status=404)
    return found[0]


def pause_schedule(bot_id: str, host: str, client=None) -> ScheduleInfo:
    """Stop the bot's schedule from starting runs (it stays, with its cron; ``resume_schedule`` restarts it)."""
    return _set_schedule_enabled(bot_id, host, client, enabled=False)


def resume_schedule(bot_id: str, host: str, client=None) -> ScheduleInfo:
    return _set_schedule_enabled(bot_id, host, client, enabled=True)


def _set_schedule_enabled(bot_id: str, host: str, client, enabled: bool) -> ScheduleInfo:
    client = client or client_for(host)
    schedule = _the_schedule(client, host, bot_id)
    service = client.recurring_runs
    call = service.recurring_run_service_enable_recurring_run if enabled else service.recurring_run_service_disable_recurring_run
    with kfp_errors(host, f"{'resuming' if enabled else 'pausing'} schedule '{schedule.name}'"):
        call(schedule.schedule_id, _request_timeout=REQUEST_TIMEOUT_S)
    schedule.enabled = enabled
    return schedule


def delete_schedule(bot_id: str, host: str, client=None) -> ScheduleInfo:
    """Delete the bot's schedule; runs it already started are kept."""
    client = client or client_for(host)
    schedule = _the_schedule(client, host, bot_id)
    with kfp_errors(host, f"deleting schedule '{schedule.name}'"):
        client.recurring_runs.recurring_run_service_delete_recurring_run(schedule.schedule_id, _request_timeout=REQUEST_TIMEOUT_S)
    return schedule
