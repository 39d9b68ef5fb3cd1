"""Submitting to Kubeflow Pipelines, against a local fake of the KFP v2 REST API (``botyard.pipelines.bench.kfp_stub``).

Real ``kfp.Client`` 2.17 calls go over HTTP to the fake, which records every request, so the
tests assert exactly what a KFP API server would receive: uploads, version reuse, experiment,
run parameters and labels, the recurring run's cron and policies, and error mapping.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys

import pytest
import yaml

from botyard.components.base import contracts as c
from botyard.components.base.config import GpuConfig
from botyard.components.base.errors import BotyardError, ConfigError, DataValidationError, SubmitError
from botyard.pipelines.bench.kfp_stub import FakeKfp
from botyard.pipelines.kfp import client as kfp_client
from botyard.pipelines.kfp import cron, pipeline_versions, runs, schedules
from botyard.pipelines.cli import main

from conftest import REPO, tiny_rows


@pytest.fixture
def kfp():
    with FakeKfp() as fake:
        yield fake
    kfp_client.clear_connections()  # a later fake may get the same port
    assert not fake.crashes, fake.crashes  # the fake itself never failed


def _csv(path, rows) -> str:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "intent"])
        for r in rows:
            w.writerow([r["utterance"], r["intent"]])
    return str(path)


@pytest.fixture
def data(tmp_path) -> str:
    return _csv(tmp_path / "alpha.csv", tiny_rows())


@pytest.fixture
def models_root(tmp_path) -> str:
    return str(tmp_path / "models")  # absolute: a path a cluster's pods could mount


def _hash(uri: str) -> str:
    from botyard.components.base.data_formats import read_training_data
    from botyard.components.base.table import data_hash

    return data_hash(read_training_data(uri))


# --- submitting ----------------------------------------------------------------------------------


def test_first_submit_uploads_the_pipeline_and_starts_a_labelled_run(kfp, data, models_root):
    run = runs.submit_bot_run("alpha", data, host=kfp.url, trigger="event", models_root=models_root, parameters={"epochs": 3})

    yaml_text, version_name = pipeline_versions.compiled_pipeline()
    assert version_name == f"0.1.0-{hashlib.sha256(yaml_text.encode()).hexdigest()[:12]}"
    (upload,) = kfp.calls("POST", "/pipelines/upload")
    assert upload.query["name"] == "bot-training"
    assert next(yaml.safe_load_all(upload.files["uploadfile"][1]))["pipelineInfo"]["name"] == "bot-training"
    (upload_version,) = kfp.calls("POST", "/pipelines/upload_version")
    assert upload_version.query["name"] == version_name and upload_version.query["pipelineid"] in kfp.pipelines
    (exp,) = kfp.calls("POST", "/experiments")
    assert exp.body["display_name"] == "bot-alpha"

    (created,) = kfp.calls("POST", "/runs")
    body, digest = created.body, _hash(data)
    assert body["display_name"] == f"alpha event data={digest[:12]}"
    labels = json.loads(body["description"])["botyard_labels"]
    assert labels == {
        "bot_id": "alpha", "data_hash": digest, "trigger": "event", "data_uri": data,
        "pipeline_version": version_name, "botyard_version": "0.1.0",
    }
    assert body["runtime_config"]["parameters"] == {"bot_id": "alpha", "data_uri": data, "models_root": models_root, "epochs": 3}
    version_id = next(v for v, rec in kfp.versions.items() if rec["display_name"] == version_name)
    assert body["pipeline_version_reference"] == {"pipeline_id": upload_version.query["pipelineid"], "pipeline_version_id": version_id}
    assert body["experiment_id"] == next(iter(kfp.experiments))
    assert "pipeline_spec" not in body  # runs reference the uploaded version; the YAML is not re-sent

    assert (run.bot_id, run.data_hash, run.experiment, run.pipeline_version, run.trigger) == ("alpha", digest, "bot-alpha", version_name, "event")
    assert run.run_id in kfp.runs and run.pipeline_uploaded
    assert run.url == f"{kfp.url}/#/runs/details/{run.run_id}" and run.host == kfp.url


def test_resubmitting_the_same_code_reuses_its_version_and_experiment(kfp, data, models_root):
    first = runs.submit_bot_run("alpha", data, host=kfp.url, models_root=models_root)
    second = runs.submit_bot_run("alpha", data, host=kfp.url, models_root=models_root)
    assert len(kfp.calls("POST", "/pipelines/upload")) == 1
    assert len(kfp.calls("POST", "/pipelines/upload_version")) == 1
    assert len(kfp.calls("POST", "/experiments")) == 1 and len(kfp.calls("POST", "/runs")) == 2
    assert not second.pipeline_uploaded and second.pipeline_version == first.pipeline_version
    # looked up by name, with the filter kfp.Client itself sends
    lookup = kfp.calls("GET", f"/pipelines/{next(iter(kfp.pipelines))}/versions")[-1]
    assert json.loads(lookup.query["filter"])["predicates"] == [{"operation": 1, "key": "display_name", "stringValue": first.pipeline_version}]


def test_changed_pipeline_gets_a_new_version_of_the_same_pipeline(kfp, data, models_root):
    gpu_run = runs.submit_bot_run("alpha", data, host=kfp.url, models_root=models_root)
    cpu_run = runs.submit_bot_run("alpha", data, host=kfp.url, models_root=models_root, gpu=GpuConfig(enabled=False))
    assert cpu_run.pipeline_version != gpu_run.pipeline_version and cpu_run.pipeline_uploaded
    assert len(kfp.calls("POST", "/pipelines/upload")) == 1 and len(kfp.calls("POST", "/pipelines/upload_version")) == 2


def test_an_upload_race_takes_the_version_the_other_submitter_uploaded(kfp, data, models_root, monkeypatch):
    first = runs.submit_bot_run("alpha", data, host=kfp.url, models_root=models_root)
    real_find, misses = pipeline_versions.find_version, []

    def find_once_late(connection, pipeline_id, name):  # the other submitter's upload lands after our lookup
        if not misses:
            misses.append(name)
            return None
        return real_find(connection, pipeline_id, name)

    monkeypatch.setattr(pipeline_versions, "find_version", find_once_late)
    second = runs.submit_bot_run("alpha", data, host=kfp.url, models_root=models_root)
    assert len(kfp.calls("POST", "/pipelines/upload_version")) == 2  # the second one got 409
    assert not second.pipeline_uploaded and second.pipeline_version == first.pipeline_version
    assert kfp.runs[second.run_id]["pipeline_version_reference"] == kfp.runs[first.run_id]["pipeline_version_reference"]


def test_bad_data_is_refused_before_anything_is_sent(kfp, tmp_path, models_root):
    bad = _csv(tmp_path / "bad.csv", tiny_rows(intents=("greet",), per_intent=3))
    with pytest.raises(DataValidationError, match="found 1 intent"):
        runs.submit_bot_run("alpha", bad, host=kfp.url, models_root=models_root)
    assert kfp.requests == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bot_id": "Bad_Bot"}, "bot id 'Bad_Bot' is not valid"),
        ({"trigger": "two words"}, "trigger 'two words' is not valid"),
        ({"parameters": {"colour": "blue"}}, "unknown pipeline parameter(s) ['colour']"),
        ({"parameters": {"bot_id": "x"}}, "unknown pipeline parameter(s) ['bot_id']"),
        # a value the pipeline's steps would refuse minutes into the run is refused before it starts
        ({"parameters": {"epochs": 0}}, "--param epochs=0 is out of range; allowed: 1 to 1000"),
        ({"parameters": {"deploy_target": "cluster", "serving_mode": "per-intent"}}, "--param serving_mode='per-intent' is not known"),
        ({"models_root": "models"}, "models_root 'models' is a relative local path"),
        ({"data_uri": "alpha.csv"}, "data_uri 'alpha.csv' is a relative local path"),
    ],
)
def test_bad_arguments_raise_config_errors(kfp, data, models_root, kwargs, message):
    args = {"bot_id": "alpha", "data_uri": data, "host": kfp.url, "models_root": models_root, **kwargs}
    with pytest.raises(ConfigError) as err:
        runs.submit_bot_run(**args)
    assert message in str(err.value)
    assert not kfp.calls("POST", "/runs")


def test_without_a_host_the_run_is_local(monkeypatch, tmp_path, data):
    from botyard.pipelines import local_run

    run_dir = tmp_path / "runs" / "bot-training-2026-11-01-00-00-00-000001"
    (run_dir / "register").mkdir(parents=True)
    (run_dir / "register" / "executor_output.json").write_text("{}")
    seen = {}

    def fake_local(bot_id, data_uri, models_root, pipeline_root, parameters, console=None):
        seen.update(bot_id=bot_id, models_root=models_root, parameters=parameters)
        return local_run.LocalRun(bot_id, "v1", "/m/alpha/v1", {c.DATA_HASH: "ab" * 32}, str(run_dir), "log", 1.0)

    monkeypatch.setattr(local_run, "run_bot_training_locally", fake_local)
    run = runs.submit_bot_run("alpha", data, models_root="m", parameters={"epochs": 2}, pipeline_root=str(tmp_path / "runs"))
    assert (run.host, run.run_id, run.url, run.data_hash) == ("local", run_dir.name, str(run_dir), "ab" * 32)
    assert seen == {"bot_id": "alpha", "models_root": "m", "parameters": {"epochs": 2}} and run.local.version == "v1"
    assert runs.get_run_state(run.run_id, pipeline_root=str(tmp_path / "runs")) == "succeeded"
    with pytest.raises(SubmitError, match="no local run 'nope'"):
        runs.get_run_state("nope", pipeline_root=str(tmp_path / "runs"))


# --- following runs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kfp_state, state",
    [("PENDING", "pending"), ("RUNNING", "running"), ("SUCCEEDED", "succeeded"), ("FAILED", "failed"),
     ("SKIPPED", "skipped"), ("CANCELING", "canceling"), ("CANCELED", "canceled"), ("PAUSED", "paused"),
     ("RUNTIME_STATE_UNSPECIFIED", "unknown")],
)
def test_run_state_is_normalised(kfp, data, models_root, kfp_state, state):
    run = runs.submit_bot_run("alpha", data, host=kfp.url, models_root=models_root)
    kfp.set_run(run.run_id, kfp_state, finished=kfp_state in ("SUCCEEDED", "FAILED"))
    assert runs.get_run_state(run.run_id, host=kfp.url) == state


def _register_version(models_root: str, bot_id: str, version: str, digest: str, accuracy: float) -> None:
    folder = os.path.join(models_root, bot_id, version)
    os.makedirs(folder)
    meta = {c.BOT_ID: bot_id, c.VERSION: version, c.CREATED_AT: "", c.DATA_HASH: digest, c.LABELS: ["a", "b"],
            c.OOS_THRESHOLD: 0.5, c.HYPERPARAMETERS: {}, c.METRICS: {"accuracy": accuracy, "macro_f1": 0.8, "test_size": 10}}
    with open(os.path.join(folder, c.METADATA_FILE), "w") as f:
        json.dump(meta, f)
    open(os.path.join(folder, c.PUBLISHED_MARKER), "w").close()  # the store lists published versions only


def test_list_runs_shows_state_duration_labels_and_metrics(kfp, data, tmp_path, models_root):
    beta = _csv(tmp_path / "beta.csv", tiny_rows(intents=("greet", "bye")))
    done = runs.submit_bot_run("alpha", data, host=kfp.url, models_root=models_root)  # created 00:00:0x
    broken = runs.submit_bot_run("alpha", data, host=kfp.url, models_root=models_root, trigger="schedule")
    running = runs.submit_bot_run("alpha", data, host=kfp.url, models_root=models_root, trigger="event")
    other = runs.submit_bot_run("beta", beta, host=kfp.url, models_root=models_root)
    kfp.set_run(done.run_id, "SUCCEEDED", seconds=90)
    kfp.set_run(broken.run_id, "FAILED", error="train: OOMKilled", seconds=30)
    kfp.set_run(running.run_id, "RUNNING", finished=False)
    _register_version(models_root, "alpha", "20261101T000100Z-" + done.data_hash[:8], done.data_hash, 0.91)

    found = runs.list_runs(kfp.url, bot_id="alpha", limit=10)
    assert [r.run_id for r in found] == [running.run_id, broken.run_id, done.run_id]  # newest first, beta left out
    assert (found[0].state, found[0].trigger, found[0].duration_s, found[0].finished_at) == ("running", "event", None, None)
    assert (found[1].state, found[1].error, found[1].duration_s, found[1].metrics) == ("failed", "train: OOMKilled", 30.0, {})
    ok = found[2]
    assert (ok.state, ok.bot_id, ok.trigger, ok.data_hash, ok.duration_s) == ("succeeded", "alpha", "manual", done.data_hash, 90.0)
    assert ok.metrics == {"accuracy": 0.91, "macro_f1": 0.8, "test_size": 10}
    assert ok.model_version == "20261101T000100Z-" + done.data_hash[:8]
    assert ok.url.endswith(f"/#/runs/details/{done.run_id}")

    everyone = runs.list_runs(kfp.url, limit=2, with_metrics=False)
    assert [r.run_id for r in everyone] == [other.run_id, running.run_id]
    assert kfp.calls("GET", "/runs")[-1].query["page_size"] == "2"
    assert runs.list_runs(kfp.url, bot_id="nobody") == []


# --- schedules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression, expected",
    [("0 3 * * *", "0 0 3 * * *"), ("*/15 * * * *", "0 */15 * * * *"), ("30 0 3 * * MON-FRI", "30 0 3 * * MON-FRI"),
     ("  0  3 1,15 * * ", "0 0 3 1,15 * *"), ("@daily", "0 0 0 * * *"), ("0 9-17/2 * JAN *", "0 0 9-17/2 * JAN *")],
)
def test_cron_is_normalised_to_kfps_six_fields(expression, expected):
    assert cron.normalize_cron(expression) == expected


@pytest.mark.parametrize(
    "expression, message",
    [("0 3 * *", "has 4 field(s); use 5"), ("0 0 3 * * * 2026", "has 7 field(s)"), ("", "has 0 field(s)"),
     ("0 25 * * *", "hour field '25' is out of range (25)"), ("61 * * * *", "minute field '61' is out of range"),
     ("0 3 * * x", "day of week field 'x' is not a number"), ("*/0 * * * *", "minute field '*/0' has an invalid step"),
     ("0 3 0 * *", "day of month field '0' is out of range"), ("0 3 * 13 *", "month field '13' is out of range")],
)
def test_bad_cron_names_the_field(expression, message):
    with pytest.raises(ConfigError) as err:
        cron.normalize_cron(expression)
    assert message in str(err.value)


def test_schedule_creates_a_recurring_run_with_one_run_at_a_time(kfp, data, models_root):
    schedule = schedules.schedule_bot("alpha", data, "0 3 * * *", kfp.url, models_root=models_root, parameters={"epochs": 5})
    (created,) = kfp.calls("POST", "/recurringruns")
    body = created.body
    assert body["display_name"] == "bot-alpha-schedule"
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert (body["max_concurrency"], body["no_catchup"], body["mode"]) == (1, True, "ENABLE")
    assert body["runtime_config"]["parameters"] == {"bot_id": "alpha", "data_uri": data, "models_root": models_root, "epochs": 5}
    assert body["experiment_id"] == next(e for e, rec in kfp.experiments.items() if rec["display_name"] == "bot-alpha")
    assert json.loads(body["description"])["botyard_labels"]["trigger"] == "schedule"
    assert (schedule.name, schedule.cron, schedule.enabled, schedule.max_concurrency, schedule.no_catchup) == (
        "bot-alpha-schedule", "0 0 3 * * *", True, 1, True)

    with pytest.raises(ConfigError, match="bot 'alpha' already has a schedule"):
        schedules.schedule_bot("alpha", data, "0 4 * * *", kfp.url, models_root=models_root)
    assert len(kfp.calls("POST", "/recurringruns")) == 1


def test_pause_resume_and_delete_a_schedule(kfp, data, tmp_path, models_root):
    alpha = schedules.schedule_bot("alpha", data, "@hourly", kfp.url, models_root=models_root)
    beta = schedules.schedule_bot("beta", _csv(tmp_path / "b.csv", tiny_rows()), "0 1 * * 0", kfp.url, models_root=models_root)
    assert {s.bot_id for s in schedules.list_schedules(kfp.url)} == {"alpha", "beta"}

    assert schedules.pause_schedule("alpha", kfp.url).enabled is False
    assert kfp.calls("POST", f"/recurringruns/{alpha.schedule_id}:disable")
    assert [s.enabled for s in schedules.list_schedules(kfp.url, bot_id="alpha")] == [False]
    schedules.resume_schedule("alpha", kfp.url)
    assert kfp.calls("POST", f"/recurringruns/{alpha.schedule_id}:enable")
    assert schedules.list_schedules(kfp.url, bot_id="alpha")[0].enabled

    schedules.delete_schedule("alpha", kfp.url)
    assert kfp.calls("DELETE", f"/recurringruns/{alpha.schedule_id}")
    assert [s.schedule_id for s in schedules.list_schedules(kfp.url)] == [beta.schedule_id]
    with pytest.raises(SubmitError, match="bot 'alpha' has no schedule"):
        schedules.pause_schedule("alpha", kfp.url)


# --- errors --------------------------------------------------------------------------------------


def test_server_errors_become_submit_errors_with_the_servers_message(kfp, data, models_root):
    kfp.fail("POST", r"/runs$", 500, "database is locked", times=1)
    with pytest.raises(SubmitError) as err:
        runs.submit_bot_run("alpha", data, host=kfp.url, models_root=models_root)
    assert str(err.value).startswith(f"KFP at {kfp.url}: starting a run of bot 'alpha' failed: HTTP 500: database is locked")
    assert "kubectl logs -n kubeflow deploy/ml-pipeline" in str(err.value) and err.value.status == 500
    assert isinstance(err.value, BotyardError) and err.value.exit_code == 5
    assert err.value.__cause__ is not None  # raised from the kfp_server_api exception

    kfp.fail("GET", r"/experiments$", 403, "user is not authorized", times=1)
    with pytest.raises(SubmitError, match=r"creating experiment 'bot-alpha' failed: HTTP 403: user is not authorized \(not authorised"):
        runs.submit_bot_run("alpha", data, host=kfp.url, models_root=models_root)

    with pytest.raises(SubmitError, match="no run with id 'missing' \\(HTTP 404\\)"):
        runs.get_run_state("missing", host=kfp.url)


def test_a_wrong_or_dead_host_fails_fast_with_a_clear_message(kfp, data, models_root):
    kfp.fail("GET", "/healthz", 404, "page not found")
    with pytest.raises(SubmitError, match=r"health check /apis/v2beta1/healthz answered HTTP 404; is .* the KFP API or UI endpoint"):
        runs.list_runs(kfp.url)
    host = kfp.url
    kfp.stop()
    with pytest.raises(SubmitError, match=f"cannot reach KFP at {host} .*Connection refused"):
        runs.submit_bot_run("alpha", data, host=host, models_root=models_root)


# --- the command line ----------------------------------------------------------------------------


def test_cli_submit_status_and_schedule(kfp, data, models_root, capsys, monkeypatch):
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    host = ["--host", kfp.url]
    assert main(["submit", "--bot", "alpha", "--data", data, "--models-root", models_root, "--param", "epochs=4", *host]) == 0
    out = capsys.readouterr().out
    (run_id,) = kfp.runs
    assert f"run id:            {run_id}" in out and "(uploaded now)" in out and "experiment:        bot-alpha" in out
    assert kfp.runs[run_id]["runtime_config"]["parameters"]["epochs"] == 4

    kfp.set_run(run_id, "FAILED", error="split: boom")
    assert main(["status", "--bot", "alpha", "--no-metrics", *host]) == 0
    out = capsys.readouterr().out
    assert f"Training runs on {kfp.url} (bot 'alpha', newest first):" in out
    header, row = out.splitlines()[1:3]
    assert header.split()[:4] == ["STARTED", "(UTC)", "BOT", "TRIGGER"]
    assert "alpha" in row and "manual" in row and "failed" in row and "1m30s" in row and "split: boom" in row
    assert "1 failed; open one in the KFP UI" in out

    assert main(["schedule", "--bot", "alpha", "--data", data, "--cron", "0 3 * * *", "--models-root", models_root, *host]) == 0
    assert "now retrains on" in capsys.readouterr().out
    assert main(["schedule", "list", *host]) == 0
    assert "0 0 3 * * *" in capsys.readouterr().out
    assert main(["schedule", *host, "pause", "--bot", "alpha"]) == 0  # options before the action are kept
    assert "paused" in capsys.readouterr().out
    assert main(["schedule", "list", *host]) == 0 and "paused" in capsys.readouterr().out
    assert main(["schedule", "delete", "--bot", "alpha", *host]) == 0
    assert main(["schedule", "list", *host]) == 0 and "no botyard schedules" in capsys.readouterr().out


def test_cli_status_shows_the_trigger_services_decisions(monkeypatch, capsys):
    store = pytest.importorskip("botyard.pipelines.trigger.event_store")
    records = [{"batch_id": 2, "bot_id": "alpha", "state": "skipped", "reason": "data unchanged", "run_id": None,
                "data_hash": "f" * 64, "trigger": "event", "events": 3, "created_at": "2026-11-01T00:00:00Z"}]
    calls = []
    monkeypatch.setattr(store, "recent_runs", lambda db_url, bot_id=None, limit=20: calls.append((db_url, bot_id, limit)) or records)
    assert main(["status", "--db-url", "sqlite:///x.db", "--bot", "alpha", "--limit", "5", "--host", ""]) == 0
    out = capsys.readouterr().out
    assert calls == [("sqlite:///x.db", "alpha", 5)]
    assert "Trigger service decisions (bot 'alpha', newest first):" in out
    assert "skipped" in out and "data unchanged" in out and "f" * 12 in out and "f" * 13 not in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["status", "--host", ""], "botyard status needs --host URL"),
        (["schedule", "list", "--host", ""], "give --host URL"),
        (["schedule", "--bot", "alpha", "--host", "http://x"], "botyard schedule needs --data, --cron"),
        (["schedule", "--bot", "a", "--data", "/d.csv", "--cron", "0 3 * *", "--host", "http://127.0.0.1:9"], "has 4 field(s)"),
        (["submit", "--bot", "alpha", "--data", "/d.csv", "--param", "colour=blue"], "unknown parameter 'colour'"),
    ],
)
def test_cli_bad_arguments_exit_2(args, message, capsys):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_cli_reports_server_errors_without_a_traceback(kfp, data, models_root):
    kfp.fail("POST", r"/runs$", 500, "database is locked")
    result = subprocess.run(
        [sys.executable, "-m", "botyard.pipelines.cli", "submit", "--bot", "alpha", "--data", data, "--models-root", models_root, "--host", kfp.url],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert result.returncode == 5
    assert f"botyard: error: KFP at {kfp.url}: starting a run of bot 'alpha' failed: HTTP 500: database is locked" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
