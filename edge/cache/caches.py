"""The node's cache as the request path uses it: the three disk tiers, the memory tier in front of
the outputs, and the thread pool their disk work runs in.

The methods a request awaits keep the IOLoop free: SQLite, value files and hashing run in the
cache's own threads. The memory tier is read and filled only here, on the loop, so cache hits of hot
outputs cost no thread hop and no disk access.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from ..threads import BlockingPool
from .entries import CachedOutput, StoredOriginal, UnreadOutput, strong_etag
from .health import CacheHealth, error_kind
from .keys import outputs_of
from .memory import MemoryTier
from .purges import PurgeTier, RecentPurges
from .tiers import RETRY_SECONDS, TOUCH_INTERVAL, BeforeReading, DiskTier, NotFoundTier, OriginalTier, OutputTier
from .versions import SharedVersions

T = TypeVar("T")

#: each disk tier's folder under `[cache] dir`, by tier name (`edge cache stats` reads them too)
TIER_FOLDERS = {"output": "outputs", "original": "originals", "not_found": "not-found"}
#: the write-ahead logs of the databases under `[cache] dir`: the tiers' and the purge records' (one level
#: down), the single flights' failure records (`flights/<kind>/failures`)
_WRITE_AHEAD_LOGS = ("*/cache.db-wal", "flights/*/failures/cache.db-wal")

log = logging.getLogger("edge.cache")


def checkpoint_left_logs(directory: Path) -> None:
    """Fold every write-ahead log left under `directory` into its database, which removes it. A worker's
    connections close as it stops, the last one checkpointing; but two workers closing at the same moment
    may each see the other's still open, and neither does (a `-wal` then stays, and `edge cache stats`
    takes the stopped node for a running one). For the supervisor, once no worker is left."""
    for wal in (path for pattern in _WRITE_AHEAD_LOGS for path in directory.glob(pattern)):
        if ".corrupt-" in str(wal.relative_to(directory)):
            continue  # moved aside for inspection: left as it was
        try:
            with contextlib.closing(sqlite3.connect(wal.with_name("cache.db"), timeout=2)) as database:
                database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as error:
            log.warning("the write-ahead log %s was left as it is: %s", wal, error)
#: Budget of the not-found records: each is ~200 bytes, so this holds hundreds of thousands.
NOT_FOUND_BUDGET = 64 * 10**6
#: Budget of the purge records (~150 bytes each for a URL's, kept 15 minutes: a few hundred thousand)
PURGES_BUDGET = 64 * 10**6
#: threads for cache disk work, per process (SQLite reads are short; a few keep a slow disk from
#: queueing every request behind one)
IO_THREADS = 4
#: seconds a request waits for a cache call (a lookup, a hash, a store) before it goes on without the cache; then
#: requests do not wait at all until the threads are free. A disk that hangs (frozen, dying, an NFS server away)
#: holds the threads, and every request of the worker had waited behind them for ever: its misses, its hits from
#: disk, its readiness probe. Above SQLite's busy timeout (2 s), which a working cache may wait out
IO_WAIT_SECONDS = 5.0
#: bytes of answered outputs and originals waiting to be stored, per process: past that a store is
#: skipped (a slow or stuck disk must not pile bodies up in memory)
PENDING_STORE_BYTES = 128 * 10**6
#: an output of up to this share of the output tier's budget is stored when first made (8 MB of the default 2 GB);
#: a larger one on its k-th render in a process, k its size over that share rounded up, so that a render adds
#: that share to the tier at most on average: one client's renders of new large outputs (HEADs: nothing to
#: download) had flushed the default tier in 27 requests, where it now takes over 256 renders
ADMISSION_SHARE = 256
#: large outputs whose renders a process counts (the least recently rendered forgotten first)
ADMISSION_KEYS = 4096


class Caches:
    """The tiers under `[cache] dir`. Opened by each serving process and by `edge purge`."""

    def __init__(self, directory: Path, output_size: int, original_size: int, memory_size: int = 0, *,
                 health: CacheHealth | None = None, evicted: Callable[[str, int], None] | None = None,
                 dropped: Callable[[str], None] = lambda tier: None,
                 too_large: Callable[[str], None] = lambda tier: None, touch_interval: float = TOUCH_INTERVAL):
        self.health = health or CacheHealth()
        self._dropped = dropped
        self._too_large = too_large
        self._pending_bytes = 0
        self._large_renders: OrderedDict[str, int] = OrderedDict()  # `admitted`'s counts
        self._directory = directory
        self._versions_path = directory / "versions.bin"
        self._versions: SharedVersions | None = None
        self._versions_retry_at = 0.0
        self._memory = MemoryTier(memory_size) if memory_size > 0 else None
        folders = {name: directory / folder for name, folder in TIER_FOLDERS.items()}
        self.outputs = OutputTier("output", folders["output"], output_size, self.health, evicted,
                                  changed=self.bump, touch_interval=touch_interval)
        self.originals = OriginalTier("original", folders["original"], original_size, self.health, evicted,
                                      touch_interval)
        self.not_found = NotFoundTier("not_found", folders["not_found"], NOT_FOUND_BUDGET, self.health, evicted,
                                      touch_interval)
        self.tiers: tuple[DiskTier, ...] = (self.outputs, self.originals, self.not_found)
        self.purges = PurgeTier("purges", directory / "purges", PURGES_BUDGET, self.health)
        #: the purge records as last read, and the purge counter's value they were read at
        self._purge_times = RecentPurges()
        self._purges_read_at: int | None = None
        #: the reading of the records under way, and the counter it is for
        self._reading_purges: tuple[int, asyncio.Future[RecentPurges]] | None = None
        self._threads = BlockingPool(IO_THREADS, "cache")
        #: while the threads are held past a request's wait: a call queued behind the held ones (`io_or`)
        self._held: asyncio.Future[None] | None = None
        self._open_versions()  # bumped by every process, whether or not it keeps a memory tier

    async def io(self, function: Callable[..., T], *args: object) -> T:
        """`function(*args)` in the cache's threads."""
        return await self._threads.run(function, *args)

    async def io_or(self, default: T, function: Callable[..., T], *args: object) -> T:
        """`io(function, *args)` for a request or a flight, which go on without the cache: `default` when the call
        has not ended within `IO_WAIT_SECONDS` (counted and logged as the folder's `stuck`), and at once from then
        until the threads take calls again (a call queued after the held ones has ended). A call a thread has
        started runs to its end; one still queued is dropped."""
        if self._held is None:
            bound = asyncio.timeout(IO_WAIT_SECONDS)  # a timer, not a task of its own: this is every miss's path
            try:
                async with bound:
                    return await self.io(function, *args)
            except TimeoutError:
                if not bound.expired():  # the call's own
                    raise
            self._held = asyncio.ensure_future(self.io(_nothing))
            self._held.add_done_callback(self._freed)
        # each call left out counted (so `/_edge/ready` says it for as long as it lasts; logged once an interval)
        self.health.failed("folder", "stuck", f"a call of its threads took over {IO_WAIT_SECONDS:g} s (a disk that "
                                              "hangs?): requests go on without the cache until they are free")
        return default

    def _freed(self, _: asyncio.Future) -> None:
        self._held = None

    async def etag_of(self, body: bytes) -> str:
        """`strong_etag(body)` in the cache's threads (bounded in number), or in another when they are held."""
        return await self.io_or(None, strong_etag, body) or await asyncio.to_thread(strong_etag, body)

    def output_in_memory(self, key: str) -> CachedOutput | None:
        """The memory tier's copy of `key` while it is current (the hit path: no thread, no disk).
        Call on the IOLoop."""
        memory = self._memory
        if memory is None:
            return None
        version = self.version(key)
        if version is None:
            return None
        output = memory.get(key, version)
        if output is not None:
            self.outputs.touch(key)
        return output

    async def output(self, key: str) -> CachedOutput | None:
        """The stored output for `key` from disk (in a thread), or None; kept in the memory tier for
        the next request. Call on the IOLoop."""
        return (await self.output_and(key, None))[0]

    async def output_and(self, key: str, then: Callable[[CachedOutput | None], T] | None,
                         before_reading: BeforeReading | None = None) -> tuple[CachedOutput | None, T | None]:
        """`output(key)`, and `then(output)` run in the same thread right after the read (blocking; None
        without it): a miss looks its original up in the same hand-off. `before_reading` may leave the
        output's body unread, or refuse to read it (`tiers.BeforeReading`): what it raises, this does. An
        `UnreadOutput` is not kept in the memory tier: a GET after it must get a body. Call on the IOLoop."""
        memory = self._memory
        version = None if memory is None else self.version(key)  # before the disk: a racing write shows next time
        output, more = await self.io_or((None, None), self._read_output, key, then, before_reading)
        if output is not None and version is not None and not isinstance(output, UnreadOutput):
            memory.put(key, version, output)
        return output, more

    def _read_output(self, key: str, then: Callable[[CachedOutput | None], T] | None,
                     before_reading: BeforeReading | None) -> tuple[CachedOutput | None, T | None]:
        output = self.outputs.get(key, before_reading)
        return output, None if then is None else then(output)

    async def store(self, key: str, value: CachedOutput | StoredOriginal) -> None:
        """Store an answered output or original in the cache's threads, unless `PENDING_STORE_BYTES` of
        stores already wait (then it is skipped and counted). Call on the IOLoop."""
        tier, put = ((self.outputs, self.outputs.put) if isinstance(value, CachedOutput)
                     else (self.originals, self._put_original))
        size = len(value.body)
        if not self.holds(tier, size) or (tier is self.outputs and not self.admitted(key, size)):
            return
        if self._pending_bytes + size > PENDING_STORE_BYTES:
            self._dropped(tier.name)
            return
        self._pending_bytes += size
        try:
            await self.io_or(None, put, key, value)
        finally:
            self._pending_bytes -= size

    def admitted(self, key: str, size: int) -> bool:
        """Whether an output of `size` bytes just made under `key` is stored (`ADMISSION_SHARE`); one that is
        not is counted as too large (answered, not stored)."""
        share = max(1, self.outputs.budget // ADMISSION_SHARE)
        if size <= share:
            return True
        renders = self._large_renders.pop(key, 0) + 1
        if renders * share >= size:
            return True
        self._large_renders[key] = renders
        if len(self._large_renders) > ADMISSION_KEYS:
            self._large_renders.popitem(last=False)
        self._too_large(self.outputs.name)
        return False

    def holds(self, tier: DiskTier, size: int) -> bool:
        """Whether `tier` stores a value of `size` bytes (`DiskTier.holds`); one it does not is counted: with a
        budget too small for the images (a unit slip: `output_size = 2000` is bytes), the same URLs are made
        again on every request, which nothing had told."""
        if tier.holds(size):
            return True
        if tier.budget:  # else the tier is off: nothing is stored, as asked
            self._too_large(tier.name)
        return False

    def version(self, key: str) -> int | None:
        """The shared write counter of `key`'s bucket, or None without the shared versions (a memory
        read): while it stays the same, no process stored anything under `key`, so a lookup just
        made need not be repeated. Outputs and originals bump it when stored, a single flight when
        it records a failure."""
        return self._read_version(SharedVersions.bucket(key))

    def _read_version(self, slot: int) -> int | None:
        versions = self._current_versions()
        if versions is None:
            return None
        try:
            version = versions.read(slot)
        except OSError as exc:
            self._lose_versions(versions, error_kind(exc), f"cannot read {versions.path}: {exc}")
            return None
        if version is None:
            self._lose_versions(versions, "corrupt", f"{versions.path} shrank under the node")
        return version

    def _put_original(self, key: str, original: StoredOriginal) -> None:
        self.originals.put(key, original)
        self.bump(key)

    def _current_versions(self) -> SharedVersions | None:
        if self._versions is None:
            self._open_versions()
        return self._versions

    def _open_versions(self) -> None:
        """Without the shared versions the memory tier cannot know when a copy is outdated: it stays off
        until the file can be opened (tried again every `RETRY_SECONDS`)."""
        if time.monotonic() < self._versions_retry_at:
            return
        try:
            self._versions = SharedVersions(self._versions_path)
        except OSError as exc:
            self._versions_retry_at = time.monotonic() + RETRY_SECONDS
            self.health.failed("memory", "unavailable", f"cannot open {self._versions_path}: {exc}")

    def _lose_versions(self, versions: SharedVersions, kind: str, what: str) -> None:
        """Stop using `versions` (the memory tier is off until the file is opened again, at the next
        read: made again if it is gone, and of a new generation, so that no copy read before looks
        current). Its descriptor is closed once no thread uses it any more."""
        if self._versions is versions:
            self._versions = None
            self.health.failed("memory", kind, f"{what}; opening it again")

    def bump(self, key: str) -> None:
        """Move `key`'s shared write counter: copies read before are outdated (blocking: a file lock)."""
        self._bump_version(SharedVersions.bucket(key))

    def _bump_version(self, slot: int) -> None:
        versions = self._versions
        if versions is not None:
            try:
                versions.bump(slot)
            except OSError as exc:
                self._lose_versions(versions, error_kind(exc), f"cannot write {versions.path}: {exc}")

    def check_versions(self) -> None:
        """Stop using a versions file that was deleted, replaced, shrunk or given a new generation by
        someone else, so that this process and those that opened the new file agree (blocking)."""
        versions = self._versions
        if versions is not None and versions.replaced():
            self._lose_versions(versions, "corrupt", f"{versions.path} was deleted or replaced under the node")

    def check(self) -> list[str]:
        """What is wrong with the cache now or was recently, for `/_edge/ready`; empty when all is well
        (blocking: writes a probe file)."""
        problems = [f"{tier.name}: unavailable" for tier in self.tiers if not tier.available]
        probe = self._directory / f".ready-{os.getpid()}"
        try:
            probe.write_bytes(b"ok")
        except OSError as exc:
            self.health.failed("folder", error_kind(exc), f"cannot write in {self._directory}: {exc}")
        finally:  # made but not written (a full disk): not left behind, one per worker
            with contextlib.suppress(OSError):
                probe.unlink()
        return problems + self.health.degraded()

    def forget(self, prefix: str, made_at: float | None = None) -> dict[str, int | None]:
        """Delete every entry of every tier whose key starts with `prefix`; the count per tier, None for
        a tier that could not, and `purges: None` when the purge could not be recorded (blocking). The
        purge is recorded as it begins, so that work begun before it stores nothing it covers, and again
        once done: work begun while it deleted read what it was deleting (edge/cache/purges.py). `made_at`:
        when the purge was made (wall clock), if not now (`PurgeTier.record`)."""
        recorded = self._record_purge(prefix, made_at)
        removed = {tier.name: tier.delete_prefix(prefix) for tier in self.tiers}
        recorded = self._record_purge(prefix, made_at) and recorded
        # a purge not recorded leaves work under way free to store what it made: not done, say so
        return removed if recorded else {**removed, self.purges.name: None}

    def replace_outputs(self, original: str) -> None:
        """Delete the outputs of the original keyed `original`, replaced at its origin, as a purge of them: work
        under way on the old bytes stores nothing it made (blocking). A render of the old file ending after the
        change was found had stored its output, served beside the new ones until `original_ttl` (originals probe).
        The original's own key is not covered: its new version is stored."""
        self._record_purge(outputs_of(original), None)
        self.outputs.delete_prefix(original)

    def _record_purge(self, prefix: str, made_at: float | None) -> bool:
        recorded = self.purges.record(prefix, made_at)
        self._bump_version(SharedVersions.PURGES)
        return recorded

    async def purged_since(self, key: str, began: float) -> bool:
        """Whether a purge that covers `key` was recorded after `began` (a `purges.node_time`): what work
        begun then made must not be stored, nor a failure then remembered."""
        return (await self._recent_purges()).by_node_time.covers(key, began)

    async def discard(self, tier: DiskTier, key: str) -> None:
        """Delete `key` from `tier` (what a store wrote as a purge came)."""
        await self.io_or(None, tier.delete, key)

    async def last_purge(self, key: str) -> float | None:
        """When the latest purge covering `key` was recorded (wall-clock seconds, within
        `purges.RECORD_SECONDS`), or None."""
        return (await self._recent_purges()).by_wall_clock.last(key)

    async def _recent_purges(self) -> RecentPurges:
        """The purge records: one `pread` unless a purge was recorded since the last look (then they are
        read again, in a cache thread, once for all who ask meanwhile; without the versions file, at
        most once a second)."""
        counter = self._read_version(SharedVersions.PURGES)
        if counter is None:
            counter = int(time.monotonic())
        if counter != self._purges_read_at:
            if self._reading_purges is None or self._reading_purges[0] != counter:
                self._reading_purges = (counter, asyncio.ensure_future(self.io_or(None, self.purges.recent)))
            reading = self._reading_purges[1]
            times = await asyncio.shield(reading)
            if self._reading_purges is not None and self._reading_purges[1] is reading:
                self._reading_purges = None
                if times is not None:  # else not read (the threads are held): read at the next look
                    self._purge_times, self._purges_read_at = times, counter
            return times if times is not None else self._purge_times
        return self._purge_times

    def flush_touches(self) -> None:
        """(blocking)"""
        for tier in self.tiers:
            tier.flush_touches()

    def every_second(self) -> None:
        """The cache's work of every second: the batched touches (each tier then follows its folder's
        replacement), the purge records' folder followed so too (deleted, every purge had answered 502 until a
        reload), and a look at the versions file (blocking)."""
        self.flush_touches()
        self.purges.follow_replacement()
        self.check_versions()

    async def close_replaced(self) -> None:
        """Close in every cache thread its connections to the databases the tiers replaced (`follow_replacement`):
        diskcache keeps one per thread, which only that thread can close, and a worker's collector never freed
        them (frozen at its start: `gc.freeze`). A deleted folder's databases had stayed open for good, their
        space not given back, with ~40 descriptors a worker. The threads are held at once, in a thread apart."""
        if any(tier.replaced for tier in (*self.tiers, self.purges)):
            await asyncio.to_thread(self._close_replaced)

    def _close_replaced(self) -> None:
        replaced = [(tier, list(tier.replaced)) for tier in (*self.tiers, self.purges)]

        def close_this_thread_s() -> None:
            for _, handles in replaced:
                for handle in handles:
                    handle.close()

        if self._threads.on_each_thread(close_this_thread_s):
            for tier, handles in replaced:
                tier.forget_replaced(handles)
        # else a thread may not have closed its own: tried again the next second

    def tidy(self) -> None:
        """Delete the value files that processes killed while storing left in the tiers, and bring each tier
        within its budget: one lowered since the node last ran was otherwise held only by the next store
        (blocking); and bring back the access times a clock running ahead left in the future (`forget_the_future`)."""
        for tier in self.tiers:
            tier.remove_orphans()
            tier.forget_the_future()
            tier.evict_to_budget()

    def _release_this_thread(self, also: tuple[Callable[[], None], ...]) -> None:
        for tier in (*self.tiers, self.purges):
            tier.release_thread()
        for release in also:
            release()

    def close(self, also: tuple[Callable[[], None], ...] = ()) -> None:
        """`also`: what else closes its calling thread's connections (work the owner ran through `io`)."""
        # diskcache keeps a SQLite connection per thread: each cache thread closes its own, so that
        # the last one out checkpoints the write-ahead log (a stopped node leaves no -wal behind; all
        # SQLite work of a serving node, purges and the flights' failure records too, runs in these threads)
        self._threads.on_each_thread(partial(self._release_this_thread, also))
        self._threads.shutdown()
        for tier in (*self.tiers, self.purges):
            tier.close()
        if self._versions is not None:
            self._versions.close()
            self._versions = None


def _nothing() -> None:
    """A call that tells, by ending, that the cache's threads take calls again."""
