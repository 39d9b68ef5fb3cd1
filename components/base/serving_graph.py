"""The serving graph: ``serving_default`` cut down, inlined and optimized once, at export.

A Keras SavedModel's signature is a chain of function calls (the signature wrapper, the
model's traced ``call``, each layer's). A fresh TensorFlow session instantiates them on its
first call and runs Grappler over every body: ~240 ms a version, most of a cold load, paid
again by every replica at every load. The train step therefore does it once, at export:
``write_serving_graph`` keeps only what ``serving_default`` needs (its outputs, the variables'
restore and the tables' init op), lets Grappler inline the calls and fold the graph for a CPU
(whatever device trained the model), and stores the result, a one-graph SavedModel proto
gzipped, as ``<saved_model>/assets.extra/botyard_serving_graph.pb.gz``
(``contracts.SERVING_GRAPH_FILE``, ~0.1 MB) beside TF Serving's warm-up file. The SavedModel
itself is untouched: TF Serving and ``tf.saved_model.load`` read it as before. The predictor
(``model_io.SessionSignature``) loads this graph with the version's own ``variables/`` and
``assets/``; the first call then costs ~20 ms. A version exported without the file is cut
down at load instead (``serving_meta_graph``), and its first call costs what it did.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import zlib

from botyard.components.base import contracts as c
from botyard.components.base.errors import ModelLoadError

log = logging.getLogger(__name__)

INIT_OP_SIGNATURE = "__saved_model_init_op"  # where TF2 SavedModels keep the tables' init op
CPU_DEVICE = "/job:localhost/replica:0/task:0/device:CPU:0"
# Grappler passes run at export: the defaults that do not depend on the device's kind
# (no layout, memory or mixed-precision rewrites, no fused kernels picked for the exporting machine)
SOURCE_DIGEST = "botyard_saved_model_sha256"  # collection: the saved_model.pb the graph was made from
OPTIMIZERS = ("function", "pruning", "constfold", "shape", "arithmetic", "dependency", "loop", "common_subgraph_elimination", "debug_stripper")


def serving_graph_path(saved_model_dir: str) -> str:
    return os.path.join(saved_model_dir, *c.SERVING_GRAPH_FILE.split("/"))


def required_ops(meta_graph) -> list[str]:
    """The ops a serving session needs: the signature's outputs, the restore and the init op."""

    def op(name: str) -> str:
        return name.split(":")[0].lstrip("^")

    saver = meta_graph.saver_def
    needed = [op(t.name) for t in meta_graph.signature_def[c.SERVING_SIGNATURE].outputs.values()]
    needed += [op(saver.restore_op_name), op(saver.filename_tensor_name), op(saver.save_tensor_name)]
    init = meta_graph.signature_def.get(INIT_OP_SIGNATURE)
    if init is not None:
        needed += [op(t.name) for t in init.outputs.values()]
    return needed


def keep_only_serving(meta_graph) -> None:
    """Cut ``meta_graph`` down to the nodes and functions ``required_ops`` need."""
    from tensorflow.python.framework import graph_util
    from tensorflow.python.util import deprecation

    graph_def = meta_graph.graph_def
    with deprecation.silence():
        kept = graph_util.extract_sub_graph(graph_def, required_ops(meta_graph))
    library = {f.signature.name: f for f in graph_def.library.function}
    reachable, pending = set(), [name for node in kept.node for name in _called(node)]
    while pending:
        name = pending.pop()
        if name in library and name not in reachable:
            reachable.add(name)
            pending += [callee for node in library[name].node_def for callee in _called(node)]
    functions = [f for f in graph_def.library.function if f.signature.name in reachable]
    gradients = [g for g in graph_def.library.gradient if g.function_name in reachable]
    del graph_def.node[:], graph_def.library.function[:], graph_def.library.gradient[:]
    graph_def.node.extend(kept.node)
    graph_def.library.function.extend(functions)
    graph_def.library.gradient.extend(gradients)
    for name in [k for k in meta_graph.signature_def if k not in (c.SERVING_SIGNATURE, INIT_OP_SIGNATURE)]:
        del meta_graph.signature_def[name]


def _called(node) -> list[str]:
    """The functions a NodeDef calls (``f`` of a PartitionedCall, a while loop's body, ...)."""
    names = []
    for attr in node.attr.values():
        if attr.HasField("func"):
            names.append(attr.func.name)
        if attr.HasField("list"):
            names += [f.name for f in attr.list.func]
    return names


def _saved_model_meta_graph(saved_model_dir: str):
    from tensorflow.python.saved_model import loader_impl

    return loader_impl.SavedModelLoader(saved_model_dir).get_meta_graph_def_from_tags(["serve"])


def optimize(meta_graph) -> None:
    """Inline and fold ``meta_graph`` (already cut down) for a CPU session, in place.

    The calls left (the restore, run once a load) get a config that turns Grappler off, so a
    load never runs it; every node's device is cleared, so the graph places on any machine.
    """
    from tensorflow.core.protobuf import config_pb2, device_properties_pb2, meta_graph_pb2, rewriter_config_pb2
    from tensorflow.python.grappler import cluster as grappler_cluster
    from tensorflow.python.grappler import tf_optimizer

    config = config_pb2.ConfigProto()
    rewrites = config.graph_options.rewrite_options
    rewrites.optimizers.extend(OPTIMIZERS)
    rewrites.min_graph_nodes = -1  # optimize however small the graph is
    rewrites.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.TWO
    item = meta_graph_pb2.MetaGraphDef()
    item.CopyFrom(meta_graph)
    item.collection_def["train_op"].node_list.value[:] = required_ops(meta_graph)  # Grappler's fetches
    cpu = device_properties_pb2.NamedDevice(name=CPU_DEVICE, properties=device_properties_pb2.DeviceProperties(type="CPU"))
    graph_def = tf_optimizer.OptimizeGraph(config, item, verbose=False, cluster=grappler_cluster.Cluster(devices=[cpu]))
    no_grappler = config_pb2.ConfigProto()
    no_grappler.graph_options.rewrite_options.disable_meta_optimizer = True
    blob = no_grappler.SerializeToString()
    for node in [*graph_def.node, *(n for f in graph_def.library.function for n in f.node_def)]:
        node.device = ""
        if node.op in ("StatefulPartitionedCall", "PartitionedCall"):
            node.attr["config_proto"].s = blob
    meta_graph.graph_def.CopyFrom(graph_def)


def write_serving_graph(saved_model_dir: str) -> str:
    """Cut down and optimize the SavedModel's serving graph; write it beside the SavedModel's
    warm-up file and return its path. Local folders only (the train step's output)."""
    from tensorflow.core.protobuf import saved_model_pb2

    meta_graph = _saved_model_meta_graph(saved_model_dir)
    keep_only_serving(meta_graph)
    optimize(meta_graph)
    meta_graph.collection_def[SOURCE_DIGEST].bytes_list.value[:] = [_saved_model_digest(saved_model_dir)]
    path = serving_graph_path(saved_model_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    proto = saved_model_pb2.SavedModel(saved_model_schema_version=1, meta_graphs=[meta_graph])
    with open(path + ".tmp", "wb") as f:  # gzip: the folded constants (vocabularies) shrink ~5x
        f.write(gzip.compress(proto.SerializeToString(), compresslevel=6, mtime=0))
    os.replace(path + ".tmp", path)
    return path


def _saved_model_digest(saved_model_dir: str) -> bytes:
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        return hashlib.sha256(f.read()).digest()


def serving_meta_graph(saved_model_dir: str):
    """The graph a serving session loads: the stored serving graph, or the SavedModel's graph
    cut down here, without Grappler's passes, when there is none (a version exported before it
    existed) or it was made from another ``saved_model.pb`` (the serving graph is only a faster
    form of the SavedModel: a SavedModel that fails to load never serves through it).

    Raises ``ModelLoadError`` naming the file when the stored serving graph is not readable.
    """
    path = serving_graph_path(saved_model_dir)
    stored = _read(path) if os.path.exists(path) else None
    if stored is not None:
        digest = list(stored.collection_def[SOURCE_DIGEST].bytes_list.value)
        del stored.collection_def[SOURCE_DIGEST]
        if digest == [_saved_model_digest(saved_model_dir)]:
            return stored
        log.warning("%s: made from another saved_model.pb; loading the SavedModel's own graph", path)
    meta_graph = _saved_model_meta_graph(saved_model_dir)
    keep_only_serving(meta_graph)
    return meta_graph


def _read(path: str):
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        with gzip.open(path, "rb") as f:
            proto.ParseFromString(f.read())
    except (OSError, EOFError, zlib.error, DecodeError) as exc:
        raise ModelLoadError(f"{path}: not a readable serving graph ({type(exc).__name__}: {exc})") from exc
    if len(proto.meta_graphs) != 1 or c.SERVING_SIGNATURE not in proto.meta_graphs[0].signature_def:
        raise ModelLoadError(f"{path}: not a serving graph (expected one graph with signature '{c.SERVING_SIGNATURE}')")
    return proto.meta_graphs[0]
