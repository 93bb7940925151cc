"""PyTorch backend for unidl, and its services: ONNX export, torch.distributed, the native bench loops.

Importing this module does not import torch: each service imports its module
(and torch) when it is first used.
"""
from unidl import hookimpl


def _make_backend(dtype: str = "float32", device: str | None = None, **options):
    from .backend import TorchBackend  # torch is imported here, on first use
    return TorchBackend(dtype=dtype, device=device, **options)


@hookimpl(trylast=True)
def unidl_register_backends(register):
    register("torch", _make_backend, framework="torch", install="pip install 'unidl[torch]'",
             description="PyTorch (CPU, CUDA); float32/float64")


def _write_onnx(model, path, **options) -> None:
    from .export import write_onnx
    write_onnx(model, path, **options)


def _onnx_packages() -> None:
    try:
        import onnx  # noqa: F401  (torch.onnx imports these lazily, deep inside the export)
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"exporting to ONNX needs the onnx and onnxscript packages ({exc.name} is missing); "
                          "install them with: pip install 'unidl[onnx]'") from exc


@hookimpl(trylast=True)
def unidl_register_exporters(register):
    register("onnx", _write_onnx, backend="torch", requires=_onnx_packages)


def _engine(strategy):
    from .distributed import TorchEngine
    return TorchEngine(strategy)


@hookimpl(trylast=True)
def unidl_register_distributed_engines(register):
    register("torch", _engine)


def _native_loop(model, x, y, batch_size, repeats, device, policy):
    from .bench import run_native_torch
    return run_native_torch(model, x, y, batch_size, repeats, device, policy)


def _graph_loop(model, x, y, batch_size, repeats, device, policy):
    from .bench import run_native_torch_graph
    return run_native_torch_graph(model, x, y, batch_size, repeats, device, policy)


def _cuda_peak_mb(device: str) -> float:
    import torch
    return torch.cuda.max_memory_allocated(device) / 2**20


_BENCH_MODELS = ("mlp", "cnn", "lstm", "wide", "conv1d", "transformer")


@hookimpl(trylast=True)
def unidl_register_bench_baselines(register):
    register("torch", _native_loop, models=_BENCH_MODELS, policies=(None, "mixed_bfloat16", "mixed_float16"),
             framework="torch", device_peak_mb=_cuda_peak_mb)
    # The same step captured in a CUDA graph: the floor of an eager loop, on CUDA devices only.
    register("torch-graph", _graph_loop, models=_BENCH_MODELS, policies=(None, "mixed_bfloat16"),
             framework="torch", devices=("cuda",), device_peak_mb=_cuda_peak_mb)
