"""unidl's reference backend: NumPy arrays plus a small reverse-mode autodiff tape.

Registered through the ``unidl`` entry-point group, like any third-party plugin.
"""
from unidl import hookimpl


def _make_backend(dtype: str = "float32", device: str | None = None):
    from .backend import NumpyBackend
    return NumpyBackend(dtype=dtype, device=device)


@hookimpl(trylast=True)
def unidl_register_backends(register):
    register("numpy", _make_backend, framework="numpy", install="pip install numpy",
             description="reference backend: NumPy + unidl's own autodiff, float32/float64")
