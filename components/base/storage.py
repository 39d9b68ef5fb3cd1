"""File access for local paths and remote URIs (``gs://``, ``s3://``, ...).

Local paths use plain Python I/O, so the CLI does not pay TensorFlow's import cost;
anything with a scheme goes through ``tf.io.gfile``.
"""

from __future__ import annotations

import os
import shutil
from typing import IO


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def local_path(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def _gfile():
    import tensorflow as tf  # deferred: heavy, and only remote URIs need it

    return tf.io.gfile


def open_uri(uri: str, mode: str = "r") -> IO:
    if is_remote(uri):
        return _gfile().GFile(uri, mode)
    path = local_path(uri)
    if "w" in mode:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return open(path, mode, encoding=None if "b" in mode else "utf-8")


def exists(uri: str) -> bool:
    return _gfile().exists(uri) if is_remote(uri) else os.path.exists(local_path(uri))


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts]) if is_remote(base) else os.path.join(local_path(base), *parts)


def listdir(uri: str) -> list[str]:
    if is_remote(uri):
        return sorted(name.rstrip("/") for name in _gfile().listdir(uri))
    return sorted(os.listdir(local_path(uri)))


def copytree(src: str, dst: str) -> None:
    """Copy a folder (local or remote) to ``dst``, which must not exist yet."""
    if not is_remote(src) and not is_remote(dst):
        shutil.copytree(local_path(src), local_path(dst))
        return
    gfile = _gfile()
    for dirpath, _, filenames in gfile.walk(src):
        rel = os.path.relpath(dirpath, src)
        target = dst if rel == "." else join(dst, rel)
        gfile.makedirs(target)
        for name in filenames:
            gfile.copy(join(dirpath, name), join(target, name), overwrite=False)
