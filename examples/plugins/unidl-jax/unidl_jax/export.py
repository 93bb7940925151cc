"""The "jax_export" format: a model's inference function as a serialized ``jax.export`` artifact.

``jax.export`` (JAX's own deployment format) lowers a jitted function to StableHLO and
serializes it with its calling convention; any JAX program loads it back without unidl::

    from jax import export
    with open("model.jax_export", "rb") as f:
        serving = export.deserialize(bytearray(f.read()))
    probabilities = serving.call(x)          # x: float32 (batch, *input shape)

The function is ``model.call(x, training=False)`` on the jax backend with the current
weights folded in as constants; the batch axis is symbolic (any batch size) unless
``batch_size=N`` fixes it (for a layer that needs a concrete batch size while tracing).
Inputs are floats in the compiled dtype, one array per model input (a list for several),
as the "onnx" and "saved_model" formats take them. ``platforms=("cpu", "cuda")`` lowers
for several platforms at once (default: the one the model runs on).
"""
from __future__ import annotations

import jax
from jax import export

from unidl.exporting import example_inputs
from unidl.files import atomic_write
from unidl.ops import use_backend


def write_jax_export(model, path, batch_size: int | None = None, platforms=None) -> None:
    backend = model.backend
    shapes = model.input_shape if isinstance(model.input_shape, list) else [model.input_shape]
    example_inputs(model)  # the same check as the other formats: every axis but the batch has a size
    batch = export.symbolic_shape("batch")[0] if batch_size is None else int(batch_size)
    dtype = backend._dtypes[backend.dtype]
    specs = [jax.ShapeDtypeStruct((batch, *shape[1:]), dtype) for shape in shapes]

    def serve(*inputs):
        with use_backend(backend):
            return model.call(inputs[0] if len(inputs) == 1 else list(inputs), training=False)

    kwargs = {} if platforms is None else {"platforms": tuple(platforms)}
    exported = export.export(jax.jit(serve), **kwargs)(*specs)
    with atomic_write(path) as f:
        f.write(exported.serialize())
