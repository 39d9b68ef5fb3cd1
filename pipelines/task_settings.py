"""What the compiled YAML says about each task's pod: image, CPU/memory, GPU, storage credentials.

All of it is fixed when a pipeline is compiled (``botyard compile``), none of it is a run
parameter, and kfp.local ignores all but the retries (a warning). ``ClusterSettings`` bundles:

* ``images`` (``ImageConfig``: registry and tag): the train task runs the trainer image (CUDA and
  cuDNN) when the pipeline asks for a GPU, every other task the CPU ``steps`` image;
* ``gpu`` (``GpuConfig``): the train task's accelerator, node selector and tolerations;
* ``storage`` (``StorageAccess``): a named Kubernetes Secret mounted as environment variables
  (``kfp.kubernetes.use_secret_as_env``) on every task that reads or writes the data or the model
  store (``STORAGE_TASKS``), plus ``AWS_ENDPOINT_URL`` for MinIO or another S3-compatible store;
* CPU and memory requests and limits for every task (``TASK_RESOURCES``, else ``DEFAULT_RESOURCES``);
* ``train_retries``: how often a failed train task is started again (``TRAIN_RETRIES`` on a cluster,
  where a preempted pod resumes from its checkpoint; 0 for kfp.local, which honours retries and
  their backoff but has no preemption, so a failing local train step fails at once instead of
  after 3.5 minutes of repeating the same error).
"""

from __future__ import annotations

import os

import re
from dataclasses import dataclass, field
from types import MappingProxyType

from kfp import dsl, kubernetes

from botyard.components.base.config import ConfigBase, GpuConfig
from botyard.components.base.errors import ConfigError
from botyard.components.base.images import ImageConfig

# (cpu request, memory request, cpu limit, memory limit). TensorFlow alone takes about 0.5 GiB.
DEFAULT_RESOURCES = ("500m", "1Gi", "1", "2Gi")
TRAIN_RETRIES = 3  # the train task's retries on a cluster (preemption); each resumes from the last checkpoint
TRAIN_BACKOFF = "30s"  # before the first retry, doubling after each
TASK_RESOURCES = {
    "featurize": ("1", "2Gi", "2", "4Gi"),
    "train": ("2", "8Gi", "4", "16Gi"),
    "evaluate": ("1", "2Gi", "2", "4Gi"),
    "gate": ("1", "2Gi", "2", "4Gi"),  # scores the live version too
    "infra-check": ("1", "3Gi", "2", "4Gi"),  # runs a predictor process beside itself
}
# tasks that read the training data or read/write the model store themselves (not through
# KFP's artifact store, whose credentials the KFP launcher has)
STORAGE_TASKS = ("ingest", "train", "register", "gate", "infra-check", "deploy", "check-bot-data")  # train: its checkpoints
DEFAULT_SECRET_KEYS = {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}
ENDPOINT_ENV = "AWS_ENDPOINT_URL"  # botocore (s3fs) reads it by itself
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


STORAGE_SECRET_ENV = "BOTYARD_STORAGE_SECRET"
STORAGE_ENDPOINT_ENV = "BOTYARD_STORAGE_ENDPOINT"


@dataclass(frozen=True)
class StorageAccess(ConfigBase):
    secret: str = ""  # Kubernetes Secret holding the object store's credentials; "" mounts none
    keys: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SECRET_KEYS))  # secret key -> env variable
    endpoint_url: str = ""  # AWS_ENDPOINT_URL on the storage tasks (MinIO, ...); "" leaves it unset

    @classmethod
    def from_env(cls) -> "StorageAccess":
        """``$BOTYARD_STORAGE_SECRET`` and ``$BOTYARD_STORAGE_ENDPOINT``: what ``botyard submit`` compiles with
        (``botyard compile`` takes the same as flags)."""
        return cls(secret=os.environ.get(STORAGE_SECRET_ENV, ""), endpoint_url=os.environ.get(STORAGE_ENDPOINT_ENV, ""))

    def __post_init__(self) -> None:
        if self.secret and not _SECRET_NAME.match(self.secret):
            raise ConfigError(f"StorageAccess.secret = {self.secret!r} is not a Kubernetes Secret name (a DNS-1123 subdomain)")
        if self.secret and not self.keys:
            raise ConfigError("StorageAccess.keys is empty: name at least one secret key to mount")
        for key, env in self.keys.items():
            if not _SECRET_KEY.match(key) or not _ENV_NAME.match(env):
                raise ConfigError(f"StorageAccess.keys: {key!r} -> {env!r} is not a secret key -> environment variable pair")
        if self.endpoint_url and not re.match(r"^https?://[^\s/]+", self.endpoint_url):
            raise ConfigError(f"StorageAccess.endpoint_url = {self.endpoint_url!r} is not an http(s) URL")


@dataclass(frozen=True)
class ClusterSettings:
    gpu: GpuConfig = field(default_factory=GpuConfig)
    images: ImageConfig = field(default_factory=ImageConfig)
    storage: StorageAccess = field(default_factory=StorageAccess)
    train_retries: int = TRAIN_RETRIES

    @classmethod
    def of(cls, gpu: GpuConfig | None = None, images: ImageConfig | None = None, storage: StorageAccess | None = None,
           train_retries: int = TRAIN_RETRIES):
        return cls(gpu or GpuConfig(), images or ImageConfig(), storage or StorageAccess(), train_retries)

    def __post_init__(self) -> None:
        if isinstance(self.train_retries, bool) or not isinstance(self.train_retries, int) or self.train_retries < 0:
            raise ConfigError(f"train_retries = {self.train_retries!r} is not a whole number >= 0")

    def image_for(self, task_name: str) -> str:
        return self.images.trainer if task_name == "train" and self.gpu.enabled else self.images.steps



# what the kfp.local pipelines (`botyard run`, `botyard fleet`, the notebooks) are built with, as
# keyword arguments of every builder: no GPU to ask for, and no retries, since kfp.local honours
# them and sleeps through their backoff but has no preemption to resume after
LOCAL_BUILD = MappingProxyType({"gpu": GpuConfig(enabled=False), "train_retries": 0})


def request_gpu(task: dsl.PipelineTask, gpu: GpuConfig) -> dsl.PipelineTask:
    """Ask for an accelerator and GPU nodes for ``task``; a no-op when GPUs are switched off."""
    if not gpu.enabled:
        return task
    task.set_accelerator_type(gpu.accelerator_type).set_accelerator_limit(gpu.accelerator_limit)
    for key, value in gpu.node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for toleration in gpu.tolerations:
        kubernetes.add_toleration(task, **toleration)
    return task


def configure(task: dsl.PipelineTask, settings: ClusterSettings) -> dsl.PipelineTask:
    """Give ``task`` its image, resources and, where it touches storage, the storage secret;
    the train task also its GPU. Tasks are known by their name in the DAG (``task.name``)."""
    name = task.name
    task.set_container_image(settings.image_for(name))
    cpu_request, memory_request, cpu_limit, memory_limit = TASK_RESOURCES.get(name, DEFAULT_RESOURCES)
    task.set_cpu_request(cpu_request).set_memory_request(memory_request)
    task.set_cpu_limit(cpu_limit).set_memory_limit(memory_limit)
    if name == "train":
        request_gpu(task, settings.gpu)
        # a preempted or evicted train pod is started again with the same output URI and
        # resumes from its last checkpoint (components/train/checkpoints.py)
        if settings.train_retries:
            task.set_retry(num_retries=settings.train_retries, backoff_duration=TRAIN_BACKOFF, backoff_factor=2.0)
    if name in STORAGE_TASKS:
        storage = settings.storage
        if storage.secret:
            kubernetes.use_secret_as_env(task, secret_name=storage.secret, secret_key_to_env=dict(storage.keys))
        if storage.endpoint_url:
            task.set_env_variable(ENDPOINT_ENV, storage.endpoint_url)
    return task
