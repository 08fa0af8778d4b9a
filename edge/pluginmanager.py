"""Loading plugins: built-ins and third parties alike come in through the `edge.plugins` entry points.

One broken plugin must not take the node down: a plugin that fails to import, declares an API this
node does not provide, or whose hook raises is logged, listed by `edge plugins` with the reason, and
skipped. Only a config that uses a type nobody could provide fails, and its error names the plugins
that failed. Two plugins claiming one type name fail the same way, for the configs that use it.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import re
import signal
import threading
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType

import pluggy

from . import hookspecs
from .origin import Origin
from .plugin import API_VERSION

log = logging.getLogger("edge.plugins")

#: the module attribute in which a plugin names the `edge.plugin.API_VERSION` it is written against
API_ATTRIBUTE = "EDGE_PLUGIN_API"
#: seconds a plugin's import may take in the main thread (every `edge` command, a node's start; a reload's reading is
#: held to the supervisor's bound): a module connecting at import to a host that drops packets had held every
#: command, the node's start included, silently and for ever, whatever plugins the config used (plugin probe)
IMPORT_SECONDS = 30
#: what an origin type may be named
TYPE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
#: the distribution of the node, whose plugins are its built-in origin types
DISTRIBUTION = "edge-image-node"


@dataclass(frozen=True)
class LoadedPlugin:
    """One installed plugin as `edge plugins` shows it."""

    name: str  # the entry point's name (the module's, for plugins passed in by tests)
    module: str
    distribution: str | None
    version: str | None
    origin_types: tuple[str, ...] = ()
    #: why it was skipped; None when it loaded
    error: str | None = None

    def label(self) -> str:
        """`name (distribution version)`, as errors and warnings name a plugin."""
        package = " ".join(filter(None, (self.distribution, self.version)))
        return f"{self.name} ({package})" if package else self.name


class Plugins:
    """The loaded plugins and the origin types they provide."""

    def __init__(self, loaded: list[LoadedPlugin], providers: dict[str, list[tuple[type[Origin], LoadedPlugin]]]):
        self.loaded = tuple(loaded)
        self._providers = providers

    @property
    def failed(self) -> tuple[LoadedPlugin, ...]:
        return tuple(plugin for plugin in self.loaded if plugin.error is not None)

    def type_names(self) -> list[str]:
        return sorted(self._providers)

    def origin_type(self, type_name: str) -> type[Origin]:
        """The class for `type = "<type_name>"`; `LookupError` with a message for the config error."""
        providers = self._providers.get(type_name, [])
        if len(providers) > 1:
            names = " and ".join(plugin.label() for _, plugin in providers)
            raise LookupError(f"origin type {type_name!r} is provided by two plugins, {names}: uninstall one")
        if providers:
            return providers[0][0]
        message = f"unknown origin type {type_name!r}; installed types: {', '.join(self.type_names())}"
        if self.failed:
            message += "; plugins that failed to load: " + "; ".join(
                f"{plugin.label()}: {plugin.error}" for plugin in self.failed)
        raise LookupError(message)

    def report(self) -> str:
        """The table `edge plugins` prints: one line per plugin, then those that failed, with why."""
        rows = [("PLUGIN", "DISTRIBUTION", "VERSION", "ORIGIN TYPES")]
        rows += [(p.name, p.distribution or "-", p.version or "-", ", ".join(p.origin_types) or "-")
                 for p in self.loaded if p.error is None]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3] for row in rows]
        if self.failed:
            lines += ["", "FAILED TO LOAD (skipped; a config that uses their types is refused)"]
            lines += [f"{plugin.label()}: {plugin.error}" for plugin in self.failed]
        if self.conflicts:
            lines += ["", "ORIGIN TYPES PROVIDED TWICE (a config that uses one is refused: uninstall a plugin)"]
            lines += [f"{type_name}: {' and '.join(labels)}" for type_name, labels in self.conflicts.items()]
        return "\n".join(lines)

    @property
    def conflicts(self) -> dict[str, list[str]]:
        """Origin types that more than one plugin provides (a built-in one included), and by whom."""
        return {type_name: [plugin.label() for _, plugin in providers]
                for type_name, providers in sorted(self._providers.items()) if len(providers) > 1}


def load_plugins(*extra: ModuleType | object) -> Plugins:
    """Every installed plugin that loads, plus `extra` ones (tests pass plugin modules or objects)."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    candidates: list[tuple[object, LoadedPlugin]] = []
    loaded: list[LoadedPlugin] = []
    for entry_point in _entry_points():
        plugin, info = _import(entry_point)
        if info.error is not None:
            loaded.append(info)
        elif all(plugin is not seen for seen, _ in candidates):  # one module may be reached by two entry points
            candidates.append((plugin, info))
    for plugin in extra:
        name = getattr(plugin, "__name__", type(plugin).__name__)
        candidates.append((plugin, LoadedPlugin(name, name, None, None)))

    providers: dict[str, list[tuple[type[Origin], LoadedPlugin]]] = {}
    for plugin, info in candidates:
        try:
            manager.register(plugin, name=f"{info.distribution}:{info.name}")  # checks the hooks' signatures
            if not manager.get_hookcallers(plugin):  # loaded, and silently of no use: said like a failure
                raise _Unusable("it implements no hook: mark its hook functions with @edge.plugin.hookimpl")
            provided = _origin_types_of(manager, plugin)
        except (Exception, SystemExit) as error:  # noqa: BLE001 - any failure of a plugin's hooks skips that plugin
            if manager.is_registered(plugin):
                manager.unregister(plugin)
            loaded.append(_failed(info, str(error) if isinstance(error, _Unusable) else _describe(error)))
            continue
        info = dataclasses.replace(info, origin_types=tuple(origin_type.type_name for origin_type in provided))
        loaded.append(info)
        for origin_type in dict.fromkeys(provided):  # a class listed twice is provided once
            providers.setdefault(origin_type.type_name, []).append((origin_type, info))
    _refuse_claims_on_built_ins(loaded, providers)
    return Plugins(sorted(loaded, key=lambda p: (p.distribution or "", p.name)), providers)


def _refuse_claims_on_built_ins(loaded: list[LoadedPlugin], providers: dict[str, list]) -> None:
    """A plugin providing a type the node has built in (`local`, `web`…) is skipped, as failing to load: the name
    provided twice, every config using the built-in type had been refused, told to uninstall one of the two."""
    built_in = {name for name, given in providers.items()
                if any(info.distribution == DISTRIBUTION for _, info in given)}
    claiming = {info for name in built_in for _, info in providers[name] if info.distribution != DISTRIBUTION}
    for info in claiming:
        names = sorted(set(info.origin_types) & built_in)
        loaded[loaded.index(info)] = _failed(info, f"it provides the origin type {names[0]!r}, which the node has "
                                                   "built in: give its type another name")
        for name in info.origin_types:
            providers[name] = [(origin_type, by) for origin_type, by in providers[name] if by is not info]
            if not providers[name]:
                del providers[name]


def _entry_points() -> list[EntryPoint]:
    unique = {(ep.name, ep.value, ep.dist.name if ep.dist else None): ep
              for ep in entry_points(group=hookspecs.ENTRY_POINT_GROUP)}
    return list(unique.values())


def _import(entry_point: EntryPoint) -> tuple[object | None, LoadedPlugin]:
    dist = entry_point.dist
    info = LoadedPlugin(entry_point.name, entry_point.value, dist.name if dist else None,
                        dist.version if dist else None)
    try:
        with _bounded(IMPORT_SECONDS):
            plugin = entry_point.load()
    except _ImportTookTooLong as error:
        held = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename != __file__][-1]
        return None, _failed(info, f"cannot import {entry_point.value}: stopped after {IMPORT_SECONDS}s, at "
                                   f"{held.filename}:{held.lineno} (a connection made at import?)")
    except ImportError as error:
        return None, _failed(info, f"cannot import {entry_point.value}: {_describe(error)}{_newer_api(error)}")
    except (Exception, SystemExit) as error:  # noqa: BLE001 - SyntaxError, whatever its import runs
        return None, _failed(info, f"cannot import {entry_point.value}: {_describe(error)}")
    problem = api_problem(getattr(plugin, API_ATTRIBUTE, None))
    if problem:
        return None, _failed(info, problem)
    return plugin, info


class _ImportTookTooLong(BaseException):
    """Raised into an import over its time; not an `Exception`, which the plugin's own code may catch."""


@contextmanager
def _bounded(seconds: float) -> Iterator[None]:
    """The block stopped by `_ImportTookTooLong` after `seconds`, in the main thread (where Python runs signal
    handlers: a blocking call is interrupted too); elsewhere unbounded."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: object) -> None:
        raise _ImportTookTooLong

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def api_problem(declared: object) -> str | None:
    """Why a plugin declaring `EDGE_PLUGIN_API = declared` cannot load here, or None when it can.

    `API_VERSION` is `MAJOR.MINOR`: a minor release only adds, so a plugin written for 1.0 loads on
    any 1.x; one written for 1.3 needs a node with 1.3 or later; a new major version breaks plugins."""
    provided = _parse_api(API_VERSION)
    wanted = _parse_api(declared)
    if wanted is None:
        text = ", a number: quote it" if isinstance(declared, (int, float)) and not isinstance(declared, bool) else ""
        return (f"it must declare the plugin API it is written for, as {API_ATTRIBUTE} = \"1.0\" (the lowest "
                f"version whose API it uses; this node provides {API_VERSION}; got {declared!r}{text})")
    if wanted[0] > provided[0] or (wanted[0] == provided[0] and wanted[1] > provided[1]):
        return (f"it needs plugin API {declared}, and this node provides {API_VERSION}: "
                f"upgrade edge-image-node, or install an older release of the plugin")
    if wanted[0] < provided[0]:
        return (f"it is written for plugin API {declared}, and this node provides {API_VERSION}, "
                f"which is incompatible: upgrade the plugin")
    return None


def _newer_api(error: ImportError) -> str:
    """What a plugin importing a name `edge.plugin` lacks needs (`from edge.plugin import fetch_memory` on a
    node older than 1.5): its import fails before it could declare its API, which said nothing of upgrading."""
    if error.name != "edge.plugin":
        return ""
    return (f": the plugin is written for a newer plugin API than this node's {API_VERSION}: upgrade "
            "edge-image-node, or install an older release of the plugin")


def _parse_api(version: object) -> tuple[int, int] | None:
    if not isinstance(version, str):
        return None
    major, dot, minor = version.partition(".")
    if not (dot and major.isascii() and major.isdigit() and minor.isascii() and minor.isdigit()):
        return None
    return int(major), int(minor)


class _Unusable(Exception):
    """Why a plugin that imported cannot be used, worded for `edge plugins`."""


def _origin_types_of(manager: pluggy.PluginManager, plugin: object) -> list[type[Origin]]:
    provided: list[type[Origin]] = []
    for impl in manager.hook.edge_origin_types.get_hookimpls():
        if impl.plugin is not plugin:
            continue
        try:
            returned = impl.function()
            # a bare class or a string is not the list the hook returns: told apart from a raise
            listed = list(returned) if isinstance(returned, Iterable) and not isinstance(returned, str) else None
        except (Exception, SystemExit) as error:  # noqa: BLE001 - whatever it raised, the plugin is unusable
            raise _Unusable(f"edge_origin_types() raised {_describe(error)}") from error
        if listed is None:
            raise _Unusable(f"edge_origin_types() returned {returned!r}, not a list of edge.plugin.Origin subclasses")
        for origin_type in listed:
            if not (isinstance(origin_type, type) and issubclass(origin_type, Origin)):
                raise _Unusable(f"edge_origin_types() returned {origin_type!r}, not a subclass of edge.plugin.Origin")
            if not isinstance(getattr(origin_type, "type_name", None), str):
                raise _Unusable(f"edge_origin_types() returned {origin_type.__name__}, which has no type_name")
            if not TYPE_NAME.fullmatch(origin_type.type_name):  # what `type = "…"` can name, `edge new-plugin` makes
                raise _Unusable(f"{origin_type.__name__}.type_name {origin_type.type_name!r} is not lowercase letters, "
                                "digits and underscores, starting with a letter")
            if plain := [name for name in ("fetch", "open", "close")
                         if not inspect.iscoroutinefunction(getattr(origin_type, name))]:
                # else it failed at every request (its fetch's answer awaited), or the worker at its start
                raise _Unusable(f"{origin_type.__name__}.{plain[0]} is not a coroutine function: write `async def "
                                f"{plain[0]}`")
            provided.append(origin_type)
    return provided


def _failed(info: LoadedPlugin, reason: str) -> LoadedPlugin:
    failed = dataclasses.replace(info, error=reason)
    log.warning("plugin %s failed to load and is skipped: %s", failed.label(), reason)
    return failed


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
