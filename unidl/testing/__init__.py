"""unidl's conformance kit: prove a backend computes what the reference computes.

The kit is a pytest plugin, registered through the ``pytest11`` entry point
when unidl is installed. A backend author (built-in or a third-party plugin)
runs it against their backend with::

    pytest --pyargs unidl.testing --unidl-backend=NAME [--unidl-dtype=float32] [-k "softmax and grad"]

``--unidl-backend`` and ``--unidl-dtype`` repeat; ``--unidl-device=cuda:0``
runs the backends under test on that device (the NumPy reference stays on
the CPU). Without ``--unidl-backend`` the kit tests the backends named in
``$UNIDL_TEST_BACKENDS`` (comma or space separated), else every registered
backend whose framework is installed; without ``--unidl-dtype``, float32 and
float64. If autoloading of plugins is off (``PYTEST_DISABLE_PLUGIN_AUTOLOAD``),
add ``-p unidl`` (the entry point's name; ``-p unidl.testing.plugin`` would
register it twice when autoloading is on).

What runs (op level; layers, losses, optimizers and training follow as new families):

* ``test_op_forward``: every op of ``unidl.ops`` (primitives and composites),
  on a few sharp cases each (broadcasting, scalars, empty and size-1 axes,
  negative axes, keepdims, large |x|), against a closed-form NumPy reference:
  shape, then dtype, then values.
* ``test_op_grad``: the gradient of ``sum(op(x) * r)`` for a fixed random
  ``r``, through ``backend.grad_wrt_inputs``, against the NumPy backend in
  float64; at kinks and ties, against the convention that
  ``unidl.backend.PRIMITIVES`` fixes (relu'(0) = 0, max splits ties evenly...).
* ``test_op_grad_fd``: the NumPy reference itself against central finite
  differences (runs when numpy/float64 is among the targets).
* ``test_missing_op_raises_backend_error``: an op the backend lacks raises
  ``unidl.BackendError`` naming the backend and the op.

Tolerances are the named constants of :mod:`unidl.testing.tolerances`.

Each check of each case is its own pytest item, named
``test_op_grad[torch-float32-softmax-large]`` (backend-dtype-item-case), and
has a **check id** ``family:item:dtype:check:case``, e.g.
``op:softmax:float32:grad:large``. A backend declares what it cannot meet with
patterns over these ids (segments from the left, ``*`` for any one segment;
the most specific pattern wins)::

    class MyBackend(unidl.Backend):
        conformance_exclusions = {
            "op:erf": "no erf kernel on this device yet",
            "op:*:float64": "float64 runs are emulated; see issue 12",
        }
        conformance_tolerances = {
            "op:sigmoid:float32:forward": (1e-4, 1e-6, "the native kernel uses a fast exp"),
        }

An excluded check is skipped with its reason; a loosened tolerance replaces
the named default. Both are listed, with their reasons and how many checks
they touched, in the conformance summary that ends the pytest run, next to the
passed / failed / excluded counts of every backend and dtype.

The checks are plain functions too (:mod:`unidl.testing.checks`), usable
outside pytest: ``check_forward(backend, spec, case)`` with specs from
:mod:`unidl.testing.opspecs`.

A backend author's own extra tests can take the ``unidl_backend`` fixture
(no marker needed): they then run once per target, on the same session-wide
backend instances.

Adding a family of checks (layers, losses...): a spec module whose case
objects carry ``item`` and ``name``, check functions raising
``checks.ConformanceError``, and a ``test_conformance_<family>.py`` here
whose tests are marked with :func:`unidl.testing.kit.conformance_check`.
The plugin then does the rest: targets, ids, exclusions, the summary.
"""
