"""The export's fused BiLSTM (``BlockLSTMV2``) answers what the trained Keras layer answers."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from botyard.components.train import fused_lstm
from botyard.components.train.model import cudnn_lstm

LENGTHS = [7, 3, 1, 0]  # right-padded, an empty utterance included


def _inputs(time=7, dim=5):
    x = np.random.default_rng(3).normal(size=(len(LENGTHS), time, dim)).astype("float32")
    mask = np.arange(time)[None, :] < np.array(LENGTHS)[:, None]
    return x * mask[..., None], mask


@pytest.mark.parametrize("return_sequences", [False, True])
def test_fused_bidirectional_equals_the_keras_layer(return_sequences):
    keras.utils.set_random_seed(5)
    layer = keras.layers.Bidirectional(cudnn_lstm(6, return_sequences=return_sequences))
    x, mask = _inputs()
    expected = layer(x, mask=mask, training=False).numpy()
    assert fused_lstm.fusable(layer)
    got = fused_lstm.bidirectional(layer, tf.constant(x), tf.constant(mask)).numpy()
    assert got.shape == expected.shape
    if return_sequences:  # padded steps carry no answer: compare the valid ones, zeros elsewhere
        np.testing.assert_allclose(got[mask], expected[mask], atol=1e-5)
        assert not got[~mask].any()
    else:
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert not got[3].any()  # the empty utterance: the initial state


def test_a_batch_of_empty_utterances_has_zero_states():
    layer = keras.layers.Bidirectional(cudnn_lstm(4))
    layer(np.zeros((1, 1, 3), "float32"))
    got = fused_lstm.bidirectional(layer, tf.zeros([2, 0, 3]), tf.zeros([2, 0], tf.bool)).numpy()
    assert got.shape == (2, 8) and not got.any()


def test_layers_it_cannot_compute_exactly_are_left_to_keras():
    assert not fused_lstm.fusable(keras.layers.Bidirectional(keras.layers.LSTM(4, activation="relu")))
    assert not fused_lstm.fusable(keras.layers.Bidirectional(cudnn_lstm(4), merge_mode="sum"))
    assert not fused_lstm.fusable(keras.layers.Bidirectional(keras.layers.GRU(4)))


def test_the_exported_savedmodel_serves_what_the_keras_model_computes(tmp_path):
    from botyard.components.base import contracts as c
    from botyard.components.base import featurizer as features
    from botyard.components.base.config import TrainConfig
    from botyard.components.train.model import build_classifier, export_serving_model

    config = TrainConfig(lstm_units=8, embedding_dim=6, ngram_units=4)
    texts = ["book a table for two", "what is my balance", "hi", "cancel my order please now", "thanks a lot"]
    featurizer = features.build(features.adapt_spec(config, texts))
    classifier = build_classifier(config, featurizer, n_labels=3)
    export_serving_model(featurizer, classifier, str(tmp_path / "saved_model"))

    utterances = ["book a table for two at seven", "balance", "", "hi  there!", "an unseen utterance entirely"]
    expected = classifier.probabilities(featurizer(tf.constant(utterances)), fused=False).numpy()
    serving = tf.saved_model.load(str(tmp_path / "saved_model")).signatures[c.SERVING_SIGNATURE]
    got = serving(**{c.SIGNATURE_INPUT: tf.constant(utterances)})[c.OUTPUT_PROBABILITIES].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    ops = {n.op for f in serving.graph.as_graph_def().library.function for n in f.node_def}
    assert "BlockLSTMV2" in ops and "While" not in ops and "StatelessWhile" not in ops


def _tiny_tagger(featurizer, seed: int, n_intents: int = 0, **settings):
    """A tagger of a few units over ``featurizer``'s inputs (5 tags), its weights drawn from ``seed``."""
    from botyard.components.base.config import EntityConfig
    from botyard.components.train.tagger import build_tagger

    keras.utils.set_random_seed(seed)
    config = EntityConfig(lstm_units=6, embedding_dim=8, char_embedding_dim=4, char_filters=4, **settings)
    return build_tagger(config, featurizer, 5, n_intents=n_intents)[1]


def _fused_equals_keras(tagger, ids, chars, *intents, **inputs):
    """The fused emissions, after checking them against the Keras model's, and the real tokens' mask."""
    expected = tagger.emissions(ids, chars, *intents, fused=False, **inputs).numpy()
    got = tagger.emissions(ids, chars, *intents, **inputs).numpy()
    valid = ids.numpy() > 0
    np.testing.assert_allclose(got[valid], expected[valid], atol=1e-5)
    return got, valid


def test_the_taggers_fused_emissions_equal_the_keras_models():
    from botyard.components.base import entity_featurizer as ef

    texts = ["book a table for two at 7pm", "a large latte", "hi"]
    featurizer = ef.build_entity_featurizer(ef.adapt_entity_spec(texts, 100, 12))
    tagger = _tiny_tagger(featurizer, 2)
    features = featurizer(tf.constant(["book a table for two at 7:45pm please", "latte", ""]))
    ids, chars = features[ef.TOKEN_IDS], features[ef.CHAR_IDS]
    got, valid = _fused_equals_keras(tagger, ids, chars)
    alone = featurizer(tf.constant(["latte"]))  # an utterance's tags never depend on its batch's padding
    np.testing.assert_allclose(tagger.emissions(alone[ef.TOKEN_IDS], alone[ef.CHAR_IDS]).numpy()[0, 0], got[1, 0], atol=1e-5)
    np.testing.assert_allclose(tagger.emissions(alone[ef.TOKEN_IDS], alone[ef.CHAR_IDS], fused=False).numpy()[0, 0], got[1, 0], atol=1e-5)


def test_an_intent_conditioned_taggers_fused_emissions_equal_the_keras_models_and_follow_the_intent():
    from botyard.components.base import entity_featurizer as ef

    texts = ["book a table for two at 7pm", "a large latte", "hi"]
    featurizer = ef.build_entity_featurizer(ef.adapt_entity_spec(texts, 100, 12))
    tagger = _tiny_tagger(featurizer, 3, n_intents=3, intent_dim=5)
    assert tagger.uses_intents and not _tiny_tagger(featurizer, 3, n_intents=1, intent_dim=5).uses_intents
    features = featurizer(tf.constant(["book a table for two at 7:45pm please", "latte", ""]))
    ids, chars = features[ef.TOKEN_IDS], features[ef.CHAR_IDS]
    intents = tf.constant([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]])
    got, valid = _fused_equals_keras(tagger, ids, chars, intents)
    other = tagger.emissions(ids, chars, tf.constant([[0.0, 0.0, 1.0]] * 3)).numpy()
    assert np.abs(other[valid] - got[valid]).max() > 1e-4  # the intent changes the scores
    with pytest.raises(ValueError, match="conditioned on the intent"):
        tagger.emissions(ids, chars)


def test_a_tagger_with_context_features_adds_their_scores_in_the_fused_path_too():
    from botyard.components.base import entity_featurizer as ef

    texts = ["book a table for two at 7pm", "book a table for four", "a large latte", "a large tea", "hi"]
    featurizer = ef.build_entity_featurizer(ef.adapt_entity_spec(texts, 100, 12, feature_min_count=2))
    tagger = _tiny_tagger(featurizer, 4)
    assert tagger.uses_features
    scores = tagger.model.get_layer("feature_scores").scores
    scores.embeddings.assign(np.random.default_rng(0).normal(size=scores.embeddings.shape).astype("float32"))
    features = featurizer(tf.constant(["book a table for two at 7:45pm please", "a large latte", ""]))
    ids, chars, feature_ids = features[ef.TOKEN_IDS], features[ef.CHAR_IDS], features[ef.FEATURE_IDS]
    got, valid = _fused_equals_keras(tagger, ids, chars, feature_ids=feature_ids)
    unknown = tagger.emissions(ids, chars, feature_ids=tf.zeros_like(feature_ids)).numpy()
    assert np.abs(unknown[valid] - got[valid]).max() > 1e-3  # the features' scores are in the emissions
    with pytest.raises(ValueError, match="context features"):
        tagger.emissions(ids, chars)


def test_a_tagger_with_word_vectors_reads_them_frozen_in_the_fused_path_too():
    """Pretrained vectors (GloVe) enter the BiLSTM frozen: the layer holds GloVe's rows for the
    featurizer's vector words, is not trained, and the fused path reads it as the Keras model does."""
    from botyard.components.base import entity_featurizer as ef
    from botyard.components.base import word_vectors as wv

    texts = ["play some fortnite with emma", "a large latte", "hi"]
    featurizer = ef.build_entity_featurizer(ef.adapt_entity_spec(texts, 100, 12, word_vectors_count=10))
    tagger = _tiny_tagger(featurizer, 4)
    assert tagger.uses_vectors
    layer = tagger.model.get_layer("word_vectors")
    assert not layer.trainable_weights
    table = layer.vectors.embeddings.numpy()
    row = featurizer.vector_words.index("latte") + 2
    np.testing.assert_allclose(table[row], wv.vectors_of(["latte"])[0], rtol=1e-3)  # stored as float16
    assert not table[:2].any()  # padding and "no vector" are zeros
    features = featurizer(tf.constant(["play chess with olivia tonight", "a latte", ""]))
    ids, chars, vector_ids = features[ef.TOKEN_IDS], features[ef.CHAR_IDS], features[ef.VECTOR_IDS]
    got, valid = _fused_equals_keras(tagger, ids, chars, vector_ids=vector_ids)
    without = tagger.emissions(ids, chars, vector_ids=tf.ones_like(vector_ids) * tf.cast(valid, tf.int64)).numpy()
    assert np.abs(without[valid] - got[valid]).max() > 1e-4  # the vectors are in the emissions
    with pytest.raises(ValueError, match="word vectors"):
        tagger.emissions(ids, chars)
