"""Every pipeline botyard compiles, by file name, as a builder taking the cluster settings.

Each builder is ``build(gpu, *, images=, storage=, train_retries=)`` (``pipelines.task_settings``).
"""

from __future__ import annotations

import os

from botyard.components.base.config import GpuConfig
from botyard.components.base.images import ImageConfig
from botyard.pipelines.task_settings import StorageAccess


def pipeline_builders() -> dict:
    from botyard.pipelines.bot_training import build_bot_training
    from botyard.pipelines.fleet_training import build_fleet_training

    return {"bot_training": build_bot_training, "fleet_training": build_fleet_training}


def compile_all(
    output_dir: str, gpu: GpuConfig | None = None, *, images: "ImageConfig | None" = None, storage: "StorageAccess | None" = None
) -> list[str]:
    """Compile each pipeline to ``<output_dir>/<name>.yaml``; returns the paths written."""
    from kfp import compiler

    os.makedirs(output_dir, exist_ok=True)
    written = []
    for name, build in pipeline_builders().items():
        path = os.path.join(output_dir, f"{name}.yaml")
        compiler.Compiler().compile(build(gpu or GpuConfig(), images=images, storage=storage), package_path=path)
        written.append(path)
    return written
