"""The n-gram layer (``train.model.SparseBag``): its training path (the batch's weights as a dense
matrix) and its inference path (sparse weights, any batch size) compute the same thing, and the
kernel's gradient touches only the rows of the batch's n-grams."""

import numpy as np
import tensorflow as tf

from botyard.components.train.model import SparseBag


def _views(rng, batch, sizes, per_row):
    views = []
    for size in sizes:
        indices = sorted({(r, int(c)) for r in range(batch) for c in rng.choice(np.arange(1, size), per_row, replace=False)})
        values = rng.random(len(indices)).astype("float32")
        views.append(tf.SparseTensor(np.asarray(indices, dtype="int64"), values, [batch, size]))
    return views


def test_training_and_inference_paths_agree_and_the_gradient_is_the_used_rows():
    rng = np.random.default_rng(0)
    layer = SparseBag((50, 80), units=7, feature_dropout=0.0)
    views = _views(rng, batch=5, sizes=(50, 80), per_row=4)
    layer.build()
    layer.bias.assign(rng.normal(size=7).astype("float32"))

    with tf.GradientTape() as tape:
        trained = layer(views, training=True)
        loss = tf.reduce_sum(trained**2)
    served = layer(views, training=False)
    np.testing.assert_allclose(trained.numpy(), served.numpy(), atol=1e-5)

    kernel = layer.kernel.numpy()
    dense_inputs = np.concatenate([tf.sparse.to_dense(v).numpy() for v in views], axis=1)
    np.testing.assert_allclose(served.numpy(), dense_inputs @ kernel + layer.bias.numpy(), atol=1e-5)

    gradient = tape.gradient(loss, layer.kernel)
    assert isinstance(gradient, tf.IndexedSlices)
    used = {int(c) for c in views[0].indices[:, 1].numpy()} | {50 + int(c) for c in views[1].indices[:, 1].numpy()}
    assert set(gradient.indices.numpy().tolist()) == used
    expected = dense_inputs.T @ (2 * served.numpy())
    dense_gradient = tf.convert_to_tensor(gradient).numpy()
    np.testing.assert_allclose(dense_gradient, expected, atol=1e-4)
