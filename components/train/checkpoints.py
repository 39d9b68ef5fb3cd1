"""Training checkpoints, so a preempted or killed train step resumes instead of starting over.

After every epoch the training loop hands its whole state to ``Checkpoints.save``: the model's
variables (weights and the dropout seed generators' states), the optimizer's variables (step
counter, Adam moments, loss scale), the epoch counter, the early-stopping state (best monitored
value, epochs since, the best epoch's weights), the history so far and the data-order RNG's
state. It is one ``.npz`` file, written atomically (a local temporary file then
``os.replace``; one PUT on object storage), so a kill at any moment leaves the previous
checkpoint or the new one, never a part.

A train step started again with the same checkpoint location restores that state and goes on
with the next epoch, so it takes the same steps on the same batches it would have taken, and
ends with the same model. A checkpoint made for other data or settings (its fingerprint
differs) is ignored with a log line, never resumed from.

The location is beside the train step's output, never in the model store: no checkpoint is
ever visible as a model version. ``clear`` removes it once the model is exported.

Cost: a write of about 3x the classifier's weights (weights, two Adam moments; 4x while early
stopping keeps an older epoch as the best). Every epoch is checkpointed while that stays within
``MAX_SHARE`` (10%) of the training time; a bot whose epochs are short next to its checkpoint
writes one every few epochs (``Checkpoints.due``). The training log and ``training.json`` give
the seconds spent (``checkpoint_seconds``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import json
import logging
import time

import numpy as np

from botyard.components.base import storage
from botyard.components.base.errors import StorageError

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.npz"
FORMAT = 1
MAX_SHARE = 0.10  # checkpoints take at most this share of the training time (after the first one)


def location_for(output_uri: str, output_path: str) -> str:
    """Where the train step writing its model to ``output_uri`` (local ``output_path``) keeps
    checkpoints: ``<output_uri>-checkpoint``, in the run's artifact store, so a retried pod on
    another node finds them. KFP's ``minio://bucket/key`` is S3 (the same bucket and key through
    ``AWS_ENDPOINT_URL``); a scheme the storage layer cannot write falls back to
    ``<output_path>-checkpoint`` (then only a restart on the same disk resumes)."""
    base = output_uri or output_path
    if storage.scheme(base) == "minio":
        base = "s3://" + base[len("minio://"):]
    elif storage.is_remote(base) and storage.scheme(base) not in storage.SCHEMES:
        base = output_path
    return base.rstrip("/") + "-checkpoint"


def fingerprint(**parts) -> str:
    """A digest of what a checkpoint is valid for (settings, labels, data size)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()


class Checkpoints:
    """Save and restore the training loop's state in ``location`` (a folder URI)."""

    def __init__(self, location: str, digest: str):
        self.location, self.digest = location, digest
        self.uri = storage.join(location, CHECKPOINT_FILE)
        self.seconds = 0.0  # spent writing checkpoints in this process
        self.saved = 0  # checkpoints written by this process
        self.enabled = True  # False after a failed write (no credentials, no space): training goes on without

    def due(self, training_seconds: float) -> bool:
        """Whether to checkpoint after this epoch: always the first time, then only while the time
        spent writing checkpoints stays within ``MAX_SHARE`` of ``training_seconds`` (a big bot whose
        checkpoint costs more than a tenth of an epoch checkpoints every few epochs instead)."""
        return self.enabled and (self.saved == 0 or self.seconds <= MAX_SHARE * training_seconds)

    def save(self, *, epoch: int, model, optimizer, history: dict, best: float, since_best: int,
             best_weights: list | None, best_is_current: bool, stopped: bool,
             rng: np.random.Generator | None = None) -> None:
        """``rng``: the loop's data-order RNG, when it has one (tf.data's shuffle keeps no state to save)."""
        if not self.enabled:
            return
        started = time.perf_counter()
        arrays = {f"model_{i}": np.asarray(v.numpy()) for i, v in enumerate(model.variables)}
        arrays.update({f"optimizer_{i}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)})
        if best_weights is not None and not best_is_current:
            arrays.update({f"best_{i}": w for i, w in enumerate(best_weights)})
        state = {
            "format": FORMAT, "fingerprint": self.digest, "epoch": epoch, "history": history, "best": best,
            "since_best": since_best, "has_best": best_weights is not None, "best_is_current": best_is_current,
            "stopped": stopped, "rng": rng.bit_generator.state if rng is not None else None,
        }
        arrays["state"] = np.frombuffer(json.dumps(state).encode("utf-8"), dtype=np.uint8)
        try:
            if storage.is_remote(self.uri):  # one PUT: the object appears whole
                buffer = io.BytesIO()
                np.savez(buffer, **arrays)
                storage.write_bytes(self.uri, buffer.getvalue())
            else:
                self._write_local(arrays)
        except (StorageError, OSError) as exc:  # training goes on; only a resume is lost
            log.warning("checkpoints off for this run: %s", exc)
            self.enabled = False
            return
        finally:
            self.seconds += time.perf_counter() - started
        self.saved += 1
        log.info("checkpoint after epoch %d in %.2fs (%.2fs in all)", epoch, time.perf_counter() - started, self.seconds)

    def _write_local(self, arrays: dict) -> None:
        """Streamed into a temporary file beside the checkpoint, then renamed over it: a killed
        process leaves the old file or the new one. No fsync: what a killed (or preempted, then
        restarted) process wrote is in the page cache; a lost machine takes a local disk anyway."""
        path = storage.local_path(self.uri)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{CHECKPOINT_FILE}.", dir=os.path.dirname(os.path.abspath(path)))
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def restore(self, *, model, optimizer, rng: np.random.Generator | None = None) -> dict | None:
        """Load the last checkpoint into ``model``, ``optimizer`` and ``rng`` (when given); returns the loop's
        state (``epoch``, ``history``, ``best``, ``since_best``, ``best_weights``, ``stopped``), or
        ``None`` when there is no usable checkpoint."""
        try:
            if not storage.exists(self.uri):
                return None
            with np.load(io.BytesIO(storage.read_bytes(self.uri))) as saved:
                arrays = {k: saved[k] for k in saved.files}
        except (StorageError, OSError, ValueError) as exc:  # unreadable or cut short: start over
            log.warning("not resuming from %s: %s", self.uri, exc)
            return None
        state = json.loads(arrays.pop("state").tobytes().decode("utf-8"))
        n_model, n_opt = len(model.variables), len(optimizer.variables)
        if state.get("format") != FORMAT or state.get("fingerprint") != self.digest or sum(k.startswith("model_") for k in arrays) != n_model \
                or sum(k.startswith("optimizer_") for k in arrays) != n_opt:
            log.warning("ignoring the checkpoint in %s: it was made for other data or settings", self.location)
            return None
        for i, v in enumerate(model.variables):
            v.assign(arrays[f"model_{i}"])
        for i, v in enumerate(optimizer.variables):
            v.assign(arrays[f"optimizer_{i}"])
        if rng is not None and state["rng"] is not None:
            rng.bit_generator.state = state["rng"]
        best_weights = None
        if state["has_best"]:
            if state["best_is_current"]:
                best_weights = [w.numpy() for w in model.weights]
            else:
                best_weights = [arrays[f"best_{i}"] for i in range(len(model.weights))]
        log.info("resuming from the checkpoint after epoch %d in %s", state["epoch"], self.location)
        return {**state, "best_weights": best_weights}

    def clear(self) -> None:
        try:
            storage.remove_tree(self.location)
        except StorageError as exc:  # the model is exported; a leftover checkpoint is only space
            log.warning("could not remove the checkpoints in %s: %s", self.location, exc)
