"""Saving and loading weights and whole models: portable across backends, never pickle.

Weights files
    ``save_weights(model, path)`` stores every weight under its unique variable
    name ("dense/kernel", "dense/bias", ...). Weights inside a nested model, or
    held by a wrapper for its inner layer, get the holder's name in front
    ("encoder/dense/kernel"), so same-named insides stay apart. The format
    follows the suffix:

    * ``.safetensors``: a safetensors file (needs ``pip install safetensors``).
      Its metadata carries a SHA-256 of the tensors, because the format itself
      has no checksum and a flipped byte would otherwise load as a wrong weight.
    * anything else (``.npz`` recommended): a NumPy ``.npz`` archive, the
      format ``np.savez`` writes and ``np.load(path, allow_pickle=False)`` reads.
      Zip's CRC-32 catches corrupted bytes.

    Values are read and written through ``Variable.numpy()`` / ``Variable.assign``,
    so a file written from a model on one backend loads into the same
    architecture on any other (and in any dtype: values are cast on assignment).

Model files
    ``save_model(model, path)`` writes one zip archive (suggested suffix
    ``.unidl``; ``unzip -l`` lists it) holding only JSON and ``.npz``::

        metadata.json       format name and version, unidl version, backend saved from
        config.json         {"class_name": "Sequential", "config": model.get_config(),
                             "build_input_shape": [null, 4]}
        compile.json        optimizer / loss / metrics by class name and config,
                            backend, dtype, jit_compile, optimizer step (when compiled)
        model.weights.npz   the weights, as save_weights writes them
        optimizer.npz       the optimizer's slots ("dense/kernel/m"...), when compiled

    ``load_model(path)`` rebuilds the model from the JSON (``unidl.serialization``
    finds the classes: custom objects, built-ins, plugin layers).

Files may be hostile. Loading checks the structure of every JSON member, and
rebuilds the architecture *without drawing initial weights* (each weight is a
zero-copy placeholder of its shape), so the weights the file must hold are
known before any array is read: every declared size is checked against them
(``unidl.files``), and a file claiming gigabytes is refused before they are
allocated. Every failure is a ``SavingError`` naming the file and the member.

Every write is atomic (``unidl.files.atomic_write``), and every load validates
the whole file against the model before assigning anything, so a failed load
leaves the model exactly as it was.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Mapping

import numpy as np

from .version import __version__
from .files import (SavingError, WeightsFileError, atomic_write, check_overwrite,
                    is_safetensors_path, open_zip, read_bytes, read_json_member, read_member, read_npz,
                    read_safetensors, require_safetensors, write_npz, write_safetensors, zip_info)
from .layers.base import Layer, deferred_initial_values
from .ops import use_backend
from .serialization import (UnknownObjectError, custom_object_scope, deserialize_layer, deserialize_loss,
                            deserialize_metric, deserialize_optimizer, map_leaves, serialize_loss,
                            serialize_metric, serialize_optimizer)

__all__ = ["SavingError", "WeightsFileError", "WeightsMismatchError", "UnknownObjectError", "save_weights",
           "load_weights", "save_model", "load_model", "read_weights_file", "model_config", "model_from_config",
           "custom_object_scope", "save_training_state", "read_training_state", "restore_training_state"]

MODEL_FORMAT = "unidl.model"
MODEL_FORMAT_VERSION = 1
_CONFIG, _METADATA, _COMPILE = "config.json", "metadata.json", "compile.json"
_WEIGHTS, _OPTIMIZER = "model.weights.npz", "optimizer.npz"
# Bytes an .npz may spend per array besides the data (zip headers, the .npy header): far above real ones.
_NPZ_OVERHEAD_PER_ARRAY = 4096


class WeightsMismatchError(SavingError):
    """The file's weights do not fit the model (names or shapes differ)."""


# --------------------------------------------------------------------- weights

def _is_model(layer) -> bool:
    return getattr(layer, "_kind", "") == "model"


def _keyed_weights(layer) -> list[tuple[str, Any, str]]:
    """(key, Variable, owning layer name) for each weight under ``layer``, keys relative to it.

    A weight's key is its variable name ("dense/kernel"). Weights a layer holds
    for an inner layer (a wrapper's "forward_lstm/kernel") get the holder's name
    in front, and so does everything inside a nested model ("encoder/dense/kernel"):
    two wrappers or two sub-models with same-named insides stay apart.
    """
    if _is_model(layer):
        items = [(w.name, w, layer.name) for w in layer._weights]  # a model's own add_weight()s
        for sub in layer.layers:
            if _is_model(sub):
                items += [(f"{sub.name}/{key}", w, owner) for key, w, owner in _keyed_weights(sub)]
            else:
                items += [(w.name if w.name.startswith(f"{sub.name}/") else f"{sub.name}/{w.name}", w, sub.name)
                          for w in sub.weights]
        return items
    return [(w.name, w, layer.name) for w in layer.weights]


def _named_weights(model) -> dict[str, tuple[Any, str]]:
    """key -> (Variable, layer name) for every weight of ``model``, each weight once."""
    require = getattr(model, "_require_built", None)
    if require is not None:
        require("save_weights/load_weights")
    by_key: dict[str, tuple[Any, str]] = {}
    seen: set[int] = set()
    duplicates = set()
    for key, variable, owner in _keyed_weights(model):
        if id(variable) in seen:  # a shared layer's weight is stored once, under its first path
            continue
        seen.add(id(variable))
        if key in by_key:
            duplicates.add(key)
        by_key[key] = (variable, owner)
    if duplicates:
        raise SavingError(f"model {model.name!r} has several weights named {sorted(duplicates)}; weights are "
                          "saved by name, so give the layers that own them distinct names")
    return by_key


def _weights_arrays(model) -> dict[str, np.ndarray]:
    return {key: variable.numpy() for key, (variable, _) in _named_weights(model).items()}


def _expected_shapes(model) -> dict[str, tuple]:
    return {key: tuple(variable.shape) for key, (variable, _) in _named_weights(model).items()}


def _npz_budget(shapes: Mapping[str, tuple]) -> int:
    """The most bytes an .npz of these arrays can take (8-byte numbers, generous headers)."""
    return sum(int(np.prod(s, dtype=np.int64)) * 8 + _NPZ_OVERHEAD_PER_ARRAY for s in shapes.values()) + 4096


def save_weights(model, filepath: str | os.PathLike, overwrite: bool = True) -> None:
    """Write every weight of ``model`` to ``filepath``, keyed by variable name, atomically.

    ``.safetensors`` paths get a safetensors file, any other path an ``.npz``
    archive (``np.load(filepath, allow_pickle=False)`` reads it).
    """
    filepath = os.fspath(filepath)
    if filepath.lower().endswith((".h5", ".hdf5", ".keras")):
        raise SavingError(f"unidl writes weights as .npz or .safetensors, not {os.path.splitext(filepath)[1]}; "
                          f"use e.g. {os.path.splitext(filepath)[0]}.weights.npz")
    check_overwrite(filepath, overwrite)
    arrays = _weights_arrays(model)
    safetensors = is_safetensors_path(filepath)
    if safetensors:
        require_safetensors()  # fail with the install hint before creating any file
    with atomic_write(filepath) as f:
        (write_safetensors if safetensors else write_npz)(f, arrays)


def read_weights_file(filepath: str | os.PathLike, expected: Mapping[str, tuple] | None = None
                      ) -> dict[str, np.ndarray]:
    """name -> array from a weights file (.npz or .safetensors, told apart by content)
    or from a model file written by :func:`save_model`.

    ``expected`` (name -> shape) bounds what is read: arrays of other names or
    shapes come back as zero-copy placeholders of their declared shape.
    """
    filepath = os.fspath(filepath)
    source = f"weights file {filepath!r}"
    data = read_bytes(filepath, "weights file")
    if data[:2] == b"PK":
        zf = open_zip(data, source)
        if _METADATA in zf.namelist():
            member = read_member(zf, _WEIGHTS, f"model file {filepath!r}",
                                 None if expected is None else _npz_budget(expected))
            return read_npz(member, f"the weights in model file {filepath!r}", expected)
        return read_npz(data, source, expected)
    if len(data) >= 8 and data[8:9] == b"{":
        return read_safetensors(data, source)
    raise WeightsFileError(f"{source} is neither an .npz archive nor a safetensors file (it starts with "
                           f"{data[:8]!r})")


def _matched(model, arrays: Mapping[str, np.ndarray], source: str) -> list[tuple[Any, np.ndarray]]:
    """Pair each weight of ``model`` with its array, or raise listing every mismatch."""
    by_key = _named_weights(model)
    problems = []
    for key, (variable, owner) in by_key.items():
        if key not in arrays:
            continue
        array = arrays[key]
        where = f"weight {key!r} of layer {owner!r}"
        if array.dtype.kind not in "fiub":
            problems.append(f"{where}: the file holds dtype {array.dtype}, not numbers")
        elif tuple(array.shape) != tuple(variable.shape):
            problems.append(f"{where}: the model has shape {tuple(variable.shape)}, the file has shape "
                            f"{tuple(array.shape)}")
    missing = [k for k in by_key if k not in arrays]
    unexpected = [k for k in arrays if k not in by_key]
    if missing:
        problems.append(f"the file lacks weights {missing}")
    if unexpected:
        problems.append(f"the file has weights the model lacks: {unexpected}")
    if missing or unexpected:
        problems.append(f"the file holds {len(arrays)} weights, the model {len(by_key)} (layers of the model: "
                        f"{[layer.name for layer in model.layers]}): is it the same architecture?")
    if problems:
        raise WeightsMismatchError(f"cannot load {source} into model {model.name!r}; nothing was loaded:\n  - "
                                   + "\n  - ".join(problems))
    return [(variable, arrays[key]) for key, (variable, _) in by_key.items()]


def _assign_all(pairs: list[tuple[Any, np.ndarray]]) -> None:
    """Assign every pair, or (if a backend fails half-way) put the old values back."""
    previous = [(variable, variable.numpy()) for variable, _ in pairs]
    try:
        for variable, array in pairs:
            variable.assign(array)
    except BaseException:
        for variable, array in previous:
            variable.assign(array)
        raise


def load_weights(model, filepath: str | os.PathLike) -> None:
    """Set every weight of ``model`` from a file written by :func:`save_weights` (or :func:`save_model`).

    The whole file is read and checked first (it must hold exactly the model's
    weight names, each with the model's shape); only then is anything assigned,
    so a failed load leaves the model unchanged. Works on any backend, whatever
    backend wrote the file.
    """
    arrays = read_weights_file(filepath, _expected_shapes(model))
    _assign_all(_matched(model, arrays, f"weights file {os.fspath(filepath)!r}"))


# ------------------------------------------------------ compile configuration

def compile_config(model) -> dict[str, Any] | None:
    """What ``model.compile`` was given, as JSON-ready values (None if not compiled)."""
    if model.backend is None:
        return None
    return {
        "optimizer": None if model.optimizer is None else serialize_optimizer(model.optimizer),
        "loss": map_leaves(serialize_loss, model.compiled_loss_spec),
        "loss_weights": model.compiled_loss_weights,
        "metrics": map_leaves(serialize_metric, model.compiled_metric_spec),
        "backend": model.backend.name, "dtype": model.backend.dtype, "jit_compile": model.jit_compile,
        "optimizer_iterations": None if model.optimizer is None else int(model.optimizer.iterations),
    }


# ----------------------------------------------------------- optimizer state

def _slot_handles(model) -> dict[str, tuple[Any, Any]]:
    """"<weight key>/<slot>" -> (backend, slot variable) for the optimizer's state."""
    optimizer = model.optimizer
    trainable = {id(w) for w in model.trainable_weights}
    handles = {}
    for key, (variable, _) in _named_weights(model).items():
        if id(variable) in trainable:
            for slot_name, handle in optimizer.slots_of(variable).items():
                handles[f"{key}/{slot_name}"] = (variable.backend, handle)
    return handles


def _optimizer_arrays(model) -> dict[str, np.ndarray]:
    return {key: backend.to_numpy(handle) for key, (backend, handle) in _slot_handles(model).items()}


def _restore_optimizer(model, arrays: Mapping[str, np.ndarray], iterations: int | None, source: str) -> None:
    optimizer = model.optimizer
    with use_backend(model.backend):
        optimizer.ensure_slots(model.trainable_weights)
    targets = _slot_handles(model)
    problems = [f"slot {k!r} missing" for k in targets if k not in arrays]
    problems += [f"unexpected slot {k!r}" for k in arrays if k not in targets]
    problems += [f"slot {k!r}: the optimizer has shape {tuple(b.shape(h))}, the file {arrays[k].shape}"
                 for k, (b, h) in targets.items() if k in arrays and tuple(b.shape(h)) != arrays[k].shape]
    if problems:
        raise WeightsMismatchError(f"the optimizer state in {source} does not fit optimizer "
                                   f"{optimizer.name!r}: " + "; ".join(problems))
    for key, (backend, handle) in targets.items():
        backend.assign(handle, backend.convert(arrays[key]))
    if iterations is not None:
        optimizer.iterations = int(iterations)


# ----------------------------------------------------------------- model files

def _to_json(obj, what: str) -> bytes:
    import json

    def default(value):
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
        if hasattr(value, "get_config") and not isinstance(value, type):  # initializers, regularizers
            return {"class_name": type(value).__name__, "config": value.get_config()}
        raise TypeError(f"{value!r} ({type(value).__name__})")
    try:
        return json.dumps(obj, indent=1, default=default).encode()
    except TypeError as exc:
        raise SavingError(f"cannot save the {what}: it holds a value JSON cannot store: {exc}; get_config() "
                          "must return plain values (numbers, strings, lists, dicts)") from exc


def model_config(model) -> dict[str, Any]:
    """The architecture: class name, ``get_config()``, and the input shape it was built for."""
    defining = next(c for c in type(model).__mro__ if "get_config" in vars(c))
    why = None
    if defining is Layer:  # only name and trainable: nothing to rebuild the model from
        why = "its class does not implement get_config()"
    else:
        try:
            config = model.get_config()
        except NotImplementedError as exc:
            why = str(exc) or "get_config() raised NotImplementedError"
    if why:
        raise SavingError(
            f"model {model.name!r} ({type(model).__name__}) cannot be saved as JSON: {why}. Sequential models can "
            "be saved; a subclassed model must implement get_config() (and from_config if its __init__ needs "
            "more than the config). Or save only the weights with save_weights and rebuild the model in code")
    shape = model.input_shape
    return {"class_name": type(model).__name__, "config": config,
            "build_input_shape": None if shape is None else map_leaves(lambda d: d, list(shape))}


def save_model(model, filepath: str | os.PathLike, overwrite: bool = True, include_optimizer: bool = True) -> None:
    """Write architecture, weights and compile configuration to one zip file, atomically.

    See the module docstring for the layout. ``include_optimizer=False`` leaves
    out the optimizer's slots (the compile configuration is kept). A model
    compiled with a lambda loss, metric or schedule is saved without its
    compile configuration, with a warning: only named objects can be found again.
    """
    import zipfile  # here, not at the top: `import unidl` stays fast

    check_overwrite(filepath, overwrite)
    architecture = _to_json(model_config(model), "model config")
    weights = _weights_arrays(model)
    compiled = None
    try:
        compiled = compile_config(model)
    except SavingError as exc:
        warnings.warn(f"model {model.name!r} is saved without its compile configuration: {exc}",
                      UserWarning, stacklevel=2)
    optimizer_arrays = (_optimizer_arrays(model) if compiled and include_optimizer and model.optimizer
                        else None)
    if compiled and optimizer_arrays is None:
        compiled["optimizer_iterations"] = None
    backend = model.backend
    metadata = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "unidl_version": __version__,
                "saved_from": None if backend is None else {"backend": backend.name, "dtype": backend.dtype,
                                                           "device": str(backend.device)}}
    members = {_METADATA: _to_json(metadata, "metadata"), _CONFIG: architecture}
    if compiled is not None:
        members[_COMPILE] = _to_json(compiled, "compile configuration")
    with atomic_write(filepath) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, data in members.items():
            zf.writestr(zip_info(name), data)
        with zf.open(zip_info(_WEIGHTS), "w", force_zip64=True) as member:
            write_npz(member, weights)
        if optimizer_arrays is not None:
            with zf.open(zip_info(_OPTIMIZER), "w", force_zip64=True) as member:
                write_npz(member, optimizer_arrays)


# ------------------------------------------------------------ validation of model files

def _fail(where: str, message: str) -> SavingError:
    return SavingError(f"{where}: {message}")


def _check_metadata(metadata: Any, where: str) -> None:
    if not isinstance(metadata, dict):
        raise WeightsFileError(f"{where} must be a JSON object, got {type(metadata).__name__}")
    if metadata.get("format") != MODEL_FORMAT:
        raise WeightsFileError(f"{where}: not a unidl model file (format {metadata.get('format')!r:.80})")
    version = metadata.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _fail(where, f"format_version must be a positive integer, got {version!r:.80}")
    if version > MODEL_FORMAT_VERSION:
        raise _fail(where, f"written in model format version {version} by unidl "
                           f"{metadata.get('unidl_version')!r:.40}; this unidl reads versions up to "
                           f"{MODEL_FORMAT_VERSION}: upgrade unidl")


def _is_shape(value: Any) -> bool:
    return isinstance(value, list) and all(d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= 0)
                                           for d in value)


def _check_config(spec: Any, where: str) -> None:
    if not isinstance(spec, dict):
        raise _fail(where, f"must be a JSON object, got {type(spec).__name__}")
    if not isinstance(spec.get("class_name"), str):
        raise _fail(where, f"'class_name' must be a string, got {spec.get('class_name')!r:.80}")
    if not isinstance(spec.get("config"), dict):
        raise _fail(where, f"'config' must be an object, got {type(spec.get('config')).__name__}")
    shape = spec.get("build_input_shape")
    if shape is not None and not (_is_shape(shape) or (isinstance(shape, list) and shape
                                                       and all(_is_shape(s) for s in shape))):
        raise _fail(where, f"'build_input_shape' must be a shape (a list of sizes or nulls) or a list of shapes, "
                           f"got {shape!r:.120}")


_COMPILE_KEYS = {"optimizer", "loss", "loss_weights", "metrics", "backend", "dtype", "jit_compile",
                 "optimizer_iterations"}


def _check_compile(compiled: Any, where: str) -> None:
    if not isinstance(compiled, dict):
        raise _fail(where, f"must be a JSON object, got {type(compiled).__name__}")
    unknown = set(compiled) - _COMPILE_KEYS
    if unknown:
        raise _fail(where, f"unknown keys {sorted(unknown)}; a compile configuration has {sorted(_COMPILE_KEYS)}")
    for key in ("backend", "dtype"):
        if not isinstance(compiled.get(key), str):
            raise _fail(where, f"{key!r} must be a string, got {compiled.get(key)!r:.80}")
    if compiled.get("jit_compile", "auto") not in (True, False, "auto"):
        raise _fail(where, f"'jit_compile' must be true, false or \"auto\", got {compiled['jit_compile']!r:.40}")
    iterations = compiled.get("optimizer_iterations")
    if iterations is not None and (isinstance(iterations, bool) or not isinstance(iterations, int)
                                   or iterations < 0):
        raise _fail(where, f"'optimizer_iterations' must be a non-negative integer, got {iterations!r:.40}")
    if compiled.get("optimizer") is not None and not isinstance(compiled["optimizer"], dict):
        raise _fail(where, f"'optimizer' must be an object, got {compiled['optimizer']!r:.80}")
    weights = compiled.get("loss_weights")
    leaves = weights.values() if isinstance(weights, dict) else weights if isinstance(weights, list) else \
        [] if weights is None else [weights]
    if any(isinstance(w, bool) or not isinstance(w, (int, float)) for w in leaves):
        raise _fail(where, f"'loss_weights' must hold numbers, got {weights!r:.80}")


def _members(zf, filepath: str) -> set[str]:
    names = zf.namelist()
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise WeightsFileError(f"model file {filepath!r} holds {doubled} more than once; a crafted or broken file")
    return set(names)


def model_from_config(spec: Mapping[str, Any], custom_objects: Mapping[str, Any] | None = None):
    """An (unbound) model from ``{"class_name", "config", "build_input_shape"}``; weights freshly drawn.

    The class rebuilds itself with its ``from_config`` (``Sequential`` adds its
    layers, a functional ``Model`` replays its calls, a subclassed model is
    called with its config).
    """
    model = deserialize_layer({"class_name": spec["class_name"], "config": spec["config"]}, custom_objects)
    if not _is_model(model):
        raise SavingError(f"class {spec['class_name']!r} is a layer, not a model")
    shape = spec.get("build_input_shape")
    if not model.built and shape is not None:
        model.build(_as_shape(shape))
    return model


def _as_shape(shape):
    # JSON turned the tuples into lists; a model with several inputs has a list of shapes.
    if shape and isinstance(shape[0], list):
        return [tuple(s) for s in shape]
    return tuple(shape)


def _rebuild(spec, custom_objects, filepath: str):
    """The architecture, with placeholder weights (no initial values drawn, nothing allocated)."""
    try:
        with deferred_initial_values():
            return model_from_config(spec, custom_objects)
    except SavingError as exc:
        if filepath in str(exc):
            raise
        raise type(exc)(f"model file {filepath!r}, {_CONFIG}: {exc}") from exc
    except (RecursionError, MemoryError) as exc:
        raise SavingError(f"model file {filepath!r}, {_CONFIG}: the architecture is too deep or too large to "
                          f"rebuild ({type(exc).__name__})") from exc
    except Exception as exc:  # a layer refusing its arguments, a bad graph reference...
        raise SavingError(f"model file {filepath!r}, {_CONFIG}: cannot rebuild the model: "
                          f"{type(exc).__name__}: {exc}") from exc


def load_model(filepath: str | os.PathLike, backend: str | None = None, dtype: str | None = None,
               device: str | None = None, custom_objects: Mapping[str, Any] | None = None,
               compile: bool = True):
    """Rebuild a model saved by :func:`save_model`: architecture, weights, compile configuration.

    Args:
        filepath: the model file.
        backend: the backend to run on; default: the one it was compiled on when
            saved (an uncompiled model stays unbound unless ``backend`` is given).
        dtype: compute dtype; default: the saved one ("float32" if none).
        device: e.g. "cuda"; default: the backend's default (the saving device is not
            reused, so a model saved on a GPU loads on a machine without one).
        custom_objects: ``{"ClassName": cls}`` for layers, losses, metrics, optimizers
            or schedules that are neither built in nor registered by a plugin.
        compile: restore the compile configuration (optimizer, loss, metrics and the
            optimizer's state). With False the model is only bound to ``backend`` if given.
    """
    filepath = os.fspath(filepath)
    source = f"model file {filepath!r}"
    zf = open_zip(read_bytes(filepath, "model file"), source)
    names = _members(zf, filepath)
    if _METADATA not in names:
        raise WeightsFileError(f"{filepath!r} is not a unidl model file (it has no {_METADATA}); "
                               "for a weights file use load_weights")
    _check_metadata(read_json_member(zf, _METADATA, source), f"{source}, {_METADATA}")
    spec = read_json_member(zf, _CONFIG, source)
    _check_config(spec, f"{source}, {_CONFIG}")
    compiled = read_json_member(zf, _COMPILE, source) if _COMPILE in names else None
    if compiled is not None:
        _check_compile(compiled, f"{source}, {_COMPILE}")

    model = _rebuild(spec, custom_objects, filepath)
    shapes = _expected_shapes(model)
    weights = read_npz(read_member(zf, _WEIGHTS, source, _npz_budget(shapes)),
                       f"the weights in model file {filepath!r}", shapes)
    _assign_all(_matched(model, weights, f"the weights in model file {filepath!r}"))
    if compile and compiled is not None:
        _compile_as_saved(model, zf, names, compiled, backend, dtype, device, custom_objects, filepath)
    elif backend is not None:
        model.compile(backend=backend, dtype=dtype or (compiled or {}).get("dtype", "float32"), device=device)
    return model


def _compile_as_saved(model, zf, names, compiled, backend, dtype, device, custom_objects, filepath) -> None:
    where = f"model file {filepath!r}, {_COMPILE}"
    try:
        optimizer = (deserialize_optimizer(compiled["optimizer"], custom_objects)
                     if compiled.get("optimizer") else "rmsprop")
        loss = map_leaves(lambda s: deserialize_loss(s, custom_objects), compiled.get("loss"))
        metrics = map_leaves(lambda s: deserialize_metric(s, custom_objects), compiled.get("metrics"))
    except UnknownObjectError:
        raise
    except SavingError as exc:
        raise SavingError(f"{where}: {exc}") from exc
    extra = {"loss_weights": compiled["loss_weights"]} if compiled.get("loss_weights") is not None else {}
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics or None,
                  backend=backend or compiled["backend"], dtype=dtype or compiled["dtype"], device=device,
                  jit_compile=compiled.get("jit_compile", "auto"), **extra)
    if _OPTIMIZER in names and compiled.get("optimizer"):
        slot_shapes = {key: tuple(b.shape(h)) for key, (b, h) in _slot_handles_after_ensure(model).items()}
        arrays = read_npz(read_member(zf, _OPTIMIZER, f"model file {filepath!r}", _npz_budget(slot_shapes)),
                          f"the optimizer state in {filepath!r}", slot_shapes)
        _restore_optimizer(model, arrays, compiled.get("optimizer_iterations"), filepath)


def _slot_handles_after_ensure(model):
    with use_backend(model.backend):
        model.optimizer.ensure_slots(model.trainable_weights)
    return _slot_handles(model)


# ------------------------------------------------------------- training state

TRAINING_STATE_FORMAT = "unidl.training_state"
TRAINING_STATE_VERSION = 1


def random_generators(model) -> dict[str, np.random.Generator]:
    """Every NumPy generator of the model and its layers, by path ("model/shuffle_rng", "model/dropout/_mask_rng").

    They decide the batch order and dropout masks: restoring their states makes a resumed run draw
    what the uninterrupted run would have drawn.
    """
    found: dict[str, np.random.Generator] = {}
    seen: set[int] = set()

    def walk(obj, path: str) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        for attr, value in sorted(vars(obj).items()):
            if isinstance(value, np.random.Generator):
                found[f"{path}/{attr}"] = value
        for sub in (obj.layers if _is_model(obj) else obj._sublayers()):
            walk(sub, f"{path}/{sub.name}")

    walk(model, "model")
    return found


def save_training_state(model, filepath: str | os.PathLike, epoch: int, batch: int = 0,
                        generators: Mapping[str, Any] | None = None) -> None:
    """Write what training needs to resume, atomically: weights, optimizer state (slots, step count,
    learning rate), loss scale, the epoch and batch reached, and the model's generator states
    (``generators``: path -> ``bit_generator.state``; default: their states now)."""
    import json
    import zipfile

    optimizer = getattr(model, "optimizer", None)
    scale = None if getattr(model, "dtype_policy", None) is None else model.dtype_policy.loss_scale
    if generators is None:
        generators = {path: g.bit_generator.state for path, g in random_generators(model).items()}
    metadata = {
        "format": TRAINING_STATE_FORMAT, "format_version": TRAINING_STATE_VERSION, "unidl_version": __version__,
        "model": model.name, "epoch": int(epoch), "batch": int(batch),
        "optimizer_iterations": None if optimizer is None else int(optimizer.iterations),
        "learning_rate": (None if optimizer is None or callable(optimizer.learning_rate)
                          else float(optimizer.learning_rate)),
        "loss_scale": None if scale is None else {"scale": scale.scale, "good_steps": scale.good_steps,
                                                  "skipped_steps": scale.skipped_steps},
        "generators": generators,
    }
    with atomic_write(filepath) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(zip_info(_METADATA), json.dumps(metadata).encode())
        with zf.open(zip_info(_WEIGHTS), "w", force_zip64=True) as member:
            write_npz(member, _weights_arrays(model))
        if optimizer is not None:
            with zf.open(zip_info(_OPTIMIZER), "w", force_zip64=True) as member:
                write_npz(member, _optimizer_arrays(model))


def read_training_state(filepath: str | os.PathLike) -> dict[str, Any]:
    """A file :func:`save_training_state` wrote: {"path", "metadata", "weights", "optimizer"?} (bytes, checked later)."""
    path = os.fspath(filepath)
    source = f"training-state file {path!r}"
    zf = open_zip(read_bytes(path, "training-state file"), source)
    metadata = read_json_member(zf, _METADATA, source)
    if not isinstance(metadata, dict) or metadata.get("format") != TRAINING_STATE_FORMAT:
        raise WeightsFileError(f"{source} is not a unidl training-state file")
    version = metadata.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version > TRAINING_STATE_VERSION:
        raise WeightsFileError(f"{source} has format version {version!r}; this unidl reads versions up to "
                               f"{TRAINING_STATE_VERSION}")
    epoch = metadata.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise WeightsFileError(f"{source}: 'epoch' must be a non-negative integer, got {epoch!r}")
    state = {"path": path, "metadata": metadata, "weights": read_member(zf, _WEIGHTS, source, None)}
    if _OPTIMIZER in zf.namelist():
        state["optimizer"] = read_member(zf, _OPTIMIZER, source, None)
    return state


def restore_training_state(model, state: Mapping[str, Any]) -> None:
    """Put a :func:`read_training_state` state into ``model``; checked whole before anything changes."""
    path, metadata = state["path"], state["metadata"]
    shapes = _expected_shapes(model)
    pairs = _matched(model, read_npz(state["weights"], f"the weights in {path!r}", shapes), repr(path))
    optimizer = getattr(model, "optimizer", None)
    slots = None
    if optimizer is not None and "optimizer" in state:
        slot_shapes = {k: tuple(b.shape(h)) for k, (b, h) in _slot_handles_after_ensure(model).items()}
        slots = read_npz(state["optimizer"], f"the optimizer state in {path!r}", slot_shapes)
    _assign_all(pairs)
    if slots is not None:
        _restore_optimizer(model, slots, metadata.get("optimizer_iterations"), path)
    elif optimizer is not None and metadata.get("optimizer_iterations") is not None:
        optimizer.iterations = int(metadata["optimizer_iterations"])
    if optimizer is not None and metadata.get("learning_rate") is not None and not callable(optimizer.learning_rate):
        optimizer.learning_rate = float(metadata["learning_rate"])
    scale = None if getattr(model, "dtype_policy", None) is None else model.dtype_policy.loss_scale
    if scale is not None and isinstance(metadata.get("loss_scale"), dict):
        scale.scale = float(metadata["loss_scale"]["scale"])
        scale.good_steps = int(metadata["loss_scale"]["good_steps"])
        scale.skipped_steps = int(metadata["loss_scale"]["skipped_steps"])
    generators = random_generators(model)
    for key, value in (metadata.get("generators") or {}).items():
        generator = generators.get(key)
        if generator is not None and isinstance(value, dict) \
                and value.get("bit_generator") == generator.bit_generator.state.get("bit_generator"):
            generator.bit_generator.state = value
