"""The images botyard runs in on a cluster, from one configuration (no kfp import here).

``ImageConfig`` is the one compile-time configuration of the images: a registry and a tag,
from which each image's name follows (``containers/<name>/Dockerfile`` builds it):

=====================  ==============================  ==========================================
image                  name                            runs
=====================  ==============================  ==========================================
``trainer``            ``<registry>/botyard-trainer``  the train step (CUDA + cuDNN, TensorFlow GPU)
``steps``              ``<registry>/botyard``          every other pipeline step (CPU)
``predictor``          ``<registry>/botyard-predictor``  ``botyard serve`` under KServe
``trigger``            ``<registry>/botyard-trigger``  ``botyard trigger-server``
=====================  ==============================  ==========================================

``botyard compile --registry R --tag T`` (or ``$BOTYARD_IMAGE_REGISTRY`` / ``$BOTYARD_IMAGE_TAG``)
sets them; the pipeline builders give each task its image (``task.set_container_image``), so
the image written into the YAML never depends on import order. Every image has botyard and kfp
installed, so components import the cores directly and KFP skips its own ``pip install``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import metadata

from botyard.components.base.config import ConfigBase
from botyard.components.base.errors import ConfigError

DEFAULT_REGISTRY = "ghcr.io/botyard"
REGISTRY_ENV, TAG_ENV = "BOTYARD_IMAGE_REGISTRY", "BOTYARD_IMAGE_TAG"
IMAGE_NAMES = {"trainer": "botyard-trainer", "steps": "botyard", "predictor": "botyard-predictor", "trigger": "botyard-trigger"}
# a registry host[:port] with an optional path; a tag as Docker allows it (never "latest": a
# moving tag would let the steps and the predictor disagree on the model store layout)
_REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def botyard_version() -> str:
    """The installed botyard version: the default image tag."""
    try:
        return metadata.version("botyard")
    except metadata.PackageNotFoundError:  # pragma: no cover - botyard always runs installed
        return "0.0.0"


@dataclass(frozen=True)
class ImageConfig(ConfigBase):
    registry: str = DEFAULT_REGISTRY  # where the images are pushed (host[:port]/path)
    tag: str = ""  # every image's tag; "" means botyard's version

    def __post_init__(self) -> None:
        if not isinstance(self.registry, str) or not _REGISTRY.match(self.registry):
            raise ConfigError(
                f"ImageConfig.registry = {self.registry!r} is not a registry: use host[:port][/path] "
                "in lower case, e.g. registry.example.com/ml"
            )
        if not isinstance(self.tag, str) or (self.tag and not _TAG.match(self.tag)):
            raise ConfigError(f"ImageConfig.tag = {self.tag!r} is not a valid image tag (letters, digits, '_', '.', '-')")
        if self.tag == "latest":
            raise ConfigError("ImageConfig.tag = 'latest' is refused: pin a version so every step and the predictor agree")

    @classmethod
    def from_env(cls, registry: str | None = None, tag: str | None = None) -> "ImageConfig":
        """Explicit values first, then ``$BOTYARD_IMAGE_REGISTRY`` / ``$BOTYARD_IMAGE_TAG``, then the defaults."""
        return cls(registry or os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY, tag or os.environ.get(TAG_ENV) or "")

    def image(self, kind: str) -> str:
        if kind not in IMAGE_NAMES:
            raise ConfigError(f"no botyard image {kind!r}; known: {', '.join(IMAGE_NAMES)}")
        return f"{self.registry}/{IMAGE_NAMES[kind]}:{self.tag or botyard_version()}"

    @property
    def trainer(self) -> str:
        return self.image("trainer")

    @property
    def steps(self) -> str:
        return self.image("steps")

    @property
    def predictor(self) -> str:
        return self.image("predictor")

    @property
    def trigger(self) -> str:
        return self.image("trigger")

