"""Callbacks: ModelCheckpoint, LearningRateScheduler, ReduceLROnPlateau, CSVLogger (Keras semantics)."""
from __future__ import annotations

import csv
import importlib.util
import math

import numpy as np
import pytest

import unidl
from unidl import layers, saving
from unidl.callbacks import (CSVLogger, LambdaCallback, LearningRateScheduler, ModelCheckpoint,
                             ReduceLROnPlateau)
from unidl.optimizers import SGD

X = np.random.default_rng(0).normal(size=(16, 3))
Y = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.3


def make_model(backend="numpy", lr=0.05, dtype="float64", **compile_kwargs):
    model = unidl.Sequential([layers.Dense(1, input_shape=(3,))], seed=0)
    model.compile(**{"optimizer": SGD(learning_rate=lr), "loss": "mse", "backend": backend, "dtype": dtype,
                     **compile_kwargs})
    return model


def weights_in(path):
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


# ------------------------------------------------------------- ModelCheckpoint

def test_save_best_only_writes_only_on_improvement(tmp_path):
    model = make_model()
    path = tmp_path / "best.npz"
    checkpoint = ModelCheckpoint(path, monitor="val_loss", save_best_only=True, save_weights_only=True)
    checkpoint.set_model(model)
    checkpoint.on_train_begin({})
    kernels, stamps = [], []
    for epoch, val_loss in enumerate([1.0, 0.5, 0.7, 0.5, 0.4]):
        # Distinct weights per epoch, so the file's content tells which epoch wrote it.
        model.set_weights([np.full((3, 1), float(epoch)), np.zeros(1)])
        checkpoint.on_epoch_end(epoch, {"loss": 9.0, "val_loss": val_loss})
        kernels.append(float(weights_in(path)["dense/kernel"][0, 0]))
        stamps.append(path.stat().st_mtime_ns)
    # Saved at epochs 0, 1, 4; epoch 2 is worse and epoch 3 only equal (improvement is strict).
    assert kernels == [0.0, 1.0, 1.0, 1.0, 4.0]
    assert stamps[2] == stamps[1] and stamps[3] == stamps[1]
    assert checkpoint.best == 0.4


def test_mode_auto_maximizes_accuracy_and_nan_never_counts_as_best(tmp_path):
    model = make_model()
    path = tmp_path / "best.npz"
    checkpoint = ModelCheckpoint(path, monitor="val_accuracy", save_best_only=True, save_weights_only=True)
    checkpoint.set_model(model)
    for epoch, acc in enumerate([0.5, 0.4, float("nan"), 0.8]):
        model.set_weights([np.full((3, 1), float(epoch)), np.zeros(1)])
        checkpoint.on_epoch_end(epoch, {"val_accuracy": acc})
        assert weights_in(path)["dense/kernel"][0, 0] == {0: 0, 1: 0, 2: 0, 3: 3}[epoch]


def test_checkpoint_per_epoch_with_formatted_names_during_fit(tmp_path):
    model = make_model()
    pattern = str(tmp_path / "ckpt" / "e{epoch:02d}-{val_loss:.3f}.npz")  # the directory does not exist yet
    seen = {}
    record = LambdaCallback(on_epoch_end=lambda e, logs: seen.update({e: (model.get_weights(), logs["val_loss"])}))
    model.fit(X, Y, epochs=3, batch_size=8, validation_data=(X, Y), verbose=0,
              callbacks=[record, ModelCheckpoint(pattern, save_weights_only=True)])
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == [f"e{e + 1:02d}-{seen[e][1]:.3f}.npz" for e in range(3)]
    for e in range(3):
        stored = weights_in(tmp_path / "ckpt" / files[e])
        np.testing.assert_array_equal(stored["dense/kernel"], seen[e][0][0])


def test_checkpoint_of_the_whole_model_loads_back(tmp_path):
    model = make_model(metrics=["mae"])
    path = tmp_path / "model.unidl"
    model.fit(X, Y, epochs=2, batch_size=8, verbose=0, callbacks=[ModelCheckpoint(path, monitor="loss")])
    loaded = saving.load_model(path)
    for got, want in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert loaded.optimizer.iterations == model.optimizer.iterations == 4


def test_save_freq_in_batches(tmp_path):
    model = make_model()
    pattern = str(tmp_path / "e{epoch}-b{batch}.npz")
    model.fit(X, Y, epochs=2, batch_size=4, verbose=0,   # 4 batches per epoch
              callbacks=[ModelCheckpoint(pattern, save_weights_only=True, save_freq=3)])
    # Batches counted across epochs: saves after the 3rd, 6th (epoch 2, batch 2) batches.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e1-b3.npz", "e2-b2.npz"]


def test_unsavable_model_fails_before_training(tmp_path):
    class Net(unidl.Model):
        def __init__(self):
            super().__init__(seed=0)
            self.dense = layers.Dense(1)

        def call(self, inputs, training=False):
            return self.dense(inputs)

    net = Net()
    net.compile(optimizer="sgd", loss="mse", dtype="float64")
    epochs_run = []
    with pytest.raises(saving.SavingError, match="get_config"):
        net.fit(X, Y, epochs=2, verbose=0, callbacks=[
            ModelCheckpoint(tmp_path / "m.unidl"), LambdaCallback(on_epoch_end=lambda e, logs: epochs_run.append(e))])
    assert epochs_run == []
    net.fit(X, Y, epochs=1, verbose=0, callbacks=[ModelCheckpoint(tmp_path / "w.npz", save_weights_only=True)])
    assert (tmp_path / "w.npz").exists()


def test_checkpoint_problems_are_reported(tmp_path):
    model = make_model()
    checkpoint = ModelCheckpoint(tmp_path / "w.npz", monitor="val_loss", save_best_only=True,
                                 save_weights_only=True)
    checkpoint.set_model(model)
    with pytest.warns(RuntimeWarning, match="'val_loss' is logged"):
        checkpoint.on_epoch_end(0, {"loss": 1.0})
    assert not (tmp_path / "w.npz").exists()
    bad = ModelCheckpoint(str(tmp_path / "{val_acc:.2f}.npz"), save_weights_only=True)
    bad.set_model(model)
    with pytest.raises(KeyError, match="val_acc"):
        bad.on_epoch_end(0, {"loss": 1.0})
    with pytest.raises(ValueError, match="save_freq"):
        ModelCheckpoint("x.npz", save_freq=0)
    with pytest.raises(ValueError, match="mode"):
        ModelCheckpoint("x.npz", mode="biggest")


# -------------------------------------------------------- LearningRateScheduler

def hand_trained_kernels(lrs, w0, b0):
    """Full-batch SGD on mse by hand: the kernels after each epoch."""
    w, b, out = w0.copy(), b0.copy(), []
    for lr in lrs:
        err = X @ w + b - Y
        w, b = w - lr * 2 / len(X) * X.T @ err, b - lr * 2 / len(X) * err.sum(axis=0)
        out.append(w)
    return out


BACKENDS = ["numpy", pytest.param("torch", marks=pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="torch is not installed")),
    pytest.param("tensorflow", marks=pytest.mark.skipif(
        importlib.util.find_spec("tensorflow") is None, reason="tensorflow is not installed"))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_scheduler_sets_the_rate_the_optimizer_uses(backend):
    """TF runs a compiled train step: the new rate must reach it as an input, not a baked constant."""
    model = make_model(backend=backend, lr=0.1)
    w0, b0 = model.get_weights()
    kernels, logged = [], []
    record = LambdaCallback(on_epoch_end=lambda e, logs: (kernels.append(model.get_weights()[0]),
                                                          logged.append(logs["learning_rate"])))
    scheduler = LearningRateScheduler(lambda epoch, lr: lr if epoch == 0 else lr * 0.5)
    model.fit(X, Y, epochs=4, batch_size=len(X), shuffle=False, verbose=0, callbacks=[scheduler, record])
    assert logged == [0.1, 0.05, 0.025, 0.0125]
    for got, want in zip(kernels, hand_trained_kernels(logged, w0, b0)):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    # Control: a constant rate gives other weights, so the comparison above can fail.
    assert not np.allclose(kernels[-1], hand_trained_kernels([0.1] * 4, w0, b0)[-1], rtol=1e-6)


def test_one_argument_schedule_and_verbose(capsys):
    model = make_model()
    model.fit(X, Y, epochs=2, verbose=0, callbacks=[LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1),
                                                                          verbose=1)])
    assert model.optimizer.learning_rate == 0.02 and type(model.optimizer.learning_rate) is float
    assert "Epoch 2: LearningRateScheduler setting learning rate to 0.02." in capsys.readouterr().out


def test_scheduler_refuses_bad_rates_and_schedule_optimizers():
    with pytest.raises(ValueError, match="must return a number"):
        make_model().fit(X, Y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda e, lr: "fast")])
    with pytest.raises(ValueError, match="finite"):
        make_model().fit(X, Y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda e, lr: math.nan)])
    scheduled = make_model(lr=unidl.schedules.ExponentialDecay(0.1, 10, 0.9))
    with pytest.raises(TypeError, match="schedule"):
        scheduled.fit(X, Y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda e, lr: lr)])


def test_history_records_the_learning_rate():
    model = make_model()
    history = model.fit(X, Y, epochs=2, verbose=0, callbacks=[LearningRateScheduler(lambda e, lr: lr / 2)])
    assert history.history["learning_rate"] == [0.025, 0.0125]


# ------------------------------------------------------------ ReduceLROnPlateau

def drive(callback, model, values, monitor="val_loss"):
    """Feed one monitored value per epoch; return the learning rate after each epoch and the logs."""
    rates, all_logs = [], []
    callback.set_model(model)
    callback.on_train_begin({})
    for epoch, value in enumerate(values):
        logs = {monitor: value}
        callback.on_epoch_end(epoch, logs)
        rates.append(model.optimizer.learning_rate)
        all_logs.append(logs)
    return rates, all_logs


def test_reduces_after_patience_epochs_without_improvement():
    model = make_model(lr=1.0)
    rates, logs = drive(ReduceLROnPlateau(factor=0.5, patience=2), model, [1.0, 1.0, 1.0, 0.9, 0.95, 0.95])
    # epoch 0 sets best=1.0; 1 and 2 do not improve -> halve after epoch 2;
    # epoch 3 improves; 4 and 5 do not -> halve again after epoch 5.
    assert rates == [1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
    assert [entry["learning_rate"] for entry in logs] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]  # the rate used


def test_min_delta_cooldown_and_min_lr():
    model = make_model(lr=1.0)
    # Improvements smaller than min_delta do not count.
    rates, _ = drive(ReduceLROnPlateau(factor=0.1, patience=1, min_delta=0.1), model, [1.0, 0.95, 0.91])
    assert rates == pytest.approx([1.0, 0.1, 0.01])
    model = make_model(lr=1.0)
    # After a reduction the cooldown counter runs down, one per epoch and starting with the
    # next one, before waiting counts again (Keras 3.15 gives this same sequence).
    rates, _ = drive(ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2), model, [1.0] * 7)
    assert rates == [1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125]
    model = make_model(lr=1.0)
    rates, _ = drive(ReduceLROnPlateau(factor=0.1, patience=1, min_lr=0.05), model, [1.0] * 4)
    assert rates == pytest.approx([1.0, 0.1, 0.05, 0.05])


def test_reduce_in_max_mode_and_during_fit():
    model = make_model(lr=1.0)
    rates, _ = drive(ReduceLROnPlateau(monitor="val_acc", factor=0.5, patience=1), model,
                     [0.5, 0.6, 0.55], monitor="val_acc")
    assert rates == [1.0, 1.0, 0.5]  # "acc" in the name: larger is better
    model = make_model(lr=1e-30)  # next to no learning: the loss cannot improve by min_delta
    history = model.fit(X, Y, epochs=3, verbose=0, callbacks=[ReduceLROnPlateau("loss", factor=0.5, patience=1)])
    assert model.optimizer.learning_rate == pytest.approx(1e-30 / 4)
    assert len(history.history["loss"]) == 3
    with pytest.raises(ValueError, match="factor"):
        ReduceLROnPlateau(factor=1.0)


# -------------------------------------------------------------------- CSVLogger

def read_rows(path, separator=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=separator))


def test_csv_logger_header_and_one_row_per_epoch(tmp_path):
    model = make_model(metrics=["mae"])
    path = tmp_path / "log.csv"
    history = model.fit(X, Y, epochs=3, batch_size=8, validation_data=(X, Y), verbose=0,
                        callbacks=[CSVLogger(path)])
    rows = read_rows(path)
    assert rows[0] == ["epoch", "loss", "mae", "val_loss", "val_mae"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"]
    for column, key in enumerate(rows[0][1:], start=1):
        assert [float(r[column]) for r in rows[1:]] == history.history[key]  # repr round-trips exactly


def test_csv_logger_flushes_every_epoch_and_appends(tmp_path):
    path = tmp_path / "log.csv"
    model = make_model()
    rows_seen = []
    peek = LambdaCallback(on_epoch_end=lambda e, logs: rows_seen.append(len(read_rows(path, ";"))))
    model.fit(X, Y, epochs=3, verbose=0, callbacks=[CSVLogger(path, separator=";"), peek])
    assert rows_seen == [2, 3, 4]  # header + one row per finished epoch, readable mid-training
    model.fit(X, Y, epochs=2, verbose=0, callbacks=[CSVLogger(path, separator=";", append=True)])
    rows = read_rows(path, ";")
    assert rows[0] == ["epoch", "loss"] and len(rows) == 6 and rows.count(["epoch", "loss"]) == 1
    model.fit(X, Y, epochs=1, verbose=0, callbacks=[CSVLogger(path, separator=";")])  # append=False overwrites
    assert len(read_rows(path, ";")) == 2
