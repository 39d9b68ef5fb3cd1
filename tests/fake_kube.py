"""A tiny in-memory Kubernetes API server for KServe InferenceServices, for tests.

It serves ``/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices[/{name}]``
(GET, POST, PATCH as merge-patch or JSON patch, DELETE) on ``127.0.0.1`` at a free port,
records every request, answers errors with Kubernetes ``Status`` objects, and plays a
scriptable KServe controller::

    server = FakeKube().start()
    server.policy("bot-a", never_ready("container crashed"))   # or ready_after(3), manual()
    ...
    server.requests  # [Request(method, path, query, content_type, body), ...]
    server.stop()

The controller, like KServe's, works on ``metadata.generation``: a write that changes
``spec`` bumps the generation (and, when the predictor's template changed, creates a
Knative-style revision ``<name>-predictor-0000N``). Each GET of an object lets its policy
say what the controller has made of the newest generation:

``"pending"``  status left as it was (the controller has not caught up yet)
``"ready"``    ``observedGeneration`` = generation, condition ``Ready`` True, the new
               revision ready and traffic split per ``canaryTrafficPercent``
``"failed"``   ``observedGeneration`` = generation, ``Ready`` False with a message, the
               new revision created but not ready; traffic stays where it was

``PATCH`` does not touch ``status`` (the CRD has a status subresource), as on a cluster.

The object's ``serving.kserve.io/deploymentMode`` annotation picks what the status looks like:
``Serverless`` (the default) has Knative revisions, a traffic split per ``canaryTrafficPercent``
and tagged revision URLs; ``RawDeployment`` has none of these (a Deployment rolls its pods), as
KServe reports. ``serve_at(name, url)`` makes every URL in ``name``'s status point at ``url``
(a real predictor on loopback, for smoke checks).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import re
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import urlsplit

GROUP, VERSION, PLURAL, KIND = "serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService"
_PATH = re.compile(rf"^/apis/{GROUP}/{VERSION}/namespaces/(?P<ns>[^/]+)/{PLURAL}(?:/(?P<name>[^/]+))?/?$")
DOMAIN = "example.com"

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

# policy(generation, gets_since_change) -> "pending" | "ready" | "failed"
Policy = Callable[[int, int], str]


def ready_after(n: int = 1) -> Policy:
    """Ready from the ``n``-th GET after each spec change on; pending before."""
    return lambda generation, gets: "ready" if gets >= n else "pending"


def never_ready(message: str = "Revision failed to become ready") -> Policy:
    """Every generation fails (``Ready`` False with ``message``)."""
    policy = lambda generation, gets: "failed"  # noqa: E731
    policy.message = message  # type: ignore[attr-defined]
    return policy


def manual() -> Policy:
    """Pending until the test calls ``FakeKube.set_ready``."""
    return lambda generation, gets: "pending"


def by_generation(table: dict[int, Policy], default: Policy | None = None) -> Policy:
    """A policy per generation (e.g. fail the canary, let the rollback come up)."""
    fallback = default or ready_after(1)

    def policy(generation: int, gets: int) -> str:
        return table.get(generation, fallback)(generation, gets)

    policy.message = next(  # type: ignore[attr-defined]
        (getattr(p, "message") for p in table.values() if hasattr(p, "message")), None
    )
    return policy


@dataclass
class Request:
    method: str
    path: str
    query: str
    content_type: str | None
    body: Any  # parsed JSON, or None

    @property
    def name(self) -> str | None:
        m = _PATH.match(self.path)
        return m and m.group("name")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class JsonPatchError(ValueError):
    pass


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise JsonPatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(target: Any, ops: list[dict]) -> Any:
    """RFC 6902: add, remove, replace, test."""
    doc = copy.deepcopy(target)
    for op in ops:
        parts = _pointer(op.get("path", ""))
        if not parts:
            raise JsonPatchError("patching the whole document is not supported")
        parent = doc
        for p in parts[:-1]:
            try:
                parent = parent[int(p)] if isinstance(parent, list) else parent[p]
            except (KeyError, IndexError, ValueError) as exc:
                raise JsonPatchError(f"path {op.get('path')!r} does not exist") from exc
        last, kind = parts[-1], op.get("op")
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(index, op["value"])
            elif kind == "remove":
                parent.pop(index)
            elif kind == "replace":
                parent[index] = op["value"]
            elif kind == "test" and parent[index] != op["value"]:
                raise JsonPatchError(f"test failed at {op['path']}")
            continue
        if kind in ("remove", "replace", "test") and last not in parent:
            raise JsonPatchError(f"path {op['path']!r} does not exist")
        if kind in ("add", "replace"):
            parent[last] = op["value"]
        elif kind == "remove":
            del parent[last]
        elif kind == "test":
            if parent[last] != op["value"]:
                raise JsonPatchError(f"test failed at {op['path']}")
        else:
            raise JsonPatchError(f"unsupported op {kind!r}")
    return doc


def status_object(code: int, reason: str, message: str, name: str | None = None) -> dict:
    """A Kubernetes ``Status`` as the API server returns for a failed request."""
    details: dict[str, Any] = {"group": GROUP, "kind": PLURAL}
    if name:
        details["name"] = name
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }


def _template(obj: dict) -> Any:
    """What makes a new Knative revision: the predictor spec without the traffic split."""
    predictor = dict((obj.get("spec") or {}).get("predictor") or {})
    predictor.pop("canaryTrafficPercent", None)
    return predictor


class FakeKube:
    """The server and its in-memory store; see the module docstring."""

    def __init__(self, default_policy: Policy | None = None):
        self.objects: dict[tuple[str, str], dict] = {}
        self.requests: list[Request] = []
        self.default_policy = default_policy or ready_after(1)
        self._policies: dict[str, Policy] = {}
        self._faults: list[tuple[str, str | None, int, str, str]] = []
        self._hooks: list[tuple[str, Callable[[], None]]] = []
        self._state: dict[tuple[str, str], dict] = {}  # controller bookkeeping per object
        self._lock = threading.RLock()
        self._rv = itertools.count(1000)
        self._urls: dict[str, str] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "FakeKube":
        handler = type("Handler", (_Handler,), {"kube": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), name="fake-kube", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None, "FakeKube is not started"
        return self._server.server_address[1]

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- scripting ----------------------------------------------------------------------------
    def policy(self, name: str, policy: Policy) -> None:
        """How the controller treats ``name`` (set before or after it exists)."""
        with self._lock:
            self._policies[name] = policy

    def set_ready(self, name: str, ready: bool = True, namespace: str | None = None, message: str = "not ready") -> None:
        """Reconcile ``name``'s newest generation to ready (or failed) right now."""
        with self._lock:
            key = self._key(name, namespace)
            self._reconcile(key, "ready" if ready else "failed", message)

    def serve_at(self, name: str, url: str) -> None:
        """Report ``url`` as ``name``'s address (status.url, status.address.url, traffic urls)."""
        with self._lock:
            self._urls[name] = url

    def fail_next(self, method: str, code: int, reason: str, message: str, name: str | None = None) -> None:
        """Answer the next ``method`` request (on ``name``, if given) with an error ``Status``."""
        with self._lock:
            self._faults.append((method.upper(), name, code, reason, message))

    def before_next(self, method: str, action: Callable[[], None]) -> None:
        """Run ``action`` just before the next ``method`` request is handled (e.g. a racing writer)."""
        with self._lock:
            self._hooks.append((method.upper(), action))

    def put(self, obj: dict, *, ready: bool = True) -> dict:
        """Store ``obj`` directly (a service deployed before the test), optionally Ready."""
        with self._lock:
            key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
            self.objects[key] = self._new_object(obj, key[0])
            self._after_spec_change(key, None)
            if ready:
                self._reconcile(key, "ready", "")
            return copy.deepcopy(self.objects[key])

    def get(self, name: str, namespace: str | None = None) -> dict:
        with self._lock:
            return copy.deepcopy(self.objects[self._key(name, namespace)])

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method in ("POST", "PATCH", "PUT", "DELETE")]

    def calls(self) -> list[tuple[str, str | None]]:
        """``(method, name)`` of every request, for asserting request sequences."""
        return [(r.method, r.name) for r in self.requests]

    def _key(self, name: str, namespace: str | None) -> tuple[str, str]:
        if namespace is not None:
            return (namespace, name)
        matches = [k for k in self.objects if k[1] == name]
        assert len(matches) == 1, f"{name!r} is in {len(matches)} namespaces; pass namespace="
        return matches[0]

    # --- the controller -----------------------------------------------------------------------
    def _new_object(self, body: dict, namespace: str) -> dict:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        meta["namespace"] = namespace
        meta.update(
            uid=str(uuid.uuid4()),
            generation=1,
            resourceVersion=str(next(self._rv)),
            creationTimestamp="2026-11-01T00:00:00Z",
        )
        obj.pop("status", None)
        return obj

    def _after_spec_change(self, key: tuple[str, str], old: dict | None) -> None:
        obj = self.objects[key]
        state = self._state.setdefault(key, {"revisions": 0, "rolled_out": None, "previous_rolled_out": None})
        state["gets"] = 0
        if old is None or _template(old) != _template(obj):
            state["revisions"] += 1
        state["latest"] = f"{key[1]}-predictor-{state['revisions']:05d}"

    def _reconcile(self, key: tuple[str, str], outcome: str, message: str) -> None:
        obj = self.objects[key]
        state = self._state[key]
        ns, name = key
        mode = ((obj.get("metadata") or {}).get("annotations") or {}).get("serving.kserve.io/deploymentMode", "Serverless")
        override = self._urls.get(name)
        status = obj.setdefault("status", {})
        pred = status.setdefault("components", {}).setdefault("predictor", {})
        status["observedGeneration"] = obj["metadata"]["generation"]
        status["deploymentMode"] = mode
        if mode == "RawDeployment":
            status["url"] = override or f"http://{name}-{ns}.{DOMAIN}"
            status["address"] = {"url": override or f"http://{name}-predictor.{ns}.svc.cluster.local"}
            pred["url"] = override or f"http://{name}-predictor-{ns}.{DOMAIN}"
            ready = outcome != "failed"
            status["conditions"] = [
                {"type": t, "status": "True" if ready else "False", **({} if ready else {"reason": "MinimumReplicasUnavailable", "message": message})}
                for t in ("PredictorReady", "Ready")
            ]
            return
        status["url"] = override or f"http://{name}.{ns}.{DOMAIN}"
        status["address"] = {"url": override or f"http://{name}.{ns}.svc.cluster.local"}
        pred["latestCreatedRevision"] = state["latest"]
        pred["url"] = override or f"http://{name}-predictor.{ns}.{DOMAIN}"
        if outcome == "failed":
            status["conditions"] = [
                {"type": "PredictorReady", "status": "False", "reason": "RevisionFailed", "message": message},
                {"type": "Ready", "status": "False", "reason": "RevisionFailed", "message": message},
            ]
        else:
            latest = state["latest"]
            pred["latestReadyRevision"] = latest
            pct = obj["spec"]["predictor"].get("canaryTrafficPercent")
            rolled_out = state["rolled_out"]
            if pct is None or rolled_out is None or rolled_out == latest:
                if rolled_out != latest:
                    state["previous_rolled_out"], state["rolled_out"] = rolled_out, latest
                traffic = [self._traffic(name, ns, latest, 100, True, "latest", override)]
            else:
                traffic = [self._traffic(name, ns, rolled_out, 100 - pct, False, "prev", override)]
                if pct:
                    traffic.append(self._traffic(name, ns, latest, pct, True, "latest", override))
            pred["latestRolledoutRevision"] = state["rolled_out"]
            if state["previous_rolled_out"]:
                pred["previousRolledoutRevision"] = state["previous_rolled_out"]
            pred["traffic"] = traffic
            status["conditions"] = [
                {"type": t, "status": "True"} for t in ("IngressReady", "PredictorReady", "Ready")
            ]

    @staticmethod
    def _traffic(name: str, ns: str, revision: str, percent: int, latest: bool, tag: str, override: str | None = None) -> dict:
        return {
            "revisionName": revision,
            "percent": percent,
            "latestRevision": latest,
            "tag": tag,
            "url": override or f"http://{tag}-{name}-predictor.{ns}.{DOMAIN}",
        }

    def _on_get(self, key: tuple[str, str]) -> None:
        state = self._state[key]
        state["gets"] += 1
        policy = self._policies.get(key[1], self.default_policy)
        outcome = policy(self.objects[key]["metadata"]["generation"], state["gets"])
        if outcome != "pending":
            self._reconcile(key, outcome, getattr(policy, "message", None) or "Revision failed to become ready")

    # --- request handling (under the lock) ----------------------------------------------------
    def handle(self, method: str, path: str, query: str, content_type: str | None, raw: bytes) -> tuple[int, dict]:
        with self._lock:
            body: Any = None
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    self.requests.append(Request(method, path, query, content_type, raw.decode(errors="replace")))
                    return 400, status_object(400, "BadRequest", "the request body is not JSON")
            self.requests.append(Request(method, path, query, content_type, body))
            m = _PATH.match(path)
            if not m:
                return 404, status_object(404, "NotFound", "the server could not find the requested resource")
            ns, name = m.group("ns"), m.group("name")
            for i, (h_method, action) in enumerate(self._hooks):
                if h_method == method:
                    del self._hooks[i]
                    action()
                    break
            for i, (f_method, f_name, code, reason, message) in enumerate(self._faults):
                if f_method == method and f_name in (None, name):
                    del self._faults[i]
                    return code, status_object(code, reason, message, name)
            handler = getattr(self, f"_{method.lower()}_{'item' if name else 'collection'}", None)
            if handler is None:
                return 405, status_object(405, "MethodNotAllowed", f"{method} is not supported on {path}")
            return handler(ns, name, content_type, body)

    def _not_found(self, name: str) -> tuple[int, dict]:
        return 404, status_object(404, "NotFound", f'{PLURAL}.{GROUP} "{name}" not found', name)

    def _get_item(self, ns, name, content_type, body):
        key = (ns, name)
        if key not in self.objects:
            return self._not_found(name)
        self._on_get(key)
        return 200, copy.deepcopy(self.objects[key])

    def _get_collection(self, ns, name, content_type, body):
        items = [copy.deepcopy(o) for (n, _), o in sorted(self.objects.items()) if n == ns]
        return 200, {"apiVersion": f"{GROUP}/{VERSION}", "kind": f"{KIND}List", "metadata": {}, "items": items}

    def _post_collection(self, ns, name, content_type, body):
        if not isinstance(body, dict) or body.get("apiVersion") != f"{GROUP}/{VERSION}" or body.get("kind") != KIND:
            return 400, status_object(400, "BadRequest", f"the body must be a {GROUP}/{VERSION} {KIND}")
        meta = body.get("metadata") or {}
        name = meta.get("name")
        if not name:
            return 422, status_object(422, "Invalid", f"{KIND}.{GROUP} is invalid: metadata.name: Required value")
        if meta.get("namespace", ns) != ns:
            return 400, status_object(400, "BadRequest", "the namespace of the object does not match the namespace on the request")
        key = (ns, name)
        if key in self.objects:
            return 409, status_object(409, "AlreadyExists", f'{PLURAL}.{GROUP} "{name}" already exists', name)
        self.objects[key] = self._new_object(body, ns)
        self._after_spec_change(key, None)
        return 201, copy.deepcopy(self.objects[key])

    def _patch_item(self, ns, name, content_type, body):
        key = (ns, name)
        if key not in self.objects:
            return self._not_found(name)
        old = self.objects[key]
        kind = (content_type or "").split(";")[0].strip().lower()
        try:
            if kind == MERGE_PATCH and isinstance(body, dict):
                new = merge_patch(old, body)
            elif kind == JSON_PATCH and isinstance(body, list):
                new = json_patch(old, body)
            elif kind in (MERGE_PATCH, JSON_PATCH):
                return 400, status_object(400, "BadRequest", f"a {kind} body of type {type(body).__name__} is not valid")
            else:
                return 415, status_object(415, "UnsupportedMediaType", f"the patch type {content_type!r} is not supported")
        except JsonPatchError as exc:
            return 422, status_object(422, "Invalid", str(exc), name)
        # status is a subresource: a patch of the object leaves it alone; so are these
        new["status"] = copy.deepcopy(old.get("status", {}))
        for field in ("name", "namespace", "uid", "creationTimestamp", "generation"):
            if field in old["metadata"]:
                new["metadata"][field] = old["metadata"][field]
        if new == old:
            return 200, copy.deepcopy(old)
        if new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = old["metadata"]["generation"] + 1
        new["metadata"]["resourceVersion"] = str(next(self._rv))
        self.objects[key] = new
        if new.get("spec") != old.get("spec"):
            self._after_spec_change(key, old)
        return 200, copy.deepcopy(new)

    def _delete_item(self, ns, name, content_type, body):
        key = (ns, name)
        if key not in self.objects:
            return self._not_found(name)
        self._state.pop(key, None)
        return 200, self.objects.pop(key)


class _Handler(BaseHTTPRequestHandler):
    kube: FakeKube

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        code, payload = self.kube.handle(self.command, parts.path, parts.query, self.headers.get("Content-Type"), raw)
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence per-request logging
        pass


@contextlib.contextmanager
def running_fake_kube(default_policy: Policy | None = None):
    """Start a ``FakeKube`` and yield ``(server, api_client)``; the client talks to it over HTTP."""
    from kubernetes import client

    server = FakeKube(default_policy).start()
    api_client = client.ApiClient(client.Configuration(host=server.host))
    try:
        yield server, api_client
    finally:
        api_client.close()
        server.stop()
