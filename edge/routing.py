"""From an HTTP request to (endpoint, transformation text, path of the original).

Order: a `Host` that an endpoint owns selects it (no identifier in the path); otherwise a first path
segment equal to an endpoint identifier; otherwise the default endpoint (`id = ""`). The next
segment, if it starts with `tr:` and another segment follows it, is the transformation. The rest is
the path (less a last `/ik-thumbnail.jpg`, ImageKit's still of an animation: `ImageRequest.thumbnail`),
percent-decoded once as UTF-8 (a byte sent unencoded reads as its `%XX` would), its leading slashes dropped;
a path with a `.` or `..` segment (a backslash delimits one too: servers on Windows read `%5C` as `/`), or a
NUL, is not found, whatever the origin.

On an endpoint with a `private_key`, the URL's signature is checked right after the endpoint is
known, before anything is looked up (`edge.signing`): a 401 never depends on what is cached.
An endpoint with `url_style = "cloudinary"` reads the rest of the path as a Cloudinary delivery URL
instead (`edge.cloudinary_urls`): its transformation, already parsed, travels in the `ImageRequest`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

from . import cloudinary_urls
from .config import Endpoint
from .errors import BadRequest, InvalidTransformation, NothingToServe, SignatureRefused
from .settings import host_name
from .signing import SignatureCheck
from .transform.layers import dot_segment
from .transform.options import Transformation


@dataclass(slots=True)  # not frozen: built on every request that misses the plan memo, where frozen costs µs
class ImageRequest:
    endpoint: Endpoint
    #: the original's path: percent-decoded once, no leading `/`
    path: str
    #: the `tr:` path segment's transformation, without `tr:`
    path_transformation: str | None
    #: the `Host` header as sent (origins may forward it: the `web` origin's `forward_host`)
    host: str
    #: the expiry (unix time) of its valid signature (`NO_EXPIRY` if it has no `ik-t`); None: unsigned
    signed_until: int | None = None
    #: already read from the path (a `url_style = "cloudinary"` URL); the query's `tr` does not apply
    transformation: Transformation | None = None
    #: with `orig-true`: the format the URL names; an original stored in another format is converted
    original_as: str | None = None
    #: the URL ends in `/ik-thumbnail.jpg` after the original's path: its first frame (or `pg-N`'s), as JPEG
    thumbnail: bool = False
    #: a download (Cloudinary's `fl_attachment[:<name>]`): the file's name, "" for the URL's own
    attachment: str | None = None
    #: `Cache-Control: …, immutable` (Cloudinary's `fl_immutable_cache`)
    immutable: bool = False

    @property
    def signed(self) -> bool:
        return self.signed_until is not None

    @property
    def named_only(self) -> bool:
        """Only `n-<name>` transformations: a `named_only` endpoint's unsigned URLs (whoever signs with
        the endpoint's key may ask for any transformation)."""
        return self.endpoint.named_only and not self.signed


#: ImageKit's still of a video, an animation or a document: `/<path>/ik-thumbnail.jpg`
THUMBNAIL = "ik-thumbnail.jpg"
#: originals whose `ik-thumbnail.jpg` ImageKit makes and the node cannot: what it reads is images
_NO_THUMBNAIL = {**dict.fromkeys(("mp4", "webm", "mov", "m4v", "mkv", "avi", "ogv", "3gp", "mpg", "mpeg", "ts",
                                  "m3u8", "mpd"), "video thumbnails: the node serves images"),
                 **dict.fromkeys(("pdf", "psd", "eps", "ai"), "PDF, PSD, EPS and AI: the node does not read them")}


#: slashes in a row, which a file system or most web servers read as one
_SLASHES = re.compile("/{2,}")


class Router:
    def __init__(self, endpoints: tuple[Endpoint, ...], *, named: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.time):
        self._signatures = SignatureCheck(endpoints, clock)
        self._by_id = {e.id: e for e in endpoints if e.id}
        self._named = dict(named or {})
        self._clouds = {e.id: cloudinary_urls.cloud_names(e.origins) for e in endpoints if e.url_style == "cloudinary"}
        #: a Cloudinary-style endpoint's API secrets, current first
        self._secrets = {e.id: tuple(key.reveal() for key in (e.private_key, *e.previous_private_keys) if key)
                         for e in endpoints if e.url_style == "cloudinary"}
        self._by_host = {host: e for e in endpoints for host in e.hosts}
        self._default = next((e for e in endpoints if e.id == ""), None)
        #: the endpoints whose every origin reads `a//b.jpg` as `a/b.jpg` (`Origin.merges_slashes`)
        self._merging_slashes = {e.id for e in endpoints if all(origin.merges_slashes for origin in e.origins)}

    def serves_host(self, host: str) -> bool:
        """Whether `host` chooses an endpoint of its own (`hosts`)."""
        return host_name(host) in self._by_host

    def route(self, host: str, uri: str, *, for_purge: bool = False) -> ImageRequest:
        """`uri` is the request target as sent (path and query, still percent-encoded), starting with `/`.
        `for_purge`: the path is a purge target, a prefix that may be the whole endpoint; no signature."""
        raw_path, _, query = uri.partition("?")
        segments = raw_path.lstrip("/").split("/")
        endpoint = self._by_host.get(host_name(host)) if host and self._by_host else None
        if endpoint is None:
            endpoint = self._by_id.get(segments[0])
            if endpoint is not None:
                segments = segments[1:]
            elif self._default is not None:
                endpoint = self._default
            else:
                raise NothingToServe("unknown endpoint")
        if endpoint.url_style == "cloudinary":
            return self._cloudinary(endpoint, segments, host, for_purge)
        signed_until = None if for_purge else self._signatures.verify(endpoint, "/".join(segments), query)
        transformation = None
        # a last segment is the file's name (`/tr:w-1.jpg`): as a transformation it would leave no path
        if len(segments) > 1 and (first := _decode(segments[0])).startswith("tr:"):
            transformation = first[3:]
            segments = segments[1:]
        # leading slashes name nothing (ImageKit's docs sign `encodeURIComponent("/a.jpg")`: `%2Fa.jpg`)
        path = _decode("/".join(segments)).lstrip("/")
        if "//" in path and endpoint.id in self._merging_slashes:
            path = _SLASHES.sub("/", path)
        thumbnail = path.endswith(f"/{THUMBNAIL}")
        if thumbnail:  # the original's path, a purge's too: it takes every output of it, the still included
            path = path.removesuffix(f"/{THUMBNAIL}").lstrip("/")
            extension = path.rpartition("/")[2].rpartition(".")[2].lower()
            if extension in _NO_THUMBNAIL and not for_purge:
                raise InvalidTransformation(THUMBNAIL, f"not supported ({_NO_THUMBNAIL[extension]})")
        if not path and not for_purge:
            raise NothingToServe("not found")
        if dot_segment(path) or "\0" in path:
            # NUL: no origin holds such a name (file systems, HTTP servers and S3's XML refuse it), and it
            # separates the parts of every cache key: purges, the shared tier and cache-stats would read
            # `a%00b.jpg` as the path `a`
            raise NothingToServe("not found")
        return ImageRequest(endpoint, path, transformation, host, signed_until, thumbnail=thumbnail and not for_purge)

    def _cloudinary(self, endpoint: Endpoint, segments: list[str], host: str, prefix: bool) -> ImageRequest:
        try:
            delivery = cloudinary_urls.read(segments, _decode, self._clouds[endpoint.id], self._secrets[endpoint.id],
                                            signed_only=endpoint.signed_only, named=self._named,
                                            named_only=endpoint.named_only, prefix=prefix)
        except SignatureRefused as refusal:  # counted like an ImageKit-style endpoint's
            raise self._signatures.refused(endpoint, refusal.reason) from None
        if "\0" in delivery.path:  # as in `route` (its dot segments are the public ID's: `split_path`)
            raise NothingToServe("not found")
        return ImageRequest(endpoint, delivery.path, None, host, transformation=delivery.transformation,
                            original_as=delivery.original_as, attachment=delivery.attachment,
                            immutable=delivery.immutable)


def as_target(text: str) -> str:
    """A path written as text (a purge's JSON, a URL on the command line, a CMS export's `my photo.jpg`) as a
    request line carries it: each character beyond ASCII, a space or a control character percent-encoded (as
    UTF-8), the rest as written (its `%XX` are decoded by `route`)."""
    return text if _SENT_AS_WRITTEN.issuperset(text) else quote(text, safe=_VISIBLE_ASCII)


#: what `as_target` leaves as it is: the visible ASCII characters
_VISIBLE_ASCII = "".join(map(chr, range(0x21, 0x7F)))
_SENT_AS_WRITTEN = frozenset(_VISIBLE_ASCII)


def _decode(text: str) -> str:
    """Percent-decode exactly once; `+` stays `+`; the bytes must be UTF-8. `text` is as Tornado reads the
    request line, a character per byte (Latin-1): a byte sent unencoded (curl sends `café.jpg` as typed, in
    UTF-8) reads as its `%XX` would, so that both spellings are one path."""
    if text.isascii() and "%" not in text:
        return text
    try:
        return unquote_to_bytes(text.encode("latin-1")).decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):  # encode: text that no request line carried (not `as_target`'s)
        raise BadRequest("invalid path: not UTF-8 after percent-decoding") from None
