"""A GAN on a 2-D toy distribution, trained with a hand-written loop that runs on every backend.

The real data are points on a noisy ring of radius 1. A generator (4-D noise -> 2-D point)
and a discriminator (2-D point -> real/fake logit) take alternating Adam steps; the
gradients come from ``unidl.value_and_grad``, so the same loop runs on NumPy, PyTorch
and TensorFlow. ``unidl.function`` compiles the step where the backend can (one traced
graph on TensorFlow and JAX). At the end the script compares the generated points'
radius with the real one (1.0).

    python examples/gan_2d.py --backend torch --steps 2000
"""
from __future__ import annotations

import argparse

import numpy as np

import unidl
from unidl import layers, ops

NOISE = 4


def real_points(rng: np.random.Generator, n: int) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = 1.0 + 0.05 * rng.normal(size=n)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1).astype("float32")


def build_models(seed: int = 0) -> tuple[unidl.Model, unidl.Model]:
    generator = unidl.Sequential([
        layers.Dense(32, activation="relu", input_shape=(NOISE,)),
        layers.Dense(32, activation="relu"),
        layers.Dense(2),
    ], name="generator", seed=seed)
    discriminator = unidl.Sequential([
        layers.Dense(32, activation="leaky_relu", input_shape=(2,)),
        layers.Dense(32, activation="leaky_relu"),
        layers.Dense(1),  # a logit
    ], name="discriminator", seed=seed + 1)
    return generator, discriminator


def main(backend: str = "numpy", steps: int = 2000, batch_size: int = 64, verbose: int = 1, seed: int = 0) -> dict:
    generator, discriminator = build_models(seed)
    for model in (generator, discriminator):
        model.compile(optimizer=unidl.optimizers.Adam(learning_rate=2e-3, beta_1=0.5), backend=backend)
    bce = unidl.losses.BinaryCrossentropy(from_logits=True)
    rng = np.random.default_rng(seed)
    ones = np.ones((batch_size, 1), "float32")
    history = {"d_loss": [], "g_loss": []}

    @unidl.function  # random numbers are drawn outside and passed in: the body may run as a trace
    def train_step(real, noise, real_label, fake_label):
        # Discriminator step: real points -> 1, generated points (held fixed) -> 0.
        def d_loss():
            fake = ops.stop_gradient(generator(noise))
            return ops.add(bce(real_label, discriminator(real)), bce(fake_label, discriminator(fake)))
        d_value, d_grads = unidl.value_and_grad(d_loss, discriminator)
        discriminator.optimizer.apply(d_grads, discriminator.trainable_weights)

        # Generator step: make the discriminator call generated points real.
        g_value, g_grads = unidl.value_and_grad(lambda: bce(real_label, discriminator(generator(noise))),
                                                generator)
        generator.optimizer.apply(g_grads, generator.trainable_weights)
        return d_value, g_value

    with unidl.use_backend(generator.backend) as b:
        real_label, fake_label = b.convert(ones), b.convert(0 * ones)
        for step in range(steps):
            real = b.convert(real_points(rng, batch_size))
            noise = b.convert(rng.normal(size=(batch_size, NOISE)).astype("float32"))
            d_value, g_value = train_step(real, noise, real_label, fake_label)
            history["d_loss"].append(float(b.to_numpy(d_value)))
            history["g_loss"].append(float(b.to_numpy(g_value)))
            if verbose and (step + 1) % max(steps // 5, 1) == 0:
                print(f"step {step + 1}/{steps}: discriminator loss {history['d_loss'][-1]:.3f}, "
                      f"generator loss {history['g_loss'][-1]:.3f}")
    samples = generator.predict(rng.normal(size=(2000, NOISE)).astype("float32"))
    radius = np.linalg.norm(samples, axis=1)
    print(f"[{backend}] generated radius {radius.mean():.3f} +- {radius.std():.3f} (real: 1.000 +- 0.050)")
    return {**history, "radius_mean": float(radius.mean()), "radius_std": float(radius.std())}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", help="numpy, torch, tensorflow or a plugin backend")
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    main(args.backend, args.steps)
