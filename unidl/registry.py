"""The plugin registry: finds backends, named building blocks and backend services from plugins.

One ``Registry`` object (``unidl.registry.REGISTRY``) owns a pluggy manager.
Nothing is scanned at import time. A lookup loads only what it needs: looking
up backend "numpy" imports the entry point named "numpy" first and stops there
when that plugin provides it; anything else (an unknown name, a list of every
backend, a plugin-registered layer) loads every ``unidl`` entry point.

Each plugin is imported on its own worker thread with a time limit
(``UNIDL_PLUGIN_IMPORT_TIMEOUT``, 10 s): a plugin that hangs, raises, calls
``sys.exit()`` or raises ``KeyboardInterrupt`` while importing is recorded as
failed (``unidl backends`` shows it) and never stops the others. A Ctrl-C of
the user reaches the main thread and still interrupts the command.

Name clashes are never resolved silently. Built-in plugins (those of the unidl
distribution) keep their names; a plugin registering a name that is taken is
reported, with a warning, and its entry stays reachable under the qualified
name ``"plugin:name"`` (every backend is, e.g. ``backend="numpy:numpy"``).

Name lookups (``lookup``, ``resolve``) turn what users write ("adam",
"glorot_uniform") into objects: the module's built-ins first, then plugins.
"""
from __future__ import annotations

import importlib.util
import os
import re
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import pluggy

from . import hookspecs
from .backend import Backend
from .naming import UnknownNameError, closest, singular

ENTRY_POINT_GROUP = "unidl"
BUILTIN_DISTRIBUTION = "unidl"  # plugins of this distribution keep their names on a clash
KINDS = ("layers", "losses", "optimizers", "metrics", "activations", "initializers", "regularizers")
# The backend that computes on host NumPy arrays in float64: shape inference of custom layers,
# the conformance kit's reference and unidl compare's default reference run on it.
REFERENCE_BACKEND = "numpy"
_IMPORT_TIMEOUT_ENV = "UNIDL_PLUGIN_IMPORT_TIMEOUT"


class UnknownBackendError(LookupError):
    """No backend of that name is registered."""

    def __str__(self) -> str:  # KeyError-style quoting would hide the message
        return str(self.args[0])


class BackendUnavailableError(ImportError):
    """The backend is registered but its framework is not installed or fails to load."""


class PluginNameClashWarning(UserWarning):
    """A plugin registered a name another plugin already has; it is reachable as "plugin:name"."""


@dataclass
class BackendInfo:
    """What is known about a registered backend without importing its framework."""
    name: str
    factory: Callable[..., Backend]
    plugin: str
    distribution: str = ""
    version: str = ""
    framework: str | None = None  # importable module, dotted allowed ("mlx.core")
    install: str | None = None
    description: str = ""
    framework_distribution: str | None = None  # where the framework's version comes from ("mlx")

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}:{self.name}"

    @property
    def framework_installed(self) -> bool:
        # find_spec of the top-level package imports nothing; of "a.b" it would import "a".
        return self.framework is None or importlib.util.find_spec(self.framework.split(".")[0]) is not None

    @property
    def framework_version(self) -> str:
        if not self.framework:
            return ""
        return _distribution_version(self.framework_distribution or self.framework.split(".")[0])


@dataclass
class ServiceInfo:
    """A backend service from a plugin: an export format, a distributed engine, a bench baseline."""
    key: str                 # what it is looked up by (a format name, a backend name)
    provider: Callable       # the callable the plugin registered
    plugin: str
    options: dict = field(default_factory=dict)


@dataclass
class PluginRecord:
    """A loaded (or failed) plugin: where it comes from and what went wrong, if anything."""
    name: str
    distribution: str = ""
    version: str = ""
    import_error: str | None = None
    hook_errors: list[str] = field(default_factory=list)  # from the last collection of its hooks

    @property
    def error(self) -> str | None:
        problems = ([self.import_error] if self.import_error else []) + self.hook_errors
        return "; ".join(problems) or None

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION


# backend services: hook name -> (table name, what one entry is called in messages)
SERVICES = {
    "unidl_register_exporters": ("exporters", "export format"),
    "unidl_register_distributed_engines": ("distributed_engines", "distributed engine"),
    "unidl_register_bench_baselines": ("bench_baselines", "bench baseline"),
}


@dataclass
class _Tables:
    backends: dict[str, BackendInfo] = field(default_factory=dict)
    qualified: dict[str, BackendInfo] = field(default_factory=dict)  # "plugin:name" -> info
    named: dict[str, dict[str, tuple[Any, str]]] = field(default_factory=lambda: {k: {} for k in KINDS})
    services: dict[str, dict[str, ServiceInfo]] = field(
        default_factory=lambda: {table: {} for table, _ in SERVICES.values()})
    clashes: list[str] = field(default_factory=list)


def _distribution_version(name: str) -> str:
    """Version of the installed distribution ``name``, or of the one providing module ``name`` ('' if unknown)."""
    import importlib.metadata as md  # not at module level: see Registry.load
    for dist in (name, f"{name}-cpu"):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            pass
    for dist in md.packages_distributions().get(name, []):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            pass
    return ""


def _note(record: PluginRecord, message: str) -> None:
    record.hook_errors.append(message)


def _import_timeout() -> float:
    try:
        return float(os.environ.get(_IMPORT_TIMEOUT_ENV, "10"))
    except ValueError:
        return 10.0


def _load_in_thread(entry_point, timeout: float) -> tuple[Any, str | None]:
    """``entry_point.load()`` on a daemon thread: (plugin, None) or (None, why it failed).

    Anything the import raises, ``SystemExit`` and ``KeyboardInterrupt`` included, is the
    plugin's failure: a real Ctrl-C is delivered to the main thread, not to this one.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["plugin"] = entry_point.load()
        except BaseException as exc:  # noqa: BLE001 -- the plugin's own failure, whatever it is
            outcome["error"] = f"{type(exc).__name__}: {exc}"

    worker = threading.Thread(target=run, name=f"unidl-plugin-{entry_point.name}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return None, (f"import did not finish within {timeout:g} s (a plugin must not block at import; "
                      f"{_IMPORT_TIMEOUT_ENV} sets the limit)")
    return outcome.get("plugin"), outcome.get("error")


class Registry:
    def __init__(self, group: str = ENTRY_POINT_GROUP):
        self.group = group
        self.pm = pluggy.PluginManager("unidl")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginRecord] = {}
        self._loaded = False
        self._entry_points: list | None = None
        self._tables: _Tables | None = None
        self._warned: set[str] = set()
        # Held while loading or collecting: first lookups may come from several
        # threads at once (models compiled in threads), and each plugin must load once.
        self._lock = threading.RLock()

    # ------------------------------------------------------------ loading
    def _all_entry_points(self) -> list:
        if self._entry_points is None:
            # Imported here, not at module level: importlib.metadata pulls in email,
            # zipfile, ... (20-50 ms), two thirds of what `import unidl` cost after numpy.
            import importlib.metadata as md
            self._entry_points = list(md.entry_points(group=self.group))
        return self._entry_points

    def load(self, only: str | None = None) -> None:
        """Load the ``unidl`` entry points once each (``only``: just the one of that name).

        Failures are recorded on the plugin, never raised. Loading everything is
        marked done only once it finished, so a failed scan is retried.
        """
        if self._loaded:
            return
        with self._lock:
            if self._loaded:  # another thread finished loading while we waited
                return
            try:
                entry_points = self._all_entry_points()
            except Exception:
                self._entry_points = None
                raise
            for ep in entry_points:
                if only is None or ep.name == only:
                    self._load_entry_point(ep)
            if only is None:
                self._loaded = True

    def _load_entry_point(self, ep) -> None:
        dist = ep.dist.name if getattr(ep, "dist", None) else ""
        version = ep.dist.version if getattr(ep, "dist", None) else ""
        if ep.name in self.plugins:
            known = self.plugins[ep.name]
            if known.distribution != dist:  # a second distribution uses the same entry-point name
                key = f"{dist or 'unknown'}:{ep.name}"
                self.plugins.setdefault(key, PluginRecord(
                    key, dist, version, import_error=f"entry point {ep.name!r} ignored: plugin name {ep.name!r} "
                                                     f"is taken by distribution {known.distribution or 'unknown'!r}"))
            return
        if self.pm.is_blocked(ep.name):
            return
        record = PluginRecord(ep.name, dist, version)
        self.plugins[ep.name] = record
        plugin, error = _load_in_thread(ep, _import_timeout())
        if error is None:
            try:
                self.pm.register(plugin, name=ep.name)
            except Exception as exc:  # pluggy's validation: a hook signature the spec lacks
                error = f"{type(exc).__name__}: {exc}"
        record.import_error = error
        self._tables = None

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
        """Everything every plugin registered (loads all plugins first)."""
        self.load()
        return self._current_tables()

    def _current_tables(self) -> _Tables:
        """What the plugins loaded so far registered."""
        with self._lock:
            if self._tables is None:
                self._tables = self._collect()
                self._warn_clashes(self._tables)
            return self._tables

    # ---------------------------------------------------------- collecting
    def _impls(self, hook_name: str) -> list:
        """A hook's implementations: built-in plugins first, then in pluggy's call order."""
        impls = list(reversed(getattr(self.pm.hook, hook_name).get_hookimpls()))
        return sorted(impls, key=lambda impl: not self._record(impl.plugin_name).builtin)

    def _record(self, plugin: str) -> PluginRecord:
        if plugin not in self.plugins:
            self.plugins[plugin] = PluginRecord(plugin)
        return self.plugins[plugin]

    def _collect(self) -> _Tables:
        tables = _Tables()
        for record in self.plugins.values():
            record.hook_errors = []
        for impl in self._impls("unidl_register_backends"):
            self._call_guarded(impl, self._backend_register(tables, impl.plugin_name))
        for kind in KINDS:
            for impl in self._impls(f"unidl_register_{kind}"):
                self._call_guarded(impl, self._named_register(tables, kind, impl.plugin_name))
        for hook_name, (table, what) in SERVICES.items():
            for impl in self._impls(hook_name):
                self._call_guarded(impl, self._service_register(tables, table, what, impl.plugin_name))
        return tables

    def _backend_register(self, tables: _Tables, plugin: str) -> Callable:
        record = self._record(plugin)

        def register(name, factory, *, framework=None, install=None, description="", distribution=None):
            # A bad registration is recorded on its plugin and skipped; it never breaks the others.
            if not isinstance(name, str) or not name or ":" in name:
                return _note(record, f"plugin {plugin!r} registered a backend with an invalid name {name!r} "
                                     "(a non-empty string without ':')")
            if not callable(factory):
                return _note(record, f"plugin {plugin!r} registered backend {name!r} with a non-callable factory")
            info = BackendInfo(name, factory, plugin, record.distribution, record.version, framework, install,
                               description, distribution)
            tables.qualified[info.qualified_name] = info
            if name in tables.backends:
                kept = tables.backends[name].plugin
                message = (f"backend {name!r} is registered twice: by plugin {kept!r} (keeps the name) and by "
                           f"plugin {plugin!r} (use backend={info.qualified_name!r} to pick it)")
                tables.clashes.append(message)
                return _note(record, message)
            tables.backends[name] = info
        return register

    def _named_register(self, tables: _Tables, kind: str, plugin: str) -> Callable:
        record = self._record(plugin)

        def register(name, obj):
            table = tables.named[kind]
            if name in table:
                message = (f"{kind} entry {name!r} is registered twice: by plugin {table[name][1]!r} (kept) and "
                           f"by plugin {plugin!r} (ignored)")
                tables.clashes.append(message)
                return _note(record, message)
            table[name] = (obj, plugin)
        return register

    def _service_register(self, tables: _Tables, table: str, what: str, plugin: str) -> Callable:
        record = self._record(plugin)

        def register(key, provider, **options):
            if not callable(provider):
                return _note(record, f"plugin {plugin!r} registered {what} {key!r} with a non-callable")
            entries = tables.services[table]
            if key in entries:
                message = (f"{what} {key!r} is registered twice: by plugin {entries[key].plugin!r} (kept) and "
                           f"by plugin {plugin!r} (ignored)")
                tables.clashes.append(message)
                return _note(record, message)
            entries[key] = ServiceInfo(key, provider, plugin, options)
        return register

    def _call_guarded(self, impl, register) -> None:
        try:
            impl.function(register=register)
        except KeyboardInterrupt:
            raise  # in the main thread this is the user's Ctrl-C
        except BaseException as exc:  # noqa: BLE001 -- SystemExit too: a plugin must not end the program
            _note(self._record(impl.plugin_name), f"{type(exc).__name__} in {impl.function.__name__}: {exc}")

    def _warn_clashes(self, tables: _Tables) -> None:
        for message in tables.clashes:
            if message not in self._warned:
                self._warned.add(message)
                warnings.warn(message, PluginNameClashWarning, stacklevel=4)

    # ----------------------------------------------------------- lookups
    def backend_info(self, name: str) -> BackendInfo:
        """The backend registered as ``name`` (or qualified ``"plugin:name"``)."""
        if not isinstance(name, str):
            raise TypeError(f"backend must be a registered backend name or a Backend, got {name!r}")
        if not self._loaded:  # try the entry point of the same name (or the qualifying plugin) alone first
            self.load(only=name.split(":", 1)[0])
            found = self._find(self._current_tables(), name)
            if found is not None:
                return found
        found = self._find(self.tables, name)
        if found is None:
            backends = self.tables.backends
            raise UnknownBackendError(
                f"unknown backend {name!r}{closest(name, backends)}; installed backends: "
                f"{sorted(backends) or 'none'}" + self._failures_hint())
        return found

    @staticmethod
    def _find(tables: _Tables, name: str) -> BackendInfo | None:
        return tables.qualified.get(name) if ":" in name else tables.backends.get(name)

    def get_backend(self, name: str, dtype: str = "float32", device: str | None = None, **options) -> Backend:
        """Instantiate backend ``name`` (this is where its framework gets imported).

        ``options`` are the backend's own settings (e.g. ``tf32=False``), passed to its factory.
        """
        info = self.backend_info(name)
        if not info.framework_installed:
            hint = info.install or f"pip install {info.framework}"
            raise BackendUnavailableError(
                f"backend {name!r} needs {info.framework!r}, which is not installed; install it with: {hint}")
        # A framework's import may draw from NumPy's global generator (TensorFlow's does): keep the
        # user's np.random stream as it was, so a script gets the same data on every backend.
        numpy_state = np.random.get_state()
        try:
            backend = info.factory(dtype=dtype, device=device, **options)
        except ImportError as exc:
            raise self._import_failure(info, exc) from exc
        finally:
            np.random.set_state(numpy_state)
        if not isinstance(backend, Backend):
            raise BackendUnavailableError(
                f"backend {name!r} from plugin {info.plugin!r}: its factory returned {backend!r} "
                f"({type(backend).__name__}), not a unidl.Backend; the plugin is broken")
        return backend

    @staticmethod
    def _import_failure(info: BackendInfo, exc: ImportError) -> BackendUnavailableError:
        # When the module that failed is the plugin's own (e.g. its backend.py), the
        # plugin is broken: reinstalling the framework would not help.
        plugin_package = (getattr(info.factory, "__module__", None) or "").split(".")[0]
        if not info.framework or (exc.name or "").split(".")[0] == plugin_package:
            source = f" ({info.distribution} {info.version})" if info.distribution else ""
            return BackendUnavailableError(
                f"backend {info.name!r} from plugin {info.plugin!r}{source} failed to import: {exc}")
        hint = info.install or f"pip install {info.framework}"
        return BackendUnavailableError(
            f"backend {info.name!r} failed to import its framework ({exc}); reinstall it with: {hint}")

    def named(self, kind: str) -> dict[str, tuple[Any, str]]:
        """Plugin-registered building blocks of one kind: name -> (object, plugin)."""
        return self.tables.named[kind]

    def services(self, table: str) -> dict[str, ServiceInfo]:
        """Plugin-provided services: "exporters", "distributed_engines" or "bench_baselines"."""
        return self.tables.services[table]

    def list_backends(self) -> list[dict]:
        """One dict per backend: name, plugin, distribution, version, framework, installed, ..."""
        tables = self.tables
        rows = []
        for info in tables.qualified.values():
            installed = info.framework_installed
            primary = tables.backends.get(info.name) is info
            rows.append({
                "name": info.name if primary else info.qualified_name, "plugin": info.plugin,
                "distribution": info.distribution, "version": info.version, "framework": info.framework or "",
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


def get_backend(name: "str | Backend", dtype: str = "float32", device: str | None = None, **options) -> Backend:
    """Return a backend instance. ``name`` may already be a Backend (returned as is)."""
    if isinstance(name, Backend):
        return name
    return REGISTRY.get_backend(name, dtype=dtype, device=device, **options)


def reference_backend(dtype: str = "float64") -> Backend:
    """The NumPy reference backend, which computes on host arrays (see ``REFERENCE_BACKEND``)."""
    return get_backend(REFERENCE_BACKEND, dtype=dtype)


def list_backends() -> list[dict]:
    """Every registered backend, with where it comes from and whether it is usable."""
    return REGISTRY.list_backends()


def service(table: str, key: str, what: str) -> ServiceInfo:
    """The plugin service ``key`` of ``table``, or a LookupError listing the available ones."""
    entries = REGISTRY.services(table)
    if key not in entries:
        raise UnknownNameError(f"no {what} {key!r} is registered{closest(key, entries)}; available: "
                               f"{sorted(entries) or 'none'} (plugins add more through their hooks)")
    return entries[key]


# ------------------------------------------------------------- name lookups

def lookup(kind: str, name: str, builtins: Mapping[str, Any]) -> Any:
    """Find ``name`` among the built-ins of ``kind``, then among plugin-registered ones."""
    key = name.lower()
    if key in builtins:
        return builtins[key]
    plugin_items = REGISTRY.named(kind)  # plugins are loaded on the first miss only
    if name in plugin_items:
        return plugin_items[name][0]
    known = sorted({*builtins, *plugin_items})
    raise UnknownNameError(
        f"unknown {singular(kind)} {name!r}{closest(key, known)}; known {kind}: {', '.join(known)}")


def resolve(kind: str, identifier: Any, builtins: Mapping[str, Any],
            instance_of: type | tuple[type, ...] | None = None, **kwargs) -> Any:
    """Return an instance for ``identifier``: an instance passes through, a name is looked up and called."""
    if instance_of is not None and isinstance(identifier, instance_of):
        return identifier
    if isinstance(identifier, dict) and "class_name" in identifier:  # as saved in a model config
        name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", identifier["class_name"]).lower()
        factory = lookup(kind, name if name in builtins else identifier["class_name"], builtins)
        return factory(**identifier.get("config", {}), **kwargs)
    if isinstance(identifier, str):
        factory: Callable = lookup(kind, identifier, builtins)
        return factory(**kwargs) if kwargs or isinstance(factory, type) else factory()
    if isinstance(identifier, type) and instance_of is not None and issubclass(identifier, instance_of):
        return identifier(**kwargs)
    raise TypeError(f"expected a {singular(kind)} name or object, got {identifier!r} ({type(identifier).__name__})")
