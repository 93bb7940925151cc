"""unidl-jax: a JAX backend for unidl, registered as a plugin, with its services.

This module is what the ``unidl`` entry point names. unidl imports it when it
first looks up a backend, so it must stay cheap and work without JAX
installed: it imports no JAX, only says how to build the backend and where
its services are. Besides the backend it registers, through the same hooks
as the built-in backends (``unidl.hookspecs``):

* a bench baseline, ``native/jax``: a hand-written ``jax.jit`` training step
  (``unidl_jax/bench.py``) that ``unidl bench`` times ``unidl/jax`` against;
* an export format, ``"jax_export"``: the model's inference function as a
  serialized ``jax.export`` artifact (StableHLO, ``unidl_jax/export.py``).
"""
from unidl import hookimpl

__version__ = "0.1.0"


def _make_backend(dtype: str = "float32", device: str | None = None):
    from .backend import JaxBackend  # jax is imported here, on the first compile
    return JaxBackend(dtype=dtype, device=device)


@hookimpl
def unidl_register_backends(register):
    register("jax", _make_backend, framework="jax", install="pip install jax",
             description="JAX (XLA), eager; float32/float64 (turns on jax_enable_x64)")


# ------------------------------------------------------------- the services
# Each imports its module (and JAX) only when it is used.

def _native_loop(model, x, y, batch_size, repeats, device, policy):
    from .bench import run_native_jax
    return run_native_jax(model, x, y, batch_size, repeats, device, policy)


def _peak_mb(device):
    from .bench import peak_mb
    return peak_mb(device)


@hookimpl
def unidl_register_bench_baselines(register):
    register("jax", _native_loop, models=("mlp", "wide", "cnn"), framework="jax", device_peak_mb=_peak_mb)


def _write_jax_export(model, path, **options):
    from .export import write_jax_export
    write_jax_export(model, path, **options)


@hookimpl
def unidl_register_exporters(register):
    register("jax_export", _write_jax_export, backend="jax")
