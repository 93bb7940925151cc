"""The hand-written JAX training loop ``unidl bench`` times ``unidl/jax`` against (``native/jax``).

What a JAX user writes with JAX alone: parameters in a pytree, a loss function, ``jax.value_and_grad``,
Adam by hand (Keras's rule and epsilon, as the other native loops; no optax), the whole step under
``jax.jit``, and the loss read back (``float(loss)``) every step, as the torch loop's ``loss.item()``.
Weights start as the TensorFlow loop's (glorot uniform from a seeded NumPy generator, zero biases).

Matmuls and convolutions ask for ``Precision.HIGHEST``, as the plugin's backend does: full float32
on every device (JAX's default rounds float32 operands to TF32/bfloat16 on GPUs, which would time
another computation than unidl's). On a GPU the step donates its parameter and optimizer buffers.

This module imports JAX; the plugin imports it only when the baseline runs.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from unidl.bench import CLASSES, HIDDEN, WIDE, WIDE_DEPTH, DeviceUnavailable

MODELS = ("mlp", "wide", "cnn")
HIGHEST = lax.Precision.HIGHEST


def jax_device(device: str | None):
    """unidl's device name (cpu, cuda[:N], gpu[:N]) as a JAX device; DeviceUnavailable when JAX has none."""
    kind, _, index = (device or "cpu").lower().partition(":")
    kind = {"cuda": "gpu"}.get(kind, kind)  # JAX calls CUDA devices "gpu"
    try:
        found = jax.devices(kind)
    except RuntimeError:  # no backend of that kind in this JAX (a CPU-only jaxlib asked for "gpu")
        found = []
    if int(index or 0) >= len(found):
        raise DeviceUnavailable(f"native/jax: JAX {jax.__version__} has no {kind} device {index or 0} "
                                f"(it has {', '.join(sorted({str(d) for d in jax.devices()}))})")
    return found[int(index or 0)]


def peak_mb(device: str) -> float | None:
    """The device's peak allocation (MiB), where its JAX backend keeps memory statistics (GPUs)."""
    stats = jax_device(device).memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


# ------------------------------------------------------------------ the models

def init_params(model_name: str, seed: int = 0) -> dict:
    """Glorot-uniform kernels and zero biases (float32), as the TensorFlow loop draws them."""
    rng = np.random.default_rng(seed)

    def glorot(shape):
        fan_in, fan_out = np.prod(shape[:-1]), shape[-1] * (np.prod(shape[:-2]) if len(shape) > 2 else 1)
        limit = np.sqrt(6 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, shape).astype(np.float32)

    if model_name == "cnn":
        convs = [(glorot((3, 3, 1, 32)), np.zeros(32, np.float32)), (glorot((3, 3, 32, 64)), np.zeros(64, np.float32))]
        sizes = [1600, 128, 10]
    else:
        convs = []
        sizes = [784, HIDDEN, HIDDEN, 10] if model_name == "mlp" else [784] + [WIDE] * WIDE_DEPTH + [10]
    dense = [(glorot((a, b)), np.zeros(b, np.float32)) for a, b in zip(sizes[:-1], sizes[1:])]
    return {"convs": convs, "dense": dense}


def forward(params: dict, x):
    """Logits: [conv 3x3 valid, relu, max pool 2] per conv (NHWC, HWIO kernels), then dense layers, relu between."""
    h = x
    for w, b in params["convs"]:
        h = lax.conv_general_dilated(h, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     precision=HIGHEST)
        h = jax.nn.relu(h + b)
        h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    if params["convs"]:
        h = h.reshape(h.shape[0], -1)
    dense = params["dense"]
    for i, (w, b) in enumerate(dense):
        h = jnp.matmul(h, w, precision=HIGHEST) + b
        if i < len(dense) - 1:
            h = jax.nn.relu(h)
    return h


def loss_fn(params: dict, x, y):
    """Mean sparse softmax cross-entropy of the logits."""
    log_probabilities = jax.nn.log_softmax(forward(params, x))
    return -jnp.mean(jnp.take_along_axis(log_probabilities, y[:, None], axis=1))


# ------------------------------------------------------------ Adam, by hand

def adam_init(params):
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    return {"m": zeros, "v": jax.tree_util.tree_map(jnp.zeros_like, params), "t": jnp.zeros((), jnp.float32)}


def adam_update(params, grads, state, lr=1e-3, b1=0.9, b2=0.999, eps=1e-7):
    """Keras's Adam: m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); w -= lr_t m / (sqrt(v) + eps),
    lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)."""
    t = state["t"] + 1.0
    lr_t = lr * jnp.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
    tree_map = jax.tree_util.tree_map
    m = tree_map(lambda m, g: m + (g - m) * (1.0 - b1), state["m"], grads)
    v = tree_map(lambda v, g: v + (g * g - v) * (1.0 - b2), state["v"], grads)
    params = tree_map(lambda w, m, v: w - lr_t * m / (jnp.sqrt(v) + eps), params, m, v)
    return params, {"m": m, "v": v, "t": t}


def _train_step(params, state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    params, state = adam_update(params, grads, state)
    return params, state, loss


# ------------------------------------------------------------------ the loop

def run_native_jax(model_name: str, x, y, batch_size: int, repeats: int, device: str | None,
                   policy: str | None = None) -> list[float]:
    if model_name not in MODELS:
        raise ValueError(f"native/jax implements {MODELS}, not {model_name!r}")
    if policy is not None:
        raise ValueError(f"native/jax is written for float32, not {policy}")
    if CLASSES.get(model_name, 10) != 10:
        raise ValueError(f"native/jax: {model_name} has {CLASSES[model_name]} classes, its models 10")
    dev = jax_device(device)
    donate = () if dev.platform == "cpu" else (0, 1)  # the CPU client cannot reuse donated buffers
    step = jax.jit(_train_step, donate_argnums=donate)
    params = jax.device_put(jax.tree_util.tree_map(jnp.asarray, init_params(model_name)), dev)
    state = jax.device_put(adam_init(params), dev)
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int32)  # JAX's default integers (64-bit only when jax_enable_x64 is on)
    times = []
    for _ in range(repeats + 1):  # the first epoch compiles and warms up
        start = time.perf_counter()
        running = 0.0
        for i in range(0, len(x), batch_size):
            xb, yb = jax.device_put((x[i:i + batch_size], y[i:i + batch_size]), dev)
            params, state, loss = step(params, state, xb, yb)
            running += float(loss)  # what a hand-written loop logs (and a sync, as loss.item())
        jax.block_until_ready(params)
        times.append(time.perf_counter() - start)
    return times[1:]
