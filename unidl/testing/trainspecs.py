"""Cases for the training families of the conformance kit: optimizers, fused kernels, training, errors.

* :data:`OPTIMIZERS`: one config per update rule and option (SGD plain /
  momentum / nesterov, Adam, amsgrad, AdamW, RMSprop plain / centered /
  momentum, Adagrad, and the three gradient clippings). Each takes
  ``STEPS`` steps from the same starting variables with the same seeded
  gradients. Learning rates are large on purpose, so that every update moves
  the weights by far more than the comparison's tolerance.
* :data:`EXAMPLES`: the README-style models (the regression MLP of
  examples/regression_mlp.py, the XOR model of examples/xor.py, a softmax
  classifier, a model with Dropout), trained ``TRAIN_STEPS`` steps with
  ``fit`` from a fixed seed and fixed data.
* :data:`ERRORS`: bad inputs that must raise the same exception type on every
  backend (the type the reference raises, and the documented one).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

import unidl
from unidl import layers, losses, optimizers
from unidl.backend import Backend

from .blockspecs import seeded_rng
from .opspecs import _as_f32

STEPS = 3          # optimizer steps per optimizer case
TRAIN_STEPS = 20   # fit() steps per training case


# -------------------------------------------------------------- optimizers

@dataclass(frozen=True)
class OptimizerCase:
    """``STEPS`` steps of one optimizer config on two variables (a matrix and a vector).

    ``item`` is the config name; for the ``fused`` family the kit files the
    same config under its update rule (``rule``) instead.
    """
    item: str
    name: str
    make: Callable[[], optimizers.Optimizer]

    @property
    def rule(self) -> str | None:
        """The native rule the config runs under ("adam"...), or None when no backend may take it over."""
        return self.make().native_rule

    def describe(self) -> str:
        opt = self.make()
        config = {k: v for k, v in opt.get_config().items() if v is not None and k != "name"}
        return f"{type(opt).__name__}({config}), {STEPS} steps"

    def start(self) -> dict[str, np.ndarray]:
        """The starting values of the variables (float32-representable)."""
        rng = seeded_rng("optimizer-start")
        return {"kernel": _as_f32(rng.uniform(-1.0, 1.0, (3, 4))), "bias": _as_f32(rng.uniform(-1.0, 1.0, (4,)))}

    def gradients(self) -> list[dict[str, np.ndarray]]:
        """The gradient of each step, per variable. Large enough to make clipping bite."""
        rng = seeded_rng("optimizer-grads")
        shapes = {name: value.shape for name, value in self.start().items()}
        return [{name: _as_f32(1.5 * rng.standard_normal(shape)) for name, shape in shapes.items()}
                for _ in range(STEPS)]


def _opt(item: str, factory: Callable[[], optimizers.Optimizer]) -> OptimizerCase:
    return OptimizerCase(item, f"{STEPS}_steps", factory)


OPTIMIZERS: list[OptimizerCase] = [
    _opt("sgd", lambda: optimizers.SGD(0.1)),
    _opt("sgd_momentum", lambda: optimizers.SGD(0.1, momentum=0.9)),
    _opt("sgd_nesterov", lambda: optimizers.SGD(0.1, momentum=0.9, nesterov=True)),
    _opt("adam", lambda: optimizers.Adam(0.05)),
    _opt("adam_amsgrad", lambda: optimizers.Adam(0.05, amsgrad=True)),
    _opt("adamw", lambda: optimizers.AdamW(0.05, weight_decay=0.1)),
    _opt("rmsprop", lambda: optimizers.RMSprop(0.05)),
    _opt("rmsprop_centered", lambda: optimizers.RMSprop(0.05, centered=True)),
    _opt("rmsprop_momentum", lambda: optimizers.RMSprop(0.05, momentum=0.5)),
    _opt("adagrad", lambda: optimizers.Adagrad(0.1)),
    _opt("nadam", lambda: optimizers.Nadam(0.05)),
    _opt("adamax", lambda: optimizers.Adamax(0.05)),
    _opt("adadelta", lambda: optimizers.Adadelta(1.0, epsilon=1e-3)),  # first steps ~ lr * sqrt(eps): large
    _opt("lion", lambda: optimizers.Lion(0.05)),
    _opt("clipnorm", lambda: optimizers.SGD(0.1, momentum=0.5, clipnorm=1.0)),
    _opt("clipvalue", lambda: optimizers.Adam(0.05, clipvalue=0.5)),
    _opt("global_clipnorm", lambda: optimizers.RMSprop(0.05, global_clipnorm=1.0)),
]


def fused_cases() -> list[OptimizerCase]:
    """The optimizer configs filed under their native rule: ``fused:adam:float32:trajectory:adam_amsgrad``."""
    return [OptimizerCase(c.rule, c.item, c.make) for c in OPTIMIZERS if c.rule is not None]


# ---------------------------------------------------------------- training

@dataclass(frozen=True)
class TrainingCase:
    """A model trained ``TRAIN_STEPS`` steps by ``fit`` (epochs x batches per epoch) from ``seed``."""
    item: str
    name: str
    build: Callable[[int], unidl.Sequential]
    optimizer: Callable[[], optimizers.Optimizer]
    loss: Callable[[], losses.Loss] | str
    data: Callable[[], tuple[np.ndarray, np.ndarray]]
    batch_size: int
    epochs: int
    seed: int = 0

    def describe(self) -> str:
        x, _ = self.data()
        return (f"{self.epochs} epochs x {-(-len(x) // self.batch_size)} batches of {self.batch_size}, "
                f"seed {self.seed}")

    def steps(self) -> int:
        return self.epochs * -(-len(self.data()[0]) // self.batch_size)


def _regression_data() -> tuple[np.ndarray, np.ndarray]:
    x = seeded_rng("regression_mlp").random((64, 4)).astype("float32")
    return x, x.sum(axis=1, keepdims=True)


def _xor_data() -> tuple[np.ndarray, np.ndarray]:
    return (np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype="float32"),
            np.array([[0], [1], [1], [0]], dtype="float32"))


def _classes(name: str, sparse: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = seeded_rng(name)
    x = _as_f32(rng.normal(size=(40, 6))).astype("float32")
    labels = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(int) + (x[:, 3] > 0.5)
    return x, (labels.astype("int64") if sparse else np.eye(3, dtype="float32")[labels])


EXAMPLES: list[TrainingCase] = [
    # examples/regression_mlp.py: Dense(10, relu) -> Dense(1), adam, mse.
    TrainingCase("regression_mlp", f"{TRAIN_STEPS}_steps", lambda seed: unidl.Sequential(
        [layers.Dense(10, activation="relu", input_shape=(4,)), layers.Dense(1)], seed=seed),
        lambda: optimizers.Adam(), "mse", _regression_data, batch_size=16, epochs=5),
    # examples/xor.py: Dense(10, relu) -> Dense(1, sigmoid), Adam(0.01), binary cross-entropy; one batch.
    TrainingCase("xor", f"{TRAIN_STEPS}_steps", lambda seed: unidl.Sequential(
        [layers.Dense(10, activation="relu", input_shape=(2,)), layers.Dense(1, activation="sigmoid")], seed=seed),
        lambda: optimizers.Adam(learning_rate=0.01), "binary_crossentropy", _xor_data, batch_size=32, epochs=20),
    TrainingCase("softmax_classifier", f"{TRAIN_STEPS}_steps", lambda seed: unidl.Sequential(
        [layers.Dense(8, activation="tanh", input_shape=(6,)), layers.Dense(3, activation="softmax")], seed=seed),
        lambda: optimizers.SGD(0.1, momentum=0.9), "categorical_crossentropy",
        lambda: _classes("softmax_classifier", sparse=False), batch_size=8, epochs=4),
    # Dropout masks come from the model's seeded generator, so the runs still agree.
    TrainingCase("dropout", f"{TRAIN_STEPS}_steps", lambda seed: unidl.Sequential(
        [layers.Dense(12, activation="relu", input_shape=(6,)), layers.Dropout(0.3), layers.Dense(3)], seed=seed),
        lambda: optimizers.RMSprop(0.01), lambda: losses.SparseCategoricalCrossentropy(from_logits=True),
        lambda: _classes("dropout", sparse=True), batch_size=10, epochs=5),
]


def _sequences() -> tuple[np.ndarray, np.ndarray]:
    rng = seeded_rng("recurrent")
    x = _as_f32(rng.normal(size=(24, 6, 3))).astype("float32")
    return x, x[:, -2:].sum(axis=(1, 2))[:, None].astype("float32")


# Recurrent models, whose layers a backend may run with native kernels (``native`` family: native vs generic).
NATIVE_EXAMPLES: list[TrainingCase] = [
    TrainingCase("recurrent_native", f"{TRAIN_STEPS}_steps", lambda seed: unidl.Sequential(
        [layers.Input((6, 3)), layers.LSTM(5, return_sequences=True), layers.GRU(4, go_backwards=True),
         layers.Dense(1)], seed=seed),
        lambda: optimizers.Adam(0.01), "mse", _sequences, batch_size=8, epochs=7),
]


# ------------------------------------------------------------------ errors

@dataclass(frozen=True)
class ErrorCase:
    """``trigger(backend)`` must raise ``expected``, and on every backend the type the reference raises.

    Its check ids end in the expected type: ``error:fit_label_shape:float32:raises:LossInputError``.
    """
    item: str
    trigger: Callable[[Backend], Any]
    expected: type[BaseException]
    doc: str = ""

    @property
    def name(self) -> str:
        return self.expected.__name__

    def describe(self) -> str:
        return self.doc


def _dense_model(backend: Backend, loss: Any = "mse", units: int = 1) -> unidl.Sequential:
    model = unidl.Sequential([layers.Dense(units, input_shape=(4,))], seed=0)
    model.compile(optimizer="sgd", loss=loss, backend=backend)
    return model


def _layer_input_width(backend: Backend) -> Any:
    layer = layers.Dense(3)
    layer.build_for((None, 4), rng=np.random.default_rng(0))
    for weight in layer.weights:
        weight.bind(backend)
    with unidl.use_backend(backend):
        return layer(backend.convert(np.ones((2, 5))))


def _model_call_width(backend: Backend) -> Any:
    return _dense_model(backend)(np.ones((2, 5), dtype=backend.dtype))


def _predict_width(backend: Backend) -> Any:
    return _dense_model(backend).predict(np.ones((2, 5)))


def _fit_label_shape(backend: Backend) -> Any:
    return _dense_model(backend).fit(np.ones((4, 4)), np.ones((4, 2)), verbose=0)


def _fit_label_range(backend: Backend) -> Any:
    return _dense_model(backend, "binary_crossentropy").fit(np.ones((4, 4)), np.full((4, 1), 2.0), verbose=0)


def _fit_class_ids(backend: Backend) -> Any:
    model = _dense_model(backend, "sparse_categorical_crossentropy", units=3)
    return model.fit(np.ones((4, 4)), np.array([0, 1, 3, 2]), verbose=0)


def _fit_sample_count(backend: Backend) -> Any:
    return _dense_model(backend).fit(np.ones((4, 4)), np.ones((3, 1)), verbose=0)


def _unknown_loss(backend: Backend) -> Any:
    return _dense_model(backend, loss="no_such_loss")


def _unknown_optimizer(backend: Backend) -> Any:
    unidl.Sequential([layers.Dense(1, input_shape=(4,))]).compile(optimizer="no_such_optimizer", backend=backend)


def _set_weights_shape(backend: Backend) -> Any:
    return _dense_model(backend).set_weights([np.ones((4, 2)), np.ones((2,))])


def _squeeze_not_one(backend: Backend) -> Any:
    with unidl.use_backend(backend):
        return unidl.ops.squeeze(backend.convert(np.ones((2, 3))), 1)


ERRORS: list[ErrorCase] = [
    ErrorCase("layer_input_width", _layer_input_width, layers.LayerShapeError,
              "Dense built for 4 features called on 5"),
    ErrorCase("model_call_width", _model_call_width, layers.LayerShapeError,
              "model(x) with 5 features for a model built for 4"),
    ErrorCase("predict_input_width", _predict_width, unidl.DataError,
              "predict() with 5 features for a model built for 4"),
    ErrorCase("fit_label_shape", _fit_label_shape, losses.LossInputError,
              "fit() with labels (4, 2) for an output (None, 1)"),
    ErrorCase("fit_label_range", _fit_label_range, losses.LossInputError,
              "binary_crossentropy with labels 2.0"),
    ErrorCase("fit_class_ids", _fit_class_ids, losses.LossInputError,
              "sparse_categorical_crossentropy with class id 3 for 3 classes"),
    ErrorCase("fit_sample_count", _fit_sample_count, unidl.DataError,
              "fit() with 4 samples of x and 3 of y"),
    ErrorCase("unknown_loss", _unknown_loss, ValueError, "compile(loss='no_such_loss')"),
    ErrorCase("unknown_optimizer", _unknown_optimizer, ValueError,
              "compile(optimizer='no_such_optimizer')"),
    ErrorCase("set_weights_shape", _set_weights_shape, ValueError,
              "set_weights() with arrays of the wrong shape on a compiled model"),
    ErrorCase("squeeze_not_one", _squeeze_not_one, ValueError, "ops.squeeze of an axis of size 3"),
]
