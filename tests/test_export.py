"""model.to_native(): the backend's own module, computing the same outputs."""
from __future__ import annotations

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
    traced = torch.jit.trace(module, torch.as_tensor(X))
    path = tmp_path / "model.pt"
    traced.save(str(path))
    loaded = torch.jit.load(str(path))
    np.testing.assert_allclose(loaded(torch.as_tensor(X)).detach().numpy(), model.predict(X),
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
