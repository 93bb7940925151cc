"""``unidl.compare``: one model on several backends, side by side, from the same weights.

::

    report = unidl.compare("examples/regression_mlp.py", backends=["numpy", "torch", "tensorflow"])
    print(report.table())
    assert report.passed()            # within CONVENTIONS.md's named tolerances
    report.plot("curves.png")         # needs matplotlib

    unidl compare examples/xor.py --steps 20 --plot curves.png --fail-above 1e-4

``unidl.compare`` is this package, made callable: ``unidl.compare(...)`` is
:func:`compare`, and ``from unidl.compare import CompareReport`` works too.
Its modules: ``sources`` (where the model and data come from), ``runs`` (the
runs and their differences), ``speed`` (timing and memory), ``report`` (the
numbers) and ``render`` (tables and plots).

The model is built once (its initial weights drawn from its seed), rounded to
the compared dtype, and every backend gets an exact copy: a ``clone()`` of the
same unbound model, compiled on that backend (compiling carries the weights).
The reference (NumPy in float64 by default) runs the same clones. Then, per
backend:

* forward: every layer's output on the first batch (``layer_outputs``), against
  the reference's; the first layer outside the named forward tolerance is
  reported as where the backends start to diverge;
* backward: the gradient of the compiled loss (plus regularization) for each
  trainable weight, on that batch, via ``unidl.value_and_grad``;
* training: ``steps`` optimizer steps (or ``epochs`` epochs) with ``fit``, the
  same batches in the same order (``shuffle=False``): the loss and metric of
  every step, and the difference of the final weights;
* speed and memory: median ms per training step (``fit`` epochs of
  ``timing_steps`` batches, ``repeats`` times after a warm-up, as ``unidl bench``
  does) and peak memory, each backend in its own subprocess so the memory is its
  own: the peak RSS while the model is built and trained minus the RSS before,
  with the framework loaded (Linux's VmHWM, reset at that point; ``ru_maxrss``
  elsewhere), or CUDA's peak allocation for torch on a GPU. A model that cannot
  be rebuilt in a subprocess (an object, or a function defined in ``__main__``)
  is measured in this process, with ``tracemalloc``. The report says which
  method gave each number.

Differences, for an output ``a`` and the reference's ``r``:

* ``max_abs`` = max |a - r|; ``max_rel`` = max |a - r| / max |r|
  (relative to the tensor's largest reference value, so zeros do not blow it up);
* ``err`` = max |a - r| / (1 + |r|): absolute for small values, relative for
  large ones. ``report.passed(tol)`` and ``--fail-above TOL`` check
  ``err <= tol`` everywhere, i.e. ``numpy.isclose(a, r, rtol=tol, atol=tol)``;
* ``ok``: within the named tolerance of CONVENTIONS.md for the dtype
  (``unidl.testing.tolerances``): FORWARD_*, GRAD_*, TRAJECTORY_* for the loss
  curve, and TRAINED_WEIGHTS_* (below) for the final weights.

Nothing here imports a framework; rich (tables) and matplotlib (plots) are
optional and imported only when used.
"""
from __future__ import annotations

import sys
import types

from .render import MATPLOTLIB_MISSING, matplotlib_available
from .report import BackendReport, CompareError, CompareReport, Diff, Speed
from .runs import TRAINED_WEIGHTS_F32, TRAINED_WEIGHTS_F64, compare, installed_backends, layer_outputs
from .sources import ModelSource, _split_data, load_source  # noqa: F401  (_split_data: tests)

__all__ = ["compare", "CompareReport", "CompareError", "BackendReport", "Diff", "Speed", "ModelSource",
           "load_source", "layer_outputs", "installed_backends", "TRAINED_WEIGHTS_F32", "TRAINED_WEIGHTS_F64",
           "MATPLOTLIB_MISSING", "matplotlib_available"]


class _CallableModule(types.ModuleType):
    """``unidl.compare(...)`` calls :func:`compare`; the package's other names stay reachable."""

    def __call__(self, *args, **kwargs) -> CompareReport:
        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
