"""One bot behind the predictor: a ``kserve.Model`` answering with the bot's loaded version.

Requests (the KServe model name is the bot id)::

    V1  POST /v1/models/<bot_id>:predict    {"instances": ["utterance", ...]}
    V2  POST /v2/models/<bot_id>/infer      {"inputs": [{"name": "utterances", "datatype": "BYTES",
                                                         "shape": [N], "data": ["utterance", ...]}]}

A V2 request has exactly one BYTES input of shape ``[N]`` (or ``[N, 1]``); with a single
input its name is not checked, with several one must be named ``utterances``.

V1 response: one prediction per instance::

    {"predictions": [{"intent": "greet", "confidence": 0.93,
                      "ranking": [{"intent": "greet", "confidence": 0.93}, ...],   # top k
                      "out_of_scope": false, "model_version": "20261101T120000Z-ab12cd34",
                      "entities": [{"entity": "size", "value": "large", "start": 8, "end": 13,
                                    "confidence": 0.97}]}]}

``entities`` appears only when the version has an entity tagger (its data had entity spans):
``start``/``end`` are character (code point) offsets into the utterance, end exclusive, so
``utterance[start:end] == value``; ``confidence`` is the lowest probability of its tokens' tags.
``answer(loaded, utterances)`` returns these predictions without a server (notebooks, scripts).

V2 response: ``model_version`` is the version that answered; outputs, each of shape ``[N]``:

    ==================  ========  ======================================================
    ``intent``          BYTES     top in-scope intent (a learned ``oos`` intent is never one)
    ``confidence``      FP32      its probability
    ``out_of_scope``    BOOL      confidence below the version's ``oos_threshold``
    ``ranking``         BYTES     JSON text ``[{"intent": ..., "confidence": ...}, ...]``
                                  (top k, best first)
    ``entities``        BYTES     JSON text of the V1 ``entities`` list (versions with an
                                  entity tagger only)
    ==================  ========  ======================================================

A request's ``outputs`` may ask for a subset of these. Bad requests raise
``botyard.components.base.errors.RequestError`` subclasses; ``botyard.components.predictor.errors`` maps them to
HTTP statuses.

Loading is ``pool.BotPool``'s job (on the first request, or ahead of time); ``ready`` says
whether a version is loaded. Hot swap: a ``BotModel`` holds one immutable ``LoadedVersion``. A new version is loaded and
warmed up beside it (``load_version``) and then swapped in with one reference assignment; a
request reads the reference once, so requests in flight finish on the version they began
with and no request ever sees a half-loaded model.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from botyard.components.base import contracts as c
from botyard.components.base.errors import RequestError, RequestTooLargeError
from botyard.components.base.model_io import LoadedVersion
from botyard.components.predictor import import_kserve

kserve = import_kserve()
from kserve.errors import ModelNotReady  # noqa: E402
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse  # noqa: E402

from botyard.components.base.decision import answerable_scores, decisions  # noqa: E402
from botyard.components.predictor.errors import to_grpc_error  # noqa: E402

log = logging.getLogger(__name__)

OUTPUT_INTENT = "intent"
OUTPUT_CONFIDENCE = "confidence"
OUTPUT_OUT_OF_SCOPE = "out_of_scope"
OUTPUT_RANKING = "ranking"
OUTPUT_ENTITIES = "entities"
MODEL_VERSION = "model_version"
INSTANCES = "instances"


@dataclass(frozen=True)
class RequestLimits:
    """Per-request limits and the ranking length; see ``config.ServeConfig`` for defaults."""

    max_batch: int = 64
    max_utterance_chars: int = 512
    top_k: int = 3


def rank(probabilities: np.ndarray, labels: tuple[str, ...], oos_threshold: float, top_k: int, version: str) -> list[dict]:
    """V1 predictions: top intent, confidence, top-k ranking, out-of-scope flag, version.

    The same decision rule as evaluation (``botyard.components.base.decision.decisions``): a
    learned ``oos`` intent is never an answer; its probability lowers the top intent's.
    """
    scored = answerable_scores(probabilities, list(labels))
    _, out_of_scope = decisions(probabilities, list(labels), oos_threshold)
    k = min(top_k, int((scored[0] >= 0).sum()) if len(scored) else top_k)
    order = np.argsort(-scored, axis=1, kind="stable")[:, :k]
    predictions = []
    for row, indices, rejected in zip(probabilities, order, out_of_scope):
        ranking = [{"intent": labels[i], "confidence": float(row[i])} for i in indices]
        top = ranking[0]
        predictions.append(
            {
                "intent": top["intent"],
                "confidence": top["confidence"],
                "ranking": ranking,
                "out_of_scope": bool(rejected),
                MODEL_VERSION: version,
            }
        )
    return predictions


def predictions_of(loaded: LoadedVersion, probabilities: np.ndarray, entities: list[list[dict]] | None,
                   top_k: int) -> list[dict]:
    """``loaded``'s V1 predictions from its outputs for a batch: ``rank``'s, with each utterance's
    entity spans added as ``entities`` (``entities`` is ``None`` for a version without a tagger)."""
    predictions = rank(probabilities, loaded.labels, loaded.oos_threshold, top_k, loaded.version)
    if entities is not None:
        for prediction, spans in zip(predictions, entities):
            prediction[OUTPUT_ENTITIES] = spans
    return predictions


def answer(loaded: LoadedVersion, utterances: list[str], top_k: int = RequestLimits.top_k) -> list[dict]:
    """The V1 predictions ``botyard serve`` answers for ``utterances`` with ``loaded``: intent,
    confidence, ranking, out-of-scope flag, version and, with a tagger, entities (what notebooks
    and scripts call to see exactly what a client gets, without a server)."""
    return predictions_of(loaded, *loaded.predict(utterances), top_k)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _check_text(value: str, where: str) -> str:
    """``value`` if it can be encoded as UTF-8 (TensorFlow's strings); a lone surrogate cannot."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start].encode("unicode_escape").decode()
        raise RequestError(f"{where} is not valid Unicode text: a lone surrogate ({bad}) at character {exc.start}") from exc
    return value


def _is_json(headers: dict | None) -> bool:
    """A JSON media type with parameters (``application/json; charset=utf-8``), which KServe
    passes through undecoded."""
    media_type = (headers or {}).get("content-type", "").split(";")[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def _parse_json(body: bytes | str) -> dict:
    try:
        value = json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise RequestError(f"the request body is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise RequestError(f'the request body must be a JSON object like {{"instances": ["utterance", ...]}}; got {_json_type(value)}')
    return value


@dataclass
class _Batch:
    utterances: list[str]
    v2_request: InferRequest | None = None


class BotModel(kserve.Model):
    """The KServe model of one bot; ``swap`` replaces the version it answers with."""

    def __init__(self, bot_id: str, limits: RequestLimits = RequestLimits()):
        super().__init__(bot_id)
        self.limits = limits
        self._active: LoadedVersion | None = None
        self.target_version: str | None = None  # the version the store points at
        self.load_error: str | None = None  # why ``target_version`` could not be served

    # --- state, written by the server's loader thread ------------------------------------------
    @property
    def active(self) -> LoadedVersion | None:
        return self._active

    def swap(self, loaded: LoadedVersion) -> LoadedVersion | None:
        """Answer with ``loaded`` from now on; returns the version it replaces."""
        previous, self._active = self._active, loaded
        self.ready = True
        return previous

    def unload(self) -> LoadedVersion | None:
        """Drop the loaded version (evicted); returns it. The next request loads the bot again."""
        previous, self._active = self._active, None
        self.ready = False
        return previous

    def not_ready_reason(self) -> str:
        if self.load_error:
            return self.load_error
        if self.target_version:
            return f"version {self.target_version} is loading"
        return "not loaded: it loads on its first request"

    def load(self) -> bool:
        # Loading is the server's job (``load_version`` + ``swap``); KServe calls this on a
        # model that is not ready, which must not block a request.
        return self.ready

    # --- KServe handlers ------------------------------------------------------------------------
    async def __call__(self, body, headers=None, verb=kserve.model.InferenceVerb.PREDICT):
        try:
            return await super().__call__(body, headers, verb)
        except (RequestError, ModelNotReady) as exc:
            if isinstance(body, InferRequest) and body.from_grpc:
                raise to_grpc_error(exc) from exc
            raise

    def validate(self, payload):
        return payload  # ``preprocess`` validated it

    def get_input_types(self) -> list[dict]:
        return [{"name": c.SIGNATURE_INPUT, "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        return [
            {"name": OUTPUT_INTENT, "datatype": "BYTES", "shape": [-1]},
            {"name": OUTPUT_CONFIDENCE, "datatype": "FP32", "shape": [-1]},
            {"name": OUTPUT_OUT_OF_SCOPE, "datatype": "BOOL", "shape": [-1]},
            {"name": OUTPUT_RANKING, "datatype": "BYTES", "shape": [-1]},
            *([{"name": OUTPUT_ENTITIES, "datatype": "BYTES", "shape": [-1]}] if self._has_entities() else []),
        ]

    def _has_entities(self) -> bool:
        active = self._active
        return active is not None and bool(active.entity_tags)

    async def preprocess(self, payload, headers=None) -> _Batch:
        if isinstance(payload, InferRequest):
            batch = _Batch(self._v2_utterances(payload), payload)
        elif isinstance(payload, dict):
            batch = _Batch(self._v1_utterances(payload))
        elif isinstance(payload, (bytes, str)) and _is_json(headers):
            batch = _Batch(self._v1_utterances(_parse_json(payload)))
        elif isinstance(payload, (bytes, str)):
            raise RequestError(
                "the request body must be JSON sent as 'Content-Type: application/json', "
                'like {"instances": ["utterance", ...]}'
            )
        else:
            raise RequestError(
                f'the request body must be a JSON object like {{"instances": ["utterance", ...]}}; '
                f"got {_json_type(payload)}"
            )
        self._check_limits(batch.utterances)
        return batch

    def _v1_utterances(self, body: dict) -> list[str]:
        if INSTANCES not in body:
            raise RequestError(f"'{INSTANCES}' is missing: send {{\"instances\": [\"utterance\", ...]}}")
        instances = body[INSTANCES]
        if not isinstance(instances, list):
            raise RequestError(f"'{INSTANCES}' must be a list of utterances; got {_json_type(instances)}")
        self._check_batch(len(instances), f"'{INSTANCES}'")
        for i, value in enumerate(instances):
            if not isinstance(value, str):
                raise RequestError(f"{INSTANCES}[{i}] is {_json_type(value)}; every instance must be a string (an utterance)")
            _check_text(value, f"{INSTANCES}[{i}]")
        return instances

    def _v2_utterances(self, request: InferRequest) -> list[str]:
        inputs = request.inputs
        if len(inputs) == 1:
            tensor = inputs[0]
        else:
            named = [t for t in inputs if t.name == c.SIGNATURE_INPUT]
            if len(named) != 1:
                raise RequestError(
                    f"a V2 request needs one input named '{c.SIGNATURE_INPUT}' (BYTES, shape [N]); "
                    f"got inputs {[t.name for t in inputs]}"
                )
            tensor = named[0]
        where = f"input '{tensor.name}'"
        if tensor.datatype != "BYTES":
            raise RequestError(f"{where} has datatype {tensor.datatype}; send the utterances as BYTES")
        shape = list(tensor.shape or [])
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or any(
            not isinstance(d, int) or d < 0 for d in shape
        ):
            raise RequestError(f"{where} has shape {shape}; expected [N] (or [N, 1]) for N utterances")
        self._check_batch(shape[0], where)
        try:
            values = tensor.as_numpy().reshape(-1).tolist()
        except (ValueError, TypeError) as exc:
            raise RequestError(f"{where}: its data does not match shape {shape} ({exc})") from exc
        utterances = []
        for i, value in enumerate(values):
            if isinstance(value, bytes):
                try:
                    value = value.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise RequestError(f"{where}: element {i} is not valid UTF-8") from exc
            if not isinstance(value, str):
                raise RequestError(f"{where}: element {i} is {_json_type(value)}; every element must be a string")
            utterances.append(_check_text(value, f"{where}: element {i}"))
        return utterances

    def _check_batch(self, size: int, where: str) -> None:
        if size == 0:
            raise RequestError(f"{where} is empty: send at least one utterance")
        if size > self.limits.max_batch:
            raise RequestTooLargeError(
                f"{where} holds {size} utterances; this predictor accepts at most {self.limits.max_batch} "
                "a request (--max-batch): split the batch"
            )

    def _check_limits(self, utterances: list[str]) -> None:
        limit = self.limits.max_utterance_chars
        for i, utterance in enumerate(utterances):
            if len(utterance) > limit:
                raise RequestTooLargeError(
                    f"utterance {i} has {len(utterance)} characters; the limit is {limit} (--max-utterance-chars)"
                )

    async def predict(self, batch: _Batch, headers=None):
        active = self._active  # read once: a swap during this request does not affect it
        if active is None:
            raise ModelNotReady(self.name, self.not_ready_reason())
        probabilities, entities = active.predict(batch.utterances)
        return active, probabilities, entities, batch

    async def postprocess(self, result, headers=None, response_headers=None):
        active, probabilities, entities, batch = result
        predictions = predictions_of(active, probabilities, entities, self.limits.top_k)
        if batch.v2_request is None:
            return {"predictions": predictions}
        request = batch.v2_request
        outputs = []
        columns = [
            (OUTPUT_INTENT, "BYTES", np.array([p["intent"] for p in predictions], dtype=object)),
            (OUTPUT_CONFIDENCE, "FP32", np.array([p["confidence"] for p in predictions], dtype=np.float32)),
            (OUTPUT_OUT_OF_SCOPE, "BOOL", np.array([p["out_of_scope"] for p in predictions], dtype=bool)),
            (OUTPUT_RANKING, "BYTES", np.array([json.dumps(p["ranking"]) for p in predictions], dtype=object)),
        ]
        if entities is not None:
            columns.append((OUTPUT_ENTITIES, "BYTES", np.array([json.dumps(e, ensure_ascii=False) for e in entities], dtype=object)))
        for name, datatype, values in columns:
            output = InferOutput(name=name, shape=[len(predictions)], datatype=datatype)
            output.set_data_from_numpy(values, binary_data=False)
            outputs.append(output)
        return InferResponse(
            response_id=request.id or str(uuid.uuid4()),
            model_name=self.name,
            model_version=active.version,
            infer_outputs=outputs,
            requested_outputs=request.request_outputs,
        )


