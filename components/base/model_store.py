"""The model store: every bot's model versions under one root, plus each bot's promoted pointer.

Layout and metadata keys are defined in ``botyard.components.base.contracts``. Versions are never
overwritten; promotion rewrites only the small ``CURRENT`` pointer file, atomically on
local disk (write a temp file, then ``os.replace``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from datetime import datetime, timezone

from botyard.components.base import contracts as c
from botyard.components.base import storage
from botyard.components.base.errors import ConfigError, ModelLoadError, ModelStoreError

BOT_ID_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")  # DNS-1123: also an InferenceService name
_VERSION_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}(-\d+)?$")


def check_bot_id(bot_id: str) -> str:
    if not isinstance(bot_id, str) or not BOT_ID_PATTERN.match(bot_id):
        raise ConfigError(
            f"bot id {bot_id!r} is not valid: use 1-63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return bot_id


class ModelStore:
    """Model versions of many bots under ``root`` (a local folder or a ``tf.io.gfile`` URI)."""

    def __init__(self, root: str):
        self.root = root

    # --- paths ----------------------------------------------------------------------------
    def bot_dir(self, bot_id: str) -> str:
        return storage.join(self.root, check_bot_id(bot_id))

    def version_dir(self, bot_id: str, version: str) -> str:
        return storage.join(self.bot_dir(bot_id), version)

    def saved_model_dir(self, bot_id: str, version: str) -> str:
        return storage.join(self.version_dir(bot_id, version), c.SAVED_MODEL_DIR)

    # --- reading --------------------------------------------------------------------------
    def bots(self) -> list[str]:
        if not storage.exists(self.root):
            return []
        return [b for b in storage.listdir(self.root) if BOT_ID_PATTERN.match(b) and self.versions(b)]

    def versions(self, bot_id: str) -> list[str]:
        """Complete versions, oldest first (version ids sort by creation time)."""
        bot_dir = self.bot_dir(bot_id)
        if not storage.exists(bot_dir):
            return []
        return [
            v
            for v in storage.listdir(bot_dir)
            if _VERSION_PATTERN.match(v) and storage.exists(storage.join(bot_dir, v, c.METADATA_FILE))
        ]

    def metadata(self, bot_id: str, version: str) -> dict:
        path = storage.join(self.version_dir(bot_id, version), c.METADATA_FILE)
        try:
            with storage.open_uri(path) as f:
                meta = json.load(f)
        except FileNotFoundError as exc:
            raise ModelStoreError(f"bot '{bot_id}' has no model version '{version}' under {self.root}") from exc
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{path}: unreadable model metadata ({exc})") from exc
        missing = [k for k in c.METADATA_KEYS if k not in meta]
        if missing:
            raise ModelLoadError(f"{path}: metadata lacks {missing}")
        return meta

    def current(self, bot_id: str) -> str | None:
        """The promoted version, or ``None`` when the bot has never been promoted."""
        pointer = storage.join(self.bot_dir(bot_id), c.CURRENT_POINTER)
        if not storage.exists(pointer):
            return None
        with storage.open_uri(pointer) as f:
            return f.read().strip() or None

    def latest(self, bot_id: str) -> str | None:
        versions = self.versions(bot_id)
        return versions[-1] if versions else None

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
        """Write a new version (SavedModel + metadata + evaluation files); returns its id."""
        created = datetime.now(timezone.utc)
        version = self.new_version_id(bot_id, metadata[c.DATA_HASH], created)
        meta = {**metadata, c.BOT_ID: bot_id, c.VERSION: version, c.CREATED_AT: created.isoformat()}
        missing = [k for k in c.METADATA_KEYS if k not in meta]
        if missing:
            raise ModelStoreError(f"cannot register bot '{bot_id}': metadata lacks {missing}")
        target = self.version_dir(bot_id, version)
        if storage.is_remote(self.root):
            # metadata.json last: a version counts as complete only once it exists
            storage.copytree(saved_model_dir, storage.join(target, c.SAVED_MODEL_DIR))
            if evaluation_dir:
                storage.copytree(evaluation_dir, storage.join(target, c.EVALUATION_DIR))
            with storage.open_uri(storage.join(target, c.METADATA_FILE), "w") as f:
                json.dump(meta, f, indent=2)
            return version
        bot_dir = self.bot_dir(bot_id)
        os.makedirs(bot_dir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{version}.", dir=bot_dir)
        shutil.copytree(saved_model_dir, os.path.join(staging, c.SAVED_MODEL_DIR))
        if evaluation_dir:
            shutil.copytree(evaluation_dir, os.path.join(staging, c.EVALUATION_DIR))
        with open(os.path.join(staging, c.METADATA_FILE), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
        os.chmod(staging, 0o755)
        os.rename(staging, target)  # atomic: readers see a complete version or none
        return version

    def stage(self, version_dir: str, bot_id: str) -> str:
        """Add an existing version folder (linked when local, copied when remote) as the bot's promoted version.

        Lets a predictor or an infra check serve one model version through the store layout.
        """
        version = os.path.basename(version_dir.rstrip("/"))
        os.makedirs(self.bot_dir(bot_id), exist_ok=True)
        target = self.version_dir(bot_id, version)
        if storage.is_remote(version_dir):
            storage.copytree(version_dir, target)
        else:
            os.symlink(os.path.abspath(storage.local_path(version_dir)), target)
        self.promote(bot_id, version)
        return version

    def promote(self, bot_id: str, version: str) -> str | None:
        """Point the bot at ``version``; returns the previously promoted version."""
        if version not in self.versions(bot_id):
            raise ModelStoreError(
                f"bot '{bot_id}' has no model version '{version}'; known: {self.versions(bot_id) or 'none'}"
            )
        previous = self.current(bot_id)
        pointer = storage.join(self.bot_dir(bot_id), c.CURRENT_POINTER)
        if storage.is_remote(self.root):
            with storage.open_uri(pointer, "w") as f:
                f.write(version + "\n")
        else:
            fd, tmp = tempfile.mkstemp(prefix=".CURRENT.", dir=self.bot_dir(bot_id))
            with os.fdopen(fd, "w") as f:
                f.write(version + "\n")
            os.replace(tmp, pointer)
        return previous
