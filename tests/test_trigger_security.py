"""The trigger service tried as an attacker would: replays, data it must not read, leaks, floods, bombs.

In-process through ``TestClient`` (the fake clock of ``test_trigger``), and against real
``botyard trigger-server`` processes on 127.0.0.1 for what needs one: a YAML alias bomb while
``/healthz`` and another bot are watched, a client that hangs up mid-body, and a few seconds of
mixed load with the server's resident memory measured (the 60 s version is ``botyard bench
--suite trigger``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time

import pytest

from botyard.pipelines.bench import trigger as trigger_bench
from botyard.pipelines.trigger import SIGNATURE_HEADER, TIMESTAMP_HEADER
from botyard.pipelines.trigger.auth import MAX_AGE_S, sign
from botyard.pipelines.trigger.event_store import Store

from test_trigger import (  # noqa: F401 - fixtures and helpers shared with the functional tests
    READ_HEADERS,
    SECRET,
    ServerProcess,
    data_checker,
    make_harness,
    servers,
    signed,
    sqlite_url,
    write_data,
)

BOMB = "\n".join(
    ['a0: &a0 "lol"']
    + [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    + ["nlu:", "  - intent: *a9", "    examples: |", "      - hi", ""]
)


def _post(h, body: bytes, headers: dict):
    return h.client.post("/events", content=body, headers=headers)


# --- replay-proof signatures ------------------------------------------------------------------------------
def test_a_signature_covers_the_timestamp_and_expires_after_five_minutes(tmp_path, sqlite_url, make_harness):
    h = make_harness(sqlite_url)
    body = json.dumps({"bot_id": "beanbot", "data_uri": write_data(tmp_path, "a.csv")}).encode()
    now = int(h.clock())

    first = _post(h, body, signed(body, now=now)[1])
    replay = _post(h, body, signed(body, now=now)[1])  # the same delivery, byte for byte, inside the window
    assert (first.status_code, replay.status_code) == (202, 200)
    assert replay.json() == {"duplicate": True, "event": first.json()["event"]}
    assert first.json()["event"]["event_id"] == "sig:" + sign(body, SECRET, now).split("=", 1)[1]

    stale = _post(h, body, signed(body, now=now - MAX_AGE_S - 1)[1])
    assert (stale.status_code, stale.json()["error"]) == (401, (
        f"{TIMESTAMP_HEADER} is {MAX_AGE_S + 1} s old; requests older than 300 s are refused (a replay, or the sender's "
        "clock is wrong): sign each delivery with the current time"))
    future = _post(h, body, signed(body, now=now + 60)[1])
    assert (future.status_code, future.json()["error"]) == (401, (
        f"{TIMESTAMP_HEADER} is 60 s in the future; check the sender's clock (at most 5 s ahead is accepted)"))
    assert _post(h, body, signed(body, now=now + 3)[1]).status_code == 202  # clock skew of an NTP-synced sender
    assert _post(h, body, signed(body, now=now - MAX_AGE_S + 1)[1]).status_code == 202

    moved = signed(body, now=now)[1] | {TIMESTAMP_HEADER: str(now + 1)}  # a fresh timestamp on an old signature
    assert _post(h, body, moved).json()["error"].startswith(f"{SIGNATURE_HEADER} does not match")
    old_scheme = {SIGNATURE_HEADER: "sha256=" + __import__("hmac").new(SECRET, body, "sha256").hexdigest(), TIMESTAMP_HEADER: str(now)}
    assert _post(h, body, old_scheme).status_code == 401  # the body alone, without '<timestamp>.'
    no_stamp = {SIGNATURE_HEADER: sign(body, SECRET, now)}
    assert _post(h, body, no_stamp).json()["error"].startswith(f"missing {TIMESTAMP_HEADER} header")
    for bad in ("soon", "-5", "1e9", "1" * 13, " "):
        response = _post(h, body, {SIGNATURE_HEADER: sign(body, SECRET, now), TIMESTAMP_HEADER: bad})
        assert response.status_code == 401, bad
    stored = [e for e in h.client.get("/events", params={"limit": 100}).json()["events"] if e["state"] == "received"]
    assert len(stored) == 3  # the first delivery and the two fresh ones; the replay stored nothing


# --- which data the service reads ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data_uri, config, message",
    [
        ("s3://bots/a/nlu.yml", {}, None),
        ("gs://bots/a/nlu.yml", {}, None),
        ("s3://bots-evil/a/nlu.yml", {}, "is outside the allowed locations ['s3://bots/', 'gs://bots/']"),
        ("s3://bots/../other/nlu.yml", {}, "has a '.' or '..' path segment"),
        ("s3://bots/./a.yml", {}, "has a '.' or '..' path segment"),
        ("s3:///a.yml", {}, "has no bucket"),
        ("http://169.254.169.254/latest/meta-data/x.csv", {}, "scheme 'http' is not accepted"),
        ("https://bots/a.csv", {}, "scheme 'https' is not accepted"),
        ("hdfs://bots/a.csv", {}, "scheme 'hdfs' is not accepted"),
        ("/etc/passwd.csv", {}, "is a local path; this server accepts only object-store URIs"),
        ("file:///etc/passwd.csv", {}, "is a local path; this server accepts only object-store URIs"),
        ("bots/a.csv", {}, "is a relative path"),
        ("s3://bots\\..\\x.csv", {}, "contains a backslash"),
        ("/srv/bots/a.csv", {"allow_local_data": True, "allowed_data_prefixes": ("s3://bots/", "/srv/bots/")}, None),
        ("file:///srv/bots/a.csv", {"allow_local_data": True, "allowed_data_prefixes": ("/srv/bots/",)}, None),
        ("/srv/bots/../secrets/a.csv", {"allow_local_data": True, "allowed_data_prefixes": ("/srv/bots/",)}, "'..' path segment"),
        ("/srv/botsy/a.csv", {"allow_local_data": True, "allowed_data_prefixes": ("/srv/bots/",)}, "outside the allowed locations"),
        ("file:///srv/bots/%2e%2e/x.csv", {"allow_local_data": True, "allowed_data_prefixes": ("/srv/bots/",)}, "without % escapes"),
        ("file://host/srv/bots/a.csv", {"allow_local_data": True, "allowed_data_prefixes": ("/srv/bots/",)}, "must be file:///absolute/path"),
        ("s3://bots/a.csv", {"allow_local_data": True, "allowed_data_prefixes": ("/srv/bots/",)}, "outside the allowed locations"),
        ("/anywhere/a.csv", {"dev": True, "allow_local_data": True, "allowed_data_prefixes": ()}, None),
        ("/anywhere/a.csv", {"dev": True, "allow_local_data": False, "allowed_data_prefixes": ()}, "is a local path"),
        ("gs://anything/a.csv", {"dev": True, "allowed_data_prefixes": ()}, None),
    ],
)
def test_only_data_under_the_configured_prefixes_is_accepted(sqlite_url, make_harness, data_uri, config, message):
    settings = {"dev": False, "allow_local_data": False, "allowed_data_prefixes": ("s3://bots/", "gs://bots/"), **config}
    h = make_harness(sqlite_url, **settings)
    response = h.post({"bot_id": "beanbot", "data_uri": data_uri})
    if message is None:
        assert response.status_code == 202, response.json()
    else:
        assert response.status_code == 400 and message in response.json()["error"], response.json()


def test_a_link_out_of_the_local_prefix_is_refused_by_the_data_check(tmp_path, sqlite_url, make_harness):
    allowed = tmp_path / "bots"
    allowed.mkdir()
    secret = tmp_path / "secret.csv"
    secret.write_text("text,intent\n" + "".join(f"password {k},greet\nkey {k},bye\n" for k in range(5)))
    (allowed / "evil.csv").symlink_to(secret)
    h = make_harness(sqlite_url, dev=False, allow_local_data=True, allowed_data_prefixes=(f"{allowed}/",), quiet_period=1.0,
                     own_sandbox=True)
    assert h.post({"bot_id": "beanbot", "data_uri": str(allowed / "evil.csv")}).status_code == 202
    h.tick(advance=2)
    [run] = h.client.get("/bots/beanbot/runs").json()["runs"]
    assert run["state"] == "failed"
    assert run["reason"] == f"cannot use the training data at {allowed / 'evil.csv'}: it resolves (through a link) outside the allowed locations"
    assert h.backend.submitted == []


def test_failure_reasons_never_quote_the_file(tmp_path, sqlite_url, make_harness, caplog):
    h = make_harness(sqlite_url, quiet_period=1.0, max_concurrent_runs=10)
    leaky = {
        "header.csv": "api_key,password\nAKIA-SECRET-1,hunter2\n",
        "rows.csv": "text,intent\n" + "".join(f"my pin is 4711-{k},greet\n" for k in range(5)),  # one intent
        "json.jsonl": '{"text": "card 4111-1111", "intent": 7}\n',
        "yaml.yml": "nlu:\n  - intent: leaked-intent-name\n    examples: |\n      - the vault code is 0000\n",
        "binary.csv": "text,intent\n\udcff".encode("utf-8", "surrogateescape").decode("latin-1"),
    }
    for i, (name, text) in enumerate(leaky.items()):
        (tmp_path / name).write_text(text, encoding="latin-1" if name == "binary.csv" else "utf-8")
        assert h.post({"bot_id": f"bot-{i}", "data_uri": str(tmp_path / name)}).status_code == 202
    h.tick(advance=2)
    audit = json.dumps(h.client.get("/events", params={"limit": 100}).json()) + json.dumps(
        [h.client.get(f"/bots/bot-{i}/runs").json() for i in range(len(leaky))])
    # event ids are SHA-256 digests of the request: their hex digits may spell "4111" by chance
    audit = re.sub(r"[0-9a-f]{64}", "<digest>", audit)
    for fragment in ("api_key", "AKIA", "hunter2", "4711", "4111", "leaked-intent-name", "vault", "password"):
        assert fragment not in audit, fragment
        assert fragment not in caplog.text, fragment  # nor in the server's log
    reasons = [h.client.get(f"/bots/bot-{i}/runs").json()["runs"][0]["reason"] for i in range(len(leaky))]
    assert all("it is not valid training data" in r for r in reasons), reasons


# --- the audit endpoints ----------------------------------------------------------------------------------------
def test_audit_endpoints_need_the_read_token(sqlite_url, make_harness):
    h = make_harness(sqlite_url, dev=False, allowed_data_prefixes=("s3://bots/",))
    for path in ("/events", "/bots/beanbot/runs"):
        assert h.client.get(path).status_code == 200
        for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": "Basic x"}):
            response = h.client.get(path, headers=headers)
            assert (response.status_code, response.json()) == (401, {"error": "the audit endpoints need Authorization: Bearer <read token>"})
    closed = make_harness(sqlite_url.replace("events.db", "closed.db"), dev=False, allowed_data_prefixes=("s3://bots/",), read_token=b"")
    response = closed.client.get("/events")
    assert response.status_code == 403 and "the audit endpoints are closed" in response.json()["error"]
    assert closed.client.get("/healthz").status_code == 200  # the probes stay open
    opened = make_harness(sqlite_url.replace("events.db", "dev.db"), dev=True, read_token=b"")
    assert opened.client.get("/events", headers={"Authorization": ""}).status_code == 200  # --dev: open


# --- floods of refused requests ---------------------------------------------------------------------------------
def test_refused_requests_are_counted_rate_limited_per_address_and_capped(tmp_path, sqlite_url, make_harness):
    h = make_harness(sqlite_url, refusal_rate=1.0, refusal_burst=20, max_rejected_records=12)
    body = json.dumps({"bot_id": "beanbot", "data_uri": "s3://bots/a.csv"}).encode()
    answers = [h.client.post("/events", content=body).status_code for _ in range(30)]
    assert answers == [401] * 20 + [429] * 10
    limited = h.client.post("/events", content=body)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert limited.json() == {"error": "too many refused requests from this address; sign requests (see the README) and retry later"}
    assert h.post({"bot_id": "beanbot", "data_uri": write_data(tmp_path, "a.csv")}).status_code == 202  # signed: never limited
    metrics = h.client.get("/metrics").text
    assert 'botyard_trigger_refused_total{status="401"} 20' in metrics and "botyard_trigger_rate_limited_total 11" in metrics
    assert h.store.state_counts()["rejected"] == 20  # a 429 is counted, not stored
    h.clock.advance(10)  # the bucket refills at 1 a second
    assert h.client.post("/events", content=body).status_code == 401
    h.tick()  # the dispatcher's pass prunes the audit trail to the newest 12 refusals
    assert h.store.state_counts()["rejected"] == 12
    newest = h.client.get("/events", params={"state": "rejected", "limit": 100}).json()["events"]
    assert len(newest) == 12 and newest[0]["id"] == max(e["id"] for e in newest)


# --- a real server: a YAML alias bomb, a client that hangs up, sustained load -----------------------------------
def test_a_yaml_alias_bomb_stalls_neither_healthz_nor_other_bots(tmp_path, servers):
    import psutil

    (tmp_path / "bomb.yml").write_text(BOMB)
    good = write_data(tmp_path, "good.csv")
    server = servers(tmp_path, f"sqlite:///{tmp_path / 'events.db'}", "bomb", "--quiet-period", "0.2", "--poll-interval",
                     "0.1", "--parse-workers", "2", "--parse-memory-mb", "220", "--parse-timeout", "20")
    baseline_mb = psutil.Process(server.process.pid).memory_info().rss / 2**20
    assert server.request("POST", "/events", *signed({"bot_id": "bomb-bot", "data_uri": str(tmp_path / "bomb.yml")}))[0] == 202
    time.sleep(0.5)  # the bomb is in a data-check worker now
    assert server.request("POST", "/events", *signed({"bot_id": "good-bot", "data_uri": good}))[0] == 202
    slowest, deadline = 0.0, time.monotonic() + 60
    good_state = bomb_run = None
    while time.monotonic() < deadline:
        started = time.monotonic()
        assert server.request("GET", "/healthz")[0] == 200
        slowest = max(slowest, time.monotonic() - started)
        good_state = (server.request("GET", "/bots/good-bot/runs")[1]["runs"] or [{}])[0].get("state")
        bomb_run = (server.request("GET", "/bots/bomb-bot/runs")[1]["runs"] or [{}])[0]
        if good_state == "submitted" and bomb_run.get("state") == "failed":
            break
        time.sleep(0.2)
    assert good_state == "submitted"  # the other bot went through while the bomb was being read
    assert bomb_run.get("state") == "failed", bomb_run
    assert bomb_run["reason"].startswith(f"cannot use the training data at {tmp_path / 'bomb.yml'}: ")
    print(f"bomb: {bomb_run['reason']}; slowest /healthz {slowest * 1000:.0f} ms")
    assert slowest < 1.0, f"/healthz took {slowest:.2f}s"
    server_mb = psutil.Process(server.process.pid).memory_info().rss / 2**20
    assert server_mb < baseline_mb + 50, (baseline_mb, server_mb)  # the bomb never grew the server itself
    log = server.log_path.read_text()
    assert "Traceback" not in log and "lol" not in log


def test_a_client_that_hangs_up_mid_body_costs_one_log_line(tmp_path, servers):
    server = servers(tmp_path, f"sqlite:///{tmp_path / 'events.db'}", "hangup")
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"bot")
        time.sleep(0.3)
    assert server.request("GET", "/healthz")[0] == 200
    log = server.log_path.read_text()
    assert "Traceback" not in log
    assert log.count("the client hung up before its body arrived") == 3
    assert len(max(log.splitlines(), key=len)) < 300


def test_a_few_seconds_of_mixed_load_answer_every_request_in_bounded_memory(tmp_path):
    """Short in the suite; ``botyard bench --suite trigger`` runs the same for 60 s."""
    db = tmp_path / "load.db"
    with trigger_bench.trigger_server(f"sqlite:///{db}", str(tmp_path / "load.log"), "--quiet-period", "3600",
                                      "--max-rejected-records", "200", "--poll-interval", "0.2") as (port, process):
        load = trigger_bench.sustained_load(port, process.pid, seconds=4.0, threads=3)
        time.sleep(0.6)
    assert load["errors"] == []
    assert load["requests"] > 100
    answers = load["counts"]
    assert answers.get("POST /events 202", 0) > 0 and answers.get("GET /healthz 200", 0) > 0
    assert answers.get("POST /events 429", 0) > 0  # the unsigned flood was limited
    assert load["rss_peak_mb"] < 400, load  # the stated bound (README): a trigger replica stays under 400 MiB
    assert load["rss_peak_mb"] - load["rss_start_mb"] < 60, load
    store = Store(f"sqlite:///{db}", create=False)
    try:
        assert store.state_counts()["rejected"] <= 200 + 40  # capped (pruned each pass; a pass's worth may wait)
    finally:
        store.close()


def test_the_readme_curl_recipe_works_as_written(tmp_path, servers):
    import re

    from conftest import REPO
    from test_trigger import READ_TOKEN

    readme = (REPO / "README.md").read_text()
    recipe = re.search(r"```bash\n(body='\{\"bot_id\": \"sample-bot\".*?)```", readme, re.S).group(1)
    server = servers(tmp_path, f"sqlite:///{tmp_path / 'events.db'}", "readme", "--allowed-data-prefix", "gs://bots/")
    script = recipe.replace("http://127.0.0.1:8090", f"http://127.0.0.1:{server.port}")
    env = {**os.environ, "BOTYARD_WEBHOOK_SECRET": SECRET.decode(), "BOTYARD_TRIGGER_READ_TOKEN": READ_TOKEN}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    posted, listed = [json.loads(line) for line in result.stdout.replace("}{", "}\n{").splitlines() if line.strip()]
    assert posted["duplicate"] is False and posted["event"]["data_uri"] == "gs://bots/sample-bot/nlu.yml"
    assert [e["id"] for e in listed["events"]] == [posted["event"]["id"]]


def test_the_sandbox_stops_a_file_at_its_memory_and_time_limits_and_carries_on(tmp_path):
    """A file the bounded parser accepts (under its 64 MB cap) may still be more than a small worker may spend."""
    from botyard.pipelines.trigger.sandbox import OUT_OF_MEMORY, TIMED_OUT, DataChecker, DataCheckError, Limits

    big = tmp_path / "big.csv"
    with open(big, "w", encoding="utf-8") as f:
        f.write("text,intent\n")
        for i in range(600_000):
            f.write(f"utterance number {i} for the bot,{'greet' if i % 2 else 'bye'}\n")
    small = write_data(tmp_path, "small.csv")
    for limits, kind, why in (
        (Limits(memory_mb=200, timeout_s=120), OUT_OF_MEMORY, "reading it needed more than 200 MiB (the limit is --parse-memory-mb)"),
        (Limits(memory_mb=4096, timeout_s=0.5), TIMED_OUT, "reading it took longer than 0.5 s (the limit is --parse-timeout)"),
    ):
        checker = DataChecker(workers=1, limits=limits)
        try:
            assert len(checker.fingerprint(small)) == 64  # the worker is up (a fresh interpreter may take seconds)
            with pytest.raises(DataCheckError) as err:
                checker.fingerprint(str(big))
            assert (err.value.kind, err.value.reason) == (kind, why)
            assert len(checker.fingerprint(small)) == 64 and checker.replaced == 1  # a fresh worker took over
        finally:
            checker.close()
