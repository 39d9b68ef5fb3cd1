"""A client of botyard's predictor, and a predictor run as a subprocess.

``start_predictor`` starts ``python -m botyard.components.predictor`` (the same server as
``botyard serve``) on a free loopback port and yields a ``PredictorProcess`` once it is ready;
the infra check, the canary smoke check, the benchmarks and the tests use it. The predictor
is started by module name, not imported, so nothing here depends on KServe: the predictor's
wire contract (URLs, bodies, the load-failure message) is all this module knows of it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Iterator, Sequence

from botyard.components.base.contracts import LOAD_FAILED
from botyard.components.base.errors import DeployError
from botyard.components.base.net import free_port

PREDICTOR_MODULE = "botyard.components.predictor"  # ``python -m`` runs its ``__main__``


class PredictorClient:
    """A small keep-alive HTTP client for one predictor (standard library only)."""

    def __init__(self, host: str, port: int, timeout: float = 30.0):
        self.host, self.port, self.timeout = host, port, timeout
        self._conn: http.client.HTTPConnection | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def request(self, method: str, path: str, body: bytes | str | dict | list | None = None,
                headers: dict | None = None) -> tuple[int, dict | str]:
        """Send one request; returns ``(status, JSON body or text)``. Reconnects once if the
        kept-alive connection was closed."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        headers = {"Content-Type": "application/json", **(headers or {})} if body is not None else dict(headers or {})
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request(method, path, body=body, headers=headers)
                response = self._conn.getresponse()
                raw = response.read()
                break
            except (ConnectionError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    raise
        text = raw.decode("utf-8", errors="replace")
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text

    def predict(self, bot_id: str, utterances: list[str]) -> tuple[int, dict | str]:
        """KServe V1 prediction."""
        return self.request("POST", f"/v1/models/{bot_id}:predict", {"instances": utterances})

    def infer(self, bot_id: str, utterances: list[str], request_id: str | None = None) -> tuple[int, dict | str]:
        """KServe V2 inference with a BYTES ``utterances`` input."""
        body = {"inputs": [{"name": "utterances", "datatype": "BYTES", "shape": [len(utterances)], "data": utterances}]}
        if request_id:
            body["id"] = request_id
        return self.request("POST", f"/v2/models/{bot_id}/infer", body)

    def ready(self, bot_id: str | None = None) -> bool:
        path = f"/v2/models/{bot_id}/ready" if bot_id else "/v2/health/ready"
        try:
            return self.request("GET", path)[0] == 200
        except OSError:
            return False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PredictorProcess(PredictorClient):
    """A running ``start_predictor`` subprocess and a client for it."""

    def __init__(self, process: subprocess.Popen, host: str, port: int, log_path: str):
        super().__init__(host, port)
        self.process = process
        self.log_path = log_path

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError), open(self.log_path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
        return ""

    def wait_ready(self, timeout: float, bots: Sequence[str] = ()) -> None:
        """Block until the server and each of ``bots`` are ready (loaded: start the predictor
        with ``--preload`` for them, as ``start_predictor(wait_for_bots=...)`` does).

        Raises ``DeployError`` when the process exits, a bot's version failed to load, or
        ``timeout`` seconds pass.
        """
        deadline = time.monotonic() + timeout
        pending: list[str | None] = [None, *bots]  # None: the server itself (first scan done)
        while pending:
            if self.process.poll() is not None:
                raise DeployError(
                    f"the predictor exited with status {self.process.returncode} before it was ready; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            path = f"/v2/models/{pending[0]}/ready" if pending[0] else "/v2/health/ready"
            try:
                status, body = self.request("GET", path)
            except OSError:
                status, body = 0, None  # not listening yet
            if status == 200:
                pending.pop(0)
                continue
            error = body.get("error", "") if isinstance(body, dict) else ""
            if pending[0] and LOAD_FAILED in error:
                raise DeployError(f"{error}; log {self.log_path}")
            if time.monotonic() > deadline:
                what = f"bot '{pending[0]}'" if pending[0] else "the server"
                raise DeployError(
                    f"{what} was not ready after {timeout:.0f}s ({error or 'no answer'}); "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        self.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextlib.contextmanager
def start_predictor(
    models_root: str,
    host: str = "127.0.0.1",
    port: int | None = None,
    *,
    grpc_port: int | None = None,
    reload_interval: float = 2.0,
    extra_args: Sequence[str] = (),
    ready_timeout: float = 300.0,
    wait_for_bots: Sequence[str] = (),
    log_path: str | None = None,
) -> Iterator[PredictorProcess]:
    """Run a predictor on ``models_root`` in a subprocess; yields it once ready, stops it on exit.

    ``port`` None picks a free port. ``extra_args`` are more ``botyard serve`` flags (e.g.
    ``["--max-batch", "32"]``). Raises ``DeployError`` (with the log's tail) if it does not
    get ready within ``ready_timeout`` seconds. Example (the infra check)::

        with start_predictor(models_root) as predictor:
            status, body = predictor.predict("beanbot", ["hello"])
    """
    port = port or free_port(host)
    if log_path is None:
        fd, log_path = tempfile.mkstemp(prefix="botyard-predictor-", suffix=".log")
        os.close(fd)
    argv = [
        sys.executable, "-m", PREDICTOR_MODULE,
        "--models-root", models_root, "--host", host, "--port", str(port),
        "--grpc-port", str(grpc_port) if grpc_port else "disabled",
        "--reload-interval", str(reload_interval), *extra_args,
    ]  # fmt: skip
    if wait_for_bots:  # bots load on their first request; these are waited for, so load them at start
        argv += ["--preload", *wait_for_bots]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    predictor = PredictorProcess(process, host, port, log_path)
    try:
        predictor.wait_ready(ready_timeout, wait_for_bots)
        yield predictor
    finally:
        predictor.stop()
