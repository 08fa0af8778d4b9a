"""From an HTTP request to (endpoint, transformation text, path of the original).

Order: a `Host` that an endpoint owns selects it (no identifier in the path); otherwise a first path
segment equal to an endpoint identifier; otherwise the default endpoint (`id = ""`). The next
segment, if it starts with `tr:`, is the transformation. The rest is the path, percent-decoded once;
a path with a `.` or `..` segment is not found, whatever the origin.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from .config import Endpoint
from .errors import BadRequest, NothingToServe


@dataclass(frozen=True)
class ImageRequest:
    endpoint: Endpoint
    #: the original's path: percent-decoded once, no leading `/`
    path: str
    #: the `tr:` path segment's transformation, without `tr:`
    path_transformation: str | None
    #: the `Host` header as sent (origins may forward it: the `web` origin's `forward_host`)
    host: str


class Router:
    def __init__(self, endpoints: tuple[Endpoint, ...]):
        self._by_id = {e.id: e for e in endpoints if e.id}
        self._by_host = {host: e for e in endpoints for host in e.hosts}
        self._default = next((e for e in endpoints if e.id == ""), None)

    def route(self, host: str, raw_path: str, *, allow_empty_path: bool = False) -> ImageRequest:
        """`raw_path` is the request path as sent (still percent-encoded), starting with `/`.
        `allow_empty_path`: a path prefix (to purge) may be the whole endpoint."""
        segments = raw_path.lstrip("/").split("/")
        endpoint = self._by_host.get(_host_name(host)) if host else None
        if endpoint is None:
            endpoint = self._by_id.get(segments[0])
            if endpoint is not None:
                segments = segments[1:]
            elif self._default is not None:
                endpoint = self._default
            else:
                raise NothingToServe("unknown endpoint")
        transformation = None
        if segments and _decode(segments[0]).startswith("tr:"):
            transformation = _decode(segments[0])[3:]
            segments = segments[1:]
        path = _decode("/".join(segments))
        if not path and not allow_empty_path:
            raise NothingToServe("not found")
        if any(segment in (".", "..") for segment in path.split("/")):
            # A dot segment would climb out of an origin's root, folder or base URL (a web server
            # normalises `/images/../admin`); no image an origin serves is named like that.
            raise NothingToServe("not found")
        return ImageRequest(endpoint, path, transformation, host)


def _host_name(host: str) -> str:
    """`Img.Example.com:8080` → `img.example.com`; `[::1]:8080` and `[::1]` → `[::1]`."""
    if not host.endswith("]"):
        host = host.rpartition(":")[0] or host
    return host.lower()


def _decode(text: str) -> str:
    """Percent-decode exactly once; `+` stays `+`; the bytes must be UTF-8."""
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("invalid path: not UTF-8 after percent-decoding") from None
