"""File access for local (or mounted) paths and object storage: ``s3://`` and ``gs://``.

Local paths (and ``file://``) use plain Python I/O. Object storage goes through fsspec:
``s3fs`` for ``s3://`` (AWS S3, MinIO and other S3-compatible servers) and ``gcsfs`` for
``gs://``. TensorFlow's ``tf.io.gfile`` is not used: TF 2.21 has no ``s3://`` file system.

Credentials and endpoints come from the standard environment, read by the client libraries
themselves: for S3, ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (or ``AWS_PROFILE``,
a web identity token, ...), ``AWS_DEFAULT_REGION``, and ``AWS_ENDPOINT_URL`` or
``AWS_ENDPOINT_URL_S3`` for MinIO or a test server; for GCS, Application Default
Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, or the node's service account).

Every operation is one call here, so the model store's publish protocol is written (and
fault-injected in the tests) in terms of these few primitives. Object stores have no
rename: single-object writes (``write_bytes``) are atomic, folders are not. Failures of the
client libraries that are not ``OSError`` (missing credentials, unreachable endpoint) are
raised as ``StorageError``, an ``OSError``, naming the URI.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import tempfile
import threading
from typing import IO, Callable, TypeVar

from botyard.components.base.errors import StorageError

# scheme -> fsspec protocol; anything else with "://" is refused with the supported list
SCHEMES = {"s3": "s3", "gs": "gcs", "gcs": "gcs"}
SUPPORTED = "s3://, gs:// or a local path"
# environment variables that change which server / identity an S3 or GCS client uses: a
# change (tests, a process that re-reads its settings) gets a fresh client
_CLIENT_ENV = (
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST",
)  # fmt: skip
_HINTS = {
    "s3": "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and, for MinIO or another "
    "S3-compatible server, AWS_ENDPOINT_URL",
    "gcs": "check GOOGLE_APPLICATION_CREDENTIALS or the node's service account",
}

T = TypeVar("T")


def scheme(uri: str) -> str | None:
    """``"s3"``, ``"gs"``, ... for a URI; ``None`` for a local path or ``file://``."""
    head, sep, _ = uri.partition("://")
    if not sep or head == "file" or "/" in head:
        return None
    return head.lower()


def is_remote(uri: str) -> bool:
    return scheme(uri) is not None


def local_path(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def absolute(uri: str) -> str:
    """An absolute local path (relative paths resolved against the working folder); URIs as they are."""
    return uri if is_remote(uri) else os.path.abspath(local_path(uri))


def check_uri(uri: str) -> str:
    """``uri`` when botyard can read it; a ``StorageError`` naming the supported kinds otherwise."""
    s = scheme(uri)
    if s is not None and s not in SCHEMES:
        raise StorageError(f"{uri}: storage scheme '{s}://' is not supported; use {SUPPORTED}", uri=uri)
    return uri


_fs_lock = threading.Lock()
_fs_cache: dict[tuple, object] = {}


def filesystem(uri: str):
    """The fsspec file system of an ``s3://`` or ``gs://`` URI (one client per settings, reused)."""
    protocol = SCHEMES[scheme(check_uri(uri))]
    key = (protocol, os.getpid(), tuple(os.environ.get(k) for k in _CLIENT_ENV))
    with _fs_lock:
        fs = _fs_cache.get(key)
        if fs is None:
            import fsspec

            # no listings cache: the predictor polls for new versions and must see them
            fs = fsspec.filesystem(protocol, skip_instance_cache=True, use_listings_cache=False)
            _fs_cache[key] = fs
        return fs


def _path(uri: str) -> str:
    """The path fsspec wants: ``bucket/key`` without the scheme."""
    return uri.split("://", 1)[1]


def _translated(func: Callable[..., T]) -> Callable[..., T]:
    """Client errors that are not ``OSError`` (no credentials, endpoint unreachable) become ``StorageError``."""

    @functools.wraps(func)
    def wrapper(uri: str, *args, **kwargs):
        try:
            return func(uri, *args, **kwargs)
        except OSError:
            raise
        except Exception as exc:
            if not is_remote(uri) or isinstance(exc, StorageError) or not _is_client_error(exc):
                raise
            hint = _HINTS.get(SCHEMES.get(scheme(uri) or "", ""), "")
            raise StorageError(f"{uri}: {type(exc).__name__}: {exc}" + (f"; {hint}" if hint else ""), uri=uri) from exc

    return wrapper


def _is_client_error(exc: Exception) -> bool:
    module = type(exc).__module__ or ""
    return module.split(".")[0] in ("botocore", "aiobotocore", "s3fs", "gcsfs", "google", "aiohttp", "fsspec")


# --- reading ----------------------------------------------------------------------------------------
@_translated
def open_uri(uri: str, mode: str = "r") -> IO:
    """An open file; text modes use UTF-8. Remote writes become visible when the file is closed."""
    if is_remote(uri):
        kwargs = {} if "b" in mode else {"encoding": "utf-8"}
        return filesystem(uri).open(_path(uri), mode, **kwargs)
    path = local_path(uri)
    if "w" in mode:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return open(path, mode, encoding=None if "b" in mode else "utf-8")


@_translated
def read_bytes(uri: str) -> bytes:
    if is_remote(uri):
        return filesystem(uri).cat_file(_path(uri))
    with open(local_path(uri), "rb") as f:
        return f.read()


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


@_translated
def exists(uri: str) -> bool:
    if is_remote(uri):
        return filesystem(uri).exists(_path(uri))
    return os.path.exists(local_path(uri))


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts]) if is_remote(base) else os.path.join(local_path(base), *parts)


@_translated
def listdir(uri: str) -> list[str]:
    """Names directly under a folder, sorted; ``FileNotFoundError`` when there is none."""
    if is_remote(uri):
        fs = filesystem(uri)
        prefix = _path(uri).rstrip("/")
        entries = (entry.rstrip("/") for entry in fs.ls(prefix, detail=False))
        return sorted({entry.rsplit("/", 1)[-1] for entry in entries if entry != prefix})
    return sorted(os.listdir(local_path(uri)))


@_translated
def file_sizes(uri: str) -> dict[str, int]:
    """Every file under a folder, by path relative to it (``/``-separated), with its size in bytes."""
    if is_remote(uri):
        prefix = _path(uri).rstrip("/") + "/"
        found = filesystem(uri).find(prefix, detail=True)
        return {name[len(prefix):]: int(info["size"]) for name, info in found.items() if info.get("type") != "directory"}
    root = local_path(uri)
    sizes = {}
    for dirpath, _, filenames in os.walk(root, followlinks=True):
        for name in filenames:
            path = os.path.join(dirpath, name)
            sizes[os.path.relpath(path, root).replace(os.sep, "/")] = os.path.getsize(path)
    return sizes


def sha256_file(path: str) -> str:
    """Hex SHA-256 of a local file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- writing ----------------------------------------------------------------------------------------
@_translated
def write_bytes(uri: str, data: bytes) -> None:
    """Write one file atomically: readers see the old content or the new, never a part.

    Remote: one PUT (S3 and GCS make a single object visible whole). Local: a temporary file
    in the same folder, flushed to disk, then ``os.replace``.
    """
    if is_remote(uri):
        filesystem(uri).pipe_file(_path(uri), data)
        return
    path = local_path(uri)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


@_translated
def put_file(local_src: str, uri: str) -> None:
    """Upload (or, for a local ``uri``, copy) one local file."""
    if is_remote(uri):
        filesystem(uri).put_file(local_src, _path(uri))
        return
    dst = local_path(uri)
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    shutil.copyfile(local_src, dst)


@_translated
def get_file(uri: str, local_dst: str) -> None:
    """Download (or, for a local ``uri``, copy) one file to a local path."""
    os.makedirs(os.path.dirname(os.path.abspath(local_dst)), exist_ok=True)
    if is_remote(uri):
        filesystem(uri).get_file(_path(uri), local_dst)
        return
    shutil.copyfile(local_path(uri), local_dst)


@_translated
def copy_file(src: str, dst: str) -> None:
    """Copy one file; server-side within one object store, through a local temp file across stores."""
    if is_remote(src) and is_remote(dst) and SCHEMES.get(scheme(src)) == SCHEMES.get(scheme(dst)):
        filesystem(src).copy(_path(src), _path(dst))
    elif not is_remote(src):
        put_file(local_path(src), dst)
    elif not is_remote(dst):
        get_file(src, local_path(dst))
    else:
        with tempfile.TemporaryDirectory(prefix="botyard-copy-") as tmp:
            get_file(src, os.path.join(tmp, "f"))
            put_file(os.path.join(tmp, "f"), dst)


def copytree(src: str, dst: str) -> None:
    """Copy every file of a folder (local or remote) to ``dst`` (local or remote)."""
    if not is_remote(src) and not is_remote(dst):
        shutil.copytree(local_path(src), local_path(dst))
        return
    for rel in sorted(file_sizes(src)):
        copy_file(join(src, *rel.split("/")), join(dst, *rel.split("/")))


def rename_dir(src: str, dst: str) -> None:
    """Move a local folder to a new name in one atomic step (``dst`` must not exist).

    Local paths only: object stores have no rename (``model_store`` copies, then marks).
    """
    if is_remote(src) or is_remote(dst):
        raise StorageError(f"{src} -> {dst}: object storage has no atomic rename", uri=src)
    os.rename(local_path(src), local_path(dst))


@_translated
def remove_tree(uri: str) -> None:
    """Delete a folder and everything under it; nothing when it is not there."""
    if is_remote(uri):
        fs = filesystem(uri)
        prefix = _path(uri).rstrip("/")
        if fs.exists(prefix):
            fs.rm(prefix, recursive=True)
        return
    path = local_path(uri)
    if os.path.islink(path):
        os.unlink(path)
    else:
        shutil.rmtree(path, ignore_errors=True)

