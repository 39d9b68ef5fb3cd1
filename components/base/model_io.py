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
from botyard.components.base.entities import spans_from_outputs
from botyard.components.base.errors import ModelLoadError
from botyard.components.base.model_store import ModelStore, read_metadata
from botyard.components.base.serving_graph import serving_meta_graph
from botyard.components.base.warmup import DEFAULT_WARMUP_UTTERANCES, read_warmup_requests

log = logging.getLogger(__name__)

PREDICT_BATCH = 256  # utterances per call when scoring a data set


def load_signature(saved_model_dir: str):
    """The ``serving_default`` signature of a SavedModel (utterances in, probabilities out)."""
    import tensorflow as tf

    return tf.saved_model.load(saved_model_dir).signatures[c.SERVING_SIGNATURE]


def predict_probabilities(signature, utterances: list[str]) -> np.ndarray:
    """``float32 [len(utterances), n_labels]`` from a ``serving_default`` signature, in batches (``predict_all``)."""
    n_labels = signature.structured_outputs[c.OUTPUT_PROBABILITIES].shape[-1]
    return predict_all(signature_outputs(signature), utterances, n_labels)[0]


def predict_all(outputs_of, utterances: list[str], n_labels: int, entity_tags: list[str] | None = None,
                entity_threshold: float = 0.0):
    """``(probabilities [n, n_labels], entity spans per utterance or None)`` over any number of
    utterances, in batches of ``PREDICT_BATCH``; ``outputs_of(batch)`` returns the signature's
    outputs as arrays. Spans are decoded per batch (their token axis differs between batches);
    those below ``entity_threshold`` are left out."""
    utterances = list(utterances)
    probabilities, entities = [], [] if entity_tags else None
    for i in range(0, len(utterances), PREDICT_BATCH):
        batch = utterances[i : i + PREDICT_BATCH]
        outputs = outputs_of(batch)
        probabilities.append(outputs[c.OUTPUT_PROBABILITIES])
        if entities is not None:
            entities += spans_from_outputs(batch, outputs, entity_tags, entity_threshold)
    if not probabilities:
        return np.zeros((0, n_labels), dtype="float32"), entities
    return np.concatenate(probabilities), entities


def signature_outputs(signature):
    """``outputs_of`` for ``predict_all`` over a loaded ``serving_default`` signature."""
    import tensorflow as tf

    def outputs_of(batch: list[str]) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in signature(**{c.SIGNATURE_INPUT: tf.constant(batch, dtype=tf.string)}).items()}

    return outputs_of


EAGER, SESSION = "eager", "session"  # how ``load_version`` runs the serving signature


class SessionSignature:
    """The SavedModel's serving signature, loaded and run through TensorFlow's C API.

    TensorFlow's C++ loader does the work (``tf_c_session.CSession``: import, restore, init op),
    with Python's lock released for the whole load and every call, so a cold load never stalls
    the requests of loaded bots; no Python object is built per graph node or function either
    (``tf.saved_model.load`` builds ~15,000 per version of botyard's model), so dropping a
    version frees it without a long garbage-collection pass. The graph loaded is the version's
    serving graph (``serving_graph``: only what ``serving_default`` needs, inlined and optimized
    at export, so the first call costs ~20 ms instead of ~240), and the second copy of the
    weights the export writes is freed right after the restore. The same ops run on the same
    variables, so the outputs equal ``tf.saved_model.load``'s. Grappler is off in the session:
    the graph was optimized once, at export.
    """

    def __init__(self, saved_model_dir: str):
        import tempfile

        from tensorflow.core.protobuf import config_pb2, saved_model_pb2
        from tensorflow.python.util import deprecation

        from botyard.components.base.tf_c_session import CSession, TFError

        meta_graph = serving_meta_graph(saved_model_dir)
        signature = meta_graph.signature_def[c.SERVING_SIGNATURE]
        self._names = list(signature.outputs)
        tensors = [signature.outputs[name].name for name in self._names]
        with deprecation.silence():
            free = _free_unused_variables(meta_graph.graph_def, tensors)
        config = config_pb2.ConfigProto(
            # Run each call in the caller's thread, one core per op: a load runs on its loader
            # thread alone instead of occupying every core that requests to loaded bots need;
            # a request's small ops gain nothing from more threads.
            inter_op_parallelism_threads=-1,
            intra_op_parallelism_threads=1,
        )
        config.graph_options.rewrite_options.disable_meta_optimizer = True
        with tempfile.TemporaryDirectory(prefix="botyard-serving-graph-") as pruned:
            # the cut-down graph beside links to the version's files (nothing is copied)
            saved_model = saved_model_pb2.SavedModel(saved_model_schema_version=1, meta_graphs=[meta_graph])
            with open(os.path.join(pruned, "saved_model.pb"), "wb") as f:
                f.write(saved_model.SerializeToString())
            for name in ("variables", "assets"):
                if os.path.exists(os.path.join(saved_model_dir, name)):
                    os.symlink(os.path.abspath(os.path.join(saved_model_dir, name)), os.path.join(pruned, name))
            try:
                self._session = CSession(pruned, config.SerializeToString())
            except TFError as exc:  # name the version's folder, not this temporary one
                raise TFError(str(exc).replace(pruned, saved_model_dir)) from None
        if free:
            self._session.run(targets=self._session.operations([free]))
        self._input = self._session.outputs([signature.inputs[c.SIGNATURE_INPUT].name])[0]
        self._fetches = self._session.outputs(tensors)

    def __call__(self, utterances: list[str]) -> dict[str, np.ndarray]:
        """Every output of ``serving_default`` for one batch."""
        values = self._session.run(self._input, list(utterances), self._fetches)
        return dict(zip(self._names, values))


_FREE_UNUSED = "botyard_free_unused_variables"


def _free_unused_variables(graph_def, outputs: list[str]) -> str | None:
    """Add an op that frees the variables the serving outputs never read; returns its name.

    The restore fills every variable of the checkpoint, and Keras's export saves each weight
    twice (the layers' variables and the copies the traced functions capture): only one copy is
    used, so running this op after the restore frees the other half of the model's weights.
    """
    from tensorflow.python.framework import graph_util

    used = {node.name for node in graph_util.extract_sub_graph(graph_def, [o.split(":")[0] for o in outputs]).node}
    unused = [node.name for node in graph_def.node if node.op == "VarHandleOp" and node.name not in used]
    if not unused:
        return None
    for k, variable in enumerate(unused):
        node = graph_def.node.add(name=f"{_FREE_UNUSED}/{k}", op="DestroyResourceOp", input=[variable])
        node.attr["ignore_lookup_error"].b = True
    graph_def.node.add(name=_FREE_UNUSED, op="NoOp", input=[f"^{_FREE_UNUSED}/{k}" for k in range(len(unused))])
    return _FREE_UNUSED


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

    @property
    def entity_tags(self) -> list[str] | None:
        """The entity tagger's tag set, or ``None``: this version has no tagger."""
        return self.metadata.get(c.ENTITY_TAGS)

    @property
    def entity_threshold(self) -> float:
        """Spans less confident than this are not returned (0 for a version that records none)."""
        return float(self.metadata.get(c.ENTITY_THRESHOLD) or 0.0)

    def outputs(self, utterances: list[str]) -> dict[str, np.ndarray]:
        """One batch through the signature: every output (the predictor's per-request call)."""
        if isinstance(self._signature, SessionSignature):
            return self._signature(list(utterances))
        import tensorflow as tf

        outputs = self._signature(**{c.SIGNATURE_INPUT: tf.constant(utterances, dtype=tf.string)})
        return {name: value.numpy() for name, value in outputs.items()}

    def probabilities(self, utterances: list[str]) -> np.ndarray:
        """One batch's intent probabilities."""
        return self.outputs(utterances)[c.OUTPUT_PROBABILITIES]

    def predict(self, utterances: list[str]) -> tuple[np.ndarray, list[list[dict]] | None]:
        """One batch's intent probabilities and entity spans (``None`` without a tagger)."""
        outputs = self.outputs(utterances)
        tags = self.entity_tags
        spans = spans_from_outputs(list(utterances), outputs, tags, self.entity_threshold) if tags else None
        return outputs[c.OUTPUT_PROBABILITIES], spans

    def predict_all(self, utterances: list[str]) -> tuple[np.ndarray, list[list[dict]] | None]:
        """``predict`` over any number of utterances, in batches (scoring a data set)."""
        return predict_all(self.outputs, utterances, len(self.labels), self.entity_tags, self.entity_threshold)

    def probabilities_of(self, utterances: list[str]) -> np.ndarray:
        """Any number of utterances' intent probabilities, in batches (scoring a data set)."""
        return self.predict_all(utterances)[0]


def _check_metadata(path: str, meta: dict) -> tuple[tuple[str, ...], float]:
    labels = meta[c.LABELS]
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ModelLoadError(f"{path}: '{c.LABELS}' must be a non-empty list of intent names")
    _check_probability(path, c.ENTITY_THRESHOLD, meta.get(c.ENTITY_THRESHOLD, 0.0))
    return tuple(labels), _check_probability(path, c.OOS_THRESHOLD, meta[c.OOS_THRESHOLD])


def _check_probability(path: str, key: str, value) -> float:
    """``value`` of metadata ``key`` as a float from 0 to 1, or ``ModelLoadError`` naming both."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ModelLoadError(f"{path}: '{key}' = {value!r}; expected a number from 0 to 1")
    return float(value)


def load_version(store: ModelStore, bot_id: str, version: str, runtime: str = EAGER) -> LoadedVersion:
    """Load one version, check it against its metadata and replay its warm-up requests.

    ``runtime`` ``"session"`` runs the signature through ``SessionSignature`` (the predictor,
    which loads and evicts many versions); ``"eager"`` through ``tf.saved_model.load``.

    Raises ``ModelStoreError`` (``ModelLoadError`` when files are corrupt or inconsistent).
    """
    import tensorflow as tf

    if runtime not in (EAGER, SESSION):
        raise ValueError(f"runtime must be {EAGER!r} or {SESSION!r}, not {runtime!r}")
    started = time.perf_counter()
    local_dir = store.local_version(bot_id, version)  # object storage: a checked copy in the local cache
    meta = read_metadata(os.path.join(local_dir, c.METADATA_FILE))
    labels, threshold = _check_metadata(f"{store.version_dir(bot_id, version)}/{c.METADATA_FILE}", meta)
    saved_model_dir = os.path.join(local_dir, c.SAVED_MODEL_DIR)
    shown = store.saved_model_dir(bot_id, version)  # messages name the store's URI, not the cache
    saved_model = None
    try:
        if runtime == SESSION:
            signature = SessionSignature(saved_model_dir)
        else:
            saved_model = tf.saved_model.load(saved_model_dir)
            signature = saved_model.signatures[c.SERVING_SIGNATURE]
    except Exception as exc:  # TF raises many types (OSError, ValueError, DecodeError, ...)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelLoadError(
            f"{shown}: cannot load the SavedModel's '{c.SERVING_SIGNATURE}' signature "
            f"({type(exc).__name__}: {first_line[:300]})"
        ) from exc
    if saved_model is not None:
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
