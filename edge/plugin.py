"""The public API for origin plugins: the one module a plugin imports. Everything else in `edge` is internal.

    from edge.plugin import Origin, Original, OriginNotFound, hookimpl

    EDGE_PLUGIN_API = "1.5"   # the API_VERSION this plugin is written against

The contract of `API_VERSION` ("MAJOR.MINOR"):

- A minor release (1.0 → 1.1) only adds: new names here, new optional keyword arguments, new fields
  with defaults, new optional hooks. A plugin written for 1.0 keeps working on every 1.x.
- A major release (1.x → 2.0) may change or remove what is here; a plugin must be updated for it.
- A plugin declares the version it is written against in the module its entry point names, as
  `EDGE_PLUGIN_API = "1.5"`. The node refuses to load a plugin that declares none, one newer than the
  node's (it may use what this node lacks), or an older major version, and says so in `edge plugins`
  and in a warning at start; configs that do not use its types keep working.

See docs/writing-an-origin-plugin.md.
"""

from __future__ import annotations

from .errors import FetchMemoryExhausted
from .fetching import (CHUNK_BYTES, USER_AGENT, check_announced_size, fetch_memory, http_date, in_thread,
                       read_announced, read_limited)
from .hookspecs import hookimpl
from .origin import (
    NotModified,
    Origin,
    Original,
    OriginFailure,
    OriginNotFound,
    OriginRequest,
    OriginSettings,
    SourceTooLarge,
    Validators,
)
from .settings import ConfigTable, Secret, host_name, without_userinfo
from .transform.formats import IMAGE_EXTENSIONS

#: 1.1 added `in_thread`; 1.2 `read_announced`; 1.3 `USER_AGENT`, `without_userinfo`, `IMAGE_EXTENSIONS`;
#: 1.4 `Origin.takes_host`, `host_name`, `ConfigTable.host_names` and `bool_or_host_names`; 1.5 `fetch_memory`,
#: `FetchMemoryExhausted`
API_VERSION = "1.5"

__all__ = [
    "API_VERSION",
    "CHUNK_BYTES",
    "ConfigTable",
    "FetchMemoryExhausted",
    "IMAGE_EXTENSIONS",
    "NotModified",
    "Origin",
    "OriginFailure",
    "OriginNotFound",
    "OriginRequest",
    "OriginSettings",
    "Original",
    "Secret",
    "SourceTooLarge",
    "USER_AGENT",
    "Validators",
    "check_announced_size",
    "fetch_memory",
    "hookimpl",
    "host_name",
    "http_date",
    "in_thread",
    "read_announced",
    "read_limited",
    "without_userinfo",
]
