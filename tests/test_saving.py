"""unidl.saving: weights and model files, portable across backends, atomic, validated, never pickle."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

import unidl
from unidl import layers, saving, schedules
from unidl.layers import Layer
from unidl.saving import SavingError, UnknownObjectError, WeightsFileError, WeightsMismatchError
from unidl.testing.tolerances import FORWARD_F32

REPO = Path(__file__).resolve().parent.parent


def needs(module: str):
    return pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"{module} is not installed")


BACKENDS = ["numpy", pytest.param("torch", marks=needs("torch")),
            pytest.param("tensorflow", marks=needs("tensorflow"))]
FORMATS = ["npz", pytest.param("safetensors", marks=needs("safetensors"))]

X = np.random.default_rng(42).normal(size=(12, 5)).astype("float32")
Y = np.random.default_rng(43).normal(size=(12, 3)).astype("float32")


def make_model(seed=0, backend="numpy", hidden=8, extra_layer=False, **compile_kwargs):
    stack = [layers.Dense(hidden, activation="tanh", input_shape=(5,))]
    if extra_layer:
        stack.append(layers.Dense(hidden, activation="relu"))
    stack.append(layers.Dense(3))
    model = unidl.Sequential(stack, seed=seed)
    model.compile(**{"optimizer": "adam", "loss": "mse", "backend": backend, **compile_kwargs})
    return model


def trained(backend="numpy", **kwargs):
    """A model whose weights no longer equal any seed's initial draw."""
    model = make_model(backend=backend, **kwargs)
    model.fit(X, Y, epochs=3, batch_size=4, verbose=0)
    return model


def assert_same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------- weights files

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_weights_round_trip(tmp_path, backend, fmt):
    source = trained(backend)
    path = tmp_path / f"w.{fmt}"
    saving.save_weights(source, path)
    target = make_model(seed=1, backend=backend)  # different initial weights
    assert not np.array_equal(target.get_weights()[0], source.get_weights()[0])
    saving.load_weights(target, path)
    assert_same_weights(target, source)
    np.testing.assert_array_equal(target.predict(X), source.predict(X))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("src, dst", [
    pytest.param(s, d, marks=[needs(m) for m in {s, d} - {"numpy"}])
    for s in ("numpy", "torch", "tensorflow") for d in ("numpy", "torch", "tensorflow") if s != d])
def test_file_from_one_backend_loads_on_another(tmp_path, src, dst, fmt):
    source = trained(src)
    path = tmp_path / f"w.{fmt}"
    saving.save_weights(source, path)
    target = make_model(seed=1, backend=dst)
    saving.load_weights(target, path)
    assert_same_weights(target, source)  # bit for bit: float32 in, float32 out
    np.testing.assert_allclose(target.predict(X), source.predict(X), rtol=FORWARD_F32.rtol, atol=FORWARD_F32.atol)


def test_npz_file_is_plain_numpy_without_pickle(tmp_path):
    model = trained()
    path = tmp_path / "w.npz"
    saving.save_weights(model, path)
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == sorted(w.name for w in model.weights)
        assert sorted(data.files) == ["dense/bias", "dense/kernel", "dense_1/bias", "dense_1/kernel"]
        for w in model.weights:
            np.testing.assert_array_equal(data[w.name], w.numpy())


@needs("safetensors")
def test_safetensors_file_is_readable_by_safetensors_itself(tmp_path):
    from safetensors.numpy import load_file
    model = trained()
    path = tmp_path / "w.safetensors"
    saving.save_weights(model, path)
    tensors = load_file(str(path))
    assert sorted(tensors) == sorted(w.name for w in model.weights)
    for w in model.weights:
        np.testing.assert_array_equal(tensors[w.name], w.numpy())


@needs("safetensors")
def test_safetensors_from_another_tool_loads_without_checksum(tmp_path):
    from safetensors.numpy import save_file
    model = trained()
    save_file({w.name: w.numpy() for w in model.weights}, str(tmp_path / "plain.safetensors"))
    target = make_model(seed=1)
    saving.load_weights(target, tmp_path / "plain.safetensors")
    assert_same_weights(target, model)


def test_missing_safetensors_package_gives_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)  # makes `import safetensors` raise ImportError
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match="pip install safetensors"):
        saving.save_weights(trained(), tmp_path / "w.safetensors")
    assert not (tmp_path / "w.safetensors").exists()


def test_saving_is_deterministic(tmp_path):
    model = trained()
    saving.save_weights(model, tmp_path / "a.npz")
    saving.save_weights(model, tmp_path / "b.npz")
    saving.save_model(model, tmp_path / "a.unidl")
    saving.save_model(model, tmp_path / "b.unidl")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert (tmp_path / "a.unidl").read_bytes() == (tmp_path / "b.unidl").read_bytes()


def test_new_file_gets_the_mode_open_would_give(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    saving.save_weights(trained(), tmp_path / "w.npz")
    assert (tmp_path / "w.npz").stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]  # no temporary file left behind


@pytest.mark.skipif(not hasattr(unidl.Model, "save"), reason="Model.save/save_weights/load_weights not wired yet")
def test_model_methods_are_the_saving_functions(tmp_path):
    model = trained()
    model.save_weights(tmp_path / "w.npz")
    model.save(tmp_path / "m.unidl")
    target = make_model(seed=1)
    target.load_weights(tmp_path / "w.npz")
    assert_same_weights(target, model)
    assert_same_weights(unidl.load_model(tmp_path / "m.unidl"), model)


# ------------------------------------------------------------- load failures

def _flip_byte_inside(path: Path, needle: bytes) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(needle)
    assert at >= 0, "the array's bytes should be stored verbatim"
    data[at + len(needle) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def victim():
    """A model whose weights must survive every failed load untouched."""
    model = trained(hidden=8)
    return model, [w.copy() for w in model.get_weights()]


def assert_unchanged(model, before):
    for now, then in zip(model.get_weights(), before):
        np.testing.assert_array_equal(now, then)


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_file_is_refused(tmp_path, victim, fmt):
    model, before = victim
    path = tmp_path / f"w.{fmt}"
    saving.save_weights(make_model(seed=3), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsFileError, match="truncated or corrupted"):
        saving.load_weights(model, path)
    assert_unchanged(model, before)


@pytest.mark.parametrize("fmt", FORMATS)
def test_corrupted_bytes_are_detected(tmp_path, victim, fmt):
    model, before = victim
    source = make_model(seed=3)
    path = tmp_path / f"w.{fmt}"
    saving.save_weights(source, path)
    kernel = source.get_weights()[0]
    _flip_byte_inside(path, np.ascontiguousarray(kernel, dtype=kernel.dtype.newbyteorder("<")).tobytes())
    # npz: zip's CRC-32; safetensors: the SHA-256 unidl keeps in the header metadata.
    with pytest.raises(WeightsFileError, match="corrupted"):
        saving.load_weights(model, path)
    assert_unchanged(model, before)


@pytest.mark.parametrize("fmt", FORMATS)
def test_other_layer_count_is_refused_naming_the_weights(tmp_path, victim, fmt):
    model, before = victim
    path = tmp_path / f"w.{fmt}"
    saving.save_weights(make_model(seed=3, extra_layer=True), path)  # 3 Dense layers instead of 2
    with pytest.raises(WeightsMismatchError) as err:
        saving.load_weights(model, path)
    message = str(err.value)
    assert "dense_2/kernel" in message and "dense_2/bias" in message
    assert "6 weights, the model 4" in message and "nothing was loaded" in message
    assert_unchanged(model, before)


@pytest.mark.parametrize("fmt", FORMATS)
def test_shape_mismatch_names_layer_weight_and_both_shapes(tmp_path, victim, fmt):
    model, before = victim
    path = tmp_path / f"w.{fmt}"
    saving.save_weights(make_model(seed=3, hidden=6), path)
    with pytest.raises(WeightsMismatchError) as err:
        saving.load_weights(model, path)
    message = str(err.value)
    assert "weight 'dense/kernel' of layer 'dense'" in message
    assert "the model has shape (5, 8), the file has shape (5, 6)" in message
    assert "weight 'dense_1/kernel' of layer 'dense_1'" in message  # every problem, not only the first
    assert_unchanged(model, before)


def test_files_that_are_not_weights_are_refused(tmp_path, victim):
    model, before = victim
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "text.npz").write_text("hello, I am not an archive\n")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(WeightsFileError, match="empty"):
        saving.load_weights(model, tmp_path / "empty.npz")
    with pytest.raises(WeightsFileError, match="neither an .npz archive nor a safetensors"):
        saving.load_weights(model, tmp_path / "text.npz")
    with pytest.raises(WeightsFileError):
        saving.load_weights(model, tmp_path / "single.npy")
    with pytest.raises(FileNotFoundError, match="no weights file"):
        saving.load_weights(model, tmp_path / "missing.npz")
    assert_unchanged(model, before)


def test_an_assignment_failing_half_way_is_rolled_back(tmp_path, victim, monkeypatch):
    model, before = victim
    saving.save_weights(make_model(seed=3), tmp_path / "w.npz")
    original = unidl.Variable.assign
    calls = []

    def failing_assign(self, value):
        calls.append(self.name)
        if len(calls) == 3:  # two weights already overwritten by then
            raise RuntimeError("device lost")
        return original(self, value)

    monkeypatch.setattr(unidl.Variable, "assign", failing_assign)
    with pytest.raises(RuntimeError, match="device lost"):
        saving.load_weights(model, tmp_path / "w.npz")
    monkeypatch.setattr(unidl.Variable, "assign", original)
    assert_unchanged(model, before)


def test_save_refusals(tmp_path):
    model = trained()
    with pytest.raises(SavingError, match=r"\.npz or \.safetensors"):
        saving.save_weights(model, tmp_path / "w.weights.h5")
    saving.save_weights(model, tmp_path / "w.npz")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        saving.save_weights(model, tmp_path / "w.npz", overwrite=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        saving.save_weights(model, tmp_path / "no" / "such" / "dir" / "w.npz")
    unbuilt = unidl.Sequential([layers.Dense(2)])
    with pytest.raises(RuntimeError, match="not built"):
        saving.save_weights(unbuilt, tmp_path / "u.npz")


def test_failed_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "w.npz"
    old = make_model(seed=0)
    saving.save_weights(old, path)
    old_bytes = path.read_bytes()
    original = np.lib.format.write_array
    calls = []

    def write_then_fail(fp, array, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return original(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        saving.save_weights(make_model(seed=1), path)
    assert path.read_bytes() == old_bytes
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]


# ------------------------------------------------------- atomicity under SIGKILL

CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    import unidl
    from unidl import layers, saving

    kind, path, stage = sys.argv[1:4]
    model = unidl.Sequential([layers.Dense(256, input_shape=(128,)), layers.Dense(256), layers.Dense(3)], seed=1)

    def hang(where):
        print(where, flush=True)
        time.sleep(120)

    if stage == "mid-write":  # after the first array, while the file is half written
        original, calls = np.lib.format.write_array, []
        def write_array(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                hang("mid-write")
            return original(*args, **kwargs)
        np.lib.format.write_array = write_array
    else:  # everything written, before the rename
        import os
        real_fsync = os.fsync
        def fsync(fd):
            real_fsync(fd)
            hang("before-rename")
        os.fsync = fsync
    if kind == "model":
        saving.save_model(model, path)
    else:
        saving.save_weights(model, path)
""")


def _big_model(seed):
    return unidl.Sequential([layers.Dense(256, input_shape=(128,)), layers.Dense(256), layers.Dense(3)], seed=seed)


@pytest.mark.parametrize("kind, stage", [
    ("npz", "mid-write"), ("npz", "before-rename"), ("model", "mid-write"), ("model", "before-rename"),
    pytest.param("safetensors", "before-rename", marks=needs("safetensors"))])
def test_killed_save_leaves_the_previous_file_intact(tmp_path, kind, stage):
    path = tmp_path / {"npz": "w.npz", "safetensors": "w.safetensors", "model": "m.unidl"}[kind]
    previous = _big_model(seed=0)
    (saving.save_model if kind == "model" else saving.save_weights)(previous, path)
    previous_bytes = path.read_bytes()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "backends"),
                                                         os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, str(script), kind, str(path), stage],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = child.stdout.readline().strip()
        assert line == stage, f"child did not reach {stage}: {line!r} {child.stderr.read() if child.poll() else ''}"
        # The new data really is on disk, next to the target, when the process dies.
        temporaries = [p for p in tmp_path.iterdir() if p.name.startswith(f".{path.name}.")]
        assert len(temporaries) == 1 and temporaries[0].stat().st_size > 0
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    assert path.read_bytes() == previous_bytes
    if kind == "model":
        loaded = saving.load_model(path)
    else:
        loaded = _big_model(seed=5)
        saving.load_weights(loaded, path)
    assert_same_weights(loaded, previous)


# --------------------------------------------------------------- model files

def test_model_file_holds_only_json_and_npz(tmp_path):
    model = trained(metrics=["mae"])
    path = tmp_path / "m.unidl"
    saving.save_model(model, path)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert names == ["metadata.json", "config.json", "compile.json", "model.weights.npz", "optimizer.npz"]
        config = json.loads(zf.read("config.json"))
        compiled = json.loads(zf.read("compile.json"))
        metadata = json.loads(zf.read("metadata.json"))
        for name in ("model.weights.npz", "optimizer.npz"):
            zf.extract(name, tmp_path)
            with np.load(tmp_path / name, allow_pickle=False) as data:
                assert all(data[k].dtype.kind == "f" for k in data.files)
    assert config["class_name"] == "Sequential" and config["config"] == json.loads(json.dumps(model.get_config()))
    assert config["build_input_shape"] == [None, 5]
    assert compiled["optimizer"]["class_name"] == "Adam"
    assert compiled["loss"] == "mse"  # a name stays the name compile() was given
    assert compiled["metrics"] == ["mae"] and compiled["backend"] == "numpy" and compiled["dtype"] == "float32"
    assert metadata["format"] == "unidl.model" and metadata["unidl_version"] == unidl.__version__


def test_model_round_trip_restores_compile_config_and_optimizer_state(tmp_path):
    model = make_model(optimizer=unidl.optimizers.Adam(learning_rate=0.01, beta_1=0.8, amsgrad=True),
                       loss=unidl.losses.Huber(delta=0.5), metrics=["mae"])
    model.fit(X, Y, epochs=2, batch_size=4, verbose=0, shuffle=False)
    path = tmp_path / "m.unidl"
    saving.save_model(model, path)
    loaded = saving.load_model(path)
    assert type(loaded) is unidl.Sequential and loaded.get_config() == model.get_config()
    assert_same_weights(loaded, model)
    assert loaded.backend.name == "numpy" and loaded.backend.dtype == "float32"
    assert type(loaded.optimizer) is unidl.optimizers.Adam
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.iterations == model.optimizer.iterations == 6
    assert isinstance(loaded.loss, unidl.losses.Huber) and loaded.loss.delta == 0.5
    assert loaded.evaluate(X, Y, verbose=0) == model.evaluate(X, Y, verbose=0)
    # Same Adam moments and step count: training on gives the very same weights.
    model.fit(X, Y, epochs=2, batch_size=4, verbose=0, shuffle=False)
    loaded.fit(X, Y, epochs=2, batch_size=4, verbose=0, shuffle=False)
    assert_same_weights(loaded, model)


def test_without_optimizer_state_training_on_differs(tmp_path):
    """The control for the test above: a fresh Adam state does change the next steps."""
    model = make_model()
    model.fit(X, Y, epochs=2, batch_size=4, verbose=0, shuffle=False)
    saving.save_model(model, tmp_path / "m.unidl", include_optimizer=False)
    loaded = saving.load_model(tmp_path / "m.unidl")
    assert loaded.optimizer.iterations == 0
    model.fit(X, Y, epochs=1, batch_size=4, verbose=0, shuffle=False)
    loaded.fit(X, Y, epochs=1, batch_size=4, verbose=0, shuffle=False)
    assert not np.array_equal(loaded.get_weights()[0], model.get_weights()[0])


@pytest.mark.parametrize("backend", [pytest.param("torch", marks=needs("torch")),
                                     pytest.param("tensorflow", marks=needs("tensorflow"))])
def test_model_saved_from_numpy_predicts_the_same_on_other_backends(tmp_path, backend):
    model = trained(metrics=["mae"])
    saving.save_model(model, tmp_path / "m.unidl")
    loaded = saving.load_model(tmp_path / "m.unidl", backend=backend)
    assert loaded.backend.name == backend
    assert_same_weights(loaded, model)
    np.testing.assert_allclose(loaded.predict(X), model.predict(X), rtol=FORWARD_F32.rtol, atol=FORWARD_F32.atol)
    loaded.fit(X, Y, epochs=1, verbose=0)  # compiled: optimizer, loss and metrics came along
    assert set(loaded.history.history) == {"loss", "mae"}


def test_uncompiled_model_loads_unbound_or_on_the_backend_asked(tmp_path):
    model = unidl.Sequential([layers.Input((5,)), layers.Dense(4, activation="relu"), layers.Dropout(0.25),
                              layers.Dense(2)], seed=7)
    saving.save_model(model, tmp_path / "m.unidl")
    with zipfile.ZipFile(tmp_path / "m.unidl") as zf:
        assert "compile.json" not in zf.namelist()
    loaded = saving.load_model(tmp_path / "m.unidl")
    assert loaded.backend is None and loaded.get_config() == model.get_config()
    assert_same_weights(loaded, model)
    bound = saving.load_model(tmp_path / "m.unidl", backend="numpy", dtype="float64")
    model.compile(backend="numpy", dtype="float64")
    np.testing.assert_array_equal(bound.predict(X), model.predict(X))


def test_model_built_by_fit_is_rebuilt_from_its_input_shape(tmp_path):
    model = unidl.Sequential([layers.Dense(4), layers.Dense(3)], seed=0)  # no input shape declared
    model.compile(optimizer="sgd", loss="mse")
    model.fit(X, Y, epochs=1, verbose=0)
    saving.save_model(model, tmp_path / "m.unidl")
    loaded = saving.load_model(tmp_path / "m.unidl")
    assert loaded.built and loaded.input_shape == (None, 5)
    assert_same_weights(loaded, model)


def test_learning_rate_schedule_is_saved_by_config(tmp_path):
    lr = schedules.CosineDecay(0.1, decay_steps=50, alpha=0.1, warmup_target=0.2, warmup_steps=3)
    model = trained(optimizer=unidl.optimizers.SGD(learning_rate=lr, momentum=0.9))
    saving.save_model(model, tmp_path / "m.unidl")
    loaded = saving.load_model(tmp_path / "m.unidl")
    restored = loaded.optimizer.learning_rate
    assert isinstance(restored, schedules.CosineDecay) and restored.get_config() == lr.get_config()
    assert loaded.optimizer.current_learning_rate == model.optimizer.current_learning_rate


def test_load_weights_reads_a_model_file(tmp_path):
    model = trained()
    saving.save_model(model, tmp_path / "m.unidl")
    target = make_model(seed=9)
    saving.load_weights(target, tmp_path / "m.unidl")
    assert_same_weights(target, model)


def test_corrupted_model_file_is_refused(tmp_path):
    model = trained()
    path = tmp_path / "m.unidl"
    saving.save_model(model, path)
    kernel = model.get_weights()[0]
    _flip_byte_inside(path, kernel.tobytes())
    with pytest.raises(WeightsFileError, match="corrupted"):
        saving.load_model(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(WeightsFileError, match="truncated or corrupted"):
        saving.load_model(path)
    saving.save_weights(model, tmp_path / "w.npz")
    with pytest.raises(WeightsFileError, match="not a unidl model file"):
        saving.load_model(tmp_path / "w.npz")


# ------------------------------------------------------ custom and unknown classes

class Scale(Layer):
    """y = x * factor * s, with one trainable scale per feature."""

    def __init__(self, factor: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.s = self.add_weight("s", (input_shape[-1],), initializer="ones")

    def call(self, inputs):
        return unidl.ops.multiply(unidl.ops.multiply(inputs, self.s), self.factor)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def scaled_model():
    model = unidl.Sequential([layers.Dense(4, input_shape=(5,)), Scale(2.5), layers.Dense(3)], seed=0)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(X, Y, epochs=2, verbose=0)  # the scales move away from 1
    return model


def test_custom_layer_loads_with_custom_objects(tmp_path):
    model = scaled_model()
    saving.save_model(model, tmp_path / "m.unidl")
    loaded = saving.load_model(tmp_path / "m.unidl", custom_objects={"Scale": Scale})
    assert isinstance(loaded.layers[1], Scale) and loaded.layers[1].factor == 2.5
    assert_same_weights(loaded, model)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_unknown_layer_class_says_how_to_fix_it(tmp_path):
    saving.save_model(scaled_model(), tmp_path / "m.unidl")
    with pytest.raises(UnknownObjectError) as err:
        saving.load_model(tmp_path / "m.unidl")
    message = str(err.value)
    assert "unknown layer class 'Scale'" in message
    assert "custom_objects={'Scale': Scale}" in message and "unidl_register_layers" in message


def test_plugin_registered_layer_is_found_by_name(tmp_path):
    from unidl import hookimpl
    from unidl.registry import REGISTRY

    class LayersPlugin:
        @hookimpl
        def unidl_register_layers(self, register):
            register("Scale", Scale)

    saving.save_model(scaled_model(), tmp_path / "m.unidl")
    REGISTRY.register_plugin(LayersPlugin(), "test-saving-layers")
    try:
        loaded = saving.load_model(tmp_path / "m.unidl")
    finally:
        REGISTRY.unregister_plugin("test-saving-layers")
    assert isinstance(loaded.layers[1], Scale)


def test_layers_added_to_builtins_later_are_found(tmp_path, monkeypatch):
    saving.save_model(scaled_model(), tmp_path / "m.unidl")
    monkeypatch.setitem(unidl.layers.BUILTINS, "Scale", Scale)  # as the lead extends BUILTINS
    assert isinstance(saving.load_model(tmp_path / "m.unidl").layers[1], Scale)


def weighted_mse(y_true, y_pred):
    return unidl.ops.mean(unidl.ops.square(unidl.ops.subtract(y_pred, y_true)), axis=-1)


def test_named_loss_function_needs_custom_objects(tmp_path):
    model = make_model(loss=weighted_mse, metrics=[weighted_mse])
    saving.save_model(model, tmp_path / "m.unidl")
    with pytest.raises(UnknownObjectError, match="weighted_mse"):
        saving.load_model(tmp_path / "m.unidl")
    loaded = saving.load_model(tmp_path / "m.unidl", custom_objects={"weighted_mse": weighted_mse})
    assert loaded.evaluate(X, Y, verbose=0) == model.evaluate(X, Y, verbose=0)


def test_lambda_loss_saves_without_compile_config_and_warns(tmp_path):
    model = make_model(loss=lambda t, p: unidl.ops.mean(unidl.ops.abs(unidl.ops.subtract(p, t)), axis=-1))
    with pytest.warns(UserWarning, match="without its compile configuration"):
        saving.save_model(model, tmp_path / "m.unidl")
    loaded = saving.load_model(tmp_path / "m.unidl")
    assert loaded.backend is None
    assert_same_weights(loaded, model)


def test_model_without_get_config_cannot_be_saved(tmp_path):
    class Net(unidl.Model):
        def __init__(self):
            super().__init__(seed=0)
            self.dense = layers.Dense(2)

        def call(self, inputs, training=False):
            return self.dense(inputs)

    net = Net()
    net.build((None, 5))
    with pytest.raises(SavingError, match="get_config"):
        saving.save_model(net, tmp_path / "m.unidl")
    assert not (tmp_path / "m.unidl").exists()
    saving.save_weights(net, tmp_path / "w.npz")  # weights alone are fine


# ------------------------------------------------- nested and functional models

def nested_model():
    encoder = unidl.Sequential([layers.Dense(4, activation="tanh", input_shape=(5,))], seed=1, name="encoder")
    model = unidl.Sequential([encoder, layers.Dense(3)], seed=2)  # both have a layer named "dense"
    model.compile(optimizer="adam", loss="mse")
    model.fit(X, Y, epochs=2, verbose=0)
    return model


def test_nested_model_weights_are_keyed_by_path(tmp_path):
    model = nested_model()
    assert [w.name for w in model.weights].count("dense/kernel") == 2  # variable names alone would collide
    saving.save_weights(model, tmp_path / "w.npz")
    with np.load(tmp_path / "w.npz", allow_pickle=False) as data:
        assert sorted(data.files) == ["dense/bias", "dense/kernel", "encoder/dense/bias", "encoder/dense/kernel"]
        np.testing.assert_array_equal(data["encoder/dense/kernel"], model.layers[0].weights[0].numpy())
    target = nested_model()
    target.set_weights([np.zeros_like(w) for w in target.get_weights()])
    saving.load_weights(target, tmp_path / "w.npz")
    assert_same_weights(target, model)


def test_nested_model_round_trips_through_a_model_file(tmp_path):
    model = nested_model()
    saving.save_model(model, tmp_path / "m.unidl")
    loaded = saving.load_model(tmp_path / "m.unidl")
    assert isinstance(loaded.layers[0], unidl.Sequential) and loaded.layers[0].name == "encoder"
    assert loaded.get_config() == model.get_config()
    assert_same_weights(loaded, model)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    model.fit(X, Y, epochs=1, verbose=0, shuffle=False)  # the optimizer state came along too
    loaded.fit(X, Y, epochs=1, verbose=0, shuffle=False)
    assert_same_weights(loaded, model)


@pytest.mark.parametrize("backend", BACKENDS)
def test_functional_model_weights_round_trip(tmp_path, backend):
    def build(seed):
        inputs = layers.Input((5,))
        hidden = layers.Dense(4, activation="relu")(inputs)
        model = unidl.Model(inputs, [layers.Dense(1, name="a")(hidden), layers.Dense(2, name="b")(hidden)],
                            seed=seed)
        model.compile(backend=backend)
        return model

    source, target = build(0), build(1)
    saving.save_weights(source, tmp_path / "w.npz")
    saving.load_weights(target, tmp_path / "w.npz")
    assert_same_weights(target, source)
    for got, want in zip(target.predict(X), source.predict(X)):
        np.testing.assert_array_equal(got, want)
