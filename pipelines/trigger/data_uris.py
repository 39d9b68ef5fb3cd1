"""Which ``data_uri`` an event may name: only object-store URIs under the configured prefixes.

The trigger service reads the file an event names (in a sandbox, see ``sandbox``) and hands
the URI to a training run, so an event must not point it at arbitrary places::

    s3://bucket/key, gs://bucket/key, gcs://...   accepted under an --allowed-data-prefix
                                                  (any, with --dev and no prefix)
    /absolute/path, file:///absolute/path         only with --allow-local-data, and then
                                                  under an --allowed-data-prefix folder
                                                  (any, with --dev and no prefix)
    anything else (http://, relative paths, ...)  400

A URI with a ``..`` or ``.`` segment, a backslash or (in ``file:`` URIs) a ``%`` escape is
refused outright: prefix matching is on the text, so those could step outside a prefix. The
sandbox checks again, after resolving links, that a local file lies under a local prefix.
"""

from __future__ import annotations

import os
import re

from botyard.components.base.errors import ConfigError, RequestError

REMOTE_SCHEMES = ("s3", "gs", "gcs")
LOCAL_SCHEME = "file"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def split(uri: str) -> tuple[str | None, str]:
    """``(scheme, rest)``: ``("s3", "bucket/key")``, ``("file", "/abs")``, ``(None, "/abs")`` for a plain path."""
    m = _SCHEME.match(uri)
    if not m or os.path.isabs(uri):
        return None, uri
    scheme = m.group(1).lower()
    rest = uri[m.end():]
    return scheme, rest[2:] if rest.startswith("//") else rest


def is_local(uri: str) -> bool:
    scheme, _ = split(uri)
    return scheme in (None, LOCAL_SCHEME)


def local_path(uri: str) -> str:
    scheme, rest = split(uri)
    return rest if scheme == LOCAL_SCHEME else uri


def check_prefix(prefix: str, allow_local: bool) -> str:
    """A configured prefix, checked at start (``ConfigError`` naming the flag)."""
    flag = f"--allowed-data-prefix {prefix!r}"
    if not prefix.endswith("/"):
        raise ConfigError(f"{flag} must end with '/' (without it, {prefix}-other/... would match too)")
    scheme, rest = split(prefix)
    if scheme in REMOTE_SCHEMES:
        if not prefix.lower().startswith(f"{scheme}://") or not rest.split("/", 1)[0]:
            raise ConfigError(f"{flag} needs a bucket: {scheme}://BUCKET/ or {scheme}://BUCKET/FOLDER/")
    elif scheme in (None, LOCAL_SCHEME):
        if not allow_local:
            raise ConfigError(f"{flag} is a local folder: local data needs --allow-local-data as well")
        if not os.path.isabs(local_path(prefix)):
            raise ConfigError(f"{flag} must be an absolute folder (or file:///absolute/folder/)")
    else:
        raise ConfigError(f"{flag}: scheme '{scheme}' is not one the trigger reads; use {', '.join(s + '://' for s in REMOTE_SCHEMES)} or a local folder")
    _check_segments(prefix, ConfigError, flag)
    return prefix


def _check_segments(uri: str, error, what: str) -> None:
    if "\\" in uri:
        raise error(f"{what} contains a backslash")
    _, rest = split(uri)
    if any(part in ("..", ".") for part in rest.split("/")):
        raise error(f"{what} has a '.' or '..' path segment; name the file directly")


def check_data_uri(uri: str, prefixes: tuple[str, ...], *, allow_local: bool) -> str:
    """``uri`` if the server may read it; ``RequestError`` (400) saying why not."""
    shown = f"data_uri {uri!r}"
    _check_segments(uri, RequestError, shown)
    scheme, rest = split(uri)
    if scheme in REMOTE_SCHEMES:
        if not uri.lower().startswith(f"{scheme}://") or not rest.split("/", 1)[0]:
            raise RequestError(f"{shown} has no bucket: use {scheme}://BUCKET/path/to/nlu.yml")
        candidates = [p for p in prefixes if not is_local(p)]
        target = uri
    elif scheme in (None, LOCAL_SCHEME):
        if scheme == LOCAL_SCHEME and (not uri.startswith("file:///") or "%" in uri):
            raise RequestError(f"{shown}: a file: URI must be file:///absolute/path, without % escapes")
        if scheme is None and not os.path.isabs(uri):
            raise RequestError(f"{shown} is a relative path; send an s3:// or gs:// URI")
        if not allow_local:
            raise RequestError(
                f"{shown} is a local path; this server accepts only object-store URIs "
                f"({', '.join(s + '://' for s in REMOTE_SCHEMES)}) under its allowed prefixes"
            )
        candidates = [local_path(p) for p in prefixes if is_local(p)]
        target = local_path(uri)
    else:
        raise RequestError(f"{shown}: scheme '{scheme}' is not accepted; use {', '.join(s + '://' for s in REMOTE_SCHEMES)}")
    if prefixes and not any(target.startswith(p) for p in candidates):
        raise RequestError(f"{shown} is outside the allowed locations {list(prefixes)}")
    return uri
