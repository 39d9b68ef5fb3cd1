"""The event trigger service (components/trigger/, ``botyard trigger-server``).

Three kinds of tests:
- in-process: the FastAPI app through ``TestClient`` with a fake clock and the dispatcher's
  passes run by hand (``app.state.dispatcher.tick()``), so debounce, dedupe and the limits are
  asserted exactly; the store-level ones run on SQLite and on a real PostgreSQL server
  (``tests/postgres.py`` starts one; without the binaries they fail naming the apt command);
- two replicas on one PostgreSQL database: racing claims from two engines, two dispatcher
  threads with their own engines, and two ``botyard trigger-server`` processes;
- a real server: ``botyard trigger-server`` subprocesses on 127.0.0.1, killed with SIGKILL
  and restarted on the same SQLite file.

The subprocesses use ``--submitter test_trigger:recording_submit --run-state
test_trigger:recording_run_state`` (this module, on ``PYTHONPATH``): the submitter appends one
JSON line per run to ``$BOTYARD_TEST_SUBMIT_LOG``; a run reports "succeeded" once the file
``$BOTYARD_TEST_RUNS_DONE`` exists, "running" before.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

import postgres
from botyard.components.base.errors import ConfigError
from botyard.components.base.net import free_port
from botyard.pipelines.trigger import (
    READ_TOKEN_ENV,
    SECRET_ENV,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TriggerConfig,
)
from botyard.pipelines.trigger.auth import load_secret, sign, signed_headers
from botyard.pipelines.trigger.backends import kfp_backend
from botyard.pipelines.trigger.dispatcher import Dispatcher
from botyard.pipelines.trigger.event_store import Store, recent_runs
from waiting import wait_for

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
SECRET = b"test-webhook-secret-0123456789abcdef"
READ_TOKEN = "test-read-token-0123456789abcdef"
READ_HEADERS = {"Authorization": f"Bearer {READ_TOKEN}"}
SUBMIT_LOG_ENV = "BOTYARD_TEST_SUBMIT_LOG"
RUNS_DONE_ENV = "BOTYARD_TEST_RUNS_DONE"
T0 = 1_800_000_000.0


# --- the recording back end used by server subprocesses ---------------------------------------------
def recording_submit(bot_id: str, data_uri: str, data_hash: str, trigger: str) -> str:
    run_id = f"run-{bot_id}-{uuid.uuid4().hex[:8]}"
    line = json.dumps({"run_id": run_id, "bot_id": bot_id, "data_uri": data_uri, "data_hash": data_hash,
                       "trigger": trigger, "pid": os.getpid()}) + "\n"
    fd = os.open(os.environ[SUBMIT_LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return run_id


def recording_run_state(run_id: str) -> str:
    return "succeeded" if os.path.exists(os.environ[RUNS_DONE_ENV]) else "running"


# --- in-process helpers ---------------------------------------------------------------------------
class FakeClock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class FakeBackend:
    """Records submissions; runs stay "running" until ``finish``; tracks what ran at once."""

    def __init__(self, succeed_after_polls: int | None = None, submit_delay: float = 0.0):
        self.lock = threading.Lock()
        self.submitted: list[dict] = []
        self.states: dict[str, str] = {}
        self.polls: Counter = Counter()
        self.running: Counter = Counter()  # per bot, between submit and the first final state reported
        self.max_running = 0
        self.max_running_per_bot = 0
        self.fail_next_submits = 0
        self.succeed_after_polls = succeed_after_polls
        self.submit_delay = submit_delay

    def submit(self, bot_id, data_uri, data_hash, trigger) -> str:
        with self.lock:
            if self.fail_next_submits:
                self.fail_next_submits -= 1
                raise ConnectionError("KFP API unavailable")
            run_id = f"run-{len(self.submitted) + 1}"
            self.submitted.append({"run_id": run_id, "bot_id": bot_id, "data_uri": data_uri, "data_hash": data_hash,
                                   "trigger": trigger})
            self.states[run_id] = "running"
            self.running[bot_id] += 1
            self.max_running = max(self.max_running, sum(self.running.values()))
            self.max_running_per_bot = max(self.max_running_per_bot, self.running[bot_id])
        time.sleep(self.submit_delay)
        return run_id

    def run_state(self, run_id: str) -> str:
        with self.lock:
            self.polls[run_id] += 1
            if self.succeed_after_polls and self.polls[run_id] >= self.succeed_after_polls:
                self._set(run_id, "succeeded")
            return self.states[run_id]

    def finish(self, run_id: str, state: str = "succeeded") -> None:
        with self.lock:
            self._set(run_id, state)

    def _set(self, run_id: str, state: str) -> None:
        if self.states[run_id] == "running" and state != "running":
            self.running[self._bot(run_id)] -= 1
        self.states[run_id] = state

    def _bot(self, run_id: str) -> str:
        return next(s["bot_id"] for s in self.submitted if s["run_id"] == run_id)

    def run_of(self, bot_id: str) -> str:
        return [s["run_id"] for s in self.submitted if s["bot_id"] == bot_id][-1]


def config_for(db_url: str, **overrides) -> TriggerConfig:
    values = dict(secret=SECRET, db_url=db_url, quiet_period=5.0, max_wait=600.0, max_concurrent_runs=4,
                  poll_interval=0.05, run_poll_interval=1.0, lease_seconds=10.0, replica_id="replica-a",
                  dev=True, allow_local_data=True, read_token=READ_TOKEN.encode())
    return TriggerConfig(**{**values, **overrides})


def signed(payload: dict | bytes, secret: bytes = SECRET, now: float | None = None) -> tuple[bytes, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return body, {**signed_headers(body, secret, now), "Content-Type": "application/json"}


def rows_for(utterances: tuple[str, ...]) -> list[tuple[str, str]]:
    """Valid training rows: each utterance five ways, alternately greet and bye (two intents, five each)."""
    return [(f"{u} {k}", "greet" if i % 2 == 0 else "bye") for i, u in enumerate(utterances) for k in range(5)]


def write_data(tmp_path: Path, name: str, utterances: tuple[str, ...] = ("hello", "bye")) -> str:
    path = tmp_path / name
    path.write_text("text,intent\n" + "".join(f"{text},{intent}\n" for text, intent in rows_for(utterances)))
    return str(path)


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL server per test session (per xdist worker)."""
    try:
        with postgres.start_postgres() as server:
            yield server
    except postgres.PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    return request.getfixturevalue("postgres_server").create_database()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'events.db'}"


class Harness:
    """The app in-process, its fake clock and back end, and helpers to post and dispatch."""

    def __init__(self, client, clock: FakeClock, backend: FakeBackend):
        self.client, self.clock, self.backend = client, clock, backend
        self.app = client.app
        self.store: Store = self.app.state.store

    def post(self, payload: dict, secret: bytes = SECRET):
        body, headers = signed(payload, secret, now=self.clock())
        return self.client.post("/events", content=body, headers=headers)

    def tick(self, advance: float = 0.0) -> None:
        """Advance the fake clock and run a dispatcher pass, waiting for its data checks (in the sandbox)."""
        self.clock.advance(advance)
        self.app.state.dispatcher.settle()

    def runs(self, bot_id: str) -> list[dict]:
        return self.client.get(f"/bots/{bot_id}/runs").json()["runs"]


@pytest.fixture(scope="session")
def data_checker():
    """One sandbox (worker processes) for the in-process tests: each fresh worker pays a Python start."""
    from botyard.pipelines.trigger.sandbox import DataChecker

    checker = DataChecker(workers=2)
    yield checker
    checker.close()


@pytest.fixture
def make_harness(data_checker):
    from fastapi.testclient import TestClient

    from botyard.pipelines.trigger.app import create_app

    clients = []

    def _make(db_url: str, backend: FakeBackend | None = None, own_sandbox: bool = False, **overrides) -> Harness:
        """``own_sandbox``: the app's own data checker (from its config: local prefixes, limits), not the shared one."""
        clock, backend = FakeClock(), backend or FakeBackend()
        app = create_app(config_for(db_url, **overrides), backend.submit, backend.run_state, clock=clock,
                         start_dispatcher=False, hash_data=None if own_sandbox else data_checker.fingerprint)
        client = TestClient(app, headers=READ_HEADERS)
        client.__enter__()
        clients.append(client)
        return Harness(client, clock, backend)

    yield _make
    for client in clients:
        client.__exit__(None, None, None)


# --- authentication -------------------------------------------------------------------------------
def test_signed_event_is_accepted_unsigned_and_forged_are_401_recorded_and_never_submitted(tmp_path, sqlite_url, make_harness):
    h = make_harness(sqlite_url)
    good = {"bot_id": "beanbot", "data_uri": write_data(tmp_path, "good.csv")}
    forged = {"bot_id": "beanbot", "data_uri": write_data(tmp_path, "evil.csv", ("evil", "worse"))}

    accepted = h.post(good)
    assert accepted.status_code == 202
    assert accepted.json()["event"]["state"] == "received"
    unsigned = h.client.post("/events", content=json.dumps(forged).encode())
    assert unsigned.status_code == 401
    assert unsigned.json() == {"error": f"missing {SIGNATURE_HEADER} header: sign '<timestamp>.<body>' with HMAC-SHA256 "
                                        f"(sha256=<hex>) and send the timestamp in {TIMESTAMP_HEADER}"}
    wrong_key = h.post(forged, secret=b"not-the-secret-0123456789")
    assert wrong_key.status_code == 401
    assert wrong_key.json()["error"] == (f"{SIGNATURE_HEADER} does not match: wrong secret, a modified body or timestamp, "
                                         "or the body signed without '<timestamp>.'")
    body, headers = signed(good, now=h.clock())
    tampered = h.client.post("/events", content=body.replace(b"good.csv", b"evil.csv"), headers=headers)
    assert tampered.status_code == 401
    malformed = h.client.post("/events", content=body, headers={SIGNATURE_HEADER: "md5=abc"})
    assert malformed.status_code == 401 and "malformed" in malformed.json()["error"]

    h.tick(advance=10)
    assert [s["data_uri"] for s in h.backend.submitted] == [good["data_uri"]]
    events = h.client.get("/events", params={"bot_id": "beanbot"}).json()["events"]
    assert [(e["state"], e["http_status"]) for e in events] == [("rejected", 401)] * 4 + [("submitted", 202)]
    assert all(e["batch_id"] is None and e["run_id"] is None for e in events if e["state"] == "rejected")
    assert h.client.get("/events", params={"state": "rejected"}).json()["events"][-1]["error"].startswith("missing")


def test_secret_comes_from_a_file_or_the_environment_and_must_be_long_enough(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    assert load_secret(str(path), environ={}) == SECRET
    assert load_secret(None, environ={SECRET_ENV: " env-secret-0123456789 "}) == b"env-secret-0123456789"
    with pytest.raises(ConfigError, match=r"no webhook secret: set \$BOTYARD_WEBHOOK_SECRET or pass --secret-file"):
        load_secret(None, environ={})
    path.write_text("short\n")
    with pytest.raises(ConfigError, match=r"has 5 bytes; use at least 16"):
        load_secret(str(path), environ={})
    with pytest.raises(ConfigError, match=r"--secret-file .*missing: cannot read the webhook secret"):
        load_secret(str(tmp_path / "missing"), environ={})


@pytest.mark.parametrize(
    "argv_extra, env_secret, message",
    [
        ([], None, "botyard: error: no webhook secret: set $BOTYARD_WEBHOOK_SECRET or pass --secret-file PATH"),
        ([], "tiny", "the webhook secret from $BOTYARD_WEBHOOK_SECRET has 4 bytes"),
        (["--secret-file", "{tmp}/absent"], None, "cannot read the webhook secret"),
        (["--quiet-period", "-1"], SECRET.decode(), "botyard: error: --quiet-period -1.0 is out of range; allowed: 0.0 to 86400.0"),
        (["--quiet-period", "60", "--max-wait", "10"], SECRET.decode(), "botyard: error: --max-wait 10.0 is below quiet_period = 60.0"),
        (["--submitter", "nomodule:fn", "--run-state", "nomodule:fn"], SECRET.decode(), "--submitter 'nomodule:fn': cannot import it"),
        (["--db-url", "mysql://x/y"], SECRET.decode(), "unsupported database 'mysql'"),
        (["--no-dev"], SECRET.decode(), "the trigger service reads only data under the locations it is given: pass --allowed-data-prefix"),
        (["--allowed-data-prefix", "gs://bots"], SECRET.decode(), "--allowed-data-prefix 'gs://bots' must end with '/'"),
        (["--allowed-data-prefix", "/srv/bots/"], SECRET.decode(), "is a local folder: local data needs --allow-local-data as well"),
        (["--allowed-data-prefix", "http://example.com/"], SECRET.decode(), "scheme 'http' is not one the trigger reads"),
        (["--no-dev", "--allowed-data-prefix", "s3://bots/"], SECRET.decode(), "give --kfp-host URL (the Kubeflow Pipelines API the runs go to)"),
        (["--read-token-file", "{tmp}/short"], SECRET.decode(), "the read token must be at least 16 bytes"),
    ],
    ids=["no-secret", "short-secret", "missing-secret-file", "bad-quiet-period", "max-wait-below-quiet-period", "bad-submitter", "bad-db", "no-prefix",
         "prefix-without-slash", "local-prefix", "http-prefix", "no-kfp-host", "short-read-token"],
)
def test_trigger_server_refuses_to_start_with_exit_code_2(tmp_path, capsys, monkeypatch, argv_extra, env_secret, message):
    from botyard.pipelines.cli import main

    monkeypatch.delenv(SECRET_ENV, raising=False)
    if env_secret is not None:
        monkeypatch.setenv(SECRET_ENV, env_secret)
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    (tmp_path / "short").write_text("tiny")
    db = tmp_path / "events.db"
    dev = [] if "--no-dev" in argv_extra else ["--dev"]
    argv = ["trigger-server", "--port", "1", "--db-url", f"sqlite:///{db}", *dev, *[a for a in argv_extra if a != "--no-dev"]]
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    assert message in capsys.readouterr().err
    assert not db.exists()  # refused before opening the store or binding a port


# --- bad input -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body, status, message",
    [
        (b'{"bot_id": "beanbot", ', 400, "body is not valid JSON: Expecting property name enclosed in double quotes (line 1, column 23)"),
        (b"\xff\xfe", 400, "body is not UTF-8 JSON"),
        (b'["beanbot"]', 400, "body must be a JSON object with bot_id and data_uri, got a JSON list"),
        (b'{"bot_id": "beanbot"}', 400, "missing field(s) ['data_uri']: an event needs 'bot_id' and 'data_uri'"),
        (b'{"bot_id": "Bean_Bot", "data_uri": "x.csv"}', 400, "bot id 'Bean_Bot' is not valid"),
        (b'{"bot_id": 7, "data_uri": "x.csv"}', 400, "bot id 7 is not valid"),
        (b'{"bot_id": "beanbot", "data_uri": ""}', 400, "'data_uri' must be a non-empty string"),
        (b'{"bot_id": "beanbot", "data_uri": "/data/x.csv", "trigger": "a b"}', 400, "'trigger' 'a b' must be"),
        (b'{"bot_id": "beanbot", "data_uri": "/data/x.csv", "event_id": 12}', 400, "'event_id' must be a non-empty string"),
        (b'{"bot_id": "beanbot", "data_uri": "/etc/passwd.csv"}', 400, "is outside the allowed locations ['/data/']"),
        (b'{"bot_id": "beanbot", "data_uri": "/data/' + b"x" * 70_000 + b'"}', 413, "over the limit of 65536 bytes"),
    ],
    ids=["truncated-json", "not-utf8", "not-object", "no-data-uri", "bad-bot-id", "bot-id-not-string", "empty-uri",
         "bad-trigger", "event-id-not-string", "uri-not-allowed", "oversized"],
)
def test_bad_input_gets_a_4xx_json_error_and_is_recorded(sqlite_url, make_harness, body, status, message):
    h = make_harness(sqlite_url, allowed_data_prefixes=("/data/",), dev=False)
    response = h.client.post("/events", content=body, headers=signed(body, now=h.clock())[1])
    assert response.status_code == status
    assert message in response.json()["error"]
    [event] = h.client.get("/events").json()["events"]
    assert (event["state"], event["http_status"]) == ("rejected", status)
    assert message in event["error"]
    h.tick(advance=3600)
    assert h.backend.submitted == []


def test_oversized_body_is_refused_from_its_content_length_and_while_streaming(sqlite_url, make_harness):
    h = make_harness(sqlite_url, max_body_bytes=1024)
    response = h.client.post("/events", content=b"{" + b" " * 2000 + b"}", headers={SIGNATURE_HEADER: "sha256=" + "0" * 64})
    assert (response.status_code, response.json()) == (413, {"error": "body of 2002 bytes is over the limit of 1024 bytes"})
    chunked = h.client.post("/events", content=iter([b"{", b" " * 2000, b"}"]))  # no Content-Length
    assert (chunked.status_code, chunked.json()) == (413, {"error": "body is over the limit of 1024 bytes"})


def test_queries_validate_their_parameters(sqlite_url, make_harness):
    h = make_harness(sqlite_url)
    assert h.client.get("/events", params={"limit": "0"}).json() == {"error": "limit must be an integer from 1 to 1000, got '0'"}
    assert h.client.get("/events", params={"bot_id": "No!"}).status_code == 400
    assert h.client.get("/events", params={"state": "done"}).status_code == 400
    assert h.client.get("/bots/BAD/runs").status_code == 400
    assert h.client.get("/nowhere").json() == {"error": "Not Found"}
    assert h.client.put("/events").status_code == 405


def test_health_and_readiness(sqlite_url, make_harness, monkeypatch):
    from sqlalchemy.exc import OperationalError

    h = make_harness(sqlite_url)
    assert h.client.get("/healthz").json()["status"] == "ok"
    assert h.client.get("/readyz").json() == {"status": "ready", "replica": "replica-a"}

    def down():
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(h.store, "ping", down)
    assert h.client.get("/readyz").json() == {"error": "the event store is unavailable: OperationalError"}
    assert h.client.get("/readyz").status_code == 503


def test_a_database_outage_is_a_503_to_retry_not_a_500(sqlite_url, make_harness, monkeypatch):
    from sqlalchemy.exc import OperationalError

    h = make_harness(sqlite_url)

    def down(**kwargs):
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(h.store, "accept_event", down)
    response = h.post({"bot_id": "beanbot", "data_uri": "/data/x.csv"})
    assert (response.status_code, response.json()) == (503, {"error": "the event store is unavailable; retry later"})


# --- idempotency ----------------------------------------------------------------------------------------
def test_a_repeated_event_id_returns_the_existing_record_and_stores_nothing(tmp_path, db_url, make_harness):
    h = make_harness(db_url)
    event = {"bot_id": "beanbot", "data_uri": write_data(tmp_path, "a.csv"), "event_id": "cms-42"}
    first = h.post(event)
    again = h.post(event)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == {"duplicate": True, "event": first.json()["event"]}
    conflict = h.post({**event, "data_uri": "/data/other.csv"})
    assert conflict.status_code == 409
    assert "event_id 'cms-42' was already used for another event" in conflict.json()["error"]
    h.tick(advance=10)
    assert len(h.backend.submitted) == 1
    assert h.post(event).json()["event"]["state"] == "submitted"  # the record follows its batch
    assert [e["http_status"] for e in h.client.get("/events").json()["events"]] == [409, 202]


# --- debounce, dedupe, limits (SQLite and PostgreSQL) ---------------------------------------------------------
def test_a_burst_of_changes_in_the_quiet_period_gives_one_run_with_the_latest_data(tmp_path, db_url, make_harness):
    h = make_harness(db_url, quiet_period=5.0)
    uris = [write_data(tmp_path, f"v{i}.csv", (f"hello {i}", "bye")) for i in range(10)]
    for uri in uris:
        assert h.post({"bot_id": "beanbot", "data_uri": uri, "trigger": "cms"}).status_code == 202
        h.clock.advance(0.1)
    h.tick(advance=3.0)  # 3.1 s after the last change: still inside the quiet period
    assert h.backend.submitted == []
    h.tick(advance=2.0)
    assert [(s["bot_id"], s["data_uri"], s["trigger"]) for s in h.backend.submitted] == [("beanbot", uris[-1], "cms")]
    [run] = h.runs("beanbot")
    assert (run["state"], run["events"], run["run_id"], run["data_uri"]) == ("submitted", 10, "run-1", uris[-1])
    events = h.client.get("/events", params={"bot_id": "beanbot"}).json()["events"]
    assert {(e["batch_id"], e["state"], e["run_id"]) for e in events} == {(run["batch_id"], "submitted", "run-1")}
    h.tick(advance=60)
    assert len(h.backend.submitted) == 1


def test_a_bot_that_never_stays_quiet_runs_after_max_wait(tmp_path, sqlite_url, make_harness):
    h = make_harness(sqlite_url, quiet_period=5.0, max_wait=20.0)
    uri = write_data(tmp_path, "a.csv")
    for _ in range(10):  # an event every 3 s: never 5 s of quiet
        h.post({"bot_id": "beanbot", "data_uri": uri})
        h.tick(advance=3.0)
    assert len(h.backend.submitted) == 1
    assert h.runs("beanbot")[0]["events"] == 7  # events of the first 21 s


def test_unchanged_data_is_skipped_with_the_reason_changed_data_runs(tmp_path, db_url, make_harness):
    h = make_harness(db_url, quiet_period=1.0)
    first = write_data(tmp_path, "a.csv", ("hello", "bye"))
    same_rows_reordered = tmp_path / "b.csv"
    rows = list(reversed(rows_for(("hello", "bye"))))  # the data hash ignores row order
    same_rows_reordered.write_text("text,intent\n" + "".join(f"{t},{i}\n" for t, i in rows))
    h.post({"bot_id": "beanbot", "data_uri": first})
    h.tick(advance=2)
    h.backend.finish("run-1")
    h.tick(advance=2)
    assert h.runs("beanbot")[0]["state"] == "succeeded"

    h.post({"bot_id": "beanbot", "data_uri": str(same_rows_reordered)})
    h.tick(advance=2)
    skipped = h.runs("beanbot")[0]
    first_batch = h.runs("beanbot")[1]["batch_id"]
    assert skipped["state"] == "skipped"
    assert skipped["reason"] == (
        f"training data unchanged since batch {first_batch} (data hash {skipped['data_hash'][:12]}); no run"
    )
    assert len(h.backend.submitted) == 1

    h.post({"bot_id": "beanbot", "data_uri": write_data(tmp_path, "c.csv", ("hello", "bye", "hi there", "ciao"))})
    h.tick(advance=2)
    assert [s["data_uri"] for s in h.backend.submitted][-1].endswith("c.csv")
    assert h.runs("beanbot")[0]["state"] == "submitted"


def test_after_a_failed_run_the_same_data_runs_again(tmp_path, sqlite_url, make_harness):
    h = make_harness(sqlite_url, quiet_period=1.0)
    uri = write_data(tmp_path, "a.csv")
    h.post({"bot_id": "beanbot", "data_uri": uri})
    h.tick(advance=2)
    h.backend.finish("run-1", "failed")
    h.tick(advance=2)
    assert (h.runs("beanbot")[0]["state"], h.runs("beanbot")[0]["reason"]) == ("failed", "run run-1 failed")
    h.post({"bot_id": "beanbot", "data_uri": uri})
    h.tick(advance=2)
    assert len(h.backend.submitted) == 2  # only a success counts for the dedupe


def test_an_unreadable_data_file_is_a_failed_decision_not_a_crash(tmp_path, db_url, make_harness):
    h = make_harness(db_url, quiet_period=1.0)
    missing = str(tmp_path / "gone.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("utterance,label\nhi,greet\n")
    h.post({"bot_id": "bot-a", "data_uri": missing})
    h.post({"bot_id": "bot-b", "data_uri": str(bad)})
    h.tick(advance=2)
    assert h.backend.submitted == []
    [a], [b] = h.runs("bot-a"), h.runs("bot-b")
    assert (a["state"], a["reason"]) == ("failed", f"cannot use the training data at {missing}: there is no file at that URI")
    assert b["state"] == "failed"
    assert b["reason"] == (
        f"cannot use the training data at {bad}: it is not valid training data: it would fail the pipeline's ingest "
        "step (details are not shown here, they quote the file: run `botyard run --data URI` where the file is readable)"
    )
    assert "utterance" not in json.dumps(h.client.get("/events").json())  # the file's header is never shown
    assert h.client.get("/healthz").status_code == 200
    h.post({"bot_id": "bot-a", "data_uri": write_data(tmp_path, "fixed.csv")})  # the bot is free again
    h.tick(advance=2)
    assert [s["bot_id"] for s in h.backend.submitted] == ["bot-a"]


def test_one_run_at_a_time_per_bot_and_a_global_cap(tmp_path, db_url, make_harness):
    h = make_harness(db_url, quiet_period=1.0, max_concurrent_runs=2)
    for i, bot in enumerate(["bot-a", "bot-b", "bot-c", "bot-d"]):
        h.post({"bot_id": bot, "data_uri": write_data(tmp_path, f"{bot}.csv", (f"hi {i}", "bye"))})
        h.clock.advance(0.1)
    h.tick(advance=2)
    assert [s["bot_id"] for s in h.backend.submitted] == ["bot-a", "bot-b"]  # oldest first, 2 at most
    h.post({"bot_id": "bot-a", "data_uri": write_data(tmp_path, "a2.csv", ("hi again", "bye"))})
    h.tick(advance=2)
    assert len(h.backend.submitted) == 2  # bot-a's new change waits for its run; c and d for a slot
    h.backend.finish(h.backend.run_of("bot-a"))
    h.tick(advance=1)  # run_poll_interval: the next look at the runs' states
    assert [s["bot_id"] for s in h.backend.submitted] == ["bot-a", "bot-b", "bot-c"]  # c waited longer than a's change
    h.backend.finish(h.backend.run_of("bot-b"))
    h.tick(advance=1)
    assert [s["bot_id"] for s in h.backend.submitted][-1] == "bot-d"
    for bot in ("bot-c", "bot-d"):
        h.backend.finish(h.backend.run_of(bot))
    h.tick(advance=1)
    assert [s["data_uri"] for s in h.backend.submitted][-1].endswith("a2.csv")
    assert (h.backend.max_running, h.backend.max_running_per_bot) == (2, 1)
    assert h.store.state_counts()["received"] == 0


def test_a_failing_submit_is_retried_then_recorded_as_failed(tmp_path, sqlite_url, make_harness):
    h = make_harness(sqlite_url, quiet_period=1.0)
    h.backend.fail_next_submits = 3
    h.post({"bot_id": "beanbot", "data_uri": write_data(tmp_path, "a.csv")})
    h.tick(advance=2)
    run = h.runs("beanbot")[0]
    assert (run["state"], run["attempts"]) == ("claimed", 1)
    assert run["reason"] == "submit attempt 1 of 3 failed: ConnectionError: KFP API unavailable"
    h.tick(advance=1)  # the back-off (5 s) has not passed
    assert h.runs("beanbot")[0]["attempts"] == 1
    h.tick(advance=5)
    h.tick(advance=31)
    run = h.runs("beanbot")[0]
    assert (run["state"], run["attempts"], run["reason"]) == (
        "failed", 3, "submit attempt 3 of 3 failed: ConnectionError: KFP API unavailable")


def test_data_the_submitter_refuses_fails_at_once_and_canceled_runs_count_as_failed(tmp_path, sqlite_url, make_harness):
    from botyard.components.base.errors import DataValidationError

    h = make_harness(sqlite_url, quiet_period=1.0)

    def refuse(bot_id, data_uri, data_hash, trigger):
        raise DataValidationError(f"{data_uri}: intent 'bye' has only 1 training example, minimum is 5")

    h.app.state.dispatcher.submitter = refuse
    uri = write_data(tmp_path, "a.csv")
    h.post({"bot_id": "beanbot", "data_uri": uri})
    h.tick(advance=2)
    run = h.runs("beanbot")[0]
    assert (run["state"], run["attempts"]) == ("failed", 1)
    assert run["reason"] == ("submit refused: DataValidationError: the training data would fail the pipeline's validate "
                             "step (details are not shown here, they quote the file)")  # never the intents it names

    h.app.state.dispatcher.submitter = h.backend.submit
    h.post({"bot_id": "beanbot", "data_uri": uri})
    h.tick(advance=2)
    h.backend.finish("run-1", "pending")
    h.tick(advance=1)
    assert h.runs("beanbot")[0]["state"] == "submitted"
    h.backend.finish("run-1", "canceled")
    h.tick(advance=1)
    assert (h.runs("beanbot")[0]["state"], h.runs("beanbot")[0]["reason"]) == ("failed", "run run-1 ended canceled")


def test_a_dead_replicas_claims_are_taken_over_after_the_lease_without_a_second_run(tmp_path, db_url, data_checker):
    """Replica A submits bot-a's run and claims bot-b's batch, then dies; B takes both over."""
    cfg_a = config_for(db_url, quiet_period=1.0, lease_seconds=10.0, replica_id="replica-a")
    cfg_b = config_for(db_url, quiet_period=1.0, lease_seconds=10.0, replica_id="replica-b")
    store_a, store_b = Store(db_url), Store(db_url)
    try:
        clock, backend = FakeClock(), FakeBackend()
        a = Dispatcher(store_a, cfg_a, backend.submit, backend.run_state, clock=clock, hash_data=data_checker.fingerprint)
        b = Dispatcher(store_b, cfg_b, backend.submit, backend.run_state, clock=clock, hash_data=data_checker.fingerprint)
        store_a.accept_event(bot_id="bot-a", data_uri=write_data(tmp_path, "a.csv"), trigger="event", event_id=None, now=clock())
        clock.advance(2)
        a.settle()
        store_a.accept_event(bot_id="bot-b", data_uri=write_data(tmp_path, "b.csv", ("hey", "ciao")), trigger="event",
                             event_id=None, now=clock())
        clock.advance(2)
        [claimed] = store_a.claim_due("replica-a", now=clock(), quiet_period=1, max_wait=600, max_active=4,
                                      lease_seconds=10)  # A dies right after this claim, before submitting
        assert [s["bot_id"] for s in backend.submitted] == ["bot-a"]

        clock.advance(5)
        b.settle()  # the leases have not run out: B leaves A's batches alone
        assert len(backend.submitted) == 1
        assert {r["owner"] for r in store_b.bot_runs()} == {"replica-a"}
        clock.advance(10)
        b.settle()
        assert [s["bot_id"] for s in backend.submitted] == ["bot-a", "bot-b"]  # bot-a is not submitted again
        assert {r["owner"] for r in store_b.bot_runs()} == {"replica-b"}
        backend.finish("run-1")
        b.settle(), clock.advance(2), b.settle()
        assert [(r["bot_id"], r["state"]) for r in store_b.bot_runs()] == [("bot-b", "submitted"), ("bot-a", "succeeded")]
        assert claimed["batch_id"] == store_b.bot_runs("bot-b")[0]["batch_id"]
        # A comes back (it was only paused): every write it tries is fenced off
        assert not store_a.finish(claimed["batch_id"], "replica-a", "failed", now=clock())
        assert not store_a.mark_submitted(claimed["batch_id"], "replica-a", run_id="x", data_hash="y", now=clock(),
                                          next_poll_at=clock())
        a.settle()
        assert len(backend.submitted) == 2
    finally:
        a.close(), b.close()
        store_a.close()
        store_b.close()


def test_recent_runs_reads_the_decisions_for_botyard_status(tmp_path, db_url, make_harness):
    h = make_harness(db_url, quiet_period=1.0)
    h.post({"bot_id": "bot-a", "data_uri": write_data(tmp_path, "a.csv")})
    h.post({"bot_id": "bot-b", "data_uri": str(tmp_path / "missing.csv")})
    h.tick(advance=2)
    runs = recent_runs(db_url)
    assert [(r["bot_id"], r["state"]) for r in runs] == [("bot-b", "failed"), ("bot-a", "submitted")]
    assert [r["run_id"] for r in recent_runs(db_url, bot_id="bot-a", limit=5)] == ["run-1"]
    assert set(runs[0]) >= {"batch_id", "bot_id", "state", "reason", "run_id", "data_uri", "data_hash", "events",
                            "created_at", "submitted_at", "finished_at"}
    with pytest.raises(ConfigError, match="no trigger database at"):
        recent_runs(f"sqlite:///{tmp_path / 'nothing-here.db'}")


def test_the_default_back_end_adapts_the_kfp_runs_module(monkeypatch):
    import types

    from botyard.pipelines.kfp import client, runs

    calls = []
    monkeypatch.setattr(client, "connect", lambda target: calls.append(("connect", target.host, target.namespace)))
    monkeypatch.setattr(runs, "submit_bot_run", lambda bot_id, data_uri, host=None, trigger="event", service_account=None, data_hash=None: (
        calls.append((bot_id, data_uri, host.host, trigger, service_account, data_hash)) or types.SimpleNamespace(run_id="kfp-run-1")))
    monkeypatch.setattr(runs, "get_run_state", lambda run_id, host=None: calls.append((run_id, host.host)) or "running")
    submitter, run_state = kfp_backend("http://kfp:8888", namespace="team-a", service_account="trainer")
    assert submitter("beanbot", "gs://b/nlu.yml", "abc", "cms") == "kfp-run-1"
    assert run_state("kfp-run-1") == "running"
    # the data hash the sandbox computed labels the run: nothing is read in the server's process
    assert calls == [("connect", "http://kfp:8888", "team-a"), ("beanbot", "gs://b/nlu.yml", "http://kfp:8888", "cms", "trainer", "abc"),
                     ("kfp-run-1", "http://kfp:8888")]


# --- two replicas on one PostgreSQL database ------------------------------------------------------------
def test_racing_claims_batch_every_event_exactly_once(db_url):
    """Two stores (two engines, as two replicas have) claim and finish in a loop at the same time."""
    stores = [Store(db_url), Store(db_url)]
    try:
        for i in range(60):
            stores[i % 2].accept_event(bot_id=f"bot-{i % 20}", data_uri=f"gs://b/{i}.csv", trigger="event",
                                       event_id=None, now=T0)
        claimed: list[list[dict]] = [[], []]
        barrier = threading.Barrier(2)

        def replica(i: int) -> None:
            barrier.wait()
            for _ in range(40):
                batches = stores[i].claim_due(f"replica-{i}", now=T0 + 10, quiet_period=1, max_wait=600,
                                              max_active=3, lease_seconds=60)
                assert len(batches) <= 3
                for batch in batches:
                    assert stores[i].finish(batch["batch_id"], f"replica-{i}", "skipped", now=T0 + 10)
                claimed[i] += batches

        threads = [threading.Thread(target=replica, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        every = claimed[0] + claimed[1]
        assert sorted(b["bot_id"] for b in every) == sorted(f"bot-{i}" for i in range(20))  # each bot once
        assert sum(b["events"] for b in every) == 60
        assert stores[0].state_counts() == {"skipped": 20, "received": 0, "rejected": 0}
    finally:
        for store in stores:
            store.close()


def test_two_replicas_on_postgresql_never_process_an_event_twice(tmp_path, postgres_server, data_checker):
    db_url = postgres_server.create_database()
    backend = FakeBackend(succeed_after_polls=2, submit_delay=0.01)
    common = dict(quiet_period=0.05, max_concurrent_runs=3, poll_interval=0.02, run_poll_interval=0.03,
                  lease_seconds=5.0)
    stores = [Store(db_url) for _ in range(2)]
    dispatchers = [
        Dispatcher(store, config_for(db_url, replica_id=f"replica-{i}", **common), backend.submit, backend.run_state,
                   hash_data=data_checker.fingerprint)
        for i, store in enumerate(stores)
    ]
    bots = [f"bot-{i}" for i in range(6)]
    try:
        for d in dispatchers:
            d.start()
        for i in range(60):  # 10 changes per bot, spread over about a second: several batches per bot
            uri = write_data(tmp_path, f"e{i}.csv", (f"hello {i}", "bye"))
            stores[i % 2].accept_event(bot_id=bots[i % 6], data_uri=uri, trigger="event", event_id=f"ev-{i}",
                                       now=time.time())
            time.sleep(0.015)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            counts = stores[0].state_counts()
            if counts["received"] == 0 and not counts.get("claimed") and not counts.get("submitted"):
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the replicas did not finish: {stores[0].state_counts()}")
    finally:
        for d in dispatchers:
            d.stop()
    try:
        events = stores[0].list_events(limit=1000)
        batches = stores[0].bot_runs(limit=1000)
    finally:
        for store in stores:
            store.close()
    assert len(events) == 60 and all(e["batch_id"] is not None for e in events)
    assert sum(b["events"] for b in batches) == 60  # every event in exactly one batch
    assert {b["state"] for b in batches} == {"succeeded"}
    submitted_uris = [s["data_uri"] for s in backend.submitted]
    assert len(submitted_uris) == len(set(submitted_uris)) == len(batches)  # each batch submitted exactly once
    assert set(submitted_uris) == {b["data_uri"] for b in batches}
    assert len(batches) > len(bots)  # debounced, but more than one batch per bot
    assert backend.max_running <= 3 and backend.max_running_per_bot == 1
    assert {b["owner"] for b in batches} == {"replica-0", "replica-1"}  # both replicas did work


# --- a real server, killed and restarted -----------------------------------------------------------------
class ServerProcess:
    """``botyard trigger-server`` in a subprocess on 127.0.0.1 with the recording back end."""

    def __init__(self, tmp_path: Path, db_url: str, name: str, *args: str):
        self.port = free_port()
        self.log_path = tmp_path / f"{name}.log"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)]),
            SECRET_ENV: SECRET.decode(),
            READ_TOKEN_ENV: READ_TOKEN,
            SUBMIT_LOG_ENV: str(tmp_path / "submitted.jsonl"),
            RUNS_DONE_ENV: str(tmp_path / "runs-done"),
        }
        argv = [
            sys.executable, "-m", "botyard.pipelines.cli", "trigger-server", "--host", "127.0.0.1", "--port", str(self.port),
            "--db-url", db_url, "--replica-id", name, "--submitter", "test_trigger:recording_submit",
            "--run-state", "test_trigger:recording_run_state", "--allow-local-data",
            "--allowed-data-prefix", f"{tmp_path}/", *args,
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, cwd=tmp_path)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers={**READ_HEADERS, **(headers or {})})
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the trigger server exited ({self.process.returncode}):\n{self.log_path.read_text()}")
            try:
                if self.request("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        pytest.fail(f"the trigger server was not ready after {timeout}s:\n{self.log_path.read_text()}")

    def kill9(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


@pytest.fixture
def servers():
    """Starts ``ServerProcess``es; kills whatever is left at the end of the test."""
    started: list[ServerProcess] = []

    def _start(*args, **kwargs) -> ServerProcess:
        server = ServerProcess(*args, **kwargs)
        started.append(server)
        server.wait_ready()
        return server

    yield _start
    for server in started:
        server.kill9()


def test_after_kill_9_and_restarts_every_accepted_event_runs_exactly_once(tmp_path, servers):
    db_url = f"sqlite:///{tmp_path / 'events.db'}"
    submitted_log = tmp_path / "submitted.jsonl"

    def submissions() -> list[dict]:
        return [json.loads(line) for line in submitted_log.read_text().splitlines()] if submitted_log.exists() else []

    # 1. 20 events for 4 bots accepted (plus an unsigned and a forged one), then SIGKILL inside the quiet period
    first = servers(tmp_path, db_url, "first", "--quiet-period", "30")
    latest, sent = {}, []
    for i in range(20):
        bot = f"bot-{i % 4}"
        latest[bot] = write_data(tmp_path, f"{bot}-{i}.csv", (f"hello {i}", "bye"))
        sent.append(signed({"bot_id": bot, "data_uri": latest[bot], "event_id": f"ev-{i}"}))
        assert first.request("POST", "/events", *sent[-1])[0] == 202
    forged = json.dumps({"bot_id": "bot-0", "data_uri": str(tmp_path / "evil.csv")}).encode()
    assert first.request("POST", "/events", forged)[0] == 401
    assert first.request("POST", "/events", forged, signed(forged, b"guessed-secret-0123456789")[1])[0] == 401
    first.kill9()
    assert submissions() == []

    # 2. a new process picks the stored events up: one run per bot, the latest data; then SIGKILL mid-run
    second = servers(tmp_path, db_url, "second", "--quiet-period", "0.2", "--poll-interval", "0.1",
                     "--run-poll-interval", "0.2", "--lease-seconds", "2")
    wait_for(lambda: len(second.request("GET", "/events?state=submitted")[1]["events"]) == 20, 20,
                "20 events in submitted runs")
    assert second.request("POST", "/events", *sent[0])[0] == 200  # a redelivery after the restart: no new event
    second.kill9()
    assert sorted((s["bot_id"], s["data_uri"]) for s in submissions()) == sorted(latest.items())

    # 3. a third process takes the in-flight runs over once the dead one's lease expires, and submits nothing
    (tmp_path / "runs-done").touch()
    third = servers(tmp_path, db_url, "third", "--quiet-period", "0.2", "--poll-interval", "0.1",
                    "--run-poll-interval", "0.2", "--lease-seconds", "2")
    events = wait_for(
        lambda: (lambda found: found if len(found) == 20 else None)(third.request("GET", "/events?state=succeeded&limit=100")[1]["events"]),
        20, "every run to succeed",
    )
    assert sorted(e["id"] for e in events) == list(range(1, 21))
    assert len(submissions()) == 4  # no run started twice
    runs = [r for bot in latest for r in third.request("GET", f"/bots/{bot}/runs")[1]["runs"]]
    assert {(r["state"], r["owner"]) for r in runs} == {("succeeded", "third")}
    assert sorted(r["events"] for r in runs) == [5, 5, 5, 5]
    rejected = third.request("GET", "/events?state=rejected")[1]["events"]
    assert [(e["http_status"], e["bot_id"]) for e in rejected] == [(401, "bot-0"), (401, "bot-0")]
    assert "Traceback" not in (tmp_path / "third.log").read_text()


def test_two_server_processes_on_postgresql_submit_each_batch_once(tmp_path, postgres_server, servers):
    db_url = postgres_server.create_database()
    (tmp_path / "runs-done").touch()  # runs succeed at their first poll
    options = ("--quiet-period", "0.1", "--poll-interval", "0.05", "--run-poll-interval", "0.1",
               "--max-concurrent-runs", "3", "--lease-seconds", "5")
    replicas = [servers(tmp_path, db_url, f"replica-{i}", *options) for i in range(2)]
    bots = [f"bot-{i}" for i in range(5)]
    for i in range(60):  # alternately to each replica, as a Service would spread them
        uri = write_data(tmp_path, f"e{i}.csv", (f"hello {i}", "bye"))
        body, headers = signed({"bot_id": bots[i % 5], "data_uri": uri, "event_id": f"ev-{i}"})
        assert replicas[i % 2].request("POST", "/events", body, headers)[0] == 202
        time.sleep(0.01)
    wait_for(lambda: len(replicas[0].request("GET", "/events?state=succeeded&limit=100")[1]["events"]) == 60, 30,
                "every event's run to succeed")
    batches = [r for bot in bots for r in replicas[1].request("GET", f"/bots/{bot}/runs?limit=100")[1]["runs"]]
    submitted = [json.loads(line) for line in (tmp_path / "submitted.jsonl").read_text().splitlines()]
    assert sum(b["events"] for b in batches) == 60
    assert sorted(s["run_id"] for s in submitted) == sorted(b["run_id"] for b in batches)  # each batch once
    assert len({s["data_uri"] for s in submitted}) == len(submitted)
    assert {b["owner"] for b in batches} <= {"replica-0", "replica-1"}


def test_dev_mode_without_kfp_trains_in_botyard_run_subprocesses(tmp_path):
    from botyard.pipelines.trigger.backends import local_backend

    bad = tmp_path / "bad.csv"
    bad.write_text("text,intent\nhello,greet\n")
    submitter, run_state = local_backend(str(tmp_path / "models"), str(tmp_path / "runs"))
    started = time.monotonic()
    run_id = submitter("beanbot", str(bad), "0" * 64, "event")
    assert run_id.startswith("local-beanbot-") and time.monotonic() - started < 5  # returns at once
    assert run_state(run_id) == "running"
    wait_for(lambda: run_state(run_id) != "running", 120, "the botyard run subprocess to end")
    log = (tmp_path / "runs" / f"{run_id}.log").read_text()
    assert "training data is invalid" in log and "Traceback" not in log
    assert run_state("local-someone-else") == "failed"  # not started by this process
