"""Entity extraction end to end: a tiny tagger trained on the sample bot's spans, exported in
the SavedModel, evaluated, registered, gated and served over HTTP by a real predictor process.

One module-scoped training run (a small, fast tagger) feeds every test; the figures asserted
are what a user sees: the SavedModel's outputs, metadata.json, the evaluation files, the
gate's verdict and the predictor's V1/V2 answers.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from botyard.components.base import contracts as c
from botyard.components.base.config import EntityConfig, TrainConfig
from botyard.components.base.entities import (
    ENTITY_THRESHOLD_GRID, MICRO_F1, Transitions, marginals, spans_from_outputs, tag_set, viterbi,
)
from botyard.components.base.errors import ModelLoadError
from botyard.components.base.model_io import load_version
from botyard.components.base.model_store import ModelStore
from botyard.components.base.predictor_client import start_predictor
from botyard.components.base.training_data import load_training_data
from botyard.components.evaluate.core import evaluate_model_dir
from botyard.components.gate.core import GateConfig, run_gate
from botyard.components.register.core import register_model_version
from botyard.components.split.core import split_table
from botyard.components.train.crf import crf_decode
from botyard.pipelines.in_process import train_model
from botyard.pipelines.local_run import sample_bot_data

from conftest import tiny_rows

pytestmark = pytest.mark.slow

TINY_INTENTS = TrainConfig(epochs=2, embedding_dim=8, lstm_units=8, max_ngrams=200, max_char_ngrams=200, ngram_units=8)
FAST_TAGGER = EntityConfig(  # learns the sample bot's training spans in ~12 short epochs
    epochs=12, learning_rate=0.01, embedding_dim=32, lstm_units=32, char_filters=16, patience=12, dropout=0.1,
    word_dropout=0.05,
)


def test_in_graph_decoding_equals_the_reference_viterbi_and_marginals():
    tags = tag_set(["size", "time"])
    rng = np.random.default_rng(0)
    for steps in (1, 2, 6):
        scores = rng.normal(size=(4, steps, len(tags)))
        lengths = np.array([steps, 1, max(1, steps - 1), steps])
        learned = Transitions(rng.normal(size=len(tags)), rng.normal(size=(len(tags), len(tags))), rng.normal(size=len(tags)))
        mask = np.arange(steps)[None] < lengths[:, None]
        ids, confidence = crf_decode(tf.constant(scores, tf.float32), tf.constant(mask), learned.start, learned.pairs, learned.end, tags)
        expected = viterbi(scores, lengths, tags, learned)
        np.testing.assert_array_equal(ids.numpy(), expected)
        chosen = np.take_along_axis(marginals(scores, lengths, tags, learned), np.maximum(expected, 0)[..., None], 2)[..., 0]
        np.testing.assert_allclose(confidence.numpy(), np.where(mask, chosen, 0.0), atol=1e-4)
    # a batch without a single token decodes to nothing
    n = len(tags)
    ids, _ = crf_decode(tf.zeros([2, 0, n]), tf.zeros([2, 0], tf.bool), tf.zeros(n), tf.zeros([n, n]), tf.zeros(n), tags)
    assert ids.shape == (2, 0)


@pytest.fixture(scope="module")
def sample_bot(tmp_path_factory):
    """The sample bot trained (tiny intent model, fast tagger), evaluated and registered."""
    root = tmp_path_factory.mktemp("entities")
    data = load_training_data(sample_bot_data())
    parts = split_table(data.table)
    model_dir, evaluation_dir = str(root / "model"), str(root / "evaluation")
    result = train_model(parts["train"], parts["val"], TINY_INTENTS, model_dir, FAST_TAGGER)
    evaluation = evaluate_model_dir(model_dir, parts["val"], parts["test"], evaluation_dir)
    models = str(root / "models")
    version, _ = register_model_version(models, "sample-bot", model_dir, evaluation_dir, data.data_hash)
    # a training utterance with two or more spans that the tagger gets right: the offset tests
    # below move it around in the text and check that every span moves with it
    loaded = load_version(ModelStore(models), "sample-bot", version)
    train = parts["train"][[len(s) >= 2 for s in parts["train"][c.ENTITIES]]]
    _, predicted = loaded.predict_all(train[c.UTTERANCE].tolist())
    learned = [(text, want) for text, want, got in zip(train[c.UTTERANCE], train[c.ENTITIES], predicted) if _key(want) == _key(got)]
    assert learned, "the tagger got no training utterance with two spans right"
    return {"parts": parts, "result": result, "evaluation": evaluation, "models": models, "version": version,
            "model_dir": model_dir, "evaluation_dir": evaluation_dir, "root": root, "learned": learned[0]}


def _key(spans):
    return sorted((s["entity"], s["start"], s["end"]) for s in spans)


def _shifted(spans, by: int):
    return [(s["entity"], s["value"], s["start"] + by, s["end"] + by) for s in sorted(spans, key=lambda s: s["start"])]


def test_the_tagger_learns_the_sample_bots_spans_with_exact_offsets(sample_bot):
    store = ModelStore(sample_bot["models"])
    loaded = load_version(store, "sample-bot", sample_bot["version"])
    meta = loaded.metadata
    assert meta[c.ENTITY_TAGS] == tag_set(["day", "drink", "food", "order_number", "place", "size"])
    assert meta[c.TOKENIZER]["tokenizer"] == "botyard-words-v1" and set(meta[c.ENTITY_TRANSITIONS]) == {"start", "pairs", "end"}
    assert meta[c.TOKENIZER]["word_vectors"] == "glove-6b-50d" and "vector_words" not in meta[c.TOKENIZER]
    train = sample_bot["parts"]["train"]
    _, predicted = loaded.predict_all(train[c.UTTERANCE].tolist())
    from botyard.components.base.entities import span_scores

    assert span_scores(list(train[c.ENTITIES]), predicted)[MICRO_F1] >= 0.8  # it learned its training spans
    # offsets are code points into the utterance as sent: spaces, punctuation, accents and emoji before a value
    order, expected = sample_bot["learned"]
    for prefix in ("", "  ", "😊 ", "¡Olé!  "):
        text = prefix + order
        _, [spans] = loaded.predict([text])
        assert [(s["entity"], s["value"], s["start"], s["end"]) for s in spans] == _shifted(expected, len(prefix)), text
        for s in spans:
            assert text[s["start"] : s["end"]] == s["value"] and 0 < s["confidence"] <= 1


def test_serving_default_returns_decoded_tags_for_tf_serving_users(sample_bot):
    signature = tf.saved_model.load(os.path.join(sample_bot["model_dir"], c.SAVED_MODEL_DIR)).signatures[c.SERVING_SIGNATURE]
    order, expected = sample_bot["learned"]
    outputs = {k: v.numpy() for k, v in signature(utterances=tf.constant([order, "", "a  b"])).items()}
    assert set(outputs) == {c.OUTPUT_PROBABILITIES, c.OUTPUT_ENTITY_TAGS, c.OUTPUT_ENTITY_CONFIDENCE,
                            c.OUTPUT_TOKEN_STARTS, c.OUTPUT_TOKEN_ENDS}
    assert (outputs[c.OUTPUT_ENTITY_TAGS][1] == -1).all()  # the empty utterance: padding only
    assert outputs[c.OUTPUT_TOKEN_STARTS][2][:2].tolist() == [0, 3] and outputs[c.OUTPUT_TOKEN_ENDS][2][:2].tolist() == [1, 4]
    tags = json.load(open(os.path.join(sample_bot["model_dir"], c.TRAINING_FILE)))[c.ENTITY_TAGS]
    decoded = spans_from_outputs([order, "", "a  b"], outputs, tags)
    assert _key(decoded[0]) == _key(expected) and decoded[1] == []
    # a batch in which no utterance has a token is answered too (tf.scan over zero steps failed: a 500)
    outputs = {k: v.numpy() for k, v in signature(utterances=tf.constant(["", "   "])).items()}
    assert outputs[c.OUTPUT_ENTITY_TAGS].shape[0] == 2 and (outputs[c.OUTPUT_ENTITY_TAGS] == -1).all()
    assert spans_from_outputs(["", "   "], outputs, tags) == [[], []]


def test_evaluation_reports_entity_figures_and_the_mistaken_utterances(sample_bot):
    evaluation, folder = sample_bot["evaluation"], sample_bot["evaluation_dir"]
    for key in ("entity_micro_precision", "entity_micro_recall", MICRO_F1, "entity_support"):
        assert key in evaluation.metrics and key in evaluation.logged_metrics()
    test = sample_bot["parts"]["test"]
    assert evaluation.metrics["entity_support"] == sum(len(s) for s in test[c.ENTITIES])
    report = open(os.path.join(folder, c.PER_INTENT_FILE), encoding="utf-8").read()
    assert "## Entities" in report and "| entity | precision | recall | F1 | support |" in report
    mistakes = pd.read_csv(os.path.join(folder, c.ENTITY_MISTAKES_FILE))
    assert list(mistakes.columns) == [c.UTTERANCE, "expected", "predicted"]
    assert all(json.loads(e) != json.loads(p) for e, p in zip(mistakes["expected"], mistakes["predicted"]))
    assert "per_entity" in json.load(open(os.path.join(folder, c.EVALUATION_FILE)))


def test_the_gate_blocks_an_entity_f1_regression(sample_bot, tmp_path):
    store = ModelStore(sample_bot["models"])
    live = sample_bot["version"]
    store.promote("sample-bot", live)
    parts = sample_bot["parts"]
    test = parts["train"].head(60)  # the rows the live tagger learned: its F1 there is high
    # a candidate whose tagger barely trained (one epoch) is scored by evaluate on the same rows
    weak_dir, weak_eval = str(tmp_path / "weak"), str(tmp_path / "weak-eval")
    train_model(parts["train"], parts["val"], TINY_INTENTS, weak_dir, EntityConfig(epochs=1, embedding_dim=8, lstm_units=8, char_filters=4))
    evaluation = evaluate_model_dir(weak_dir, parts["val"], test, weak_eval)
    weak_version, _ = register_model_version(sample_bot["models"], "sample-bot", weak_dir, weak_eval, "weak")
    config = GateConfig(min_accuracy=0.0, max_accuracy_drop=1.0, max_intent_recall_drop=1.0, max_entity_f1_drop=0.1)
    blessing = run_gate(sample_bot["models"], "sample-bot", weak_version, evaluation.to_json(), test, config)
    assert not blessing.blessed
    assert blessing.live[MICRO_F1] >= 0.8 > evaluation.metrics[MICRO_F1] + 0.1
    assert any(r.startswith("FAIL: entity micro-F1 change") and f"vs live {live}" in r for r in blessing.reasons)
    assert "entity_micro_f1" in blessing.to_markdown()
    # with the entity threshold unset, the same candidate passes
    unset = GateConfig(min_accuracy=0.0, max_accuracy_drop=1.0, max_intent_recall_drop=1.0, max_entity_f1_drop=None)
    assert run_gate(sample_bot["models"], "sample-bot", weak_version, evaluation.to_json(), test, unset).blessed


def test_the_predictor_serves_entities_over_http_v1_and_v2(sample_bot):
    store = ModelStore(sample_bot["models"])
    store.promote("sample-bot", sample_bot["version"])
    order, expected = sample_bot["learned"]
    text = "😊  " + order
    with start_predictor(sample_bot["models"], ready_timeout=180) as predictor:
        status, body = predictor.predict("sample-bot", [text, "hello"])
        assert status == 200, body
        spans = body["predictions"][0]["entities"]
        assert [(s["entity"], s["value"], s["start"], s["end"]) for s in spans] == _shifted(expected, 3)
        assert all(text[s["start"] : s["end"]] == s["value"] for s in spans)
        assert "entities" in body["predictions"][1]
        status, body = predictor.infer("sample-bot", [text])
        assert status == 200, body
        outputs = {o["name"]: o for o in body["outputs"]}
        assert outputs["entities"]["datatype"] == "BYTES"
        assert json.loads(outputs["entities"]["data"][0]) == spans
        status, body = predictor.predict("sample-bot", ["", "   "])  # no token in the whole batch
        assert status == 200, body
        assert [p["entities"] for p in body["predictions"]] == [[], []]


def test_the_entity_threshold_is_chosen_on_val_recorded_and_applied(sample_bot, tmp_path):
    import dataclasses
    import shutil

    evaluation = sample_bot["evaluation"]
    assert evaluation.entity_threshold in ENTITY_THRESHOLD_GRID
    assert json.load(open(os.path.join(sample_bot["evaluation_dir"], c.EVALUATION_FILE)))[c.ENTITY_THRESHOLD] == evaluation.entity_threshold
    store = ModelStore(sample_bot["models"])
    loaded = load_version(store, "sample-bot", sample_bot["version"])
    assert loaded.metadata[c.ENTITY_THRESHOLD] == evaluation.entity_threshold == loaded.entity_threshold
    # what a version serves: its spans at or above its threshold, no others
    texts = sample_bot["parts"]["train"][c.UTTERANCE].tolist()
    everything = dataclasses.replace(loaded, metadata={**loaded.metadata, c.ENTITY_THRESHOLD: 0.0})
    _, all_spans = everything.predict_all(texts)
    confidences = sorted(s["confidence"] for row in all_spans for s in row)
    cut = confidences[len(confidences) // 2]
    stricter = dataclasses.replace(loaded, metadata={**loaded.metadata, c.ENTITY_THRESHOLD: cut})
    _, kept = stricter.predict_all(texts)
    assert kept == [[s for s in row if s["confidence"] >= cut] for row in all_spans]
    assert 0 < sum(map(len, kept)) < sum(map(len, all_spans))
    assert stricter.predict(texts[:3])[1] == kept[:3]  # the predictor's per-request path too
    # a threshold that is not a probability fails the load, naming the file and the key
    copy = ModelStore(str(tmp_path / "models"))
    shutil.copytree(store.version_dir("sample-bot", sample_bot["version"]), copy.version_dir("sample-bot", sample_bot["version"]))
    meta_path = os.path.join(copy.version_dir("sample-bot", sample_bot["version"]), c.METADATA_FILE)
    meta = json.load(open(meta_path))
    json.dump({**meta, c.ENTITY_THRESHOLD: "high"}, open(meta_path, "w"))
    with pytest.raises(ModelLoadError, match=f"metadata.json: '{c.ENTITY_THRESHOLD}' = 'high'"):
        load_version(copy, "sample-bot", sample_bot["version"])


def test_a_bot_without_entities_trains_and_serves_as_before(tmp_path):
    rows = pd.DataFrame(tiny_rows(per_intent=8))
    rows[c.ENTITIES] = [[] for _ in range(len(rows))]
    parts = split_table(rows.assign(**{c.SPLIT: "", c.SOURCE_ROW: range(1, len(rows) + 1)}))
    model_dir = str(tmp_path / "model")
    result = train_model(parts["train"], parts["val"], TINY_INTENTS, model_dir, FAST_TAGGER)
    assert result.entities is None and result.logged_metrics()["entity_tagger"] == 0.0
    training = json.load(open(os.path.join(model_dir, c.TRAINING_FILE)))
    assert c.ENTITY_TAGS not in training
    signature = tf.saved_model.load(os.path.join(model_dir, c.SAVED_MODEL_DIR)).signatures[c.SERVING_SIGNATURE]
    assert set(signature.structured_outputs) == {c.OUTPUT_PROBABILITIES}
    evaluation = evaluate_model_dir(model_dir, parts["val"], parts["test"], str(tmp_path / "evaluation"))
    assert MICRO_F1 not in evaluation.metrics and not os.path.exists(tmp_path / "evaluation" / c.ENTITY_MISTAKES_FILE)
    assert evaluation.entity_threshold is None and c.ENTITY_THRESHOLD not in evaluation.to_json()


def _all_outputs(outputs_of, utterances):
    return {k: np.asarray(v) for k, v in outputs_of(utterances).items()}


def test_the_serving_graph_stored_at_export_answers_as_the_savedmodel(sample_bot, tmp_path):
    """The predictor loads ``assets.extra/botyard_serving_graph.pb.gz`` (cut down, inlined and
    optimized once, at export): every output -- probabilities, tags, confidences, offsets --
    equals ``tf.saved_model.load``'s, and so does a version exported without the file."""
    import gzip
    import shutil

    from tensorflow.core.protobuf import saved_model_pb2

    from botyard.components.base.model_io import SessionSignature, signature_outputs
    from botyard.components.base.serving_graph import serving_graph_path

    saved_model = os.path.join(sample_bot["model_dir"], c.SAVED_MODEL_DIR)
    path = serving_graph_path(saved_model)
    stored = saved_model_pb2.SavedModel.FromString(gzip.open(path, "rb").read()).meta_graphs[0]
    assert set(stored.signature_def) == {c.SERVING_SIGNATURE, "__saved_model_init_op"}  # no `features` signature
    calls = [n for n in stored.graph_def.node if n.op in ("StatefulPartitionedCall", "PartitionedCall")]
    assert [n.name for n in calls] == [stored.saver_def.restore_op_name.split(":")[0]]  # the rest is inlined
    assert all(not n.device for n in stored.graph_def.node)  # places on any machine's CPU
    order, _ = sample_bot["learned"]
    utterances = [order, "", "a  b", "zzqx unseen wörds ☕ at 7:45pm", "bye " * 40]
    expected = _all_outputs(signature_outputs(tf.saved_model.load(saved_model).signatures[c.SERVING_SIGNATURE]), utterances)
    got = _all_outputs(SessionSignature(saved_model), utterances)
    old_export = str(tmp_path / "saved_model")  # a version exported before the serving graph existed
    shutil.copytree(saved_model, old_export)
    os.remove(serving_graph_path(old_export))
    fallback = _all_outputs(SessionSignature(old_export), utterances)
    assert set(got) == set(fallback) == set(expected) == {c.OUTPUT_PROBABILITIES, c.OUTPUT_ENTITY_TAGS,
                                                          c.OUTPUT_ENTITY_CONFIDENCE, c.OUTPUT_TOKEN_STARTS, c.OUTPUT_TOKEN_ENDS}
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-6, err_msg=name)
        np.testing.assert_allclose(fallback[name], expected[name], atol=1e-6, err_msg=name)


def test_a_damaged_serving_graph_fails_the_load_naming_the_file(sample_bot, tmp_path):
    import shutil

    from botyard.components.base.errors import ModelLoadError
    from botyard.components.base.model_io import SESSION
    from botyard.components.base.serving_graph import serving_graph_path

    models = str(tmp_path / "models")
    shutil.copytree(sample_bot["models"], models)
    store = ModelStore(models)
    path = serving_graph_path(os.path.join(store.version_dir("sample-bot", sample_bot["version"]), c.SAVED_MODEL_DIR))
    with open(path, "wb") as f:
        f.write(b"\x00 not a graph")
    with pytest.raises(ModelLoadError, match=r"botyard_serving_graph\.pb\.gz: not a readable serving graph"):
        load_version(store, "sample-bot", sample_bot["version"], runtime=SESSION)
