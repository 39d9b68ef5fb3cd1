"""Scheduled retraining: one KFP recurring run per bot, ``bot-<bot_id>-schedule``.

cron (6 fields, see ``cron``), ``max_concurrency=1`` (one run at a time), ``no_catchup=True``
(missed times are not backfilled); it runs the pipeline version of the code that created it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from botyard.components.base.config import GpuConfig
from botyard.components.base.errors import ConfigError, SubmitError
from botyard.components.base.model_store import check_bot_id
from botyard.pipelines.kfp.client import REQUEST_TIMEOUT_S, Connection, Target, connect, filter_json
from botyard.pipelines.kfp.cron import normalize_cron
from botyard.pipelines.kfp.experiments import ensure_experiment, find_experiment
from botyard.pipelines.kfp.naming import LABELS_KEY, SCHEDULED, experiment_name, is_schedule_name, schedule_name
from botyard.pipelines.kfp.parameters import check_cluster_uri, check_parameters, data_fingerprint, default_models_root
from botyard.pipelines.kfp.pipeline_versions import ensure_pipeline_version
from botyard.pipelines.kfp.runs import as_utc, runtime_parameters, service_account_for

PAGE_SIZE = 100
MAX_PAGES = 100


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


def schedule_info(rr) -> ScheduleInfo:
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
        created_at=as_utc(rr.created_at),
        pipeline_version_id=ref.pipeline_version_id if ref else rr.pipeline_version_id,
    )


def _list_recurring(connection: Connection, experiment_id: str | None = None, name: str | None = None) -> list:
    kwargs = {"experiment_id": experiment_id} if experiment_id else connection.scope()
    if name:
        kwargs["filter"] = filter_json(display_name=name)
    found, token = [], ""
    for _ in range(MAX_PAGES):
        page = connection.client.recurring_runs.recurring_run_service_list_recurring_runs(
            page_size=PAGE_SIZE, page_token=token, sort_by="created_at desc", _request_timeout=REQUEST_TIMEOUT_S, **kwargs
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
    host: Target,
    *,
    models_root: str | None = None,
    parameters: dict | None = None,
    gpu: GpuConfig | None = None,
    service_account: str | None = None,
) -> ScheduleInfo:
    """Retrain ``bot_id`` on ``data_uri`` on a cron schedule: a KFP recurring run ``bot-<bot_id>-schedule``.

    One run at a time (``max_concurrency=1``) and no backfill of missed times (``no_catchup``).
    The schedule runs this code's pipeline version; re-create it to move it to newer code.
    A bot has at most one schedule: delete the old one first.
    """
    import kfp_server_api

    check_bot_id(bot_id)
    cron6 = normalize_cron(cron)
    params = check_parameters(parameters)
    models_root = models_root or default_models_root()
    check_cluster_uri("data_uri", data_uri)
    check_cluster_uri("models_root", models_root)
    data_fingerprint(data_uri, params)  # fail now, not at 3 a.m.
    connection = connect(host)
    pipeline_id, version_id, version_name, _ = ensure_pipeline_version(connection, gpu)
    experiment_id = ensure_experiment(connection, bot_id)
    name = schedule_name(bot_id)
    with connection.errors(f"looking up schedule '{name}'"):
        existing = _list_recurring(connection, experiment_id, name)
    if existing:
        raise ConfigError(
            f"bot '{bot_id}' already has a schedule ({existing[0].recurring_run_id}, cron "
            f"'{schedule_info(existing[0]).cron}'); delete it first: botyard schedule delete --bot {bot_id} --host {connection.host}"
        )
    labels = {"bot_id": bot_id, "trigger": SCHEDULED, "data_uri": data_uri, "pipeline_version": version_name, "cron": cron6}
    body = kfp_server_api.V2beta1RecurringRun(
        display_name=name,
        description=json.dumps({LABELS_KEY: labels}, sort_keys=True),
        experiment_id=experiment_id,
        pipeline_version_reference=kfp_server_api.V2beta1PipelineVersionReference(pipeline_id=pipeline_id, pipeline_version_id=version_id),
        runtime_config=kfp_server_api.V2beta1RuntimeConfig(parameters=runtime_parameters(params, bot_id, data_uri, models_root)),
        trigger=kfp_server_api.V2beta1Trigger(cron_schedule=kfp_server_api.V2beta1CronSchedule(cron=cron6)),
        mode=kfp_server_api.RecurringRunMode.ENABLE,
        max_concurrency=1,
        no_catchup=True,
        namespace=connection.namespace,
        service_account=service_account_for(connection, service_account),
    )
    with connection.errors(f"creating schedule '{name}'"):
        created = connection.client.recurring_runs.recurring_run_service_create_recurring_run(body, _request_timeout=REQUEST_TIMEOUT_S)
    return schedule_info(created)


def list_schedules(host: Target, bot_id: str | None = None) -> list[ScheduleInfo]:
    """botyard's schedules on ``host`` (recurring runs named ``bot-*-schedule``), one bot's or all."""
    connection = connect(host)
    with connection.errors("listing schedules"):
        if bot_id is not None:
            experiment = find_experiment(connection, experiment_name(check_bot_id(bot_id)))
            found = _list_recurring(connection, experiment.experiment_id, schedule_name(bot_id)) if experiment else []
        else:
            found = [rr for rr in _list_recurring(connection) if is_schedule_name(rr.display_name)]
    return [schedule_info(rr) for rr in found]


def _the_schedule(host: Target, bot_id: str) -> ScheduleInfo:
    found = list_schedules(host, bot_id)
    if not found:
        raise SubmitError(f"KFP at {connect(host).host}: bot '{bot_id}' has no schedule (no recurring run '{schedule_name(bot_id)}')", status=404)
    return found[0]


def pause_schedule(bot_id: str, host: Target) -> ScheduleInfo:
    """Stop the bot's schedule from starting runs (it stays, with its cron; ``resume_schedule`` restarts it)."""
    return _set_schedule_enabled(bot_id, host, enabled=False)


def resume_schedule(bot_id: str, host: Target) -> ScheduleInfo:
    return _set_schedule_enabled(bot_id, host, enabled=True)


def _set_schedule_enabled(bot_id: str, host: Target, enabled: bool) -> ScheduleInfo:
    connection = connect(host)
    schedule = _the_schedule(host, bot_id)
    service = connection.client.recurring_runs
    call = service.recurring_run_service_enable_recurring_run if enabled else service.recurring_run_service_disable_recurring_run
    with connection.errors(f"{'resuming' if enabled else 'pausing'} schedule '{schedule.name}'"):
        call(schedule.schedule_id, _request_timeout=REQUEST_TIMEOUT_S)
    schedule.enabled = enabled
    return schedule


def delete_schedule(bot_id: str, host: Target) -> ScheduleInfo:
    """Delete the bot's schedule; runs it already started are kept."""
    connection = connect(host)
    schedule = _the_schedule(host, bot_id)
    with connection.errors(f"deleting schedule '{schedule.name}'"):
        connection.client.recurring_runs.recurring_run_service_delete_recurring_run(schedule.schedule_id, _request_timeout=REQUEST_TIMEOUT_S)
    return schedule
