"""The "onnx" export format: ``torch.onnx.export`` of the model's native ``nn.Module``.

One ``.onnx`` file with a dynamic batch axis; every other axis is fixed at the
model's input shape (a recurrent layer is unrolled over its time steps).
Inputs are floats in the compiled dtype, named after the functional model's
``layers.Input`` names ("input", or "input_0", "input_1"... otherwise),
outputs after its output layers ("output"... otherwise). Options go to
``torch.onnx.export``, e.g. ``opset_version=18``.
"""
from __future__ import annotations

import warnings

import torch

from unidl.exporting import example_inputs, io_names
from unidl.files import atomic_write

ONNX_INSTALL = "pip install 'unidl[onnx]'"
# torch.onnx warns about its own internals while exporting: nothing a user can act on.
_EXPORTER_NOISE = [(FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
                   (UserWarning, r"# The axis name: batch will not be used")]  # all inputs share "batch"


def write_onnx(model, path, **options) -> None:
    examples = example_inputs(model)
    inputs, outputs = io_names(model)
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
