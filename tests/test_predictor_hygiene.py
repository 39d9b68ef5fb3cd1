"""The predictor against a careless or hostile client: admin surface, malformed V2 requests,
oversized, cut-off and slow bodies, idle keep-alive connections.

A real predictor process (``start_predictor``) with small limits: ``--max-body-bytes 65536``,
``--body-timeout 2``, ``--keep-alive-timeout 1``; raw sockets where ``http.client`` would
not send the mistake. A second process enables the model-repository extension with a token.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from botyard.components.base.model_store import ModelStore
from botyard.components.base.predictor_client import start_predictor

from predictor_models import train_tiny_models

pytestmark = pytest.mark.slow

MAX_BODY = 65536
V1 = "/v1/models/alpha:predict"
V2 = "/v2/models/alpha/infer"
TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ModelStore:
    models = train_tiny_models(tmp_path_factory.mktemp("trained"))
    store = ModelStore(str(tmp_path_factory.mktemp("models")))
    store.promote("alpha", store.register("alpha", *models["A"]))
    return store


@pytest.fixture(scope="module")
def predictor(store, tmp_path_factory):
    log_path = str(tmp_path_factory.mktemp("log") / "predictor.log")
    extra = ["--max-body-bytes", str(MAX_BODY), "--body-timeout", "2", "--keep-alive-timeout", "1"]
    with start_predictor(store.root, extra_args=extra, wait_for_bots=["alpha"], ready_timeout=180, log_path=log_path) as p:
        yield p


def _connect(p) -> socket.socket:
    return socket.create_connection((p.host, p.port), timeout=10)


def _read_response(sock: socket.socket) -> tuple[int, dict | str, bytes]:
    """One HTTP response: status, JSON body (or text), raw head."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), None)
    while length is not None and len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    status = int(head.split(b" ")[1]) if head else 0
    try:
        return status, json.loads(body), head
    except ValueError:
        return status, body.decode("utf-8", "replace"), head


def _post(p, path: str, body: bytes, headers: dict) -> tuple[int, dict | str]:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with _connect(p) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body)
        return _read_response(sock)[:2]


def _binary(inputs: list[dict], payload: bytes, length: str | None = None) -> tuple[bytes, dict]:
    head = json.dumps({"inputs": inputs}).encode()
    headers = {"Content-Type": "application/octet-stream"}
    headers["Inference-Header-Content-Length"] = str(len(head)) if length is None else length
    return head + payload, headers


_BYTES_INPUT = [{"name": "utterances", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 9}}]
_HELLO = b"\x05\x00\x00\x00hello"  # V2 binary BYTES: a 4-byte little-endian length, then the bytes
JSON = {"Content-Type": "application/json"}


# --- the admin surface ----------------------------------------------------------------------------
@pytest.mark.parametrize("action", ["load", "unload"])
def test_model_repository_extension_is_off_by_default(predictor, action):
    status, body = predictor.request("POST", f"/v2/repository/models/alpha/{action}")
    assert status == 403
    assert body == {"error": (
        "the model-repository extension is off on this predictor: it loads bots on demand and evicts them itself, "
        "and what it serves changes only by promotion (start it with --model-repository-token-file to allow load "
        "and unload)"
    )}  # fmt: skip
    assert predictor.predict("alpha", ["hello"])[0] == 200  # still served


def test_model_repository_extension_behind_a_token(store, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    extra = ["--model-repository-token-file", str(token_file)]
    with start_predictor(store.root, extra_args=extra, wait_for_bots=["alpha"], ready_timeout=180) as p:
        refused = "model-repository requests need 'Authorization: Bearer <token>' with this predictor's token"
        assert p.request("POST", "/v2/repository/models/alpha/unload") == (403, {"error": refused})
        wrong = {"Authorization": f"Bearer {TOKEN[:-1]}x"}
        assert p.request("POST", "/v2/repository/models/alpha/unload", headers=wrong) == (403, {"error": refused})
        assert p.ready("alpha")
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert p.request("POST", "/v2/repository/models/alpha/unload", headers=auth) == (200, {"name": "alpha", "unload": True})
        assert not p.ready("alpha")  # evicted, not taken offline: the next request loads it again
        assert p.predict("alpha", ["hello"])[0] == 200
        assert p.request("POST", "/v2/repository/models/alpha/unload", headers=auth)[0] == 200
        assert p.request("POST", "/v2/repository/models/alpha/load", headers=auth) == (200, {"name": "alpha", "load": True})
        assert p.ready("alpha")
        assert p.request("POST", "/v2/repository/models/nope/load", headers=auth)[0] == 404


def test_a_short_token_file_stops_the_start(store, tmp_path):
    from botyard.components.base.errors import DeployError

    token_file = tmp_path / "token"
    token_file.write_text("short\n")
    with pytest.raises(DeployError, match="the token must have at least 16 characters"):
        with start_predictor(store.root, extra_args=["--model-repository-token-file", str(token_file)], ready_timeout=120):
            pass


# --- client mistakes: a 4xx with a message, never a 500 --------------------------------------------
@pytest.mark.parametrize(
    "path, body, headers, status, message",
    [
        (V2, b'{"inputs": [{"name": "utterances", "datatype": "BYTES", "shape": [1], "data": ["\\ud800"]}]}', JSON, 400,
         "input 'utterances': element 0 is not valid Unicode text: a lone surrogate (\\ud800) at character 0"),
        (V2, b'{"inputs": [{"name": "utterances", "datatype": "BYTES", "shape": [2], "data": ["ok", "a\\udfffb"]}]}', JSON, 400,
         "element 1 is not valid Unicode text: a lone surrogate (\\udfff) at character 1"),
        (V1, b'{"instances": ["\\ud800"]}', JSON, 400, "the request body is not valid JSON"),
        (V1, b'{"instances": ["\xff\xfe"]}', JSON, 400, "the request body is not valid JSON"),
        (V2, b'{"inputs": [{"name": "u", "datatype": "BYTES", "shape": [1], "data": ["\xff"]}]}', JSON, 400,
         "the request body is not valid JSON (it may not be UTF-8)"),
        (V2, *_binary(_BYTES_INPUT, _HELLO, length="abc"), 400,
         "'Inference-Header-Content-Length' must be a whole number of bytes; got 'abc'"),
        (V2, *_binary(_BYTES_INPUT, _HELLO, length="-5"), 400, "must be a whole number of bytes; got '-5'"),
        (V2, *_binary(_BYTES_INPUT, _HELLO, length="1e9"), 400, "must be a whole number of bytes; got '1e9'"),
        (V2, *_binary(_BYTES_INPUT, _HELLO, length="1000000000"), 400,
         "'Inference-Header-Content-Length' is 1,000,000,000 but the body has "),
        (V2, *_binary(_BYTES_INPUT, _HELLO, length="0"), 400, "'Inference-Header-Content-Length' is 0 but the body has"),
        (V2, *_binary(_BYTES_INPUT, _HELLO, length="5"), 400, "the first 5 bytes ('Inference-Header-Content-Length') are not valid JSON"),
        (V2, b"\x00\x01 not json", {"Content-Type": "application/octet-stream"}, 400,
         "needs a 'Inference-Header-Content-Length' header"),
        (V2, *_binary(_BYTES_INPUT, b"\x05\x00"), 400,
         "the binary data is 2 bytes after the JSON part, but its inputs declare 9 (binary_data_size)"),
        (V2, *_binary(_BYTES_INPUT, _HELLO + b"extra"), 400, "the binary data is 14 bytes after the JSON part"),
        (V2, *_binary([{**_BYTES_INPUT[0], "parameters": {"binary_data_size": 6}}], b"\x02\x00\x00\x00\xff\xfe"), 400,
         "binary V2 request: a BYTES element is not valid UTF-8 text"),
        (V2, *_binary([{**_BYTES_INPUT[0], "parameters": {"binary_data_size": 9}}], b"\x50\x00\x00\x00hello"), 400,
         "invalid binary V2 request"),
        (V2, *_binary([{"name": "utterances", "datatype": "BYTES", "shape": [1]}], b""), 400,
         "inputs[0]: give 'data' or a whole-number 'parameters.binary_data_size'"),
        (V2, *_binary([{**_BYTES_INPUT[0], "parameters": {"binary_data_size": "9"}}], _HELLO), 400,
         "whole-number 'parameters.binary_data_size'"),
    ],
)  # fmt: skip
def test_client_mistakes_get_a_4xx_with_a_message(predictor, path, body, headers, status, message):
    got_status, got = _post(predictor, path, body, headers)
    assert got_status == status, got
    assert isinstance(got, dict) and set(got) == {"error"}, got
    assert message in got["error"]


def test_a_binary_v2_request_is_answered(predictor):
    status, body = _post(predictor, V2, *_binary(_BYTES_INPUT, _HELLO))
    assert status == 200, body
    assert body["outputs"][0]["data"][0] in {"greet", "weather", "bye"}


# --- bodies: capped, cut off, slow -------------------------------------------------------------------
def test_a_body_over_the_cap_is_refused_before_it_is_read(predictor):
    with _connect(predictor) as sock:  # announces 100 MB, sends 13 bytes, waits for the answer
        sock.sendall(b"POST /v1/models/alpha:predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000000\r\n\r\n{\"instances\":")  # fmt: skip
        status, body, head = _read_response(sock)
    assert status == 413
    assert body == {"error": "the request body has 100,000,000 bytes; this predictor accepts at most 65,536 "
                             "(--max-body-bytes): send fewer or shorter utterances per request"}  # fmt: skip
    assert b"connection: close" in head.lower()


def test_a_chunked_body_is_refused_once_it_passes_the_cap(predictor):
    chunk = 40_000
    with _connect(predictor) as sock:
        sock.sendall(b"POST /v1/models/alpha:predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        for _ in range(2):
            sock.sendall(f"{chunk:x}\r\n".encode() + b"a" * chunk + b"\r\n")
        status, body, _ = _read_response(sock)
    assert status == 413
    assert "the request body has over 65,536 bytes" in body["error"]


def test_a_cut_off_body_is_one_log_line_not_a_traceback(predictor):
    with open(predictor.log_path, encoding="utf-8") as f:
        before = f.read()
    with _connect(predictor) as sock:
        sock.sendall(b"POST /v1/models/alpha:predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"instances\": [\"hel")  # fmt: skip
        time.sleep(0.3)
    expected = "POST /v1/models/alpha:predict: client disconnected after 19 of 1,000 body bytes; request dropped"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(predictor.log_path, encoding="utf-8") as f:
            new = f.read()[len(before):]
        if expected in new:
            break
        time.sleep(0.1)
    lines = [line for line in new.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].endswith(expected), new
    assert predictor.predict("alpha", ["hello"])[0] == 200


def test_a_body_that_does_not_arrive_times_out(predictor):
    with _connect(predictor) as sock:
        sock.sendall(b"POST /v1/models/alpha:predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"inst")  # fmt: skip
        started = time.monotonic()
        status, body, _ = _read_response(sock)
    assert status == 408 and body == {"error": "the request body did not arrive within 2s"}
    assert 1.5 < time.monotonic() - started < 8


def test_idle_keep_alive_connections_time_out(predictor):
    request = b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n"
    with _connect(predictor) as sock:
        sock.sendall(request)
        assert _read_response(sock)[:2] == (200, {"live": True})
        sock.sendall(request)  # kept alive while in use
        assert _read_response(sock)[:2] == (200, {"live": True})
        time.sleep(2.5)  # idle past --keep-alive-timeout 1
        sock.settimeout(5)
        assert sock.recv(1024) == b""  # the server closed it


def test_fastapi_refusals_have_the_error_shape(predictor):
    assert predictor.request("GET", "/v2/no/such/path") == (404, {"error": "Not Found"})
