"""Pipelines and their versions on a KFP server: compiled once here, looked up by name, uploaded once.

Version reuse. ``bot_training`` is compiled here; its version name is botyard's package version
plus a hash of the compiled YAML (which includes the container image), so re-submitting the
same code finds the version by name and uploads nothing, while any change to the code, the
image or the GPU settings gets a new version. A brand-new pipeline is uploaded first (KFP gives
it a default version named after the pipeline), then the named version. Concurrent submitters
that race on an upload take the winner's copy on HTTP 409.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading

from botyard.components.base.config import GpuConfig
from botyard.pipelines.kfp.client import REQUEST_TIMEOUT_S, Connection, filter_json, status_of
from botyard.pipelines.kfp.naming import PIPELINE_FILE, PIPELINE_NAME, botyard_version

PIPELINE_DESCRIPTIONS = {
    "bot-training": "botyard: train, evaluate and register one bot's intent model",
    "fleet-training": "botyard: train many bots in one run; a bot with bad data does not stop the others",
}
SHA256_NOTE = "YAML sha256 "  # a version's description ends with "YAML sha256 <hex>" (publish compares it)

_COMPILED: dict[str, tuple[str, str]] = {}  # GPU settings (JSON) -> (YAML, version name)
_COMPILE_LOCK = threading.Lock()


def yaml_sha256(pipeline_yaml: str) -> str:
    return hashlib.sha256(pipeline_yaml.encode("utf-8")).hexdigest()


def pipeline_version_name(pipeline_yaml: str) -> str:
    return f"{botyard_version()}-{yaml_sha256(pipeline_yaml)[:12]}"


def version_description(pipeline_yaml: str, version_note: str | None = None) -> str:
    return f"botyard {version_note or botyard_version()}; {SHA256_NOTE}{yaml_sha256(pipeline_yaml)}"


def compiled_pipeline(gpu: GpuConfig | None = None) -> tuple[str, str]:
    """bot_training's YAML for ``gpu`` and its version name; compiled once per process."""
    from botyard.components.base.images import ImageConfig
    from botyard.pipelines.task_settings import StorageAccess

    gpu = gpu or GpuConfig()
    images, storage = ImageConfig.from_env(), StorageAccess.from_env()  # as ``botyard compile`` would, from the environment
    key = json.dumps([gpu.to_dict(), images.to_dict(), storage.to_dict()], sort_keys=True)
    with _COMPILE_LOCK:
        if key not in _COMPILED:
            from kfp import compiler

            from botyard.pipelines.builders import pipeline_builders

            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, f"{PIPELINE_FILE}.yaml")
                compiler.Compiler().compile(pipeline_builders()[PIPELINE_FILE](gpu, images=images, storage=storage), package_path=path)
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            _COMPILED[key] = (text, pipeline_version_name(text))
        return _COMPILED[key]


def find_pipeline(connection: Connection, name: str = PIPELINE_NAME) -> str | None:
    """The id of the pipeline named ``name`` (in the connection's namespace), or None."""
    found = connection.client.pipelines.pipeline_service_list_pipelines(
        filter=filter_json(display_name=name), page_size=2, _request_timeout=REQUEST_TIMEOUT_S, **connection.scope()
    )
    pipelines = [p for p in found.pipelines or [] if p.display_name == name]
    return pipelines[0].pipeline_id if pipelines else None


def find_version(connection: Connection, pipeline_id: str, version_name: str):
    """The pipeline's version named ``version_name`` (a ``V2beta1PipelineVersion``), or None."""
    found = connection.client.pipelines.pipeline_service_list_pipeline_versions(
        pipeline_id, filter=filter_json(display_name=version_name), page_size=2, _request_timeout=REQUEST_TIMEOUT_S
    )
    versions = [v for v in found.pipeline_versions or [] if v.display_name == version_name]
    return versions[0] if versions else None


def ensure_version(
    connection: Connection, pipeline_name: str, pipeline_yaml: str, version_name: str, *, description: str | None = None
) -> tuple[str, object, bool]:
    """``(pipeline_id, version, uploaded)``: the version named ``version_name``, uploaded from ``pipeline_yaml`` if absent.

    The pipeline itself is created on first use. ``version`` is the server's
    ``V2beta1PipelineVersion`` (its ``pipeline_version_id`` and ``description``).
    """
    import kfp_server_api

    with connection.errors(f"looking up pipeline '{pipeline_name}' version '{version_name}'"):
        pipeline_id = find_pipeline(connection, pipeline_name)
        version = find_version(connection, pipeline_id, version_name) if pipeline_id else None
    if version is not None:
        return pipeline_id, version, False
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{pipeline_name}.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(pipeline_yaml)
        if not pipeline_id:
            with connection.errors(f"uploading pipeline '{pipeline_name}'"):
                try:
                    pipeline_id = connection.client.pipeline_uploads.upload_pipeline(
                        path, name=pipeline_name, description=PIPELINE_DESCRIPTIONS.get(pipeline_name, f"botyard: {pipeline_name}"),
                        _request_timeout=REQUEST_TIMEOUT_S, **connection.scope(),
                    ).pipeline_id  # fmt: skip
                except kfp_server_api.ApiException as exc:
                    if status_of(exc) != 409 or not (pipeline_id := find_pipeline(connection, pipeline_name)):
                        raise
        with connection.errors(f"uploading pipeline version '{version_name}'"):
            try:
                version = connection.client.pipeline_uploads.upload_pipeline_version(
                    path, name=version_name, pipelineid=pipeline_id,
                    description=description or version_description(pipeline_yaml), _request_timeout=REQUEST_TIMEOUT_S,
                )  # fmt: skip
            except kfp_server_api.ApiException as exc:
                if status_of(exc) != 409 or (version := find_version(connection, pipeline_id, version_name)) is None:
                    raise
                return pipeline_id, version, False
    return pipeline_id, version, True


def ensure_pipeline_version(connection: Connection, gpu: GpuConfig | None = None) -> tuple[str, str, str, bool]:
    """``(pipeline_id, version_id, version_name, uploaded)`` of this code's bot-training version."""
    text, version_name = compiled_pipeline(gpu)
    pipeline_id, version, uploaded = ensure_version(connection, PIPELINE_NAME, text, version_name)
    return pipeline_id, version.pipeline_version_id, version_name, uploaded
