"""TensorFlow backend for unidl. Importing this module does not import tensorflow."""
from unidl import hookimpl


def _make_backend(dtype: str = "float32", device: str | None = None):
    from .backend import TensorFlowBackend  # tensorflow is imported here, on first use
    return TensorFlowBackend(dtype=dtype, device=device)


@hookimpl(trylast=True)
def unidl_register_backends(register):
    register("tensorflow", _make_backend, framework="tensorflow", install="pip install 'unidl[tensorflow]'",
             description="TensorFlow 2 (eager, tf.function steps); float32/float64")
