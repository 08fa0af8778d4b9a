"""Loading plugins: built-ins and third parties alike come in through the `edge.plugins` entry points."""

from __future__ import annotations

from types import ModuleType

import pluggy

from . import hookspecs
from .errors import ConfigError
from .origin import Origin


def load_plugins(*extra: ModuleType | object) -> pluggy.PluginManager:
    """A plugin manager with every installed plugin, plus `extra` ones (used by tests)."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.load_setuptools_entrypoints(hookspecs.ENTRY_POINT_GROUP)
    for plugin in extra:
        manager.register(plugin)
    return manager


def origin_types(manager: pluggy.PluginManager) -> dict[str, type[Origin]]:
    """Every origin type the plugins provide, by type name."""
    types: dict[str, type[Origin]] = {}
    for provided in manager.hook.edge_origin_types():
        for origin_type in provided:
            if not (isinstance(origin_type, type) and issubclass(origin_type, Origin)):
                raise ConfigError(f"plugin origin type {origin_type!r} is not a subclass of edge.origin.Origin")
            if origin_type.type_name in types:
                raise ConfigError(f"origin type {origin_type.type_name!r} is provided by two plugins")
            types[origin_type.type_name] = origin_type
    return types
