"""Fuzzing and a short load test against a real predictor process.

``hypothesis`` generates V1 and V2 requests (JSON of the right and wrong shapes and types,
Unicode including lone surrogates and control characters, binary-extension bodies with any
``Inference-Header-Content-Length``, arbitrary bytes and content types). Every answer must be
200 or a 4xx with KServe's ``{"error": ...}`` body, never a 5xx, and the server must stay up.

The load test runs ``LOAD_SECONDS`` of mixed good and bad requests from two client threads
and checks that every request got its expected status and that resident memory stays within
``RSS_GROWTH_BOUND_MB`` of where it was after a warm-up (longer runs: ``botyard bench --suite
serving-fleet``).
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botyard.components.base.model_store import ModelStore
from botyard.components.base.predictor_client import PredictorClient, start_predictor

from predictor_models import train_tiny_models

pytestmark = pytest.mark.slow

LOAD_SECONDS = 15
RSS_GROWTH_BOUND_MB = 64
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    models = train_tiny_models(tmp_path_factory.mktemp("trained"))
    store = ModelStore(str(tmp_path_factory.mktemp("models")))
    store.promote("alpha", store.register("alpha", *models["A"]))
    store.register("unblessed", *models["B"])
    extra = ["--max-body-bytes", "65536", "--max-batch", "16", "--max-utterance-chars", "200"]
    with start_predictor(store.root, extra_args=extra, wait_for_bots=["alpha"], ready_timeout=180) as p:
        yield p


# text: any code point, lone surrogates included (json.dumps escapes them as \udXXX)
text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=60)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), text)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4), max_leaves=12)
bots = st.sampled_from(["alpha", "unblessed", "nope", "ALPHA", "a" * 64, "%2e%2e", "alpha%00"])
shapes = st.one_of(st.lists(st.integers(-3, 40), max_size=3), st.lists(json_values, max_size=3), json_values)
datatypes = st.one_of(st.sampled_from(["BYTES", "FP32", "INT64", "BOOL", "FP16", "UINT8"]), text)


@st.composite
def v1_bodies(draw):
    instances = draw(st.one_of(st.lists(text, min_size=0, max_size=20), st.lists(json_values, max_size=5), json_values))
    body = draw(st.one_of(st.just({"instances": instances}), st.dictionaries(text, json_values, max_size=3), json_values))
    return json.dumps(body).encode()


@st.composite
def v2_bodies(draw):
    tensor = {
        "name": draw(st.one_of(st.just("utterances"), text)),
        "datatype": draw(datatypes),
        "shape": draw(shapes),
        "data": draw(st.one_of(st.lists(text, max_size=20), st.lists(json_values, max_size=4), json_values)),
    }
    for key in draw(st.sets(st.sampled_from(list(tensor)), max_size=2)):
        del tensor[key]
    inputs = draw(st.one_of(st.lists(st.just(tensor), min_size=1, max_size=3), json_values))
    body = {"inputs": inputs}
    if draw(st.booleans()):
        body["outputs"] = draw(st.one_of(st.lists(st.fixed_dictionaries({"name": text}), max_size=3), json_values))
    if draw(st.booleans()):
        body["id"] = draw(json_values)
    return json.dumps(body).encode()


@st.composite
def binary_bodies(draw):
    head = draw(v2_bodies())
    payload = draw(st.binary(max_size=200))
    length = draw(st.one_of(st.just(str(len(head))), st.integers(-10, 10**12).map(str), text))
    return head + payload, length


def _send(p, method: str, path: str, body: bytes, headers: dict) -> tuple[int, object]:
    """Raw HTTP/1.1 (``http.client`` refuses some of the header values generated)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: fuzz", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    raw = "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + body
    with socket.create_connection((p.host, p.port), timeout=30) as sock:
        sock.sendall(raw)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload


def _check(p, status: int, body) -> None:
    assert status < 500, body
    if status == 200:
        return
    if isinstance(body, bytes):  # uvicorn's own answer to a request line or header it cannot parse
        assert (status, body) == (400, b"Invalid HTTP request received."), body
    else:
        assert isinstance(body, dict) and set(body) == {"error"}, body


def _header_safe(value: str) -> str:
    return "".join(ch for ch in value if ch not in "\r\n")


@FUZZ
@given(bot=bots, body=v1_bodies(), content_type=st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", ""]))
def test_fuzzed_v1_requests_never_get_a_5xx(predictor, bot, body, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    _check(predictor, *_send(predictor, "POST", f"/v1/models/{bot}:predict", body, headers))


@FUZZ
@given(bot=bots, body=v2_bodies())
def test_fuzzed_v2_json_requests_never_get_a_5xx(predictor, bot, body):
    _check(predictor, *_send(predictor, "POST", f"/v2/models/{bot}/infer", body, {"Content-Type": "application/json"}))


@FUZZ
@given(request=binary_bodies(), content_type=st.sampled_from(["application/octet-stream", "application/json", ""]))
def test_fuzzed_v2_binary_requests_never_get_a_5xx(predictor, request, content_type):
    body, length = request
    headers = {"Inference-Header-Content-Length": _header_safe(length)}
    if content_type:
        headers["Content-Type"] = content_type
    _check(predictor, *_send(predictor, "POST", "/v2/models/alpha/infer", body, headers))


@FUZZ
@given(body=st.binary(max_size=300), path=st.sampled_from(["/v1/models/alpha:predict", "/v2/models/alpha/infer"]))
def test_arbitrary_bytes_never_get_a_5xx(predictor, body, path):
    _check(predictor, *_send(predictor, "POST", path, body, {"Content-Type": "application/json"}))


def test_the_server_is_alive_after_the_fuzzing(predictor):
    assert predictor.request("GET", "/v2/health/ready") == (200, {"ready": True})
    status, body = predictor.predict("alpha", ["hello there"])
    assert status == 200 and body["predictions"][0]["intent"] in {"greet", "weather", "bye"}
    with open(predictor.log_path, encoding="utf-8") as f:
        assert "Traceback" not in f.read()


def test_bounded_load_answers_every_request_with_steady_memory(predictor):
    import psutil

    process = psutil.Process(predictor.process.pid)
    mix = [  # (method, path, body, expected status)
        ("predict", ["will it rain today"], 200),
        ("predict", ["hello", "goodbye", "is it sunny"], 200),
        ("infer", ["see you later"], 200),
        ("bad_json", None, 400),
        ("too_many", None, 413),
        ("unknown", None, 404),
    ]

    def one(client: PredictorClient, kind: str, payload) -> int:
        if kind == "predict":
            return client.predict("alpha", payload)[0]
        if kind == "infer":
            return client.infer("alpha", payload)[0]
        if kind == "bad_json":
            return client.request("POST", "/v1/models/alpha:predict", '{"instances": [')[0]
        if kind == "too_many":
            return client.predict("alpha", ["x"] * 17)[0]
        return client.predict("nope", ["hi"])[0]

    def run(seconds: float, results: list) -> None:
        client = PredictorClient(predictor.host, predictor.port)
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            kind, payload, expected = mix[i % len(mix)]
            results.append((kind, expected, one(client, kind, payload)))
            i += 1
        client.close()

    run(3, [])  # warm-up
    rss_before = process.memory_info().rss / 2**20
    results: list = []
    threads = [threading.Thread(target=run, args=(LOAD_SECONDS, results)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=LOAD_SECONDS + 60)
    rss_after = process.memory_info().rss / 2**20
    wrong = [r for r in results if r[1] != r[2]]
    assert wrong == [] and len(results) > 200, (len(results), wrong[:5])
    assert rss_after - rss_before < RSS_GROWTH_BOUND_MB, (rss_before, rss_after, len(results))
