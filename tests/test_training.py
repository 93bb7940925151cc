"""The Keras-style model API and training loop, on the NumPy reference backend."""
from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import unidl
from unidl import layers

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def regression_data(n: int = 100):
    x = np.random.default_rng(0).random((n, 4)).astype("float32")
    return x, x.sum(axis=1, keepdims=True)


def small_model(seed: int = 0, **compile_kwargs):
    model = unidl.Sequential([layers.Dense(10, activation="relu", input_shape=(4,)), layers.Dense(1)], seed=seed)
    model.compile(**{"optimizer": "adam", "loss": "mse", "metrics": ["mae"], "backend": "numpy", **compile_kwargs})
    return model


def dense_param_count(sizes: list[int]) -> int:
    """Keras's count for a Dense stack: in*out weights plus out biases per layer."""
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


# ------------------------------------------------------------ the example

def test_readme_example_end_to_end(capsys):
    x, y = regression_data()
    model = small_model()
    history = model.fit(x, y, epochs=100, batch_size=32, verbose=1)
    loss, mae = model.evaluate(x, y, verbose=0)
    pred = model.predict(x)
    model.summary()
    out = capsys.readouterr().out
    assert "Epoch 1/100" in out and "Epoch 100/100" in out
    assert set(history.history) == {"loss", "mae"}
    assert len(history.history["loss"]) == 100
    assert pred.shape == (100, 1) and pred.dtype == np.float32
    assert isinstance(loss, float) and isinstance(mae, float)
    assert "Total params: 61" in out
    # evaluate's mae is the mean absolute error of predict's outputs
    np.testing.assert_allclose(mae, np.abs(pred - y).mean(), rtol=1e-5)


def test_regression_example_loss_falls_tenfold():
    result = load_example("regression_mlp").main("numpy", epochs=100, verbose=0)
    history = result["history"]["loss"]
    assert history[-1] < history[0] / 10


def test_xor_reaches_full_accuracy():
    result = load_example("xor").main("numpy", epochs=1000, verbose=0)
    assert result["accuracy"] == 1.0
    np.testing.assert_array_equal(result["probabilities"] > 0.5, [False, True, True, False])


@pytest.mark.parametrize("example, sizes", [
    ("regression_mlp", [4, 10, 1]), ("deep_regression", [10, 64, 64, 1]), ("binary_classifier", [8, 10, 8, 1])])
def test_examples_run_and_param_counts_match_keras(example, sizes, capsys):
    load_example(example).main("numpy", epochs=2, verbose=2)
    out = capsys.readouterr().out
    assert f"Total params: {dense_param_count(sizes):,}" in out


def test_summary_counts_and_shapes():
    model = small_model()
    assert model.count_params() == 61
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "dense (Dense)" in text and "dense_1 (Dense)" in text
    assert "(None, 10)" in text and "(None, 1)" in text


# ------------------------------------------------------------------ weights

def test_weights_in_keras_order_and_seeded():
    a, b, c = small_model(seed=0), small_model(seed=0), small_model(seed=1)
    shapes = [w.shape for w in a.get_weights()]
    assert shapes == [(4, 10), (10,), (10, 1), (1,)]
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])
    np.testing.assert_array_equal(a.get_weights()[1], 0.0)  # bias starts at zero
    limit = np.sqrt(6 / (4 + 10))  # glorot_uniform
    assert np.abs(a.get_weights()[0]).max() <= limit


def test_set_weights_round_trip_and_errors():
    model = small_model()
    new = [np.full(w.shape, 0.5, dtype="float32") for w in model.get_weights()]
    model.set_weights(new)
    for got, want in zip(model.get_weights(), new):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match=r"dense/kernel.*\(4, 10\).*\(3, 10\)"):
        model.set_weights([np.zeros((3, 10))] + new[1:])
    with pytest.raises(ValueError, match="4 weight arrays, got 3"):
        model.set_weights(new[:3])
    # all-or-nothing: the failed calls above changed nothing
    for got, want in zip(model.get_weights(), new):
        np.testing.assert_array_equal(got, want)


def test_training_is_deterministic_for_a_seed():
    x, y = regression_data()
    runs = []
    for _ in range(2):
        model = small_model(seed=3)
        model.fit(x, y, epochs=3, batch_size=16, verbose=0)
        runs.append(model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_float64_compile():
    x, y = regression_data()
    model = small_model(dtype="float64")
    model.fit(x, y, epochs=1, verbose=0)
    assert model.get_weights()[0].dtype == np.float64
    assert model.predict(x).dtype == np.float64


# ------------------------------------------------------------ fit features

def test_validation_split_and_data():
    x, y = regression_data()
    model = small_model()
    history = model.fit(x, y, epochs=2, validation_split=0.2, verbose=0)
    assert set(history.history) == {"loss", "mae", "val_loss", "val_mae"}
    # validation uses the last 20 samples; evaluate on them gives the same numbers after training
    val_loss, val_mae = model.evaluate(x[80:], y[80:], verbose=0)
    np.testing.assert_allclose(history.history["val_loss"][-1], val_loss, rtol=1e-6)
    history = model.fit(x, y, epochs=1, validation_data=(x[:10], y[:10]), verbose=0)
    assert "val_loss" in history.history


def test_evaluate_return_forms():
    x, y = regression_data()
    model = small_model(metrics=None)
    assert isinstance(model.evaluate(x, y, verbose=0), float)
    model = small_model()
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    assert set(result) == {"loss", "mae"}


def test_epoch_loss_is_weighted_by_batch_size():
    # 10 samples in batches of 4, 4, 2: the epoch loss must weigh the last batch by 2/10.
    rng = np.random.default_rng(1)
    x, y = rng.random((10, 4)).astype("float32"), rng.random((10, 1)).astype("float32")
    model = small_model(optimizer=unidl.optimizers.SGD(learning_rate=0.0))  # weights never change
    history = model.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    pred = model.predict(x)
    np.testing.assert_allclose(history.history["loss"][0], ((pred - y) ** 2).mean(), rtol=1e-5)


def test_nan_loss_stops_training_with_a_clear_message():
    x, y = regression_data()
    model = small_model(optimizer=unidl.optimizers.SGD(learning_rate=1e30))
    with pytest.warns(RuntimeWarning, match="loss became (nan|inf).*learning"):
        history = model.fit(x, y, epochs=20, verbose=0)
    assert len(history.history["loss"]) < 20


def test_early_stopping_stops_and_restores():
    x, y = regression_data()
    model = small_model(optimizer=unidl.optimizers.SGD(learning_rate=0.0))  # loss never improves
    stopper = unidl.callbacks.EarlyStopping(monitor="loss", patience=2, restore_best_weights=True)
    history = model.fit(x, y, epochs=50, callbacks=[stopper], verbose=0)
    assert len(history.history["loss"]) == 4  # best at epoch 1, then 3 epochs without improvement


def test_callback_hooks_are_called_in_order():
    x, y = regression_data(8)
    events = []
    cb = unidl.callbacks.LambdaCallback(
        on_train_begin=lambda logs: events.append("train_begin"),
        on_epoch_begin=lambda epoch, logs: events.append(f"epoch_begin{epoch}"),
        on_train_batch_end=lambda batch, logs: events.append(f"batch{batch}"),
        on_epoch_end=lambda epoch, logs: events.append(f"epoch_end{epoch}"),
        on_train_end=lambda logs: events.append("train_end"))
    small_model().fit(x, y, epochs=2, batch_size=4, callbacks=[cb], verbose=0)
    assert events == ["train_begin", "epoch_begin0", "batch0", "batch1", "epoch_end0",
                      "epoch_begin1", "batch0", "batch1", "epoch_end1", "train_end"]


def test_build_from_data_when_no_input_shape():
    x, y = regression_data()
    model = unidl.Sequential([layers.Dense(10, activation="relu"), layers.Dense(1)], seed=0)
    model.compile(optimizer="adam", loss="mse", backend="numpy")
    with pytest.raises(RuntimeError, match="not built"):
        model.summary()
    model.fit(x, y, epochs=1, verbose=0)
    assert model.count_params() == 61
    # Input layer spelling gives the same model as input_shape=
    same = unidl.Sequential([layers.Input((4,)), layers.Dense(10, activation="relu"), layers.Dense(1)], seed=0)
    assert same.count_params() == 61


def test_dropout_training_vs_inference():
    x = np.ones((200, 50), dtype="float32")
    model = unidl.Sequential([layers.Dropout(0.4, input_shape=(50,))], seed=0)
    model.compile(loss="mse", backend="numpy")
    np.testing.assert_array_equal(model.predict(x), x)  # inference: identity
    with unidl.use_backend(model.backend):
        out = model.backend.to_numpy(model(x, training=True))
    kept = out != 0
    assert abs(kept.mean() - 0.6) < 0.02
    np.testing.assert_allclose(out[kept], 1 / 0.6, rtol=1e-6)  # inverted dropout scaling


def test_clone_and_recompile_carry_weights():
    x, y = regression_data()
    model = small_model()
    model.fit(x, y, epochs=2, verbose=0)
    twin = model.clone()
    assert twin.backend is None
    twin.compile(optimizer="adam", loss="mse", backend="numpy", dtype="float64")
    np.testing.assert_allclose(twin.predict(x), model.predict(x), rtol=1e-5, atol=1e-6)
    model.compile(optimizer="adam", loss="mse", backend="numpy", dtype="float64")  # recompile: same weights
    np.testing.assert_allclose(model.predict(x), twin.predict(x), rtol=1e-12)


def test_frozen_layer_is_not_updated():
    x, y = regression_data()
    model = small_model()
    model.layers[0].trainable = False
    before = model.get_weights()
    model.fit(x, y, epochs=2, verbose=0)
    after = model.get_weights()
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert not np.array_equal(before[2], after[2])
    assert model.layers[0].trainable_weights == [] and len(model.trainable_weights) == 2


def test_custom_layer_and_subclassed_model():
    class Scale(layers.Layer):
        def build(self, input_shape):
            self.scale = self.add_weight("scale", (input_shape[-1],), initializer="ones")

        def call(self, inputs):
            return inputs * self.scale

    class TwoLayer(unidl.Model):
        def __init__(self):
            super().__init__(seed=0)
            self.hidden = layers.Dense(8, activation="tanh")
            self.scale = Scale()
            self.out = layers.Dense(1)

        def call(self, inputs, training=False):
            return self.out(self.scale(self.hidden(inputs)))

    x, y = regression_data()
    model = TwoLayer()
    model.compile(optimizer="adam", loss="mse", backend="numpy")
    history = model.fit(x, y, epochs=30, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.count_params() == 4 * 8 + 8 + 8 + 8 + 1
    assert model.get_layer("scale").output_shape == (None, 8)


# ---------------------------------------------------------------- bad input

def test_wrong_input_width_names_layer_and_shapes():
    model = small_model()
    with pytest.raises(unidl.DataError, match=r"shape \(5,\).*expects \(4,\).*dense"):
        model.fit(np.zeros((8, 5)), np.zeros((8, 1)), verbose=0)


def test_wrong_label_shape():
    model = small_model()
    with pytest.raises(ValueError, match=r"labels of shape \(8, 3\).*output shape \(None, 1\)"):
        model.fit(np.zeros((8, 4)), np.zeros((8, 3)), verbose=0)
    with pytest.raises(unidl.DataError, match="same number of samples, got 8 and 7"):
        model.fit(np.zeros((8, 4)), np.zeros((7, 1)), verbose=0)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"loss": "mse_loss"}, "unknown loss 'mse_loss'.*known losses"),
    ({"loss": "binary_crosentropy"}, "did you mean 'binary_crossentropy'"),
    ({"optimizer": "adamm"}, "unknown optimizer 'adamm'.*did you mean 'adam'"),  # "adma" now reads as "adamax"
    ({"metrics": ["acuracy"]}, None),
])
def test_unknown_names(kwargs, pattern):
    x, y = regression_data()
    if pattern is None:  # metrics resolve when fit starts
        model = small_model(**kwargs)
        with pytest.raises(ValueError, match="unknown metric 'acuracy'"):
            model.fit(x, y, verbose=0)
        return
    with pytest.raises(ValueError, match=pattern):
        small_model(**kwargs)


def test_unknown_activation_and_misspelled_kwarg():
    with pytest.raises(ValueError, match="unknown activation 'rleu'.*did you mean 'relu'"):
        layers.Dense(3, activation="rleu")
    with pytest.raises(TypeError, match="unexpected keyword argument 'activaton'.*did you mean 'activation'"):
        layers.Dense(3, activaton="relu")
    with pytest.raises(ValueError, match="units must be a positive integer, got units=0"):
        layers.Dense(0)


def test_unknown_backend_lists_installed():
    with pytest.raises(unidl.UnknownBackendError, match=r"unknown backend 'nonexistent'.*numpy"):
        small_model(backend="nonexistent")


@pytest.mark.parametrize("bad, pattern", [
    (np.array([["a", "b", "c", "d"]] * 4), "must be numeric.*dtype <U1"),
    (np.array([[object()] * 4] * 4), "must be numeric.*dtype object"),
    (np.zeros((4, 4), dtype=complex), "complex"),
    (np.zeros((0, 4)), "empty"),
])
def test_non_numeric_or_empty_data(bad, pattern):
    with pytest.raises(unidl.DataError, match=pattern):
        small_model().fit(bad, np.zeros((len(bad), 1)), verbose=0)


def test_fit_before_compile_and_bad_batch_size():
    x, y = regression_data()
    model = unidl.Sequential([layers.Dense(1, input_shape=(4,))])
    with pytest.raises(RuntimeError, match="must be compiled"):
        model.fit(x, y, verbose=0)
    with pytest.raises(RuntimeError, match="compiled"):
        model.predict(x)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got batch_size=0"):
        small_model().fit(x, y, batch_size=0, verbose=0)


def test_import_does_not_import_frameworks():
    # the cheap in-process check; test_registry checks it in a clean subprocess too
    assert "unidl" in sys.modules
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert unidl.list_backends()


def test_trainable_changes_between_fits_take_effect():
    # train_step caches its trainable weights; every kind of change must reach it
    model = unidl.Sequential([layers.Dense(4, activation="tanh", input_shape=(3,)), layers.Dense(1)], seed=0)
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    x, y = np.random.default_rng(0).normal(size=(16, 3)), np.ones((16, 1))
    model.fit(x, y, epochs=1, verbose=0)

    def moved_after_fit():
        before = model.get_weights()
        model.fit(x, y, epochs=1, verbose=0)
        return [not np.array_equal(b, a) for b, a in zip(before, model.get_weights())]

    model.layers[0].trainable = False             # a layer flag
    assert moved_after_fit() == [False, False, True, True]
    model.layers[0].trainable = True
    model.layers[1].bias.trainable = False        # a variable flag
    assert moved_after_fit() == [True, True, True, False]
    model.trainable = False                       # the model's own flag
    assert moved_after_fit() == [False] * 4
