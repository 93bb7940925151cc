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
                 description: str = "",
                 distribution: str | None = None)

      - ``name``: what users pass as ``backend=``; no ":" (``"plugin:name"`` is the
        qualified form unidl derives).
      - ``factory(dtype="float32", device=None, **options)``: returns a
        :class:`unidl.backend.Backend`. It is called only when a model is
        compiled on this backend, so it is the place to import the framework.
        ``options`` are the backend's own settings from ``compile(backend_options=...)``.
      - ``framework``: importable module of the framework, dotted allowed
        (``"torch"``, ``"mlx.core"``); unidl checks that its top-level package is
        installed without importing it.
      - ``install``: the command that installs the framework, shown when it is missing.
      - ``description``: one line for ``unidl backends``.
      - ``distribution``: the distribution whose version ``unidl backends`` shows
        for the framework (``"mlx"``), when it differs from the module's name.

    Called on the first backend lookup that needs this plugin. A name another
    plugin already registered is never taken over silently: unidl's built-in
    plugins keep their names, the later registration is reported (a warning and
    ``unidl backends``) and stays reachable as ``"plugin:name"``.
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


# ------------------------------------------------------- backend services
# A backend's framework-specific services. Each is keyed by a name and found
# through the registry when a user asks for it, so a plugin can add one for a
# backend it does not own (an export format for torch, an engine for JAX).


@hookspec
def unidl_register_exporters(register):
    """Register export formats for ``model.export(path, format=...)``.

    :param register: ``register(format: str, write: Callable[[Model, str], None], *,
      backend: str, requires: Callable[[], None] | None = None, aliases: tuple[str, ...] = ())``

      - ``format``: the name users pass (``"onnx"``).
      - ``write(model, path, **options)``: writes ``model`` (compiled on ``backend``; unidl
        compiles a temporary copy there when the user's model is elsewhere) to ``path``,
        atomically (``unidl.files.atomic_write`` / ``replace_directory``).
      - ``backend``: the backend the format is written from.
      - ``requires()``: raises ImportError with the install command when a package the
        format needs besides the backend's framework is missing; called before any copy.
      - ``aliases``: other names for the same format (Keras's ``"tf_saved_model"``).
    """


@hookspec
def unidl_register_distributed_engines(register):
    """Register the data-parallel engine of a backend (``unidl.distributed.DataParallel``).

    :param register: ``register(backend: str, make_engine: Callable[[DataParallel], Engine])``.
      ``make_engine(strategy)`` sets the framework's collectives up (reading the strategy's
      options: ``process_group_backend``, ``communication``) and returns an object with
      ``rank: int``, ``world_size: int``, ``reduce(grads, share) -> list`` (sum over processes
      of ``share * grad``, a backend tensor per gradient) and ``shutdown()``.
    """


@hookspec
def unidl_register_bench_baselines(register):
    """Register a hand-written native training loop that ``unidl bench`` times unidl against.

    :param register: ``register(name: str, run: Callable[..., list[float]], *,
      models: tuple[str, ...], policies: tuple[str | None, ...] = (None,), framework: str,
      devices: tuple[str, ...] | None = None, device_peak_mb: Callable[[str], float | None] | None = None)``

      - ``name``: the case is shown as ``native/<name>`` (usually the framework's name).
      - ``run(model, x, y, batch_size, repeats, device, policy)``: trains the bench model
        ``model`` (one of ``unidl.bench.MODELS``, described in ``unidl.bench.DESCRIPTIONS``)
        for ``repeats + 1`` epochs over ``x, y`` with Adam, as a user of the framework writes
        it, and returns the seconds of each epoch after the first (the warm-up). ``device`` is
        unidl's device name (None: the CPU; "cuda", "cuda:1"...); a loop that cannot run there
        raises ``unidl.bench.DeviceUnavailable`` with a one-line reason, and the case is skipped.
      - ``models``: the bench models it implements; ``policies``: the dtype policies
        (None is float32); ``framework``: the module imported before memory is measured.
      - ``devices``: the device types it runs on at all (the part of the name before ":", e.g.
        ``("cuda",)``), so that ``unidl bench`` skips it elsewhere without starting it; None: any.
      - ``device_peak_mb(device)``: the accelerator's peak allocation in MiB after the run.
    """
