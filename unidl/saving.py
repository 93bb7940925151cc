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

    ``load_model(path)`` rebuilds the model from the JSON: layer classes are found
    by class name among ``unidl.layers.BUILTINS`` (read at load time, so layers
    added later are found), plugin-registered layers, and ``custom_objects``.

Every write is atomic: data goes to a temporary file in the target's directory,
is flushed and fsync'ed, then ``os.replace``s the target, and the directory is
fsync'ed. A crash at any point leaves either the old file or the new one, never
a mix. Every load validates the whole file against the model before assigning
anything, so a failed load leaves the model exactly as it was.
"""
from __future__ import annotations

import contextlib
import contextvars
import inspect
import io
import os
import warnings
from typing import Any, BinaryIO, Iterator, Mapping

import numpy as np

# zipfile, json, hashlib and tempfile are imported inside the functions that use
# them: `import unidl` must stay fast, and most programs never save anything.

MODEL_FORMAT = "unidl.model"
MODEL_FORMAT_VERSION = 1
_CONFIG, _METADATA, _COMPILE = "config.json", "metadata.json", "compile.json"
_WEIGHTS, _OPTIMIZER = "model.weights.npz", "optimizer.npz"
_CHECKSUM_KEY = "unidl_sha256"
# Fixed member timestamps make saving the same model twice give the same bytes.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class SavingError(ValueError):
    """A weights or model file cannot be written or read as asked."""


class WeightsFileError(SavingError):
    """The file is missing, truncated, corrupted or not a weights/model file."""


class WeightsMismatchError(SavingError):
    """The file's weights do not fit the model (names or shapes differ)."""


class UnknownObjectError(SavingError):
    """A model file names a class or function that cannot be found."""


# ------------------------------------------------------------------ atomic writes

@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path``; on success it atomically becomes ``path``.

    The data is flushed and fsync'ed before ``os.replace`` (so the rename never
    publishes a file whose bytes are not on disk yet), and the directory is
    fsync'ed after it (so the rename itself survives a power loss). On any
    error the temporary file is removed and ``path`` is untouched.
    """
    import tempfile

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save to {path!r}: directory {directory!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot save to {path!r}: it is a directory")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give it the mode a plain open() would have.
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _new_file_mode(path: str) -> int:
    try:
        return os.stat(path).st_mode & 0o777  # overwriting: keep the existing file's mode
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    # Read it without os.umask(), which sets the process-wide umask (racy with other threads).
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows, where directories cannot be opened (nor need to be)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_overwrite(path, overwrite: bool) -> None:
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{os.fspath(path)!r} exists; pass overwrite=True to replace it")


# ----------------------------------------------------------------- npz archives

def _zip_info(name: str):
    import zipfile
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def _write_npz(f: BinaryIO, arrays: Mapping[str, np.ndarray]) -> None:
    """The archive ``np.savez`` writes, built by hand to refuse pickles and fix timestamps."""
    import zipfile
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, array in arrays.items():
            with zf.open(_zip_info(f"{name}.npy"), "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)


def _read_npz(data: bytes, source: str) -> dict[str, np.ndarray]:
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise WeightsFileError(f"{source} is a single .npy array, not an .npz archive of named weights")
        with loaded:
            # Reading every member to its end makes zipfile check each one's CRC-32.
            return {name: loaded[name] for name in loaded.files}
    except SavingError:
        raise
    except Exception as exc:
        raise WeightsFileError(f"{source} is truncated or corrupted, or not an .npz archive: "
                               f"{type(exc).__name__}: {exc}") from exc


# ------------------------------------------------------------------ safetensors

def _safetensors():
    try:
        import safetensors.numpy
    except ImportError as exc:
        raise ImportError("reading and writing .safetensors files needs the safetensors package; install it "
                          "with: pip install safetensors   (or save to a .npz path instead)") from exc
    return safetensors.numpy


def _tensor_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over names, dtypes, shapes and little-endian bytes, in name order."""
    import hashlib
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.asarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str.lstrip('<>=|')}\0{a.shape}\0".encode())
        h.update(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def _write_safetensors(f: BinaryIO, arrays: Mapping[str, np.ndarray]) -> None:
    st = _safetensors()
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    f.write(st.save(arrays, metadata={"format": "np", _CHECKSUM_KEY: _tensor_digest(arrays)}))


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    # The header is an 8-byte little-endian length and then JSON; "__metadata__" is optional.
    import json
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    return header.get("__metadata__") or {}


def _read_safetensors(data: bytes, source: str) -> dict[str, np.ndarray]:
    st = _safetensors()
    try:
        arrays = st.load(data)
        metadata = _safetensors_metadata(data)
    except Exception as exc:  # SafetensorError, JSON errors on a damaged header...
        raise WeightsFileError(f"{source} is truncated or corrupted, or not a safetensors file: "
                               f"{type(exc).__name__}: {exc}") from exc
    expected = metadata.get(_CHECKSUM_KEY)
    # Files written by other tools carry no checksum: they load unchecked, as everywhere else.
    if expected is not None and _tensor_digest(arrays) != expected:
        raise WeightsFileError(f"{source} is corrupted: its tensors do not match the SHA-256 checksum "
                               "stored in its header")
    return arrays


def _is_safetensors_path(path) -> bool:
    return os.fspath(path).lower().endswith(".safetensors")


# --------------------------------------------------------------------- weights

def _is_model(layer) -> bool:
    from .models import Model
    return isinstance(layer, Model)


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


def save_weights(model, filepath: str | os.PathLike, overwrite: bool = True) -> None:
    """Write every weight of ``model`` to ``filepath``, keyed by variable name, atomically.

    ``.safetensors`` paths get a safetensors file, any other path an ``.npz``
    archive (``np.load(filepath, allow_pickle=False)`` reads it).
    """
    filepath = os.fspath(filepath)
    if filepath.lower().endswith((".h5", ".hdf5", ".keras")):
        raise SavingError(f"unidl writes weights as .npz or .safetensors, not {os.path.splitext(filepath)[1]}; "
                          f"use e.g. {os.path.splitext(filepath)[0]}.weights.npz")
    _check_overwrite(filepath, overwrite)
    arrays = _weights_arrays(model)
    writer = _write_safetensors if _is_safetensors_path(filepath) else _write_npz
    if writer is _write_safetensors:
        _safetensors()  # fail with the install hint before creating any file
    with atomic_write(filepath) as f:
        writer(f, arrays)


def read_weights_file(filepath: str | os.PathLike) -> dict[str, np.ndarray]:
    """name -> array from a weights file (.npz or .safetensors, told apart by content)
    or from a model file written by :func:`save_model`."""
    filepath = os.fspath(filepath)
    source = f"weights file {filepath!r}"
    try:
        with open(filepath, "rb") as f:
            data = f.read()  # one read: the arrays all come from the same version of the file
    except FileNotFoundError:
        raise FileNotFoundError(f"no weights file at {filepath!r}") from None
    if not data:
        raise WeightsFileError(f"{source} is empty (0 bytes)")
    if data[:2] == b"PK":
        model_file = _open_model_zip(data, filepath, required=False)
        if model_file is not None:
            return _read_npz(_member(model_file, _WEIGHTS, filepath), f"the weights in model file {filepath!r}")
        return _read_npz(data, source)
    if len(data) >= 8 and data[8:9] == b"{":
        return _read_safetensors(data, source)
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
    arrays = read_weights_file(filepath)
    _assign_all(_matched(model, arrays, f"weights file {os.fspath(filepath)!r}"))


# ----------------------------------------------------------- object resolution

# custom_objects of the load_model call in progress, so that code rebuilding
# nested layers (a wrapper's inner layer) finds them without passing them along.
_SCOPE: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("unidl_custom_objects", default={})


@contextlib.contextmanager
def custom_object_scope(custom_objects: Mapping[str, Any] | None) -> Iterator[None]:
    """Make ``{"Name": object}`` findable by :func:`deserialize_layer` and friends inside the block."""
    token = _SCOPE.set({**_SCOPE.get(), **(custom_objects or {})})
    try:
        yield
    finally:
        _SCOPE.reset(token)


def _resolve(kind: str, class_name: str, builtins: Mapping[str, Any],
             custom_objects: Mapping[str, Any] | None, what: str) -> Any:
    """Find ``class_name``: custom_objects first, then the built-ins, then plugins."""
    from .naming import closest
    from .registry import REGISTRY

    custom = {**_SCOPE.get(), **(custom_objects or {})}
    if class_name in custom:
        return custom[class_name]
    if class_name in builtins:
        return builtins[class_name]
    plugin_items = {}
    if kind:
        for name, (obj, _plugin) in REGISTRY.named(kind).items():
            plugin_items[name] = obj
            plugin_items.setdefault(getattr(obj, "__name__", name), obj)
        if class_name in plugin_items:
            return plugin_items[class_name]
    known = sorted({*builtins, *plugin_items, *custom})
    hook = f", or register it from a plugin's unidl_register_{kind} hook" if kind else ""
    raise UnknownObjectError(
        f"unknown {what} {class_name!r}{closest(class_name, known)}: it is not built into unidl"
        f"{' nor registered by a plugin' if kind else ''}. Pass it when loading, "
        f"load_model(path, custom_objects={{{class_name!r}: {class_name}}}){hook}. Known: {', '.join(known)}")


def _classes_by_name(builtins: Mapping[str, Any]) -> dict[str, Any]:
    # The optimizer and loss tables are keyed by user-facing names ("adam"); saved files use class names.
    return {getattr(obj, "__name__", key): obj for key, obj in builtins.items() if isinstance(obj, type)}


def _from_config(cls, config: dict[str, Any], what: str):
    factory = getattr(cls, "from_config", None)
    try:
        return factory(config) if factory is not None else cls(**config)
    except TypeError as exc:
        raise SavingError(f"could not rebuild {what} {getattr(cls, '__name__', cls)!r} from its saved config "
                          f"{config}: {exc}. A class whose __init__ takes arguments must return them from "
                          "get_config() (or define a from_config classmethod)") from exc


def _model_classes() -> dict[str, type]:
    from . import models
    return {"Sequential": models.Sequential, "Model": models.Model}


def serialize_layer(layer) -> dict[str, Any]:
    """``{"class_name", "config"}``: what :func:`deserialize_layer` turns back into the layer."""
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize_layer(spec: Mapping[str, Any], custom_objects: Mapping[str, Any] | None = None):
    """A layer (or nested model) from ``{"class_name": ..., "config": ...}``.

    Classes are looked up in ``custom_objects`` (and those of the enclosing
    :func:`custom_object_scope`), ``unidl.layers.BUILTINS`` as it is now, the
    model classes, then plugin-registered layers.
    """
    from . import layers
    from .models import Model
    cls = _resolve("layers", spec["class_name"], {**layers.BUILTINS, **_model_classes()}, custom_objects,
                   "layer class")
    if isinstance(cls, type) and issubclass(cls, Model):
        return model_from_config(spec, custom_objects)
    return _from_config(cls, dict(spec.get("config") or {}), "layer")


# ------------------------------------------------------ compile configuration

def _function_ref(fn, what: str) -> dict[str, str]:
    name = getattr(fn, "__name__", None)
    if not name or name == "<lambda>":
        raise SavingError(f"{what} {fn!r} has no name to save it by; use a named function (and pass it as "
                          "custom_objects={name: function} when loading)")
    return {"function": name}


def _map_structure(fn, value):
    """Apply ``fn`` to the leaves of a per-output structure (a list or dict of leaves, or one leaf).

    A saved leaf may itself be a dict (``{"class_name": ...}`` or ``{"function": ...}``);
    any other dict maps output names to leaves.
    """
    if isinstance(value, dict) and not ("class_name" in value or "function" in value):
        return {k: _map_structure(fn, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_map_structure(fn, v) for v in value]
    return None if value is None else fn(value)


def _serialize_learning_rate(lr):
    if not callable(lr):
        return float(lr)
    if hasattr(lr, "get_config"):
        return {"class_name": type(lr).__name__, "config": lr.get_config()}
    return _function_ref(lr, "learning-rate schedule")


def _deserialize_learning_rate(value, custom_objects):
    from . import schedules
    if not isinstance(value, dict):
        return value
    if "function" in value:
        return _resolve("", value["function"], {}, custom_objects, "learning-rate schedule function")
    cls = _resolve("", value["class_name"], schedules.BUILTINS, custom_objects, "learning-rate schedule")
    return _from_config(cls, dict(value["config"]), "learning-rate schedule")


def serialize_optimizer(optimizer) -> dict[str, Any]:
    config = dict(optimizer.get_config())
    config["learning_rate"] = _serialize_learning_rate(optimizer.learning_rate)
    return {"class_name": type(optimizer).__name__, "config": config}


def deserialize_optimizer(spec: Mapping[str, Any], custom_objects=None):
    from . import optimizers
    cls = _resolve("optimizers", spec["class_name"], _classes_by_name(optimizers.BUILTINS), custom_objects,
                   "optimizer class")
    config = dict(spec["config"])
    config["learning_rate"] = _deserialize_learning_rate(config.get("learning_rate"), custom_objects)
    return _from_config(cls, config, "optimizer")


def serialize_loss(loss) -> str | dict[str, Any]:
    """A loss as compile() was given it: a name stays a name; a Loss by class and config; a function by name."""
    from . import losses
    if isinstance(loss, str):
        return loss
    if isinstance(loss, losses._FunctionLoss):
        loss = loss.fn
    if not isinstance(loss, losses.Loss):
        return _function_ref(loss, "loss function")
    config = dict(loss.get_config())
    if type(loss).get_config is losses.Loss.get_config:
        # The base config has only name and reduction: add the subclass's own
        # constructor arguments (delta, from_logits, ...) that it keeps as attributes.
        for param in inspect.signature(type(loss).__init__).parameters.values():
            if param.name != "self" and param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL) \
                    and hasattr(loss, param.name):
                config.setdefault(param.name, getattr(loss, param.name))
    return {"class_name": type(loss).__name__, "config": config}


def deserialize_loss(spec, custom_objects=None):
    from . import losses
    if isinstance(spec, str):
        return spec
    if "function" in spec:
        return _resolve("losses", spec["function"], {}, custom_objects, "loss function")
    cls = _resolve("losses", spec["class_name"], _classes_by_name(losses.BUILTINS), custom_objects, "loss class")
    return _from_config(cls, dict(spec["config"]), "loss")


def serialize_metric(metric) -> str | dict[str, str]:
    from . import metrics
    if isinstance(metric, str):
        return metric
    if isinstance(metric, metrics.Metric):
        for name, fn in metrics.BUILTINS.items():
            if fn is metric.fn:
                return {"function": name, "name": metric.name}
        return {**_function_ref(metric.fn, "metric function"), "name": metric.name}
    return _function_ref(metric, "metric function")


def deserialize_metric(spec, custom_objects=None):
    from . import metrics
    if isinstance(spec, str):
        return spec
    fn = _resolve("metrics", spec["function"], metrics.BUILTINS, custom_objects, "metric function")
    return metrics.Metric(fn, spec["name"]) if "name" in spec else fn


def compile_config(model) -> dict[str, Any] | None:
    """What ``model.compile`` was given, as JSON-ready values (None if not compiled)."""
    if model.backend is None:
        return None
    loss = getattr(model, "_loss_spec", model.loss)
    return {
        "optimizer": None if model.optimizer is None else serialize_optimizer(model.optimizer),
        "loss": _map_structure(serialize_loss, loss),
        "loss_weights": getattr(model, "_loss_weights", None),
        "metrics": _map_structure(serialize_metric, model._metric_ids),
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
            for slot_name, handle in optimizer._slots.get(id(variable), {}).items():
                handles[f"{key}/{slot_name}"] = (variable.backend, handle)
    return handles


def _optimizer_arrays(model) -> dict[str, np.ndarray]:
    return {key: backend.to_numpy(handle) for key, (backend, handle) in _slot_handles(model).items()}


def _restore_optimizer(model, arrays: Mapping[str, np.ndarray], iterations: int | None, source: str) -> None:
    optimizer = model.optimizer
    with _use(model.backend):
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


def _use(backend):
    from .ops import use_backend
    return use_backend(backend)


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
    from .layers.base import Layer
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
            "build_input_shape": None if shape is None else _map_structure(lambda d: d, list(shape))}


def save_model(model, filepath: str | os.PathLike, overwrite: bool = True, include_optimizer: bool = True) -> None:
    """Write architecture, weights and compile configuration to one zip file, atomically.

    See the module docstring for the layout. ``include_optimizer=False`` leaves
    out the optimizer's slots (the compile configuration is kept). A model
    compiled with a lambda loss, metric or schedule is saved without its
    compile configuration, with a warning: only named objects can be found again.
    """
    import zipfile

    from . import __version__
    _check_overwrite(filepath, overwrite)
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
            zf.writestr(_zip_info(name), data)
        with zf.open(_zip_info(_WEIGHTS), "w", force_zip64=True) as member:
            _write_npz(member, weights)
        if optimizer_arrays is not None:
            with zf.open(_zip_info(_OPTIMIZER), "w", force_zip64=True) as member:
                _write_npz(member, optimizer_arrays)


def _open_model_zip(data: bytes, filepath: str, required: bool = True):
    """The ZipFile of a model file, or None (``required=False``) when it is another zip."""
    import zipfile
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except Exception as exc:
        raise WeightsFileError(f"{filepath!r} is truncated or corrupted, or not a zip archive: "
                               f"{type(exc).__name__}: {exc}") from exc
    if _METADATA not in zf.namelist():
        if required:
            raise WeightsFileError(f"{filepath!r} is not a unidl model file (it has no {_METADATA}); "
                                   "for a weights file use load_weights")
        return None
    return zf


def _member(zf, name: str, filepath: str) -> bytes:
    try:
        return zf.read(name)  # checks the member's CRC-32
    except KeyError:
        raise WeightsFileError(f"model file {filepath!r} lacks {name}") from None
    except Exception as exc:
        raise WeightsFileError(f"model file {filepath!r} is corrupted ({name}): {type(exc).__name__}: {exc}") \
            from exc


def _json_member(zf, name: str, filepath: str):
    import json
    data = _member(zf, name, filepath)
    try:
        return json.loads(data)
    except ValueError as exc:
        raise WeightsFileError(f"model file {filepath!r} is corrupted: {name} is not valid JSON ({exc})") from exc


def _as_shape(shape):
    # JSON turned the tuples into lists; a model with several inputs has a list of shapes.
    if shape and isinstance(shape[0], list):
        return [tuple(s) for s in shape]
    return tuple(shape)


def model_from_config(spec: Mapping[str, Any], custom_objects: Mapping[str, Any] | None = None):
    """An (unbound) model from ``{"class_name", "config", "build_input_shape"}``; weights freshly drawn.

    A class's own ``from_config(config[, custom_objects=...])`` is used when it
    has one; Sequential (and subclasses without one) are rebuilt layer by layer.
    """
    from .layers.base import Layer
    from .models import Sequential
    cls = _resolve("", spec["class_name"], _model_classes(), custom_objects, "model class")
    config = dict(spec["config"])
    with custom_object_scope(custom_objects):
        defining = next((c for c in cls.__mro__ if "from_config" in vars(c)), None)
        if issubclass(cls, Sequential) and (defining is None or not issubclass(defining, Sequential)):
            model = cls(name=config.get("name"), seed=config.get("seed"))
            for layer_spec in config.get("layers", []):
                model.add(deserialize_layer(layer_spec, custom_objects))
        elif defining is not None and defining is not Layer:
            factory = cls.from_config
            if "custom_objects" in inspect.signature(factory).parameters:
                model = factory(config, custom_objects=custom_objects)
            else:
                model = factory(config)
        else:
            raise SavingError(f"model class {spec['class_name']!r} has no from_config(config) classmethod, so "
                              "load_model cannot rebuild it; add one, or rebuild the model in code and use "
                              "load_weights")
    shape = spec.get("build_input_shape")
    if not model.built and shape is not None:
        model.build(_as_shape(shape))
    return model


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
    try:
        with open(filepath, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"no model file at {filepath!r}") from None
    zf = _open_model_zip(data, filepath)
    metadata = _json_member(zf, _METADATA, filepath)
    if metadata.get("format") != MODEL_FORMAT:
        raise WeightsFileError(f"{filepath!r} is not a unidl model file (format {metadata.get('format')!r})")
    if metadata.get("format_version", 0) > MODEL_FORMAT_VERSION:
        raise SavingError(f"{filepath!r} was written in model format version {metadata['format_version']} by "
                          f"unidl {metadata.get('unidl_version')}; this unidl reads versions up to "
                          f"{MODEL_FORMAT_VERSION}: upgrade unidl")
    spec = _json_member(zf, _CONFIG, filepath)
    compiled = _json_member(zf, _COMPILE, filepath) if _COMPILE in zf.namelist() else None
    weights = _read_npz(_member(zf, _WEIGHTS, filepath), f"the weights in model file {filepath!r}")
    optimizer_arrays = (_read_npz(_member(zf, _OPTIMIZER, filepath), f"the optimizer state in {filepath!r}")
                        if _OPTIMIZER in zf.namelist() else None)

    model = model_from_config(spec, custom_objects)
    _assign_all(_matched(model, weights, f"the weights in model file {filepath!r}"))
    if compile and compiled is not None:
        optimizer = (deserialize_optimizer(compiled["optimizer"], custom_objects)
                     if compiled.get("optimizer") else "rmsprop")
        loss = _map_structure(lambda s: deserialize_loss(s, custom_objects), compiled.get("loss"))
        metrics = _map_structure(lambda s: deserialize_metric(s, custom_objects), compiled.get("metrics"))
        extra = {"loss_weights": compiled["loss_weights"]} if compiled.get("loss_weights") is not None else {}
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics or None,
                      backend=backend or compiled["backend"], dtype=dtype or compiled["dtype"], device=device,
                      jit_compile=compiled.get("jit_compile", "auto"), **extra)
        if optimizer_arrays is not None and compiled.get("optimizer"):
            _restore_optimizer(model, optimizer_arrays, compiled.get("optimizer_iterations"), filepath)
    elif backend is not None:
        model.compile(backend=backend, dtype=dtype or (compiled or {}).get("dtype", "float32"), device=device)
    return model
