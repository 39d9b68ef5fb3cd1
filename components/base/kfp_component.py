"""What every botyard ``@dsl.component`` shares: the image it runs in on a cluster.

The image (``containers/botyard/Dockerfile``) has botyard and kfp installed, so components
import the cores directly and KFP skips its own ``pip install``. Set ``BOTYARD_IMAGE`` when
compiling to use your registry's copy.
"""

from __future__ import annotations

import functools
import os

from kfp import dsl

DEFAULT_IMAGE = "ghcr.io/botyard/botyard:0.1.0"
IMAGE = os.environ.get("BOTYARD_IMAGE", DEFAULT_IMAGE)

botyard_component = functools.partial(dsl.component, base_image=IMAGE, install_kfp_package=False)
