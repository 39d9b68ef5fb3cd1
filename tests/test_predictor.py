"""The KServe predictor, run for real: ``start_predictor`` starts it in a subprocess on
127.0.0.1 (free port, gRPC off) over a model store of tiny trained models, and the tests
talk V1/V2 HTTP to it.

Store served (built once per session; training two tiny models takes ~20 s)::

    alpha       CURRENT -> model A (greet / weather / bye), oos_threshold 0.0
    beta        two versions of model B (order / hours), CURRENT -> the older one; oos_threshold 0.99
    unblessed   one version of model A, never promoted: not served (404, no live version)
    broken      CURRENT -> a version whose saved_model.pb is garbage
    dangling    CURRENT -> a version that does not exist
    mislabeled  CURRENT -> model A with 4 labels in metadata (fails its warm-up check)
    swap        CURRENT -> model A; the hot-swap test promotes model B under it
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import urllib.error
import urllib.request

import pytest

from botyard.components.base import contracts as c
from botyard.components.base.errors import ConfigError
from botyard.components.base.model_store import ModelStore

from predictor_models import train_tiny_models
from waiting import wait_for

pytestmark = pytest.mark.slow

TOP_K = 2
MAX_BATCH = 8
MAX_CHARS = 50


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """Two tiny trained models: ``{"A": (saved_model_dir, metadata), "B": (...)}``."""
    return train_tiny_models(tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="session")
def store(models, tmp_path_factory) -> ModelStore:
    store = ModelStore(str(tmp_path_factory.mktemp("models")))
    (a_dir, a_meta), (b_dir, b_meta) = models["A"], models["B"]
    store.promote("alpha", store.register("alpha", a_dir, a_meta))
    store.promote("beta", store.register("beta", b_dir, {**b_meta, c.OOS_THRESHOLD: 0.99}))
    store.register("beta", b_dir, {**b_meta, c.OOS_THRESHOLD: 0.99})
    store.register("unblessed", a_dir, a_meta)
    broken = store.register("broken", a_dir, a_meta)
    with open(os.path.join(store.saved_model_dir("broken", broken), "saved_model.pb"), "wb") as f:
        f.write(b"this is not a SavedModel")
    store.promote("broken", broken)
    store.register("dangling", a_dir, a_meta)
    with open(os.path.join(store.bot_dir("dangling"), c.CURRENT_POINTER), "w") as f:
        f.write("20260101T000000Z-00000000\n")
    store.promote("mislabeled", store.register("mislabeled", a_dir, {**a_meta, c.LABELS: ["a", "b", "c", "d"]}))
    store.promote("swap", store.register("swap", a_dir, a_meta))
    return store


@pytest.fixture(scope="session")
def predictor(store, tmp_path_factory):
    from botyard.components.base.predictor_client import start_predictor

    log_path = str(tmp_path_factory.mktemp("predictor") / "predictor.log")
    extra = ["--max-batch", str(MAX_BATCH), "--max-utterance-chars", str(MAX_CHARS), "--top-k", str(TOP_K)]
    with start_predictor(store.root, reload_interval=0.3, extra_args=extra, ready_timeout=180, log_path=log_path) as p:
        yield p


# --- predictions ----------------------------------------------------------------------------------
def _check_prediction(prediction: dict, labels: list[str], threshold: float, version: str) -> None:
    assert set(prediction) == {"intent", "confidence", "ranking", "out_of_scope", "model_version"}
    ranking = prediction["ranking"]
    assert len(ranking) == TOP_K
    assert all(set(r) == {"intent", "confidence"} and r["intent"] in labels for r in ranking)
    assert [r["confidence"] for r in ranking] == sorted((r["confidence"] for r in ranking), reverse=True)
    assert prediction["intent"] == ranking[0]["intent"]
    assert prediction["confidence"] == ranking[0]["confidence"]
    assert 0.0 <= prediction["confidence"] <= 1.0
    assert prediction["out_of_scope"] is (prediction["confidence"] < threshold)
    assert prediction["model_version"] == version


def test_v1_predictions_for_two_bots_from_one_process(predictor, store, models):
    status, body = predictor.predict("alpha", ["hello there", "will it rain tomorrow", "bye now"])
    assert status == 200, body
    assert len(body["predictions"]) == 3
    for p in body["predictions"]:
        _check_prediction(p, models["A"][1][c.LABELS], 0.0, store.current("alpha"))

    status, body = predictor.predict("beta", ["a latte please"])
    assert status == 200, body
    # beta's promoted version answers, not its newer unpromoted one; its threshold 0.99 flags the answer out of scope
    (prediction,) = body["predictions"]
    _check_prediction(prediction, ["hours", "order"], 0.99, store.current("beta"))
    assert prediction["out_of_scope"] is True
    assert store.current("beta") == store.versions("beta")[0] != store.latest("beta")


def test_v2_infer_for_two_bots(predictor, store):
    status, body = predictor.infer("beta", ["a latte please", "when do you open"], request_id="req-1")
    assert status == 200, body
    assert body["id"] == "req-1"
    assert body["model_name"] == "beta"
    assert body["model_version"] == store.current("beta")
    outputs = {o["name"]: o for o in body["outputs"]}
    assert {name: (o["datatype"], o["shape"]) for name, o in outputs.items()} == {
        "intent": ("BYTES", [2]), "confidence": ("FP32", [2]), "out_of_scope": ("BOOL", [2]), "ranking": ("BYTES", [2]),
    }  # fmt: skip
    assert set(outputs["intent"]["data"]) <= {"order", "hours"}
    assert outputs["out_of_scope"]["data"] == [True, True]
    import json

    rankings = [json.loads(r) for r in outputs["ranking"]["data"]]
    assert [r[0]["intent"] for r in rankings] == outputs["intent"]["data"]
    assert [r[0]["confidence"] for r in rankings] == pytest.approx(outputs["confidence"]["data"], rel=1e-6)

    status, body = predictor.infer("alpha", ["hello"])
    assert status == 200, body
    assert body["id"]  # filled in when the request has none
    assert body["model_version"] == store.current("alpha")
    assert {o["name"]: o["data"] for o in body["outputs"]}["out_of_scope"] == [False]


def test_json_content_type_with_charset(predictor):
    headers = {"Content-Type": "application/json; charset=utf-8"}
    status, body = predictor.request("POST", "/v1/models/alpha:predict", {"instances": ["héllo ☕"]}, headers=headers)
    assert status == 200 and len(body["predictions"]) == 1
    status, body = predictor.request("POST", "/v2/models/alpha/infer", _v2(["héllo ☕"]), headers=headers)
    assert status == 200 and body["outputs"][0]["shape"] == [1]


def test_v2_requested_outputs_subset(predictor):
    body = {
        "inputs": [{"name": "utterances", "datatype": "BYTES", "shape": [1], "data": ["hi"]}],
        "outputs": [{"name": "intent"}],
    }
    status, response = predictor.request("POST", "/v2/models/alpha/infer", body)
    assert status == 200, response
    assert [o["name"] for o in response["outputs"]] == ["intent"]


# --- health and metadata ---------------------------------------------------------------------------
def test_health_readiness_and_metadata(predictor, store):
    assert predictor.request("GET", "/v2/health/live") == (200, {"live": True})
    assert predictor.request("GET", "/v2/health/ready") == (200, {"ready": True})
    assert predictor.predict("alpha", ["hello"])[0] == 200  # loaded by its first request
    assert predictor.request("GET", "/v2/models/alpha/ready") == (200, {"name": "alpha", "ready": True})
    assert predictor.request("GET", "/v1/models/alpha") == (200, {"name": "alpha", "ready": True})
    status, meta = predictor.request("GET", "/v2/models/alpha")
    assert status == 200
    assert meta["name"] == "alpha" and meta["versions"] == [store.current("alpha")]
    assert meta["inputs"] == [{"name": "utterances", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in meta["outputs"]] == ["intent", "confidence", "out_of_scope", "ranking"]
    status, body = predictor.request("GET", "/v2/models/nope/ready")
    assert status == 404 and "bot 'nope' is not served" in body["error"]


# --- bad requests: exact status and a message that says what is wrong --------------------------------
V1 = "/v1/models/alpha:predict"
V2 = "/v2/models/alpha/infer"
JSON = {"Content-Type": "application/json"}


def _v2(data, datatype="BYTES", shape=None):
    return {"inputs": [{"name": "utterances", "datatype": datatype, "shape": shape or [len(data)], "data": data}]}


@pytest.mark.parametrize(
    "path, body, headers, status, message",
    [
        ("/v1/models/nope:predict", {"instances": ["hi"]}, JSON, 404, "bot 'nope' is not served by this predictor; served bots: alpha, beta"),
        ("/v2/models/nope/infer", _v2(["hi"]), JSON, 404, "bot 'nope' is not served"),
        (V1, '{"instances": ["hi"', JSON, 400, "the request body is not valid JSON"),
        (V2, '{"inputs": [', JSON, 400, "the request body is not valid JSON"),
        (V1, '{"instances": ["hi"', {"Content-Type": "application/json; charset=utf-8"}, 400, "the request body is not valid JSON"),
        (V1, '{"instances": ["hi"]}', {"Content-Type": "text/plain"}, 400, "the request body must be JSON sent as 'Content-Type: application/json'"),
        (V1, {"utterances": ["hi"]}, JSON, 400, "'instances' is missing"),
        (V1, {"instances": []}, JSON, 400, "'instances' is empty: send at least one utterance"),
        (V1, {"instances": "hi"}, JSON, 400, "'instances' must be a list of utterances; got str"),
        (V1, ["hi"], JSON, 400, "the request body must be a JSON object"),
        (V1, {"instances": ["hi", 3]}, JSON, 400, "instances[1] is a number; every instance must be a string"),
        (V1, {"instances": [{"text": "hi"}]}, JSON, 400, "instances[0] is an object"),
        (V1, {"instances": ["x" * (MAX_CHARS + 1)]}, JSON, 413, f"utterance 0 has {MAX_CHARS + 1} characters; the limit is {MAX_CHARS}"),
        (V1, {"instances": ["hi"] * (MAX_BATCH + 1)}, JSON, 413, f"'instances' holds {MAX_BATCH + 1} utterances; this predictor accepts at most {MAX_BATCH}"),
        (V2, _v2([]), JSON, 400, "input 'utterances' is empty"),
        (V2, _v2(["hi", 3]), JSON, 400, "input 'utterances': element 1 is a number"),
        (V2, _v2([1.5], datatype="FP32"), JSON, 400, "input 'utterances' has datatype FP32; send the utterances as BYTES"),
        (V2, _v2(["hi"] * (MAX_BATCH + 1)), JSON, 413, f"holds {MAX_BATCH + 1} utterances"),
        (V2, _v2(["x" * (MAX_CHARS + 1)]), JSON, 413, "the limit is 50"),
        (V2, _v2(["a", "b"], shape=[1, 2]), JSON, 400, "has shape [1, 2]; expected [N]"),
        (V2, {"inputs": [{"name": "utterances", "datatype": "BYTES"}]}, JSON, 400, "invalid V2 inference request: inputs.0.shape: Field required"),
    ],
)  # fmt: skip
def test_bad_request_gets_exact_4xx_and_message(predictor, path, body, headers, status, message):
    got_status, got = predictor.request("POST", path, body, headers=headers)
    assert got_status == status, got
    assert set(got) == {"error"}
    assert message in got["error"]


def test_v1_verb_with_get_is_405_not_an_unknown_bot(predictor):
    # KServe routes GET /v1/models/<bot>:predict to its status route with "alpha:predict" as the name
    for verb in ("predict", "explain"):
        request = urllib.request.Request(f"{predictor.base_url}/v1/models/alpha:{verb}", method="GET")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 405
        assert refused.value.headers["Allow"] == "POST"
        assert json.loads(refused.value.read()) == {
            "error": f"GET is not allowed on /v1/models/alpha:{verb}: send the utterances with POST"
        }


# --- unblessed is never served ---------------------------------------------------------------------
NO_LIVE = (
    "bot 'unblessed' has no live version: it has 1 model version but none was promoted (a version goes live "
    "only once the promotion gate blessed it and deploy promoted it)"
)


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("POST", "/v1/models/unblessed:predict", {"instances": ["hello"]}),
        ("POST", "/v2/models/unblessed/infer", _v2(["hello"])),
        ("GET", "/v2/models/unblessed/ready", None),
        ("GET", "/v1/models/unblessed", None),
        ("GET", "/v2/models/unblessed", None),
    ],
)
def test_bot_never_promoted_answers_404_no_live_version(predictor, method, path, body):
    assert predictor.request(method, path, body) == (404, {"error": NO_LIVE})


# --- failures to load ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bot, reason",
    [
        ("broken", "failed to load: "),
        ("dangling", "failed to load: bot 'dangling' has no model version '20260101T000000Z-00000000'"),
        ("mislabeled", "metadata lists 4 labels, expected ["),  # caught by the warm-up requests
    ],
)
def test_version_that_fails_to_load_is_not_ready_and_others_keep_serving(predictor, store, bot, reason):
    status, body = predictor.predict(bot, ["hello"])
    assert status == 503
    assert body["error"].startswith(f"bot '{bot}' is not ready: version ")
    assert reason in body["error"]
    if bot == "broken":
        assert "cannot load the SavedModel's 'serving_default' signature" in body["error"]
    assert predictor.request("GET", f"/v2/models/{bot}/ready")[0] == 503
    assert predictor.request("GET", f"/v1/models/{bot}")[0] == 503
    assert predictor.request("GET", "/v2/health/ready")[0] == 200
    assert predictor.predict("alpha", ["hello"])[0] == 200


def test_waiting_for_a_bot_that_failed_to_load_fails_fast(predictor):
    from botyard.components.base.errors import DeployError
    from botyard.components.base.predictor_client import PredictorProcess

    for bot in ("alpha", "beta", "broken"):  # bots load on their first request (start_predictor preloads waited-for bots)
        predictor.predict(bot, ["hello"])
    waiter = PredictorProcess(predictor.process, predictor.host, predictor.port, predictor.log_path)
    waiter.wait_ready(10, ["alpha", "beta"])
    started = time.monotonic()
    with pytest.raises(DeployError, match="bot 'broken' is not ready: version .* failed to load"):
        waiter.wait_ready(60, ["alpha", "broken"])
    assert time.monotonic() - started < 5
    waiter.close()


# --- hot reload -------------------------------------------------------------------------------------
def test_hot_swap_to_promoted_version_drops_no_request(predictor, store, models):
    from botyard.components.base.predictor_client import PredictorClient

    old = store.current("swap")
    answers: list[tuple[int, str | None, float, float]] = []  # status, version, sent, answered
    stop = threading.Event()

    def hammer():
        client = PredictorClient(predictor.host, predictor.port)
        while not stop.is_set():
            sent = time.monotonic()
            status, body = client.predict("swap", ["hello", "a latte please"])
            answers.append((status, body["predictions"][0]["model_version"] if status == 200 else str(body), sent, time.monotonic()))
        client.close()

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(answers) >= 10, 30, "requests before the swap")
        b_dir, b_meta = models["B"]
        new = store.register("swap", b_dir, b_meta)
        store.promote("swap", new)
        wait_for(lambda: any(a[1] == new for a in answers[-5:]), 60, "the promoted version to answer")
        seen = len(answers)
        wait_for(lambda: len(answers) >= seen + 10, 30, "requests after the swap")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert [a for a in answers if a[0] != 200] == []
    versions = [a[1] for a in answers]
    assert set(versions) == {old, new}
    # a request sent before the swap may still be answered by the old version (the two client
    # threads interleave, and a loaded machine may hold one back), but none sent after the new
    # version first answered
    first_new_answered = min(answered for _, v, _, answered in answers if v == new)
    assert [a for a in answers if a[2] > first_new_answered and a[1] != new] == []
    status, body = predictor.predict("swap", ["a latte please"])
    assert body["predictions"][0]["intent"] in {"order", "hours"}  # model B's labels now
    assert predictor.request("GET", "/v2/models/swap")[1]["versions"] == [new]


def test_new_bot_is_picked_up_without_restart(predictor, store, models):
    a_dir, a_meta = models["A"]
    assert predictor.predict("late", ["hello"])[0] == 404
    store.promote("late", store.register("late", a_dir, a_meta))
    # listed at the next poll, loaded by its first request
    wait_for(lambda: predictor.predict("late", ["hello"])[0] != 404, 60, "bot 'late' to be listed")
    status, body = predictor.predict("late", ["hello"])
    assert status == 200 and body["predictions"][0]["model_version"] == store.current("late")
    assert predictor.ready("late")


# --- metrics ----------------------------------------------------------------------------------------
def test_metrics_count_requests_per_bot(predictor, store):
    from prometheus_client.parser import text_string_to_metric_families

    assert predictor.predict("alpha", ["hello"])[0] == 200
    assert predictor.predict("alpha", [])[0] == 400
    assert predictor.predict("broken", ["hello"])[0] == 503
    status, text = predictor.request("GET", "/metrics")
    assert status == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("botyard_predict_requests_total", (("bot_id", "alpha"), ("code", "200"), ("protocol", "v1")))] >= 1
    assert samples[("botyard_predict_requests_total", (("bot_id", "alpha"), ("code", "400"), ("protocol", "v1")))] >= 1
    assert samples[("botyard_predict_request_seconds_count", (("bot_id", "alpha"), ("protocol", "v1")))] >= 2
    assert samples[("botyard_model_version_info", (("bot_id", "alpha"), ("version", store.current("alpha"))))] == 1
    assert samples[("botyard_model_load_failures_total", (("bot_id", "broken"),))] >= 1
    assert samples[("request_predict_seconds_count", (("model_name", "alpha"),))] >= 1  # KServe's own


# --- pure parts, in process -------------------------------------------------------------------------
def test_rank_flags_low_confidence_and_oos_intent():
    import numpy as np

    from botyard.components.predictor.model import rank

    probs = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8]], dtype="float32")
    predictions = rank(probs, ("greet", "bye", "oos"), 0.5, 2, "v1")
    # a learned "oos" intent is never the answer: its mass makes the top in-scope intent unsure
    assert [(p["intent"], p["out_of_scope"]) for p in predictions] == [("greet", False), ("greet", True), ("greet", True)]
    assert [r["intent"] for r in predictions[2]["ranking"]] == ["greet", "bye"]
    assert [r["intent"] for r in predictions[0]["ranking"]] == ["greet", "bye"]
    assert predictions[0]["confidence"] == pytest.approx(0.7)
    assert {p["model_version"] for p in predictions} == {"v1"}


def test_serve_command_line_and_config():
    from botyard.components.predictor.config import ServeConfig, config_from_args
    from botyard.pipelines.commands import COMMAND_MODULES, serve

    assert "serve" in COMMAND_MODULES
    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["serve", "--models-root", "/m", "--port", "9000", "--grpc-port", "disabled", "--max-batch", "16",
         "--max-utterance-chars", "100", "--reload-interval", "2.5", "--top-k", "5"]
    )  # fmt: skip
    assert config_from_args(args) == ServeConfig(
        models_root="/m", http_port=9000, grpc_port=None, max_batch=16, max_utterance_chars=100, reload_interval=2.5, top_k=5
    )
    assert parser.parse_args(["serve", "--models-root", "/m", "--grpc-port", "9001"]).grpc_port == 9001
    with pytest.raises(ConfigError, match=r"ServeConfig.max_batch = 0 is out of range; allowed: 1 to 100000"):
        ServeConfig(models_root="/m", max_batch=0)
    with pytest.raises(ConfigError, match="grpc_port equals ServeConfig.http_port"):
        ServeConfig(models_root="/m", http_port=9000, grpc_port=9000)


def test_one_model_version_folder_serves_under_the_inference_service_name(store):
    """A per-bot InferenceService mounts one version folder at /mnt/models and passes --model-name."""
    from botyard.components.base.predictor_client import start_predictor

    version = store.current("alpha")
    with start_predictor(store.version_dir("alpha", version), extra_args=["--model-name", "bot-alpha-isvc"],
                         ready_timeout=180, wait_for_bots=["bot-alpha-isvc"]) as single:
        status, body = single.predict("bot-alpha-isvc", ["hello there"])
        assert status == 200 and body["predictions"][0]["model_version"] == version
        assert single.predict("alpha", ["hello"])[0] == 404


def test_the_predictors_session_runtime_answers_as_the_eager_load(store):
    """The predictor loads versions with ``runtime="session"`` (a pruned graph in a Session);
    evaluate and the gate use ``tf.saved_model.load``: same probabilities, unseen words included."""
    import numpy as np

    from botyard.components.base.model_io import SESSION, load_version

    utterances = ["hello there", "will it rain tomorrow", "zzqx unseen wörds ☕", "", "bye " * 40]
    version = store.current("alpha")
    eager = load_version(store, "alpha", version)
    session = load_version(store, "alpha", version, runtime=SESSION)
    np.testing.assert_array_equal(session.probabilities(utterances), eager.probabilities(utterances))
    np.testing.assert_array_equal(session.probabilities_of(utterances * 60), eager.probabilities_of(utterances * 60))
    with pytest.raises(ValueError, match="runtime must be 'eager' or 'session', not 'graph'"):
        load_version(store, "alpha", version, runtime="graph")
