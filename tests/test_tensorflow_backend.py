"""TensorFlow-specific behaviour of the tensorflow backend.

The op-by-op comparison with the NumPy reference lives in the conformance kit
(``unidl.testing``). This file covers what only TF can get wrong: devices,
dtypes, Python/NumPy scalars next to tensors, the gradient rules at ties and
kinks (computed here by hand), gathers and their IndexedSlices gradients,
tapes, and the lazy import. References are plain NumPy.
"""
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import unidl  # noqa: E402
from unidl.backend import BackendError  # noqa: E402
from unidl.tolerances import FORWARD_F32, FORWARD_F64, GRAD_F64  # noqa: E402

GPUS = tf.config.list_physical_devices("GPU")


@pytest.fixture(scope="module")
def b64():
    return unidl.get_backend("tensorflow", dtype="float64")


@pytest.fixture(scope="module")
def b32():
    return unidl.get_backend("tensorflow", dtype="float32")


def grads_of(b, fn, *arrays):
    """(value, w, input grads) of sum(w * fn(*xs)), w a fixed random upstream gradient.

    A random w rather than all ones makes a gradient routed to the wrong element show.
    """
    xs = [b.convert(np.asarray(a, dtype=np.float64)) for a in arrays]
    w = np.random.default_rng(0).uniform(0.5, 1.5, size=b.shape(fn(*xs)))
    value, grads = b.grad_wrt_inputs(lambda *ts: b.sum(b.multiply(fn(*ts), b.convert(w))), xs)
    return b.to_numpy(value), w, [b.to_numpy(g) for g in grads]


def scatter_add_reference(shape, index_of, w):
    """Gradient of a gather by hand: w[pos] flows back to x[index_of(pos)], summed over repeats."""
    g = np.zeros(shape)
    for pos in np.ndindex(*w.shape):
        g[index_of(pos)] += w[pos]
    return g


# ------------------------------------------------------------ lazy import
def test_importing_the_plugin_does_not_import_tensorflow():
    code = ("import sys, unidl, unidl_tensorflow, unidl_tensorflow.backend; "
            "unidl.list_backends(); print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_info(b32):
    assert b32.name == "tensorflow" and b32.framework == "tensorflow"
    assert b32.framework_version() == tf.__version__


# ---------------------------------------------------------------- devices
@pytest.mark.skipif(bool(GPUS), reason="checks the no-GPU error")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "gpu", "GPU:1"])
def test_gpu_without_one_is_a_clear_error(device):
    with pytest.raises(BackendError, match="sees 0 GPU") as info:
        unidl.get_backend("tensorflow", device=device)
    assert "['cpu']" in str(info.value)  # lists what is available


def test_unknown_device_is_a_clear_error():
    with pytest.raises(BackendError, match="unknown device 'tpu'"):
        unidl.get_backend("tensorflow", device="tpu")


def test_default_device_is_cpu(b32):
    assert b32.device == "cpu"
    assert b32.devices()[0] == "cpu"
    assert b32.convert(np.zeros(2)).device.endswith("CPU:0")
    assert unidl.get_backend("tensorflow", device="cpu:0").device == "cpu"


@pytest.mark.skipif(not GPUS, reason="needs a GPU")
def test_gpu_tensors_and_variables_live_on_the_gpu():
    b = unidl.get_backend("tensorflow", device="cuda")
    assert b.device == "cuda:0" and "cuda:0" in b.devices()
    x = b.convert(np.arange(3.0))
    assert x.device.endswith("GPU:0")
    assert b.variable(np.ones(3)).device.endswith("GPU:0")
    assert b.add(x, 1.0).device.endswith("GPU:0")
    with pytest.raises(BackendError, match="sees"):
        unidl.get_backend("tensorflow", device=f"cuda:{len(GPUS)}")


@pytest.mark.skipif(not GPUS, reason="CPU is TF's default placement without a GPU")
def test_cpu_backend_keeps_ops_on_cpu_beside_a_gpu():
    b = unidl.get_backend("tensorflow", device="cpu")
    x = b.convert(np.arange(3.0))
    assert b.exp(x).device.endswith("CPU:0")


def test_pinned_ops_give_the_same_numbers(b64):
    # The wrapper used when the device is not TF's default; exercised here on the CPU.
    from unidl_tensorflow.backend import TensorFlowBackend
    pinned = TensorFlowBackend(dtype="float64")
    pinned._pin_ops()
    x = np.random.default_rng(5).normal(size=(2, 3))
    for op in (lambda b, t: b.softmax(t), lambda b, t: b.take(t, [1, 0], axis=1),
               lambda b, t: b.sum(b.multiply(t, 2.0), axis=0)):
        np.testing.assert_array_equal(b64.to_numpy(op(pinned, pinned.convert(x))),
                                      b64.to_numpy(op(b64, b64.convert(x))))


# ----------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_floats_take_the_compute_dtype(dtype):
    b = unidl.get_backend("tensorflow", dtype=dtype)
    src = np.random.default_rng(1).normal(size=(3, 4))
    x = b.convert(src)
    assert x.dtype == tf.as_dtype(dtype)
    out = b.to_numpy(x)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, src.astype(dtype))
    for value in (np.float32(1.5), 2.5, tf.constant([1.0], tf.float16), tf.constant([0.1], tf.float64)):
        assert b.convert(value).dtype == tf.as_dtype(dtype)
    assert b.to_numpy(b.convert(0.1)) == np.asarray(0.1, dtype=dtype)  # rounded once, from float64
    assert b.variable(src, name="w").dtype == tf.as_dtype(dtype)


def test_unsupported_dtype_is_a_clear_error():
    with pytest.raises(BackendError, match="float16.*dtype_policy='mixed_float16'"):
        unidl.get_backend("tensorflow", dtype="float16")


def test_ints_become_int64_and_bools_stay(b32):
    for src in (np.arange(3, dtype=np.int32), np.arange(3, dtype=np.uint8), [1, 2], 7,
                tf.constant([1, 2], tf.int32)):
        assert b32.convert(src).dtype == tf.int64
    assert b32.convert(np.array([True, False])).dtype == tf.bool
    assert b32.convert(np.arange(3.0), dtype="int32").dtype == tf.int32
    assert b32.to_numpy(b32.argmax(b32.convert(np.eye(3)))).dtype == np.int64
    assert b32.cast(b32.convert([1, 2]), "float64").dtype == tf.float64
    assert b32.cast(np.array([1.7, -1.7]), "int64").dtype == tf.int64
    with pytest.raises(BackendError, match="unknown dtype 'complex64'"):
        b32.cast(b32.convert([1.0]), "complex64")


def test_convert_and_to_numpy_copy(b64):
    src = np.arange(4.0)
    x = b64.convert(src)
    src[0] = 99.0
    assert b64.to_numpy(x)[0] == 0.0  # convert does not alias the caller's array
    out = b64.to_numpy(x)
    out[1] = 99.0
    assert b64.to_numpy(x)[1] == 1.0  # to_numpy hands out a copy
    assert b64.shape(x) == (4,) and all(type(d) is int for d in b64.shape(x))
    v = b64.variable(np.ones(2))
    read = b64.convert(v)
    b64.assign(v, np.zeros(2))
    np.testing.assert_array_equal(b64.to_numpy(read), [1.0, 1.0])  # convert read the variable's value


# ------------------------------------------------- scalars next to tensors
BINARY = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide,
    "power": np.power, "maximum": np.maximum, "minimum": np.minimum,
    "equal": np.equal, "not_equal": np.not_equal, "greater": np.greater,
    "greater_equal": np.greater_equal, "less": np.less, "less_equal": np.less_equal,
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", sorted(BINARY))
def test_python_scalars_on_either_side(dtype, op):
    b = unidl.get_backend("tensorflow", dtype=dtype)
    values = np.array([0.5, 1.0, 2.0])
    t = b.convert(values)
    ref = values.astype(dtype)
    for scalar in (2.0, 1, 0.1):  # 0.1 is not exact in float32: it must be rounded to dtype once
        s = np.asarray(scalar, dtype=dtype)
        for out, expected in ((getattr(b, op)(scalar, t), BINARY[op](s, ref)),
                              (getattr(b, op)(t, scalar), BINARY[op](ref, s))):
            assert out.dtype == (tf.bool if expected.dtype == bool else tf.as_dtype(dtype))
            tol = FORWARD_F64 if dtype == "float64" else FORWARD_F32
            np.testing.assert_allclose(b.to_numpy(out), expected, rtol=tol.rtol, atol=tol.atol)


def test_numpy_float64_operands_join_a_float32_tensor(b32):
    t = b32.convert(np.array([0.5, 1.0]))
    for out in (b32.add(np.float64(0.25), t), b32.add(t, np.float64(0.25)),
                b32.multiply(np.array([2.0, 3.0]), t), b32.subtract(t, np.array([2.0, 3.0])),
                b32.where(np.array([True, False]), t, 0.0), b32.where(b32.greater(t, 0.7), 1.0, t),
                b32.matmul(np.ones((1, 2)), b32.reshape(t, (2, 1))), b32.clip(t, 0.6, np.float64(0.9))):
        assert out.dtype == tf.float32
    np.testing.assert_array_equal(b32.to_numpy(b32.subtract(t, np.array([2.0, 3.0]))), [-1.5, -2.0])
    # Both operands plain: floats take the compute dtype.
    assert b32.add(1.0, 2.0).dtype == tf.float32
    # An integer tensor meeting a float becomes float, as in NumPy (TF would truncate the float).
    np.testing.assert_array_equal(b32.to_numpy(b32.multiply(b32.convert([1, 2]), 0.5)), [0.5, 1.0])


def test_integer_division_and_mean_are_float(b64):
    i = b64.convert([1, 2, 4])
    for out, expected in ((b64.divide(i, 2), [0.5, 1.0, 2.0]), (b64.divide(3, i), [3.0, 1.5, 0.75]),
                          (b64.mean(i), 7 / 3)):
        assert out.dtype == tf.float64  # TF: no integer RealDiv kernel, and an integer Mean
        np.testing.assert_allclose(b64.to_numpy(out), expected, rtol=FORWARD_F64.rtol)


# --------------------------------------- gradient rules, computed by hand
def test_maximum_minimum_ties_give_the_whole_gradient_to_a(b64):
    a, c = [1.0, 2.0, 3.0], [1.0, 3.0, 1.0]
    _, w, (ga, gc) = grads_of(b64, b64.maximum, a, c)
    np.testing.assert_array_equal(ga, w * [1, 0, 1])
    np.testing.assert_array_equal(gc, w * [0, 1, 0])
    _, w, (ga, gc) = grads_of(b64, b64.minimum, a, c)
    np.testing.assert_array_equal(ga, w * [1, 1, 0])
    np.testing.assert_array_equal(gc, w * [0, 0, 1])
    # Broadcast second operand: ties still go to a; c's gradient sums over the broadcast axis.
    value, w, (ga, gc) = grads_of(b64, b64.maximum, [[2.0, 1.0], [2.0, 3.0]], [2.0])
    np.testing.assert_array_equal(ga, w * [[1, 0], [1, 1]])
    np.testing.assert_array_equal(gc, [w[0, 1]])
    np.testing.assert_allclose(value, np.sum(w * [[2, 2], [2, 3]]), rtol=FORWARD_F64.rtol)
    # Broadcast first operand: a collects every tie.
    _, w, (ga, gc) = grads_of(b64, b64.minimum, [2.0], [[2.0, 1.0], [2.0, 3.0]])
    np.testing.assert_allclose(ga, [w[0, 0] + w[1, 0] + w[1, 1]], rtol=GRAD_F64.rtol, atol=GRAD_F64.atol)
    np.testing.assert_array_equal(gc, w * [[0, 1], [0, 0]])


@pytest.mark.parametrize("op", ["max", "min"])
def test_reduction_ties_split_the_gradient_evenly(b64, op):
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    if op == "min":
        x = -x
    _, w, (g,) = grads_of(b64, lambda t: getattr(b64, op)(t, axis=1), x)
    np.testing.assert_allclose(g, [[0, w[0] / 2, w[0] / 2], [w[1] / 3] * 3], rtol=GRAD_F64.rtol, atol=GRAD_F64.atol)
    _, w, (g,) = grads_of(b64, lambda t: getattr(b64, op)(t, axis=-1, keepdims=True), x)
    np.testing.assert_allclose(g, [[0, w[0, 0] / 2, w[0, 0] / 2], [w[1, 0] / 3] * 3], rtol=GRAD_F64.rtol,
                               atol=GRAD_F64.atol)
    _, w, (g,) = grads_of(b64, lambda t: getattr(b64, op)(t), x)
    np.testing.assert_allclose(g, [[0, w / 2, w / 2], [0, 0, 0]], rtol=GRAD_F64.rtol, atol=GRAD_F64.atol)


def test_relu_clip_abs_sign_at_their_kinks(b64):
    x = [-1.0, 0.0, 1.0, 2.0, 3.0]
    _, w, (g,) = grads_of(b64, b64.relu, x)
    np.testing.assert_array_equal(g, w * [0, 0, 1, 1, 1])
    _, w, (g,) = grads_of(b64, lambda t: b64.clip(t, 0.0, 2.0), x)
    np.testing.assert_array_equal(g, w * [0, 1, 1, 1, 0])  # inclusive at both bounds
    _, w, (g,) = grads_of(b64, b64.abs, x)
    np.testing.assert_array_equal(g, w * [-1, 0, 1, 1, 1])
    _, w, (g,) = grads_of(b64, b64.sign, x)
    np.testing.assert_array_equal(g, np.zeros(5))
    np.testing.assert_array_equal(b64.to_numpy(b64.clip(b64.convert(x), 2.0, 0.0)), np.clip(x, 2.0, 0.0))


def test_sigmoid_is_stable_for_large_inputs(b32):
    out = b32.to_numpy(b32.sigmoid(b32.convert([-1000.0, 0.0, 1000.0])))
    np.testing.assert_array_equal(out, [0.0, 0.5, 1.0])


# ------------------------------------------------ reductions and indexing
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2), (-1, -3), [1], (), np.int64(1)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_follow_numpy_axes(b64, axis, keepdims):
    x = np.random.default_rng(2).normal(size=(2, 3, 4))
    t = b64.convert(x)
    np_axis = tuple(axis) if isinstance(axis, list) else axis
    for op, ref in (("sum", np.sum), ("mean", np.mean), ("max", np.max), ("min", np.min)):
        out = b64.to_numpy(getattr(b64, op)(t, axis=axis, keepdims=keepdims))
        np.testing.assert_allclose(out, ref(x, axis=np_axis, keepdims=keepdims), rtol=FORWARD_F64.rtol,
                                   atol=FORWARD_F64.atol)


def test_argmax_picks_the_first_of_ties_like_numpy(b64):
    x = np.array([[1.0, 5.0, 5.0], [2.0, 2.0, 1.0]])
    for axis in (-1, 0, None):
        np.testing.assert_array_equal(b64.to_numpy(b64.argmax(b64.convert(x), axis=axis)), np.argmax(x, axis=axis))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_take_with_2d_indices_matches_numpy(b64, axis):
    x = np.random.default_rng(3).normal(size=(4, 5, 3))
    idx = np.array([[0, 2], [-1, 2], [1, 0]])  # repeats and a negative index
    for indices in (idx, b64.convert(idx), idx.tolist()):
        out = b64.take(b64.convert(x), indices, axis=axis)
        np.testing.assert_array_equal(b64.to_numpy(out), np.take(x, idx, axis=axis))
    ax = axis % 3
    _, w, (g,) = grads_of(b64, lambda t: b64.take(t, idx, axis=axis), x)
    expected = scatter_add_reference(x.shape, lambda p: p[:ax] + (idx[p[ax:ax + 2]] % x.shape[ax],) + p[ax + 2:], w)
    np.testing.assert_allclose(g, expected, rtol=GRAD_F64.rtol, atol=GRAD_F64.atol)


@pytest.mark.parametrize("x_shape, idx_shape, axis", [
    ((3, 4), (3, 2), 1),
    ((3, 4), (5, 4), 0),
    ((2, 3, 4), (2, 3, 2), -1),
    ((2, 3, 4), (2, 5, 4), 1),
    ((2, 3, 4), (1, 2, 4), 1),   # indices broadcast against x on axis 0
    ((1, 3, 4), (2, 3, 2), 2),   # x broadcast against indices on axis 0
])
def test_take_along_axis_matches_numpy_with_gradient(b64, x_shape, idx_shape, axis):
    rng = np.random.default_rng(4)
    x = rng.normal(size=x_shape)
    n = x_shape[axis]
    idx = rng.integers(-n, n, size=idx_shape)  # negative entries too
    expected = np.take_along_axis(x, idx, axis=axis)
    out = b64.to_numpy(b64.take_along_axis(b64.convert(x), idx, axis=axis))
    np.testing.assert_array_equal(out, expected)
    _, w, (g,) = grads_of(b64, lambda t: b64.take_along_axis(t, b64.convert(idx), axis=axis), x)
    # By hand: out[p] = x[p with p[axis] replaced by idx[p]], both broadcast to out's shape.
    ax = axis % len(x_shape)
    idx_b = np.broadcast_to(idx, expected.shape)

    def source(p):
        q = list(p)
        q[ax] = idx_b[p] % n
        return tuple(0 if x_shape[i] == 1 else q[i] for i in range(len(q)))
    np.testing.assert_allclose(g, scatter_add_reference(x_shape, source, w), rtol=GRAD_F64.rtol, atol=GRAD_F64.atol)


def test_shape_ops_match_numpy(b64):
    x = np.random.default_rng(6).normal(size=(2, 3, 4))
    t = b64.convert(x)
    np.testing.assert_array_equal(b64.to_numpy(b64.transpose(t)), np.transpose(x))
    np.testing.assert_array_equal(b64.to_numpy(b64.transpose(t, (1, -1, 0))), np.transpose(x, (1, 2, 0)))
    np.testing.assert_array_equal(b64.to_numpy(b64.reshape(t, (4, -1))), x.reshape(4, -1))
    np.testing.assert_array_equal(b64.to_numpy(b64.reshape(t, -1)), x.reshape(-1))
    np.testing.assert_array_equal(b64.to_numpy(b64.concatenate([t, t], axis=1)), np.concatenate([x, x], axis=1))
    np.testing.assert_array_equal(b64.to_numpy(b64.concatenate([t])), x)
    m = np.random.default_rng(7).normal(size=(3, 4, 5))
    np.testing.assert_allclose(b64.to_numpy(b64.matmul(t, b64.convert(m[:1]))), x @ m[:1], rtol=FORWARD_F64.rtol)
    np.testing.assert_allclose(b64.to_numpy(b64.matmul(t[0], b64.convert(m[0]))), x[0] @ m[0], rtol=FORWARD_F64.rtol)


# ----------------------------------------------------- variables, autodiff
def test_variable_names_are_sanitized(b32):
    assert b32.variable(np.ones(2), name="dense_1/kernel").name == "dense_1/kernel:0"
    assert b32.variable(np.ones(2), name="my layer:0").name == "my_layer_0:0"
    assert b32.variable(np.ones(2), name="_hidden").name == "v_hidden:0"
    assert b32.variable(np.ones(2)).name.startswith("Variable")


def test_assign_and_trainable(b64):
    v = b64.variable(np.ones((2, 2)), trainable=False, name="moving_mean")
    assert isinstance(v, tf.Variable) and not v.trainable
    b64.assign(v, np.full((2, 2), 3.0))
    b64.assign(v, b64.multiply(v, 2.0))
    np.testing.assert_array_equal(b64.to_numpy(v), np.full((2, 2), 6.0))


def test_value_and_grad_gives_zeros_for_unused_and_dense_for_gathers(b64):
    used = b64.variable(np.array([1.0, 2.0, 3.0]), name="used")
    table = b64.variable(np.arange(6.0).reshape(3, 2), name="table")
    unused = b64.variable(np.ones((2, 2)), name="unused")
    frozen = b64.variable(np.array(2.0), trainable=False, name="frozen")
    x = b64.convert(np.array([4.0, 5.0, 6.0]))

    def fn():
        rows = b64.take(table, [2, 2, 0])  # a gather: TF's gradient is an IndexedSlices
        loss = b64.add(b64.sum(b64.multiply(used, x)), b64.multiply(b64.sum(rows), frozen))
        return loss, {"rows": rows}

    loss, aux, grads = b64.value_and_grad(fn, [used, table, unused, frozen])
    assert float(b64.to_numpy(loss)) == 32.0 + 2.0 * 19.0  # rows [4, 5], [4, 5], [0, 1]
    assert set(aux) == {"rows"}
    assert all(isinstance(g, tf.Tensor) and not isinstance(g, tf.IndexedSlices) for g in grads)
    np.testing.assert_array_equal(b64.to_numpy(grads[0]), [4.0, 5.0, 6.0])
    np.testing.assert_array_equal(b64.to_numpy(grads[1]), [[2.0, 2.0], [0.0, 0.0], [4.0, 4.0]])
    np.testing.assert_array_equal(b64.to_numpy(grads[2]), np.zeros((2, 2)))
    np.testing.assert_array_equal(b64.to_numpy(grads[3]), 19.0)  # non-trainable, but asked for


def test_no_grad_stops_recording_inside_value_and_grad(b64):
    v = b64.variable(np.array([1.0, 2.0]))

    def fn():
        with b64.no_grad():
            hidden = b64.multiply(v, v)  # recorded by no tape: contributes no gradient
        return b64.sum(b64.add(hidden, v)), None

    _, _, (g,) = b64.value_and_grad(fn, [v])
    np.testing.assert_array_equal(b64.to_numpy(g), [1.0, 1.0])

    def nested():  # no_grad inside no_grad, and a tape opened inside no_grad records as usual
        with b64.no_grad():
            with b64.no_grad():
                hidden = b64.multiply(v, v)
            _, _, (inner,) = b64.value_and_grad(lambda: (b64.sum(b64.multiply(v, v)), None), [v])
        return b64.sum(b64.add(hidden, b64.multiply(v, inner))), None

    _, _, (g,) = b64.value_and_grad(nested, [v])
    np.testing.assert_array_equal(b64.to_numpy(g), [2.0, 4.0])  # inner = 2 v, a constant here
    with b64.no_grad():  # outside any tape it is a plain context
        assert b64.to_numpy(b64.add(v, 1.0)).tolist() == [2.0, 3.0]


def test_grad_wrt_inputs_accepts_numpy_inputs(b32):
    value, (g,) = b32.grad_wrt_inputs(lambda t: b32.sum(b32.square(t)), [np.array([1.0, -2.0])])
    assert g.dtype == tf.float32
    np.testing.assert_array_equal(b32.to_numpy(g), [2.0, -4.0])
    assert float(b32.to_numpy(value)) == 5.0


def test_ops_dispatch_through_unidl_ops(b64):
    v = unidl.Variable(np.array([1.0, 2.0]), name="w")
    v.bind(b64)
    with unidl.use_backend(b64):
        out = unidl.ops.add(0.5, unidl.ops.multiply(v, 2.0))
    np.testing.assert_array_equal(b64.to_numpy(out), [2.5, 4.5])


def test_predict_and_evaluate_run_one_traced_graph_with_eager_numbers():
    from unidl import layers
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(37, 5, 3)), np.eye(3)[rng.integers(0, 3, 37)]
    results = {}
    for jit in (False, "auto"):
        model = unidl.Sequential([layers.LSTM(4, input_shape=(5, 3)), layers.Dropout(0.5),
                                  layers.Dense(3, activation="softmax")], seed=0)
        model.compile(loss="categorical_crossentropy", backend="tensorflow", dtype="float64", jit_compile=jit)
        results[jit] = (model.predict(x, batch_size=16), model.evaluate(x, y, batch_size=16, verbose=0))
        steps = [model.predict_function, model.test_function]
        assert sum(f.is_compiled for f in steps) == (0 if jit is False else 2)  # once per purpose
    np.testing.assert_allclose(results["auto"][0], results[False][0], rtol=FORWARD_F64.rtol, atol=FORWARD_F64.atol)
    np.testing.assert_allclose(results["auto"][1], results[False][1], rtol=FORWARD_F64.rtol)
