"""Connecting to a KFP API server: the health probe, one shared client per endpoint, error mapping.

Every KFP or HTTP failure becomes a ``SubmitError`` naming the endpoint, what was being done,
the HTTP status and the server's own message (``kfp_errors``); a host that does not answer the
health check fails in seconds (``probe``) instead of after kfp.Client's five 5-second retries.

Calls go through the REST services kfp.Client exposes (``client.runs``, ``client.experiments``,
``client.pipeline_uploads``, ...): its convenience methods cannot set a run's description and
print links on stdout, which a trigger service does not want.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from typing import Any

from botyard.components.base.errors import BotyardError, SubmitError

REQUEST_TIMEOUT_S = 60
PROBE_TIMEOUT_S = 10
HEALTHZ_PATH = "/apis/v2beta1/healthz"
UI_ENDPOINT_ENV = "KF_PIPELINES_UI_ENDPOINT"  # kfp.Client's own variable for the UI's address


@dataclass
class Connection:
    """A ``kfp.Client`` for one endpoint, with what botyard learnt about the server when connecting."""

    host: str
    client: Any  # kfp.Client
    namespace: str | None = None  # the profile namespace every list and create is scoped to

    def scope(self) -> dict:
        """``namespace=`` for list and upload calls, when there is one."""
        return {"namespace": self.namespace} if self.namespace else {}

    def errors(self, action: str):
        return kfp_errors(self.host, action)


def normalise_host(host: str) -> str:
    host = host.strip().rstrip("/")
    return host if host.startswith(("http://", "https://")) else "https://" + host  # kfp.Client's default too


def server_message(exc) -> str:
    """The server's own message from a kfp_server_api exception (its JSON ``message``, else the body)."""
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if body:
        try:
            doc = json.loads(body)
            if isinstance(doc, dict):
                return str(doc.get("message") or doc.get("error") or body).strip()
        except ValueError:
            pass
        return " ".join(str(body).split())[:300]
    return str(getattr(exc, "reason", "") or exc)


def hint(status: int | None) -> str:
    if status in (401, 403):
        return " (not authorised: pass an authenticated kfp.Client, or reach the API through `kubectl port-forward`)"
    if status and status >= 500:
        return " (the KFP API server failed; its logs: kubectl logs -n kubeflow deploy/ml-pipeline)"
    return ""


def status_of(exc) -> int | None:
    return getattr(exc, "status", None)


@contextlib.contextmanager
def kfp_errors(host: str, action: str):
    """Translate what kfp.Client and its REST client raise into ``SubmitError``."""
    import kfp_server_api
    import urllib3

    try:
        yield
    except BotyardError:
        raise
    except kfp_server_api.ApiException as exc:
        status = status_of(exc)
        raise SubmitError(
            f"KFP at {host}: {action} failed: HTTP {status}: {server_message(exc)}{hint(status)}", status=status
        ) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise SubmitError(f"cannot reach KFP at {host} while {action} ({reason}); check the host URL and that the API server is up") from exc
    except ValueError as exc:  # kfp.Client's own checks, e.g. two experiments with one name
        raise SubmitError(f"KFP at {host}: {action} failed: {exc}") from exc


def probe(host: str, timeout_s: float = PROBE_TIMEOUT_S) -> dict:
    """The health check's answer; a clear ``SubmitError`` when ``host`` is not a KFP API that answers it."""
    url = normalise_host(host) + HEALTHZ_PATH
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the same direct route kfp.Client takes
    try:
        with opener.open(url, timeout=timeout_s) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise SubmitError(
            f"KFP at {host}: the health check {HEALTHZ_PATH} answered HTTP {exc.code}{hint(exc.code)}; is {host} the "
            "KFP API or UI endpoint (e.g. http://localhost:8080 after `kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`)?",
            status=exc.code,
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise SubmitError(f"cannot reach KFP at {host} ({reason}); check the host URL and that the API server is up") from exc
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        doc = {}
    return doc if isinstance(doc, dict) else {}


def make_connection(host: str) -> Connection:
    """A new ``Connection`` to ``host`` (after a quick health probe)."""
    import kfp

    probe(host)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "This client only works with KFP v2.0.0-beta.2 and later"
        with kfp_errors(host, "connecting"):
            client = kfp.Client(host=normalise_host(host))
    return Connection(host=host, client=client, namespace=client.get_user_namespace() or None)


_CONNECTIONS: dict = {}  # normalised host -> Connection, shared by every call in this process
_CONNECTIONS_LOCK = threading.Lock()


def connect(host: str) -> Connection:
    """The process's shared ``Connection`` to ``host`` (made on first use).

    A trigger service submits and polls many runs: one client keeps one connection pool and
    skips the health checks a new client makes.
    """
    key = normalise_host(host)
    with _CONNECTIONS_LOCK:
        connection = _CONNECTIONS.get(key)
    if connection is None:
        connection = make_connection(host)
        with _CONNECTIONS_LOCK:
            connection = _CONNECTIONS.setdefault(key, connection)
    return connection


def clear_connections() -> None:
    """Forget the shared connections (tests whose fake servers come and go on reused ports)."""
    with _CONNECTIONS_LOCK:
        _CONNECTIONS.clear()


def filter_json(**equals) -> str:
    # the same form kfp.Client sends (operation 1 = EQUALS)
    return json.dumps({"predicates": [{"operation": 1, "key": k, "stringValue": v} for k, v in equals.items()]})


def ui_url(host: str, path: str) -> str:
    base = os.environ.get(UI_ENDPOINT_ENV) or host
    return f"{normalise_host(base)}/#/{path}"
