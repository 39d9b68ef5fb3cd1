"""A local stand-in for the KFP v2 REST API (``/apis/v2beta1``), enough for what kfp.Client 2.17 calls.

The tests and the submit benchmark run against it; it ships in the package so a plain
``pip install`` can run the benchmark.

It records every request (``FakeKfp.requests``), keeps pipelines, versions, experiments, runs
and recurring runs in memory, answers like the real API server (grpc-gateway JSON, snake_case
fields, ``{"error", "code", "message"}`` bodies on errors, HTTP 409 on duplicate names), and can
be told to fail a route (``fail``) or move a run along (``set_run``). Binds 127.0.0.1 on a
free port; use it as a context manager.

Implemented: healthz; pipelines upload (multipart) / upload_version / list (filter) / get;
pipeline versions list (filter); experiments create / list (filter) / get; runs create / get /
list (experiment_id, sort_by, page_size, page_token, filter); recurring runs create / list /
get / enable / disable / delete.

Multi-user mode (``FakeKfp(multi_user=True)``) behaves as a Kubeflow profile-aware API server:

* healthz says ``"multi_user": true`` and needs no identity; every other call needs one: a
  bearer token (``Authorization: Bearer <token>``, as a service-account token is sent) or the
  auth proxy's session cookie (``Cookie: authservice_session=<value>``), registered with
  ``add_identity``. None -> 401, an unknown token or cookie -> 401 (gRPC code 16).
* listing experiments or pipelines without a namespace (or with an empty one) -> 400 with the
  real body shape (``"Invalid input error: ... requires filtering by namespace."``, code 3,
  ``details`` of ``@type`` ``type.googleapis.com/api.Error``); listing runs or recurring runs
  needs a namespace or an experiment; creating an experiment needs a namespace.
* a namespace the identity has no access to -> 403 (code 7), for lists, creates and gets of
  namespaced objects; pipeline versions are checked against their pipeline's namespace (the
  v2beta1 ListPipelineVersions call carries no namespace of its own).
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import yaml

API = "/apis/v2beta1"
EPOCH = "1970-01-01T00:00:00Z"
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader when libyaml is there: uploads parse fast
GRPC_CODES = {400: 3, 404: 5, 409: 6, 401: 16, 403: 7, 500: 13, 503: 14}


@dataclass
class Request:
    method: str
    path: str
    query: dict  # name -> first value
    body: object = None  # parsed JSON, or None
    files: dict = field(default_factory=dict)  # multipart file parts: name -> (filename, bytes)
    headers: dict = field(default_factory=dict)  # names in Title-Case


@dataclass
class _Failure:
    method: str
    pattern: re.Pattern
    status: int
    message: str
    times: int | None  # None: every time


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


@dataclass
class Identity:
    user: str  # e.g. "system:serviceaccount:team-a:default-editor" or "alice@example.com"
    namespaces: frozenset  # profile namespaces it may read and write


SESSION_COOKIE = "authservice_session"  # the Kubeflow auth proxy's session cookie
NO_IDENTITY = "Request header error: there is no user identity header."


class FakeKfp:
    def __init__(self, multi_user: bool = False):
        self.multi_user = multi_user
        self.tokens: dict[str, Identity] = {}  # bearer token -> identity (multi-user mode)
        self.sessions: dict[str, Identity] = {}  # auth proxy session cookie -> identity
        self._who: Identity | None = None  # the identity of the request being handled (under _lock)
        self.requests: list[Request] = []
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}  # version id -> version (with "pipeline_spec")
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()
        self._clock = itertools.count(1)
        self._t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.record = True  # False: keep no request log (benchmarks)
        self.crashes: list[Exception] = []  # exceptions inside the fake itself (tests assert it stays empty)

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> "FakeKfp":
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-kfp", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeKfp":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- test controls ----------------------------------------------------------------------------
    def fail(self, method: str, path_regex: str, status: int = 500, message: str = "internal error", times: int | None = None) -> None:
        """Answer ``method`` requests whose path matches ``path_regex`` with ``status`` (``times`` times, or always)."""
        self._failures.append(_Failure(method.upper(), re.compile(path_regex), status, message, times))

    def set_run(self, run_id: str, state: str, *, finished: bool = True, error: str | None = None, seconds: int = 90) -> None:
        with self._lock:
            run = self.runs[run_id]
            run["state"] = state
            if finished:
                created = datetime.strptime(run["created_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
                run["finished_at"] = _iso(created + timedelta(seconds=seconds))
            if error:
                run["error"] = {"code": 2, "message": error}

    def add_identity(self, user: str, namespaces, *, token: str | None = None, session: str | None = None) -> None:
        """Let ``token`` (a bearer token) or ``session`` (an auth-proxy cookie) act as ``user`` in ``namespaces``."""
        identity = Identity(user, frozenset(namespaces))
        if token:
            self.tokens[token] = identity
        if session:
            self.sessions[session] = identity

    def calls(self, method: str, path: str) -> list[Request]:
        """Recorded requests with this method whose path equals ``path`` (relative to /apis/v2beta1)."""
        return [r for r in self.requests if r.method == method and r.path == API + path]

    # --- helpers ----------------------------------------------------------------------------------
    def _now(self) -> str:
        return _iso(self._t0 + timedelta(seconds=next(self._clock)))

    def _check_failure(self, method: str, path: str) -> None:
        for failure in self._failures:
            if failure.method == method and failure.pattern.search(path) and failure.times != 0:
                if failure.times is not None:
                    failure.times -= 1
                raise ApiError(failure.status, failure.message)

    # --- routes -----------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict, body, files, headers=None) -> tuple[int, object]:
        self._check_failure(method, path)
        q, b = query, body
        rel = path[len(API):] if path.startswith(API) else ""
        who = self._identity(headers or {}) if self.multi_user and rel != "/healthz" else None
        routes = [  # (method, path under /apis/v2beta1, handler(ids)); first match wins
            ("GET", r"/healthz", lambda ids: {"multi_user": self.multi_user, "pipeline_store": "database"}),
            ("POST", r"/pipelines/upload", lambda ids: self._upload_pipeline(q, files)),
            ("POST", r"/pipelines/upload_version", lambda ids: self._upload_version(q, files)),
            ("GET", r"/pipelines", lambda ids: self._page("pipelines", self._listed(self.pipelines.values(), q, "ListPipelines"), q)),
            ("GET", r"/pipelines/(?P<id>[^/]+)/versions", lambda ids: self._list_versions(ids["id"], q)),
            ("GET", r"/pipelines/(?P<id>[^/]+)", lambda ids: self._get_owned(self.pipelines, ids["id"], "pipeline")),
            ("POST", r"/experiments", lambda ids: self._create_experiment(b)),
            ("GET", r"/experiments", lambda ids: self._page("experiments", self._listed(self.experiments.values(), q, "ListExperiment"), q)),
            ("GET", r"/experiments/(?P<id>[^/]+)", lambda ids: self._get_owned(self.experiments, ids["id"], "experiment")),
            ("POST", r"/runs", lambda ids: self._create_run(b)),
            ("GET", r"/runs", lambda ids: self._list_runs(q)),
            ("GET", r"/runs/(?P<id>[^/:]+)", lambda ids: self._get_owned(self.runs, ids["id"], "run")),
            ("POST", r"/recurringruns", lambda ids: self._create_recurring(b)),
            ("GET", r"/recurringruns", lambda ids: self._list_recurring(q)),
            ("GET", r"/recurringruns/(?P<id>[^/:]+)", lambda ids: self._get_owned(self.recurring_runs, ids["id"], "recurring run")),
            ("DELETE", r"/recurringruns/(?P<id>[^/:]+)", lambda ids: self._delete_recurring(ids["id"])),
            ("POST", r"/recurringruns/(?P<id>[^/:]+):enable", lambda ids: self._set_mode(ids["id"], True)),
            ("POST", r"/recurringruns/(?P<id>[^/:]+):disable", lambda ids: self._set_mode(ids["id"], False)),
        ]
        for route_method, pattern, fn in routes:
            m = re.fullmatch(pattern, rel)
            if route_method == method and m:
                with self._lock:
                    self._who = who  # the caller's identity, read by _authorize under the same lock
                    return 200, fn(m.groupdict())
        raise ApiError(404, f"no route for {method} {path}")

    # --- multi-user mode ------------------------------------------------------------------------
    def _identity(self, headers) -> Identity:
        auth = headers.get("Authorization") or ""
        cookies = {}
        for part in (headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name:
                cookies[name] = value
        if auth:
            scheme, _, token = auth.partition(" ")
            identity = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
            if identity is None:
                raise ApiError(401, "Unauthenticated: Failed to authenticate token review: the token is invalid or has expired")
            return identity
        if SESSION_COOKIE in cookies:
            identity = self.sessions.get(cookies[SESSION_COOKIE])
            if identity is None:
                raise ApiError(401, "Unauthenticated: the auth session is invalid or has expired; log in again")
            return identity
        raise ApiError(401, f"Unauthenticated: {NO_IDENTITY}")

    def _authorize(self, namespace: str | None, verb: str, resource: str) -> None:
        who = self._who
        if who is None or not namespace:  # single-user mode, or a shared (namespace-less) object
            return
        if namespace not in who.namespaces:
            raise ApiError(403, (
                f"PermissionDenied: User '{who.user}' is not authorized with reason:  (request: &ResourceAttributes"
                f"{{Namespace:{namespace},Verb:{verb},Group:pipelines.kubeflow.org,Version:v1beta1,Resource:{resource}}})"
            ))  # fmt: skip

    def _listed(self, items, query: dict, call: str) -> list:
        """The items in the query's namespace; multi-user mode refuses a list without one (as the real server)."""
        ns = query.get("namespace") or ""
        if self.multi_user:
            if not ns:
                what = "experiment" if call == "ListExperiment" else "pipeline"
                raise ApiError(400, f"Invalid input error: Invalid resource references for {what}. {call} requires filtering by namespace.")
            self._authorize(ns, "list", "experiments" if call == "ListExperiment" else "pipelines")
        return [i for i in items if (i.get("namespace") or "") == ns] if ns else list(items)

    def _get_owned(self, table: dict, key: str, what: str) -> dict:
        item = self._get(table, key, what)
        self._authorize(item.get("namespace"), "get", what.replace(" ", "") + "s")
        return item

    def _scoped(self, items: list, query: dict, call: str, resource: str) -> list:
        """Runs or recurring runs filtered by experiment or namespace; multi-user mode needs one of them."""
        if query.get("experiment_id"):
            experiment = self._get_owned(self.experiments, query["experiment_id"], "experiment")
            return [r for r in items if r.get("experiment_id") == experiment["experiment_id"]]
        ns = query.get("namespace") or ""
        if self.multi_user:
            if not ns:
                raise ApiError(400, f"Invalid input error: {call} must filter by resource reference (a namespace or an experiment) in multi-user mode.")
            self._authorize(ns, "list", resource)
        return [r for r in items if (r.get("namespace") or "") == ns] if ns else items

    def _delete_recurring(self, rrid: str) -> dict:
        self._get_owned(self.recurring_runs, rrid, "recurring run")
        del self.recurring_runs[rrid]
        return {}

    def _set_mode(self, rrid: str, enabled: bool) -> dict:
        rr = self._get_owned(self.recurring_runs, rrid, "recurring run")
        rr.update(mode="ENABLE" if enabled else "DISABLE", status="ENABLED" if enabled else "DISABLED", updated_at=self._now())
        return {}

    @staticmethod
    def _get(table: dict, key: str, what: str) -> dict:
        if key not in table:
            raise ApiError(404, f"{what} {key} not found")
        return table[key]

    def _page(self, key: str, items: list, query: dict, sort: bool = True) -> dict:
        items = _filtered(items, query.get("filter"))
        sort_by = (query.get("sort_by") or "").split()
        if sort and sort_by:
            items = sorted(items, key=lambda i: str(i.get(sort_by[0], "")), reverse=len(sort_by) > 1 and sort_by[1] == "desc")
        start = int(query.get("page_token") or 0)
        size = int(query.get("page_size") or 10)
        page = items[start : start + size]
        out = {key: page, "total_size": len(items)} if page else {"total_size": len(items)}
        if start + size < len(items):
            out["next_page_token"] = str(start + size)
        return out

    def _upload_pipeline(self, query: dict, files: dict) -> dict:
        name = query.get("name") or query.get("display_name")
        if not name or "uploadfile" not in files:
            raise ApiError(400, "upload needs a name and an uploadfile")
        ns = query.get("namespace") or ""
        self._authorize(ns, "create", "pipelines")
        if any(p["display_name"] == name and p.get("namespace", "") == ns for p in self.pipelines.values()):
            raise ApiError(409, f"Failed to create a pipeline: already exists: pipeline named {name!r}")
        pid = str(uuid.uuid4())
        now = self._now()
        self.pipelines[pid] = {"pipeline_id": pid, "display_name": name, "name": name, "description": query.get("description", ""),
                               "created_at": now, "namespace": ns}
        self._add_version(pid, name, files, query)  # the real server's default version, named after the pipeline
        return self.pipelines[pid]

    def _upload_version(self, query: dict, files: dict) -> dict:
        pid, name = query.get("pipelineid"), query.get("name") or query.get("display_name")
        pipeline = self._get(self.pipelines, pid or "", "pipeline")
        self._authorize(pipeline.get("namespace"), "create", "pipelineversions")
        if any(v["pipeline_id"] == pid and v["display_name"] == name for v in self.versions.values()):
            raise ApiError(409, f"Failed to create a pipeline version: already exists: version named {name!r}")
        return self._strip(self._add_version(pid, name, files, query))

    def _add_version(self, pid: str, name: str, files: dict, query: dict) -> dict:
        filename, content = files["uploadfile"]
        if not filename.endswith((".yaml", ".yml", ".json", ".zip", ".tar.gz", ".tgz")):
            raise ApiError(400, f"unexpected pipeline file {filename!r}")
        vid = str(uuid.uuid4())
        self.versions[vid] = {
            "pipeline_id": pid, "pipeline_version_id": vid, "display_name": name, "name": name,
            "description": query.get("description", ""), "created_at": self._now(),
            **dict(zip(("pipeline_spec", "platform_spec"), yaml.load_all(content.decode("utf-8"), Loader=_YAML_LOADER))),
        }
        return self.versions[vid]

    @staticmethod
    def _strip(version: dict) -> dict:
        return {k: v for k, v in version.items() if k not in ("pipeline_spec", "platform_spec")}

    def _list_versions(self, pid: str, query: dict) -> dict:
        pipeline = self._get(self.pipelines, pid, "pipeline")
        self._authorize(pipeline.get("namespace"), "list", "pipelineversions")
        items = [self._strip(v) for v in self.versions.values() if v["pipeline_id"] == pid]
        return self._page("pipeline_versions", items, query)

    def _create_experiment(self, body: dict) -> dict:
        name = (body or {}).get("display_name")
        if not name:
            raise ApiError(400, "experiment needs a display_name")
        ns = body.get("namespace") or ""
        if self.multi_user and not ns:
            raise ApiError(400, "Invalid input error: Invalid resource references for experiment. Experiment namespace is required in multi-user mode.")
        self._authorize(ns, "create", "experiments")
        if any(e["display_name"] == name and (e.get("namespace") or "") == ns for e in self.experiments.values()):
            raise ApiError(409, f"Failed to create a new experiment: already exists: experiment named {name!r}")
        eid = str(uuid.uuid4())
        self.experiments[eid] = {
            "experiment_id": eid, "display_name": name, "description": body.get("description", ""),
            "namespace": ns, "created_at": self._now(), "storage_state": "AVAILABLE",
        }
        return self.experiments[eid]

    def _check_version_ref(self, body: dict) -> None:
        ref = body.get("pipeline_version_reference") or {}
        version = self.versions.get(ref.get("pipeline_version_id") or "")
        if version is None or version["pipeline_id"] != ref.get("pipeline_id"):
            raise ApiError(404, f"pipeline version {ref} not found")
        if body.get("experiment_id") and body["experiment_id"] not in self.experiments:
            raise ApiError(404, f"experiment {body['experiment_id']} not found")
        if self.multi_user and not body.get("experiment_id"):
            raise ApiError(400, "Invalid input error: a run in multi-user mode needs an experiment (its namespace)")
        experiment = self.experiments.get(body.get("experiment_id") or "") or {}
        self._authorize(experiment.get("namespace"), "create", "runs")
        body["namespace"] = experiment.get("namespace", "")
        spec_inputs = version["pipeline_spec"].get("root", {}).get("inputDefinitions", {}).get("parameters", {})
        unknown = sorted(set((body.get("runtime_config") or {}).get("parameters") or {}) - set(spec_inputs))
        if unknown:
            raise ApiError(400, f"unknown runtime parameters {unknown}")

    def _create_run(self, body: dict) -> dict:
        body = dict(body or {})
        if not body.get("display_name"):
            raise ApiError(400, "run needs a display_name")
        self._check_version_ref(body)
        rid = str(uuid.uuid4())
        now = self._now()
        body.update(run_id=rid, state="PENDING", created_at=now, scheduled_at=now, finished_at=EPOCH, storage_state="AVAILABLE")
        self.runs[rid] = body
        return body

    def _list_runs(self, query: dict) -> dict:
        return self._page("runs", self._scoped(list(self.runs.values()), query, "ListRuns", "runs"), query)

    def _create_recurring(self, body: dict) -> dict:
        body = dict(body or {})
        if not body.get("display_name") or not body.get("trigger"):
            raise ApiError(400, "a recurring run needs a display_name and a trigger")
        self._check_version_ref(body)
        rrid = str(uuid.uuid4())
        now = self._now()
        body.update(
            recurring_run_id=rrid, created_at=now, updated_at=now,
            status="ENABLED" if body.get("mode", "ENABLE") == "ENABLE" else "DISABLED",
            max_concurrency=str(body.get("max_concurrency", "")),  # int64: a string in proto JSON
        )
        self.recurring_runs[rrid] = body
        return body

    def _list_recurring(self, query: dict) -> dict:
        items = self._scoped(list(self.recurring_runs.values()), query, "ListRecurringRuns", "recurringruns")
        return self._page("recurringRuns", items, query)


def error_body(status: int, message: str) -> dict:
    """The grpc-gateway error body the real API server sends."""
    return {
        "error": message, "code": GRPC_CODES.get(status, 2), "message": message,
        "details": [{"@type": "type.googleapis.com/api.Error", "error_message": message, "error_details": message}],
    }  # fmt: skip


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _filtered(items: list, filter_json: str | None) -> list:
    if not filter_json:
        return list(items)
    try:
        predicates = json.loads(filter_json).get("predicates") or []
    except (ValueError, AttributeError) as exc:
        raise ApiError(400, f"invalid filter: {exc}") from exc
    for p in predicates:
        op = p.get("operation") or p.get("op")
        value = p.get("stringValue", p.get("string_value"))
        key = p.get("key")
        if op in (1, "EQUALS"):
            items = [i for i in items if str(i.get(key)) == str(value)]
        elif op in (9, "IS_SUBSTRING"):
            items = [i for i in items if str(value) in str(i.get(key, ""))]
        else:
            raise ApiError(400, f"filter operation {op!r} is not supported by the fake")
    return items


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real API server
    wbufsize = 1 << 16  # headers and body leave in one write: no 40 ms Nagle / delayed-ACK stall per response
    server_fake: FakeKfp

    def log_message(self, *args) -> None:  # quiet
        pass

    def _dispatch(self) -> None:
        fake = self.server_fake
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body, files = None, {}
        ctype = self.headers.get("Content-Type", "")
        if raw and ctype.startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw
            )
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                files[name] = (part.get_filename() or "", part.get_payload(decode=True))
        elif raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        if fake.record:
            fake.requests.append(Request(self.command, parts.path, query, body, files, {k.title(): v for k, v in self.headers.items()}))
        try:
            status, payload = fake.handle(self.command, parts.path, query, body, files, self.headers)
        except ApiError as exc:
            status, payload = exc.status, error_body(exc.status, exc.message)
        except Exception as exc:  # a bug in the fake: answer 500 (and keep it) rather than drop the connection
            fake.crashes.append(exc)
            status, payload = 500, {"error": repr(exc), "code": 13, "message": f"fake KFP crashed: {exc!r}", "details": []}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_PATCH = _dispatch
