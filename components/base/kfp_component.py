"""What every botyard ``@dsl.component`` shares: the image it runs in, with kfp already installed.

The decorator needs an image at import time: the CPU steps image of the default
``ImageConfig`` (``botyard.components.base.images``). The pipeline builders give every task its
image from the compile-time ``ImageConfig`` (``task.set_container_image``), so the YAML never
depends on this default. ``install_kfp_package=False``: every botyard image has kfp installed.
"""

from __future__ import annotations

import functools

from kfp import dsl

from botyard.components.base.images import ImageConfig

botyard_component = functools.partial(dsl.component, base_image=ImageConfig().steps, install_kfp_package=False)
