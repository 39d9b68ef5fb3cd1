"""The model store: every bot's model versions under one root, plus each bot's promoted pointer.

The root is a local or mounted folder, ``s3://bucket/prefix`` (AWS S3, MinIO) or
``gs://bucket/prefix``; layout and metadata keys are in ``botyard.components.base.contracts``.

How a version is published, so that a crash at any point leaves nothing half-visible:

1. Everything (SavedModel, evaluation files, ``metadata.json``) is written under a temporary
   prefix, ``<bot>/.staging/<version>.<nonce>/``.
2. It moves to ``<bot>/<version>/``: one atomic ``rename`` on local disk; on object storage
   (no rename) a server-side copy of each object, then a listing checks every file arrived
   whole (sizes against the manifest).
3. Last, the ``PUBLISHED`` marker is written in one atomic write: a manifest naming every
   file with its size and SHA-256.

A version without ``PUBLISHED`` does not exist for the store: it is never listed, loaded,
served, judged or promoted. Published versions are never changed. ``CURRENT`` (the promoted
version) is rewritten in one atomic write. The promotion gate's verdict on a version is
recorded beside it, in ``<bot>/verdicts/<version>.json``, since the gate runs after the
version is published and the version itself stays immutable.

Loading a version from object storage (``local_version``) downloads the files its manifest
lists into a local cache, checks each size and SHA-256, and moves the copy into place in one
rename: SavedModels need local files, and a half-downloaded copy is never used. The cache is
``$BOTYARD_MODEL_CACHE`` (default ``~/.cache/botyard/models``); versions are immutable, so a
cached copy stays valid and the folder may be deleted at any time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import re
import shutil
import tempfile
import uuid
from datetime import datetime, timezone

from botyard.components.base import contracts as c
from botyard.components.base import storage
from botyard.components.base.errors import ConfigError, ModelLoadError, ModelStoreError

BOT_ID_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")  # DNS-1123: also an InferenceService name
_VERSION_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}(-\d+)?$")
CACHE_ENV = "BOTYARD_MODEL_CACHE"
log = logging.getLogger(__name__)
GIT_COMMIT_ENV = "BOTYARD_GIT_COMMIT"  # set in the images at build time; recorded with every version


def check_bot_id(bot_id: str) -> str:
    if not isinstance(bot_id, str) or not BOT_ID_PATTERN.match(bot_id):
        raise ConfigError(
            f"bot id {bot_id!r} is not valid: use 1-63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return bot_id


def is_version_id(name: str) -> bool:
    return bool(_VERSION_PATTERN.match(name))


def default_cache_dir() -> str:
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "botyard", "models")


def code_version() -> dict:
    """The software a version was made with, to trace and rebuild it."""
    from importlib import metadata

    def installed(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "botyard": installed("botyard"),
        "tensorflow": installed("tensorflow"),
        "python": platform.python_version(),
        "git_commit": os.environ.get(GIT_COMMIT_ENV) or None,
    }


def read_metadata(path: str) -> dict:
    """``metadata.json`` at ``path`` (local or remote), checked for the required keys."""
    try:
        meta = json.loads(storage.read_bytes(path))
    except (OSError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise ModelLoadError(f"{path}: the version has no metadata file") from exc
        raise ModelLoadError(f"{path}: unreadable model metadata ({exc})") from exc
    if not isinstance(meta, dict):
        raise ModelLoadError(f"{path}: model metadata must be a JSON object")
    missing = [k for k in c.METADATA_KEYS if k not in meta]
    if missing:
        raise ModelLoadError(f"{path}: metadata lacks {missing}")
    return meta


def _manifest(local_dir: str, version: str) -> dict:
    """Every file under a local folder with its size and SHA-256."""
    files = {}
    for rel, size in sorted(storage.file_sizes(local_dir).items()):
        if rel == c.PUBLISHED_MARKER:
            continue
        files[rel] = {"size": size, "sha256": storage.sha256_file(os.path.join(local_dir, *rel.split("/")))}
    return {c.VERSION: version, c.PUBLISHED_AT: datetime.now(timezone.utc).isoformat(), c.MANIFEST_FILES: files}


def _manifest_bytes(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _read_manifest(version_uri: str) -> dict:
    marker = storage.join(version_uri, c.PUBLISHED_MARKER)
    try:
        manifest = json.loads(storage.read_bytes(marker))
        files = manifest[c.MANIFEST_FILES]
        if not isinstance(files, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("size"), int) and isinstance(v.get("sha256"), str) for v in files.values()
        ):
            raise ValueError("'files' must map each path to its size and sha256")
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{marker}: unreadable version manifest ({type(exc).__name__}: {exc})") from exc
    return manifest


def _download_version(version_uri: str, target: str) -> str:
    """Copy a published version to the local folder ``target`` (which must not exist), checking
    every file against the manifest; the copy appears at ``target`` whole or not at all."""
    try:
        manifest = _read_manifest(version_uri)
    except FileNotFoundError as exc:
        raise ModelStoreError(f"{version_uri} is not a published model version (no {c.PUBLISHED_MARKER} marker)") from exc
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.", dir=parent)
    try:
        for rel, expected in sorted(manifest[c.MANIFEST_FILES].items()):
            if rel.startswith("/") or ".." in rel.split("/"):
                raise ModelLoadError(f"{version_uri}: manifest names a file outside the version: {rel!r}")
            local = os.path.join(tmp, *rel.split("/"))
            try:
                storage.get_file(storage.join(version_uri, *rel.split("/")), local)
            except FileNotFoundError as exc:
                raise ModelLoadError(f"{version_uri}: file {rel} listed in {c.PUBLISHED_MARKER} is missing") from exc
            size, digest = os.path.getsize(local), storage.sha256_file(local)
            if size != expected["size"] or digest != expected["sha256"]:
                raise ModelLoadError(
                    f"{version_uri}: file {rel} does not match {c.PUBLISHED_MARKER} "
                    f"({size} bytes, sha256 {digest[:12]}...; expected {expected['size']} bytes, {expected['sha256'][:12]}...)"
                )
        with open(os.path.join(tmp, c.PUBLISHED_MARKER), "wb") as f:
            f.write(_manifest_bytes(manifest))
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, target)
        except OSError:
            if not os.path.exists(os.path.join(target, c.PUBLISHED_MARKER)):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process cached it first: same files
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


class ModelStore:
    """Model versions of many bots under ``root`` (a local or mounted folder, ``s3://`` or ``gs://``)."""

    def __init__(self, root: str, cache_dir: str | None = None):
        self.root = storage.check_uri(root)
        self.cache_dir = cache_dir
        self._published: set[tuple[str, str]] = set()  # published versions never change: ask once

    @property
    def is_remote(self) -> bool:
        return storage.is_remote(self.root)

    # --- paths ----------------------------------------------------------------------------
    def bot_dir(self, bot_id: str) -> str:
        return storage.join(self.root, check_bot_id(bot_id))

    def version_dir(self, bot_id: str, version: str) -> str:
        return storage.join(self.bot_dir(bot_id), version)

    def saved_model_dir(self, bot_id: str, version: str) -> str:
        return storage.join(self.version_dir(bot_id, version), c.SAVED_MODEL_DIR)

    def verdict_path(self, bot_id: str, version: str) -> str:
        return storage.join(self.bot_dir(bot_id), c.VERDICTS_DIR, f"{version}.json")

    # --- reading --------------------------------------------------------------------------
    def bots(self) -> list[str]:
        """Bots with at least one published version."""
        try:
            names = storage.listdir(self.root)
        except FileNotFoundError:
            return []
        return [b for b in names if BOT_ID_PATTERN.match(b) and self.versions(b)]

    def is_published(self, bot_id: str, version: str) -> bool:
        key = (bot_id, version)
        if key in self._published:
            return True
        if is_version_id(version) and storage.exists(storage.join(self.version_dir(bot_id, version), c.PUBLISHED_MARKER)):
            self._published.add(key)
            return True
        return False

    def versions(self, bot_id: str) -> list[str]:
        """Published versions, oldest first (version ids sort by creation time)."""
        try:
            names = storage.listdir(self.bot_dir(bot_id))
        except FileNotFoundError:
            return []
        return [v for v in names if is_version_id(v) and self.is_published(bot_id, v)]

    def _missing(self, bot_id: str, version: str) -> ModelStoreError:
        if is_version_id(version) and storage.exists(self.version_dir(bot_id, version)):
            return ModelStoreError(
                f"bot '{bot_id}': model version '{version}' under {self.root} is not published "
                f"(no {c.PUBLISHED_MARKER} marker: its upload is still running or was interrupted)"
            )
        return ModelStoreError(f"bot '{bot_id}' has no model version '{version}' under {self.root}")

    def require_published(self, bot_id: str, version: str) -> None:
        if not self.is_published(bot_id, version):
            raise self._missing(bot_id, version)

    def metadata(self, bot_id: str, version: str) -> dict:
        self.require_published(bot_id, version)
        return read_metadata(storage.join(self.version_dir(bot_id, version), c.METADATA_FILE))

    def current(self, bot_id: str) -> str | None:
        """The promoted version, or ``None`` when the bot has never been promoted."""
        try:
            return storage.read_text(storage.join(self.bot_dir(bot_id), c.CURRENT_POINTER)).strip() or None
        except FileNotFoundError:
            return None

    def latest(self, bot_id: str) -> str | None:
        versions = self.versions(bot_id)
        return versions[-1] if versions else None

    def local_version(self, bot_id: str, version: str) -> str:
        """A local folder holding the published version: itself on local disk, a checked copy in
        the cache for object storage (downloaded on first use)."""
        self.require_published(bot_id, version)
        source = self.version_dir(bot_id, version)
        if not self.is_remote:
            return storage.local_path(source)
        import hashlib

        root_key = hashlib.sha256(self.root.rstrip("/").encode("utf-8")).hexdigest()[:16]
        target = os.path.join(self.cache_dir or default_cache_dir(), root_key, bot_id, version)
        if os.path.exists(os.path.join(target, c.PUBLISHED_MARKER)):
            return target  # complete: copies are renamed into place whole
        return _download_version(source, target)

    def verdict(self, bot_id: str, version: str) -> dict | None:
        """The promotion gate's recorded verdict on ``version``, or ``None`` if it was never judged."""
        path = self.verdict_path(bot_id, version)
        try:
            verdict = json.loads(storage.read_bytes(path))
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise ModelLoadError(f"{path}: unreadable gate verdict ({exc})") from exc
        if not isinstance(verdict, dict) or not isinstance(verdict.get(c.VERDICT_BLESSED), bool):
            raise ModelLoadError(f"{path}: a gate verdict needs a boolean '{c.VERDICT_BLESSED}'")
        return verdict

    # --- writing --------------------------------------------------------------------------
    def new_version_id(self, bot_id: str, data_hash: str, now: datetime | None = None) -> str:
        stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
        base = f"{stamp}-{data_hash[:8]}"
        version, n = base, 1
        while storage.exists(self.version_dir(bot_id, version)):
            n += 1
            version = f"{base}-{n}"
        return version

    def register(
        self, bot_id: str, saved_model_dir: str, metadata: dict, evaluation_dir: str | None = None
    ) -> str:
        """Publish a new version (SavedModel + metadata + evaluation files); returns its id.

        The version becomes visible only once complete (see the module docstring); on failure
        nothing is listed and the staging files are removed where the process can still do so.
        """
        created = datetime.now(timezone.utc)
        version = self.new_version_id(bot_id, metadata[c.DATA_HASH], created)
        meta = {
            **metadata, c.BOT_ID: bot_id, c.VERSION: version, c.CREATED_AT: created.isoformat(),
            c.CODE_VERSION: metadata.get(c.CODE_VERSION) or code_version(),
        }  # fmt: skip
        missing = [k for k in c.METADATA_KEYS if k not in meta]
        if missing:
            raise ModelStoreError(f"cannot register bot '{bot_id}': metadata lacks {missing}")
        with tempfile.TemporaryDirectory(prefix="botyard-register-") as work:
            # the version assembled locally first: one manifest, hashed from the files sent
            local = os.path.join(work, version)
            storage.copytree(saved_model_dir, os.path.join(local, c.SAVED_MODEL_DIR))
            if evaluation_dir:
                storage.copytree(evaluation_dir, os.path.join(local, c.EVALUATION_DIR))
            with open(os.path.join(local, c.METADATA_FILE), "w", encoding="utf-8") as f:
                json.dump(meta, f, indent=2)
            manifest = _manifest(local, version)
            if self.is_remote:
                self._publish_remote(bot_id, version, local, manifest)
            else:
                self._publish_local(bot_id, version, local, manifest)
        self._published.add((bot_id, version))
        return version

    def _staging_dir(self, bot_id: str, version: str) -> str:
        return storage.join(self.bot_dir(bot_id), c.STAGING_DIR, f"{version}.{uuid.uuid4().hex[:12]}")

    def _publish_local(self, bot_id: str, version: str, local: str, manifest: dict) -> None:
        staging = storage.local_path(self._staging_dir(bot_id, version))
        target = storage.local_path(self.version_dir(bot_id, version))
        os.makedirs(os.path.dirname(staging), exist_ok=True)
        try:
            for rel in manifest[c.MANIFEST_FILES]:
                storage.put_file(os.path.join(local, *rel.split("/")), os.path.join(staging, *rel.split("/")))
            os.chmod(staging, 0o755)
            storage.rename_dir(staging, target)  # atomic on one local file system
        except BaseException:
            storage.remove_tree(staging)
            raise
        finally:
            with contextlib.suppress(OSError):  # only when empty: another upload may be running
                os.rmdir(os.path.dirname(staging))
        # the marker last: on a mounted bucket (gcsfuse, s3 mounts) a folder rename is not atomic
        storage.write_bytes(os.path.join(target, c.PUBLISHED_MARKER), _manifest_bytes(manifest))

    def _publish_remote(self, bot_id: str, version: str, local: str, manifest: dict) -> None:
        staging = self._staging_dir(bot_id, version)
        target = self.version_dir(bot_id, version)
        files = manifest[c.MANIFEST_FILES]
        try:
            for rel in files:
                storage.put_file(os.path.join(local, *rel.split("/")), storage.join(staging, *rel.split("/")))
            self._check_arrived(staging, files)
            for rel in files:
                storage.copy_file(storage.join(staging, *rel.split("/")), storage.join(target, *rel.split("/")))
            self._check_arrived(target, files)
            storage.write_bytes(storage.join(target, c.PUBLISHED_MARKER), _manifest_bytes(manifest))
        except BaseException:
            # best effort: a crashed process leaves these behind, and they stay invisible
            for leftover in (staging, target) if not storage.exists(storage.join(target, c.PUBLISHED_MARKER)) else (staging,):
                try:
                    storage.remove_tree(leftover)
                except Exception:  # noqa: BLE001 - the original failure is the one to report
                    pass
            raise
        try:
            storage.remove_tree(staging)
        except Exception as exc:  # noqa: BLE001 - published already; leftovers under .staging/ are invisible
            log.warning("version %s is published; could not remove its staging copy %s: %s", version, staging, exc)

    @staticmethod
    def _check_arrived(prefix: str, files: dict) -> None:
        found = storage.file_sizes(prefix)
        wrong = [rel for rel, info in files.items() if found.get(rel) != info["size"]]
        if wrong:
            raise ModelStoreError(
                f"{prefix}: {len(wrong)} of {len(files)} files did not arrive whole (first: {wrong[0]}); not publishing"
            )

    def record_verdict(self, bot_id: str, version: str, verdict: dict) -> str:
        """Record the promotion gate's verdict on a published version (one atomic write); returns its path."""
        self.require_published(bot_id, version)
        if not isinstance(verdict.get(c.VERDICT_BLESSED), bool):
            raise ModelStoreError(f"a gate verdict needs a boolean '{c.VERDICT_BLESSED}'")
        record = {**verdict, c.VERSION: version, c.JUDGED_AT: datetime.now(timezone.utc).isoformat()}
        path = self.verdict_path(bot_id, version)
        storage.write_text(path, json.dumps(record, indent=2) + "\n")
        return path

    def stage(self, version_dir: str, bot_id: str) -> str:
        """Add an existing published version folder (linked when local, downloaded and checked when
        remote) to this local store as the bot's promoted version.

        Lets a predictor or an infra check serve one model version through the store layout.
        """
        if self.is_remote:
            raise ModelStoreError(f"stage() builds a local store; {self.root} is object storage")
        version = version_dir.rstrip("/").rsplit("/", 1)[-1]
        if not is_version_id(version):  # e.g. KServe's /mnt/models: the id is in the metadata
            version = read_metadata(storage.join(version_dir, c.METADATA_FILE))[c.VERSION]
        os.makedirs(storage.local_path(self.bot_dir(bot_id)), exist_ok=True)
        target = storage.local_path(self.version_dir(bot_id, version))
        if storage.is_remote(version_dir):
            _download_version(version_dir, target)
        else:
            os.symlink(os.path.abspath(storage.local_path(version_dir)), target)
        self.promote(bot_id, version)
        return version

    def promote(self, bot_id: str, version: str) -> str | None:
        """Point the bot at the published ``version`` (one atomic write); returns the previously promoted version."""
        if not self.is_published(bot_id, version):
            known = self.versions(bot_id)
            if is_version_id(version) and storage.exists(self.version_dir(bot_id, version)):
                raise self._missing(bot_id, version)
            raise ModelStoreError(f"bot '{bot_id}' has no model version '{version}'; known: {known or 'none'}")
        previous = self.current(bot_id)
        storage.write_text(storage.join(self.bot_dir(bot_id), c.CURRENT_POINTER), version + "\n")
        return previous
