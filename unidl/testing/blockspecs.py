"""Cases for the building-block families of the conformance kit: activations, losses, layers.

Each case knows how to set itself up on a backend (:meth:`bind`) and gives
back a :class:`Bound`: the differentiable inputs as backend variables, a
``forward()`` returning labelled outputs, and an ``objective()`` -- the scalar
``sum(out * r)`` for a fixed random ``r`` (plus any regularization penalty),
whose gradient w.r.t. every variable the kit compares. The checks
(:mod:`unidl.testing.blockchecks`) run a case on the backend under test and on
the NumPy float64 reference and compare the two; on the reference itself they
compare its gradients with central finite differences instead.

Inputs are seeded by the case's item and name, float32-representable (so
float32 and float64 runs see the same numbers), and keep ``MARGIN`` away from
kinks (relu at 0, hard_sigmoid at +-3, |e| = delta for Huber...).

* :data:`ACTIVATIONS`: every name of ``unidl.activations.BUILTINS``, on a
  ``basic`` range (with finite differences) and a ``wide`` one (large |x|:
  stability), plus a few keyword variants.
* :data:`LOSSES`: one config per behaviour of each loss class (from_logits
  both ways, label_smoothing, Huber's delta), each under the reductions
  ``mean`` (Keras's sum_over_batch_size), ``sum``, ``none`` and ``weighted``
  (a sample_weight).
* :data:`LAYERS`: every class of ``unidl.layers.BUILTINS``; gradients w.r.t.
  the input and every weight.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from unidl import activations, layers, losses, ops, regularizers
from unidl.backend import Backend

from .opspecs import F, I, _as_f32

Tensor = Any


# ------------------------------------------------------------------ shared

def seeded_rng(*names: str, salt: int = 0) -> np.random.Generator:
    """A generator seeded by the names (same numbers in every run, on every backend)."""
    return np.random.default_rng(zlib.crc32(":".join(names).encode()) + salt)


def upstream(item: str, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The fixed random upstream gradient ``r`` of a case (random, not ones: see opspecs.make_upstream)."""
    return _as_f32(seeded_rng(item, name, salt=1).standard_normal(shape))


@dataclass
class Bound:
    """A case set up on one backend (see the module docstring)."""
    variables: dict[str, Tensor]            # label -> backend variable, differentiated
    forward: Callable[[], dict[str, Tensor]]
    objective: Callable[[], Tensor]


def weighted_sum(out: Tensor, r: np.ndarray) -> Tensor:
    """``sum(out * r)`` with ``r`` converted to the current backend."""
    return ops.sum(ops.multiply(out, ops.convert(r)))


# ------------------------------------------------------------- activations

# Where each activation's derivative jumps; inputs keep MARGIN away.
ACTIVATION_KINKS: dict[str, tuple[float, ...]] = {
    "relu": (0.0,), "relu6": (0.0, 6.0), "leaky_relu": (0.0,), "elu": (0.0,), "selu": (0.0,),
    "hard_sigmoid": (-3.0, 3.0), "hard_silu": (-3.0, 3.0), "hard_swish": (-3.0, 3.0),
}


@dataclass(frozen=True)
class ActivationCase:
    """``activations.get(item)(x, **kwargs)`` on one seeded input."""
    item: str
    name: str
    x: F
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    fd: bool = True

    def describe(self) -> str:
        kw = f" kwargs {dict(self.kwargs)}" if self.kwargs else ""
        return f"x {self.x.describe()}{kw}"

    def bind(self, backend: Backend) -> Bound:
        fn = activations.get(self.item)
        x = backend.variable(self.x.make(seeded_rng(self.item, self.name)), name="x")
        shape = self.x.shape

        def forward() -> dict[str, Tensor]:
            return {"output": fn(x, **self.kwargs)}

        def objective() -> Tensor:
            return weighted_sum(fn(x, **self.kwargs), upstream(self.item, self.name, shape))

        return Bound({"x": x}, forward, objective)


def _activation_cases() -> list[ActivationCase]:
    cases = []
    for name in activations.BUILTINS:
        avoid = ACTIVATION_KINKS.get(name, ())
        # basic: both sides of every kink (hard_sigmoid saturates), small enough for finite differences.
        cases.append(ActivationCase(name, "basic", F(4, 5, low=-4.0, high=4.0, avoid=avoid)))
        # wide: large |x| (relu6 saturates) -- overflow-safe forms (sigmoid, softplus, elu's exp(min(x, 0)), softmax's shift).
        # Finite differences of a sum of terms up to e^30 say nothing about the small ones: forward and grad only.
        cases.append(ActivationCase(name, "wide", F(4, 5, low=-30.0, high=30.0, avoid=avoid), fd=False))
    cases += [
        ActivationCase("gelu", "approximate", F(4, 5, low=-5.0, high=5.0), {"approximate": True}),
        ActivationCase("leaky_relu", "slope", F(4, 5, low=-3.0, high=3.0, avoid=(0.0,)), {"negative_slope": 0.05}),
        ActivationCase("elu", "alpha", F(4, 5, low=-3.0, high=3.0, avoid=(0.0,)), {"alpha": 0.5}),
        ActivationCase("softmax", "axis0", F(4, 5, low=-3.0, high=3.0), {"axis": 0}),
        ActivationCase("log_softmax", "axis0", F(4, 5, low=-3.0, high=3.0), {"axis": 0}),
    ]
    return cases


ACTIVATIONS: list[ActivationCase] = _activation_cases()


# ------------------------------------------------------------------ losses

BATCH, FEATURES, CLASSES = 6, 3, 4

REDUCTIONS: dict[str, tuple[str, bool]] = {  # case name -> (reduction, with sample_weight)
    "mean": ("sum_over_batch_size", False),
    "sum": ("sum", False),
    "none": ("none", False),
    "weighted": ("sum_over_batch_size", True),
}


def _regression(rng: np.random.Generator, avoid: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    y_true = F(BATCH, FEATURES).make(rng)
    error = F(BATCH, FEATURES, low=-2.0, high=2.0, avoid=avoid).make(rng)
    return y_true, _as_f32(y_true + error)


def _binary(rng: np.random.Generator, logits: bool) -> tuple[np.ndarray, np.ndarray]:
    y_true = (rng.random((BATCH, 2)) < 0.5).astype(np.float64)
    y_pred = F(BATCH, 2, low=-4.0, high=4.0, avoid=(0.0,)) if logits else F(BATCH, 2, low=0.05, high=0.95)
    return y_true, y_pred.make(rng)


def _categorical(rng: np.random.Generator, logits: bool, sparse: bool) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, CLASSES, BATCH)
    # Probabilities that do not sum to one on purpose: the loss renormalises them.
    y_pred = F(BATCH, CLASSES, low=-3.0, high=3.0) if logits else F(BATCH, CLASSES, low=0.1, high=1.0)
    y_true = labels.astype(np.int64) if sparse else np.eye(CLASSES)[labels]
    return y_true, y_pred.make(rng)


def _distributions(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    t, p = (F(BATCH, CLASSES, low=0.05, high=1.0).make(rng) for _ in range(2))
    return _as_f32(t / t.sum(axis=1, keepdims=True)), _as_f32(p / p.sum(axis=1, keepdims=True))


def _counts(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(0, 5, (BATCH, FEATURES)).astype(np.float64), F(BATCH, FEATURES, low=0.2, high=4.0).make(rng)


def _margins(rng: np.random.Generator, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 2, (BATCH, FEATURES)).astype(np.float64)
    y_true = 2.0 * labels - 1.0 if signed else labels
    return y_true, F(BATCH, FEATURES, low=-3.0, high=3.0, avoid=(-1.0, 1.0)).make(rng)  # the hinge's kinks


def _percentages(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y_true = _as_f32(rng.choice([-1.0, 1.0], (BATCH, FEATURES)) * rng.uniform(0.5, 2.0, (BATCH, FEATURES)))
    return y_true, _as_f32(y_true + F(BATCH, FEATURES, low=-1.0, high=1.0, avoid=(0.0,)).make(rng))


def _log_probabilities(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    logits = F(BATCH, CLASSES, low=-3.0, high=3.0).make(rng)
    return rng.integers(0, CLASSES, BATCH).astype(np.int64), _as_f32(
        logits - np.log(np.exp(logits).sum(axis=1, keepdims=True)))


DATA: dict[str, Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]] = {
    "distributions": _distributions,
    "counts": _counts,
    "hinge_binary": lambda rng: _margins(rng, signed=False),
    "hinge_signed": lambda rng: _margins(rng, signed=True),
    "percentages": _percentages,
    "positive": lambda rng: (F(BATCH, FEATURES, low=0.1, high=3.0).make(rng),
                             F(BATCH, FEATURES, low=0.1, high=3.0).make(rng)),
    "log_probabilities": _log_probabilities,
    "regression": lambda rng: _regression(rng, avoid=(0.0,)),
    "regression_delta0.5": lambda rng: _regression(rng, avoid=(0.0, -0.5, 0.5)),
    "regression_delta1": lambda rng: _regression(rng, avoid=(0.0, -1.0, 1.0)),
    "binary_prob": lambda rng: _binary(rng, logits=False),
    "binary_logit": lambda rng: _binary(rng, logits=True),
    "categorical_prob": lambda rng: _categorical(rng, logits=False, sparse=False),
    "categorical_logit": lambda rng: _categorical(rng, logits=True, sparse=False),
    "sparse_prob": lambda rng: _categorical(rng, logits=False, sparse=True),
    "sparse_logit": lambda rng: _categorical(rng, logits=True, sparse=True),
}


@dataclass(frozen=True)
class LossConfig:
    """One loss configuration: its class, constructor kwargs and the kind of data it takes."""
    name: str
    cls: type
    kwargs: Mapping[str, Any]
    data: str


LOSS_CONFIGS: tuple[LossConfig, ...] = (
    LossConfig("mse", losses.MeanSquaredError, {}, "regression"),
    LossConfig("mae", losses.MeanAbsoluteError, {}, "regression"),
    LossConfig("huber", losses.Huber, {}, "regression_delta1"),
    LossConfig("huber_delta0.5", losses.Huber, {"delta": 0.5}, "regression_delta0.5"),
    LossConfig("bce", losses.BinaryCrossentropy, {}, "binary_prob"),
    LossConfig("bce_logits", losses.BinaryCrossentropy, {"from_logits": True}, "binary_logit"),
    LossConfig("bce_smoothing", losses.BinaryCrossentropy, {"label_smoothing": 0.1}, "binary_prob"),
    LossConfig("bce_logits_smoothing", losses.BinaryCrossentropy,
               {"from_logits": True, "label_smoothing": 0.2}, "binary_logit"),
    LossConfig("cce", losses.CategoricalCrossentropy, {}, "categorical_prob"),
    LossConfig("cce_logits", losses.CategoricalCrossentropy, {"from_logits": True}, "categorical_logit"),
    LossConfig("cce_smoothing", losses.CategoricalCrossentropy, {"label_smoothing": 0.1}, "categorical_prob"),
    LossConfig("scce", losses.SparseCategoricalCrossentropy, {}, "sparse_prob"),
    LossConfig("scce_logits", losses.SparseCategoricalCrossentropy, {"from_logits": True}, "sparse_logit"),
    LossConfig("kld", losses.KLDivergence, {}, "distributions"),
    LossConfig("poisson", losses.Poisson, {}, "counts"),
    LossConfig("cosine_similarity", losses.CosineSimilarity, {}, "regression"),
    LossConfig("hinge", losses.Hinge, {}, "hinge_binary"),
    LossConfig("hinge_signed", losses.Hinge, {}, "hinge_signed"),
    LossConfig("squared_hinge", losses.SquaredHinge, {}, "hinge_signed"),
    LossConfig("categorical_hinge", losses.CategoricalHinge, {}, "categorical_logit"),
    LossConfig("log_cosh", losses.LogCosh, {}, "regression"),
    LossConfig("mape", losses.MeanAbsolutePercentageError, {}, "percentages"),
    LossConfig("msle", losses.MeanSquaredLogarithmicError, {}, "positive"),
    LossConfig("nll", losses.NegativeLogLikelihood, {}, "log_probabilities"),
)


@dataclass(frozen=True)
class LossCase:
    """``loss(y_true, y_pred, sample_weight)`` of one config under one reduction; differentiated w.r.t. y_pred."""
    item: str
    name: str
    config: LossConfig
    fd: bool = True

    def describe(self) -> str:
        reduction, weighted = REDUCTIONS[self.name]
        return (f"{self.config.cls.__name__}({dict(self.config.kwargs)}), reduction {reduction!r}"
                + (", with sample_weight" if weighted else "") + f", {self.config.data} data")

    def make_loss(self) -> losses.Loss:
        return self.config.cls(reduction=REDUCTIONS[self.name][0], **self.config.kwargs)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        rng = seeded_rng(self.item, self.name)
        y_true, y_pred = DATA[self.config.data](rng)
        weight = _as_f32(rng.uniform(0.5, 2.0, BATCH)) if REDUCTIONS[self.name][1] else None
        return y_true, y_pred, weight

    def bind(self, backend: Backend) -> Bound:
        loss = self.make_loss()
        y_true_np, y_pred_np, weight_np = self.arrays()
        y_true = backend.convert(y_true_np)
        weight = None if weight_np is None else backend.convert(weight_np)
        y_pred = backend.variable(y_pred_np, name="y_pred")
        r_shape = (BATCH,) if loss.reduction == "none" else ()
        r = upstream(self.item, self.name, r_shape)

        def forward() -> dict[str, Tensor]:
            return {"loss": loss(y_true, y_pred, weight)}

        def objective() -> Tensor:
            return weighted_sum(loss(y_true, y_pred, weight), r)

        return Bound({"y_pred": y_pred}, forward, objective)


LOSSES: list[LossCase] = [LossCase(c.name, reduction, c) for c in LOSS_CONFIGS for reduction in REDUCTIONS]


def loss_classes_covered() -> set[type]:
    return {c.cls for c in LOSS_CONFIGS}


# ------------------------------------------------------------------ layers

@dataclass(frozen=True)
class LayerCase:
    """A layer built from a seed (same weights everywhere) and called on seeded inputs.

    ``inputs`` are specs (``F`` floats, ``I`` integer ids), the first axis the
    batch; with ``multi=True`` the layer gets them as a list (merge layers),
    with ``positional=True`` as separate arguments (``MultiHeadAttention(query, value)``),
    else the single one. Differentiated w.r.t. every float input and every
    *trainable* weight; the values of non-trainable weights after the call
    (BatchNormalization's moving statistics) join the forward outputs, as do
    the penalties of regularized weights (they also join the objective, as in
    training).
    """
    item: str
    name: str
    make: Callable[[], layers.Layer]
    inputs: tuple
    training: bool = False
    fd: bool = True
    multi: bool = False
    positional: bool = False

    def describe(self) -> str:
        shown = "; ".join(spec.describe() for spec in self.inputs)
        return f"inputs [{shown}], training={self.training}"

    def _shape_arg(self) -> Any:
        shapes = [(None, *spec.shape[1:]) for spec in self.inputs]
        return shapes if self.multi or self.positional else shapes[0]

    def build(self) -> layers.Layer:
        """The layer, built from the case's seed: its weights are still NumPy arrays."""
        layer = self.make()
        shape = self._shape_arg()
        if self.positional:
            layer.build_for(shape[0], rng=seeded_rng(self.item, self.name, salt=2), arg_shapes=tuple(shape[1:]))
        else:
            layer.build_for(shape, rng=seeded_rng(self.item, self.name, salt=2))
        return layer

    def bind(self, backend: Backend) -> Bound:
        layer = self.build()
        for weight in layer.weights:
            weight.bind(backend)
        rng = seeded_rng(self.item, self.name)
        values = [spec.make(rng) for spec in self.inputs]
        names = ["input"] if len(values) == 1 else [f"input_{i}" for i in range(len(values))]
        args = [backend.variable(v, name=n) if v.dtype.kind == "f" else backend.convert(v)
                for n, v in zip(names, values)]
        variables = {n: a for n, a, v in zip(names, args, values) if v.dtype.kind == "f"}
        variables.update({_short(w): w.value for w in layer.weights if w.trainable})
        state = [w for w in layer.weights if not w.trainable]
        call_args = args if self.positional else [args if self.multi else args[0]]
        out_shape = (self.inputs[0].shape[0], *layer.output_shape[1:])
        r = upstream(self.item, self.name, out_shape)

        def penalty() -> Tensor | None:
            terms = layer.regularization_losses()
            total = terms[0] if terms else None
            for term in terms[1:]:
                total = ops.add(total, term)
            return total

        def forward() -> dict[str, Tensor]:
            outputs = {"output": layer(*call_args, training=self.training)}
            outputs.update({f"{_short(w)} after the call": w.value for w in state})
            extra = penalty()
            if extra is not None:
                outputs["penalty"] = extra
            return outputs

        def objective() -> Tensor:
            value = weighted_sum(layer(*call_args, training=self.training), r)
            extra = penalty()
            return value if extra is None else ops.add(value, extra)

        return Bound(variables, forward, objective)


def _short(weight: Any) -> str:
    return weight.name.rsplit("/", 1)[-1]


def _layer_class(name: str) -> Callable[..., layers.Layer]:
    """The built-in layer class ``name``, looked up when a case runs (cases of absent classes are dropped)."""
    return lambda *args, **kwargs: layers.BUILTINS[name](*args, **kwargs)


def _case(item: str, name: str, args: tuple, kwargs: dict, *inputs: Any, **options: Any) -> LayerCase:
    cls = _layer_class(item)
    return LayerCase(item, name, lambda: cls(*args, **kwargs), tuple(inputs), **options)


_PAIR = (F(4, 3), F(4, 3))
_IMAGES = F(2, 5, 6, 3)

_LAYER_CASES: list[LayerCase] = [
    _case("InputLayer", "identity", ((4,),), {}, F(5, 4)),
    _case("Dense", "linear", (3,), {}, F(5, 4)),
    _case("Dense", "relu", (3,), {"activation": "relu"}, F(5, 4)),
    _case("Dense", "no_bias", (3,), {"activation": "tanh", "use_bias": False}, F(5, 4)),
    _case("Dense", "regularized", (3,), {
        "activation": "sigmoid", "kernel_regularizer": regularizers.l1_l2(l1=0.01, l2=0.02),
        "bias_regularizer": "l2", "bias_initializer": "ones"}, F(5, 4)),
    _case("Dense", "rank3", (2,), {"activation": "softplus"}, F(2, 3, 4)),
    _case("Activation", "softmax", ("softmax",), {}, F(4, 5)),
    _case("Activation", "gelu", ("gelu",), {}, F(4, 5)),
    _case("Flatten", "rank4", (), {}, F(2, 3, 2, 2)),
    _case("Reshape", "infer_axis", ((2, -1),), {}, F(3, 4, 2)),
    _case("Dropout", "inference", (0.4,), {}, F(6, 5)),
    # Masks come from unidl's seeded generator: the same on every backend. Each call
    # draws a new mask, so finite differences (many calls) do not apply.
    _case("Dropout", "training", (0.4,), {}, F(6, 5), training=True, fd=False),
    # Values in {-1, 0, 1}: about a third of the steps are all zeros and masked. The mask jumps where
    # an input is 0, so finite differences do not apply there.
    _case("Attention", "dot", (), {}, F(2, 3, 4), F(2, 5, 4), multi=True),
    _case("Attention", "scaled_with_key", (), {"use_scale": True}, F(2, 3, 4), F(2, 5, 4), F(2, 5, 4), multi=True),
    _case("Attention", "concat", (), {"score_mode": "concat"}, F(2, 3, 4), F(2, 5, 4), multi=True),
    _case("MultiHeadAttention", "cross", (2, 3), {}, F(2, 3, 4), F(2, 5, 4), positional=True),
    _case("MultiHeadAttention", "value_dim", (2, 2), {"value_dim": 3, "output_shape": 5}, F(2, 4, 3),
          F(2, 4, 3), F(2, 4, 2), positional=True),
    _case("Masking", "zero_steps", (0.0,), {}, F(3, 6, 1, low=-1.0, high=1.0, step=1.0), fd=False),
    # Merge layers: a list of inputs.
    _case("Add", "pair", (), {}, *_PAIR, multi=True),
    _case("Add", "three", (), {}, F(4, 3), F(4, 3), F(4, 3), multi=True),
    _case("Subtract", "pair", (), {}, *_PAIR, multi=True),
    _case("Multiply", "pair", (), {}, *_PAIR, multi=True),
    _case("Average", "three", (), {}, F(4, 3), F(4, 3), F(4, 3), multi=True),
    _case("Maximum", "pair", (), {}, *_PAIR, multi=True),
    _case("Minimum", "pair", (), {}, *_PAIR, multi=True),
    _case("Concatenate", "features", (), {}, F(4, 3), F(4, 2), multi=True),
    _case("Concatenate", "axis1", (), {"axis": 1}, F(2, 3, 2), F(2, 1, 2), multi=True),
    # Layers being added to the built-ins; each case joins the kit once its class is in layers.BUILTINS.
    _case("Embedding", "ids", (10, 3), {}, I(5, 4, high=10)),
    _case("Conv1D", "valid", (3, 2), {}, F(2, 7, 3)),
    _case("Conv2D", "same", (4, 3), {"padding": "same", "activation": "relu"}, _IMAGES),
    _case("Conv2D", "strided", (2, (2, 3)), {"strides": 2}, _IMAGES),
    _case("Conv2DTranspose", "strided", (2, 3), {"strides": 2, "padding": "same"}, F(2, 3, 4, 3)),
    _case("MaxPooling2D", "valid", (2,), {}, _IMAGES),
    _case("AveragePooling2D", "same", (2,), {"padding": "same"}, _IMAGES),
    _case("MaxPooling1D", "valid", (2,), {}, F(2, 7, 3)),
    _case("AveragePooling1D", "valid", (2,), {}, F(2, 7, 3)),
    _case("GlobalAveragePooling2D", "basic", (), {}, _IMAGES),
    _case("GlobalMaxPooling2D", "basic", (), {}, _IMAGES),
    _case("GlobalAveragePooling1D", "basic", (), {}, F(2, 7, 3)),
    _case("GlobalMaxPooling1D", "basic", (), {}, F(2, 7, 3)),
    _case("ZeroPadding2D", "asymmetric", (((1, 0), (2, 1)),), {}, _IMAGES),
    _case("UpSampling2D", "nearest", ((2, 3),), {}, F(2, 3, 2, 2)),
    _case("Permute", "swap", ((2, 1),), {}, F(2, 3, 4)),
    _case("BatchNormalization", "inference", (), {}, F(6, 4)),
    _case("BatchNormalization", "training", (), {"momentum": 0.9}, F(6, 4), training=True),
    _case("BatchNormalization", "steps_training", (), {"momentum": 0.9}, F(3, 5, 4), training=True),
    _case("BatchNormalization", "axis1_training", (), {"axis": 1}, F(3, 4, 2), training=True),
    _case("LayerNormalization", "basic", (), {}, F(5, 4)),
    _case("LayerNormalization", "two_axes", (), {"axis": [1, 2]}, F(2, 3, 4)),
    _case("LayerNormalization", "middle_axis", (), {"axis": 1}, F(2, 3, 4)),
    # Recurrent layers: small sizes, a few steps (TF eager runs them step by step).
    _case("SimpleRNN", "last", (3,), {}, F(2, 4, 3)),
    _case("LSTM", "sequences", (3,), {"return_sequences": True}, F(2, 4, 3)),
    _case("GRU", "backwards", (3,), {"go_backwards": True}, F(2, 4, 3)),
    # Wrapped layers are given as configs, so every build makes a fresh inner layer.
    _case("Bidirectional", "lstm", ({"class_name": "LSTM", "config": {"units": 2}},), {}, F(2, 3, 3)),
    _case("TimeDistributed", "dense", ({"class_name": "Dense", "config": {"units": 2}},), {}, F(2, 3, 4)),
    # Activation layers (inputs kept away from their kinks) and the depthwise/separable/1D-transposed convolutions.
    _case("ReLU", "all_options", (), {"max_value": 1.5, "negative_slope": 0.25, "threshold": 0.5},
          F(5, 4, avoid=(0.5, 1.5))),
    _case("LeakyReLU", "default", (), {}, F(5, 4, avoid=(0.0,))),
    _case("PReLU", "shared", (), {"alpha_initializer": "random_uniform", "shared_axes": [1]},
          F(2, 3, 4, avoid=(0.0,))),
    _case("ELU", "alpha", (), {"alpha": 0.5}, F(5, 4, avoid=(0.0,))),
    _case("Softmax", "two_axes", (), {"axis": [1, 2]}, F(2, 3, 4)),
    _case("Conv1DTranspose", "strided", (2, 3), {"strides": 2, "bias_initializer": "random_normal"}, F(2, 5, 3)),
    _case("DepthwiseConv2D", "multiplier", (3,), {"depth_multiplier": 2, "padding": "same",
                                                  "bias_initializer": "random_normal"}, _IMAGES),
    _case("SeparableConv2D", "strided", (4, 3), {"strides": 2, "depth_multiplier": 2,
                                                 "bias_initializer": "random_normal"}, _IMAGES),
    # Preprocessing layers that run in the graph. CategoryEncoding has nothing to differentiate.
    _case("Rescaling", "per_feature", ([0.5, 2.0, -1.0],), {"offset": 0.25}, F(5, 3)),
    _case("Normalization", "given", (), {"mean": [0.5, -1.0, 2.0], "variance": [4.0, 0.25, 1.0]}, F(5, 3)),
    _case("Normalization", "weights", (), {"axis": (1, 2)}, F(4, 3, 2)),
    _case("CategoryEncoding", "count", (5,), {"output_mode": "count"}, I(4, 3, high=5), fd=False),
    # IntegerLookup runs on the host (NumPy), called eagerly here; counts come back in the compute dtype
    # (int ids would not: the kit compares floats).
    _case("IntegerLookup", "count", (), {"vocabulary": [7, 3, 5], "num_oov_indices": 2, "output_mode": "count"},
          I(4, 3, high=9), fd=False),
]

# Layers whose inputs are strings: no kit spec expresses them. They run on the host in NumPy (the
# same code whatever the backend); tests/test_layers_keras.py checks them against Keras.
HOST_STRING_LAYERS = {"StringLookup": "takes strings (host layer, NumPy)",
                      "TextVectorization": "takes strings (host layer, NumPy)"}

LAYERS: list[LayerCase] = [c for c in _LAYER_CASES if c.item in layers.BUILTINS]


def layer_classes_without_case() -> list[str]:
    """Built-in layer classes that no case covers (must be empty)."""
    return sorted(set(layers.BUILTINS) - {c.item for c in LAYERS} - set(HOST_STRING_LAYERS))
