"""Reading an InferenceService object as the API returns it: readiness, URLs, what it serves.

Readiness follows KServe's own client (``KServeClient.is_isvc_ready``): condition ``Ready`` is
``True`` *for the generation we wrote* (``status.observedGeneration``), and the predictor's
``latestReadyRevision`` has caught up with ``latestCreatedRevision``, so a stale status of
the previous revision is never taken for the new one.
"""

from __future__ import annotations


def condition(obj: dict, kind: str) -> dict | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def predictor_status(obj: dict) -> dict:
    return ((obj.get("status") or {}).get("components") or {}).get("predictor") or {}


def is_ready(obj: dict, generation: int | None = None) -> bool:
    """Ready for ``generation`` (default: the object's own) with its newest revision serving."""
    cond = condition(obj, "Ready")
    if not cond or str(cond.get("status", "")).lower() != "true":
        return False
    wanted = generation if generation is not None else (obj.get("metadata") or {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    if wanted is not None and (observed is None or observed < wanted):
        return False
    pred = predictor_status(obj)
    created, ready = pred.get("latestCreatedRevision"), pred.get("latestReadyRevision")
    return not (created and created != ready)


def status_summary(obj: dict) -> str:
    """One line for an error message: the Ready condition, generations, revisions."""
    cond = condition(obj, "Ready")
    pred = predictor_status(obj)
    gen = (obj.get("metadata") or {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    parts = [
        f"Ready={cond.get('status')}" if cond else "no Ready condition yet",
        f"generation {gen}, observed {observed}",
    ]
    if cond and (cond.get("reason") or cond.get("message")):
        parts.append(f"{cond.get('reason') or ''}: {cond.get('message') or ''}".strip(": "))
    if pred.get("latestCreatedRevision"):
        parts.append(f"latest created revision {pred['latestCreatedRevision']}, ready {pred.get('latestReadyRevision')}")
    return "; ".join(parts)


def url(obj: dict) -> str | None:
    """``status.url``: the service's address."""
    return (obj.get("status") or {}).get("url")


def internal_url(obj: dict) -> str | None:
    """``status.address.url``: the cluster-local address a pod in the cluster can reach; else ``status.url``."""
    address = ((obj.get("status") or {}).get("address") or {}).get("url")
    return address or url(obj)


def canary_url(obj: dict) -> str | None:
    """The tagged URL of the newest revision where tag routing gives one, else the service URL."""
    for entry in predictor_status(obj).get("traffic") or []:
        if entry.get("latestRevision") and entry.get("url"):
            return entry["url"]
    return url(obj)


def storage_uri(obj: dict) -> str | None:
    return (((obj.get("spec") or {}).get("predictor") or {}).get("model") or {}).get("storageUri")


def canary_percent(obj: dict) -> int | None:
    return ((obj.get("spec") or {}).get("predictor") or {}).get("canaryTrafficPercent")


def annotations(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("annotations") or {}


def labels(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("labels") or {}
