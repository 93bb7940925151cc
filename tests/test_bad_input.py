"""Bad input, tried as a new user would: each case expects a specific, clear error,
and the model is left exactly as it was (same weights, still usable)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import unidl
from unidl import layers
from unidl.layers import LayerShapeError
from unidl.losses import LossInputError


def mlp(**compile_kwargs):
    model = unidl.Sequential([layers.Dense(8, activation="relu", input_shape=(4,)), layers.Dense(3)], seed=0)
    model.compile(**{"optimizer": "adam", "loss": "mse", "backend": "numpy", **compile_kwargs})
    return model


def classifier(loss):
    model = unidl.Sequential([layers.Dense(3, activation="softmax", input_shape=(4,))], seed=0)
    model.compile(optimizer="sgd", loss=loss, backend="numpy")
    return model


def cnn():
    model = unidl.Sequential([layers.Input((8, 8, 1)), layers.Conv2D(4, 3), layers.Flatten(), layers.Dense(2)],
                             seed=0)
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    return model


X, Y = np.ones((6, 4), "float32"), np.ones((6, 3), "float32")


def _call_layer(layer, x):
    backend = layer.weights[0].backend
    with unidl.use_backend(backend):
        return layer(backend.convert(x))

# (id, model factory, call taking the model, expected exception, message pattern)
CASES = [
    ("input width", mlp, lambda m: m.fit(np.ones((6, 5)), Y, verbose=0), unidl.DataError,
     r"shape \(5,\).*expects \(4,\)"),
    ("input rank", mlp, lambda m: m.predict(np.ones((6, 4, 1))), unidl.DataError, r"\(4, 1\).*\(4,\)"),
    ("image size for a CNN", cnn, lambda m: m.predict(np.ones((2, 9, 9, 1))), unidl.DataError, r"\(9, 9, 1\)"),
    ("channels for a CNN", cnn, lambda m: m.predict(np.ones((2, 8, 8, 3))), unidl.DataError, r"\(8, 8, 3\)"),
    ("label width", mlp, lambda m: m.fit(X, np.ones((6, 2)), verbose=0), LossInputError,
     r"labels of shape \(6, 2\).*\(None, 3\)"),
    ("label count", mlp, lambda m: m.fit(X, np.ones((5, 3)), verbose=0), unidl.DataError, "6 and 5"),
    ("one-hot to sparse CE", lambda: classifier("sparse_categorical_crossentropy"),
     lambda m: m.fit(X, np.eye(3)[[0, 1, 2, 0, 1, 2]], verbose=0), LossInputError, "categorical_crossentropy"),
    ("class ids to categorical CE", lambda: classifier("categorical_crossentropy"),
     lambda m: m.fit(X, np.array([0, 1, 2, 0, 1, 2]), verbose=0), LossInputError, "sparse_categorical"),
    ("class id out of range", lambda: classifier("sparse_categorical_crossentropy"),
     lambda m: m.fit(X, np.array([0, 1, 2, 3, 1, 2]), verbose=0), LossInputError, r"\[0, 3\)"),
    ("BCE labels outside [0, 1]", lambda: classifier("binary_crossentropy"),
     lambda m: m.fit(X, np.full((6, 3), 2.0), verbose=0), LossInputError, r"\[0, 1\]"),
    ("strings", mlp, lambda m: m.fit(np.array([["a"] * 4] * 6), Y, verbose=0), unidl.DataError, "numeric"),
    ("objects", mlp, lambda m: m.fit(np.array([[object()] * 4] * 6), Y, verbose=0), unidl.DataError, "numeric"),
    ("complex", mlp, lambda m: m.fit(np.ones((6, 4), complex), Y, verbose=0), unidl.DataError, "complex"),
    ("ragged list", mlp, lambda m: m.fit([[1, 2, 3, 4], [1, 2]], Y[:2], verbose=0), unidl.DataError,
     "could not be turned into an array"),
    ("empty data", mlp, lambda m: m.fit(np.zeros((0, 4)), np.zeros((0, 3)), verbose=0), unidl.DataError, "empty"),
    ("batch_size 0", mlp, lambda m: m.fit(X, Y, batch_size=0, verbose=0), ValueError, "batch_size=0"),
    ("batch_size float", mlp, lambda m: m.fit(X, Y, batch_size=2.5, verbose=0), ValueError, "batch_size=2.5"),
    ("negative epochs", mlp, lambda m: m.fit(X, Y, epochs=-1, verbose=0), ValueError, "epochs=-1"),
    ("validation_split 1", mlp, lambda m: m.fit(X, Y, validation_split=1.0, verbose=0), ValueError,
     "validation_split"),
    ("bad validation_data", mlp, lambda m: m.fit(X, Y, validation_data=X, verbose=0), unidl.DataError,
     "validation_data"),
    ("sample_weight shape", mlp, lambda m: m.fit(X, Y, sample_weight=np.ones(5), verbose=0), unidl.DataError,
     r"sample_weight must have shape \(6,\)"),
    ("verbose 3", mlp, lambda m: m.fit(X, Y, verbose=3), ValueError, "verbose"),
    ("y missing", mlp, lambda m: m.fit(X, verbose=0), unidl.DataError, "y is missing"),
    ("set_weights count", mlp, lambda m: m.set_weights(m.get_weights()[:2]), ValueError, "4 weight arrays, got 2"),
    ("set_weights shape", mlp, lambda m: m.set_weights([np.zeros((5, 8))] + m.get_weights()[1:]), ValueError,
     r"dense/kernel.*\(4, 8\).*\(5, 8\)"),
    ("metrics as a string", mlp, lambda m: m.compile(loss="mse", metrics="mae", backend="numpy"), TypeError,
     r"metrics=\['mae'\]"),
    ("unknown metric", lambda: mlp(metrics=["acuracy"]), lambda m: m.fit(X, Y, verbose=0), ValueError,
     "did you mean 'accuracy'"),
    ("unknown loss", mlp, lambda m: m.compile(loss="mean_sqared_error", backend="numpy"), ValueError,
     "did you mean 'mean_squared_error'"),
    ("unknown optimizer", mlp, lambda m: m.compile(optimizer="sdg", loss="mse", backend="numpy"), ValueError,
     "did you mean 'sgd'"),
    ("unknown backend", mlp, lambda m: m.compile(loss="mse", backend="pytorch"), unidl.UnknownBackendError,
     "installed backends"),
    ("unsupported dtype", mlp, lambda m: m.compile(loss="mse", backend="numpy", dtype="int8"),
     unidl.BackendError, r"int8.*\['float32', 'float64'\]"),
    ("half dtype for the weights", mlp, lambda m: m.compile(loss="mse", backend="numpy", dtype="float16"),
     ValueError, "dtype_policy='mixed_float16'"),
    ("unknown dtype policy", mlp, lambda m: m.compile(loss="mse", backend="numpy", dtype_policy="mixed_bf16"),
     ValueError, "unknown dtype policy 'mixed_bf16'.*mixed_bfloat16"),
    ("mixed precision on NumPy", mlp,
     lambda m: m.compile(loss="mse", backend="numpy", dtype_policy="mixed_bfloat16"), unidl.BackendError,
     "'numpy' cannot compute in bfloat16"),
    ("NaN in x", mlp, lambda m: m.fit(np.where(np.eye(6, 4) > 0, np.nan, X), Y, verbose=0), unidl.DataError,
     r"x holds 4 NaN/inf value\(s\) in 4 sample\(s\), the first at sample 0.*nonfinite_data='warn'"),
    ("inf in y", mlp, lambda m: m.fit(X, np.where(np.arange(18).reshape(6, 3) == 7, np.inf, Y), verbose=0),
     unidl.DataError, r"y holds 1 NaN/inf .* at sample 2"),
    ("NaN in sample_weight", mlp, lambda m: m.fit(X, Y, sample_weight=np.array([1, 1, 1, np.nan, 1, 1]),
                                                   verbose=0), unidl.DataError, "sample_weight holds 1 NaN/inf"),
    ("NaN in predict input", mlp, lambda m: m.predict(np.full((2, 4), np.nan)), unidl.DataError,
     "x holds 8 NaN/inf"),
    ("NaN in validation data", mlp, lambda m: m.fit(X, Y, validation_data=(X, np.full((6, 3), np.nan)), verbose=0),
     unidl.DataError, "y holds 18 NaN/inf"),
    ("unknown nonfinite_data", mlp, lambda m: m.compile(loss="mse", backend="numpy", nonfinite_data="skip"),
     ValueError, r"nonfinite_data must be one of \['raise', 'warn', 'ignore'\]"),
    ("device cuda without a GPU on numpy", mlp, lambda m: m.compile(loss="mse", backend="numpy", device="cuda"),
     unidl.BackendError, "cuda"),
    ("layer on a wrong-width tensor", mlp, lambda m: _call_layer(m.layers[1], np.ones((2, 5))), LayerShapeError,
     r"dense_1.*\(None, 8\).*\(None, 5\)"),
]


def _snapshot(model):
    return [w.copy() for w in model.get_weights()]


@pytest.mark.parametrize("name, make, call, error, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly_and_changes_nothing(name, make, call, error, pattern):
    model = make()
    before = _snapshot(model)
    with pytest.raises(error, match=pattern):
        call(model)
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    # still usable afterwards
    x = np.ones((2, *model.input_shape[1:]), "float32")
    assert model.predict(x).shape[0] == 2


def test_there_are_at_least_thirty_cases():
    assert len(CASES) >= 30


def test_nonfinite_data_can_be_warned_about_or_ignored():
    bad_x = X.copy()
    bad_x[1, 2] = np.nan
    warned = mlp(nonfinite_data="warn")
    with pytest.warns(RuntimeWarning, match="x holds 1 NaN/inf value.*sample 1"):
        history = warned.fit(bad_x, Y, verbose=0)
    assert np.isnan(history.history["loss"][0])  # what the default protects against
    ignored = mlp(nonfinite_data="ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no scan, no warning
        ignored.predict(bad_x)


def test_nonfinite_batch_from_an_iterable_is_refused():
    model = mlp()
    batches = [(X, Y), (np.full((6, 4), np.inf), Y)]
    with pytest.raises(unidl.DataError, match="x holds 24 NaN/inf"):
        model.fit(iter(batches), verbose=0)


def test_the_kits_contract_check_names_the_ops_a_broken_backend_lacks():
    from unidl.testing import checks

    numpy_backend = unidl.get_backend("numpy")
    broken = type("HalfDoneBackend", (unidl.Backend,), {
        "name": "half_done", **{op: getattr(numpy_backend, op) for op in unidl.backend.PRIMITIVES
                                if op not in ("erf", "conv2d", "take_along_axis")}})()
    with pytest.raises(checks.ConformanceError,
                       match=r"'half_done' .* does not implement 3 of the \d+ primitive ops: "
                             r"erf, take_along_axis, conv2d"):
        checks.check_contract(broken)
    checks.check_contract(numpy_backend)  # a complete backend passes


def test_misspelled_layer_argument_suggests_the_name():
    with pytest.raises(TypeError, match="'kernel_intializer'.*did you mean 'kernel_initializer'"):
        layers.Dense(3, kernel_intializer="zeros")
    with pytest.raises(TypeError, match="did you mean 'padding'"):
        layers.Conv2D(3, 3, paddng="same")


def test_fit_and_predict_before_compile():
    model = unidl.Sequential([layers.Dense(1, input_shape=(4,))])
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(X, np.ones((6, 1)), verbose=0)
    with pytest.raises(RuntimeError, match="compile"):
        model.predict(X)
    with pytest.raises(RuntimeError, match="not built"):
        unidl.Sequential([layers.Dense(1)]).summary()


# A layer called on symbolic inputs of the wrong shape: each error names the layer and the shapes.
L = layers
WRONG_SHAPES = [
    ("Dense", lambda: L.Dense(3)(L.Input(())), r"Dense 'dense'.*\(None,\)"),
    ("Conv1D", lambda: L.Conv1D(4, 3)(L.Input((8,))), r"Conv1D 'conv1d'.*rank 3.*\(None, 8\)"),
    ("Conv2D rank", lambda: L.Conv2D(4, 3)(L.Input((8, 8))), r"Conv2D 'conv2d'.*rank 4.*\(None, 8, 8\)"),
    ("Conv2D window", lambda: L.Conv2D(4, 5)(L.Input((3, 3, 1))), r"Conv2D 'conv2d'.*size 3.*window \(5\)"),
    ("Conv2DTranspose", lambda: L.Conv2DTranspose(2, 3)(L.Input((4,))), r"Conv2DTranspose .*\(None, 4\)"),
    ("MaxPooling2D", lambda: L.MaxPooling2D(2)(L.Input((8,))), r"MaxPooling2D 'max_pooling2d'.*\(None, 8\)"),
    ("MaxPooling2D window", lambda: L.MaxPooling2D(4)(L.Input((2, 2, 1))), r"size 2.*window \(4\)"),
    ("GlobalAveragePooling2D", lambda: L.GlobalAveragePooling2D()(L.Input((4,))), r"GlobalAveragePooling2D .*\(None, 4\)"),
    ("UpSampling2D", lambda: L.UpSampling2D()(L.Input((4,))), r"UpSampling2D .*\(None, 4\)"),
    ("ZeroPadding2D", lambda: L.ZeroPadding2D()(L.Input((4,))), r"ZeroPadding2D .*\(None, 4\)"),
    ("SimpleRNN", lambda: L.SimpleRNN(4)(L.Input((8, 3, 2))), r"SimpleRNN 'simple_rnn'.*\(None, 8, 3, 2\)"),
    ("LSTM", lambda: L.LSTM(4)(L.Input((8,))), r"LSTM 'lstm'.*\(None, 8\)"),
    ("Bidirectional", lambda: L.Bidirectional(L.LSTM(2))(L.Input((4,))), r"LSTM 'bidirectional/forward_lstm'"),
    ("TimeDistributed", lambda: L.TimeDistributed(L.Dense(2))(L.Input((4,))), r"TimeDistributed .*\(None, 4\)"),
    ("Reshape", lambda: L.Reshape((7,))(L.Input((12,))), r"Reshape 'reshape'.*\(12,\).*\(7,\)"),
    ("Permute", lambda: L.Permute((2, 1))(L.Input((4,))), r"Permute 'permute'.*\(None, 4\)"),
    ("BatchNormalization", lambda: L.BatchNormalization(axis=3)(L.Input((4,))), r"'batch_normalization'.*axis 3"),
    ("Add", lambda: L.Add()([L.Input((4,)), L.Input((5,))]), r"Add layer 'add'.*\(None, 4\), \(None, 5\)"),
    ("Concatenate", lambda: L.Concatenate()([L.Input((4, 3)), L.Input((5, 2))]), r"'concatenate'.*\(None, 4, 3\)"),
    ("Average", lambda: L.Average()([L.Input((4,)), L.Input((4, 1))]), r"Average layer 'average'.*ranks"),
]


@pytest.mark.parametrize("make, pattern", [c[1:] for c in WRONG_SHAPES], ids=[c[0] for c in WRONG_SHAPES])
def test_wrong_input_shape_names_the_layer_and_the_shapes(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


# ------------------------------------------------------------- cases a fuzzer met, each named

BACKENDS = ["numpy"] + [pytest.param(name, marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec(name) is None, reason=f"{name} is not installed"))
    for name in ("torch", "tensorflow")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_elementwise_metric_on_class_ids_names_the_metric_and_both_shapes(backend):
    model = unidl.Sequential([layers.Dense(3, input_shape=(4,))], seed=0)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["mae"], backend=backend)
    with pytest.raises(ValueError, match=r"metric 'mae' .* labels have shape \(6,\) and the predictions \(6, 3\); "
                                         r"these look like class ids"):
        model.fit(np.ones((6, 4)), np.array([0, 1, 2, 0, 1, 2]), verbose=0)


@pytest.mark.parametrize("make, match", [
    (lambda: layers.Reshape(target_shape=12), r"Reshape\(\): target_shape must be a tuple of integers, got target_shape=12"),
    (lambda: layers.Reshape((-2, -6)), r"target_shape must hold positive sizes and at most one -1"),
    (lambda: layers.Dropout(rate="half"), r"Dropout\(\): rate must be a number, got rate='half'"),
    (lambda: layers.Dropout(0.5, seed=-3), r"seed must be a non-negative integer"),
    (lambda: layers.GlobalAveragePooling1D(keepdims="yes"), r"keepdims must be True or False, got keepdims='yes'"),
    (lambda: layers.Input((5, 0, 2)), r"input shape \(5, 0, 2\) has an axis of size <= 0"),
    (lambda: unidl.callbacks.EarlyStopping(patience=-1), r"patience must be a non-negative integer, got patience=-1"),
])
def test_bad_constructor_arguments_name_the_argument(make, match):
    with pytest.raises((TypeError, ValueError), match=match):
        make()


def test_embedding_ids_out_of_range_are_refused_before_the_step():
    model = unidl.Sequential([layers.Embedding(5, 2, input_shape=(3,))], seed=0)
    model.compile(loss="mse", backend="numpy")
    with pytest.raises(unidl.DataError, match=r"layer 'embedding' \(Embedding, input_dim=5\) ids in \[1, 7\]; "
                                              r"ids must be integers in \[0, 5\) \(sample 1"):
        model.predict(np.array([[1, 2, 3], [1, 2, 7]]))


@pytest.mark.parametrize("call, match", [
    (lambda m: m.predict(None), r"predict\(\) needs x"),
    (lambda m: m.fit(X, Y, callbacks=unidl.callbacks.History(), verbose=0),
     r"callbacks must be a list of callbacks; got one History: pass callbacks=\[History\(...\)\]"),
    (lambda m: m.fit(X, Y, steps_per_epoch=0, verbose=0), r"steps_per_epoch must be a positive integer"),
    (lambda m: m.fit(X, Y, steps_per_epoch=-1, verbose=0), r"steps_per_epoch must be a positive integer"),
    (lambda m: m.fit(X, np.array([0, 1, 2, 0, 1, 2]), class_weight={0: 1.0, 7: 2.0}, verbose=0),
     r"class_weight has key 7, but the model predicts classes 0..2"),
])
def test_bad_loop_arguments_are_clear_and_leave_the_model_as_it_was(call, match):
    model = classifier("sparse_categorical_crossentropy")
    before = model.get_weights()
    with pytest.raises((TypeError, ValueError), match=match):
        call(model)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ property-based fuzzing
# Layer arguments and input shapes drawn by hypothesis: every exception a public call raises must be
# unidl's own kind of error (a ValueError or TypeError) naming the layer or the argument, never a
# framework's or Python's internal error (IndexError, AttributeError, numpy's broadcast message...).

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# class name -> (arguments that build it, an input shape it takes)
FUZZED_LAYERS = {
    "Dense": ({"units": 3}, (4,)),
    "Conv1D": ({"filters": 2, "kernel_size": 3}, (8, 3)),
    "Conv2D": ({"filters": 2, "kernel_size": 3}, (8, 8, 3)),
    "Conv2DTranspose": ({"filters": 2, "kernel_size": 3}, (4, 4, 3)),
    "MaxPooling1D": ({"pool_size": 2}, (8, 3)),
    "MaxPooling2D": ({"pool_size": 2}, (8, 8, 3)),
    "AveragePooling1D": ({"pool_size": 2}, (8, 3)),
    "AveragePooling2D": ({"pool_size": 2}, (8, 8, 3)),
    "GlobalAveragePooling1D": ({}, (8, 3)),
    "GlobalMaxPooling2D": ({}, (8, 8, 3)),
    "Dropout": ({"rate": 0.5}, (4,)),
    "Flatten": ({}, (2, 3)),
    "Reshape": ({"target_shape": (3, 2)}, (6,)),
    "Embedding": ({"input_dim": 10, "output_dim": 4}, (5,)),
    "SimpleRNN": ({"units": 3}, (5, 2)),
    "LSTM": ({"units": 3}, (5, 2)),
    "GRU": ({"units": 3}, (5, 2)),
    "BatchNormalization": ({}, (4,)),
    "LayerNormalization": ({}, (4,)),
    "ZeroPadding2D": ({"padding": 1}, (4, 4, 2)),
    "UpSampling2D": ({"size": 2}, (4, 4, 2)),
    "Permute": ({"dims": (2, 1)}, (3, 4)),
    "Activation": ({"activation": "relu"}, (4,)),
}
# arguments each layer takes besides the ones above (mutated too)
EXTRA_ARGUMENTS = {
    "Dense": ["activation", "use_bias"], "Conv1D": ["strides", "padding", "dilation_rate", "groups"],
    "Conv2D": ["strides", "padding", "dilation_rate", "groups"], "Conv2DTranspose": ["strides", "padding"],
    "MaxPooling1D": ["strides", "padding"], "MaxPooling2D": ["strides", "padding"],
    "AveragePooling1D": ["strides", "padding"], "AveragePooling2D": ["strides", "padding"],
    "GlobalAveragePooling1D": ["keepdims"], "GlobalMaxPooling2D": ["keepdims"], "Dropout": ["seed"],
    "SimpleRNN": ["return_sequences", "go_backwards"], "LSTM": ["return_sequences", "return_state"],
    "GRU": ["return_sequences", "reset_after"], "BatchNormalization": ["axis", "momentum", "epsilon"],
    "LayerNormalization": ["axis", "epsilon"], "Embedding": [], "Flatten": [], "Reshape": [],
    "ZeroPadding2D": [], "UpSampling2D": ["interpolation"], "Permute": [], "Activation": [],
}
ODD_VALUES = [0, -1, -3, 1, 2, 7, 2.5, float("nan"), "half", "same", "valid", "nope", None, True, False, (), (2,),
              (2, 2), (0, 1), (3, -1), [1, 2, 3], {"a": 1}]
INTERNAL_ERRORS = (AttributeError, IndexError, KeyError, ZeroDivisionError, RecursionError, OverflowError,
                   UnboundLocalError, NameError, AssertionError)


@st.composite
def fuzzed_layer_calls(draw):
    name = draw(st.sampled_from(sorted(FUZZED_LAYERS)))
    kwargs, shape = FUZZED_LAYERS[name]
    kwargs = dict(kwargs)
    arguments = sorted({*kwargs, *EXTRA_ARGUMENTS[name]})
    changed = draw(st.lists(st.sampled_from(arguments), max_size=2, unique=True)) if arguments else []
    for argument in changed:
        kwargs[argument] = draw(st.sampled_from(ODD_VALUES))
    if draw(st.booleans()):
        shape = tuple(draw(st.lists(st.integers(0, 6), min_size=1, max_size=4)))
    data_shape = tuple(draw(st.lists(st.integers(0, 6), min_size=0, max_size=4))) if draw(st.booleans()) else shape
    return name, kwargs, shape, data_shape, changed


def _names_what_is_wrong(message: str, name: str, changed: list[str]) -> bool:
    from unidl.naming import snake_case
    return any(word in message for word in (name, snake_case(name), *changed, "input shape", "x has samples",
                                            "x must have a batch axis", "x is empty"))


def run_fuzzed_call(name: str, kwargs: dict, shape: tuple, data_shape: tuple | None = None):
    layer = getattr(layers, name)(**kwargs)
    model = unidl.Sequential([layers.Input(shape), layer], seed=0)
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    data_shape = shape if data_shape is None else data_shape
    return model.predict(np.zeros((2, *data_shape), "float32"), verbose=0)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(fuzzed_layer_calls())
def test_fuzzed_layer_arguments_and_shapes_fail_clearly(case):
    name, kwargs, shape, data_shape, changed = case
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_fuzzed_call(name, kwargs, shape, data_shape)
    except INTERNAL_ERRORS as exc:
        raise AssertionError(f"{name}({kwargs}) on input {shape}: internal error {type(exc).__name__}: {exc}")
    except (ValueError, TypeError) as exc:
        assert _names_what_is_wrong(str(exc), name, changed), \
            f"{name}({kwargs}) on input {shape}: unclear {type(exc).__name__}: {exc}"
