"""What the tiers hold: outputs, originals, and what is known about the version of an original."""

from __future__ import annotations

import email.utils
import functools
import hashlib
import re
from dataclasses import dataclass, fields, replace
from typing import Any

from ..transform.formats import MIME_TYPES
from ..transform.hints import ACCEPT_CH

SVG_TYPE = MIME_TYPES["svg"]
#: an SVG served as it is: a document that could hold scripts, links, fetches (GitHub's raw files' policy)
SVG_POLICY = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
#: Unix seconds of years 1 to 9999, which an IMF-fixdate writes (and the platform's time functions take)
_DATE_SECONDS = (-62135596800, 253402300800)
#: a header value the node passes on from an origin: visible ASCII and spaces, bounded
_HEADER_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e]{0,1022}[\x21-\x7e])?")
#: RFC 9110 5.6.7's obsolete asctime form, the one HTTP-date without a zone (it is in GMT)
_ASCTIME = re.compile(r"[A-Za-z]{3} [A-Za-z]{3} [ \d]\d \d\d:\d\d:\d\d \d{4}")


def strong_etag(body: bytes) -> str:
    """The ETag of an output and the version of an original: a hash of the bytes (blocking: hashing
    40 MB takes 10-30 ms, so call it off the IOLoop). SHA-256, cut to 128 bits: with the SHA
    instructions of current x86 and ARM CPUs 2.4x as fast as the BLAKE2b used before (3.5 vs 8.5 ms
    for 5 MB), which every miss paid on its original."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def hashes_to(body: bytes, etag: str) -> bool:
    """Whether `etag` (an ETag or an original's version) is the hash of `body`: by `strong_etag`, or by
    the BLAKE2b that earlier nodes used: what they stored stays valid until it is replaced."""
    return strong_etag(body) == etag or '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"' == etag


def header_value(text: str | None) -> str | None:
    """`text` if it can be sent as a header value as it is, else None: an origin's invalid
    `Last-Modified` or `ETag` is dropped rather than failing every response that would carry it."""
    return text if text is not None and _HEADER_VALUE.fullmatch(text) else None


@functools.lru_cache(maxsize=1024)  # parsing and formatting cost 10 µs, each disk hit of an output pays it
def sent_last_modified(last_modified: str | None, confirmed_at: int) -> str | None:
    """The `Last-Modified` answered for an origin's: as an IMF-fixdate (RFC 9110 5.6.7: a sender never sends
    another form; a `+0200` date is converted to GMT), or none if it is no date, and never later than the time
    (Unix seconds) the origin last confirmed the original, which every answer's `Date` follows (8.8.2.1: a
    file's modification time in the future is replaced). The origin's own value stays the validator the node
    revalidates with."""
    modified = http_time(last_modified) if last_modified else None
    return None if modified is None else email.utils.formatdate(min(modified, confirmed_at), usegmt=True)


def http_time(text: str) -> int | None:
    """An HTTP date (any of RFC 9110 5.6.7's forms, leniently) as Unix seconds, or None if it is not one."""
    parsed = email.utils.parsedate_tz(text)
    try:
        seconds = email.utils.mktime_tz(parsed) if parsed is not None else None
    except (OverflowError, ValueError):  # a year past what the platform's time functions take
        return None
    # a zone offset of any size is added unchecked (`+9999999999999999999`): outside years 1-9999 it is no date
    return seconds if seconds is None or _DATE_SECONDS[0] <= seconds < _DATE_SECONDS[1] else None


def request_time(text: str) -> int | None:
    """A client's HTTP date as Unix seconds, or None if it is not one of RFC 9110 5.6.7's forms, all in GMT: a
    recipient ignores a date in another zone (13.1.4). `http_time` took `... 01:03:17 +0100`, and a
    `+9999`, and answered 412 where the image was due (HTTP probe)."""
    text = text.strip()
    return http_time(text) if text.endswith(" GMT") or _ASCTIME.fullmatch(text) else None


#: how far the clocks of a fleet's nodes may disagree (and a node's clock step back) without effect: an
#: original confirmed up to this far "in the future" is fresh, a purge journal entry up to this far ahead
#: or behind is applied (edge/purge_journal.py); more is a clock step or a broken clock
CLOCK_SKEW_SECONDS = 300.0


@dataclass(frozen=True)
class SourceInfo:
    """What is known about a version of an original: where it came from, its validators for a
    conditional request, a version (hash of the bytes) and when the origin last confirmed it."""

    origin: str
    version: str
    #: wall-clock seconds (outputs in the shared tier carry it from node to node); one more than
    #: `CLOCK_SKEW_SECONDS` ahead of the reader's clock is of unknown age: stale
    checked_at: float
    etag: str | None = None
    last_modified: str | None = None
    content_type: str | None = None
    #: of an output drawn with layers, whose `version` covers the layers' originals too: the original's own
    #: (None: `version` is the original's)
    original_version: str | None = None

    @property
    def version_of_original(self) -> str:
        return self.original_version or self.version

    def as_stored(self) -> dict[str, Any]:
        """Its fields as the tiers and the shared tier store them: `original_version` only when set, so that
        the releases before it read the rest (a field a release does not know makes an entry a miss)."""
        stored = {field.name: getattr(self, field.name) for field in fields(self)}
        if self.original_version is None:
            del stored["original_version"]
        return stored

    @classmethod
    def from_origin(cls, origin: str, version: str, checked_at: float, etag: str | None,
                    last_modified: str | None, content_type: str | None) -> SourceInfo:
        """From an origin's answer: header values that could not be sent on are dropped."""
        return cls(origin, version, checked_at, header_value(etag), header_value(last_modified),
                   header_value(content_type))


@dataclass(frozen=True)
class StoredOriginal:
    """An original as the originals tier holds it: its bytes, or for a file of a `local` origin what is
    known about it alone (`kept` False, an empty body: the folder holds the bytes), so that a read of
    new bytes there still drops the outputs of the old ones."""

    info: SourceInfo
    body: bytes
    kept: bool = True


@dataclass(frozen=True)
class CachedOutput:
    """A stored response: the body, the headers decided when it was produced, and the version of the
    original it was made from (its freshness is that original's). `etag` is a hash of `body`, which
    is also how a damaged stored value is recognised."""

    body: bytes
    content_type: str
    etag: str
    source: SourceInfo
    vary_accept: bool = False
    canonical_link: str | None = None
    #: the client hints the output was chosen by (`Sec-CH-Width, Width`), for `Vary`, or None
    client_hints: str | None = None
    #: made from the `di-` default image, standing in for a missing original: kept fresh (and by caches
    #: in front) only for `not_found_ttl`, so that the real image shows once it is there
    stand_in: bool = False

    def __post_init__(self) -> None:
        # The response headers that depend only on this output, built once when it is made or read
        # from disk (not a field: neither stored nor compared). Every value is a valid header value:
        # MIME types and ETags are the node's own, Last-Modified passed `header_value`, Link is
        # percent-encoded.
        # nosniff: a browser takes the body for what Content-Type says, never for HTML it sniffed
        headers = [("Content-Type", self.content_type), ("X-Content-Type-Options", "nosniff"), ("Etag", self.etag)]
        # a stand-in's `checked_at` is set back to expire it early (`OriginalSource.as_stand_in`): no date of it
        # (a day ago, earlier than the file's own); and the URL's image, missing, has none
        last_modified = None if self.stand_in else sent_last_modified(self.source.last_modified,
                                                                       int(self.source.checked_at))
        if last_modified:
            headers.append(("Last-Modified", last_modified))
        vary = ", ".join(filter(None, ("Accept" if self.vary_accept else None, self.client_hints)))
        if vary:
            headers.append(("Vary", vary))
        if self.client_hints:
            headers.append(("Accept-CH", ACCEPT_CH))
        if self.canonical_link:
            headers.append(("Link", self.canonical_link))
        if self.content_type == SVG_TYPE:  # a document: its scripts never run, nor does it load anything
            headers.append(("Content-Security-Policy", SVG_POLICY))
        object.__setattr__(self, "headers", tuple(headers))
        #: the `Last-Modified` answered (`If-Unmodified-Since` is compared with it), or None
        object.__setattr__(self, "last_modified", last_modified)

    @property
    def size(self) -> int:
        """The body's size in bytes (`Content-Length`)."""
        return len(self.body)

    def confirmed(self, source: SourceInfo) -> CachedOutput:
        """This output, now known to be made from the current version of its original."""
        return replace(self, source=source)


@dataclass(frozen=True)
class UnreadOutput(CachedOutput):
    """A stored output whose body was left on disk (`body` is empty): a disk hit whose answer sends none, a
    HEAD or a 304 (`tiers.BeforeReading`). Never kept in the memory tier, stored or revalidated (a stale
    one is read again, whole)."""

    #: the body's size on disk
    stored_size: int = 0

    @property
    def size(self) -> int:
        return self.stored_size
