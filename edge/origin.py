"""What an origin is: the base class every origin type (built-in or third-party) implements.

An origin answers one question, "give me the original at this path", with an `Original`, or raises
`OriginNotFound` (move on to the next origin) or `OriginFailure` (move on, but remember: if nobody
has the path the answer is 502/504, not 404). The origin chain in `edge.chain` enforces the timeout
and records metrics, so an origin type only has to fetch.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .settings import ConfigTable, Secret


@dataclass(frozen=True)
class OriginSettings:
    """The fields every origin table has, whatever its type."""

    name: str
    type: str
    timeout: float = 10.0
    canonical_base_url: str | None = None


@dataclass(frozen=True)
class Validators:
    """What a cached original carries so that an origin can answer a conditional request."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class OriginRequest:
    """What the node asks of an origin in one `fetch`. New fields come with defaults (a minor API version)."""

    #: the requested path, percent-decoded once, without a leading `/` (`products/shoe.png`)
    path: str
    #: stop reading past this many bytes, and raise `SourceTooLarge`
    max_bytes: int
    #: the client's `Host` header, given only to an origin whose `takes_request_host` is true
    host: str | None = None
    #: the version the node holds, for a conditional fetch: raise `NotModified` while it is current
    validators: Validators | None = None
    #: when what the node cached of this path was last purged (wall-clock seconds, a purge of the last
    #: 15 minutes), or None: an origin that keeps what it learnt of the storage (a listing, a resolved
    #: name) asks the storage again when it learnt it before this — the operator purged because the
    #: storage changed (API 1.3)
    purged_at: float | None = None


@dataclass(frozen=True)
class Original:
    """The bytes of an original and what the origin said about them."""

    body: bytes
    etag: str | None = None
    last_modified: str | None = None
    content_type: str | None = None

    @property
    def validators(self) -> Validators:
        return Validators(self.etag, self.last_modified)


class OriginNotFound(Exception):
    """The origin does not have the path. The chain tries the next origin."""


class OriginFailure(Exception):
    """The origin could not answer. `kind` is a short, stable lowercase word (letters and `_`, at most
    32) that goes into `X-Edge-Error` and the log as it is: `timeout`, `refused`, `denied`,
    `server_error`, `bad_response`, `redirect_refused` or `error`, or a word of the plugin's own, which
    the metrics count as `error`; anything else (a credential of the config too) is reported as `error`. The
    message must not contain a credential."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class SourceTooLarge(Exception):
    """The origin has the path but the original is over `max_bytes`; the request is a 400."""


class NotModified(Exception):
    """A conditional fetch found the cached original still current."""


class Origin(abc.ABC):
    """One configured origin. Constructed from config (no I/O), opened in the serving process."""

    #: the `type = "..."` value in the config that selects this class.
    type_name: ClassVar[str]
    #: whether this type reads originals from this machine's own storage: the node then keeps no copy
    #: of them in its originals tier (a copy would cost a disk write per fetch and save no fetch), and
    #: takes an original's ETag, when it has one, as its version instead of hashing the bytes on every
    #: miss: such an ETag must change whenever the bytes do (the built-in `local`: modification time in
    #: nanoseconds and size, as nginx's)
    is_local: ClassVar[bool] = False
    #: whether this origin reads `a//b.jpg` as `a/b.jpg` (a file system, most web servers): when every origin
    #: of an endpoint does, the node merges the slashes of the endpoint's paths, so that each spelling is the
    #: one cache entry a purge of `a/b.jpg` takes (each had been an entry of its own, which a client could make
    #: and that purge kept). An S3 key, or a plugin's path, may hold `//`: such a path is passed on as it is
    merges_slashes: bool = False

    def __init__(self, settings: OriginSettings):
        self.settings = settings

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def takes_request_host(self) -> bool:
        """Whether `fetch` uses the client's Host (`OriginRequest.host`, None unless this is true), so
        that its answer may differ per Host: the node then keys what it caches for this origin's
        endpoints by the Host."""
        return False

    def takes_host(self, host: str) -> bool:
        """For an origin that `takes_request_host`: whether this Host (lower-cased) is given to `fetch`.
        Any other is not: such requests get what `fetch` answers without one, all cached under one key,
        so that Hosts a client invents neither multiply fetches nor push real entries out."""
        return True

    @classmethod
    @abc.abstractmethod
    def from_config(cls, settings: OriginSettings, table: ConfigTable) -> Origin:
        """Read and validate this type's own keys from `table` (then call `table.finish()`).
        Raise `table.error(key, message)` for a bad value. Must not connect anywhere or read the
        storage: `edge check-config` runs it, also where the storage cannot be reached."""

    async def open(self) -> None:
        """Create clients and sessions. Called once in each serving process, inside its event loop."""

    async def close(self) -> None:
        """Release what `open` created."""

    @abc.abstractmethod
    async def fetch(self, request: OriginRequest) -> Original:
        """Return the original at `request.path`.

        Raise `OriginNotFound`, `OriginFailure`, `SourceTooLarge` (stop reading past `request.max_bytes`),
        or `NotModified` when `request.validators` are given and the origin confirms they are current."""

    def folders(self) -> tuple[Path, ...]:
        """The folders of this machine it reads originals from (none: a remote origin's): `edge serve` and
        `check-config` warn when the cache folder and one of them hold each other."""
        return ()

    def describe(self) -> dict[str, Any]:
        """A summary for `edge check-config`; `Secret` values are shown masked."""
        summary = {"name": self.name, "type": self.type_name, "timeout": self.settings.timeout}
        summary.update({k: v for k, v in vars(self).items() if k != "settings" and not k.startswith("_")})
        if self.settings.canonical_base_url:
            summary["canonical_base_url"] = self.settings.canonical_base_url
        return {k: _shown(v) for k, v in summary.items()}


def described(origin: Origin) -> dict[str, Any]:
    """`origin.describe()`, or, when a plugin's own raises or gives no mapping, the base summary saying so: at a
    reload, one that raised had ended the supervisor, and the node with it (`check-config` with a traceback)."""
    try:
        summary = origin.describe()
        if isinstance(summary, dict):
            return summary
        problem = f"returned {type(summary).__name__}, not a dict"
    except Exception as error:
        problem = f"raised {type(error).__name__}"
    return {**Origin.describe(origin), "describe()": problem}


def _shown(value: Any) -> Any:
    """An attribute as `check-config` prints it: a `Secret` masked, a value JSON cannot write (one that
    holds itself, say) as its text, and one whose text cannot be made by its type's name: a plugin's
    attribute had failed the command with a traceback."""
    if isinstance(value, Secret):
        return str(value)
    try:
        json.dumps(value, default=str)
        return value
    except Exception:
        try:
            return str(value)
        except Exception:
            return f"<{type(value).__name__}>"
