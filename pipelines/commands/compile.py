"""``botyard compile``: write every pipeline's YAML for a Kubeflow cluster."""

from __future__ import annotations

import argparse

from botyard.components.base.config import GpuConfig
from botyard.pipelines.commands.options import key_value


def gpu_config(args: argparse.Namespace) -> GpuConfig:
    if args.no_gpu:
        return GpuConfig(enabled=False)
    defaults = GpuConfig()
    selector = dict(key_value(s, "--gpu-node-selector") for s in args.gpu_node_selector) if args.gpu_node_selector else defaults.node_selector
    tolerations = tuple({"key": k, "operator": "Exists", "effect": "NoSchedule"} for k in args.gpu_toleration) if args.gpu_toleration else defaults.tolerations
    return GpuConfig(
        accelerator_type=args.accelerator_type, accelerator_limit=args.gpus, node_selector=selector, tolerations=tolerations
    )


def handle(args: argparse.Namespace) -> int:
    from botyard.pipelines.builders import compile_all

    for path in compile_all(args.output_dir, gpu_config(args)):
        print(path)
    if args.check:
        from botyard.pipelines.kfp.publish import read_compiled

        for pipeline in read_compiled(args.output_dir):
            print(f"loaded back with kfp: {pipeline.path} (pipeline {pipeline.name}, {len(pipeline.inputs)} inputs, sha256 {pipeline.sha256[:12]})")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compile",
        help="compile every pipeline to KFP YAML (upload it in the Kubeflow dashboard or from CI)",
        description="Compile every botyard pipeline to <output-dir>/<name>.yaml. The train step requests a GPU, "
        "a node selector and a toleration for GPU nodes unless --no-gpu is given. The container image is "
        "taken from the BOTYARD_IMAGE environment variable (default ghcr.io/botyard/botyard:0.1.0).",
    )
    p.add_argument("--output-dir", default="build/pipelines", metavar="DIR", help="folder for the YAML files (default: build/pipelines)")
    p.add_argument("--no-gpu", action="store_true", help="compile for a CPU-only cluster: no GPU request, selector or toleration")
    p.add_argument("--accelerator-type", default=GpuConfig().accelerator_type, help="accelerator resource (default: nvidia.com/gpu)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs for the train step (default: 1)")
    p.add_argument("--gpu-node-selector", action="append", metavar="KEY=VALUE", help="node selector for the train step (repeatable; default nvidia.com/gpu.present=true)")
    p.add_argument("--gpu-toleration", action="append", metavar="KEY", help="taint key the train step tolerates (Exists/NoSchedule; repeatable; default nvidia.com/gpu)")
    p.add_argument("--check", action="store_true", help="load every file in --output-dir back with kfp afterwards (what CI runs)")
    p.set_defaults(handler=handle)
