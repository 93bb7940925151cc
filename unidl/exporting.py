"""``model.export(path, format=...)``: the model as a file that runs without unidl (inference only).

Formats
    ``"onnx"`` (default)
        One ``.onnx`` file, written by ``torch.onnx.export`` (the torch.export-based
        exporter, which needs ``pip install 'unidl[onnx]'``: onnx and onnxscript; the
        extra also brings onnxruntime to run the file). The batch axis is dynamic:
        the graph takes any batch size. Every other axis is fixed at the model's
        input shape (a recurrent layer is unrolled over its time steps). Inputs are
        floats in the compiled dtype, named after the functional model's
        ``layers.Input`` names ("input", or "input_0", "input_1"... otherwise), outputs
        after its output layers ("output"... otherwise). Options go to
        ``torch.onnx.export``, e.g. ``opset_version=18``.
    ``"saved_model"`` (alias ``"tf_saved_model"``, Keras 3's name)
        A TensorFlow SavedModel directory, ``tf.saved_model.save`` of the
        ``tf.Module`` that ``to_native()`` gives; options go to ``tf.saved_model.save``.

A format is written from the backend it belongs to (torch for ONNX, TensorFlow for
SavedModel): a model compiled there exports itself (its weights become the native
module's, as with ``to_native()``), and any other model, compiled elsewhere or not
at all, exports through a temporary copy compiled there, in the same dtype. The
model itself is left as it was.

Writes are atomic, as in :mod:`unidl.saving`: a file goes through
``saving.atomic_write``; a SavedModel directory is written next to the target and
renamed into place, so a failed export leaves ``path`` untouched.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Callable

import numpy as np

from .saving import _fsync_directory, _umask, atomic_write

_ALIASES = {"tf_saved_model": "saved_model"}
_ONNX_INSTALL = "pip install 'unidl[onnx]'"
# torch.onnx warns about its own internals while exporting: nothing a user can act on.
_EXPORTER_NOISE = [(FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
                   (UserWarning, r"# The axis name: batch will not be used")]  # all inputs share "batch"


def export(model, path: str | os.PathLike, format: str = "onnx", **options: Any) -> None:
    """Write ``model`` to ``path`` in ``format`` ("onnx" or "saved_model"); see the module docstring."""
    name = _ALIASES.get(format, format)
    if name not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {sorted(FORMATS)} "
                         f"(or {sorted(_ALIASES)}, Keras's names)")
    backend_name, check_packages, write = FORMATS[name]
    model._require_built("export")
    check_packages()  # before a copy is made: say what to install first
    write(_compiled_on(model, backend_name), path, **options)


def _compiled_on(model, backend_name: str):
    """``model`` when it is compiled on ``backend_name``, else a copy compiled there (same dtype)."""
    if model.backend is not None and model.backend.name == backend_name:
        return model
    twin = model.clone()
    # sgd: the copy only runs forward, so give it the optimizer with the fewest slots.
    twin.compile(optimizer="sgd", backend=backend_name,
                 dtype=model.backend.dtype if model.backend is not None else "float32")
    return twin


def _example_inputs(model) -> list:
    """Zeros of batch 2 for each input (torch.export specializes sizes 0 and 1, so not 1)."""
    shapes = model.input_shape if isinstance(model.input_shape, list) else [model.input_shape]
    for shape in shapes:
        if any(d is None for d in shape[1:]):
            raise ValueError(f"model {model.name!r} cannot be exported: its input shape {tuple(shape)} has an "
                             "unknown axis besides the batch axis; give every other axis a size "
                             "(layers.Input(shape) or input_shape=...)")
    return [model.backend.convert(np.zeros((2, *shape[1:]), np.float32)) for shape in shapes]


def _names(structure_names: list[str] | None, count: int, base: str) -> list[str]:
    if structure_names is not None and len(set(structure_names)) == count:
        return structure_names
    return [base] if count == 1 else [f"{base}_{i}" for i in range(count)]


def _onnx_packages() -> None:
    try:
        import onnx  # noqa: F401  (torch.onnx imports these lazily, deep inside the export)
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"exporting to ONNX needs the onnx and onnxscript packages ({exc.name} is missing); "
                          f"install them with: {_ONNX_INSTALL}") from exc


def _write_onnx(model, path, **options) -> None:
    import torch

    examples = _example_inputs(model)
    graph = model._graph
    inputs = _names(None if graph is None else [t.node.layer.name for t in graph.inputs], len(examples), "input")
    out = model.output_shape
    count = len(out) if isinstance(out, list) else 1 if isinstance(out, tuple) else None
    outputs = None if count is None else _names(None if graph is None else model.output_names, count, "output")
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():
        for category, message in _EXPORTER_NOISE:
            warnings.filterwarnings("ignore", message=message, category=category)
        program = torch.onnx.export(model.to_native(), tuple(examples), None, dynamo=True, verbose=False,
                                    input_names=inputs, output_names=outputs,
                                    dynamic_shapes=(tuple({0: batch} for _ in examples),), **options)
    proto = program.model_proto
    if proto.ByteSize() >= 2**31:
        raise ValueError(f"model {model.name!r} is over 2 GB, more than one ONNX file holds; export it with "
                         "torch.onnx.export(model.to_native(), ..., external_data=True) instead")
    with atomic_write(path) as f:
        f.write(proto.SerializeToString())


def _write_saved_model(model, path, **options) -> None:
    import tensorflow as tf
    module = model.to_native()
    _replace_directory(path, lambda tmp: tf.saved_model.save(module, tmp, **options))


def _replace_directory(path, write: Callable[[str], None]) -> None:
    """Run ``write(tmp)`` on a new directory beside ``path``, then rename it to ``path``.

    An existing ``path`` is moved aside first and removed last (it is restored if
    the rename fails), so ``path`` never holds a mix of old and new files.
    """
    import shutil
    import tempfile

    path = os.path.abspath(os.fspath(path))
    parent, base = os.path.split(path)
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"cannot export to {path!r}: directory {parent!r} does not exist")
    if os.path.exists(path) and not os.path.isdir(path):
        raise FileExistsError(f"cannot export to {path!r}: it is a file, and this format writes a directory")
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{base}.", suffix=".tmp")
    old = None
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700; give it a plain mkdir's mode
        write(tmp)
        if os.path.exists(path):
            old = tempfile.mkdtemp(dir=parent, prefix=f".{base}.", suffix=".old")
            os.replace(path, old)  # onto an empty directory: allowed
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old, path)
                old = None
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    _fsync_directory(parent)


# format -> (backend it is written from, check for the packages it needs besides that backend, writer)
FORMATS: dict[str, tuple[str, Callable[[], None], Callable[..., None]]] = {
    "onnx": ("torch", _onnx_packages, _write_onnx),
    "saved_model": ("tensorflow", lambda: None, _write_saved_model),
}
