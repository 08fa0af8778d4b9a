"""Helpers for origin types, built-in and third-party: read a body within the size limit, write dates,
run blocking calls off the event loop.

Every origin must stop reading an original as soon as it is over `max_bytes` (a 40 MB limit must not
cost 4 GB of download), and must say so with `SourceTooLarge`. These helpers make that one line.

`read_limited` also holds the bytes it reads against the process's `fetch_memory` budget (`[server]
fetch_memory`), so that many large originals arriving at once wait, then get 503, instead of
growing the process without bound; `fetch_memory` reserves a size known before reading (a file's). Once
read, an original stays in memory until the render that uses it ends: the pipeline holds it against the same
budget until then (`FetchBudget.holding`). An endpoint under its share of the budget does not wait for the
others' originals (`FetchBudget.reserve`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any, TypeVar

from . import __version__
from .cores import usable_cores
from .errors import FetchMemoryExhausted
from .origin import OriginFailure, SourceTooLarge
from .threads import BlockingPool, EndpointShares, wait_for_room, wake

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
    """Bytes of originals in memory in this process: being read, and read and held by a render (`holding`),
    in progress or waiting for a thread. A reader reserves what it is about to hold (the announced size at
    once, else chunk by chunk) and waits, bounded, while the budget is full; what it reserved is released
    when it returns or fails, and the render it reads for holds the bytes from then on, until it ends."""

    def __init__(self, capacity: int, wait: float):
        self.capacity = capacity
        self.wait = wait
        #: bytes being read
        self.in_use = 0
        #: bytes read and held by renders, each original once however many renders share it
        self.held = 0
        #: id of each original held → how many renders hold it, and the endpoint it is counted on (the first
        #: holder's; the ids are stable: each holder keeps its bytes)
        self._holders: dict[int, tuple[int, str | None]] = {}
        #: bytes being read for, and held by, the renders of each endpoint (`reserve`)
        self.shares = EndpointShares()
        #: the renders in progress (`holding`), the oldest first: its reads go past the budget (`reserve`)
        self._holdings: dict[Holding, None] = {}
        self._waiters: list[asyncio.Future] = []

    def configure(self, capacity: int, wait: float) -> None:
        self.capacity, self.wait = capacity, wait

    async def reserve(self, size: int) -> str | None:
        """Take `size` more bytes for a read, for the render in progress in this task (on its endpoint; none: the
        shared tier's reads); the endpoint to `release` them with.

        Over the budget, a read still goes through when its endpoint is under its share while another endpoint
        holds originals (the budget over the endpoints that hold any, this one included), the total up to twice
        the budget: reads are not taken back, and an origin that announces 40 MB and sends a byte a second holds
        its reservation for its whole `timeout` (five such reads had filled a worker's 200 MB, and every other
        endpoint's fetches waited, then got 503, counted `busy` on their own origins: noisy-tenant probe).
        And the reads of the oldest render in progress go through, and so does a read it waits for that another
        render started: renders that hold some originals and wait for room to read the others, or reads that each
        took part of the budget (bodies of no announced length), would otherwise wait for each other, and a URL
        whose originals together are over the budget could never be served."""
        holding, reading = _holding.get(), _reading.get()
        endpoint = None if holding is None else holding.endpoint

        def take() -> bool:
            oldest = next(iter(self._holdings), None)
            total = self.in_use + self.held + size
            if not (total <= self.capacity or oldest is not None and (oldest is holding or reading in oldest.awaited)
                    or self.shares.over_budget_allowed(endpoint, size, total - size, self.capacity)):
                return False
            self.in_use += size
            self.shares.add(endpoint, size)
            return True

        deadline = asyncio.get_running_loop().time() + self.wait
        await wait_for_room(take, self._waiters, deadline, FetchMemoryExhausted)
        return endpoint

    def release(self, size: int, endpoint: str | None = None) -> None:
        self.in_use -= size
        self.shares.add(endpoint, -size)
        wake(self._waiters)

    @contextmanager
    def holding(self, endpoint: str | None = None) -> Iterator[Holding]:
        """A render's hold on its originals, from its first read to its end (its wait for a thread included):
        each original it `add`s, once read, is counted until the block ends, on `endpoint`. The reads made within
        the block (the single flights it starts inherit it) are the render's, for `reserve`, and so are those it
        waits for (`reading`)."""
        holding = Holding(self, endpoint)
        self._holdings[holding] = None
        token = _holding.set(holding)
        try:
            yield holding
        finally:
            _holding.reset(token)
            holding.close()

    def _hold(self, body: bytes, endpoint: str | None) -> None:
        holders, counted_on = self._holders.get(id(body), (0, endpoint))
        self._holders[id(body)] = holders + 1, counted_on
        if not holders:
            self.held += len(body)
            self.shares.add(counted_on, len(body))

    def _let_go(self, body: bytes) -> None:
        holders, counted_on = self._holders.pop(id(body))
        if holders > 1:
            self._holders[id(body)] = holders - 1, counted_on
        else:
            self.held -= len(body)
            self.shares.add(counted_on, -len(body))


class Holding:
    """The originals one render holds (`FetchBudget.holding`)."""

    def __init__(self, budget: FetchBudget, endpoint: str | None):
        self._budget = budget
        self.endpoint = endpoint
        self._bodies: dict[int, bytes] = {}
        self._closed = False
        #: the originals it waits for, by key (`reading`): their reads are its own, whoever started them
        self.awaited: set[str] = set()

    def add(self, body: bytes) -> None:
        """Count `body` until the render ends: at once, never waiting (its read waited for room). Nothing once the
        render has ended: a layer that arrives after another failed the render (`asyncio.gather` lets it run on)
        had held the budget for good."""
        if self._closed:
            return
        if id(body) not in self._bodies:
            self._bodies[id(body)] = body
            self._budget._hold(body, self.endpoint)

    def close(self) -> None:
        self._closed = True
        self._budget._holdings.pop(self, None)
        for body in self._bodies.values():
            self._budget._let_go(body)
        self._bodies.clear()
        wake(self._budget._waiters)


#: the render whose originals are being read in this task (`FetchBudget.holding`), if any
_holding: ContextVar[Holding | None] = ContextVar("holding", default=None)
#: the original this task reads (`reading`), by key, if any
_reading: ContextVar[str | None] = ContextVar("reading", default=None)


@contextmanager
def reading(key: str) -> Iterator[None]:
    """For the block: the original at `key` is read here (the single flight started in it inherits that), and the
    render in progress waits for it; its read is then that render's too, in `reserve`."""
    if (holding := _holding.get()) is not None:
        holding.awaited.add(key)
        wake(holding._budget._waiters)  # a read of it under way may now go past the budget
    token = _reading.set(key)
    try:
        yield
    finally:
        _reading.reset(token)


@asynccontextmanager
async def fetch_memory(size: int) -> AsyncIterator[None]:
    """Hold `size` bytes of the worker's `fetch_memory` for the block: an origin that knows the size of what it
    is about to read (a file's, an announced length) reserves it so, before reading. Waits, bounded, while the
    budget is full, then raises `FetchMemoryExhausted` (503). A call the block started with `in_thread` holds
    them until it returns, should the block end first (cancelled: the read goes on filling memory)."""
    endpoint = await fetch_budget.reserve(size)
    reservation = _Reservation(size, endpoint)
    token = _reserving.set(reservation)
    try:
        yield
    finally:
        _reserving.reset(token)
        reservation.let_go()


class _Reservation:
    """Bytes of `fetch_memory`, given back once their block has ended and every thread call started in it has
    returned: a client gone or a timeout cancelled the block while a read ran on in its thread (a plugin's 6
    threads of 40 MB reads: 472 MB on a 200 MB budget)."""

    def __init__(self, size: int, endpoint: str | None):
        self.size, self.endpoint = size, endpoint
        self.holders = 1  # the block

    def let_go(self) -> None:
        self.holders -= 1
        if not self.holders:
            fetch_budget.release(self.size, self.endpoint)


#: the `fetch_memory` block this task is in, if any
_reserving: ContextVar[_Reservation | None] = ContextVar("reserving", default=None)


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
    endpoint = None
    try:
        if announced:
            check_announced_size(announced, max_bytes, path)
            endpoint = await fetch_budget.reserve(announced)
            reserved = announced
        async for chunk in chunks:
            total += len(chunk)
            if total > max_bytes:
                raise SourceTooLarge(path)
            if total > reserved:
                endpoint = await fetch_budget.reserve(total - reserved)
                reserved = total
            parts.append(chunk)
        return b"".join(parts)
    finally:
        fetch_budget.release(reserved, endpoint)


async def read_announced(read: Callable[[], Awaitable[bytes]], announced: int, max_bytes: int, path: str) -> bytes:
    """`await read()` for a body whose length is announced (a client that never reads past it), held
    against the fetch budget meanwhile as `read_limited` holds its chunks: one read, no joining.
    Raises `SourceTooLarge` before reading when `announced` is over `max_bytes`, and `OriginFailure`
    (`bad_response`) when `read()` gave another length than announced (more was not held)."""
    check_announced_size(announced, max_bytes, path)
    async with fetch_memory(announced):
        body = await read()
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
    a thread when its caller is cancelled is skipped; a started one runs to its end, and holds the bytes of the
    `fetch_memory` block it was started in until then. Context variables are not carried over, but for the
    request's id (`edge.logs.REQUEST_ID`: what the call logs names the request)."""
    threads = _fetching_for.get() or _other_threads
    if (reservation := _reserving.get()) is None:
        return await threads.run(function, *args)
    loop = asyncio.get_running_loop()
    reservation.holders += 1
    lock, state = threading.Lock(), []  # "ran" (by the thread) or "skipped" (by the caller), whichever comes first

    def call() -> T:
        with lock:
            if state:
                raise asyncio.CancelledError  # skipped: its caller is gone and let go of it
            state.append("ran")
        try:
            return function(*args)
        finally:
            try:
                loop.call_soon_threadsafe(reservation.let_go)
            except RuntimeError:  # the loop closed meanwhile (a worker that stopped): nothing is left to give back
                pass

    try:
        return await threads.run(call)
    except BaseException:
        with lock:
            if not state:  # never to run: let go here
                state.append("skipped")
                reservation.let_go()
        raise
