"""Layers Keras scripts use: activation layers (ReLU, LeakyReLU, PReLU, ELU, Softmax), Conv1DTranspose,
DepthwiseConv2D, SeparableConv2D, and the preprocessing layers (Rescaling, Normalization,
CategoryEncoding, IntegerLookup, StringLookup, TextVectorization).

Against Keras 3 on TensorFlow in float64 (the Keras-oracle fixture, skipped without Keras): the
same weights in (Keras's layer takes unidl's weights through set_weights, which also checks
their names, shapes and order), the same outputs and gradients out, on NumPy in float64 and on
torch/tensorflow in float32; vocabularies and ids of the lookup layers equal Keras's. Without
Keras: NumPy references, finite differences, argument errors, configs, saving, and training
with the same numbers on every backend.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import unidl
from unidl import layers, ops
from unidl.layers.preprocessing import HostLayerError
from unidl.testing.tolerances import (FD_F64, FORWARD_F32, FORWARD_F64, GRAD_F32, GRAD_F64, TRAJECTORY_F32,
                                      TRAJECTORY_F64, Tolerance)

BACKENDS = [row["name"] for row in unidl.list_backends() if row["installed"] and row["name"] in
            ("numpy", "torch", "tensorflow")]
OTHERS = [b for b in BACKENDS if b != "numpy"]
TARGETS = [("numpy", "float64")] + [(b, "float32") for b in OTHERS]
TOLERANCES = {"float64": (FORWARD_F64, GRAD_F64), "float32": (FORWARD_F32, GRAD_F32)}
# Keras rounds Python-float arguments to float32 even for float64 inputs (LeakyReLU's default
# slope 0.3 goes to TensorFlow's float32 `alpha` attribute; Rescaling's 1/255 through a float32
# tensor): float64 results then differ by up to float32's half ulp, 6e-8 relative. unidl keeps
# the exact values, so float64 comparisons of such arguments get this bound instead of
# FORWARD_F64/GRAD_F64; the tests otherwise pick dyadic (float32-exact) arguments. The atol
# covers results that cancel (x / 127.5 - 1 for pixels: terms up to 2, each off by 6e-8 relative).
KERAS_F32_CONSTANT = Tolerance(1e-7, 3e-7, "KERAS_F32_CONSTANT", reason="Keras rounds Python-float arguments "
                               "to float32", replaces="FORWARD_F64 / GRAD_F64")
NON_DYADIC = {"leaky_relu"}  # cases whose arguments (defaults included) are not float32-exact


def data(shape, seed=0, scale=1.0):
    """Float32-representable samples (float32 and float64 runs see the same numbers)."""
    x = scale * np.random.default_rng(seed).standard_normal(shape)
    return x.astype(np.float32).astype(np.float64)


def build(layer, sample_shape, seed=0):
    layer.build_for((None, *sample_shape), np.random.default_rng(seed))
    for w in layer.weights:  # float32-representable weights too
        w.assign(w.numpy().astype(np.float32).astype(np.float64))
    return layer


def forward_and_grads(layer, x, r, backend, dtype):
    """layer(x) and the gradients of sum(layer(x) * r) w.r.t. x and the trainable weights (NumPy)."""
    be = unidl.get_backend(backend, dtype=dtype)
    for w in layer.weights:
        w.bind(be)
    with unidl.use_backend(be):
        xv, rv = be.variable(x, name="x"), be.convert(r)
        out = be.to_numpy(layer(xv))
        params = [xv, *[w.value for w in layer.trainable_weights]]
        _, _, grads = be.value_and_grad(lambda: (ops.sum(ops.multiply(layer(xv), rv)), None), params)
    for w in layer.weights:
        w.unbind()
    return out, [be.to_numpy(g) for g in grads]


def keras_forward_and_grads(keras_layer, x, r):
    import tensorflow as tf
    xv = tf.Variable(x, dtype=tf.float64)
    with tf.GradientTape() as tape:
        out = keras_layer(xv)
        objective = tf.reduce_sum(out * tf.constant(r, tf.float64))
    grads = tape.gradient(objective, [xv, *[w.value for w in keras_layer.trainable_weights]])
    return np.asarray(out), [np.asarray(g) for g in grads]


def assert_close(got, want, tol, what):
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    np.testing.assert_allclose(got, want, rtol=tol.rtol, atol=tol.atol, err_msg=f"{what} ({tol})")


# ------------------------------------------------------------------ activation and convolution layers vs Keras

# id -> (unidl layer, Keras class name and kwargs, sample shape, input scale)
CASES = {
    "relu": (lambda: layers.ReLU(), ("ReLU", {}), (5, 4), 1.0),
    "relu_all": (lambda: layers.ReLU(max_value=2.5, negative_slope=0.25, threshold=0.5),
                 ("ReLU", dict(max_value=2.5, negative_slope=0.25, threshold=0.5)), (5, 4), 2.0),
    "relu_cap": (lambda: layers.ReLU(max_value=1.0), ("ReLU", dict(max_value=1.0)), (5, 4), 2.0),
    "relu_slope": (lambda: layers.ReLU(negative_slope=0.125), ("ReLU", dict(negative_slope=0.125)), (5, 4), 1.0),
    "relu_threshold": (lambda: layers.ReLU(threshold=0.3), ("ReLU", dict(threshold=0.3)), (5, 4), 1.0),
    "leaky_relu": (lambda: layers.LeakyReLU(), ("LeakyReLU", {}), (5, 4), 1.0),
    "leaky_relu_steep": (lambda: layers.LeakyReLU(negative_slope=1.5), ("LeakyReLU", dict(negative_slope=1.5)),
                         (5, 4), 1.0),
    "prelu": (lambda: layers.PReLU(alpha_initializer="random_normal"), ("PReLU", {}), (3, 4), 1.0),
    "prelu_shared": (lambda: layers.PReLU(alpha_initializer="random_uniform", shared_axes=[1, 2]),
                     ("PReLU", dict(shared_axes=[1, 2])), (4, 3, 2), 1.0),
    "elu": (lambda: layers.ELU(), ("ELU", {}), (5, 4), 1.5),
    "elu_alpha": (lambda: layers.ELU(alpha=0.5), ("ELU", dict(alpha=0.5)), (5, 4), 1.5),
    "softmax": (lambda: layers.Softmax(), ("Softmax", {}), (3, 5), 2.0),
    "softmax_axis1": (lambda: layers.Softmax(axis=1), ("Softmax", dict(axis=1)), (3, 4, 2), 2.0),
    "softmax_two_axes": (lambda: layers.Softmax(axis=[1, 2]), ("Softmax", dict(axis=[1, 2])), (3, 4, 2), 2.0),
    "conv1d_transpose": (lambda: layers.Conv1DTranspose(3, 3, bias_initializer="random_normal"),
                         ("Conv1DTranspose", dict(filters=3, kernel_size=3)), (6, 2), 1.0),
    "conv1d_transpose_same_strided": (
        lambda: layers.Conv1DTranspose(3, 3, strides=2, padding="same", activation="tanh"),
        ("Conv1DTranspose", dict(filters=3, kernel_size=3, strides=2, padding="same", activation="tanh")),
        (5, 2), 1.0),
    "conv1d_transpose_kernel_below_stride": (
        lambda: layers.Conv1DTranspose(2, 2, strides=3, bias_initializer="random_normal"),
        ("Conv1DTranspose", dict(filters=2, kernel_size=2, strides=3)), (4, 3), 1.0),
    "depthwise": (lambda: layers.DepthwiseConv2D(3, bias_initializer="random_normal"),
                  ("DepthwiseConv2D", dict(kernel_size=3)), (5, 6, 3), 1.0),
    "depthwise_multiplier_same_strided": (
        lambda: layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, activation="relu"),
        ("DepthwiseConv2D", dict(kernel_size=3, strides=2, padding="same", depth_multiplier=2,
                                 activation="relu")), (7, 6, 2), 1.0),
    "depthwise_dilated": (
        lambda: layers.DepthwiseConv2D((2, 3), dilation_rate=2, padding="same", depth_multiplier=3),
        ("DepthwiseConv2D", dict(kernel_size=(2, 3), dilation_rate=2, padding="same", depth_multiplier=3)),
        (5, 6, 2), 1.0),
    "separable": (lambda: layers.SeparableConv2D(4, 3, bias_initializer="random_normal"),
                  ("SeparableConv2D", dict(filters=4, kernel_size=3)), (5, 6, 3), 1.0),
    "separable_all": (
        lambda: layers.SeparableConv2D(3, (3, 2), strides=2, padding="same", depth_multiplier=2, activation="elu",
                                       bias_initializer="random_normal"),
        ("SeparableConv2D", dict(filters=3, kernel_size=(3, 2), strides=2, padding="same", depth_multiplier=2,
                                 activation="elu")), (7, 6, 2), 1.0),
    "separable_dilated_no_bias": (
        lambda: layers.SeparableConv2D(2, 2, dilation_rate=(2, 1), use_bias=False),
        ("SeparableConv2D", dict(filters=2, kernel_size=2, dilation_rate=(2, 1), use_bias=False)), (5, 5, 3), 1.0),
}


def keras_twin(keras, case_id, unidl_layer, sample_shape):
    name, kwargs = CASES[case_id][1]
    keras_layer = getattr(keras.layers, name)(**kwargs)
    keras_layer.build((2, *sample_shape))
    assert [w.name for w in keras_layer.weights] == [w.name.rsplit("/", 1)[-1] for w in unidl_layer.weights]
    keras_layer.set_weights(unidl_layer.get_weights())  # same names, shapes and order
    return keras_layer


@pytest.mark.parametrize("backend, dtype", TARGETS)
@pytest.mark.parametrize("case_id", sorted(CASES))
def test_forward_and_gradients_match_keras(keras, case_id, backend, dtype):
    make, _, shape, scale = CASES[case_id]
    layer = build(make(), shape)
    x = data((2, *shape), seed=1, scale=scale)
    r = data((2, *layer.output_shape[1:]), seed=2)
    keras_layer = keras_twin(keras, case_id, layer, shape)
    want_out, want_grads = keras_forward_and_grads(keras_layer, x, r)
    assert tuple(keras_layer.compute_output_shape((None, *shape))) == layer.output_shape
    out, grads = forward_and_grads(layer, x, r, backend, dtype)
    forward, gradient = TOLERANCES[dtype]
    if case_id in NON_DYADIC and dtype == "float64":
        forward = gradient = KERAS_F32_CONSTANT
    assert_close(out, want_out, forward, f"{case_id} output on {backend}")
    names = ["input"] + [w.name for w in layer.trainable_weights]
    for name, g, w in zip(names, grads, want_grads):
        assert_close(g, w, gradient, f"{case_id} gradient of {name} on {backend}")


def test_every_new_layer_case_moves_something():
    # A case whose inputs never leave the identity region of its layer would test nothing.
    for case_id in ("relu_all", "relu_cap", "relu_threshold"):
        make, _, shape, scale = CASES[case_id]
        x = data((2, *shape), seed=1, scale=scale)
        out = forward_and_grads(build(make(), shape), x, np.ones_like(x), "numpy", "float64")[0]
        assert not np.allclose(out, np.maximum(x, 0)), case_id


# ------------------------------------------------------------------ NumPy references (no Keras needed)

def relu_reference(x, max_value=None, negative_slope=0.0, threshold=0.0):
    out = np.where(x > threshold, x, negative_slope * (x - threshold))
    return out if max_value is None else np.minimum(out, max_value)


@pytest.mark.parametrize("kwargs", [{}, dict(max_value=6.0), dict(negative_slope=0.5, threshold=1.0),
                                    dict(max_value=2.0, negative_slope=0.2, threshold=0.25)])
def test_relu_formula(kwargs):
    x = data((4, 6), scale=3.0)
    out = forward_and_grads(layers.ReLU(**kwargs), x, x, "numpy", "float64")[0]
    np.testing.assert_allclose(out, relu_reference(x, **kwargs), rtol=FORWARD_F64.rtol, atol=FORWARD_F64.atol)


def test_prelu_and_leaky_relu_formulas():
    x = data((3, 4, 2), scale=2.0)
    prelu = build(layers.PReLU(alpha_initializer="random_normal", shared_axes=1), (4, 2))
    alpha = prelu.get_weights()[0]
    assert alpha.shape == (1, 2)
    out = forward_and_grads(prelu, x, x, "numpy", "float64")[0]
    np.testing.assert_allclose(out, np.where(x >= 0, x, alpha * x), rtol=FORWARD_F64.rtol, atol=FORWARD_F64.atol)
    out = forward_and_grads(layers.LeakyReLU(), x, x, "numpy", "float64")[0]
    np.testing.assert_allclose(out, np.where(x > 0, x, 0.3 * x), rtol=FORWARD_F64.rtol, atol=FORWARD_F64.atol)


def test_softmax_mask_follows_keras():
    x = data((2, 4))
    mask = np.array([[True, True, False, True], [False, False, False, False]])
    with unidl.use_backend("numpy", dtype="float64") as be:
        out = be.to_numpy(layers.Softmax()(be.convert(x), mask=mask))
    e = np.exp(np.where(mask, x, -1e9) - np.where(mask, x, -1e9).max(axis=1, keepdims=True))
    want = np.where(mask, e / e.sum(axis=1, keepdims=True), 0.0)
    np.testing.assert_allclose(out, want, rtol=FORWARD_F64.rtol, atol=FORWARD_F64.atol)


def naive_depthwise(x, kernel, strides, padding):
    """Each channel c with its own filters kernel[..., c, m] -> output channel c * M + m (valid/same)."""
    kh, kw, channels, multiplier = kernel.shape
    if padding == "same":
        pads = []
        for n, k, s in zip(x.shape[1:3], (kh, kw), strides):
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        x = np.pad(x, ((0, 0), *pads, (0, 0)))
    rows = (x.shape[1] - kh) // strides[0] + 1
    cols = (x.shape[2] - kw) // strides[1] + 1
    out = np.zeros((x.shape[0], rows, cols, channels * multiplier))
    for i in range(rows):
        for j in range(cols):
            patch = x[:, i * strides[0]:i * strides[0] + kh, j * strides[1]:j * strides[1] + kw, :]
            out[:, i, j, :] = np.einsum("nuvc,uvcm->ncm", patch, kernel).reshape(len(x), -1)
    return out


@pytest.mark.parametrize("backend, dtype", TARGETS)
@pytest.mark.parametrize("strides, padding", [((1, 1), "valid"), ((2, 1), "same"), ((1, 3), "valid")])
def test_depthwise_and_separable_match_naive_loops(backend, dtype, strides, padding):
    # Unequal strides too, which Keras's TensorFlow depthwise kernel refuses.
    x = data((2, 7, 8, 3), seed=4)
    depthwise = build(layers.DepthwiseConv2D(3, strides=strides, padding=padding, depth_multiplier=2,
                                             bias_initializer="random_normal"), (7, 8, 3))
    kernel, bias = depthwise.get_weights()
    want = naive_depthwise(x, kernel, strides, padding) + bias
    forward = TOLERANCES[dtype][0]
    out = forward_and_grads(depthwise, x, np.ones(want.shape), backend, dtype)[0]
    assert_close(out, want, forward, "DepthwiseConv2D")
    separable = build(layers.SeparableConv2D(4, 3, strides=strides, padding=padding, depth_multiplier=2,
                                             bias_initializer="random_normal"), (7, 8, 3))
    dk, pk, bias = separable.get_weights()
    want = naive_depthwise(x, dk, strides, padding) @ pk[0, 0] + bias
    out = forward_and_grads(separable, x, np.ones(want.shape), backend, dtype)[0]
    assert_close(out, want, forward, "SeparableConv2D")


@pytest.mark.parametrize("backend, dtype", TARGETS)
@pytest.mark.parametrize("kwargs", [dict(strides=2), dict(dilation_rate=2, padding="same"), dict(dilation_rate=2)])
def test_conv1d_transpose_equals_conv2d_transpose_on_a_row(backend, dtype, kwargs):
    # Dilated cases too, which TensorFlow's CPU kernels (hence Keras there) cannot run.
    x = data((2, 5, 3), seed=5)
    one = build(layers.Conv1DTranspose(2, 3, bias_initializer="random_normal", **kwargs), (5, 3))
    two_kwargs = {k: (1, v) if k in ("strides", "dilation_rate") else v for k, v in kwargs.items()}
    two = build(layers.Conv2DTranspose(2, (1, 3), **two_kwargs), (1, 5, 3))
    two.set_weights([one.get_weights()[0][None], one.get_weights()[1]])
    steps = one.output_shape[1]
    assert two.output_shape == (None, 1, steps, 2)
    a = forward_and_grads(one, x, np.ones((2, steps, 2)), backend, dtype)[0]
    b = forward_and_grads(two, x[:, None], np.ones((2, 1, steps, 2)), "numpy", "float64")[0]
    assert_close(a, b[:, 0], TOLERANCES[dtype][0], f"Conv1DTranspose({kwargs})")


def central_differences(layer, x, r, weight, h=1e-6):
    value, grad = weight.numpy(), np.zeros(weight.shape)
    for index in np.ndindex(value.shape):
        total = []
        for step in (h, -h):
            bumped = value.copy()
            bumped[index] += step
            weight.assign(bumped)
            total.append(np.sum(forward_and_grads(layer, x, r, "numpy", "float64")[0] * r))
        grad[index] = (total[0] - total[1]) / (2 * h)
    weight.assign(value)
    return grad


@pytest.mark.parametrize("make, shape", [
    (lambda: layers.PReLU(alpha_initializer="random_normal", shared_axes=[1]), (3, 2)),
    (lambda: layers.DepthwiseConv2D(2, depth_multiplier=2, padding="same", bias_initializer="random_normal"),
     (3, 3, 2)),
    (lambda: layers.SeparableConv2D(2, 2, strides=2, bias_initializer="random_normal"), (4, 4, 2)),
    (lambda: layers.Conv1DTranspose(2, 2, strides=3), (3, 2)),
])
def test_weight_gradients_match_finite_differences(make, shape):
    layer = build(make(), shape)
    x = data((2, *shape), seed=6)
    r = data((2, *layer.output_shape[1:]), seed=7)
    _, grads = forward_and_grads(layer, x, r, "numpy", "float64")
    for weight, grad in zip(layer.trainable_weights, grads[1:]):
        np.testing.assert_allclose(grad, central_differences(layer, x, r, weight), rtol=FD_F64.rtol,
                                   atol=FD_F64.atol, err_msg=weight.name)


@pytest.mark.parametrize("layer, shape, weights", [
    (lambda: layers.DepthwiseConv2D(3, depth_multiplier=2), (8, 8, 3), [(3, 3, 3, 2), (6,)]),
    (lambda: layers.SeparableConv2D(5, (3, 2), depth_multiplier=3, use_bias=True), (8, 8, 2),
     [(3, 2, 2, 3), (1, 1, 6, 5), (5,)]),
    (lambda: layers.Conv1DTranspose(4, 3), (6, 2), [(3, 4, 2), (4,)]),
    (lambda: layers.PReLU(), (4, 3), [(4, 3)]),
    (lambda: layers.PReLU(shared_axes=(1, 2)), (5, 4, 3), [(1, 1, 3)]),
])
def test_weight_shapes_follow_keras(layer, shape, weights):
    assert [w.shape for w in build(layer(), shape).get_weights()] == weights


# ------------------------------------------------------------------ Rescaling, Normalization, CategoryEncoding

@pytest.mark.parametrize("backend, dtype", TARGETS)
def test_rescaling_matches_keras(keras, backend, dtype):
    x = np.random.default_rng(0).integers(0, 256, (2, 3, 3, 3)).astype(np.float64)
    for kwargs in (dict(scale=1 / 255), dict(scale=1 / 127.5, offset=-1.0), dict(scale=[0.5, 0.25, 2.0], offset=1.0)):
        want = np.asarray(keras.layers.Rescaling(**kwargs)(x))
        out = forward_and_grads(layers.Rescaling(**kwargs), x, x, backend, dtype)[0]
        dyadic = all(float(np.float32(v)) == v for v in np.concatenate([np.ravel(v) for v in kwargs.values()]))
        tol = KERAS_F32_CONSTANT if dtype == "float64" and not dyadic else TOLERANCES[dtype][0]
        assert_close(out, want, tol, f"Rescaling({kwargs})")


NORMALIZATION_CASES = [  # (kwargs, data shape)
    (dict(), (20, 3)),
    (dict(axis=None), (20, 3)),
    (dict(axis=(1, 2)), (10, 3, 2)),
    (dict(axis=1), (10, 3, 2)),
    (dict(invert=True), (20, 3)),
]


@pytest.mark.parametrize("backend, dtype", TARGETS)
@pytest.mark.parametrize("kwargs, shape", NORMALIZATION_CASES)
def test_normalization_adapt_matches_keras(keras, kwargs, shape, backend, dtype):
    adapt_data = data(shape, seed=8, scale=3.0) + 1.0
    x = data((4, *shape[1:]), seed=9)
    keras_layer = keras.layers.Normalization(**kwargs)
    keras_layer.adapt(adapt_data)
    layer = layers.Normalization(**kwargs)
    layer.adapt(adapt_data)
    mean, variance, count = layer.get_weights()
    np.testing.assert_allclose(mean, np.asarray(keras_layer.mean).reshape(mean.shape), rtol=1e-12)
    np.testing.assert_allclose(variance, np.asarray(keras_layer.variance).reshape(variance.shape), rtol=1e-12)
    assert count == np.prod(shape) / max(mean.size, 1)
    out = forward_and_grads(layer, x, x, backend, dtype)[0]
    assert_close(out, np.asarray(keras_layer(x)), TOLERANCES[dtype][0], f"Normalization({kwargs})")


def test_normalization_adapt_on_batches_matches_keras(keras):
    batches = [data((n, 3), seed=n, scale=2.0) for n in (5, 8, 3)]
    keras_layer = keras.layers.Normalization()
    keras_layer.adapt(iter(batches))
    layer = layers.Normalization()
    layer.adapt(iter((b, np.zeros(len(b))) for b in batches))  # (x, y) batches: x is used, as Keras
    np.testing.assert_allclose(layer.get_weights()[0], np.asarray(keras_layer.adapt_mean), rtol=1e-12)
    np.testing.assert_allclose(layer.get_weights()[1], np.asarray(keras_layer.adapt_variance), rtol=1e-12)
    full = np.concatenate(batches)
    np.testing.assert_allclose(layer.get_weights()[0], full.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(layer.get_weights()[1], full.var(axis=0), rtol=1e-10)


@pytest.mark.parametrize("backend, dtype", TARGETS)
def test_normalization_with_given_statistics_matches_keras(keras, backend, dtype):
    x = data((4, 3, 2), seed=10)
    for kwargs in (dict(mean=3.0, variance=2.0), dict(axis=-1, mean=[1.0, 2.0], variance=[4.0, 0.0]),
                   dict(axis=(1, 2), mean=[1.0, -1.0], variance=[0.25, 9.0], invert=True)):
        layer = layers.Normalization(**kwargs)
        want = np.asarray(keras.layers.Normalization(**kwargs)(x))
        out = forward_and_grads(layer, x, x, backend, dtype)[0]
        assert layer.weights == []
        assert_close(out, want, TOLERANCES[dtype][0], f"Normalization({kwargs})")


def test_normalization_weights_survive_adoption_by_a_model():
    norm = layers.Normalization()
    norm.adapt(np.array([[0.0, 7.0], [2.0, 9.0]]))
    model = unidl.Sequential([layers.Input((2,)), norm, layers.Dense(1)], seed=0)
    model.compile(optimizer="sgd", loss="mse")
    np.testing.assert_allclose(norm.get_weights()[0], [1.0, 8.0])
    bias = model.layers[-1].get_weights()[1]
    np.testing.assert_allclose(model.predict(np.array([[1.0, 8.0]]), verbose=0), bias[None])  # normalized to 0


CATEGORY_CASES = [  # (kwargs, ids)
    (dict(num_tokens=4, output_mode="one_hot"), np.array([3, 2, 0, 1])),
    (dict(num_tokens=4, output_mode="one_hot"), np.array([[3], [2]])),
    (dict(num_tokens=5, output_mode="multi_hot"), np.array([[0, 1], [0, 0], [1, 2], [4, 4]])),
    (dict(num_tokens=4, output_mode="multi_hot"), np.array([3, 2, 0, 1])),
    (dict(num_tokens=4, output_mode="count"), np.array([[0, 1, 1], [3, 3, 3]])),
]


@pytest.mark.parametrize("backend, dtype", TARGETS)
@pytest.mark.parametrize("kwargs, ids", CATEGORY_CASES)
def test_category_encoding_matches_keras(keras, kwargs, ids, backend, dtype):
    want = np.asarray(keras.layers.CategoryEncoding(**kwargs)(ids))
    with unidl.use_backend(backend, dtype=dtype) as be:
        layer = layers.CategoryEncoding(**kwargs)
        out = be.to_numpy(layer(ids))
        assert layer.compute_output_shape((None, *ids.shape[1:]))[1:] == want.shape[1:]
    np.testing.assert_array_equal(out, want)


def test_category_encoding_count_weights_match_keras(keras):
    ids, weights = np.array([[0, 1, 1], [2, 2, 0]]), np.array([[0.5, 1.0, 2.0], [1.0, 1.5, 0.25]])
    want = np.asarray(keras.layers.CategoryEncoding(3, output_mode="count")(ids, count_weights=weights))
    with unidl.use_backend("numpy", dtype="float64") as be:
        out = be.to_numpy(layers.CategoryEncoding(3, output_mode="count")(ids, count_weights=weights))
    np.testing.assert_allclose(out, want, rtol=FORWARD_F64.rtol)


def test_category_encoding_refuses_ids_out_of_range_before_fit():
    layer = layers.CategoryEncoding(3)
    with pytest.raises(ValueError, match=r"integer ids in \[0, 3\)"):
        layer.check_input_values(np.array([[0, 3]]), "fit(x)")
    layer.check_input_values(np.array([[0, 2.0]]), "fit(x)")


# ------------------------------------------------------------------ lookups and TextVectorization vs Keras

CORPUS = ["The cat sat on the mat.", "the dog ate my homework!", "A cat, a dog; a BIRD?", "it's  the\tend",
          "Straße ÄÖ café\u00a0bar \u2003x", "dog dog cat"]


def keras_text(values):
    values = np.asarray(values)
    if values.dtype.kind in "SO":
        return np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else v, otypes=[object])(values).astype(str)
    return values


TEXT_CASES = {  # id -> (kwargs, adapt data, call data)
    "int": (dict(), CORPUS, ["the cat and the dog", "unknown words only", "cat"]),
    "int_length": (dict(output_sequence_length=4), np.array(CORPUS)[:, None], np.array([["the cat sat on the mat"],
                                                                                          ["bird"]])),
    "max_tokens": (dict(max_tokens=6), CORPUS, ["a cat the dog sat mat"]),
    "ngrams": (dict(ngrams=2, max_tokens=12, output_sequence_length=8), CORPUS, ["the cat sat on the mat"]),
    "ngrams_tuple": (dict(ngrams=(1, 3)), CORPUS, ["a cat a dog a bird"]),
    "characters": (dict(split="character", standardize="lower"), CORPUS, ["Abc, déf"]),
    "no_split": (dict(split=None, standardize="strip_punctuation"), ["a b", "c", "c!", "a b"], ["c", "a b", "zz"]),
    "lower_only": (dict(standardize="lower"), CORPUS, ["The cat."]),
    "no_standardize": (dict(standardize=None), CORPUS, ["The cat sat"]),
    "multi_hot": (dict(output_mode="multi_hot"), CORPUS, ["the cat the end", "zebra"]),
    "count": (dict(output_mode="count", max_tokens=8, pad_to_max_tokens=True), CORPUS, ["dog dog the zebra"]),
    "tf_idf": (dict(output_mode="tf_idf"), CORPUS, ["the cat the end", "zebra dog"]),
    "scalar": (dict(output_sequence_length=5), CORPUS, "the cat sat"),
}


@pytest.mark.parametrize("case_id", sorted(TEXT_CASES))
def test_text_vectorization_matches_keras(keras, case_id):
    kwargs, adapt_data, inputs = TEXT_CASES[case_id]
    keras_layer = keras.layers.TextVectorization(**kwargs)
    keras_layer.adapt(adapt_data)
    layer = layers.TextVectorization(**kwargs)
    layer.adapt(adapt_data)
    assert layer.get_vocabulary() == [str(t) for t in keras_layer.get_vocabulary()]
    assert layer.vocabulary_size() == keras_layer.vocabulary_size()
    out, want = layer(inputs), np.asarray(keras_layer(inputs))
    assert isinstance(out, np.ndarray) and out.shape == want.shape
    if kwargs.get("output_mode", "int") == "int":
        assert out.dtype == np.int64
        np.testing.assert_array_equal(out, want)
    else:
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, want, rtol=FORWARD_F32.rtol, atol=FORWARD_F32.atol)


LOOKUP_CASES = {  # id -> (class, kwargs, adapt data or None, call data)
    "string": ("StringLookup", dict(), [["b", "a"], ["c", "a"], ["b", "d"]], [["a", "zz"], ["d", "b"]]),
    "string_mask_one_hot": ("StringLookup", dict(mask_token="", output_mode="one_hot"), ["b", "a", "a", ""],
                            ["a", "zz", ""]),
    "string_mask_multi_hot": ("StringLookup", dict(mask_token="[M]", output_mode="multi_hot"), ["b", "a", "a"],
                              [["a", "zz", "[M]"], ["b", "b", "b"]]),
    "string_mask_int": ("StringLookup", dict(mask_token="[M]"), ["b", "a", "a"], [["a", "zz", "[M]"]]),
    "string_max_tokens_count": ("StringLookup", dict(max_tokens=3, output_mode="count"),
                                ["x", "y", "y", "z", "z", "z"], [["x", "y", "z", "z"]]),
    "string_tf_idf": ("StringLookup", dict(output_mode="tf_idf"), [["a", "b"], ["b", "c"], ["b", "b"]],
                      [["a", "b", "b", "q"]]),
    "string_vocabulary": ("StringLookup", dict(vocabulary=["x", "y", "z"]), None, [["z", "w", "x"]]),
    "string_vocabulary_with_specials": ("StringLookup", dict(vocabulary=["[UNK]", "x", "y"]), None, [["y", "w"]]),
    "string_invert": ("StringLookup", dict(vocabulary=["a", "b"], invert=True), None, [[0, 1, 2, 3]]),
    "string_no_oov": ("StringLookup", dict(num_oov_indices=0, vocabulary=["a", "b"]), None, [["b", "a"]]),
    "int": ("IntegerLookup", dict(), [5, 3, 3, 7, 7, 1], [[3, 7, 99]]),
    "int_oov_buckets_mask": ("IntegerLookup", dict(num_oov_indices=3, mask_token=0), [5, 3, 3, 7, 7, 1, 0],
                             [[3, 7, 99, 100, 0, -4]]),
    "int_max_tokens": ("IntegerLookup", dict(max_tokens=3), np.array([1, 1, 2, 2, 3]), [[1, 2, 3]]),
    "int_multi_hot": ("IntegerLookup", dict(output_mode="multi_hot"), [10, 20, 20], [[10, 30], [20, 20]]),
    "int_invert": ("IntegerLookup", dict(vocabulary=[12, 36, 1138, 42], invert=True), None, [[0, 1, 2, 3, 4, 5]]),
    "int_invert_mask": ("IntegerLookup", dict(vocabulary=[12, 36], mask_token=0, invert=True), None, [[0, 1, 2, 3]]),
}


@pytest.mark.parametrize("case_id", sorted(LOOKUP_CASES))
def test_lookups_match_keras(keras, case_id):
    cls, kwargs, adapt_data, inputs = LOOKUP_CASES[case_id]
    keras_layer = getattr(keras.layers, cls)(**kwargs)
    layer = getattr(layers, cls)(**kwargs)
    if adapt_data is not None:
        keras_layer.adapt(adapt_data)
        layer.adapt(adapt_data)
    assert [str(t) for t in layer.get_vocabulary()] == [str(t) for t in keras_layer.get_vocabulary()]
    inputs = np.asarray(inputs)
    out, want = layer(inputs), keras_text(np.asarray(keras_layer(inputs)))
    assert out.shape == want.shape
    if want.dtype.kind == "f":
        np.testing.assert_allclose(out, want, rtol=FORWARD_F32.rtol, atol=FORWARD_F32.atol)
    else:
        np.testing.assert_array_equal(out, want)


def test_vocabulary_ties_are_broken_by_decreasing_token():
    layer = layers.StringLookup()
    layer.adapt(["b", "a", "c", "a", "b", "é", "z"])  # a, b: 2 each; c, z, é: 1 each (UTF-8 order: c < z < é)
    assert layer.get_vocabulary() == ["[UNK]", "b", "a", "é", "z", "c"]
    ints = layers.IntegerLookup()
    ints.adapt([3, 10, 10, 3, 2, 100])
    assert ints.get_vocabulary() == [-1, 10, 3, 100, 2]


def test_text_standardization_is_ascii_only_as_keras():
    layer = layers.TextVectorization()
    layer.adapt(["HeLLo, WORLD! ÉCOLE it's\u00a0fine"])
    # ASCII letters are lowered and ASCII punctuation removed; É stays, and the no-break space
    # does not split (TensorFlow's ops do the same).
    assert sorted(layer.get_vocabulary(include_special_tokens=False)) == sorted(
        ["hello", "world", "\u00c9cole", "its\u00a0fine"])


# ------------------------------------------------------------------ the host-layer contract

def test_host_layers_declare_themselves():
    for cls in (layers.TextVectorization, layers.StringLookup, layers.IntegerLookup):
        assert cls.runs_on_host is True and callable(cls.host_call)
    for cls in (layers.Normalization, layers.Rescaling, layers.CategoryEncoding, layers.Dense):
        assert getattr(cls, "runs_on_host", False) is False


def test_host_call_maps_numpy_to_numpy():
    vectorizer = layers.TextVectorization(output_sequence_length=3, vocabulary=["the", "cat"])
    out = vectorizer.host_call(np.array(["The cat", "a cat sat on"]))
    assert isinstance(out, np.ndarray) and out.dtype == np.int64
    np.testing.assert_array_equal(out, [[2, 3, 0], [1, 3, 1]])
    inverse = layers.StringLookup(vocabulary=["a", "b"], invert=True)
    np.testing.assert_array_equal(inverse.host_call(np.array([2, 0])), ["b", "[UNK]"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_standalone_calls_return_numpy_or_the_bound_backends_tensors(backend):
    vectorizer = layers.TextVectorization(vocabulary=["the", "cat"])
    assert isinstance(vectorizer(["the cat"]), np.ndarray)  # no backend bound: NumPy
    be = unidl.get_backend(backend)
    with unidl.use_backend(be):
        ids = vectorizer(["the cat sat"])
        assert not isinstance(ids, np.ndarray) or backend == "numpy"
        np.testing.assert_array_equal(be.to_numpy(ids), [[2, 3, 1]])
        lookup = layers.IntegerLookup(vocabulary=[7, 9])
        np.testing.assert_array_equal(be.to_numpy(lookup(be.convert(np.array([[9, 7, 8]])))), [[2, 1, 0]])
        strings = layers.StringLookup(vocabulary=["a"], invert=True)(np.array([1, 0]))
        assert isinstance(strings, np.ndarray) and strings.tolist() == ["a", "[UNK]"]  # strings stay NumPy


def test_host_layer_inside_a_traced_step_says_what_to_do():
    tf = pytest.importorskip("tensorflow")
    lookup = layers.IntegerLookup(vocabulary=[10, 20])

    @tf.function(autograph=False)
    def traced(x):
        return lookup(x)

    with pytest.raises(HostLayerError, match="runs on the host"):
        traced(tf.constant([[10, 20]]))


def test_adapt_takes_iterables_of_batches_and_tensors():
    tf = pytest.importorskip("tensorflow")
    dataset = tf.data.Dataset.from_tensor_slices(CORPUS).batch(2)
    from_dataset = layers.TextVectorization()
    from_dataset.adapt(dataset)
    from_list = layers.TextVectorization()
    from_list.adapt(CORPUS)
    assert from_dataset.get_vocabulary() == from_list.get_vocabulary()
    from_generator = layers.TextVectorization()
    from_generator.adapt((np.array(CORPUS[i:i + 2]) for i in range(0, len(CORPUS), 2)), steps=2)
    assert set(from_generator.get_vocabulary()) < set(from_list.get_vocabulary())
    np.testing.assert_array_equal(from_list(tf.constant(["the cat"])), from_list(["the cat"]))


def test_lookup_errors_name_the_problem():
    with pytest.raises(ValueError, match="num_oov_indices=0"):
        layers.StringLookup(vocabulary=["a"], num_oov_indices=0)(["b"])
    with pytest.raises(RuntimeError, match="adapt"):
        layers.TextVectorization(output_mode="multi_hot")(["a"])
    with pytest.raises(ValueError, match="cannot adapt"):
        layers.StringLookup(vocabulary=["a"]).adapt(["b"])
    with pytest.raises(ValueError, match="repeats"):
        layers.StringLookup(vocabulary=["a", "a"])
    with pytest.raises(ValueError, match="max_tokens"):
        layers.IntegerLookup(vocabulary=[1, 2, 3], max_tokens=3)
    with pytest.raises(ValueError, match="IntegerLookup .* takes integers"):
        layers.IntegerLookup(vocabulary=[1])(np.array([1.5]))


# ------------------------------------------------------------------ configs, argument errors, saving

def config_round_trip(layer):
    config = layer.get_config()
    again = type(layer).from_config(config) if hasattr(type(layer), "from_config") else type(layer)(**config)
    assert again.get_config() == config
    return again


@pytest.mark.parametrize("make", [
    lambda: layers.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.5), lambda: layers.LeakyReLU(0.2),
    lambda: layers.PReLU(alpha_initializer="ones", alpha_regularizer="l2", shared_axes=[1, 2]),
    lambda: layers.ELU(0.7), lambda: layers.Softmax(axis=[1, 2]),
    lambda: layers.Conv1DTranspose(4, 3, strides=2, padding="same", activation="relu"),
    lambda: layers.DepthwiseConv2D(3, depth_multiplier=2, depthwise_regularizer="l2"),
    lambda: layers.SeparableConv2D(8, 3, depth_multiplier=2, pointwise_initializer="he_normal"),
    lambda: layers.Rescaling([0.5, 2.0], offset=-1.0), lambda: layers.Normalization(axis=(1, 2), invert=True),
    lambda: layers.Normalization(mean=[1.0, 2.0], variance=[3.0, 4.0]),
    lambda: layers.CategoryEncoding(5, output_mode="count"),
    lambda: layers.IntegerLookup(vocabulary=[4, 8], num_oov_indices=2, mask_token=0),
    lambda: layers.StringLookup(vocabulary=["a", "b"], output_mode="tf_idf", idf_weights=[0.5, 1.5]),
    lambda: layers.TextVectorization(max_tokens=10, ngrams=(1, 2), output_sequence_length=7, vocabulary=["a b"]),
])
def test_get_config_round_trip(make):
    config_round_trip(make())


def test_adapted_vocabulary_is_in_the_config():
    layer = layers.TextVectorization(output_mode="tf_idf")
    layer.adapt(CORPUS)
    again = config_round_trip(layer)
    assert again.get_vocabulary() == layer.get_vocabulary()
    np.testing.assert_array_equal(again(["the cat sat", "zebra"]), layer(["the cat sat", "zebra"]))


@pytest.mark.parametrize("make, argument", [
    (lambda: layers.ReLU(max_value=-1.0), "max_value"),
    (lambda: layers.ReLU(negative_slope="a lot"), "negative_slope"),
    (lambda: layers.LeakyReLU(negative_slope=-0.1), "negative_slope"),
    (lambda: layers.PReLU(shared_axes=[0]), "shared_axes"),
    (lambda: layers.ELU(alpha="one"), "alpha"),
    (lambda: layers.Softmax(axis="last"), "axis"),
    (lambda: layers.Conv1DTranspose(0, 3), "filters"),
    (lambda: layers.Conv1DTranspose(2, 3, padding="causal"), "padding"),
    (lambda: layers.DepthwiseConv2D(3, depth_multiplier=0), "depth_multiplier"),
    (lambda: layers.DepthwiseConv2D((3, 3, 3)), "kernel_size"),
    (lambda: layers.DepthwiseConv2D(3, strides=2, dilation_rate=2), "dilation_rate"),
    (lambda: layers.SeparableConv2D(-2, 3), "filters"),
    (lambda: layers.SeparableConv2D(2, 3, data_format="channels_first"), "data_format"),
    (lambda: layers.Rescaling("big"), "scale"),
    (lambda: layers.Normalization(mean=1.0), "variance"),
    (lambda: layers.Normalization(axis="features"), "axis"),
    (lambda: layers.CategoryEncoding(), "num_tokens"),
    (lambda: layers.CategoryEncoding(3, output_mode="tf_idf"), "output_mode"),
    (lambda: layers.CategoryEncoding(3, sparse=True), "sparse"),
    (lambda: layers.StringLookup(num_oov_indices=2), "num_oov_indices"),
    (lambda: layers.StringLookup(max_tokens=1), "max_tokens"),
    (lambda: layers.StringLookup(output_mode="one_hot", invert=True), "invert"),
    (lambda: layers.IntegerLookup(num_oov_indices=-1), "num_oov_indices"),
    (lambda: layers.IntegerLookup(vocabulary_dtype="float32"), "vocabulary_dtype"),
    (lambda: layers.TextVectorization(standardize="upper"), "standardize"),
    (lambda: layers.TextVectorization(split="comma"), "split"),
    (lambda: layers.TextVectorization(ngrams=0), "ngrams"),
    (lambda: layers.TextVectorization(output_mode="count", output_sequence_length=4), "output_sequence_length"),
    (lambda: layers.TextVectorization(output_mode="one_hot"), "split=None"),
    (lambda: layers.TextVectorization(ragged=True), "ragged"),
])
def test_bad_arguments_name_the_argument(make, argument):
    with pytest.raises((ValueError, TypeError), match=argument):
        make()


def test_build_errors_are_clear():
    with pytest.raises(ValueError, match="batch axis"):
        layers.Normalization(axis=0).build_for((None, 3))
    with pytest.raises(ValueError, match="shared_axes"):
        layers.PReLU().build_for((None, None, 3))
    with pytest.raises(ValueError, match="out of range"):
        layers.Softmax(axis=3).build_for((None, 3))


def cnn(seed=0):
    """Every new graph layer with weights or arithmetic, in one image model."""
    return unidl.Sequential([
        layers.Input((8, 8, 2)),
        layers.Rescaling(0.5, offset=0.25),
        layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", bias_initializer="random_normal"),
        layers.PReLU(alpha_initializer="random_uniform", shared_axes=[1, 2]),
        layers.SeparableConv2D(4, 3, strides=2, activation="elu", bias_initializer="random_normal"),
        layers.LeakyReLU(0.2),
        layers.ELU(0.5),
        layers.ReLU(max_value=3.0, negative_slope=0.1),
        layers.Flatten(),
        layers.Dense(3),
        layers.Softmax(),
    ], seed=seed)


def sequence_model(normalization, seed=0):
    return unidl.Sequential([layers.Input((5, 3)), normalization, layers.Conv1DTranspose(4, 3, strides=2),
                             layers.ReLU(threshold=0.1), layers.Flatten(), layers.Dense(1)], seed=seed)


def images(n=16):
    rng = np.random.default_rng(3)
    return rng.random((n, 8, 8, 2)).astype(np.float32), np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]


def sequences(n=16):
    rng = np.random.default_rng(4)
    x = (3 * rng.standard_normal((n, 5, 3)) + 2).astype(np.float32)
    return x, x.mean(axis=(1, 2))[:, None]


def _adapted_normalization():
    norm = layers.Normalization()
    norm.adapt(sequences()[0])
    return norm


def train(make, xy, loss, backend, dtype, steps=5):
    x, y = xy
    model = make()
    model.compile(optimizer=unidl.optimizers.Adam(0.01), loss=loss, backend=backend, dtype=dtype)
    history = model.fit(x, y, batch_size=len(x), epochs=steps, shuffle=False, verbose=0)
    return history.history["loss"], model


MODELS = {
    "cnn": (cnn, images, "categorical_crossentropy"),
    "sequence": (lambda: sequence_model(_adapted_normalization()), sequences, "mse"),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_train_on_numpy(name):
    make, xy, loss = MODELS[name]
    losses, _ = train(make, xy(), loss, "numpy", "float64", steps=15)
    assert losses[-1] < losses[0]


@pytest.mark.skipif(not OTHERS, reason="neither torch nor tensorflow is installed")
@pytest.mark.parametrize("backend", OTHERS)
@pytest.mark.parametrize("dtype, tol", [("float32", TRAJECTORY_F32), ("float64", TRAJECTORY_F64)])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_training_matches_numpy_on_every_backend(name, backend, dtype, tol):
    make, xy, loss = MODELS[name]
    want, want_model = train(make, xy(), loss, "numpy", dtype)
    got, model = train(make, xy(), loss, backend, dtype)
    np.testing.assert_allclose(got, want, rtol=tol.rtol, atol=tol.atol)
    for g, w in zip(model.get_weights(), want_model.get_weights()):
        np.testing.assert_allclose(g, w, rtol=tol.rtol, atol=max(tol.atol, tol.rtol * 1e-2))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_saved_models_predict_the_same(tmp_path, name):
    make, xy, loss = MODELS[name]
    _, model = train(make, xy(), loss, "numpy", "float64", steps=2)
    model.save(tmp_path / "model.unidl")
    loaded = unidl.load_model(tmp_path / "model.unidl")
    x = xy()[0]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert [w.name for w in loaded.weights] == [w.name for w in model.weights]


def test_saved_models_keep_category_encoding_and_given_normalization(tmp_path):
    inputs = layers.Input((3,))
    encoded = layers.CategoryEncoding(6, output_mode="count")(inputs)
    scaled = layers.Normalization(mean=1.0, variance=4.0)(encoded)
    model = unidl.Model(inputs, layers.Dense(2)(scaled))
    model.compile(optimizer="sgd", loss="mse")
    x = np.array([[0, 1, 1], [5, 5, 2]])
    model.save(tmp_path / "m.unidl")
    loaded = unidl.load_model(tmp_path / "m.unidl")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("make, raw", [
    (lambda: layers.IntegerLookup(max_tokens=5), np.array([[10, 20], [20, 30]])),
    (lambda: layers.StringLookup(output_mode="multi_hot"), np.array([["a", "b"], ["b", "zz"]])),
    (lambda: layers.TextVectorization(output_sequence_length=4), np.array([["the cat sat"], ["a dog"]])),
])
def test_saved_models_keep_host_layer_vocabularies(tmp_path, make, raw):
    layer = make()
    layer.adapt(raw if not isinstance(layer, layers.TextVectorization) else CORPUS)
    inputs = layers.Input(raw.shape[1:], dtype="string" if raw.dtype.kind == "U" else None)
    outputs = layers.Dense(2)(layers.Flatten()(layer(inputs)))
    model = unidl.Model(inputs, outputs)
    model.save(tmp_path / "m.unidl")
    loaded = unidl.load_model(tmp_path / "m.unidl").get_layer(layer.name)
    assert loaded.get_vocabulary() == layer.get_vocabulary()
    np.testing.assert_array_equal(loaded(raw), layer(raw))

