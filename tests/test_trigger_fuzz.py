"""Fuzzing the trigger service's HTTP API with hypothesis: bodies, headers and queries a client may send.

Every answer must be one a client can act on (200, 202, 400, 401, 403, 404, 409, 413, 429) with a JSON
``{"error": ...}`` body for a refusal, and never a 500; the app is the real one (``create_app``
over SQLite) through ``TestClient``. The examples mix valid signatures over random bodies (the
parser's paths), random signature and timestamp headers (the authentication paths) and none.
"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botyard.pipelines.trigger import SIGNATURE_HEADER, TIMESTAMP_HEADER, TriggerConfig
from botyard.pipelines.trigger.auth import sign

SECRET = b"fuzz-webhook-secret-0123456789abcdef"
READ_TOKEN = b"fuzz-read-token-0123456789abcdef"
ANSWERS = {200, 202, 400, 401, 403, 404, 409, 413, 429}  # 404: a path the client mangled (e.g. /bots/./runs)
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=60)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
URIS = st.sampled_from([
    "s3://bots/a/nlu.yml", "gs://bots/b.csv", "s3://bots/../x", "http://169.254.169.254/", "/etc/passwd", "file:///etc/x.csv",
    "s3://bots-evil/a", "", " ", "s3://bots/%2e%2e/x", "s3://bots/a\\b", "gs://", "s3://bots/" + "a" * 3000, "\u0000",
]) | st.text(max_size=40)
BOT_IDS = st.sampled_from(["beanbot", "bot-1", "Bad_Bot", "", "a" * 70, "-x", "bot\u00e9"]) | JSON_VALUES
EVENTS = st.fixed_dictionaries(
    {},
    optional={"bot_id": BOT_IDS, "data_uri": URIS | JSON_VALUES, "trigger": st.text(max_size=70) | JSON_VALUES,
              "event_id": st.text(max_size=210) | JSON_VALUES, "extra": JSON_VALUES},
)
BODIES = (
    EVENTS.map(lambda e: json.dumps(e).encode())
    | JSON_VALUES.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=600)
    | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))
    | st.integers(min_value=0, max_value=3000).map(lambda n: b"{" + b" " * n + b"}")
)
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from botyard.pipelines.trigger.app import create_app

    db = tmp_path_factory.mktemp("fuzz") / "events.db"
    config = TriggerConfig(secret=SECRET, db_url=f"sqlite:///{db}", allowed_data_prefixes=("s3://bots/", "gs://bots/"),
                           read_token=READ_TOKEN, max_body_bytes=2048, refusal_burst=1_000_000, refusal_rate=100_000.0)
    app = create_app(config, lambda *a: "run-1", lambda run_id: "running", hash_data=lambda uri: "0" * 64,
                     start_dispatcher=False)
    with TestClient(app) as test_client:
        yield test_client


def _check(response) -> None:
    assert response.status_code in ANSWERS, (response.status_code, response.text)
    if response.status_code >= 400:
        assert set(response.json()) == {"error"} and response.json()["error"]


@FUZZ
@given(body=BODIES, mode=st.sampled_from(["signed", "signed-stale", "random", "none", "signature-only"]),
       signature=HEADER_TEXT, timestamp=HEADER_TEXT | st.integers(min_value=-10**13, max_value=10**13).map(str))
def test_posted_events_get_a_4xx_or_202_never_a_500(client, body, mode, signature, timestamp):
    now = int(time.time())
    headers = {"Content-Type": "application/json"}
    if mode == "signed":
        headers |= {TIMESTAMP_HEADER: str(now), SIGNATURE_HEADER: sign(body, SECRET, now)}
    elif mode == "signed-stale":
        headers |= {TIMESTAMP_HEADER: str(now - 301), SIGNATURE_HEADER: sign(body, SECRET, now - 301)}
    elif mode == "random":
        headers |= {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature}
    elif mode == "signature-only":
        headers |= {SIGNATURE_HEADER: "sha256=" + signature.encode().hex()[:64].ljust(64, "0")}
    response = client.post("/events", content=body, headers=headers)
    _check(response)
    if mode in ("random", "none", "signature-only", "signed-stale"):
        assert response.status_code in (401, 413, 429), response.text  # never accepted without a fresh valid signature
    if response.status_code in (200, 202):
        event = response.json()["event"]
        assert event["data_uri"].startswith(("s3://bots/", "gs://bots/")) and ".." not in event["data_uri"]


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["bot_id", "state", "limit", "other"]), HEADER_TEXT, max_size=3),
       token=st.sampled_from([READ_TOKEN.decode(), "", "wrong-0123456789abcdef"]) | HEADER_TEXT,
       bot=HEADER_TEXT.filter(lambda b: "/" not in b and "?" not in b and "#" not in b))
def test_audit_queries_get_a_4xx_or_200_never_a_500(client, params, token, bot):
    headers = {"Authorization": f"Bearer {token}"}
    for response in (client.get("/events", params=params, headers=headers),
                     client.get(f"/bots/{bot or 'x'}/runs", params=params, headers=headers)):
        _check(response)
        if token != READ_TOKEN.decode():
            assert response.status_code in (401, 404), response.text


def test_the_server_still_answers_after_the_fuzzing(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
