"""model.to_native() and model.export(): the backend's own module or file, computing the same outputs."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import unidl
from unidl import layers
from unidl.testing.tolerances import FORWARD_F32


def cnn(backend):
    model = unidl.Sequential([layers.Input((8, 8, 1)), layers.Conv2D(4, 3, activation="relu"),
                              layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(3, activation="softmax")],
                             seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", backend=backend)
    return model


X = np.random.default_rng(0).random((5, 8, 8, 1)).astype("float32")


def test_torch_module_traces_to_a_unidl_free_graph(tmp_path):
    torch = pytest.importorskip("torch")
    model = cnn("torch")
    module = model.to_native()
    assert isinstance(module, torch.nn.Module)
    assert sum(p.numel() for p in module.parameters()) == model.count_params()
    with torch.no_grad():
        out = module(torch.as_tensor(X)).numpy()
    np.testing.assert_allclose(out, model.predict(X), rtol=FORWARD_F32.rtol, atol=FORWARD_F32.atol)
    # torch.export (torch.jit.trace's successor) captures a graph with no unidl in it
    batch = torch.export.Dim("batch")
    program = torch.export.export(module, (torch.as_tensor(X),), dynamic_shapes=(({0: batch},),))  # forward(*inputs)
    path = tmp_path / "model.pt2"
    torch.export.save(program, str(path))
    loaded = torch.export.load(str(path)).module()
    for x in (X, X[:2]):
        np.testing.assert_allclose(loaded(torch.as_tensor(x)).detach().numpy(), model.predict(x),
                                   rtol=FORWARD_F32.rtol, atol=FORWARD_F32.atol)
    # the module's parameters are the model's weights: a torch optimizer step changes the unidl model
    module.train()
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    module(torch.as_tensor(X)).sum().backward()
    before = model.get_weights()[0].copy()
    opt.step()
    assert not np.array_equal(before, model.get_weights()[0])


def test_tensorflow_module_saves_as_a_saved_model(tmp_path):
    tf = pytest.importorskip("tensorflow")
    model = cnn("tensorflow")
    module = model.to_native()
    np.testing.assert_allclose(module(tf.constant(X)).numpy(), model.predict(X),
                               rtol=FORWARD_F32.rtol, atol=FORWARD_F32.atol)
    tf.saved_model.save(module, str(tmp_path / "saved"))
    restored = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(restored(tf.constant(X)).numpy(), model.predict(X),
                               rtol=FORWARD_F32.rtol, atol=FORWARD_F32.atol)


def test_to_native_needs_a_compiled_model_and_a_capable_backend():
    model = unidl.Sequential([layers.Dense(2, input_shape=(3,))])
    with pytest.raises(unidl.NotCompiledError, match="compiled"):
        model.to_native()
    model.compile(loss="mse", backend="numpy")
    with pytest.raises(unidl.BackendError, match="'numpy' cannot export"):
        model.to_native()


# ------------------------------------------------- model.export(path, format=...)

def onnx_runtime():
    """onnxruntime; skips the test unless torch and the [onnx] extra are installed."""
    for name in ("torch", "onnx", "onnxscript"):
        pytest.importorskip(name)
    return pytest.importorskip("onnxruntime")


def mlp(backend):
    model = unidl.Sequential([layers.Input((4,)), layers.Dense(8, activation="relu"), layers.Dense(2)], seed=0)
    model.compile(optimizer="adam", loss="mse", backend=backend)
    return model


def recurrent(cell):
    def build(backend):
        model = unidl.Sequential([layers.Input((5, 3)), cell(4), layers.Dense(2)], seed=0)
        model.compile(optimizer="adam", loss="mse", backend=backend)
        return model
    return build


def two_inputs_two_outputs(backend):
    a, b = layers.Input((3,), name="a"), layers.Input((2,), name="b")
    x = layers.Concatenate()([layers.Dense(4, activation="tanh")(a), b])
    model = unidl.Model([a, b], [layers.Dense(1, name="score")(x), layers.Dense(2, activation="softmax",
                                                                                 name="label")(x)], seed=0)
    model.compile(optimizer="adam", loss="mse", backend=backend)
    return model


def inputs_for(model, batch):
    shapes = model.input_shape if isinstance(model.input_shape, list) else [model.input_shape]
    rng = np.random.default_rng(batch)
    return [rng.random((batch, *shape[1:])).astype("float32") for shape in shapes]


def assert_runs_like_predict(session, model):
    # the exporter traces batch 2: other batch sizes, 1 included, must run too
    for batch in (1, 5):
        xs = inputs_for(model, batch)
        got = session.run(None, {i.name: x for i, x in zip(session.get_inputs(), xs)})
        expected = model.predict(xs if len(xs) > 1 else xs[0])
        for g, e in zip(got, expected if isinstance(expected, list) else [expected]):
            np.testing.assert_allclose(g, e, rtol=FORWARD_F32.rtol, atol=FORWARD_F32.atol)


@pytest.mark.parametrize("build", [mlp, cnn, recurrent(layers.LSTM), recurrent(layers.SimpleRNN),
                                   two_inputs_two_outputs],
                         ids=["mlp", "cnn", "lstm", "simple_rnn", "two_inputs_two_outputs"])
def test_onnx_export_runs_in_onnxruntime_with_any_batch_size(tmp_path, build):
    ort = onnx_runtime()
    model = build("torch")
    model.export(tmp_path / "model.onnx")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    assert [i.shape[0] for i in session.get_inputs()] == ["batch"] * len(session.get_inputs())
    assert_runs_like_predict(session, model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # one file, no temporary left


def test_onnx_names_inputs_and_outputs_after_the_functional_model(tmp_path):
    ort = onnx_runtime()
    model = two_inputs_two_outputs("torch")
    model.export(tmp_path / "model.onnx", format="onnx")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    assert [i.name for i in session.get_inputs()] == ["a", "b"]
    assert [o.name for o in session.get_outputs()] == ["score", "label"]


def test_onnx_export_from_another_backend_goes_through_a_torch_copy(tmp_path):
    ort = onnx_runtime()
    pytest.importorskip("tensorflow")
    model = mlp("tensorflow")
    weights = [w.copy() for w in model.get_weights()]
    model.export(tmp_path / "model.onnx")
    assert model.backend.name == "tensorflow"  # the model itself stays where it was
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert_runs_like_predict(ort.InferenceSession(str(tmp_path / "model.onnx")), model)


def test_saved_model_export_from_torch_overwrites_atomically(tmp_path):
    pytest.importorskip("torch")
    tf = pytest.importorskip("tensorflow")
    model = cnn("torch")
    target = tmp_path / "saved"
    model.export(target, format="saved_model")
    model.export(target, format="tf_saved_model")  # Keras's name; replaces the first export
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"]
    restored = tf.saved_model.load(str(target))
    np.testing.assert_allclose(restored(tf.constant(X)).numpy(), model.predict(X),
                               rtol=FORWARD_F32.rtol, atol=FORWARD_F32.atol)


def test_export_errors_say_what_to_do(tmp_path, monkeypatch):
    model = unidl.Sequential([layers.Dense(2)])
    with pytest.raises(ValueError, match=r"unknown export format 'keras'.*'onnx'"):
        model.export(tmp_path / "m", format="keras")
    with pytest.raises(RuntimeError, match="not built"):
        model.export(tmp_path / "m.onnx")
    model = unidl.Sequential([layers.Dense(2, input_shape=(3,))])
    model.compile(loss="mse", backend="numpy")
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # makes `import onnxscript` raise ImportError
    with pytest.raises(ImportError, match=r"needs the onnx and onnxscript packages.*pip install 'unidl\[onnx\]'"):
        model.export(tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())
