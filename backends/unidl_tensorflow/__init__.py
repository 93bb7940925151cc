"""TensorFlow backend for unidl, and its services: SavedModel export, tf.distribute, the native bench loop.

Importing this module does not import tensorflow: each service imports its
module (and tensorflow) when it is first used.
"""
from unidl import hookimpl


def _make_backend(dtype: str = "float32", device: str | None = None, **options):
    from .backend import TensorFlowBackend  # tensorflow is imported here, on first use
    return TensorFlowBackend(dtype=dtype, device=device, **options)


@hookimpl(trylast=True)
def unidl_register_backends(register):
    register("tensorflow", _make_backend, framework="tensorflow", install="pip install 'unidl[tensorflow]'",
             description="TensorFlow 2 (eager, tf.function steps); float32/float64")


def _write_saved_model(model, path, **options) -> None:
    from .export import write_saved_model
    write_saved_model(model, path, **options)


@hookimpl(trylast=True)
def unidl_register_exporters(register):
    register("saved_model", _write_saved_model, backend="tensorflow", aliases=("tf_saved_model",))


def _engine(strategy):
    from .distributed import TensorFlowEngine
    return TensorFlowEngine(strategy)


@hookimpl(trylast=True)
def unidl_register_distributed_engines(register):
    register("tensorflow", _engine)


def _native_loop(model, x, y, batch_size, repeats, device, policy):
    from .bench import run_native_tensorflow
    return run_native_tensorflow(model, x, y, batch_size, repeats, device, policy)


@hookimpl(trylast=True)
def unidl_register_bench_baselines(register):
    register("tensorflow", _native_loop, models=("mlp", "cnn", "lstm", "wide", "conv1d", "transformer"),
             policies=(None, "mixed_bfloat16"), framework="tensorflow")
