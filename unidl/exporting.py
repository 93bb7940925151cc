"""``model.export(path, format=...)``: the model as a file that runs without unidl (inference only).

Export formats are backend services: a plugin registers each one with the
``unidl_register_exporters`` hook, naming the backend it is written from. The
built-in plugins register

* ``"onnx"`` (torch): one ``.onnx`` file through ``torch.onnx.export`` (needs
  ``pip install 'unidl[onnx]'``), dynamic batch axis;
* ``"saved_model"`` (tensorflow; alias ``"tf_saved_model"``, Keras 3's name): a
  TensorFlow SavedModel directory.

A model compiled on the format's backend exports itself (its weights become the
native module's, as with ``to_native()``); any other model, compiled elsewhere or
not at all, exports through a temporary copy compiled there, in the same dtype.
The model itself is left as it was. Writers write atomically (``unidl.files``).
This module imports no framework; :func:`example_inputs` and :func:`io_names` are
the helpers writers share.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from .registry import REGISTRY, ServiceInfo
from .naming import closest


def formats() -> dict[str, ServiceInfo]:
    """Every registered export format by name, aliases included."""
    found = {}
    for name, info in REGISTRY.services("exporters").items():
        found[name] = info
        for alias in info.options.get("aliases", ()):
            found.setdefault(alias, info)
    return found


def export(model, path: str | os.PathLike, format: str = "onnx", **options: Any) -> None:
    """Write ``model`` to ``path`` in ``format``; see the module docstring."""
    known = formats()
    if format not in known:
        raise ValueError(f"unknown export format {format!r}{closest(format, known)}; registered formats: "
                         f"{sorted(known)} (plugins add more with the unidl_register_exporters hook)")
    info = known[format]
    model._require_built("export")
    requires = info.options.get("requires")
    if requires is not None:
        requires()  # before a copy is made: say what to install first
    info.provider(_compiled_on(model, info.options["backend"]), path, **options)


def _compiled_on(model, backend_name: str):
    """``model`` when it is compiled on ``backend_name``, else a copy compiled there (same dtype)."""
    if model.backend is not None and model.backend.name == backend_name:
        return model
    twin = model.clone()
    # sgd: the copy only runs forward, so give it the optimizer with the fewest slots.
    twin.compile(optimizer="sgd", backend=backend_name,
                 dtype=model.backend.dtype if model.backend is not None else "float32")
    return twin


def example_inputs(model, batch: int = 2) -> list:
    """Backend zeros of ``batch`` samples for each input (torch.export specializes sizes 0 and 1)."""
    shapes = model.input_shape if isinstance(model.input_shape, list) else [model.input_shape]
    for shape in shapes:
        if any(d is None for d in shape[1:]):
            raise ValueError(f"model {model.name!r} cannot be exported: its input shape {tuple(shape)} has an "
                             "unknown axis besides the batch axis; give every other axis a size "
                             "(layers.Input(shape) or input_shape=...)")
    return [model.backend.convert(np.zeros((batch, *shape[1:]), np.float32)) for shape in shapes]


def io_names(model) -> tuple[list[str], list[str] | None]:
    """Names for the exported inputs and outputs: a functional model's Input and output layer names
    when they are distinct, else "input"/"input_0"... and "output"/"output_0"... (None: unknown count)."""
    inputs = model.input_shape if isinstance(model.input_shape, list) else [model.input_shape]
    functional = model.output_structure is not None
    input_names = _names(model.input_names, len(inputs), "input")
    out = model.output_shape
    count = len(out) if isinstance(out, list) else 1 if isinstance(out, tuple) else None
    output_names = None if count is None else _names(model.output_names if functional else None, count, "output")
    return input_names, output_names


def _names(structure_names: list[str] | None, count: int, base: str) -> list[str]:
    if structure_names is not None and len(set(structure_names)) == count:
        return structure_names
    return [base] if count == 1 else [f"{base}_{i}" for i in range(count)]
