"""`edge new-plugin NAME`: a plugin package to start from, with a test that passes.

The files come from `edge/plugin_template/`, with `__TYPE__`, `__MODULE__`, `__DIST__`, `__CLASS__`,
`__API_VERSION__` and `__NODE_VERSION__` replaced (in names too); `.tmpl` is dropped from file names
(it keeps the template's Python out of imports and test collection).
"""

from __future__ import annotations

from pathlib import Path

from . import __version__
from .pluginmanager import TYPE_NAME

TEMPLATE = Path(__file__).with_name("plugin_template")
#: the lowest `edge.plugin` API the template's code needs (`read_announced`): a plugin declares the lowest it
#: uses, so that it loads on older nodes too (it had declared the node's own)
TEMPLATE_API_VERSION = "1.2"


def new_plugin(type_name: str, parent: Path) -> Path:
    """Write the package for origin type `type_name` into `parent/edge-<name>-origin`; its folder.

    `ValueError` for a name that is not a lowercase identifier or a folder that already exists."""
    if not TYPE_NAME.fullmatch(type_name):
        raise ValueError(f"{type_name!r} is not a valid origin type name: use lowercase letters, digits "
                         f"and underscores, starting with a letter")
    words = {
        "__TYPE__": type_name,
        "__MODULE__": f"edge_{type_name}_origin",
        "__DIST__": f"edge-{type_name.replace('_', '-')}-origin",
        "__CLASS__": "".join(word.capitalize() for word in type_name.split("_")) + "Origin",
        "__API_VERSION__": TEMPLATE_API_VERSION,
        "__NODE_VERSION__": __version__,
    }
    target = parent / words["__DIST__"]
    if target.exists():
        raise ValueError(f"{target} already exists")
    for source in sorted(TEMPLATE.rglob("*")):
        if not source.is_file() or "__pycache__" in source.parts:
            continue
        relative = _fill(str(source.relative_to(TEMPLATE)), words).removesuffix(".tmpl")
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(_fill(source.read_text(encoding="utf-8"), words), encoding="utf-8")
    return target


def _fill(text: str, words: dict[str, str]) -> str:
    for word, value in words.items():
        text = text.replace(word, value)
    return text
