"""Functional API, nested models, merge layers, several inputs/outputs and iterable data."""
from __future__ import annotations

import numpy as np
import pytest

import unidl
from unidl import layers
from unidl.testing.tolerances import FORWARD_F64, TRAJECTORY_F32, TRAJECTORY_F64

BACKENDS = [row["name"] for row in unidl.list_backends() if row["installed"] and row["name"] in
            ("numpy", "torch", "tensorflow")]


def two_input_model(seed=0):
    a, b = layers.Input((4,), name="a"), layers.Input((3,), name="b")
    shared = layers.Dense(5, activation="tanh")
    h = layers.Concatenate()([shared(a), layers.Dense(5)(b)])
    out = layers.Dense(1)(layers.Add()([h, h]))
    return unidl.Model([a, b], out, seed=seed)


def data(n=40):
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=(n, 4)), rng.normal(size=(n, 3))
    y = (x1.sum(1) - x2[:, 0]).reshape(-1, 1)
    return [x1.astype("float32"), x2.astype("float32")], y.astype("float32")


def test_functional_model_matches_hand_computation():
    model = two_input_model()
    model.compile(loss="mse", backend="numpy", dtype="float64")
    (x1, x2), _ = data()
    k1, b1, k2, b2, k3, b3 = model.get_weights()
    h = np.concatenate([np.tanh(x1 @ k1 + b1), x2 @ k2 + b2], axis=1)
    expected = (h + h) @ k3 + b3
    np.testing.assert_allclose(model.predict([x1, x2]), expected, rtol=FORWARD_F64.rtol, atol=1e-6)
    assert model.count_params() == (4 * 5 + 5) + (3 * 5 + 5) + (10 + 1)
    assert [layer.name for layer in model.layers] == ["dense", "dense_1", "concatenate", "add", "dense_2"]


def test_functional_weights_follow_the_model_seed():
    a, b = two_input_model(seed=3), two_input_model(seed=3)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    c = two_input_model(seed=4)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
def test_functional_training_agrees_across_backends(backend):
    x, y = data()
    runs = {}
    for name in ("numpy", backend):
        model = two_input_model()
        model.compile(optimizer="adam", loss="mse", backend=name, dtype="float64")
        runs[name] = model.fit(x, y, epochs=3, batch_size=8, verbose=0).history["loss"]
    np.testing.assert_allclose(runs[backend], runs["numpy"], rtol=TRAJECTORY_F64.rtol)


def test_two_outputs_with_losses_and_weights():
    inputs = layers.Input((4,))
    h = layers.Dense(6, activation="relu")(inputs)
    value = layers.Dense(1, name="value")(h)
    label = layers.Dense(3, activation="softmax", name="label")(h)
    model = unidl.Model(inputs, [value, label], seed=0)
    model.compile(optimizer="adam", loss={"value": "mse", "label": "sparse_categorical_crossentropy"},
                  loss_weights={"value": 0.5, "label": 2.0}, metrics={"value": ["mae"], "label": ["accuracy"]},
                  backend="numpy", dtype="float64")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 4))
    y_value, y_label = rng.normal(size=(32, 1)), rng.integers(0, 3, 32)
    pred_value, pred_label = model.predict(x)
    # the loss is 0.5 * mse + 2 * sparse CE, computed here by hand on the same weights
    mse = ((pred_value - y_value) ** 2).mean()
    ce = -np.log(pred_label[np.arange(32), y_label]).mean()
    result = model.evaluate(x, [y_value, y_label], verbose=0, return_dict=True)
    np.testing.assert_allclose(result["loss"], 0.5 * mse + 2 * ce, rtol=1e-10)
    assert set(result) == {"loss", "value_mae", "label_accuracy"}
    np.testing.assert_allclose(result["value_mae"], np.abs(pred_value - y_value).mean(), rtol=1e-10)
    np.testing.assert_allclose(result["label_accuracy"], (pred_label.argmax(1) == y_label).mean(), rtol=1e-10)
    history = model.fit(x, [y_value, y_label], epochs=5, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_nested_model_as_a_layer_and_freezing():
    base = unidl.Sequential([layers.Dense(6, activation="relu", input_shape=(4,)), layers.Dense(3)], seed=0)
    model = unidl.Sequential([base, layers.Dense(1)], seed=1)
    model.compile(optimizer="adam", loss="mse", backend="numpy")
    assert model.count_params() == (4 * 6 + 6) + (6 * 3 + 3) + (3 + 1)
    x, y = np.random.default_rng(0).normal(size=(16, 4)), np.ones((16, 1))
    base.trainable = False
    before = base.get_weights()
    model.fit(x, y, epochs=3, verbose=0)
    for a, b in zip(before, base.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert len(model.trainable_weights) == 2
    base.trainable = True
    model.fit(x, y, epochs=1, verbose=0)
    assert not np.array_equal(before[0], base.get_weights()[0])


def test_generator_data_and_steps_per_epoch():
    x, y = data()

    def batches():
        while True:
            for i in range(0, 40, 10):
                yield [x[0][i:i + 10], x[1][i:i + 10]], y[i:i + 10]

    reference = two_input_model()
    reference.compile(optimizer="sgd", loss="mse", backend="numpy", dtype="float64")
    reference.fit(x, y, epochs=2, batch_size=10, shuffle=False, verbose=0)
    model = two_input_model()
    model.compile(optimizer="sgd", loss="mse", backend="numpy", dtype="float64")
    history = model.fit(batches(), steps_per_epoch=4, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # a re-iterable sequence of batches restarts each epoch; evaluate accepts one too
    class Batches:
        def __len__(self):
            return 4

        def __getitem__(self, i):
            if i >= 4:
                raise IndexError(i)
            return [x[0][i * 10:(i + 1) * 10], x[1][i * 10:(i + 1) * 10]], y[i * 10:(i + 1) * 10]

    loss = model.evaluate(Batches(), verbose=0)
    np.testing.assert_allclose(loss, model.evaluate(x, y, verbose=0), rtol=1e-10)


def test_one_shot_generator_running_dry_stops_with_a_warning():
    x, y = data()
    gen = ((x[0][i:i + 10], x[1][i:i + 10]) for i in range(0, 40, 10))
    model = two_input_model()
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    with pytest.raises(unidl.DataError, match="must hold 2 arrays"):
        model.fit(gen, epochs=1, verbose=0)  # items are (x1, x2), read as (x, y), not ([x1, x2], y)
    gen = (([x[0][i:i + 10], x[1][i:i + 10]], y[i:i + 10]) for i in range(0, 40, 10))
    with pytest.warns(RuntimeWarning, match="yielded no batch"):
        history = model.fit(gen, epochs=3, verbose=0)
    assert len(history.history["loss"]) == 1


def test_functional_errors():
    a = layers.Input((4,))
    with pytest.raises(ValueError, match="list of at least 2 inputs"):
        layers.Add()(a)
    b = layers.Input((3,))
    with pytest.raises(ValueError, match="do not match"):
        layers.Add()([a, b])
    out = layers.Dense(1)(a)
    with pytest.raises(ValueError, match="not among the model's inputs"):
        unidl.Model(b, layers.Concatenate()([out, b]))
    model = unidl.Model(a, out)
    model.compile(loss="mse", backend="numpy")
    with pytest.raises(unidl.DataError, match=r"shape \(3,\).*expects \(4,\)"):
        model.predict(np.zeros((2, 3)))
    model2 = two_input_model()
    model2.compile(loss="mse", backend="numpy")
    with pytest.raises(unidl.DataError, match="must hold 2 arrays"):
        model2.predict(np.zeros((2, 4)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_layer_called_on_tensors_inside_custom_training(backend):
    # calling a compiled model on backend tensors inside unidl.use_backend (GAN-style code)
    model = two_input_model()
    model.compile(loss="mse", backend=backend, dtype="float32")
    x, _ = data(8)
    with unidl.use_backend(model.backend) as b:
        out = model([b.convert(x[0]), b.convert(x[1])])
        np.testing.assert_allclose(b.to_numpy(out), model.predict(x), rtol=TRAJECTORY_F32.rtol, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_functional_model_saves_and_loads_on_any_backend(tmp_path, backend):
    inputs = layers.Input((4,))
    shared = layers.Dense(5, activation="tanh")
    value = layers.Dense(1, name="value")(layers.Add()([shared(inputs), shared(inputs)]))
    label = layers.Dense(3, activation="softmax", name="label")(shared(inputs))
    model = unidl.Model(inputs, [value, label], seed=0)
    model.compile(optimizer="adam", loss=["mse", "sparse_categorical_crossentropy"], backend="numpy",
                  dtype="float64")
    x = np.random.default_rng(0).normal(size=(8, 4))
    model.fit(x, [np.ones((8, 1)), np.arange(8) % 3], epochs=2, verbose=0)
    path = tmp_path / "model.unidl"
    model.save(path)
    loaded = unidl.load_model(path, backend=backend, dtype="float64")
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert loaded.count_params() == model.count_params()  # the shared layer is still one layer
    for got, want in zip(loaded.predict(x), model.predict(x)):
        np.testing.assert_allclose(got, want, rtol=FORWARD_F64.rtol, atol=1e-12)
