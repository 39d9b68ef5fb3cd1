"""``tf_c_session``: a SavedModel loaded and run through TensorFlow's C API (the predictor's runtime)."""

import threading
import time

import numpy as np
import psutil
import pytest
import tensorflow as tf

from botyard.components.base.tf_c_session import CSession, TFError
from tensorflow.core.protobuf import config_pb2

CONFIG = config_pb2.ConfigProto(inter_op_parallelism_threads=-1, intra_op_parallelism_threads=1).SerializeToString()


@pytest.fixture(scope="module")
def lengths_model(tmp_path_factory):
    """A SavedModel: utterances -> their UTF-8 byte lengths times a variable (2)."""
    path = str(tmp_path_factory.mktemp("c-session") / "saved_model")

    class Lengths(tf.Module):
        def __init__(self):
            self.scale = tf.Variable(2, dtype=tf.int64)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="utterances")])
        def serve(self, utterances):
            return {"lengths": tf.strings.length(utterances),
                    "scaled": tf.cast(tf.strings.length(utterances), tf.int64) * self.scale}

    module = Lengths()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path




def _graph_names(path):
    from tensorflow.python.saved_model import loader_impl

    meta = loader_impl.SavedModelLoader(path).get_meta_graph_def_from_tags(["serve"])
    sig = meta.signature_def["serving_default"]
    return sig.inputs["utterances"].name, {k: v.name for k, v in sig.outputs.items()}


def test_strings_of_every_kind_round_trip(lengths_model):
    path = lengths_model
    feed_name, outputs = _graph_names(path)
    session = CSession(path, CONFIG)
    feed, fetches = session.outputs([feed_name])[0], session.outputs([outputs["scaled"], outputs["lengths"]])
    utterances = ["", "hi", "a" * 22, "b" * 23, "accents é ü and emoji 🎉", "x" * 5000]
    scaled, lengths = session.run(feed, utterances, fetches)
    expected = [len(u.encode("utf-8")) for u in utterances]
    assert lengths.tolist() == expected and lengths.dtype == np.int32
    assert scaled.tolist() == [2 * n for n in expected] and scaled.dtype == np.int64  # the restored variable
    empty = session.run(feed, [], fetches)
    assert [a.shape for a in empty] == [(0,), (0,)]


def test_long_strings_do_not_leak(lengths_model):
    path = lengths_model
    feed_name, outputs = _graph_names(path)
    session = CSession(path, CONFIG)
    feed, fetches = session.outputs([feed_name])[0], session.outputs([outputs["lengths"]])
    batch = ["y" * 200_000] * 10  # 2 MB a call: 200 MB if the strings' heap were not released
    session.run(feed, batch, fetches)
    before = psutil.Process().memory_info().rss
    for _ in range(100):
        session.run(feed, batch, fetches)
    assert psutil.Process().memory_info().rss - before < 50 * 2**20


def test_calls_run_without_holding_pythons_lock(lengths_model):
    """A Python thread keeps running while loads and calls are in the C library."""
    path = lengths_model
    ticks, stop = [], threading.Event()

    def tick():
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            ticks.append(now - last)
            last = now

    thread = threading.Thread(target=tick)
    thread.start()
    try:
        for _ in range(5):
            CSession(path, CONFIG).close()
    finally:
        stop.set()
        thread.join()
    assert len(ticks) > 10 and max(ticks) < 0.1


def test_errors_carry_tensorflows_message(lengths_model, tmp_path):
    with pytest.raises(TFError, match="loading .*nowhere"):
        CSession(str(tmp_path / "nowhere"), CONFIG)
    path = lengths_model
    session = CSession(path, CONFIG)
    with pytest.raises(TFError, match="no operation 'missing_op'"):
        session.outputs(["missing_op:0"])
    with pytest.raises(TFError, match="session config"):
        CSession(path, b"\xff\xff not a ConfigProto")
    session.close()
    session.close()  # closing twice is harmless
