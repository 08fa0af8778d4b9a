"""Helpers for origin types, built-in and third-party: read a body within the size limit, write dates.

Every origin must stop reading an original as soon as it is over `max_bytes` (a 40 MB limit must not
cost 4 GB of download), and must say so with `SourceTooLarge`. These helpers make that one line.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from datetime import datetime, timezone
from email.utils import format_datetime

from .origin import SourceTooLarge

#: bytes asked of a socket at a time while streaming an original
CHUNK_BYTES = 256 * 1024


def check_announced_size(announced: int | None, max_bytes: int, path: str) -> None:
    """Refuse before reading when the origin announces (Content-Length) more than `max_bytes`."""
    if announced is not None and announced > max_bytes:
        raise SourceTooLarge(path)


async def read_limited(chunks: AsyncIterable[bytes], max_bytes: int, path: str) -> bytes:
    """Join `chunks`; raise `SourceTooLarge` as soon as more than `max_bytes` arrived, reading no further.

    The caller closes the stream (a partly read HTTP response must not go back to a connection pool)."""
    parts: list[bytes] = []
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise SourceTooLarge(path)
        parts.append(chunk)
    return b"".join(parts)


def http_date(moment: datetime | None) -> str | None:
    """A `Last-Modified` style date (RFC 9110 IMF-fixdate) from an aware or UTC datetime."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return format_datetime(moment.astimezone(timezone.utc), usegmt=True)
