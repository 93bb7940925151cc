"""Initializers: shapes, determinism under a seeded generator, sample statistics on large
shapes against the Keras 3 definitions, Keras fan rules, orthogonality, and name lookup.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from unidl import initializers

# ---------------------------------------------------------------- tolerances
# Sample statistics are compared within SIGMAS standard errors. For n samples of spread s
# the sample mean's standard error is s / sqrt(n); the sample std's relative standard
# error is 1 / sqrt(2 n) for a normal distribution and smaller for the lighter-tailed
# uniform and truncated normal, so that bound is used for all.
SIGMAS = 5.0
# The one closed-form check that is not statistical: orthogonality of a QR factor in float64.
ORTHO_ATOL = 1e-12

DENSE = (256, 512)          # fan_in 256, fan_out 512
CONV = (3, 3, 16, 32)       # receptive field 9: fan_in 144, fan_out 288
CONV_FANS = (144.0, 288.0)

# Standard deviation of a standard normal truncated to [-2, 2]:
# var = 1 - 2 * 2 * pdf(2) / (cdf(2) - cdf(-2)), with cdf(2) - cdf(-2) = erf(sqrt(2)).
TRUNC_STD = math.sqrt(1.0 - 4.0 * math.exp(-2.0) / math.sqrt(2.0 * math.pi) / math.erf(math.sqrt(2.0)))


def truncated(std):
    """Expected (std, bound) of a Keras truncated_normal-based draw with target `std`."""
    return std, 2.0 * std / TRUNC_STD


def untruncated_normal_of(stddev):
    """Keras TruncatedNormal(stddev): stddev is that of the normal *before* truncation."""
    return stddev * TRUNC_STD, 2.0 * stddev


# name -> function(shape) -> (kind, expected std, bound or None); kind: "uniform" or "normal"
def _fans(shape):
    if len(shape) == 2:
        return float(shape[0]), float(shape[1])
    receptive = float(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive


def _uniform(limit):
    return "uniform", limit / math.sqrt(3.0), limit


def _normal(std_and_bound):
    return ("normal",) + std_and_bound


EXPECTED = {
    "random_normal": lambda s: ("normal", 0.05, None),
    "random_uniform": lambda s: _uniform(0.05),
    "truncated_normal": lambda s: _normal(untruncated_normal_of(0.05)),
    "variance_scaling": lambda s: _normal(truncated(math.sqrt(1.0 / _fans(s)[0]))),
    "glorot_uniform": lambda s: _uniform(math.sqrt(6.0 / sum(_fans(s)))),
    "xavier_uniform": lambda s: _uniform(math.sqrt(6.0 / sum(_fans(s)))),
    "glorot_normal": lambda s: _normal(truncated(math.sqrt(2.0 / sum(_fans(s))))),
    "xavier_normal": lambda s: _normal(truncated(math.sqrt(2.0 / sum(_fans(s))))),
    "he_uniform": lambda s: _uniform(math.sqrt(6.0 / _fans(s)[0])),
    "he_normal": lambda s: _normal(truncated(math.sqrt(2.0 / _fans(s)[0]))),
    "lecun_uniform": lambda s: _uniform(math.sqrt(3.0 / _fans(s)[0])),
    "lecun_normal": lambda s: _normal(truncated(math.sqrt(1.0 / _fans(s)[0]))),
}
CONSTANT = {"zeros": 0.0, "ones": 1.0, "constant": 0.0}
RANDOM = sorted(EXPECTED) + ["orthogonal"]


def draw(name, shape, seed=0):
    return initializers.get(name)(shape, np.random.default_rng(seed))


def check_statistics(x, kind, std, bound):
    n = x.size
    assert abs(x.mean()) <= SIGMAS * std / math.sqrt(n), f"mean {x.mean()}"
    assert abs(x.std() / std - 1.0) <= SIGMAS / math.sqrt(2.0 * n), f"std {x.std()} vs {std}"
    if bound is not None:
        assert np.abs(x).max() <= bound
        # The bound is sharp: samples come close to it (uniform fills it; a normal cut at 2
        # standard deviations has 4.6% of its mass within the outer 10% of the range).
        assert np.abs(x).max() >= 0.99 * bound


# ------------------------------------------------------------------ tests
def test_every_builtin_is_covered():
    assert set(initializers.BUILTINS) == set(EXPECTED) | set(CONSTANT) | {"orthogonal"}


@pytest.mark.parametrize("shape", [(7,), (4, 5), CONV], ids=str)
@pytest.mark.parametrize("name", sorted(initializers.BUILTINS))
def test_shape_and_dtype(name, shape):
    if name == "orthogonal" and len(shape) < 2:
        with pytest.raises(ValueError, match="rank"):
            draw(name, shape)
        return
    x = draw(name, shape)
    assert isinstance(x, np.ndarray) and x.shape == shape and x.dtype == np.float64
    assert np.all(np.isfinite(x))


@pytest.mark.parametrize("name", sorted(CONSTANT))
def test_constant_initializers(name):
    np.testing.assert_array_equal(draw(name, (3, 4)), np.full((3, 4), CONSTANT[name]))


def test_constant_value():
    np.testing.assert_array_equal(initializers.Constant(3.5)((2, 3), np.random.default_rng(0)), 3.5)


@pytest.mark.parametrize("name", RANDOM)
def test_deterministic_for_a_seed(name):
    a, b = draw(name, (6, 5), seed=3), draw(name, (6, 5), seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, draw(name, (6, 5), seed=4))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_statistics_dense(name):
    check_statistics(draw(name, DENSE, seed=1), *EXPECTED[name](DENSE))


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n not in ("random_normal", "random_uniform",
                                                                          "truncated_normal")))
def test_statistics_conv_kernel_use_receptive_field_fans(name):
    check_statistics(draw(name, CONV, seed=2), *EXPECTED[name](CONV))


def test_glorot_uniform_limit():
    x = draw("glorot_uniform", DENSE, seed=5)
    limit = math.sqrt(6.0 / (256 + 512))
    assert np.abs(x).max() <= limit and np.abs(x).max() > 0.999 * limit


def test_he_normal_is_truncated_with_target_std():
    x = draw("he_normal", DENSE, seed=6)
    std = math.sqrt(2.0 / 256)
    assert abs(x.std() / std - 1.0) <= SIGMAS / math.sqrt(2.0 * x.size)
    # truncated at 2 std of the underlying normal, whose std is std / TRUNC_STD
    assert np.abs(x).max() <= 2.0 * std / TRUNC_STD


def test_compute_fans():
    assert initializers.compute_fans(CONV) == CONV_FANS
    assert initializers.compute_fans(DENSE) == (256, 512)
    assert initializers.compute_fans((7,)) == (7, 7)
    assert initializers.compute_fans(()) == (1, 1)
    assert initializers.compute_fans((5, 4, 3)) == (20, 15)  # Conv1D kernel (k, in, out)


def test_variance_scaling_modes_and_distributions():
    fan_in, fan_out = CONV_FANS
    cases = [
        ({"scale": 2.0, "mode": "fan_out", "distribution": "uniform"}, _uniform(math.sqrt(6.0 / fan_out))),
        ({"scale": 0.5, "mode": "fan_avg", "distribution": "untruncated_normal"},
         ("normal", math.sqrt(0.5 / ((fan_in + fan_out) / 2)), None)),
        ({"scale": 3.0, "mode": "fan_in", "distribution": "truncated_normal"},
         _normal(truncated(math.sqrt(3.0 / fan_in)))),
    ]
    for kwargs, expected in cases:
        x = initializers.VarianceScaling(**kwargs)(CONV, np.random.default_rng(7))
        check_statistics(x, *expected)
    for bad in ({"scale": 0.0}, {"mode": "fan_sum"}, {"distribution": "normal"}):
        with pytest.raises(ValueError):
            initializers.VarianceScaling(**bad)


@pytest.mark.parametrize("shape", [(16, 16), (20, 8), (8, 20), CONV, (2, 3, 40)], ids=str)
def test_orthogonal(shape):
    w = draw("orthogonal", shape, seed=8)
    assert w.shape == shape
    m = w.reshape(-1, shape[-1])
    rows, cols = m.shape
    gram = m.T @ m if rows >= cols else m @ m.T
    np.testing.assert_allclose(gram, np.eye(min(rows, cols)), atol=ORTHO_ATOL)


def test_orthogonal_gain():
    w = initializers.Orthogonal(gain=2.0)((10, 6), np.random.default_rng(9))
    np.testing.assert_allclose(w.T @ w, 4.0 * np.eye(6), atol=ORTHO_ATOL)


def test_unknown_name_lists_known_names_and_suggests():
    with pytest.raises(ValueError) as info:
        initializers.get("glorot_unifrom")
    message = str(info.value)
    assert "did you mean 'glorot_uniform'?" in message
    for name in initializers.BUILTINS:
        assert name in message


def test_get_passes_objects_through():
    init = initializers.HeNormal()
    assert initializers.get(init) is init

    def custom(shape, rng):
        return np.full(shape, 2.0)

    assert initializers.get(custom) is custom
    assert isinstance(initializers.get("Glorot_Uniform"), initializers.VarianceScaling)
