"""The plugin registry: finds backends and named building blocks from plugins.

One ``Registry`` object (``unidl.registry.REGISTRY``) owns a pluggy manager.
Nothing is scanned at import time: the first lookup loads the ``unidl``
entry points, each inside its own try/except, so one broken plugin is
reported (``unidl backends``) and never stops the others. Loading is
idempotent and marked done only once it finished.
"""
from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from . import hookspecs
from .backend import Backend

ENTRY_POINT_GROUP = "unidl"
KINDS = ("layers", "losses", "optimizers", "metrics", "activations", "initializers", "regularizers")


class UnknownBackendError(LookupError):
    """No backend of that name is registered."""

    def __str__(self) -> str:  # KeyError-style quoting would hide the message
        return str(self.args[0])


class BackendUnavailableError(ImportError):
    """The backend is registered but its framework is not installed or fails to load."""


@dataclass
class BackendInfo:
    """What is known about a registered backend without importing its framework."""
    name: str
    factory: Callable[..., Backend]
    plugin: str
    distribution: str = ""
    version: str = ""
    framework: str | None = None
    install: str | None = None
    description: str = ""

    @property
    def framework_installed(self) -> bool:
        return self.framework is None or importlib.util.find_spec(self.framework) is not None

    @property
    def framework_version(self) -> str:
        if not self.framework:
            return ""
        return _distribution_version(self.framework)


@dataclass
class PluginRecord:
    name: str
    distribution: str = ""
    version: str = ""
    error: str | None = None


@dataclass
class _Tables:
    backends: dict[str, BackendInfo] = field(default_factory=dict)
    named: dict[str, dict[str, tuple[Any, str]]] = field(default_factory=lambda: {k: {} for k in KINDS})


def _distribution_version(module: str) -> str:
    """Version of the installed distribution that provides ``module`` ('' if unknown)."""
    import importlib.metadata as md  # not at module level: see Registry.load
    for dist in (module, f"{module}-cpu"):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            pass
    for dist in md.packages_distributions().get(module, []):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            pass
    return ""


def _reject(record: PluginRecord, message: str) -> None:
    record.error = message if not record.error else f"{record.error}; {message}"


class Registry:
    def __init__(self, group: str = ENTRY_POINT_GROUP):
        self.group = group
        self.pm = pluggy.PluginManager("unidl")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginRecord] = {}
        self._loaded = False
        self._tables: _Tables | None = None
        # Held while loading or collecting: first lookups may come from several
        # threads at once (models compiled in threads), and each plugin must load once.
        self._lock = threading.RLock()

    # ------------------------------------------------------------ loading
    def load(self) -> None:
        """Load every ``unidl`` entry point once; failures are recorded, not raised."""
        if self._loaded:
            return
        with self._lock:
            if self._loaded:  # another thread finished loading while we waited
                return
            # Imported here, not at module level: importlib.metadata pulls in email,
            # zipfile, ... (20-50 ms), two thirds of what `import unidl` cost after numpy.
            import importlib.metadata as md
            for ep in md.entry_points(group=self.group):
                if ep.name in self.plugins or self.pm.is_blocked(ep.name):
                    continue
                dist = ep.dist.name if ep.dist else ""
                version = ep.dist.version if ep.dist else ""
                record = PluginRecord(ep.name, dist, version)
                try:
                    self.pm.register(ep.load(), name=ep.name)
                except Exception as exc:  # a broken plugin must not break the others
                    record.error = f"{type(exc).__name__}: {exc}"
                self.plugins[ep.name] = record
            self._tables = None
            self._loaded = True

    def register_plugin(self, plugin: Any, name: str) -> None:
        """Register a plugin object directly (tests, notebooks). Undo with ``unregister_plugin``."""
        with self._lock:
            self.load()
            self.pm.register(plugin, name=name)
            self.plugins[name] = PluginRecord(name)
            self._tables = None

    def unregister_plugin(self, name: str) -> None:
        with self._lock:
            self.pm.unregister(name=name)
            self.plugins.pop(name, None)
            self._tables = None

    @property
    def tables(self) -> _Tables:
        with self._lock:
            self.load()
            if self._tables is None:
                self._tables = self._collect()
            return self._tables

    def _collect(self) -> _Tables:
        tables = _Tables()
        # Call each implementation on its own so every item is tagged with its plugin,
        # in pluggy's call order (get_hookimpls() lists them last-called first).
        for impl in reversed(self.pm.hook.unidl_register_backends.get_hookimpls()):
            plugin = impl.plugin_name
            record = self.plugins.get(plugin, PluginRecord(plugin))

            def register(name, factory, *, framework=None, install=None, description="", _p=plugin, _r=record):
                # A bad registration is recorded on its plugin and skipped; it never breaks the others.
                if not callable(factory):
                    return _reject(_r, f"plugin {_p!r} registered backend {name!r} with a non-callable factory")
                if name in tables.backends:
                    return _reject(_r, f"backend {name!r} is registered twice: by plugin "
                                       f"{tables.backends[name].plugin!r} (kept) and by plugin {_p!r} (ignored)")
                tables.backends[name] = BackendInfo(name, factory, _p, _r.distribution, _r.version,
                                                    framework, install, description)
            self._call_guarded(impl, register, record)
        for kind in KINDS:
            hook = getattr(self.pm.hook, f"unidl_register_{kind}")
            for impl in reversed(hook.get_hookimpls()):
                plugin = impl.plugin_name

                record = self.plugins.get(plugin, PluginRecord(plugin))

                def register(name, obj, _p=plugin, _k=kind, _r=record):
                    if name in tables.named[_k]:
                        return _reject(_r, f"{_k} entry {name!r} is registered twice: by plugin "
                                           f"{tables.named[_k][name][1]!r} (kept) and by plugin {_p!r} (ignored)")
                    tables.named[_k][name] = (obj, _p)
                self._call_guarded(impl, register, record)
        return tables

    @staticmethod
    def _call_guarded(impl, register, record: PluginRecord) -> None:
        try:
            impl.function(register=register)
        except Exception as exc:
            record.error = f"{type(exc).__name__} in {impl.function.__name__}: {exc}"

    # ----------------------------------------------------------- lookups
    def backend_info(self, name: str) -> BackendInfo:
        backends = self.tables.backends
        if name not in backends:
            raise UnknownBackendError(
                f"unknown backend {name!r}; installed backends: {sorted(backends) or 'none'}"
                + self._failures_hint())
        return backends[name]

    def get_backend(self, name: str, dtype: str = "float32", device: str | None = None) -> Backend:
        """Instantiate backend ``name`` (this is where its framework gets imported)."""
        info = self.backend_info(name)
        if not info.framework_installed:
            hint = info.install or f"pip install {info.framework}"
            raise BackendUnavailableError(
                f"backend {name!r} needs {info.framework!r}, which is not installed; install it with: {hint}")
        try:
            return info.factory(dtype=dtype, device=device)
        except ImportError as exc:
            # When the module that failed is the plugin's own (e.g. its backend.py), the
            # plugin is broken: reinstalling the framework would not help.
            plugin_package = (getattr(info.factory, "__module__", None) or "").split(".")[0]
            if not info.framework or (exc.name or "").split(".")[0] == plugin_package:
                source = f" ({info.distribution} {info.version})" if info.distribution else ""
                raise BackendUnavailableError(
                    f"backend {name!r} from plugin {info.plugin!r}{source} failed to import: {exc}") from exc
            hint = info.install or f"pip install {info.framework}"
            raise BackendUnavailableError(
                f"backend {name!r} failed to import its framework ({exc}); reinstall it with: {hint}") from exc

    def named(self, kind: str) -> dict[str, tuple[Any, str]]:
        """Plugin-registered building blocks of one kind: name -> (object, plugin)."""
        return self.tables.named[kind]

    def list_backends(self) -> list[dict]:
        """One dict per backend: name, plugin, distribution, version, framework, installed, ..."""
        rows = []
        for info in self.tables.backends.values():
            installed = info.framework_installed
            rows.append({
                "name": info.name, "plugin": info.plugin, "distribution": info.distribution,
                "version": info.version, "framework": info.framework or "",
                "framework_version": info.framework_version if installed else "",
                "installed": installed, "install": info.install or "",
                "description": info.description,
            })
        return rows

    def failures(self) -> list[PluginRecord]:
        self.tables  # noqa: B018  -- make sure hooks ran, so their errors are recorded
        return [p for p in self.plugins.values() if p.error]

    def _failures_hint(self) -> str:
        broken = [p for p in self.plugins.values() if p.error]
        if not broken:
            return ""
        return "; plugins that failed to load: " + ", ".join(f"{p.name} ({p.error})" for p in broken)


REGISTRY = Registry()


def get_backend(name: "str | Backend", dtype: str = "float32", device: str | None = None) -> Backend:
    """Return a backend instance. ``name`` may already be a Backend (returned as is)."""
    if isinstance(name, Backend):
        return name
    return REGISTRY.get_backend(name, dtype=dtype, device=device)


def list_backends() -> list[dict]:
    """Every registered backend, with where it comes from and whether it is usable."""
    return REGISTRY.list_backends()
