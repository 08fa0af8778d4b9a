"""Single flight: concurrent requests for the same key share one piece of work (one origin fetch, one
transform), within a worker and across the workers of a node.

Within a worker the work runs in a task of its own, and every request for the key awaits it. A
request that goes away (the client disconnected) stops waiting; when no request waits any more the
work is cancelled, so nobody's abandoned request keeps an origin fetch or a transform running, while
work that someone still waits for always continues.

Across workers, the worker doing the work holds a lease on the key: a POSIX record lock on one byte
of a shared lock file, at an offset hashed from the key. The kernel drops the lock when the holder
releases it or dies, so a crashed leader never blocks anyone and there is no lease to expire. A worker
that finds the lease taken polls it. Once it has the lease it first looks in the shared cache, where
the leader stored its result; if the leader failed it raises the failure the leader recorded (when
that failure is younger than the waiting request). Either way waiters get the leader's answer rather
than starting a second round of fetches. Both lookups are skipped when the shared version counter of
the key has not moved since the request looked itself (nothing stored or recorded since). All waiting
is bounded (`wait_bound`).

Storing comes after answering: `run` takes a `keep(result)` (the cache writes) that the waiters do
not await: it starts as they get the result, while the leader still holds the lease. Waiters in other
workers take the lease only when the result is stored, so they still find it; requests of this worker
that arrive meanwhile get the result held by the flight. (When `keep` skips the store, a waiter in
another worker does the work itself, as after a failed store.) Deferring the store until every waiter
had resumed gained nothing measurable and widened the window in which a request on another worker
finds nothing stored yet (benchmarks/README.md, "The store after the answer").

When the cache folder cannot hold the lease file or the failure records (unwritable, full), the
flight still coalesces within the worker, and the loss is reported to `CacheHealth`.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import diskcache

from .cache.health import CacheHealth, cache_failure, error_kind, reason
from .cache.purges import BOOT, node_time
from .cache.tiers import BoundedCache
from .config import Config
from .errors import EdgeError, FlightTimeout, Overloaded, ShuttingDown

T = TypeVar("T")

log = logging.getLogger("edge.flight")

#: how long a leader's failure stays readable by the workers that waited for it.
FAILURE_RECORD_SECONDS = 60.0
POLL_FIRST_SECONDS = 0.002
POLL_MAX_SECONDS = 0.01
#: lock offsets are hashed into this range (a collision only makes two keys share a lease).
_OFFSET_BITS = 48
#: how long a stopping worker lets the stores still pending finish
SETTLE_SECONDS = 10.0


def wait_bound(config: Config) -> float:
    """How long any request waits for an image's work (`SingleFlight.run`): the fleet's shared tier's
    lookup (`[shared_cache] timeout`, when there is one), the slowest endpoint's whole origin chain, time
    to queue for a transform thread (`[server] transform_queue_timeout`) and to run the transform
    (`[limits] render_timeout`)."""
    chains = (sum(origin.settings.timeout for origin in endpoint.origins) for endpoint in config.endpoints)
    shared = config.shared_cache.timeout if config.shared_cache is not None else 0.0
    return shared + max(chains, default=0.0) + config.server.transform_queue_timeout + config.limits.render_timeout


@dataclass
class _Flight(Generic[T]):
    #: when the work began (`node_time`, as purges are recorded)
    began: float
    task: asyncio.Task[T] | None = None
    waiters: int = 0
    #: storing the result, after the waiters got it (the flight stays current until it is stored)
    keeping: asyncio.Task[None] | None = None


class SingleFlight:
    """`name` labels the metrics (`outputs`, `originals`); `coalesced()` counts a request that got
    another's work, `abandoned()` work cancelled because nobody waited for it any more."""

    def __init__(self, name: str, directory: Path, wait_seconds: float, *, coalesced: Callable[[], None],
                 abandoned: Callable[[], None] = lambda: None, health: CacheHealth | None = None,
                 version: Callable[[str], int | None] = lambda key: None,
                 bump: Callable[[str], None] = lambda key: None,
                 purged_since: Callable[[str, float], Awaitable[bool]] | None = None,
                 discard: Callable[[str], Awaitable[object]] | None = None,
                 io: Callable[..., Awaitable[Any]] = asyncio.to_thread):
        """`version(key)`: a counter shared by the workers that moves whenever anything is stored under
        `key` (None when there is none); `bump(key)` moves it (after a failure is recorded);
        `purged_since(key, began)`: whether a purge covering `key` came after `began` (then the work's
        result is not stored, and later callers do not wait for it); `discard(key)` deletes what a store
        wrote when such a purge came while it wrote. `io(function, *args)` runs the failure records' disk work
        (the cache's threads, which close their database connections when the node stops: `release_thread`)."""
        self.name = name
        self._directory = directory
        # Opened by `open_leases`, in the serving process. POSIX locks belong to the process and all of them
        # on a file drop when any descriptor of it closes: this is the only one of the file we ever open.
        self._lease_fd: int | None = None
        self._failures: diskcache.Cache | None = None
        self._wait_seconds = wait_seconds
        self._coalesced = coalesced
        self._abandoned = abandoned
        self._health = health or CacheHealth()
        self._flights: dict[str, _Flight] = {}
        self._keeping: set[asyncio.Task[None]] = set()
        self._version = version
        self._bump = bump
        self._purged_since = purged_since
        self._discard = discard
        self._io = io

    def running(self, key: str) -> bool:
        """Whether this worker's work for `key` is under way (a new caller would wait for it)."""
        return key in self._flights

    async def run(self, key: str, produce: Callable[[], Awaitable[T]],
                  lookup: Callable[[], Awaitable[T | None]],
                  keep: Callable[[T], Awaitable[None]] | None = None, seen: int | None = None) -> T:
        """`produce()`'s result, produced once for all concurrent callers of the node.

        `lookup()` finds what a leader in another worker stored (None when it is not there); `keep(result)`
        stores a produced result, after the callers have it; `seen`: `version(key)` read before the
        caller's own lookup. Every caller, the first included, waits `wait_seconds` at most (the node's
        answer bound, `wait_bound`: the balancers' answer timeout is set from it), then `FlightTimeout`;
        the work's own timeouts do not add up to a bound of their own (an image layer's or a `di-`
        default image's origins after the main one's, another worker's lease waited for first)."""
        flight = self._flights.get(key)
        if flight is not None and await self._purged(key, flight.began):
            self._forget(key, flight)  # its result comes from what the purge removed: the work is done again
            flight = self._flights.get(key)  # (or joined, if another caller began it while we looked)
        if flight is None:
            flight = self._flights[key] = _Flight(node_time())
            flight.task = asyncio.create_task(self._lead(key, flight, produce, lookup, keep, seen))
            flight.task.add_done_callback(lambda task: self._landed(key, flight))
        else:
            self._coalesced()
        flight.waiters += 1
        try:
            done, _ = await asyncio.wait([flight.task], timeout=self._wait_seconds)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():  # every request for it went away
                flight.task.cancel()
                self._abandoned()
        if not done:
            raise FlightTimeout()
        if flight.task.cancelled():  # the node is stopping
            raise ShuttingDown()
        return flight.task.result()

    def _landed(self, key: str, flight: _Flight) -> None:
        if flight.keeping is None:
            self._forget(key, flight)
        if not flight.task.cancelled():
            flight.task.exception()  # retrieved, even when every waiter left: no "never retrieved" warning

    def _forget(self, key: str, flight: _Flight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

    async def _lead(self, key: str, flight: _Flight, produce: Callable[[], Awaitable[T]],
                    lookup: Callable[[], Awaitable[T | None]], keep: Callable[[T], Awaitable[None]] | None,
                    seen: int | None) -> T:
        since = flight.began
        offset = _offset(key)
        await self._acquire(offset)
        try:
            # Another worker may have done the work while we waited for the lease, or just before we
            # asked for it: then its result is stored, or the failure it ended in is recorded. When the
            # shared counter has not moved since the caller looked, neither happened: no second lookup.
            if seen is None or self._version(key) != seen:
                found = await lookup()
                if found is not None:
                    self._coalesced()
                    return found
                failure = await self._io(self._failure_since, key, since)
                if failure is not None:
                    self._coalesced()
                    raise failure
            try:
                result = await produce()
            except Overloaded:
                # this worker's own state (its queue, its memory budgets): another worker's waiters try the work
                # themselves. Recorded, they had got the 503 where they may have had room, and each refusal of a
                # burst past the queue had written a record (noisy-tenant verification: 450 refusals a second)
                raise
            except Exception as exc:
                await self._io(self._record_failure, key, exc)
                raise
            if keep is not None:  # the lease passes to the store: released once the result is stored
                flight.keeping = asyncio.create_task(self._keep(key, flight, offset, keep, result))
                self._keeping.add(flight.keeping)
            return result
        finally:
            if flight.keeping is None:
                self._release(offset)

    async def _keep(self, key: str, flight: _Flight, offset: int, keep: Callable[[T], Awaitable[None]],
                    result: T) -> None:
        """Store `result` (the waiters have it), unless a purge came since the work began, then let other
        workers' waiters in."""
        try:
            if not await self._purged(key, flight.began):
                await keep(result)
                # a purge recorded while the store wrote may have deleted before it wrote: look again
                # (one that records only after this look deletes after the write)
                if self._discard is not None and await self._purged(key, flight.began):
                    await self._discard(key)
        except Exception:  # a bug: the store is lost, the answer was not
            log.exception("storing the result of %r failed", key)
        finally:
            self._release(offset)
            self._keeping.discard(asyncio.current_task())
            self._forget(key, flight)

    async def _purged(self, key: str, began: float) -> bool:
        return self._purged_since is not None and await self._purged_since(key, began)

    async def settle(self, timeout: float = SETTLE_SECONDS) -> None:
        """Wait (bounded) for the stores still pending: a stopping worker keeps what it answered."""
        if self._keeping:
            await asyncio.wait(list(self._keeping), timeout=timeout)

    async def _acquire(self, offset: int) -> None:
        """Take the lease, waiting (bounded) while another worker holds it."""
        if self._try_lock(offset):
            return
        deadline = time.monotonic() + self._wait_seconds
        delay = POLL_FIRST_SECONDS
        while True:
            await asyncio.sleep(delay)
            if self._try_lock(offset):
                return
            if time.monotonic() >= deadline:
                raise FlightTimeout()
            delay = min(delay * 2, POLL_MAX_SECONDS)

    def open_leases(self) -> None:
        """Open the lease file, as the worker starts, in a cache thread: a folder that must be made or a file
        created waits for a disk that hangs (frozen, a dying disk, an NFS server away), and on the IOLoop, at the
        first miss, it had held every request of the worker, health probes included. Without it (the folder not
        writable), the flight coalesces within the worker only."""
        self._lease_fd = self._open_lease_file()

    def _open_lease_file(self) -> int | None:
        try:
            self._directory.mkdir(parents=True, exist_ok=True)
            return os.open(self._directory / "leases", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # EACCES here is a folder or file the node may not write, never a held lease:
            # taken for one, every miss of the worker had waited `wait_bound` (40 s) and been answered 504
            self._health.failed("flight", error_kind(exc), f"no lease across workers: {exc}")
            return None

    async def follow_replacement(self) -> None:
        """Open the lease file again when it is no longer the one open: the cache folder deleted (or moved) and made
        again under the node, a worker started after (a replacement's) locked a file the others did not, and the old
        one held a descriptor for good. The leases held on the old file drop: their keys' work may be done twice."""
        held = self._lease_fd
        if held is None:
            return
        reopened = await self._io(self._lease_file_replaced, held)
        if reopened is None:
            return
        if self._lease_fd == held:
            self._lease_fd = reopened
            os.close(held)
        else:  # closed meanwhile (the worker stops), `held` with it
            os.close(reopened)

    def _lease_file_replaced(self, held: int) -> int | None:
        """(blocking) The lease file opened again when it is not the file `held`, else None."""
        try:
            there, opened = os.stat(self._directory / "leases"), os.fstat(held)
            if (there.st_dev, there.st_ino) == (opened.st_dev, opened.st_ino):
                return None
        except FileNotFoundError:
            pass
        except OSError:  # a disk failing: the lease file is kept, looked at again the next second
            return None
        return self._open_lease_file()

    def _try_lock(self, offset: int) -> bool:
        """Whether this worker may do the work: it holds the lease, or there can be no lease. A lock takes no
        write: it never waits for the disk."""
        if self._lease_fd is None:
            return True
        try:
            fcntl.lockf(self._lease_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):  # another worker holds it
                return False
            self._health.failed("flight", error_kind(exc), f"no lease across workers: {exc}")
        return True

    def _release(self, offset: int) -> None:
        if self._lease_fd is not None:
            fcntl.lockf(self._lease_fd, fcntl.LOCK_UN, 1, offset)

    def _failure_store(self) -> diskcache.Cache:
        if self._failures is None:
            self._failures = BoundedCache(str(self._directory / "failures"))
        return self._failures

    def _record_failure(self, key: str, exc: Exception) -> None:
        record = _record_of(exc)
        record["at"], record["boot"] = node_time(), BOOT
        try:
            self._failure_store().set(key, json.dumps(record), expire=FAILURE_RECORD_SECONDS)
        except Exception as error:  # waiters in other workers will try the work themselves
            if not cache_failure(error):
                raise
            self._failures_failed(error, "cannot record a failure")
        self._bump(key)

    def _failure_since(self, key: str, since: float) -> EdgeError | None:
        try:
            text = self._failure_store().get(key)
        except Exception as error:
            if not cache_failure(error):
                raise
            self._failures_failed(error, "cannot read a failure")
            return None
        if text is None:
            return None
        try:
            record = json.loads(text)
            return _revive(record) if record.get("boot") == BOOT and record["at"] >= since else None
        except (ValueError, KeyError, TypeError, AttributeError):  # a damaged record: as if none, the work done again
            return None

    def _failures_failed(self, error: Exception, what: str) -> None:
        kind = error_kind(error)
        self._health.failed("flight", kind, f"{what}: {reason(error)}")
        if kind == "corrupt":  # records live a minute: a corrupt store is simply started afresh
            self._close_failures()
            shutil.rmtree(self._directory / "failures", ignore_errors=True)

    def _close_failures(self) -> None:
        if self._failures is not None:
            self._failures.close()
            self._failures = None

    def release_thread(self) -> None:
        """Close the calling thread's connection to the failure records (diskcache opens one per thread; the
        last one closed checkpoints the write-ahead log)."""
        if self._failures is not None:
            self._failures.close()

    def close(self) -> None:
        if self._lease_fd is not None:
            os.close(self._lease_fd)
            self._lease_fd = None
        self._close_failures()


def _offset(key: str) -> int:
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - _OFFSET_BITS)


def _record_of(exc: Exception) -> dict[str, Any]:
    """A failure as other workers' waiters revive it (`_revive`)."""
    if isinstance(exc, EdgeError):
        return {"type": type(exc).__name__, "status": exc.status, "message": exc.message, "headers": exc.headers,
                "fields": _fields(exc)}
    # a bug: the leader's request is a 500 with a traceback in the log; waiters get a 500 too
    return {"type": "EdgeError", "status": 500, "message": "internal error", "headers": {}}


def _revive(record: dict[str, Any]) -> EdgeError:
    """The recorded failure as an error of the same type (so a 502 still allows stale-if-error); a
    `ValueError` for a record no failure of ours wrote (a damaged store)."""
    status, message, headers = record["status"], record["message"], record["headers"]
    if not (type(status) is int and 400 <= status <= 599 and isinstance(message, str) and isinstance(headers, dict)
            and all(isinstance(name, str) and isinstance(value, str) for name, value in headers.items())):
        raise ValueError("not a failure record")
    fields = record.get("fields", {})
    if not (isinstance(fields, dict) and all(isinstance(value, _FIELD_TYPES) for value in fields.values())
            and not _RECORDED & fields.keys()):
        raise ValueError("not a failure record")
    error_type = {cls.__name__: cls for cls in _subclasses(EdgeError)}.get(record["type"], EdgeError)
    error = error_type.__new__(error_type)  # constructors differ; the recorded fields are what counts
    EdgeError.__init__(error, message, headers=headers)
    # a subclass's own (a 404's `max_age`: without it, waiters in other workers had got a 500)
    error.__dict__.update(fields)
    error.status = status
    return error


#: what an error's own fields may be, to be recorded (`_fields`)
_FIELD_TYPES = (str, int, float, bool, type(None))
#: what a record holds apart from an error's own fields (a revived error's `status` is its own: recorded again, it
#: had made the record unreadable)
_RECORDED = frozenset({"message", "headers", "status"})


def _fields(error: EdgeError) -> dict[str, Any]:
    """The fields an error's subclass sets (`max_age`, `unreadable`, `param`…), for `_revive`."""
    return {name: value for name, value in vars(error).items()
            if name not in _RECORDED and isinstance(value, _FIELD_TYPES)}


def _subclasses(cls: type) -> Iterator[type]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _subclasses(sub)
