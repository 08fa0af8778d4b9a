"""Every plugin hook of the edge node, in one module. The docstrings are the contract.

A plugin is a module with functions decorated `@hookimpl` (import it from `edge.plugin`, the public
API) and an `EDGE_PLUGIN_API = "1.0"` declaration (the lowest version whose API it uses), registered under
the `edge.plugins` entry-point group of its package::

    [project.entry-points."edge.plugins"]
    my_origin = "my_package.my_origin"

The built-in origin types in `plugins/` (installed as `edge_builtin_origins`) are registered exactly
this way; each is an example to copy.
"""

from __future__ import annotations

import pluggy

PROJECT = "edge"
ENTRY_POINT_GROUP = "edge.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def edge_origin_types() -> list[type]:
    """Return the origin types this plugin provides: subclasses of `edge.plugin.Origin`.

    Each class's `type_name` is the value of `type = "..."` in an `[[origins]]` table that selects it;
    its `from_config` validates the rest of that table. Two plugins may not claim the same type name.
    """
