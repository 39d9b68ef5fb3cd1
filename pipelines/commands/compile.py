"""``botyard compile``: write every pipeline's YAML for a Kubeflow cluster."""

from __future__ import annotations

import argparse
import os
import sys

from botyard.components.base.config import GpuConfig, naming_flags
from botyard.components.base.errors import ConfigError
from botyard.pipelines.commands.options import key_value


def gpu_config(args: argparse.Namespace) -> GpuConfig:
    if args.no_gpu:
        return GpuConfig(enabled=False)
    defaults = GpuConfig()
    selector = dict(key_value(s, "--gpu-node-selector") for s in args.gpu_node_selector) if args.gpu_node_selector else defaults.node_selector
    tolerations = tuple({"key": k, "operator": "Exists", "effect": "NoSchedule"} for k in args.gpu_toleration) if args.gpu_toleration else defaults.tolerations
    flags = {"accelerator_type": "--accelerator-type", "accelerator_limit": "--gpus", "node_selector": "--gpu-node-selector",
             "tolerations": "--gpu-toleration"}
    with naming_flags(GpuConfig, flags):
        return GpuConfig(
            accelerator_type=args.accelerator_type, accelerator_limit=args.gpus, node_selector=selector, tolerations=tolerations
        )


def image_config(args: argparse.Namespace):
    from botyard.components.base.images import ImageConfig

    from botyard.components.base.images import REGISTRY_ENV, TAG_ENV

    flags = {"registry": "--registry" if args.registry else f"${REGISTRY_ENV}", "tag": "--tag" if args.tag else f"${TAG_ENV}"}
    with naming_flags(ImageConfig, flags):
        return ImageConfig.from_env(args.registry, args.tag)


def storage_access(args: argparse.Namespace):
    from botyard.pipelines.task_settings import DEFAULT_SECRET_KEYS, StorageAccess

    if args.storage_secret_key and not args.storage_secret:
        raise ConfigError("--storage-secret-key needs --storage-secret NAME: the Secret the keys are read from")
    keys = dict(key_value(k, "--storage-secret-key") for k in args.storage_secret_key) if args.storage_secret_key else dict(DEFAULT_SECRET_KEYS)
    flags = {"secret": "--storage-secret", "keys": "--storage-secret-key", "endpoint_url": "--storage-endpoint"}
    with naming_flags(StorageAccess, flags):
        return StorageAccess(secret=args.storage_secret or "", keys=keys, endpoint_url=args.storage_endpoint or "")


def handle(args: argparse.Namespace) -> int:
    from botyard.pipelines.builders import compile_all

    images, gpu, storage = image_config(args), gpu_config(args), storage_access(args)  # every setting checked first
    try:
        os.makedirs(args.output_dir, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--output-dir {args.output_dir}: cannot create the folder ({exc.strerror or exc})") from None
    for path in compile_all(args.output_dir, gpu, images=images, storage=storage):
        print(path)
    print(f"images: {images.steps} (steps), {images.trainer} (train)", file=sys.stderr)
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
        "a node selector and a toleration for GPU nodes, and runs the trainer image (CUDA), unless --no-gpu is "
        "given; every other step runs the CPU image. Images are <registry>/botyard-trainer:<tag> and "
        "<registry>/botyard:<tag> (--registry / --tag, else $BOTYARD_IMAGE_REGISTRY / $BOTYARD_IMAGE_TAG, else "
        "ghcr.io/botyard and botyard's version). --storage-secret mounts a Kubernetes Secret's keys as "
        "environment variables on every step that reads the data or the model store.",
    )
    p.add_argument("--output-dir", default="build/pipelines", metavar="DIR", help="folder for the YAML files (default: build/pipelines)")
    p.add_argument("--no-gpu", action="store_true", help="compile for a CPU-only cluster: no GPU request, selector or toleration")
    p.add_argument("--accelerator-type", default=GpuConfig().accelerator_type, help="accelerator resource (default: nvidia.com/gpu)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs for the train step (default: 1)")
    p.add_argument("--gpu-node-selector", action="append", metavar="KEY=VALUE", help="node selector for the train step (repeatable; default nvidia.com/gpu.present=true)")
    p.add_argument("--gpu-toleration", action="append", metavar="KEY", help="taint key the train step tolerates (Exists/NoSchedule; repeatable; default nvidia.com/gpu)")
    p.add_argument("--registry", help="image registry, host[:port][/path] (default: $BOTYARD_IMAGE_REGISTRY or ghcr.io/botyard)")
    p.add_argument("--tag", help="image tag of every botyard image (default: $BOTYARD_IMAGE_TAG or botyard's version)")
    p.add_argument("--storage-secret", metavar="NAME", help="Kubernetes Secret with the object store's credentials, "
                   "mounted as environment variables on the steps that read data or the model store")
    p.add_argument("--storage-secret-key", action="append", metavar="KEY=ENV", help="a key of --storage-secret and the "
                   "variable it becomes (repeatable; default AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY under their own names)")
    p.add_argument("--storage-endpoint", metavar="URL", help="AWS_ENDPOINT_URL for those steps: a MinIO or other "
                   "S3-compatible endpoint, e.g. http://minio-service.kubeflow:9000")
    p.add_argument("--check", action="store_true", help="load every file in --output-dir back with kfp afterwards (what CI runs)")
    p.set_defaults(handler=handle)
