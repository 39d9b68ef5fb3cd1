"""The Kubernetes API calls deploy makes on InferenceServices, and nothing else.

``InferenceServiceApi`` reads, creates and patches InferenceServices in one namespace.
``VERBS`` lists the RBAC verbs those calls need; ``manifests/base/rbac.yaml`` grants exactly
these (``tests/test_manifests.py`` compares the two, and ``tests/test_deploy_cluster.py``
checks that the requests sent never need another). API and kubeconfig errors become
``DeployError`` naming the bot, the InferenceService, the namespace and the HTTP status.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

from botyard.components.base.errors import DeployError
from botyard.components.deploy.inference_service import API_VERSION, GROUP, PLURAL

REQUEST_TIMEOUT_S = 30  # per API call; a rollout as a whole is bounded by its ready timeout
VERBS = ("get", "create", "patch")  # the RBAC verbs of read, create and patch below

_HINTS = {
    401: "check the credentials of the kubeconfig or service account",
    403: "the service account needs " + ", ".join(VERBS[:-1]) + f" and {VERBS[-1]} on inferenceservices."
    + GROUP + " in namespace '{ns}' (a Role and RoleBinding)",
    404: "is KServe installed (the InferenceService CRD) and does namespace '{ns}' exist?",
    422: "the API server rejected the manifest",
}


def api_error_message(exc: Exception) -> str:
    """The ``message`` of a Kubernetes ``Status`` body, else the raw body, else the reason."""
    body = getattr(exc, "body", None)
    if body:
        try:
            return json.loads(body).get("message") or str(body)
        except (ValueError, AttributeError):
            return body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    return getattr(exc, "reason", None) or str(exc)


def load_api_client():
    """An ``ApiClient`` from the pod's service account in a cluster, else ``$KUBECONFIG`` / ``~/.kube/config``."""
    from kubernetes import client
    from kubernetes import config as kube_config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    try:
        kube_config.load_incluster_config(client_configuration=configuration)
    except ConfigException as incluster_exc:
        path = os.environ.get("KUBECONFIG") or "~/.kube/config"
        try:
            kube_config.load_kube_config(config_file=path, client_configuration=configuration, persist_config=False)
        except (ConfigException, OSError) as exc:
            raise DeployError(
                f"no Kubernetes credentials: not running in a cluster ({incluster_exc}) and "
                f"no usable kubeconfig at {path} ({exc}); set KUBECONFIG or run the step in the cluster"
            ) from exc
    return client.ApiClient(configuration)


class InferenceServiceApi:
    """get / create / patch of InferenceServices in ``namespace``.

    ``api_client`` is injected by tests and by callers that already hold one; without it the
    client is configured on first use (``load_api_client``).
    """

    def __init__(self, namespace: str, api_client: Any | None = None):
        self.namespace = namespace
        self._api_client = api_client
        self._custom = None

    @property
    def api(self):
        """``kubernetes.client.CustomObjectsApi``, built on first use."""
        if self._custom is None:
            from kubernetes import client

            self._custom = client.CustomObjectsApi(self._api_client or load_api_client())
        return self._custom

    def _request(self, verb: str, name: str, bot: str, fn: Callable, *args, allow: tuple[int, ...] = ()) -> dict | None:
        """Call the API; ``None`` for an HTTP status in ``allow``, ``DeployError`` for any other failure."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        ns = self.namespace
        where = f"InferenceService '{name}' in namespace '{ns}' (bot '{bot}')"
        try:
            return fn(GROUP, API_VERSION, ns, PLURAL, *args, _request_timeout=REQUEST_TIMEOUT_S)
        except ApiException as exc:
            if exc.status in allow:
                return None
            hint = _HINTS.get(exc.status, "")
            raise DeployError(
                f"cannot {verb} {where}: HTTP {exc.status} {exc.reason}: {api_error_message(exc)}"
                + (f"; {hint.format(ns=ns)}" if hint else "")
            ) from exc
        except HTTPError as exc:
            host = self.api.api_client.configuration.host
            raise DeployError(f"cannot {verb} {where}: the Kubernetes API at {host} is unreachable ({exc})") from exc

    def get(self, name: str, bot: str) -> dict | None:
        """The InferenceService, or ``None`` when there is none (404)."""
        return self._request("read", name, bot, self.api.get_namespaced_custom_object, name, allow=(404,))

    def create(self, body: dict, bot: str, allow: tuple[int, ...] = ()) -> dict | None:
        return self._request("create", body["metadata"]["name"], bot, self.api.create_namespaced_custom_object, body, allow=allow)

    def patch(self, name: str, bot: str, patch: dict) -> dict:
        # kubernetes 30.1 sends every custom-object PATCH as application/merge-patch+json
        # (RFC 7386), where a None value deletes the field
        return self._request("patch", name, bot, self.api.patch_namespaced_custom_object, name, patch)
