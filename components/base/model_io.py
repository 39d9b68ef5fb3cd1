"""Model I/O: load a SavedModel or a whole model version, and get intent probabilities from it.

One way to load and query a model, used by evaluate (the candidate), the promotion gate (the
live version), the predictor and the benchmarks. ``load_version`` also checks the version's
metadata against its SavedModel and replays its warm-up requests, so a version that loads
here is one the predictor can serve. A version on object storage is loaded from a local copy
(``ModelStore.local_version``: downloaded once, checked against its manifest); a version
that is not published yet (upload running or interrupted) is never loaded.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from botyard.components.base import contracts as c
from botyard.components.base.errors import ModelLoadError
from botyard.components.base.model_store import ModelStore, read_metadata
from botyard.components.base.warmup import DEFAULT_WARMUP_UTTERANCES, read_warmup_requests

log = logging.getLogger(__name__)

PREDICT_BATCH = 256  # utterances per call when scoring a data set


def load_signature(saved_model_dir: str):
    """The ``serving_default`` signature of a SavedModel (utterances in, probabilities out)."""
    import tensorflow as tf

    return tf.saved_model.load(saved_model_dir).signatures[c.SERVING_SIGNATURE]


def predict_probabilities(signature, utterances: list[str]) -> np.ndarray:
    """``float32 [len(utterances), n_labels]``, computed in batches of ``PREDICT_BATCH``."""
    import tensorflow as tf

    if not len(utterances):
        return np.zeros((0, signature.structured_outputs[c.OUTPUT_PROBABILITIES].shape[-1]), dtype="float32")
    utterances = list(utterances)
    chunks = [
        signature(**{c.SIGNATURE_INPUT: tf.constant(utterances[i : i + PREDICT_BATCH], dtype=tf.string)})[
            c.OUTPUT_PROBABILITIES
        ].numpy()
        for i in range(0, len(utterances), PREDICT_BATCH)
    ]
    return np.concatenate(chunks)


@dataclass(frozen=True)
class LoadedVersion:
    """A loaded, checked and warmed-up model version; never changed after loading."""

    bot_id: str
    version: str
    labels: tuple[str, ...]
    oos_threshold: float
    metadata: dict
    load_seconds: float
    _signature: Any = field(repr=False)

    def probabilities(self, utterances: list[str]) -> np.ndarray:
        """One batch through the signature (the predictor's per-request call)."""
        import tensorflow as tf

        outputs = self._signature(**{c.SIGNATURE_INPUT: tf.constant(utterances, dtype=tf.string)})
        return outputs[c.OUTPUT_PROBABILITIES].numpy()

    def probabilities_of(self, utterances: list[str]) -> np.ndarray:
        """Any number of utterances, in batches (scoring a data set)."""
        return predict_probabilities(self._signature, utterances)


def _check_metadata(path: str, meta: dict) -> tuple[tuple[str, ...], float]:
    labels = meta[c.LABELS]
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ModelLoadError(f"{path}: '{c.LABELS}' must be a non-empty list of intent names")
    threshold = meta[c.OOS_THRESHOLD]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise ModelLoadError(f"{path}: '{c.OOS_THRESHOLD}' = {threshold!r}; expected a number from 0 to 1")
    return tuple(labels), float(threshold)


def load_version(store: ModelStore, bot_id: str, version: str) -> LoadedVersion:
    """Load one version, check it against its metadata and replay its warm-up requests.

    Raises ``ModelStoreError`` (``ModelLoadError`` when files are corrupt or inconsistent).
    """
    import tensorflow as tf

    started = time.perf_counter()
    local_dir = store.local_version(bot_id, version)  # object storage: a checked copy in the local cache
    meta = read_metadata(os.path.join(local_dir, c.METADATA_FILE))
    labels, threshold = _check_metadata(f"{store.version_dir(bot_id, version)}/{c.METADATA_FILE}", meta)
    saved_model_dir = os.path.join(local_dir, c.SAVED_MODEL_DIR)
    shown = store.saved_model_dir(bot_id, version)  # messages name the store's URI, not the cache
    try:
        saved_model = tf.saved_model.load(saved_model_dir)
        signature = saved_model.signatures[c.SERVING_SIGNATURE]
    except Exception as exc:  # TF raises many types (OSError, ValueError, DecodeError, ...)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelLoadError(
            f"{shown}: cannot load the SavedModel's '{c.SERVING_SIGNATURE}' signature "
            f"({type(exc).__name__}: {first_line[:300]})"
        ) from exc
    # Only the signature is kept: it holds the handles of the variables and lookup tables it
    # uses, and TF2 frees such resources only with their last handle. Dropping the restored
    # object graph (Keras layers' functions) saves ~12 MB a bot.
    del saved_model
    gc.collect()
    loaded = LoadedVersion(bot_id, version, labels, threshold, meta, 0.0, signature)
    batches = read_warmup_requests(saved_model_dir) or [list(DEFAULT_WARMUP_UTTERANCES)]
    for batch in batches:
        try:
            probs = loaded.probabilities(batch)
        except Exception as exc:
            raise ModelLoadError(f"{shown}: warm-up request failed ({type(exc).__name__}: {exc})") from exc
        if probs.shape != (len(batch), len(labels)):
            raise ModelLoadError(
                f"{shown}: '{c.OUTPUT_PROBABILITIES}' has shape {list(probs.shape)} for a batch of "
                f"{len(batch)}; metadata lists {len(labels)} labels, expected [{len(batch)}, {len(labels)}]"
            )
    seconds = round(time.perf_counter() - started, 3)
    log.info("bot %s: loaded version %s in %.2fs (%d warm-up requests)", bot_id, version, seconds, len(batches))
    return LoadedVersion(bot_id, version, labels, threshold, meta, seconds, signature)
