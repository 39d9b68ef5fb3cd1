"""Connecting to a KFP API server: endpoint and credentials, the health probe, one shared client each, error mapping.

An endpoint (``KfpEndpoint``) is the API's URL, the profile namespace botyard works in, and how
to authenticate (each as kfp.Client takes it)::

    token_file   a Kubernetes service-account token, re-read on every request (projected tokens
                 rotate): --token-file, default the path in $KF_PIPELINES_SA_TOKEN_PATH, else
                 /var/run/secrets/kubeflow/pipelines/token when it exists (kfp's own default)
    token        a bearer token got elsewhere (e.g. an OIDC id token): $BOTYARD_KFP_TOKEN
    cookies      the auth proxy's session cookie(s): $BOTYARD_KFP_COOKIES, e.g.
                 "authservice_session=..." (copied from a logged-in browser)

A multi-user server (Kubeflow profiles; its health check says ``multi_user``) scopes every
object to a namespace: connecting without one is a ``ConfigError`` saying to pass --namespace.

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
from dataclasses import dataclass, field
from typing import Any, Mapping, Union

from botyard.components.base.errors import BotyardError, ConfigError, SubmitError

REQUEST_TIMEOUT_S = 60
PROBE_TIMEOUT_S = 10
HEALTHZ_PATH = "/apis/v2beta1/healthz"
UI_ENDPOINT_ENV = "KF_PIPELINES_UI_ENDPOINT"  # kfp.Client's own variable for the UI's address
SA_TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"  # == kfp.client.KF_PIPELINES_SA_TOKEN_ENV
SA_TOKEN_DEFAULT_PATH = "/var/run/secrets/kubeflow/pipelines/token"  # == kfp.client.KF_PIPELINES_SA_TOKEN_PATH
TOKEN_ENV = "BOTYARD_KFP_TOKEN"
COOKIES_ENV = "BOTYARD_KFP_COOKIES"
EXAMPLE_NAMESPACE = "kubeflow-user-example-com"


@dataclass(frozen=True)
class KfpEndpoint:
    """Where the KFP API is, the namespace to work in, and the credentials to send."""

    host: str
    namespace: str | None = None
    token_file: str | None = None
    token: str | None = field(default=None, repr=False)
    cookies: str | None = field(default=None, repr=False)

    @classmethod
    def from_environment(
        cls, host: str, namespace: str | None = None, token_file: str | None = None, environ: Mapping[str, str] | None = None
    ) -> "KfpEndpoint":
        """The endpoint with credentials from the flags given and, for the rest, the standard environment."""
        environ = os.environ if environ is None else environ
        if not token_file:
            token_file = environ.get(SA_TOKEN_PATH_ENV) or (SA_TOKEN_DEFAULT_PATH if os.path.isfile(SA_TOKEN_DEFAULT_PATH) else None)
        return cls(
            host=host, namespace=namespace or None, token_file=token_file or None,
            token=(environ.get(TOKEN_ENV) or "").strip() or None, cookies=(environ.get(COOKIES_ENV) or "").strip() or None,
        )  # fmt: skip

    def bearer_token(self) -> str | None:
        """The token sent as ``Authorization: Bearer``: the given one, else the token file's content."""
        if self.token:
            return self.token
        if not self.token_file:
            return None
        try:
            with open(self.token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            raise ConfigError(
                f"--token-file {self.token_file}: cannot read the KFP token ({exc.strerror}); in a pod, project a "
                f"service-account token there (audience pipelines.kubeflow.org) or set ${SA_TOKEN_PATH_ENV}"
            ) from exc
        if not token:
            raise ConfigError(f"--token-file {self.token_file} is empty; it should hold a service-account token")
        return token

    def headers(self) -> dict:
        """The authentication headers kfp.Client will send, for the health probe."""
        headers = {}
        if token := self.bearer_token():
            headers["Authorization"] = f"Bearer {token}"
        if self.cookies:
            headers["Cookie"] = self.cookies
        return headers


Target = Union[str, KfpEndpoint]  # a bare host URL means: that host, credentials from the environment


def endpoint_of(target: Target) -> KfpEndpoint:
    if isinstance(target, KfpEndpoint):
        return target
    return KfpEndpoint.from_environment(str(target))


@dataclass
class Connection:
    """A ``kfp.Client`` for one endpoint, with what botyard learnt about the server when connecting."""

    endpoint: KfpEndpoint
    client: Any  # kfp.Client
    namespace: str | None = None  # the profile namespace every list and create is scoped to
    multi_user: bool = False

    @property
    def host(self) -> str:
        return self.endpoint.host

    def scope(self) -> dict:
        """``namespace=`` for list and upload calls, when there is one."""
        return {"namespace": self.namespace} if self.namespace else {}

    def errors(self, action: str):
        return kfp_errors(self.host, action, namespace=self.namespace)


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


def hint(status: int | None, message: str = "", namespace: str | None = None) -> str:
    if status == 401:
        return (
            " (not authenticated: pass --token-file with a service-account token (in a pod: the projected token at "
            f"${SA_TOKEN_PATH_ENV}), or set ${TOKEN_ENV} to a bearer token or ${COOKIES_ENV} to the auth proxy's "
            "session cookie, e.g. authservice_session=...)"
        )
    if status == 403:
        where = f"namespace '{namespace}'" if namespace else "this namespace"
        return (
            f" (not authorised in {where}: the identity needs edit access to that profile, e.g. as a contributor or "
            "through a RoleBinding to kubeflow-edit; check --namespace)"
        )
    if status == 400 and "namespace" in message.lower():
        return f" (a multi-user KFP: pass --namespace with your profile namespace, e.g. {EXAMPLE_NAMESPACE})"
    if status and status >= 500:
        return " (the KFP API server failed; its logs: kubectl logs -n kubeflow deploy/ml-pipeline)"
    return ""


def status_of(exc) -> int | None:
    return getattr(exc, "status", None)


@contextlib.contextmanager
def kfp_errors(host: str, action: str, *, namespace: str | None = None):
    """Translate what kfp.Client and its REST client raise into ``SubmitError``."""
    import kfp_server_api
    import urllib3

    try:
        yield
    except BotyardError:
        raise
    except kfp_server_api.ApiException as exc:
        status, message = status_of(exc), server_message(exc)
        raise SubmitError(
            f"KFP at {host}: {action} failed: HTTP {status}: {message}{hint(status, message, namespace)}", status=status
        ) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise SubmitError(f"cannot reach KFP at {host} while {action} ({reason}); check the host URL and that the API server is up") from exc
    except ValueError as exc:  # kfp.Client's own checks, e.g. two experiments with one name
        raise SubmitError(f"KFP at {host}: {action} failed: {exc}") from exc


def probe(target: Target, timeout_s: float = PROBE_TIMEOUT_S) -> dict:
    """The health check's answer; a clear ``SubmitError`` when the host is not a KFP API that answers it.

    It sends the endpoint's credentials: behind an auth proxy even the health check needs them.
    """
    endpoint = endpoint_of(target)
    host = endpoint.host
    url = normalise_host(host) + HEALTHZ_PATH
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the same direct route kfp.Client takes
    request = urllib.request.Request(url, headers=endpoint.headers())
    try:
        with opener.open(request, timeout=timeout_s) as response:
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


def make_connection(target: Target) -> Connection:
    """A new ``Connection`` (after a quick health probe); ``ConfigError`` when a multi-user server gets no namespace."""
    import kfp
    from kfp.client import ServiceAccountTokenVolumeCredentials

    endpoint = endpoint_of(target)
    health = probe(endpoint)
    multi_user = health.get("multi_user") is True
    kwargs: dict = {}
    if endpoint.token:
        kwargs["existing_token"] = endpoint.token
    elif endpoint.token_file:
        endpoint.bearer_token()  # a missing or empty file fails here, with the flag named
        kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(endpoint.token_file)  # re-read on every request
    if endpoint.cookies:
        kwargs["cookies"] = endpoint.cookies
    if endpoint.namespace:
        kwargs["namespace"] = endpoint.namespace
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "This client only works with KFP v2.0.0-beta.2 and later"
        with kfp_errors(endpoint.host, "connecting"):
            client = kfp.Client(host=normalise_host(endpoint.host), **kwargs)
    namespace = endpoint.namespace or client.get_user_namespace() or None
    if multi_user and not namespace:
        raise ConfigError(
            f"KFP at {endpoint.host} is a multi-user deployment (Kubeflow profiles): pass --namespace with the profile "
            f"namespace to work in (e.g. --namespace {EXAMPLE_NAMESPACE})"
        )
    return Connection(endpoint=endpoint, client=client, namespace=namespace, multi_user=multi_user)


_CONNECTIONS: dict = {}  # KfpEndpoint -> Connection, shared by every call in this process
_CONNECTIONS_LOCK = threading.Lock()


def connect(target: Target) -> Connection:
    """The process's shared ``Connection`` to an endpoint (made on first use).

    A trigger service submits and polls many runs: one client keeps one connection pool and
    skips the health checks a new client makes.
    """
    endpoint = endpoint_of(target)
    key = (normalise_host(endpoint.host), endpoint)
    with _CONNECTIONS_LOCK:
        connection = _CONNECTIONS.get(key)
    if connection is None:
        connection = make_connection(endpoint)
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
