"""Compiled pipelines read back and published: every YAML of a build folder as a new version of its pipeline.

CI compiles every pipeline (``botyard compile``), loads each file back with kfp (``read_compiled``:
the check that what it is about to upload is a pipeline kfp can read), and uploads each as the
version named ``--version`` of the pipeline named in the file (``pipelineInfo.name``),
creating the pipeline the first time (``publish``). Re-publishing the same files under the
same version is a no-op (the version's description records the YAML's sha256); other
content under a version name already used is refused: versions are immutable.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import yaml

from botyard.components.base.errors import ConfigError
from botyard.pipelines.kfp.client import Target, connect
from botyard.pipelines.kfp.pipeline_versions import SHA256_NOTE, ensure_version, find_pipeline, version_description, yaml_sha256

VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")
CREATED, UPLOADED, UNCHANGED = "created pipeline and version", "uploaded version", "unchanged (already published)"
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class CompiledPipeline:
    name: str  # the pipeline's name, pipelineInfo.name (e.g. bot-training)
    path: str
    text: str
    sha256: str
    inputs: list[str] = field(default_factory=list)  # the pipeline's parameter names, as kfp read them


@dataclass
class Published:
    pipeline: str
    version: str
    pipeline_id: str
    version_id: str
    action: str  # CREATED, UPLOADED or UNCHANGED
    path: str


def read_compiled(folder: str) -> list[CompiledPipeline]:
    """Every ``*.yaml`` under ``folder`` (sorted), each loaded back with kfp; ``ConfigError`` naming a bad file."""
    from kfp import components

    if not os.path.isdir(folder):
        raise ConfigError(f"no compiled pipelines: {folder} is not a folder; run `botyard compile --output-dir {folder}` first")
    paths = sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith((".yaml", ".yml")))
    if not paths:
        raise ConfigError(f"no compiled pipelines (*.yaml) in {folder}; run `botyard compile --output-dir {folder}` first")
    found = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            spec = next(iter(yaml.load_all(text, Loader=_YAML_LOADER)), None)
            name = spec["pipelineInfo"]["name"]
            loaded = components.load_component_from_text(text)
        except Exception as exc:  # noqa: BLE001 - any reason a file is not a pipeline is the same answer
            raise ConfigError(f"{path} is not a compiled KFP pipeline kfp can load ({type(exc).__name__}: {exc})") from exc
        inputs = sorted((loaded.component_spec.inputs or {}).keys())
        found.append(CompiledPipeline(name=str(name), path=path, text=text, sha256=yaml_sha256(text), inputs=inputs))
    names = [p.name for p in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{folder} holds more than one file for pipeline(s) {duplicates}: publish one file per pipeline")
    return found


def check_version(version: str) -> str:
    if not isinstance(version, str) or not VERSION_PATTERN.match(version):
        raise ConfigError(
            f"--version {version!r} is not a valid version name: use 1-100 letters, digits and '._+-', "
            "starting with a letter or digit (e.g. 0.2.0 or 0.2.0-3f9c2e1)"
        )
    return version


def publish(folder: str, host: Target, version: str) -> list[Published]:
    """Upload every compiled pipeline under ``folder`` as version ``version`` of its pipeline on ``host``."""
    check_version(version)
    compiled = read_compiled(folder)
    connection = connect(host)
    done = []
    for pipeline in compiled:
        existed = _pipeline_exists(connection, pipeline.name)
        pipeline_id, found, uploaded = ensure_version(
            connection, pipeline.name, pipeline.text, version, description=version_description(pipeline.text, version)
        )
        if not uploaded and not (found.description or "").endswith(SHA256_NOTE + pipeline.sha256):
            raise ConfigError(
                f"pipeline '{pipeline.name}' on {connection.host} already has a version '{version}' with other content "
                f"(its description: {found.description!r}; {pipeline.path} has sha256 {pipeline.sha256}); "
                "versions are immutable: publish under a new --version"
            )
        action = UNCHANGED if not uploaded else (UPLOADED if existed else CREATED)
        done.append(Published(pipeline.name, version, pipeline_id, found.pipeline_version_id, action, pipeline.path))
    return done


def _pipeline_exists(connection, name: str) -> bool:
    with connection.errors(f"looking up pipeline '{name}'"):
        return find_pipeline(connection, name) is not None
