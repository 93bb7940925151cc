"""Torch-specific behaviour of the torch backend.

The op-by-op comparison with the NumPy reference lives in the conformance kit
(``unidl.testing``); this file covers what only torch can get wrong: devices,
dtypes, scalar promotion, the places where torch's native gradient rule differs
from the contract, autograd state, and the lazy import.
"""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import unidl  # noqa: E402
from unidl.backend import Backend, BackendError  # noqa: E402
from unidl.tolerances import FORWARD_F64, GRAD_F64  # noqa: E402

CUDA = torch.cuda.is_available()


@pytest.fixture
def b64():
    return unidl.get_backend("torch", dtype="float64")


@pytest.fixture
def b32():
    return unidl.get_backend("torch", dtype="float32")


def grads_of(b, fn, *arrays):
    """Value and input gradients of sum(w * fn(*xs)), w a fixed random upstream gradient.

    A random w (not all ones) makes a mis-routed gradient show.
    """
    xs = [np.asarray(a, dtype=np.float64) for a in arrays]
    shape = b.shape(fn(*[b.convert(x) for x in xs]))
    w = np.random.default_rng(0).uniform(0.5, 1.5, size=shape)
    value, grads = b.grad_wrt_inputs(lambda *ts: b.sum(b.multiply(fn(*ts), b.convert(w))), xs)
    return b.to_numpy(value), w, [b.to_numpy(g) for g in grads]


# ----------------------------------------------------------------- devices
@pytest.mark.skipif(CUDA, reason="checks the no-GPU error")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_gpu_is_a_clear_error(device):
    with pytest.raises(BackendError, match="CUDA is not available") as info:
        unidl.get_backend("torch", device=device)
    assert "'cpu'" in str(info.value)  # names the devices that are available


def test_unknown_device_is_a_clear_error():
    with pytest.raises(BackendError, match="unknown device 'banana'"):
        unidl.get_backend("torch", device="banana")


def test_default_device_is_cpu(b32):
    assert b32.device == "cpu"
    assert b32.devices()[0] == "cpu"
    assert b32.convert(np.zeros(2)).device.type == "cpu"


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_tensors_live_on_the_gpu():
    b = unidl.get_backend("torch", device="cuda")
    assert b.device == f"cuda:{torch.cuda.current_device()}"
    x = b.convert(np.arange(3.0))
    assert x.device.type == "cuda"
    assert b.variable(np.ones(2)).device.type == "cuda"
    assert b.zeros((2,)).device.type == "cuda"
    b.sync()
    np.testing.assert_array_equal(b.to_numpy(b.take(x, [2, 0])), [2.0, 0.0])


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_missing_cuda_index_is_a_clear_error():
    with pytest.raises(BackendError, match="does not exist"):
        unidl.get_backend("torch", device=f"cuda:{torch.cuda.device_count()}")


# ------------------------------------------------------------------ dtypes
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float_round_trip(dtype):
    b = unidl.get_backend("torch", dtype=dtype)
    src = np.random.default_rng(1).normal(size=(3, 4))  # float64 in, compute dtype out
    x = b.convert(src)
    assert x.dtype == getattr(torch, dtype)
    out = b.to_numpy(x)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, src.astype(dtype))
    assert b.convert(np.float32(1.5)).dtype == getattr(torch, dtype)  # floats take the compute dtype
    assert b.convert(2.5).dtype == getattr(torch, dtype)
    assert b.convert(torch.ones(2, dtype=torch.float16)).dtype == getattr(torch, dtype)


def test_ints_become_int64_and_bools_stay(b32):
    for src in (np.arange(3, dtype=np.int32), np.arange(3, dtype=np.uint8), [1, 2], 7):
        assert b32.convert(src).dtype == torch.int64
    assert b32.convert(torch.arange(3, dtype=torch.int32)).dtype == torch.int64
    assert b32.convert(np.array([True, False])).dtype == torch.bool
    assert b32.convert(np.arange(3.0), dtype="int32").dtype == torch.int32
    assert b32.to_numpy(b32.argmax(b32.convert(np.eye(3)), axis=-1)).dtype == np.int64
    assert b32.cast(b32.convert([1, 2]), "float64").dtype == torch.float64


def test_convert_and_to_numpy_copy(b64):
    src = np.arange(4.0)
    x = b64.convert(src)
    src[0] = 99.0
    assert b64.to_numpy(x)[0] == 0.0  # convert does not alias the caller's array
    out = b64.to_numpy(x)
    out[1] = 99.0
    assert b64.to_numpy(x)[1] == 1.0  # to_numpy hands out a copy
    assert b64.shape(x) == (4,) and all(type(d) is int for d in b64.shape(x))


def test_python_scalars_keep_float32(b32):
    t = b32.convert(np.array([0.5, 1.0, 2.0]))
    for out in (b32.add(2.0, t), b32.add(t, 2), b32.subtract(1.0, t), b32.multiply(t, 3.0),
                b32.divide(1.0, t), b32.divide(t, 2), b32.power(t, 2.0), b32.power(2.0, t),
                b32.maximum(t, 1.0), b32.minimum(0.75, t), b32.where(t > 1.0, t, 0.0), b32.clip(t, 0.6, 1.5)):
        assert out.dtype == torch.float32
    np.testing.assert_array_equal(b32.to_numpy(b32.divide(1.0, t)), np.float32(1.0) / np.float32([0.5, 1.0, 2.0]))
    np.testing.assert_array_equal(b32.to_numpy(b32.less(1.0, t)), [False, False, True])
    np.testing.assert_array_equal(b32.to_numpy(b32.greater_equal(1.0, t)), [True, True, False])


# ------------------------------------------- gradient rules torch differs on
def test_maximum_minimum_ties_give_the_whole_gradient_to_a(b64):
    a, bb = [1.0, 2.0, 3.0], [1.0, 3.0, 1.0]
    value, w, (ga, gb) = grads_of(b64, b64.maximum, a, bb)
    np.testing.assert_array_equal(ga, w * [1, 0, 1])
    np.testing.assert_array_equal(gb, w * [0, 1, 0])
    value, w, (ga, gb) = grads_of(b64, b64.minimum, a, bb)
    np.testing.assert_array_equal(ga, w * [1, 1, 0])
    np.testing.assert_array_equal(gb, w * [0, 0, 1])
    # Broadcast b: its gradient sums over the broadcast axis, ties still go to a.
    value, w, (ga, gb) = grads_of(b64, b64.maximum, [[2.0, 1.0], [2.0, 3.0]], [2.0])
    np.testing.assert_array_equal(ga, w * [[1, 0], [1, 1]])
    np.testing.assert_array_equal(gb, [w[0, 1]])
    np.testing.assert_array_equal(value, np.sum(w * [[2, 2], [2, 3]]))


@pytest.mark.parametrize("op", ["max", "min"])
def test_reduction_ties_split_the_gradient_evenly(b64, op):
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
    if op == "min":
        x = -x
    _, w, (g,) = grads_of(b64, lambda t: getattr(b64, op)(t, axis=1), x)
    np.testing.assert_array_equal(g, [[0, w[0] / 2, w[0] / 2], [w[1] / 2, w[1] / 2, 0]])
    _, w, (g,) = grads_of(b64, lambda t: getattr(b64, op)(t), x)
    np.testing.assert_array_equal(g, [[0, w / 2, w / 2], [0, 0, 0]])


def test_relu_clip_abs_at_their_kinks(b64):
    x = [-1.0, 0.0, 1.0, 2.0, 3.0]
    _, w, (g,) = grads_of(b64, b64.relu, x)
    np.testing.assert_array_equal(g, w * [0, 0, 1, 1, 1])
    _, w, (g,) = grads_of(b64, lambda t: b64.clip(t, 0.0, 2.0), x)
    np.testing.assert_array_equal(g, w * [0, 1, 1, 1, 0])  # inclusive at both bounds
    _, w, (g,) = grads_of(b64, b64.abs, x)
    np.testing.assert_array_equal(g, w * [-1, 0, 1, 1, 1])


# -------------------------------------------------- reductions and indexing
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2), (-1, -3), ()])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_follow_numpy_axes(b64, axis, keepdims):
    x = np.random.default_rng(2).normal(size=(2, 3, 4))
    t = b64.convert(x)
    for op, ref in (("sum", np.sum), ("mean", np.mean), ("max", np.max), ("min", np.min)):
        out = b64.to_numpy(getattr(b64, op)(t, axis=axis, keepdims=keepdims))
        np.testing.assert_allclose(out, ref(x, axis=axis, keepdims=keepdims), rtol=FORWARD_F64.rtol,
                                   atol=FORWARD_F64.atol)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_take_with_2d_indices_matches_numpy(b64, axis):
    x = np.random.default_rng(3).normal(size=(4, 5, 3))
    idx = np.array([[0, 2], [-1, 2], [1, 0]])  # duplicates and a negative index
    out = b64.take(b64.convert(x), idx, axis=axis)
    np.testing.assert_array_equal(b64.to_numpy(out), np.take(x, idx, axis=axis))
    _, w, (g,) = grads_of(b64, lambda t: b64.take(t, b64.convert(idx), axis=axis), x)
    expected = np.zeros_like(x)  # scatter-add the upstream gradient back, by hand
    for pos in np.ndindex(*w.shape):
        src = list(pos[:axis % 3]) + [idx[pos[axis % 3:axis % 3 + 2]]] + list(pos[axis % 3 + 2:])
        expected[tuple(src)] += w[pos]
    np.testing.assert_allclose(g, expected, rtol=GRAD_F64.rtol, atol=GRAD_F64.atol)


def test_take_along_axis_and_shape_ops_match_numpy(b64):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 4))
    idx = rng.integers(0, 4, size=(3, 2))
    t = b64.convert(x)
    np.testing.assert_array_equal(b64.to_numpy(b64.take_along_axis(t, idx, axis=1)),
                                  np.take_along_axis(x, idx, axis=1))
    y = rng.normal(size=(2, 3, 4))
    np.testing.assert_array_equal(b64.to_numpy(b64.transpose(b64.convert(y))), np.transpose(y))
    np.testing.assert_array_equal(b64.to_numpy(b64.transpose(b64.convert(y), (1, 0, 2))), np.transpose(y, (1, 0, 2)))
    np.testing.assert_array_equal(b64.to_numpy(b64.concatenate([t, t])), np.concatenate([x, x], axis=-1))
    np.testing.assert_array_equal(b64.to_numpy(b64.reshape(t, (-1,))), x.reshape(-1))
    batch = rng.normal(size=(2, 1, 3, 4))
    np.testing.assert_allclose(b64.to_numpy(b64.matmul(b64.convert(batch), b64.convert(x.T))),
                               batch @ x.T, rtol=FORWARD_F64.rtol, atol=FORWARD_F64.atol)


def test_native_composites_match_the_generic_ones(b64):
    x = b64.convert(np.random.default_rng(5).normal(size=(3, 4)))
    for op in ("softmax", "log_softmax"):
        for axis in (-1, 0):
            np.testing.assert_allclose(b64.to_numpy(getattr(b64, op)(x, axis=axis)),
                                       b64.to_numpy(getattr(Backend, op)(b64, x, axis=axis)),
                                       rtol=FORWARD_F64.rtol, atol=FORWARD_F64.atol)
    # softplus differs from the generic relu/abs formula on purpose: slope 1/2 at 0.
    xs = [-800.0, -1.0, 0.0, 0.5, 20.0, 800.0]
    value, w, (g,) = grads_of(b64, b64.softplus, xs)
    np.testing.assert_allclose(value, np.sum(w * np.logaddexp(0.0, xs)), rtol=FORWARD_F64.rtol, atol=FORWARD_F64.atol)
    sigmoid = 0.5 * (1.0 + np.tanh(np.array(xs) / 2.0))  # overflow-free form
    np.testing.assert_allclose(g, w * sigmoid, rtol=GRAD_F64.rtol, atol=GRAD_F64.atol)
    for op in ("zeros", "ones"):
        for dtype in (None, "int64"):
            native, generic = getattr(b64, op)((2, 3), dtype), getattr(Backend, op)(b64, (2, 3), dtype)
            assert native.dtype == generic.dtype
            np.testing.assert_array_equal(b64.to_numpy(native), b64.to_numpy(generic))


# ----------------------------------------------------------- state, autodiff
def test_value_and_grad_zeros_for_unused_and_frozen_and_no_grad_left(b64):
    used = b64.variable(np.array([1.0, 2.0]))
    unused = b64.variable(np.array([3.0]))
    frozen = b64.variable(np.array([4.0, 5.0]), trainable=False)
    assert used.is_leaf and used.requires_grad and not frozen.requires_grad

    def fn():
        loss = b64.sum(b64.multiply(b64.square(used), frozen))
        return loss, "aux"

    loss, aux, grads = b64.value_and_grad(fn, [used, unused, frozen])
    assert aux == "aux" and not loss.requires_grad
    np.testing.assert_allclose(b64.to_numpy(loss), 1 * 4 + 4 * 5, rtol=FORWARD_F64.rtol)
    np.testing.assert_allclose(b64.to_numpy(grads[0]), [2 * 1 * 4, 2 * 2 * 5], rtol=GRAD_F64.rtol, atol=GRAD_F64.atol)
    np.testing.assert_array_equal(b64.to_numpy(grads[1]), [0.0])
    np.testing.assert_array_equal(b64.to_numpy(grads[2]), [0.0, 0.0])
    assert all(v.grad is None for v in (used, unused, frozen))
    # A loss that reads no trainable variable still gets zero gradients.
    _, _, grads = b64.value_and_grad(lambda: (b64.sum(frozen), None), [used, frozen])
    assert [b64.to_numpy(g).tolist() for g in grads] == [[0.0, 0.0], [0.0, 0.0]]


def test_value_and_grad_works_inside_no_grad(b64):
    v = b64.variable(np.array([3.0]))
    with b64.no_grad():
        _, _, (g,) = b64.value_and_grad(lambda: (b64.sum(b64.square(v)), None), [v])
    np.testing.assert_allclose(b64.to_numpy(g), [6.0], rtol=GRAD_F64.rtol, atol=GRAD_F64.atol)


def test_variable_owns_its_storage_and_assign_is_in_place(b64):
    src = b64.convert(np.array([1.0, 2.0]))
    v = b64.variable(src)
    assert v is not src and v.is_leaf
    before = v.data_ptr()
    b64.assign(v, np.array([5.0, 6.0]))
    assert v.data_ptr() == before and v.is_leaf and v.grad_fn is None
    np.testing.assert_array_equal(b64.to_numpy(v), [5.0, 6.0])
    np.testing.assert_array_equal(b64.to_numpy(src), [1.0, 2.0])


def test_grad_wrt_inputs(b64):
    x = np.array([0.5, -1.0, 2.0])
    value, grads = b64.grad_wrt_inputs(lambda t: b64.sum(b64.exp(t)), [x])
    np.testing.assert_allclose(b64.to_numpy(value), np.exp(x).sum(), rtol=FORWARD_F64.rtol)
    np.testing.assert_allclose(b64.to_numpy(grads[0]), np.exp(x), rtol=GRAD_F64.rtol, atol=GRAD_F64.atol)


def test_ops_dispatch_reaches_torch(b32):
    with unidl.use_backend(b32):
        out = unidl.ops.add(unidl.ops.convert(np.ones(2)), 1.0)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32


# -------------------------------------------------------------- lazy import
def test_importing_the_plugin_does_not_import_torch():
    code = ("import sys, unidl, unidl_torch; "
            "assert 'torch' not in sys.modules, 'torch was imported'; "
            "unidl.list_backends(); assert 'torch' not in sys.modules, 'listing imported torch'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
