"""The plugin contract of unidl (pluggy project name ``"unidl"``).

A plugin is a module (or object) with functions marked ``@unidl.hookimpl``
whose names match the specs below. Installed packages expose plugins through
the ``unidl`` entry-point group::

    [project.entry-points.unidl]
    jax = "unidl_jax"

The built-in backends (numpy, torch, tensorflow) are plugins of exactly this
kind, declared in unidl's own pyproject.

Every hook here is a *registration* hook in the ``register(...)`` style: the
plugin calls ``register`` once per thing it provides and never touches unidl's
state directly. Hooks are called once, on the first lookup that needs them
(``unidl.get_backend``, ``unidl.list_backends``, name lookups of layers...).
Specs may gain keyword arguments in later versions; they never lose or rename one.
"""
from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("unidl")
hookimpl = pluggy.HookimplMarker("unidl")

# ---------------------------------------------------------------- backends


@hookspec
def unidl_register_backends(register):
    """Register one or more backends.

    :param register: call it once per backend::

        register(name: str, factory: Callable[..., Backend], *,
                 framework: str | None = None,
                 install: str | None = None,
                 description: str = "")

      - ``name``: what users pass as ``backend=``; must be unique.
      - ``factory(dtype="float32", device=None)``: returns a
        :class:`unidl.backend.Backend`. It is called only when a model is
        compiled on this backend, so it is the place to import the framework.
      - ``framework``: importable module name of the framework (e.g. "torch");
        unidl checks that it is installed without importing it.
      - ``install``: the command that installs the framework, shown when it is missing.
      - ``description``: one line for ``unidl backends``.

    Called once per process, on the first backend lookup. Registering a name
    that another plugin already registered is an error naming both plugins.
    """


# --------------------------------------------------------- building blocks


@hookspec
def unidl_register_layers(register):
    """Register layer classes usable by name (e.g. when loading a saved model).

    :param register: ``register(name: str, cls: type[unidl.layers.Layer])``.
    """


@hookspec
def unidl_register_losses(register):
    """Register losses usable by name in ``compile(loss=...)``.

    :param register: ``register(name: str, factory: Callable[..., unidl.losses.Loss])``.
    """


@hookspec
def unidl_register_optimizers(register):
    """Register optimizers usable by name in ``compile(optimizer=...)``.

    :param register: ``register(name: str, factory: Callable[..., unidl.optimizers.Optimizer])``.
    """


@hookspec
def unidl_register_metrics(register):
    """Register metrics usable by name in ``compile(metrics=[...])``.

    :param register: ``register(name: str, fn: Callable[[Tensor, Tensor], Tensor])``; ``fn(y_true,
      y_pred)`` returns one value per sample, written with ``unidl.ops``. unidl averages it over
      the samples of an epoch (weighted by batch size), as for the built-in metrics.
    """


@hookspec
def unidl_register_activations(register):
    """Register activation functions usable by name (``activation="..."``).

    :param register: ``register(name: str, fn: Callable[[Tensor], Tensor])``;
      ``fn`` must be written with ``unidl.ops``.
    """


@hookspec
def unidl_register_initializers(register):
    """Register weight initializers usable by name (``kernel_initializer="..."``).

    :param register: ``register(name: str, factory: Callable[..., unidl.initializers.Initializer])``;
      an initializer is called as ``init(shape, rng)`` with unidl's seeded NumPy generator.
    """


@hookspec
def unidl_register_regularizers(register):
    """Register weight regularizers usable by name (``kernel_regularizer="..."``).

    :param register: ``register(name: str, factory: Callable[..., unidl.regularizers.Regularizer])``.
    """
