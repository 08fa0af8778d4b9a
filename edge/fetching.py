"""Helpers for origin types, built-in and third-party: read a body within the size limit, write dates,
run blocking calls off the event loop.

Every origin must stop reading an original as soon as it is over `max_bytes` (a 40 MB limit must not
cost 4 GB of download), and must say so with `SourceTooLarge`. These helpers make that one line.

`read_limited` also holds the bytes it reads against the process's `fetch_memory` budget (`[server]
fetch_memory`), so that many large originals arriving at once wait, then get 503, instead of
growing the process without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Callable
from contextvars import ContextVar
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any, TypeVar

from . import __version__
from .cores import usable_cores
from .errors import FetchMemoryExhausted
from .origin import OriginFailure, SourceTooLarge
from .threads import BlockingPool, wait_for_room, wake

T = TypeVar("T")

#: what an origin that speaks HTTP says it is (`User-Agent`)
USER_AGENT = f"edge-image-node/{__version__} (image edge node)"
#: bytes asked of a socket at a time while streaming an original
CHUNK_BYTES = 256 * 1024


def check_announced_size(announced: int | None, max_bytes: int, path: str) -> None:
    """Refuse before reading when the origin announces (Content-Length) more than `max_bytes`."""
    if announced is not None and announced > max_bytes:
        raise SourceTooLarge(path)


class FetchBudget:
    """Bytes of originals being read at once in this process. A reader reserves what it is about to
    hold (the announced size at once, else chunk by chunk) and waits, bounded, while the budget is
    full; everything it reserved is released when it returns or fails."""

    def __init__(self, capacity: int, wait: float):
        self.capacity = capacity
        self.wait = wait
        self.in_use = 0
        self._waiters: list[asyncio.Future] = []

    def configure(self, capacity: int, wait: float) -> None:
        self.capacity, self.wait = capacity, wait

    async def reserve(self, size: int) -> None:
        def take() -> bool:
            if self.in_use + size > self.capacity:
                return False
            self.in_use += size
            return True

        deadline = asyncio.get_running_loop().time() + self.wait
        await wait_for_room(take, self._waiters, deadline, FetchMemoryExhausted)

    def release(self, size: int) -> None:
        self.in_use -= size
        wake(self._waiters)


#: the defaults of `[server] fetch_memory` and `fetch_memory_wait`
DEFAULT_FETCH_MEMORY = 200 * 10**6
DEFAULT_FETCH_MEMORY_WAIT = 5.0

#: this process's budget; the serving process sets it from `[server]` (the defaults until then)
fetch_budget = FetchBudget(DEFAULT_FETCH_MEMORY, DEFAULT_FETCH_MEMORY_WAIT)


async def read_limited(chunks: AsyncIterable[bytes], max_bytes: int, path: str, *,
                       announced: int | None = None) -> bytes:
    """Join `chunks`; raise `SourceTooLarge` as soon as more than `max_bytes` arrived, reading no further.

    Pass the announced size (Content-Length) when there is one: it is reserved from the fetch budget
    before the first byte is read. Raises `FetchMemoryExhausted` when the budget stays full.
    The caller closes the stream (a partly read HTTP response must not go back to a connection pool)."""
    parts: list[bytes] = []
    total = reserved = 0
    try:
        if announced:
            check_announced_size(announced, max_bytes, path)
            await fetch_budget.reserve(announced)
            reserved = announced
        async for chunk in chunks:
            total += len(chunk)
            if total > max_bytes:
                raise SourceTooLarge(path)
            if total > reserved:
                await fetch_budget.reserve(total - reserved)
                reserved = total
            parts.append(chunk)
        return b"".join(parts)
    finally:
        fetch_budget.release(reserved)


async def read_announced(read: Callable[[], Awaitable[bytes]], announced: int, max_bytes: int, path: str) -> bytes:
    """`await read()` for a body whose length is announced (a client that never reads past it), held
    against the fetch budget meanwhile as `read_limited` holds its chunks: one read, no joining.
    Raises `SourceTooLarge` before reading when `announced` is over `max_bytes`, and `OriginFailure`
    (`bad_response`) when `read()` gave another length than announced (more was not held)."""
    check_announced_size(announced, max_bytes, path)
    await fetch_budget.reserve(announced)
    try:
        body = await read()
    finally:
        fetch_budget.release(announced)
    if len(body) != announced:
        raise OriginFailure("bad_response", f"{path!r}: {len(body)} bytes where {announced} were announced")
    return body


def http_date(moment: datetime | None) -> str | None:
    """A `Last-Modified` style date (RFC 9110 IMF-fixdate) from an aware or UTC datetime."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return format_datetime(moment.astimezone(timezone.utc), usegmt=True)


#: the threads of `in_thread`, per origin: as many as asyncio's default executor has, for each origin
#: apart, so that one whose blocking calls hang (a plugin's bug, a stuck mount) holds its own threads
#: and no other origin's (the usable cores, not the machine's: `edge.cores`)
ORIGIN_THREADS = min(32, usable_cores().count + 4)
_threads_by_origin: dict[str, BlockingPool] = {}
#: the pool of the origin whose fetch runs in this task (`chain._fetch` sets it); calls outside any
#: fetch (an `open`, a test) share `_other_threads`
_fetching_for: ContextVar[BlockingPool | None] = ContextVar("fetching_for", default=None)
_other_threads = BlockingPool(ORIGIN_THREADS, "origin")


def fetching_for(origin: str) -> None:
    """In the task of one origin's fetch: its `in_thread` calls go to that origin's threads."""
    pool = _threads_by_origin.get(origin)
    if pool is None:
        pool = _threads_by_origin[origin] = BlockingPool(ORIGIN_THREADS, f"origin{len(_threads_by_origin)}")
    _fetching_for.set(pool)


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` on one of the calling origin's threads for blocking calls (file reads, a
    synchronous client library), awaited without blocking the event loop. Like `asyncio.to_thread`
    at about half its overhead: one hand-off each way, no executor future (a local read: 0.1-0.2 ms
    of CPU and 0.2-0.4 ms of latency less on 2 cores, benchmarks/README.md). A call still waiting for
    a thread when its caller is cancelled is skipped; a started one runs to its end. Context
    variables are not carried over."""
    return await (_fetching_for.get() or _other_threads).run(function, *args)
