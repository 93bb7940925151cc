"""Learning-rate schedules: Keras 3's formulas, computed by hand and (when installed) by Keras itself."""
from __future__ import annotations

import math

import numpy as np
import pytest

import unidl
from unidl import layers, schedules
from unidl.optimizers import SGD

# Schedules compute in float64 on the host; the hand-written expectations below
# use the same formulas in float64, so only rounding of a few operations separates them.
HAND_RTOL = 1e-14


# ------------------------------------------------------------ hand-computed values

@pytest.mark.parametrize("step, expected", [
    (0, 0.1), (5, 0.1 * 0.5 ** 0.5), (10, 0.05), (20, 0.025), (25, 0.1 * 0.5 ** 2.5)])
def test_exponential_decay(step, expected):
    schedule = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert schedule(step) == pytest.approx(expected, rel=HAND_RTOL)


@pytest.mark.parametrize("step, expected", [(0, 0.1), (9, 0.1), (10, 0.05), (19, 0.05), (20, 0.025), (25, 0.025)])
def test_exponential_decay_staircase_floors_the_exponent(step, expected):
    schedule = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    assert schedule(step) == pytest.approx(expected, rel=HAND_RTOL)


@pytest.mark.parametrize("step, expected", [
    (0, 1.0), (10, 1.0),        # step <= boundaries[0]
    (11, 0.5), (20, 0.5),       # boundaries[0] < step <= boundaries[1]: intervals are closed on the right
    (21, 0.1), (10_000, 0.1)])
def test_piecewise_constant_decay(step, expected):
    schedule = schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])
    assert schedule(step) == expected


def _cosine(step, decay_steps, alpha=0.0):
    return (1 - alpha) * 0.5 * (1 + math.cos(math.pi * min(step, decay_steps) / decay_steps)) + alpha


@pytest.mark.parametrize("step", [0, 1, 25, 50, 99, 100, 150])
@pytest.mark.parametrize("alpha", [0.0, 0.1])
def test_cosine_decay(step, alpha):
    schedule = schedules.CosineDecay(2.0, decay_steps=100, alpha=alpha)
    assert schedule(step) == pytest.approx(2.0 * _cosine(step, 100, alpha), rel=HAND_RTOL, abs=1e-15)


def test_cosine_decay_landmarks():
    schedule = schedules.CosineDecay(1.0, decay_steps=100, alpha=0.1)
    assert schedule(0) == 1.0
    assert schedule(50) == pytest.approx(0.55, rel=HAND_RTOL)   # cos = 0: (1 - 0.1) * 0.5 + 0.1
    assert schedule(100) == pytest.approx(0.1, rel=HAND_RTOL)   # alpha * initial at the end
    assert schedule(1000) == pytest.approx(0.1, rel=HAND_RTOL)  # and held there


@pytest.mark.parametrize("step, expected", [
    (0, 0.0), (5, 0.5), (10, 1.0),            # linear warmup from 0 to the target
    (60, 0.5), (110, 0.0), (500, 0.0)])       # then cosine from the target over decay_steps
def test_cosine_decay_with_warmup(step, expected):
    schedule = schedules.CosineDecay(0.0, decay_steps=100, warmup_target=1.0, warmup_steps=10)
    assert schedule(step) == pytest.approx(expected, rel=HAND_RTOL, abs=1e-15)


@pytest.mark.parametrize("schedule", [
    schedules.ExponentialDecay(0.1, 7, 0.9, staircase=True),
    schedules.PiecewiseConstantDecay([3, 8], [0.3, 0.2, 0.1]),
    schedules.CosineDecay(0.05, 40, alpha=0.2, warmup_target=0.5, warmup_steps=5),
], ids=lambda s: type(s).__name__)
def test_config_round_trip(schedule):
    config = schedule.get_config()
    twin = type(schedule).from_config(config)
    assert twin.get_config() == config
    assert [twin(s) for s in range(60)] == [schedule(s) for s in range(60)]


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="one more entry"):
        schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5])
    with pytest.raises(ValueError, match="increasing"):
        schedules.PiecewiseConstantDecay([20, 10], [1.0, 0.5, 0.1])
    with pytest.raises(ValueError, match="decay_steps"):
        schedules.ExponentialDecay(0.1, decay_steps=0, decay_rate=0.5)
    with pytest.raises(ValueError, match="decay_steps"):
        schedules.CosineDecay(0.1, decay_steps=-1)


# ------------------------------------------------------- inside an optimizer

def test_optimizer_reads_the_schedule_at_its_step_counter():
    optimizer = SGD(learning_rate=schedules.ExponentialDecay(0.1, 10, 0.5))
    seen = []
    for step in range(3):
        optimizer.iterations = step
        seen.append(optimizer.current_learning_rate)
    assert seen == [schedules.ExponentialDecay(0.1, 10, 0.5)(s) for s in range(3)]
    assert all(type(v) is float for v in seen)  # compiled steps take host floats as inputs


@pytest.mark.parametrize("backend", ["numpy", "tensorflow"])
def test_schedule_drives_the_weight_updates(backend):
    """lr 1.0 for the first step, 0.0 after (PiecewiseConstant at boundary 0): the
    weights move once and then stay, also inside TF's compiled train step."""
    if backend != "numpy":
        pytest.importorskip(backend)
    model = unidl.Sequential([layers.Dense(1, use_bias=False, input_shape=(2,))], seed=0)
    lr = schedules.PiecewiseConstantDecay([0], [0.1, 0.0])
    model.compile(optimizer=SGD(learning_rate=lr), loss="mse", backend=backend, dtype="float64")
    x = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    y = np.array([[1.0], [0.0], [2.0]])
    kernels = [model.get_weights()[0]]
    record = unidl.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: kernels.append(model.get_weights()[0]))
    model.fit(x, y, batch_size=3, epochs=3, shuffle=False, verbose=0, callbacks=[record])
    w0 = kernels[0]
    grad = 2 / 3 * x.T @ (x @ w0 - y)  # mse over 3 samples of 1 output
    np.testing.assert_allclose(kernels[1], w0 - 0.1 * grad, rtol=1e-12)
    np.testing.assert_array_equal(kernels[2], kernels[1])
    np.testing.assert_array_equal(kernels[3], kernels[1])


# ------------------------------------------------------------ Keras as oracle (the keras fixture: conftest.py)

# Keras evaluates with tensor ops in float64 (pow as exp(log), cos of a float64
# product): a few ulps from Python's math module, never more.
KERAS_RTOL = 1e-12

ORACLE_CASES = {
    "exponential": ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=7, decay_rate=0.9)),
    "exponential_staircase": ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=7, decay_rate=0.9,
                                                       staircase=True)),
    "piecewise": ("PiecewiseConstantDecay", dict(boundaries=[5, 12], values=[0.3, 0.2, 0.1])),
    "cosine": ("CosineDecay", dict(initial_learning_rate=0.5, decay_steps=30, alpha=0.05)),
    "cosine_warmup": ("CosineDecay", dict(initial_learning_rate=0.0, decay_steps=30, alpha=0.1,
                                          warmup_target=0.4, warmup_steps=6)),
}


@pytest.mark.parametrize("case", sorted(ORACLE_CASES))
def test_matches_keras(keras, case):
    name, kwargs = ORACLE_CASES[case]
    ours = getattr(schedules, name)(**kwargs)
    # Python floats would become float32 tensors inside Keras (TF's default): hand it float64 scalars.
    as64 = {k: (np.float64(v) if isinstance(v, float) else [np.float64(x) for x in v] if k == "values" else v)
            for k, v in kwargs.items()}
    theirs = getattr(keras.optimizers.schedules, name)(**as64)
    steps = range(0, 45)
    expected = [float(keras.ops.convert_to_numpy(theirs(keras.ops.convert_to_tensor(s, "float64"))))
                for s in steps]
    np.testing.assert_allclose([ours(s) for s in steps], expected, rtol=KERAS_RTOL, atol=1e-15)
