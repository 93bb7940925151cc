"""Plugins cannot take over, hang or end the program: name clashes, hanging or exiting imports,
broken factories, and lookups that load only the plugin they need.

Each test builds a fresh ``Registry`` over entry points it controls (the fixtures of
tests/test_registry.py), so nothing touches ``unidl.registry.REGISTRY``.
"""
from __future__ import annotations

import time
import warnings

import pytest

import unidl
from unidl import hookimpl, registry
from unidl.registry import BackendUnavailableError, PluginNameClashWarning

from .test_registry import FakeBackend, FakeEntryPoint, backend_plugin, entry_points, reg  # noqa: F401


class NamedBackend(FakeBackend):
    """A backend that says which plugin built it."""

    def __init__(self, origin: str, dtype="float32", device=None):
        super().__init__(dtype=dtype, device=device)
        self.origin = origin


def builder(origin: str):
    def factory(dtype="float32", device=None):
        return NamedBackend(origin, dtype=dtype, device=device)
    return factory


def plugin_registering(name: str, origin: str, trylast: bool = False):
    class Plugin:
        @hookimpl(trylast=trylast)
        def unidl_register_backends(self, register):
            register(name, builder(origin))
    return Plugin()


def test_a_plugin_cannot_take_a_builtin_backend_name(reg, entry_points):
    # the built-in registers trylast, so pluggy calls the third-party plugin first: the old rule let it win
    entry_points.items = [
        FakeEntryPoint("numpy", lambda: plugin_registering("numpy", "builtin", trylast=True), dist_name="unidl"),
        FakeEntryPoint("evil", lambda: plugin_registering("numpy", "evil"), dist_name="unidl-evil"),
    ]
    with pytest.warns(PluginNameClashWarning, match=r"backend 'numpy' is registered twice: by plugin 'numpy' "
                                                    r"\(keeps the name\) and by plugin 'evil'.*'evil:numpy'"):
        rows = {row["name"]: row for row in reg.list_backends()}
    assert reg.get_backend("numpy").origin == "builtin"
    assert reg.get_backend("evil:numpy").origin == "evil"
    assert reg.get_backend("numpy:numpy").origin == "builtin"
    assert rows["numpy"]["plugin"] == "numpy" and rows["evil:numpy"]["plugin"] == "evil"
    assert "evil" in {p.name for p in reg.failures()}  # shown by `unidl backends`


def test_the_real_builtin_numpy_backend_keeps_its_name_against_a_registered_plugin():
    unidl.registry.REGISTRY.register_plugin(plugin_registering("numpy", "impostor"), name="impostor")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PluginNameClashWarning)
            model = unidl.Sequential([unidl.layers.Dense(1, input_shape=(2,), kernel_initializer="zeros")])
            model.compile(loss="mse", backend="numpy")
        assert type(model.backend).__name__ == "NumpyBackend"
        assert unidl.get_backend("impostor:numpy").origin == "impostor"
    finally:
        unidl.registry.REGISTRY.unregister_plugin("impostor")


def test_a_plugin_that_hangs_at_import_times_out_and_the_rest_work(reg, entry_points, monkeypatch):
    monkeypatch.setenv("UNIDL_PLUGIN_IMPORT_TIMEOUT", "0.5")

    def hang():
        time.sleep(30)
    entry_points.items = [FakeEntryPoint("sleepy", hang), FakeEntryPoint("good", lambda: backend_plugin("good"))]
    start = time.perf_counter()
    assert [row["name"] for row in reg.list_backends()] == ["good"]
    assert time.perf_counter() - start < 5
    [failure] = reg.failures()
    assert failure.name == "sleepy" and "did not finish within 0.5 s" in failure.error


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt()], ids=["sys.exit", "KeyboardInterrupt"])
def test_a_plugin_raising_sys_exit_or_keyboard_interrupt_at_import_is_recorded(reg, entry_points, exc):
    def explode():
        raise exc
    entry_points.items = [FakeEntryPoint("rude", explode), FakeEntryPoint("good", lambda: backend_plugin("good"))]
    assert isinstance(reg.get_backend("good"), FakeBackend)
    [failure] = reg.failures()
    assert failure.name == "rude" and type(exc).__name__ in failure.error


def test_a_hook_calling_sys_exit_is_recorded_not_obeyed(reg):
    class Exits:
        @hookimpl
        def unidl_register_backends(self, register):
            raise SystemExit("bye")
    reg.register_plugin(Exits(), name="exits")
    reg.register_plugin(backend_plugin("good"), name="goodplug")
    assert isinstance(reg.get_backend("good"), FakeBackend)
    assert "SystemExit" in reg.plugins["exits"].error


def test_a_factory_returning_something_else_than_a_backend_is_a_clear_error(reg):
    class ReturnsNone:
        @hookimpl
        def unidl_register_backends(self, register):
            register("hollow", lambda dtype="float32", device=None: None)
    reg.register_plugin(ReturnsNone(), name="hollowplug")
    with pytest.raises(BackendUnavailableError, match=r"backend 'hollow' from plugin 'hollowplug': its factory "
                                                      r"returned None \(NoneType\), not a unidl.Backend"):
        reg.get_backend("hollow")


def test_looking_up_a_backend_imports_only_its_own_plugin(reg, entry_points):
    other = FakeEntryPoint("other", lambda: backend_plugin("other"))
    wanted = FakeEntryPoint("wanted", lambda: backend_plugin("wanted"))
    entry_points.items = [other, wanted]
    assert isinstance(reg.get_backend("wanted"), FakeBackend)
    assert (wanted.loads, other.loads) == (1, 0)
    reg.list_backends()  # listing needs every plugin
    assert (wanted.loads, other.loads) == (1, 1)


def test_an_unknown_name_still_loads_everything_and_suggests(reg, entry_points):
    entry_points.items = [FakeEntryPoint("jaxish", lambda: backend_plugin("jaxish"))]
    with pytest.raises(registry.UnknownBackendError, match=r"unknown backend 'jaxsh' \(did you mean 'jaxish'\?\)"):
        reg.get_backend("jaxsh")


def test_register_accepts_a_dotted_framework_and_its_distribution(reg):
    class Dotted:
        @hookimpl
        def unidl_register_backends(self, register):
            register("dotted", FakeBackend, framework="numpy.linalg", distribution="numpy")
    reg.register_plugin(Dotted(), name="dottedplug")
    [row] = reg.list_backends()
    assert row["installed"] and row["framework"] == "numpy.linalg"
    assert row["framework_version"] == __import__("numpy").__version__


def test_numpy_global_random_state_survives_a_backend_build(reg):
    import numpy as np

    class Drawing:
        @hookimpl
        def unidl_register_backends(self, register):
            def factory(dtype="float32", device=None):
                np.random.random(5)  # as TensorFlow's import does
                return FakeBackend(dtype=dtype, device=device)
            register("drawing", factory)
    reg.register_plugin(Drawing(), name="drawingplug")
    np.random.seed(0)
    expected = np.random.random()
    np.random.seed(0)
    reg.get_backend("drawing")
    assert np.random.random() == expected
