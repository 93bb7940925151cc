"""``unidl.ops`` as a Keras script uses it: keras.ops's names, signatures and numbers, anywhere.

* Every op on NumPy inputs with no backend bound (it runs on the default backend)
  equals the same op with each built-in backend bound, on that backend's tensors,
  and equals ``keras.ops`` (Keras 3 on TensorFlow, the oracle) on the same inputs.
* Ops inside a compiled model (traced on TensorFlow) equal the same ops run eagerly.
* NumPy arrays, lists and numbers mix with backend tensors, with Keras's promotion,
  and tensors of different dtypes meet without a framework error.
* The default backend: ``UNIDL_BACKEND`` / ``unidl.config.set_backend``, resolved
  without importing a framework until an op runs (subprocesses).
* The signatures are keras.ops's, and the dispatch stays cheap.

Gradients of every op are the conformance kit's business (``unidl.testing``).
Tolerances are the named ones: results are float32, compared with Keras in float64.
"""
from __future__ import annotations

import inspect
import os
import subprocess
import sys
import timeit
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest

import unidl
from unidl import config, layers, ops
from unidl.testing.tolerances import FORWARD_F32

BACKENDS = ("numpy", "torch", "tensorflow")
RNG = np.random.default_rng(0)


def f32(*shape, low=-2.0, high=2.0):
    return RNG.uniform(low, high, shape).astype(np.float32)


def ints(*shape, high=5):
    return RNG.integers(0, high, shape).astype(np.int64)


@dataclass
class Op:
    """One call: ``unidl.ops.<name>(*args, **kwargs)`` vs ``keras.ops.<keras or name>`` (or ``oracle``)."""
    name: str
    args: tuple
    kwargs: dict = field(default_factory=dict)
    keras: str | None = None
    oracle: Callable | None = None   # keras.ops-free reference where Keras's own result differs on purpose
    id: str = ""

    def __str__(self) -> str:
        return self.id or self.name


A, B = f32(3, 4), f32(3, 4)
P = f32(3, 4, low=0.05, high=0.95)        # probabilities
POS = f32(3, 4, low=0.1, high=3.0)
M, N = f32(3, 4), f32(4, 2)
IDX = ints(3, high=4)
LABELS = (RNG.random((3, 4)) < 0.5).astype(np.float32)
MASK = RNG.random((3, 4)) < 0.5
IMG = f32(2, 5, 5, 3, low=-1, high=1)
SEQ = f32(2, 7, 3, low=-1, high=1)

CASES = [
    # conversion and introspection
    Op("convert_to_tensor", (A,)), Op("convert_to_numpy", (A,)), Op("cast", (A, "int32")), Op("cast", (ints(3), "float32"), id="cast_int"),
    Op("shape", (A,)), Op("ndim", (A,)),
    # arithmetic and comparisons (numpy int arrays meet floats)
    *(Op(n, (A, B)) for n in ("add", "subtract", "multiply", "maximum", "minimum", "equal", "not_equal",
                              "greater", "greater_equal", "less", "less_equal")),
    Op("divide", (A, POS)), Op("true_divide", (A, POS)), Op("divide", (ints(4), 2), id="divide_ints"),
    Op("power", (POS, B)), Op("power", (A, 2), id="power_int"), Op("add", (ints(3, 4), A), id="add_int_float"),
    Op("floor_divide", (A, POS)), Op("floor_divide", (np.array([7, -7, 9]), 2), id="floor_divide_ints"),
    Op("mod", (A, POS)), Op("mod", (np.array([7, -7, 9]), 3), id="mod_ints"),
    Op("logical_and", (MASK, ~MASK[::-1])), Op("logical_or", (MASK, ~MASK[::-1])),
    Op("logical_xor", (MASK, MASK[::-1])), Op("logical_not", (MASK,)),
    Op("where", (MASK, A, B)), Op("where", (MASK, A, 0.0), id="where_scalar"), Op("clip", (A, -0.5, 0.5)),
    # unary
    *(Op(n, (A,)) for n in ("negative", "abs", "absolute", "sign", "square", "exp", "tanh", "sigmoid", "sin",
                            "cos", "floor", "ceil", "relu", "relu6", "silu", "swish", "softplus", "softsign",
                            "selu", "elu", "leaky_relu", "hard_sigmoid", "log_sigmoid", "erf", "isnan",
                            "isfinite")),
    *(Op(n, (POS,)) for n in ("log", "log1p", "sqrt", "rsqrt", "reciprocal")),
    Op("tan", (f32(3, 4, low=-1.2, high=1.2),)), Op("exp", (np.arange(4),), id="exp_ints"),
    Op("round", (np.array([0.5, 1.5, 2.5, -0.5, -1.5, 1.2], np.float32),)),
    Op("round", (np.array([1.234, -2.345, 0.07], np.float32), 1), id="round_decimals"),
    Op("gelu", (A,)), Op("gelu", (A, False), id="gelu_exact"), Op("elu", (A, 0.5), id="elu_alpha"),
    Op("leaky_relu", (A, 0.1), id="leaky_relu_slope"),
    # reductions
    *(Op(n, (A,)) for n in ("sum", "mean", "max", "min", "prod", "std", "var", "argmax", "argmin", "logsumexp",
                            "all", "any", "amax", "amin")),
    *(Op(n, (A,), {"axis": 1}, id=f"{n}_axis") for n in ("sum", "mean", "max", "prod", "std", "var", "argmax",
                                                       "argmin", "logsumexp")),
    Op("sum", (A,), {"axis": (0, 1), "keepdims": True}, id="sum_keepdims"),
    Op("argmax", (A,), {"axis": 0, "keepdims": True}, id="argmax_keepdims"), Op("mean", (ints(3, 4),),
                                                                               id="mean_ints"),
    Op("max", (A,), {"initial": 1.5}, id="max_initial"), Op("all", (MASK,), {"axis": 1}, id="all_axis"),
    Op("any", (MASK,), {"axis": 0}, id="any_axis"), Op("count_nonzero", (MASK,)),
    Op("cumsum", (A,)), Op("cumsum", (A,), {"axis": 1}, id="cumsum_axis"),
    Op("norm", (A,)), Op("norm", (A,), {"axis": -1}, id="norm_axis"), Op("norm", (A,), {"ord": 1, "axis": 0},
                                                                        id="norm_l1"),
    Op("norm", (A,), {"ord": "fro", "axis": (0, 1)}, id="norm_fro"), Op("moments", (A, [0])),
    Op("moments", (IMG, [0, 1, 2]), {"keepdims": True}, id="moments_keepdims"),
    # shape and indexing
    Op("reshape", (A, (2, 6))), Op("reshape", (A, (-1,)), id="reshape_infer"), Op("transpose", (A,)),
    Op("expand_dims", (A, 1)), Op("expand_dims", (A, (0, 3)), id="expand_dims_tuple"),
    Op("squeeze", (f32(3, 1, 4, 1),)), Op("squeeze", (f32(3, 1, 4, 1), 1), id="squeeze_axis"),
    Op("concatenate", ([A, B],)), Op("concatenate", ([A, B],), {"axis": -1}, id="concatenate_axis"),
    Op("stack", ([A, B],)), Op("stack", ([A, B],), {"axis": -1}, id="stack_axis"),
    Op("split", (f32(6, 2), 3)), Op("split", (f32(2, 7), [2, 5]), {"axis": 1}, id="split_cuts"),
    Op("unstack", (A,)), Op("unstack", (A,), {"axis": 1}, id="unstack_axis"),
    Op("tile", (A, (2, 1))), Op("repeat", (A, 2)), Op("repeat", (A, [1, 0, 2]), {"axis": 0}, id="repeat_axis"),
    Op("flip", (A,)), Op("flip", (A, 1), id="flip_axis"), Op("roll", (A, 2)), Op("roll", (A, -1, 1), id="roll_axis"),
    Op("broadcast_to", (f32(1, 4), (3, 4))), Op("swapaxes", (IMG, 1, 3)), Op("moveaxis", (IMG, 0, -1)),
    Op("tril", (f32(4, 4),)), Op("triu", (f32(4, 4), 1)), Op("slice", (A, (1, 1), (2, 2))),
    Op("pad", (A, ((1, 0), (2, 1)))), Op("pad", (A, ((1, 1), (0, 2))), {"constant_values": 3.0}, id="pad_value"),
    Op("pad", (A, ((2, 1), (2, 2))), {"mode": "reflect"}, id="pad_reflect"),
    Op("pad", (A, ((2, 1), (2, 2))), {"mode": "symmetric"}, id="pad_symmetric"),
    Op("take", (A, [1, 0, 2], 1)), Op("take", (A, [5, 0, -1]), id="take_flat"),
    Op("take_along_axis", (A, np.argsort(A, axis=1), 1)), Op("sort", (A,)), Op("argsort", (A,)),
    Op("sort", (A, 0), id="sort_axis"), Op("top_k", (A, 2)),
    Op("one_hot", (IDX, 4)), Op("one_hot", (IDX, 4), {"axis": 0}, id="one_hot_axis"),
    Op("one_hot", (np.array([-1, 2]), 3), id="one_hot_out_of_range"),
    # linear algebra
    Op("matmul", (M, N)), Op("matmul", (f32(2, 3, 4), f32(2, 4, 2)), id="matmul_batch"),
    Op("matmul", (f32(4), f32(4, 2)), id="matmul_vector"), Op("dot", (M, N)), Op("dot", (f32(4), f32(4)),
                                                                                  id="dot_vectors"),
    Op("tensordot", (f32(2, 3, 4), f32(3, 4, 2))), Op("tensordot", (M, N, 1), id="tensordot_1"),
    Op("outer", (f32(3), f32(4))),
    Op("einsum", ("ij,jk->ik", M, N)), Op("einsum", ("bqhd,bkhd->bhqk", f32(2, 3, 2, 4), f32(2, 5, 2, 4)),
                                           id="einsum_attention"),
    Op("einsum", ("...ij->...ji", f32(2, 3, 4)), id="einsum_ellipsis"), Op("einsum", ("i,i->", f32(5), f32(5)),
                                                                            id="einsum_dot"),
    # creation
    Op("zeros", ((2, 3),)), Op("ones", ((2, 3),)), Op("full", ((2, 3), 1.5)), Op("zeros_like", (A,)),
    Op("ones_like", (ints(3),), id="ones_like_int"), Op("full_like", (A, 2.0)), Op("arange", (5,)),
    Op("arange", (0.0, 1.0, 0.25), id="arange_floats"), Op("linspace", (0.0, 1.0, 5)),
    # keras.ops.eye on TensorFlow pads a rectangular k != 0 eye wrongly (eye(2, 4, 1) has shape (3, 5));
    # NumPy's eye is what Keras documents and its other backends give.
    Op("eye", (3,)), Op("eye", (2, 4, 1), oracle=np.eye, id="eye_rect"), Op("identity", (3,)),
    # neural-network ops
    Op("softmax", (A,)), Op("softmax", (A, 0), id="softmax_axis"), Op("log_softmax", (A,)),
    Op("binary_crossentropy", (LABELS, P)),
    Op("binary_crossentropy", (LABELS, A), {"from_logits": True}, id="binary_crossentropy_logits"),
    Op("categorical_crossentropy", (LABELS, P)),
    Op("categorical_crossentropy", (LABELS, A), {"from_logits": True}, id="categorical_crossentropy_logits"),
    Op("sparse_categorical_crossentropy", (IDX, P)),
    Op("sparse_categorical_crossentropy", (IDX, A), {"from_logits": True}, id="sparse_categorical_logits"),
    Op("normalize", (A,)), Op("normalize", (A, 0, 1), id="normalize_l1"),
    Op("dot_product_attention", (f32(2, 3, 2, 4), f32(2, 5, 2, 4), f32(2, 5, 2, 4))),
    Op("dot_product_attention", (f32(2, 4, 2, 4), f32(2, 4, 2, 4), f32(2, 4, 2, 4)),
       {"is_causal": True, "mask": RNG.random((2, 1, 4, 4)) < 0.7, "bias": f32(1, 2, 4, 4)}, id="attention_masks"),
    Op("log2", (POS,)), Op("log10", (POS,)), Op("ravel", (A,)),
    Op("conv", (IMG, f32(3, 3, 3, 4, low=-1, high=1))),
    Op("conv", (IMG, f32(3, 3, 3, 4, low=-1, high=1)), {"strides": 2, "padding": "same"}, id="conv_same"),
    Op("conv", (SEQ, f32(3, 3, 2, low=-1, high=1)), {"padding": "same", "dilation_rate": 2}, id="conv_1d"),
    Op("conv", (np.moveaxis(IMG, -1, 1), f32(2, 2, 3, 2, low=-1, high=1)), {"data_format": "channels_first"},
       id="conv_channels_first"),
    Op("depthwise_conv", (IMG, f32(3, 3, 3, 2, low=-1, high=1)), {"padding": "same"}),
    Op("separable_conv", (IMG, f32(3, 3, 3, 2, low=-1, high=1), f32(1, 1, 6, 4, low=-1, high=1))),
    Op("conv_transpose", (IMG, f32(3, 3, 4, 3, low=-1, high=1)), {"strides": 2, "padding": "same"}),
    Op("conv_transpose", (SEQ, f32(3, 2, 3, low=-1, high=1)), {"strides": 2}, id="conv_transpose_1d"),
    Op("max_pool", (IMG, 2)), Op("max_pool", (IMG, 3, 2, "same"), id="max_pool_same"),
    Op("average_pool", (IMG, 2)), Op("average_pool", (SEQ, 2, 1, "same"), id="average_pool_1d_same"),
]


def values(result, to_numpy: Callable = ops.convert_to_numpy) -> list[np.ndarray]:
    """A result (tensor, tuple or list of them, Python value) as NumPy arrays."""
    if isinstance(result, (tuple, list)) and not (result and isinstance(result[0], (int, type(None)))):
        return [a for r in result for a in values(r, to_numpy)]
    return [np.asarray(to_numpy(result) if not isinstance(result, tuple) else result)]


def assert_same(got: list, expected: list, what: str) -> None:
    assert len(got) == len(expected), f"{what}: {len(got)} results, expected {len(expected)}"
    for g, e in zip(got, expected):
        assert g.shape == e.shape, f"{what}: shape {g.shape}, expected {e.shape}"
        if e.dtype.kind == "f" or g.dtype.kind == "f":
            np.testing.assert_allclose(g.astype(np.float64), e.astype(np.float64), rtol=FORWARD_F32.rtol,
                                       atol=FORWARD_F32.atol, err_msg=f"{what} ({FORWARD_F32})")
        else:  # ints (unidl int64, Keras int32) and bools: exactly
            np.testing.assert_array_equal(g.astype(np.int64), e.astype(np.int64), err_msg=what)


def on_backend(backend, arg):
    """An argument as a tensor of ``backend`` (arrays and lists of arrays); the rest as given."""
    if isinstance(arg, np.ndarray):
        return backend.convert(arg)
    if isinstance(arg, list) and arg and isinstance(arg[0], np.ndarray):
        return [backend.convert(a) for a in arg]
    return arg


_backends: dict[str, Any] = {}


def backend_named(name: str):
    if name not in _backends:
        pytest.importorskip(name)
        _backends[name] = unidl.get_backend(name, dtype="float32")
    return _backends[name]


@pytest.fixture(scope="module")
def default_numpy():
    """The default backend as a fresh process has it: numpy, float32."""
    saved = (config._chosen_backend, config._chosen_floatx)
    config.set_backend("numpy")
    config.set_floatx("float32")
    yield
    config.set_backend(saved[0])
    config.set_floatx(saved[1])


@pytest.mark.parametrize("case", CASES, ids=str)
def test_op_equals_keras_unbound_and_on_every_backend(case, keras, default_numpy):
    unidl_op = getattr(ops, case.name)
    reference = case.oracle or getattr(keras.ops, case.keras or case.name)
    expected = values(reference(*case.args, **case.kwargs), keras.ops.convert_to_numpy)
    assert ops.current_backend_or_none() is None
    assert_same(values(unidl_op(*case.args, **case.kwargs)), expected, f"unidl.ops.{case} unbound vs keras.ops")
    for name in BACKENDS:
        backend = backend_named(name)
        with unidl.use_backend(backend):
            got = unidl_op(*[on_backend(backend, a) for a in case.args], **case.kwargs)
            assert_same(values(got), expected, f"unidl.ops.{case} on {name} tensors vs keras.ops")


def test_every_keras_name_in_the_table_is_a_unidl_op():
    tested = {c.name for c in CASES}
    public = {n for n in ops.__all__ if callable(getattr(ops, n)) and not n[0].isupper()}
    contract_names = {"convert", "to_numpy", "size", "dtype", "dtype_of", "conv2d", "conv2d_transpose",
                      "max_pool2d", "avg_pool2d", "stop_gradient", "current_backend", "current_backend_or_none",
                      "use_backend", "linspace", "isinf", "full", "ones", "zeros"}
    assert public - tested - contract_names == set(), "ops without a case against keras.ops here"


# ------------------------------------------------------------ signatures

# Where unidl's signature differs from keras.ops's, and why.
SIGNATURE_DIFFERENCES = {
    "pad": "also takes value=, unidl's older name of constant_values",
    "einsum": "keras.ops.einsum takes **kwargs it passes to the backend",
}


def test_signatures_are_keras_ops_signatures(keras):
    checked = 0
    for name in ops.__all__:
        theirs = getattr(keras.ops, name, None)
        if theirs is None or name in SIGNATURE_DIFFERENCES or not callable(getattr(ops, name)):
            continue
        try:
            want = list(inspect.signature(theirs).parameters.items())
        except (TypeError, ValueError):
            continue
        got = list(inspect.signature(getattr(ops, name)).parameters.items())
        assert [(k, p.default) for k, p in got] == [(k, p.default) for k, p in want], name
        checked += 1
    assert checked > 120


RESIZES = [((2, 5, 7, 3), (8, 11), {}), ((2, 9, 8, 3), (4, 3), {}), ((5, 7, 2), (10, 3), {}),
           ((2, 5, 7, 3), (8, 11), {"interpolation": "nearest"}), ((2, 9, 8, 3), (4, 3), {"interpolation": "nearest"}),
           ((2, 6, 9, 3), (4, 4), {"crop_to_aspect_ratio": True}),
           ((2, 6, 9, 3), (4, 4), {"pad_to_aspect_ratio": True, "fill_value": 0.5}),
           ((2, 3, 6, 5), (5, 9), {"data_format": "channels_first"})]


@pytest.mark.parametrize("shape, size, kwargs", RESIZES, ids=[f"{s}->{t}:{','.join(k)}" for s, t, k in RESIZES])
def test_image_resize_equals_keras(shape, size, kwargs, keras, default_numpy):
    images = f32(*shape)
    expected = values(keras.ops.image.resize(images, size, **kwargs), keras.ops.convert_to_numpy)
    assert_same(values(ops.image.resize(images, size, **kwargs)), expected, "resize unbound")
    for name in BACKENDS:
        backend = backend_named(name)
        with unidl.use_backend(backend):
            got = values(ops.image.resize(backend.convert(images), size, **kwargs))
        assert_same(got, expected, f"resize on {name}")
    import unidl.ops.image as image_module
    assert image_module.resize is ops.image.resize


def test_nn_namespace_has_keras_ops_nn_names(keras):
    import unidl.ops.nn as nn_module
    assert nn_module is ops.nn
    assert ops.nn.softmax is ops.softmax and ops.nn.conv is ops.conv
    assert set(ops.nn.__all__) <= set(dir(keras.ops.nn))
    np.testing.assert_allclose(ops.convert_to_numpy(ops.nn.relu6(np.array([-1.0, 7.0]))), [0.0, 6.0])


# ------------------------------------------------------------ inside a compiled model

class OpLayer(layers.Layer):
    """A custom layer whose call is ``fn(inputs)`` written with unidl.ops (as a Keras Lambda would be)."""

    def __init__(self, fn, **kwargs):
        super().__init__(**kwargs)
        self.fn = fn

    def call(self, inputs):
        return self.fn(inputs)


MODEL_OPS = {
    "softmax_gelu": lambda x: ops.softmax(ops.gelu(x)),
    "cumsum_prod": lambda x: ops.concatenate([ops.cumsum(x, axis=1), ops.prod(x, axis=1, keepdims=True)], axis=1),
    "sort_top_k": lambda x: ops.concatenate([ops.sort(x, axis=-1), ops.top_k(x, 2)[0]], axis=-1),
    "one_hot_argmax": lambda x: ops.one_hot(ops.argmax(x, axis=-1), 6),
    "einsum_tril": lambda x: ops.tril(ops.einsum("bi,bj->bij", x, x)),
    "norm_moments": lambda x: ops.concatenate([ops.norm(x, axis=-1, keepdims=True),
                                               *ops.moments(x, axes=[1], keepdims=True)], axis=-1),
    "numpy_constants": lambda x: ops.add(ops.matmul(x, np.eye(6)), np.arange(6)),   # float64 and int arrays
    "where_mask": lambda x: ops.where(ops.greater(x, 0.0), x, np.zeros(6)),
    "rounding": lambda x: ops.concatenate([ops.floor(x), ops.round(ops.multiply(x, 3.0)), ops.mod(x, 0.7)], -1),
    "activations": lambda x: ops.concatenate([f(x) for f in (ops.relu6, ops.leaky_relu, ops.elu, ops.selu, ops.silu,
                                                                ops.softsign, ops.hard_sigmoid, ops.log_sigmoid,
                                                                ops.sin, ops.cos)], axis=-1),
    "shapes": lambda x: ops.concatenate([ops.flip(x, 1), ops.roll(x, 2, axis=1), ops.tile(x, (1, 2)),
                                         ops.repeat(x, 2, axis=1), ops.var(x, axis=1, keepdims=True)], -1),
    "crossentropy": lambda x: ops.expand_dims(ops.sparse_categorical_crossentropy(ops.argmax(x, axis=-1), x,
                                                                                  from_logits=True), -1),
    "conv1d_pool": lambda x: ops.max_pool(ops.conv(ops.expand_dims(x, -1), np.ones((3, 1, 2), np.float32),
                                                   padding="same"), 2),
}


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("op", sorted(MODEL_OPS))
def test_ops_inside_a_compiled_model_equal_eager_ops(op, name, default_numpy):
    backend_named(name)  # skips when the framework is missing
    x = RNG.normal(size=(5, 6)).astype(np.float32)
    expected = values(MODEL_OPS[op](x))  # eager, nothing bound: the default backend
    model = unidl.Sequential([OpLayer(MODEL_OPS[op], input_shape=(6,))], seed=0)
    model.compile(loss="mse", backend=name)
    got = model.predict(x, batch_size=4)  # two batches: the second smaller (an unknown batch size when traced)
    assert_same([np.asarray(got)], expected, f"{op} inside a model compiled on {name}")


# ------------------------------------------------------------ mixing arrays and tensors

@pytest.mark.parametrize("name", BACKENDS)
def test_numpy_arrays_lists_and_numbers_mix_with_tensors(name):
    backend = backend_named(name)
    t = backend.convert(np.array([[1.0, 2.0], [3.0, 4.0]]))  # float32
    with unidl.use_backend(backend):
        y = ops.add(np.array([[0.5, 0.5]], dtype=np.float64), t)      # a float64 array follows the tensor
        assert ops.dtype(y) == "float32"
        np.testing.assert_allclose(ops.convert_to_numpy(y), [[1.5, 2.5], [3.5, 4.5]])
        z = ops.multiply(np.array([1, 2]), t)                          # an int array meeting floats: float
        assert ops.dtype(z) == "float32"
        np.testing.assert_allclose(ops.convert_to_numpy(z), [[1.0, 4.0], [3.0, 8.0]])
        w = ops.matmul(np.array([[1, 0], [0, 1]]), t)                  # torch's matmul needs one dtype
        np.testing.assert_allclose(ops.convert_to_numpy(w), [[1.0, 2.0], [3.0, 4.0]])
        np.testing.assert_allclose(ops.convert_to_numpy(ops.subtract([10.0, 20.0], t)), [[9.0, 18.0], [7.0, 16.0]])
        assert ops.dtype(ops.add(np.float64(0.5), t)) == "float32"      # NumPy scalars are weak, as Python's
        assert ops.convert_to_numpy(ops.exp(0.0)) == 1.0                # Python numbers alone
        assert ops.dtype(ops.concatenate([t, np.zeros((1, 2))], axis=0)) == "float32"
        assert ops.dtype(ops.where(np.array([True, False]), t, 0)) == "float32"


@pytest.mark.parametrize("name", BACKENDS)
def test_tensors_of_different_dtypes_are_promoted_not_refused(name):
    """TensorFlow refuses int64 + float32 and exp(int64); torch refuses a long @ float matmul."""
    backend = backend_named(name)
    i = backend.convert(np.array([[1, 2], [3, 4]]))          # int64
    f = backend.convert(np.array([[0.5, 0.5], [0.5, 0.5]]))  # float32
    with unidl.use_backend(backend):
        for got, want in ((ops.add(i, f), [[1.5, 2.5], [3.5, 4.5]]), (ops.matmul(i, f), [[1.5, 1.5], [3.5, 3.5]]),
                          (ops.maximum(f, i), [[1, 2], [3, 4]]), (ops.where(ops.greater(i, 2), i, f),
                                                                  [[0.5, 0.5], [3, 4]])):
            assert ops.dtype(got) == "float32"
            np.testing.assert_allclose(ops.convert_to_numpy(got), want)
        assert ops.dtype(ops.exp(i)).startswith("float")
        assert ops.dtype(ops.add(i, i)) == "int64"
        with pytest.raises(Exception) as bad_shapes:  # a real error is still the framework's
            ops.add(f, backend.convert(np.ones((3, 3))))
        assert "dtype" not in str(bad_shapes.value).lower() or name == "numpy"


def test_unidl_variables_work_unbound_and_follow_their_backend(default_numpy):
    weight = unidl.Variable(np.array([1.0, 2.0]), "w")   # not compiled: holds a NumPy array
    np.testing.assert_allclose(ops.convert_to_numpy(ops.multiply(weight, 2.0)), [2.0, 4.0])
    backend = backend_named("torch")
    weight.bind(backend)
    y = ops.add(weight, np.array([1.0, 1.0]))            # nothing bound: the op runs on the weight's backend
    assert type(y).__module__.startswith("torch")
    np.testing.assert_allclose(ops.convert_to_numpy(y), [2.0, 3.0])


def test_current_backend_is_the_default_when_none_is_bound(default_numpy):
    assert ops.current_backend_or_none() is None
    assert ops.current_backend().name == "numpy" and ops.current_backend().dtype == "float32"
    torch_backend = backend_named("torch")
    with unidl.use_backend(torch_backend):
        assert ops.current_backend() is torch_backend
    # value_and_grad with inputs works outside any model too
    value, (grad,) = unidl.value_and_grad(lambda x: ops.sum(ops.square(x)), inputs=[np.array([1.0, 2.0])])
    np.testing.assert_allclose(ops.convert_to_numpy(grad), [2.0, 4.0])


def test_optional_ops_missing_raise_backend_error_naming_backend_and_op():
    class NoTrig(type(backend_named("numpy"))):
        name = "notrig"
    NoTrig.sin = property(lambda self: (_ for _ in ()).throw(AttributeError("sin")))
    backend = NoTrig(dtype="float64")
    with unidl.use_backend(backend):
        with pytest.raises(unidl.BackendError, match=r"'notrig' does not implement 'sin', an optional op"):
            ops.sin(np.array([1.0]))
        with pytest.raises(unidl.BackendError, match=r"'notrig' does not implement 'sin'"):
            ops.tan(np.array([1.0]))     # a derived op over it says which op is missing


def test_errors_for_what_unidl_does_not_offer():
    with pytest.raises(ValueError, match="where"):
        ops.where(np.array([True]))
    with pytest.raises(ValueError, match="trace"):
        ops.einsum("ii->i", np.eye(2))
    with pytest.raises(ValueError, match="output_padding"):
        ops.conv_transpose(np.ones((1, 3, 3, 1)), np.ones((2, 2, 1, 1)), output_padding=1)
    with pytest.raises(ValueError, match="pad_width"):
        ops.pad(np.ones((2, 2)), 1)
    with pytest.raises(ValueError, match="nuc"):
        ops.norm(np.ones((2, 2)), ord="nuc")


# ------------------------------------------------------------ the default backend (subprocesses)

def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in (config.ENV_BACKEND, config.ENV_FLOATX)}
    environment.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment,
                          timeout=300)


def test_import_unidl_and_choosing_a_default_import_no_framework():
    run = run_python(
        "import sys, unidl\n"
        "from unidl import config, ops\n"
        "config.set_backend('tensorflow'); config.set_floatx('float64')\n"
        "assert config.backend() == 'tensorflow' and config.floatx() == 'float64'\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'keras') if m in sys.modules))",
        UNIDL_BACKEND="torch")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_default_backend_from_the_environment_is_used_by_unbound_ops():
    run = run_python(
        "import sys, numpy as np, unidl\n"
        "from unidl import config, ops\n"
        "assert config.backend() == 'torch' and 'torch' not in sys.modules\n"
        "y = ops.softmax(np.array([1.0, 2.0]))\n"
        "assert 'torch' in sys.modules\n"
        "print(type(y).__module__, ops.dtype(y), ops.current_backend().name)\n"
        "with unidl.use_backend('numpy'):\n"
        "    print(type(ops.exp(np.ones(2))).__module__)\n"
        "config.set_backend('numpy'); config.set_floatx('float64')\n"
        "print(type(ops.exp(np.ones(2))).__module__, ops.dtype(ops.exp(np.ones(2))))",
        UNIDL_BACKEND="torch")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:3] == ["torch float32 torch", "unidl_numpy.tape",
                                          "unidl_numpy.tape float64"]


def test_an_unknown_default_names_its_source():
    run = run_python("import numpy as np, unidl\nunidl.ops.exp(np.ones(2))", UNIDL_BACKEND="nosuch")
    assert run.returncode != 0
    assert "unknown backend 'nosuch'" in run.stderr and "UNIDL_BACKEND" in run.stderr
    with pytest.raises(unidl.UnknownBackendError, match="nosuch"):
        config.set_backend("nosuch")
    with pytest.raises(ValueError, match="float16"):
        config.set_floatx("float16")


def test_models_keep_their_backend_whatever_the_default(default_numpy):
    model = unidl.Sequential([layers.Dense(2, input_shape=(3,))], seed=0)
    backend_named("torch")
    model.compile(loss="mse", backend="torch")
    config.set_backend("tensorflow")
    try:
        assert model.backend.name == "torch"
        out = model.predict(np.ones((2, 3), np.float32))
        assert out.shape == (2, 2)
    finally:
        config.set_backend("numpy")


# ------------------------------------------------------------ dispatch cost

def test_dispatch_overhead_stays_small():
    """An op on a backend whose op costs nothing: what unidl adds per call (about 0.2 us here;
    the bound is 10x that, for loaded test machines)."""
    import operator

    class Free(unidl.Backend):
        name = "free"

        def __init__(self):
            super().__init__()
            self.add = operator.add

    def best(fn):
        return min(timeit.repeat(fn, number=20000, repeat=7)) / 20000

    with unidl.use_backend(Free()):
        overhead = best(lambda: ops.add(1.0, 2.0)) - best(lambda: operator.add(1.0, 2.0))
    assert overhead < 2e-6, f"unidl.ops.add adds {overhead * 1e9:.0f} ns per call"

