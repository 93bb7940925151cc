"""``to_categorical`` and ``normalize``: NumPy in, NumPy out, with Keras 3's signatures."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["to_categorical", "normalize"]


def _as_numpy(x: Any, argument: str) -> np.ndarray:
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        x = x.numpy()  # a framework tensor (torch, TensorFlow): its values, on the host
    try:
        return np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{argument} could not be turned into an array: {exc}") from exc


def to_categorical(x, num_classes: int | None = None) -> np.ndarray:
    """Class ids to one-hot rows: ``to_categorical([0, 2], 3)`` is ``[[1, 0, 0], [0, 0, 1]]``.

    Args:
        x: integer class ids (any shape; array-like or a framework tensor). A
            trailing axis of size 1 is dropped first, so labels of shape (n, 1)
            give (n, num_classes), not (n, 1, num_classes).
        num_classes: the number of classes; None (or 0) means ``max(x) + 1``.

    Returns:
        a float64 NumPy array of shape ``x.shape + (num_classes,)``, the class axis last.

    Unlike Keras, ids that are not class ids are refused with a ValueError:
    Keras truncates 1.7 to class 1, and wraps -1 around to the last class.
    """
    x = _as_numpy(x, "to_categorical: x")
    if x.dtype.kind == "b" or (x.dtype.kind not in "iuf" and x.size):
        raise ValueError(f"to_categorical: x must hold integer class ids, got dtype {x.dtype}")
    if x.dtype.kind == "f" and x.size:
        if not np.all(np.isfinite(x)) or np.any(x != np.round(x)):
            bad = x[~np.isfinite(x) | (x != np.round(x))].ravel()[0]
            raise ValueError(f"to_categorical: x must hold integer class ids, found {bad!r} (Keras would "
                             "truncate it to an integer; round or cast the labels first if that is meant)")
    shape = x.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    ids = x.reshape(-1).astype(np.int64)
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer))
                                    or num_classes < 0):
        raise ValueError(f"to_categorical: num_classes must be a positive integer or None, got "
                         f"num_classes={num_classes!r}")
    if ids.size and ids.min() < 0:
        raise ValueError(f"to_categorical: class ids must be >= 0, found {int(ids.min())} (Keras would wrap a "
                         "negative id around to a class counted from the end)")
    if not num_classes:
        if not ids.size:
            raise ValueError("to_categorical: x is empty, so num_classes cannot be inferred; pass num_classes")
        num_classes = int(ids.max()) + 1
    num_classes = int(num_classes)
    if ids.size and ids.max() >= num_classes:
        raise ValueError(f"to_categorical: class id {int(ids.max())} is out of range for num_classes="
                         f"{num_classes} (ids must be 0..{num_classes - 1})")
    categorical = np.zeros((ids.size, num_classes))
    categorical[np.arange(ids.size), ids] = 1.0
    return categorical.reshape(shape + (num_classes,))


def normalize(x, axis: int | None = -1, order=2) -> np.ndarray:
    """``x`` divided by its ``order``-norm along ``axis`` (rows whose norm is 0 stay as they are).

    Args:
        x: the array (array-like or a framework tensor; a NumPy array comes back).
        axis: the axis along which the norm is taken (default the last); None: the
            whole array as one vector.
        order: the norm's order, as ``np.linalg.norm``'s ``ord`` for vectors (2: Euclidean, 1, np.inf...).

    Returns:
        a normalized copy: float arrays keep their dtype, integers become float64.

    Like ``keras.utils.normalize`` for NumPy input, except that any axis works
    (Keras 3.15 broadcasts the norms against the wrong axis for ``axis=0``).
    """
    x = _as_numpy(x, "normalize: x")
    if x.dtype.kind not in "iuf":
        raise ValueError(f"normalize: x must be numeric, got dtype {x.dtype}")
    if axis is None:
        norm = np.asarray(np.linalg.norm(x.reshape(-1), ord=order))
    else:
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"normalize: axis must be an integer or None, got axis={axis!r}")
        if x.ndim == 0 or not -x.ndim <= axis < x.ndim:
            raise ValueError(f"normalize: axis={axis} is out of range for an array of shape {x.shape}")
        norm = np.linalg.norm(x, ord=order, axis=int(axis), keepdims=True)
    norm = np.where(norm == 0, np.ones((), norm.dtype), norm)
    return x / norm
