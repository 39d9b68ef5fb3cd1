"""Shared fixtures: repository paths, the shared benchmark data, hand-written training files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLE_BOT = REPO / "pipelines" / "sample_bot"


@pytest.fixture
def write(tmp_path):
    """Write ``text`` (str or bytes) to ``tmp_path / name`` and return the path as str."""

    def _write(name: str, text) -> str:
        path = tmp_path / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        return str(path)

    return _write


def tiny_rows(intents=("greet", "bye", "weather"), per_intent: int = 6) -> list[dict]:
    """Small, clearly separable training rows for fast tests."""
    words = {
        "greet": ["hello", "hi", "hey", "good morning", "greetings", "howdy", "hiya", "hello there"],
        "bye": ["bye", "goodbye", "see you", "farewell", "later", "ciao", "bye bye", "see ya"],
        "weather": ["rain today", "is it sunny", "weather forecast", "will it snow", "how hot is it", "cold outside", "storm coming", "temperature now"],
    }
    return [{"utterance": words[i][j % 8] + ("" if j < 8 else f" {j}"), "intent": i} for i in intents for j in range(per_intent)]


# --- object storage: a real S3-compatible server (moto) on 127.0.0.1, one per test process ---------
S3_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # never ask an instance-metadata address for credentials
}


@pytest.fixture(scope="session")
def s3_server():
    """``http://127.0.0.1:<port>`` of a moto S3 server started for this test session."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per S3 request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path):
    """The standard AWS variables pointed at the test server (inherited by subprocesses), a
    private model cache, and a new empty bucket; yields the bucket's name."""
    import uuid

    import boto3

    for key, value in {**S3_TEST_ENV, "AWS_ENDPOINT_URL": s3_server}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("BOTYARD_MODEL_CACHE", str(tmp_path / "model-cache"))
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    return bucket
