"""botyard on a multi-user (Kubeflow profiles) KFP, against the KFP fake in its multi-user mode.

The fake (``botyard.pipelines.bench.kfp_stub``, ``multi_user=True``) answers as a profile-aware
API server: every call but the health check needs an identity (a bearer service-account token
or the auth proxy's session cookie), lists without a namespace get HTTP 400 with the real body,
and a namespace the identity has no access to gets 403. Real ``kfp.Client`` 2.17 calls go to it.
"""

from __future__ import annotations

import csv
import json
import urllib.error
import urllib.request

import pytest

from botyard.components.base.errors import ConfigError, SubmitError
from botyard.pipelines.bench.kfp_stub import FakeKfp
from botyard.pipelines.cli import main
from botyard.pipelines.kfp import client as kfp_client
from botyard.pipelines.kfp import runs, schedules
from botyard.pipelines.kfp.client import COOKIES_ENV, SA_TOKEN_PATH_ENV, TOKEN_ENV, KfpEndpoint
from botyard.pipelines.trigger.backends import kfp_backend

from conftest import tiny_rows

TOKEN = "sa-token-team-a"
SESSION = "session-alice"
NAMESPACE = "team-a"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in (TOKEN_ENV, COOKIES_ENV, SA_TOKEN_PATH_ENV, "KF_PIPELINES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    yield
    kfp_client.clear_connections()


@pytest.fixture
def kfp():
    with FakeKfp(multi_user=True) as fake:
        fake.add_identity("system:serviceaccount:team-a:default-editor", {NAMESPACE}, token=TOKEN)
        fake.add_identity("alice@example.com", {NAMESPACE}, session=SESSION)
        yield fake
    assert not fake.crashes, fake.crashes


@pytest.fixture
def token_file(tmp_path) -> str:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return str(path)


@pytest.fixture
def data(tmp_path) -> str:
    path = tmp_path / "alpha.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "intent"])
        for r in tiny_rows():
            w.writerow([r["utterance"], r["intent"]])
    return str(path)


@pytest.fixture
def models_root(tmp_path) -> str:
    return str(tmp_path / "models")


def _raw_get(url: str, headers: dict | None = None) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# --- the fake behaves like the real multi-user API server -------------------------------------------
def test_the_fake_refuses_lists_without_a_namespace_and_calls_without_an_identity(kfp):
    api = kfp.url + "/apis/v2beta1"
    assert _raw_get(api + "/healthz") == (200, {"multi_user": True, "pipeline_store": "database"})
    status, body = _raw_get(api + "/experiments", {"Authorization": f"Bearer {TOKEN}"})
    message = "Invalid input error: Invalid resource references for experiment. ListExperiment requires filtering by namespace."
    assert status == 400
    assert body == {"error": message, "code": 3, "message": message,
                    "details": [{"@type": "type.googleapis.com/api.Error", "error_message": message, "error_details": message}]}
    assert _raw_get(api + "/experiments?namespace=", {"Authorization": f"Bearer {TOKEN}"})[0] == 400
    assert _raw_get(api + "/pipelines", {"Authorization": f"Bearer {TOKEN}"})[1]["message"].endswith("ListPipelines requires filtering by namespace.")
    assert _raw_get(api + "/runs", {"Authorization": f"Bearer {TOKEN}"})[0] == 400
    status, body = _raw_get(api + f"/experiments?namespace={NAMESPACE}")
    assert (status, body["code"]) == (401, 16) and "there is no user identity header" in body["message"]
    assert _raw_get(api + f"/experiments?namespace={NAMESPACE}", {"Authorization": "Bearer forged"})[0] == 401
    assert _raw_get(api + f"/experiments?namespace={NAMESPACE}", {"Cookie": "authservice_session=stale"})[0] == 401
    assert _raw_get(api + f"/experiments?namespace={NAMESPACE}", {"Cookie": f"authservice_session={SESSION}"})[0] == 200
    status, body = _raw_get(api + "/experiments?namespace=team-b", {"Authorization": f"Bearer {TOKEN}"})
    assert (status, body["code"]) == (403, 7) and "is not authorized" in body["message"]


# --- submitting, listing, scheduling with a namespace and a service-account token ---------------------
def test_a_run_goes_into_the_profile_namespace_as_default_editor_with_the_token_on_every_call(kfp, data, models_root, token_file):
    endpoint = KfpEndpoint(kfp.url, namespace=NAMESPACE, token_file=token_file)
    run = runs.submit_bot_run("alpha", data, host=endpoint, models_root=models_root)

    (created,) = kfp.calls("POST", "/runs")
    assert created.body["service_account"] == "default-editor"
    assert kfp.runs[run.run_id]["namespace"] == NAMESPACE
    (experiment,) = kfp.experiments.values()
    assert (experiment["display_name"], experiment["namespace"]) == ("bot-alpha", NAMESPACE)
    (pipeline,) = kfp.pipelines.values()
    assert (pipeline["display_name"], pipeline["namespace"]) == ("bot-training", NAMESPACE)
    assert kfp.calls("POST", "/pipelines/upload")[0].query["namespace"] == NAMESPACE
    assert all(r.query.get("namespace") == NAMESPACE for r in kfp.calls("GET", "/experiments"))
    assert all(r.query.get("namespace") == NAMESPACE for r in kfp.calls("GET", "/pipelines"))
    api_calls = [r for r in kfp.requests if not r.path.endswith("/healthz")]
    assert api_calls and all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in api_calls)
    assert all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in kfp.requests)  # the probe too

    again = runs.submit_bot_run("alpha", data, host=endpoint, models_root=models_root, service_account="trainer")
    assert not again.pipeline_uploaded and kfp.runs[again.run_id]["service_account"] == "trainer"
    kfp.set_run(run.run_id, "SUCCEEDED")
    assert runs.get_run_state(run.run_id, host=endpoint) == "succeeded"
    assert [r.run_id for r in runs.list_runs(endpoint, with_metrics=False)] == [again.run_id, run.run_id]
    assert [r.run_id for r in runs.list_runs(endpoint, bot_id="alpha", with_metrics=False)] == [again.run_id, run.run_id]
    assert kfp.calls("GET", "/runs")[0].query["namespace"] == NAMESPACE


def test_a_schedule_carries_the_namespace_and_service_account(kfp, data, models_root, token_file):
    endpoint = KfpEndpoint(kfp.url, namespace=NAMESPACE, token_file=token_file)
    schedule = schedules.schedule_bot("alpha", data, "0 3 * * *", endpoint, models_root=models_root)
    (created,) = kfp.calls("POST", "/recurringruns")
    assert (created.body["namespace"], created.body["service_account"]) == (NAMESPACE, "default-editor")
    assert [s.schedule_id for s in schedules.list_schedules(endpoint)] == [schedule.schedule_id]
    assert kfp.calls("GET", "/recurringruns")[-1].query["namespace"] == NAMESPACE
    assert schedules.pause_schedule("alpha", endpoint).enabled is False
    schedules.delete_schedule("alpha", endpoint)
    assert schedules.list_schedules(endpoint) == []


def test_the_session_cookie_or_a_bearer_token_from_the_environment_authenticate(kfp, data, models_root, monkeypatch):
    monkeypatch.setenv(COOKIES_ENV, f"authservice_session={SESSION}")
    runs.submit_bot_run("alpha", data, host=KfpEndpoint.from_environment(kfp.url, namespace=NAMESPACE), models_root=models_root)
    assert kfp.calls("POST", "/runs")[-1].headers["Cookie"] == f"authservice_session={SESSION}"
    kfp_client.clear_connections()
    monkeypatch.delenv(COOKIES_ENV)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    runs.submit_bot_run("alpha", data, host=KfpEndpoint.from_environment(kfp.url, namespace=NAMESPACE), models_root=models_root)
    assert kfp.calls("POST", "/runs")[-1].headers["Authorization"] == f"Bearer {TOKEN}"


def test_the_token_file_defaults_to_the_path_in_kf_pipelines_sa_token_path(kfp, data, models_root, token_file, monkeypatch):
    monkeypatch.setenv(SA_TOKEN_PATH_ENV, token_file)
    assert KfpEndpoint.from_environment(kfp.url).token_file == token_file
    runs.submit_bot_run("alpha", data, host=KfpEndpoint.from_environment(kfp.url, namespace=NAMESPACE), models_root=models_root)
    assert kfp.calls("POST", "/runs")[-1].headers["Authorization"] == f"Bearer {TOKEN}"


# --- clear errors ---------------------------------------------------------------------------------------------
def test_a_multi_user_server_without_a_namespace_is_a_config_error_before_any_api_call(kfp, data, models_root, token_file):
    with pytest.raises(ConfigError) as err:
        runs.submit_bot_run("alpha", data, host=KfpEndpoint(kfp.url, token_file=token_file), models_root=models_root)
    assert str(err.value) == (
        f"KFP at {kfp.url} is a multi-user deployment (Kubeflow profiles): pass --namespace with the profile namespace "
        "to work in (e.g. --namespace kubeflow-user-example-com)"
    )
    assert {r.path for r in kfp.requests} == {"/apis/v2beta1/healthz"}


@pytest.mark.parametrize(
    "endpoint_args, error, message",
    [
        ({}, SubmitError, "HTTP 401: Unauthenticated: Request header error: there is no user identity header. (not authenticated: pass --token-file"),
        ({"token": "forged"}, SubmitError, "HTTP 401: Unauthenticated: Failed to authenticate token review"),
        ({"token_file": "{tmp}/missing"}, ConfigError, "--token-file {tmp}/missing: cannot read the KFP token (No such file or directory)"),
        ({"token": TOKEN, "namespace": "team-b"}, SubmitError, "HTTP 403: PermissionDenied: User 'system:serviceaccount:team-a:default-editor' is not authorized"),
    ],
    ids=["no-identity", "bad-token", "missing-token-file", "foreign-namespace"],
)
def test_authentication_and_authorisation_failures_say_what_to_do(kfp, data, models_root, tmp_path, endpoint_args, error, message):
    values = {"namespace": NAMESPACE, **{k: v.replace("{tmp}", str(tmp_path)) for k, v in endpoint_args.items()}}
    with pytest.raises(error) as err:
        runs.submit_bot_run("alpha", data, host=KfpEndpoint(kfp.url, **values), models_root=models_root)
    assert message.replace("{tmp}", str(tmp_path)) in str(err.value)
    if endpoint_args.get("namespace") == "team-b":
        assert "not authorised in namespace 'team-b'" in str(err.value)
    assert not kfp.runs


def test_a_server_asking_for_a_namespace_gets_the_namespace_hint(data, models_root):
    with FakeKfp() as kfp:  # single-user healthz, but the experiments list asks for a namespace
        kfp.fail("GET", r"/experiments$", 400, "Invalid input error: ListExperiment requires filtering by namespace.")
        with pytest.raises(SubmitError, match=r"requires filtering by namespace\. \(a multi-user KFP: pass --namespace"):
            runs.submit_bot_run("alpha", data, host=kfp.url, models_root=models_root)


def test_a_single_user_server_runs_as_its_own_default_service_account(data, models_root):
    with FakeKfp() as kfp:
        runs.submit_bot_run("alpha", data, host=kfp.url, models_root=models_root)
        assert "service_account" not in kfp.calls("POST", "/runs")[0].body
        runs.submit_bot_run("alpha", data, host=kfp.url, models_root=models_root, service_account="pipeline-runner")
        assert kfp.calls("POST", "/runs")[1].body["service_account"] == "pipeline-runner"


# --- the command line ----------------------------------------------------------------------------------------
def test_cli_submit_status_and_schedule_with_namespace_and_token_file(kfp, data, models_root, token_file, capsys):
    auth = ["--host", kfp.url, "--namespace", NAMESPACE, "--token-file", token_file]
    assert main(["submit", "--bot", "alpha", "--data", data, "--models-root", models_root, "--service-account", "trainer", *auth]) == 0
    out = capsys.readouterr().out
    (run_id,) = kfp.runs
    assert kfp.runs[run_id]["service_account"] == "trainer"
    assert f"botyard status --bot alpha --host {kfp.url} --namespace {NAMESPACE}" in out
    assert main(["status", "--no-metrics", *auth]) == 0
    assert run_id in capsys.readouterr().out
    assert main(["schedule", "--bot", "alpha", "--data", data, "--cron", "@daily", "--models-root", models_root, *auth]) == 0
    assert kfp.calls("POST", "/recurringruns")[0].body["service_account"] == "default-editor"
    assert main(["schedule", *auth, "list"]) == 0  # flags before the action are kept
    assert "0 0 0 * * *" in capsys.readouterr().out
    assert main(["schedule", "delete", "--bot", "alpha", *auth]) == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["status"], "is a multi-user deployment (Kubeflow profiles): pass --namespace"),
        (["submit", "--bot", "alpha", "--data", "{data}", "--models-root", "/mnt/models"],
         "is a multi-user deployment (Kubeflow profiles): pass --namespace"),
        (["schedule", "list"], "is a multi-user deployment (Kubeflow profiles): pass --namespace"),
        (["submit", "--bot", "alpha", "--data", "alpha.csv", "--namespace", NAMESPACE],
         "data_uri 'alpha.csv' is a relative local path, which a pod on the cluster cannot see; pass --data with a URI"),
        (["submit", "--bot", "alpha", "--data", "{data}", "--namespace", NAMESPACE, "--models-root", "models"],
         "models_root 'models' is a relative local path, which a pod on the cluster cannot see; pass --models-root (or $BOTYARD_MODELS_ROOT)"),
    ],
    ids=["status", "submit", "schedule-list", "relative-data", "relative-models-root"],
)
def test_cli_refusals_exit_2_with_what_to_pass(kfp, data, token_file, capsys, args, message):
    argv = [a.replace("{data}", data) for a in args] + ["--host", kfp.url, "--token-file", token_file]
    if args[:2] == ["schedule", "list"]:
        argv = ["schedule", "--host", kfp.url, "--token-file", token_file, "list"]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not kfp.runs


def test_trigger_back_end_submits_into_the_namespace_and_refuses_to_start_without_one(kfp, data, models_root, token_file, monkeypatch):
    monkeypatch.setenv("BOTYARD_MODELS_ROOT", models_root)
    submitter, run_state = kfp_backend(kfp.url, namespace=NAMESPACE, token_file=token_file)
    run_id = submitter("alpha", data, "ab" * 32, "cms")
    assert kfp.runs[run_id]["namespace"] == NAMESPACE and kfp.runs[run_id]["service_account"] == "default-editor"
    assert run_state(run_id) == "pending"
    with pytest.raises(ConfigError, match="pass --namespace"):
        kfp_backend(kfp.url, token_file=token_file)
