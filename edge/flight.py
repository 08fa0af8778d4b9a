"""Single flight: concurrent requests for the same key share one piece of work (one origin fetch, one
transform), within a worker and across the workers of a node.

Within a worker the first request for a key does the work and the others await its future.

Across workers, the worker doing the work holds a lease on the key: a POSIX record lock on one byte
of a shared lock file, at an offset hashed from the key. The kernel drops the lock when the holder
releases it or dies, so a crashed leader never blocks anyone and there is no lease to expire. A worker
that finds the lease taken polls it. Once it has the lease it first looks in the shared cache, where
the leader stored its result; if the leader failed it raises the failure the leader recorded (when
that failure is younger than the waiting request). Either way waiters get the leader's answer rather
than starting a second round of fetches. All waiting is bounded (`wait_bound`).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import diskcache
from prometheus_client import Counter

from .config import Endpoint
from .errors import EdgeError, Overloaded

T = TypeVar("T")

#: what a leader may take beyond its origin chain's timeouts: queueing for and running the transform.
TRANSFORM_ALLOWANCE_SECONDS = 30.0
#: how long a leader's failure stays readable by the workers that waited for it.
FAILURE_RECORD_SECONDS = 60.0
POLL_FIRST_SECONDS = 0.002
POLL_MAX_SECONDS = 0.01
#: lock offsets are hashed into this range (a collision only makes two keys share a lease).
_OFFSET_BITS = 48


class FlightTimeout(EdgeError):
    """Waited longer than the leader may legitimately take."""

    status = 504
    kind = "wait_timeout"

    def __init__(self) -> None:
        super().__init__("timed out waiting for the same image to be produced")


def wait_bound(endpoints: tuple[Endpoint, ...]) -> float:
    """How long a waiter waits: the slowest endpoint's whole origin chain, plus time to transform."""
    chains = (sum(origin.settings.timeout for origin in endpoint.origins) for endpoint in endpoints)
    return max(chains, default=0.0) + TRANSFORM_ALLOWANCE_SECONDS


class SingleFlight:
    def __init__(self, directory: Path, wait_seconds: float, coalesced: Counter):
        directory.mkdir(parents=True, exist_ok=True)
        self._lease_path = directory / "leases"
        # Opened on first use, in the serving process. POSIX locks belong to the process and all of them
        # on a file drop when any descriptor of it closes: this is the only one we ever open.
        self._lease_fd: int | None = None
        self._failures = diskcache.Cache(str(directory / "failures"))
        self._wait_seconds = wait_seconds
        self._coalesced = coalesced
        self._flights: dict[str, asyncio.Future] = {}

    async def run(self, key: str, produce: Callable[[], Awaitable[T]],
                  lookup: Callable[[], Awaitable[T | None]]) -> T:
        """`produce()`'s result, produced once for all concurrent callers of the node.

        `lookup()` finds what a leader in another worker stored (None when it is not there)."""
        flight = self._flights.get(key)
        if flight is not None:
            self._coalesced.inc()
            done, _ = await asyncio.wait([flight], timeout=self._wait_seconds)
            if not done:
                raise FlightTimeout()
            return flight.result()
        flight = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        try:
            result = await self._lead(key, produce, lookup)
        except Exception as exc:
            flight.set_exception(exc)
            flight.exception()  # followers may be none: never "exception was never retrieved"
            raise
        except BaseException:  # cancelled: the node is stopping
            flight.set_exception(Overloaded())
            flight.exception()
            raise
        else:
            flight.set_result(result)
            return result
        finally:
            del self._flights[key]

    async def _lead(self, key: str, produce: Callable[[], Awaitable[T]],
                    lookup: Callable[[], Awaitable[T | None]]) -> T:
        since = time.time()
        offset = _offset(key)
        await self._acquire(offset)
        try:
            # Another worker may have done the work while we waited for the lease, or just before we
            # asked for it: then its result is stored, or the failure it ended in is recorded.
            found = await lookup()
            if found is not None:
                self._coalesced.inc()
                return found
            failure = await asyncio.to_thread(self._failure_since, key, since)
            if failure is not None:
                self._coalesced.inc()
                raise failure
            try:
                return await produce()
            except Exception as exc:
                await asyncio.to_thread(self._record_failure, key, exc)
                raise
        finally:
            self._release(offset)

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

    def _try_lock(self, offset: int) -> bool:
        if self._lease_fd is None:
            self._lease_fd = os.open(self._lease_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(self._lease_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return False
            raise
        return True

    def _release(self, offset: int) -> None:
        assert self._lease_fd is not None
        fcntl.lockf(self._lease_fd, fcntl.LOCK_UN, 1, offset)

    def _record_failure(self, key: str, exc: Exception) -> None:
        if isinstance(exc, EdgeError):
            record = {"type": type(exc).__name__, "status": exc.status, "message": exc.message,
                      "headers": exc.headers}
        else:  # a bug: the leader's request is a 500 with a traceback in the log; waiters get a 500 too
            record = {"type": "EdgeError", "status": 500, "message": "internal error", "headers": {}}
        record["at"] = time.time()
        self._failures.set(key, json.dumps(record), expire=FAILURE_RECORD_SECONDS)

    def _failure_since(self, key: str, since: float) -> EdgeError | None:
        text = self._failures.get(key)
        if text is None:
            return None
        record = json.loads(text)
        return _revive(record) if record["at"] >= since else None

    def close(self) -> None:
        if self._lease_fd is not None:
            os.close(self._lease_fd)
            self._lease_fd = None
        self._failures.close()


def _offset(key: str) -> int:
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - _OFFSET_BITS)


def _revive(record: dict[str, Any]) -> EdgeError:
    """The recorded failure as an error of the same type (so a 502 still allows stale-if-error)."""
    error_type = {cls.__name__: cls for cls in _subclasses(EdgeError)}.get(record["type"], EdgeError)
    error = error_type.__new__(error_type)  # constructors differ; the recorded fields are what counts
    EdgeError.__init__(error, record["message"], headers=record["headers"])
    error.status = record["status"]
    return error


def _subclasses(cls: type) -> Iterator[type]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _subclasses(sub)
