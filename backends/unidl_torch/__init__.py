"""PyTorch backend for unidl. Importing this module does not import torch."""
from unidl import hookimpl


def _make_backend(dtype: str = "float32", device: str | None = None):
    from .backend import TorchBackend  # torch is imported here, on first use
    return TorchBackend(dtype=dtype, device=device)


@hookimpl(trylast=True)
def unidl_register_backends(register):
    register("torch", _make_backend, framework="torch", install="pip install 'unidl[torch]'",
             description="PyTorch (CPU, CUDA); float32/float64")
