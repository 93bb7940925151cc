"""unidl-jax: a JAX backend for unidl, registered as a plugin.

This module is what the ``unidl`` entry point names. unidl imports it when it
first looks up a backend, so it must stay cheap and work without JAX
installed: it imports no JAX, only says how to build the backend.
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
