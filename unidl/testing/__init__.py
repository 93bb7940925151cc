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

What runs, family by family (each check of each case is its own pytest item,
so one failure never hides another):

* ``op`` -- every op of ``unidl.ops`` (primitives and composites), on a few
  sharp cases each (broadcasting, scalars, empty and size-1 axes, negative
  axes, keepdims, large |x|):

  - ``test_op_forward``: against a closed-form NumPy reference: shape, then
    dtype, then values;
  - ``test_op_grad``: the gradient of ``sum(op(x) * r)`` for a fixed random
    ``r``, through ``backend.grad_wrt_inputs``, against the NumPy backend in
    float64; at kinks and ties, against the convention that
    ``unidl.backend.PRIMITIVES`` fixes (relu'(0) = 0, max splits ties evenly...);
  - ``test_op_grad_fd``: the NumPy reference itself against central finite
    differences (runs when numpy/float64 is among the targets);
  - ``test_missing_op_raises_backend_error`` (id ``error:missing_op``): an op
    the backend lacks raises ``unidl.BackendError`` naming the backend and the op.

* ``activation:<name>`` -- every name of ``unidl.activations.BUILTINS`` (cases
  ``basic``, ``wide`` for large |x|, and keyword variants): forward, and the
  gradient w.r.t. the input (``sum(act(x) * r)``), vs the reference.
* ``loss:<config>`` -- each loss class in its configurations (``bce``,
  ``bce_logits``, ``bce_smoothing``, ``cce_logits``, ``huber_delta0.5``...),
  the case being the reduction: ``mean``, ``sum``, ``none``, ``weighted``
  (a sample_weight): the value and the gradient w.r.t. y_pred, vs the reference.
* ``layer:<class>`` -- every class of ``unidl.layers.BUILTINS`` (Dense with an
  activation, without bias, with regularizers; Dropout at inference and in
  training, whose masks come from unidl's seeded generator...), built from the
  same seed on both sides: forward (plus the regularization penalty and the
  state of non-trainable weights after the call), and ``backend.value_and_grad``
  w.r.t. the input and every trainable weight, vs the reference.
* ``optimizer:<config>`` -- three ``optimizer.apply`` steps (SGD plain /
  momentum / nesterov, Adam, amsgrad, AdamW, RMSprop plain / centered /
  momentum, Adagrad, clipnorm, clipvalue, global_clipnorm) from the same
  variables with the same gradients, vs the reference, step by step.
* ``fused:<rule>`` -- the same steps on one backend with its native kernels
  (``Backend.fused_update``) vs ``optimizer.use_native_kernels = False``; the
  case is the optimizer config. A backend whose ``fused_update`` declines a
  config passes trivially and the summary notes it as "generic only".
* ``training:<example>`` -- the README models (regression MLP, XOR, a softmax
  classifier, one with Dropout) trained 20 ``fit`` steps from the same seed and
  data: every step's loss and the final weights, vs the reference.
* ``compiled:<example>`` -- the same training with ``jit_compile=False`` vs the
  default ``"auto"`` (which lets ``Backend.compile_step`` run: tf.function on
  TensorFlow). Runs where ``compile_step`` is the base default too (noted).
* ``error:<case>`` -- the same bad input raises the same exception type on
  every backend: the documented type (the case segment of the id, e.g.
  ``error:fit_label_shape:float32:raises:LossInputError``) and the reference's.
* ``error:primitives`` (``test_backend_implements_every_primitive``) -- the
  backend implements every op of ``unidl.backend.PRIMITIVES``; a failure names
  each missing op at once.
* ``mixed:<half dtype>`` -- on float32 targets, for each dtype the backend lists in
  ``mixed_precision_dtypes`` (skipped otherwise): small dense, convolutional and
  recurrent models under ``dtype_policy="mixed_<dtype>"``, forward and one SGD
  step vs the float64 reference (FORWARD_BF16 / FORWARD_F16), float32 master
  weights kept, and proof the forward pass really ran in the half dtype.

Comparing the reference with itself proves nothing, so on NumPy float64 the
activation, loss and layer families check the gradients against central
finite differences instead (check ``fd``), and the optimizer and training
families leave it out; ``fused``, ``compiled`` and ``error`` run everywhere.

Tolerances are the named constants of :mod:`unidl.tolerances` (re-exported by
:mod:`unidl.testing.tolerances`, which adds the backends' declared overrides).
Finite differences, in the kit and in unidl's own tests, come from one helper:
:func:`unidl.testing.gradcheck.central_differences`.

Each check of each case is its own pytest item, named
``test_op_grad[torch-float32-softmax-large]`` (backend-dtype-item-case), and
has a **check id** ``family:item:dtype:check:case``, e.g.
``op:softmax:float32:grad:large``, ``loss:bce_logits:float64:grad:weighted``,
``fused:adam:float32:trajectory:adam_amsgrad``,
``compiled:xor:float32:trajectory:20_steps``. The checks are ``forward``,
``grad``, ``fd``, ``trajectory`` (optimizer, fused, training, compiled) and
``raises``. A backend declares what it cannot meet with patterns over these
ids (segments from the left, ``*`` for any one segment; the most specific
pattern wins)::

    class MyBackend(unidl.Backend):
        conformance_exclusions = {
            "op:erf": "no erf kernel on this device yet",
            "op:*:float64": "float64 runs are emulated; see issue 12",
            "layer:Dropout:*:*:training": "masks come from the device RNG",
            "compiled": "the graph compiler reorders reductions; see issue 31",
        }
        conformance_tolerances = {
            "op:sigmoid:float32:forward": (1e-4, 1e-6, "the native kernel uses a fast exp"),
            "training:*:float32": (1e-2, 1e-5, "TF32 matmuls on this device"),
        }

An excluded check is skipped with its reason; a loosened tolerance replaces
the named default. Both are listed, with their reasons and how many checks
they touched, in the conformance summary that ends the pytest run, next to the
passed / failed / excluded counts of every backend and dtype, the same counts
per family, and the notes (e.g. "generic only" fused rules).

A failure's first line (what pytest's one-line summary shows) is the whole
verdict: the backend, dtype, item, case and its input shapes, what was
compared ("forward", "grad of input 1", "grad of kernel"), then the shape,
the dtype, and for values the max abs and max rel error against the named
tolerance with its rtol/atol::

    backend 'jax' (float64), op 'exp', case 'basic' [inputs [(3, 4) in [-2, 2)]]: forward:
    shape (3, 4), dtype float64: 12 of 12 values outside FORWARD_F64 (rtol=1e-10, atol=1e-12):
    max abs err 2.23e-07, max rel err 5.36e-08

The summary lists the failures **by root op**. The kit records which ops each
check called (:mod:`unidl.testing.recording`); an op failing its own checks
is a root, and a later failure of another check (a layer, a loss, a training
run, a composite op) that called a failing op is listed under it as "caused
by op X" rather than as a failure of its own; only the rest are listed as
independent (:mod:`unidl.testing.rootcause`). Fix the root ops first.

Right after collection an **accuracy probe** runs a few ops (matmul, exp,
log, tanh, sum) on each target and compares them with NumPy in float64
(:mod:`unidl.testing.probe`). When a target's results are only as accurate as
a coarser precision (float64 kernels that compute in float32; float32
matmuls in TF32), it prints a warning naming the ops and their errors, before
the first check and again in the summary. The probe never fails a run.

The checks are plain functions too, usable outside pytest:
``checks.check_forward(backend, spec, case)`` with specs from
:mod:`unidl.testing.opspecs`; ``blockchecks.check_grad(backend, None,
"layer", case)`` with cases from :mod:`unidl.testing.blockspecs`;
``trainchecks.check_fused(backend, case)``, ``check_compiled``,
``check_training``, ``check_raises`` with cases from
:mod:`unidl.testing.trainspecs`. Each raises ``checks.ConformanceError``
naming the backend, dtype, family, item, case, what was compared and the max
abs/rel error against the named tolerance.

A backend author's own extra tests can take the ``unidl_backend`` fixture
(no marker needed): they then run once per target, on the same session-wide
backend instances.

A test may also take ``unidl_note``: ``unidl_note(topic, subject)`` puts a
remark (not a failure) in the summary, grouped by backend and topic.

Adding a family of checks: a spec module whose case objects carry ``item``
and ``name``, check functions raising ``checks.ConformanceError``, and a
``test_conformance_<family>.py`` here whose tests are marked with
:func:`unidl.testing.kit.conformance_check`. The plugin then does the rest:
targets, ids, exclusions, the summary.
"""
