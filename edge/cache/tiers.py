"""The disk tiers: each a diskcache folder under `[cache] dir` with its own byte budget, LRU, shared
by the worker processes. Every method here blocks (SQLite, files, hashing): call them off the IOLoop.

Measured costs shape the reads (see `benchmarks/bench_hit.py`): diskcache's `least-recently-used`
policy turns every read into a write (about 6× slower reads), so reads go through a second handle
with no per-read bookkeeping; the keys read are collected in a set and marked as used every second
(`flush_touches`) in batched UPDATEs, each key at most once per `TOUCH_INTERVAL`: eviction is LRU
to within that interval.

diskcache does not say what it culls, and culls ten entries at a time when one would do, so its
culling is off (`cull_limit=0`): after every store the tier deletes its least-recently-used entries
one by one until it is within budget, and counts them (`edge_cache_evictions_total`).

Failures degrade, they never propagate: a read that fails is a miss, a write that fails is skipped,
and both are reported to `CacheHealth`. A value whose bytes no longer match the hash stored beside
them (a truncated file) is a miss and is deleted (checked whenever the bytes are read; an output answered
from its metadata alone, a HEAD or a 304, reads none: its file's size is checked against the length stored).
A corrupt SQLite database is moved aside (`outputs.corrupt-<time>-<pid>/`, kept for inspection) and a
fresh, empty one takes its place; a tier that cannot be opened at all (unwritable folder, full disk) is
tried again every `RETRY_SECONDS`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import fields, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import diskcache

from .entries import CLOCK_SKEW_SECONDS, CachedOutput, SourceInfo, StoredOriginal, UnreadOutput, hashes_to
from .health import CacheHealth, cache_failure, error_kind, reason

log = logging.getLogger("edge.cache")

T = TypeVar("T")
O = TypeVar("O", bound=CachedOutput)

#: A tier never keeps an entry larger than this fraction of its budget: one huge image must not
#: evict the whole tier (and with `original_size = 0`, originals are simply not kept).
MAX_ENTRY_SHARE = 8
RETRY_SECONDS = 30.0
#: how long an operation waits for another connection's lock on the database before it is skipped
#: (`busy`): diskcache's own 60 s held requests, 404s and purges for as long behind a stuck writer
SQLITE_BUSY_SECONDS = 2.0
#: bytes a database's write-ahead log is cut back to once checkpointed: SQLite never shrinks it otherwise, and
#: evictions while other connections read (two workers evicting after a budget was lowered) had grown the output
#: tier's to 50 MB for good, outside every budget (soak probe). Its size checkpointed as it grows (1000 pages)
JOURNAL_SIZE_LIMIT = 4 * 2**20
#: A key is marked as used at most once per this many seconds, however often it is read: eviction
#: is least-recently-used to within this. (Each mark rewrites the entry's row and its index entry:
#: with a long tail of keys, marking every key read every second cost more than the hits.)
TOUCH_INTERVAL = 60.0
#: keys remembered as marked in the current interval, at most (beyond, the interval starts over early)
MAX_MARKED = 200_000
#: keys marked per UPDATE, each in a transaction of its own (under the 999 variables of SQLite's oldest
#: limit). One statement marks a chunk with the GIL released once; `executemany` took the GIL back for
#: every row, so behind a busy IOLoop each row waited its turn: 10 000 keys held the tier's write lock
#: for 15-23 s, and every other worker's store, touch and purge failed busy meanwhile (benchmarks/README.md,
#: "The long tail's touches")
TOUCH_CHUNK = 500
#: A value file that no entry names and that was last written this long ago is an orphan (`remove_orphans`):
#: a store writes its file and inserts its row within seconds (a busy database fails it after
#: `SQLITE_BUSY_SECONDS`, and diskcache then deletes the file)
ORPHAN_SECONDS = 600.0
#: versions of `local` files waiting for the next flush, at most (beyond, a burst of new files goes
#: unrecorded: a replaced one then keeps its old outputs until `original_ttl`, as before versions were kept)
MAX_PENDING_VERSIONS = 10_000
#: folders of a tier moved aside for a corrupt database that are kept (the newest; their databases only)
ASIDE_KEPT = 3

_Handles = tuple[diskcache.Cache, diskcache.Cache]  # (writer with LRU bookkeeping, plain reader)


class PlainDisk(diskcache.Disk):
    """diskcache's storage, refusing what the node never stores: pickled keys and values (whoever could write a row
    into a tier's database would have run code as the node's user when it was read) and value files outside the
    folder, which are neither read (a damaged database, `corrupt`: rebuilt) nor deleted when their row goes."""

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode == diskcache.core.MODE_PICKLE:
            raise sqlite3.DatabaseError("a pickled value: the node stores none")
        if filename is not None and _outside(filename):
            raise sqlite3.DatabaseError(f"a value file outside the folder: {filename!r}")
        return super().fetch(mode, filename, value, read)

    def remove(self, file_path: str) -> None:
        if not _outside(file_path):
            super().remove(file_path)

    def _write(self, full_path: str, iterator: Any, mode: str, encoding: str | None = None) -> int:
        try:
            return super()._write(full_path, iterator, mode, encoding)
        except FileExistsError:  # another value's file (`mode` is "xb"): not this store's to delete
            raise
        except OSError:
            # the cut file of a store a full disk or a file size limit stopped: kept, it held the disk's last space
            # until the hourly sweep (`remove_orphans`), a new one at every store (operator probe)
            with contextlib.suppress(OSError):
                os.remove(full_path)
            raise

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise sqlite3.DatabaseError("a pickled key: the node stores none")
        return super().get(key, raw)


def _outside(filename: str) -> bool:
    """Whether a value file a row names lies outside its tier's folder (diskcache's are `ab/cd/<hex>.val`)."""
    return os.path.isabs(filename) or ".." in Path(filename).parts


class BoundedCache(diskcache.Cache):
    """A diskcache `Cache` whose every wait for another connection's lock ends after `SQLITE_BUSY_SECONDS`.
    diskcache retries each statement it runs outside a transaction (opening the database, setting its
    pragmas) for 60 s while SQLite says "database is locked": opening a tier whose lock another process
    held (an operator's `sqlite3 cache.db`) hung a worker's start, a reload or `edge purge` for minutes.
    Here a statement is retried so for `SQLITE_BUSY_SECONDS` (SQLite answers "locked" at once, without
    its own wait, to workers opening one database together), then fails in words diskcache does not retry."""

    def __init__(self, directory: str, **settings: Any) -> None:
        # diskcache runs `sqlite_*` settings as pragmas on each connection it opens
        super().__init__(directory, timeout=SQLITE_BUSY_SECONDS, disk=PlainDisk,
                         sqlite_journal_size_limit=JOURNAL_SIZE_LIMIT, **settings)

    @property
    def _sql(self) -> Callable[..., sqlite3.Cursor]:
        execute = self._con.execute

        def bounded(*args: Any) -> sqlite3.Cursor:
            deadline = time.monotonic() + SQLITE_BUSY_SECONDS
            while True:
                try:
                    return execute(*args)
                except sqlite3.OperationalError as exc:
                    if str(exc) != "database is locked":
                        raise
                    if time.monotonic() >= deadline:
                        raise sqlite3.OperationalError(
                            f"database is locked (for {SQLITE_BUSY_SECONDS:g} s)") from None
                    time.sleep(0.001)
        return bounded


class DiskTier:
    """One diskcache folder: LRU within a byte budget, fast reads with batched touches, prefix
    deletes, a count of what culling evicts, and failures reported instead of raised."""

    def __init__(self, name: str, directory: Path, budget: int, health: CacheHealth,
                 evicted: Callable[[str, int], None] | None = None, touch_interval: float = TOUCH_INTERVAL):
        self.name = name
        self.directory = directory
        self.budget = budget
        self._health = health
        self._evicted = evicted
        self._lock = threading.Lock()  # opening, rebuilding and closing the handles
        self._handles: _Handles | None = None
        self._identity: tuple[int, int] | None = None  # the folder the handles opened
        self._database: tuple[int, int] | None = None  # and its database file
        #: handles replaced whose connections other threads may still hold (`close_replaced`)
        self.replaced: list[diskcache.Cache] = []
        self._retry_at = 0.0
        self._touched: set[str] = set()  # read, to be marked as used at the next flush
        self._touched_lock = threading.Lock()
        self._marked: set[str] = set()  # marked in the current interval: not again until it ends
        self._touch_interval = touch_interval
        self._interval_ends = time.monotonic() + touch_interval
        with self._lock:
            self._open()

    # -- opening, failing, rebuilding

    def _open(self) -> None:
        """Open the handles (with `_lock` held); a corrupt database is quarantined and replaced."""
        for attempt in range(2):
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                stat = os.stat(self.directory)
                writer = BoundedCache(str(self.directory), size_limit=self.budget, cull_limit=0,
                                      eviction_policy="least-recently-used")
                reader = BoundedCache(str(self.directory))
                database = os.stat(self.directory / diskcache.core.DBNAME)
                reader.reset("eviction_policy", "none", update=False)
                # the opening thread's connections closed: only it can close them, and it may never use them again
                # (the event loop's, at the start), holding the database's descriptors, and its space once replaced
                writer.close()
                reader.close()
            except Exception as exc:
                if not cache_failure(exc):
                    raise
                kind = error_kind(exc)
                self._health.failed(self.name, kind, f"cannot open {self.directory}: {exc}")
                if kind == "corrupt" and attempt == 0 and self._quarantine((stat.st_dev, stat.st_ino)):
                    continue
                self._retry_at = time.monotonic() + RETRY_SECONDS
                return
            if self._retry_at:  # it had failed to open: said, or only the ready body clearing a minute on told it
                log.info("cache %s tier: open again in %s", self.name, self.directory)
                self._retry_at = 0.0
            self._handles, self._identity = (writer, reader), (stat.st_dev, stat.st_ino)
            self._database = (database.st_dev, database.st_ino)
            return

    @property
    def available(self) -> bool:
        return self._handles is not None

    def _current(self) -> _Handles | None:
        handles = self._handles
        if handles is None and time.monotonic() >= self._retry_at:
            with self._lock:
                if self._handles is None and time.monotonic() >= self._retry_at:
                    self._open()
                handles = self._handles
        return handles

    def _attempt(self, what: str, operation: Callable[[_Handles], T], default: T) -> T:
        """`operation(handles)`, or `default` when the tier is unavailable or the operation fails."""
        handles = self._current()
        if handles is None:
            return default
        try:
            return operation(handles)
        except Exception as exc:
            if not cache_failure(exc):
                raise
            kind = error_kind(exc)
            self._health.failed(self.name, kind, f"cannot {what}: {reason(exc)}")
            if kind == "corrupt":
                self._reopen(handles, quarantine=True)
            return default

    def _reopen(self, broken: _Handles, *, quarantine: bool) -> None:
        """Replace the handles `broken` (unless another thread did), moving the folder aside first."""
        with self._lock:
            if self._handles is not broken:
                return
            self._handles = None
            for handle in broken:
                handle.close()
            self.replaced += broken  # the other threads' connections to them: `close_replaced`
            if quarantine and self._identity is not None:
                self._quarantine(self._identity)
            self._open()

    def _quarantine(self, identity: tuple[int, int]) -> bool:
        """Move the tier's folder aside if it is still the one at `identity` (another worker may have
        replaced it already); whether the folder now holds no corrupt database."""
        lock_path = self.directory.with_name(f".{self.directory.name}.rebuild-lock")
        try:
            with open(lock_path, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # one process at a time; released on close
                try:
                    stat = os.stat(self.directory)
                except FileNotFoundError:  # moved aside by another worker, made again by the first to open it
                    return True
                if (stat.st_dev, stat.st_ino) != identity:
                    return True
                aside = self.directory.with_name(
                    f"{self.directory.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
                os.rename(self.directory, aside)
                self._trim_asides(aside)
        except OSError as exc:
            self._health.failed(self.name, error_kind(exc), f"cannot move the corrupt database aside: {exc}")
            return False
        log.error("cache %s tier: the database was corrupt; moved to %s (its database kept for inspection, its "
                  "values deleted), a new one replaces it", self.name, aside)
        return True

    def _trim_asides(self, aside: Path) -> None:
        """Keep of a folder moved aside its database alone, and the newest `ASIDE_KEPT` such folders of the tier: each
        had kept every value file of the tier (up to its budget: 2 GB by default), outside every budget, for good,
        and a disk that corrupts again and again filled up with them."""
        for folder, _, files in os.walk(aside, topdown=False):
            for name in files:
                if folder != str(aside) or not name.startswith(diskcache.core.DBNAME):
                    os.unlink(os.path.join(folder, name))
            if folder != str(aside):
                os.rmdir(folder)
        asides = sorted(self.directory.parent.glob(f"{self.directory.name}.corrupt-*"))  # named by their time
        for older in asides[:-ASIDE_KEPT]:
            shutil.rmtree(older, ignore_errors=True)

    def follow_replacement(self) -> None:
        """Open the tier again when its folder or database is no longer the one open: replaced by
        another worker's rebuild, or deleted under the node (the handles would go on with a deleted
        file for good, caching nothing anyone else sees, purges and `edge cache stats` included). The replaced
        handles' connections of the other threads are closed by those threads (`Caches.close_replaced`)."""
        handles = self._handles
        if handles is None:
            return
        try:
            folder, database = os.stat(self.directory), os.stat(self.directory / diskcache.core.DBNAME)
        except FileNotFoundError:
            log.warning("cache %s tier: %s or its database was deleted; making it again", self.name, self.directory)
            self._reopen(handles, quarantine=False)
            return
        except OSError:
            return
        if (folder.st_dev, folder.st_ino) != self._identity or (database.st_dev, database.st_ino) != self._database:
            self._reopen(handles, quarantine=False)

    # -- reading and writing

    def _get(self, key: str, before_read: Callable[[int, dict[str, Any]], T | None] | None = None
             ) -> tuple[bytes | T, dict[str, Any]] | None:
        """The stored value of `key` and its metadata, or None. `before_read(size, metadata)` is called
        before the bytes of a value over diskcache's `disk_min_file_size` (a file of its own) are read:
        what it returns, unless None, stands for them, and they are not read; it may raise, and then
        none are."""
        found = self._attempt("read", lambda handles: _read(handles[1], key, before_read), None)
        if found is None:
            return None
        body, meta = found
        if meta is None:
            return self._damaged(key)
        self.touch(key)
        return body, meta

    def _damaged(self, key: str) -> None:
        """A stored value that is not what was written: never served; deleted so it is made again."""
        self._health.failed(self.name, "damaged", "a stored value does not match its recorded hash")
        self.delete(key)
        return None

    def touch(self, key: str) -> None:
        if key in self._marked:  # the hot path of a hot key: no lock, nothing to write
            return
        with self._touched_lock:
            self._touched.add(key)

    def _changed(self, key: str) -> None:
        """Called after `key` was written or deleted (by this process)."""

    def holds(self, size: int) -> bool:
        """Whether a value of `size` bytes is stored (a larger one would evict too much of the tier)."""
        return size <= self.budget // MAX_ENTRY_SHARE

    def _put(self, key: str, body: bytes, meta: dict[str, Any], expire: float | None = None) -> None:
        """Store, then evict least-recently-used entries until the tier is within budget."""
        if not self.holds(len(body)):
            return

        def store(handles: _Handles) -> int:
            writer = handles[0]
            try:
                writer.set(key, body, tag=json.dumps(meta), expire=expire)
            finally:
                self._changed(key)
            if expire is not None:  # only a tier that stores expiring entries has any to clean up
                writer.expire()  # an expired record leaving is not an eviction
            return self._evict_to_budget(writer)

        self._count_evicted(self._attempt("store", store, 0))

    def _count_evicted(self, evicted: int) -> None:
        if evicted and self._evicted is not None:
            self._evicted(self.name, evicted)

    def evict_to_budget(self) -> None:
        """Delete least-recently-used entries until the tier is within its budget (blocking)."""
        self._count_evicted(self._attempt("evict", lambda handles: self._evict_to_budget(handles[0]), 0))

    def forget_the_future(self) -> None:
        """Bring back to now the access times ahead of the clock (blocking): the entries touched while it ran ahead
        (a bad NTP step, a virtual machine resumed) sorted after every other in the LRU, evicted last for the
        length of the step however long nobody asked for them."""
        now = time.time()  # diskcache's access_time is wall-clock seconds
        self._attempt("correct access times", lambda handles: handles[0]._sql(
            "UPDATE Cache SET access_time = ? WHERE access_time > ?", (now, now + CLOCK_SKEW_SECONDS)), None)

    def _evict_to_budget(self, writer: diskcache.Cache) -> int:
        evicted = 0
        while writer.volume() > self.budget:
            # the `Cache_access_time` index that diskcache keeps for its LRU policy
            oldest = writer._sql("SELECT key FROM Cache ORDER BY access_time LIMIT 1").fetchall()
            if not oldest:
                break
            evicted += self._delete(writer, oldest[0][0])  # False when another worker got there first
        return evicted

    def _delete(self, writer: diskcache.Cache, key: str) -> bool:
        try:
            return writer.delete(key)
        finally:
            self._changed(key)

    def delete(self, key: str) -> bool:
        return self._attempt("delete", lambda handles: self._delete(handles[0], key), False)

    def delete_prefix(self, prefix: str, spare_version: str | None = None) -> int | None:
        """Delete every entry whose key starts with `prefix`, but the outputs made from the original's version
        `spare_version` (see `OutputTier.delete_made_from_others`); return how
        many, or None when the tier could not (unavailable, or the database busy past `SQLITE_BUSY_SECONDS`): a
        purge must say so."""
        def delete_all(handles: _Handles) -> int:
            writer = handles[0]
            if spare_version is not None and not _entries_with_prefix(writer, prefix, spare_version):
                return 0  # no write lock taken for nothing (`OutputTier.delete_made_from_others`, on a first fetch)
            with writer.transact():
                deleted = _entries_with_prefix(writer, prefix, spare_version)
                for _, rowid, _ in deleted:  # diskcache's triggers keep its count and size
                    writer._sql("DELETE FROM Cache WHERE rowid = ?", (rowid,))
            # after the commit: a reader that saw the moved counter while the rows were still there
            # would keep the old output in its memory tier as current
            for key, _, _ in deleted:
                self._changed(key)
            # and the files only now (diskcache's `delete` in a transaction deletes each file before the
            # commit: a purge killed in between left rows naming files that were gone). Killed here, the
            # files are left that no row names, for `remove_orphans`
            for _, _, filename in deleted:
                if filename is not None:
                    writer._disk.remove(filename)
            return len(deleted)
        return self._attempt("delete", delete_all, None)

    def flush_touches(self) -> None:
        """Mark the keys read since the last flush as recently used (every second: also the moment to
        notice that another worker replaced a corrupt database, which this one may not have read yet)."""
        self.follow_replacement()
        now = time.monotonic()
        with self._touched_lock:
            touched, self._touched = self._touched, set()
            self._end_interval_if_over(now)
            touched -= self._marked
            self._marked |= touched
            self._end_interval_if_over(now)  # (an interval of 0 remembers nothing)
        if not touched:
            return

        def touch(handles: _Handles) -> None:
            writer = handles[0]
            now = time.time()  # diskcache's access_time is wall-clock seconds
            keys = list(touched)
            for start in range(0, len(keys), TOUCH_CHUNK):
                chunk = keys[start:start + TOUCH_CHUNK]
                # through the (key, raw) index; diskcache's own way (a `get` per key: a SELECT, an
                # UPDATE and, for a file value, an open) cost more than the hits it accounted for with
                # many distinct keys (str keys are stored with raw = 1)
                with writer.transact():
                    writer._con.execute(f"UPDATE Cache SET access_time = ? WHERE raw = 1 AND key IN "
                                        f"({','.join('?' * len(chunk))})", (now, *chunk))
        self._attempt("mark entries as used", touch, None)

    def _end_interval_if_over(self, now: float) -> None:
        if now >= self._interval_ends or len(self._marked) > MAX_MARKED:
            self._marked, self._interval_ends = set(), now + self._touch_interval

    def remove_orphans(self, older_than: float = ORPHAN_SECONDS) -> int:
        """Delete the value files no entry names that were last written more than `older_than` seconds ago:
        what a process killed while storing left (diskcache writes a value's file before its row; in between,
        a SIGKILL, the OOM killer or the supervisor's kill of a hung worker leaves the file, which no
        budget counts and no eviction deletes). The files of stores under way are younger. How many files
        were deleted (blocking: lists the tier's folders)."""
        def remove(handles: _Handles) -> tuple[int, int]:
            # by file name alone (diskcache's are random, 28 hex digits): cheaper than a path per file
            named = {os.path.basename(filename) for (filename,) in handles[1]._sql(
                "SELECT filename FROM Cache WHERE filename IS NOT NULL").fetchall()}
            written_before, files, freed = time.time() - older_than, 0, 0
            for folder, _, names in os.walk(self.directory):
                for name in names:
                    if name in named or not name.endswith(".val"):
                        continue
                    path = os.path.join(folder, name)
                    try:
                        stat = os.stat(path)
                        if stat.st_mtime < written_before:
                            os.remove(path)
                            files, freed = files + 1, freed + stat.st_size
                    except FileNotFoundError:  # another worker's sweep, or diskcache's own cleanup
                        pass
            return files, freed
        # counted in files: a process killed right after creating one leaves it empty
        files, freed = self._attempt("remove orphaned files", remove, (0, 0))
        if files:
            log.warning("cache %s tier: removed %d value file(s) that no entry names, %d bytes (left by a process "
                        "killed while storing)", self.name, files, freed)
        return files

    def volume(self) -> int:
        return self._attempt("measure", lambda handles: handles[0].volume(), 0)

    def __len__(self) -> int:
        return self._attempt("count", lambda handles: len(handles[0]), 0)

    def release_thread(self) -> None:
        """Close the calling thread's database connections (diskcache opens one per thread)."""
        for handle in (*(self._handles or ()), *self.replaced):
            handle.close()

    def forget_replaced(self, closed: list[diskcache.Cache]) -> None:
        """Let go of the replaced handles `closed`, whose connections every thread has closed (`release_thread`)."""
        with self._lock:
            self.replaced = [handle for handle in self.replaced if handle not in closed]

    def close(self) -> None:
        with self._lock:
            handles, self._handles = self._handles, None
        for handle in handles or ():
            handle.close()


def _read(reader: diskcache.Cache, key: str, before_read: Callable[[int, dict[str, Any]], T | None] | None
          ) -> tuple[bytes | T, dict[str, Any] | None] | None:
    """`DiskTier._get`'s read (the metadata None when it is not JSON). A value kept in a file is opened,
    not read, by diskcache (`read=True`): its size is known before its bytes are read."""
    value, tag = reader.get(key, read=True, tag=True)
    if value is None:
        return None
    try:
        meta = json.loads(tag)
    except (TypeError, ValueError):
        meta = None
    if isinstance(value, bytes):  # kept in the database
        return value, meta
    with value:
        if before_read is not None and meta is not None:
            instead = before_read(os.fstat(value.fileno()).st_size, meta)
            if instead is not None:
                return instead, meta
        return value.read(), meta


def _entries_with_prefix(writer: diskcache.Cache, prefix: str, spare_version: str | None = None
                         ) -> list[tuple[str, int, str | None]]:
    """(key, rowid, value file) of the entries whose key starts with `prefix` and that have not expired
    (diskcache's own reads and deletes ignore those), but the outputs made from `spare_version` (metadata the
    node did not write spares none)."""
    # (diskcache has no public prefix query; `iterkeys` would scan the whole tier. Like the LRU
    # query above, this reads diskcache's table directly: tests/test_purge.py and
    # tests/test_cache_tiers.py pin both.) The version is compared in SQLite: an original may have thousands
    # of outputs (each size a client asked for), each one's metadata read in Python cost ~4 µs
    # (the version's condition only when one is spared: SQLite resolves `json_*` when it prepares the query, and
    # a purge must not need them)
    spared = "" if spare_version is None else f" AND {_MADE_FROM} IS NOT ?"
    rows = writer._sql("SELECT key, rowid, filename FROM Cache WHERE key >= ? AND key < ? AND raw = 1"
                       f" AND (expire_time IS NULL OR expire_time > ?){spared}",
                       _key_range(prefix) + (time.time(),) + (() if spare_version is None else (spare_version,)))
    return [(key, rowid, filename) for key, rowid, filename in rows.fetchall()
            if isinstance(key, str) and key.startswith(prefix)]


#: what an output's metadata says it was made from, read in SQLite: the original's version
#: (`SourceInfo.version_of_original`) and when it was confirmed; NULL for metadata the node did not write (a CASE:
#: SQLite may evaluate both sides of an AND, and `json_extract` of text that is not JSON is an error)
_MADE_FROM = ("CASE WHEN json_valid(tag) THEN coalesce(json_extract(tag, '$.source.original_version'),"
              " json_extract(tag, '$.source.version')) END")
_CHECKED_AT = "CASE WHEN json_valid(tag) THEN json_extract(tag, '$.source.checked_at') END"


def _key_range(prefix: str) -> tuple[str, str]:
    """The bounds of the keys that start with `prefix`, for a range over diskcache's `Cache(key, raw)` unique
    index: str keys are stored as TEXT, which SQLite orders by bytes, and no UTF-8 text starting with `prefix`
    sorts after prefix + U+10FFFF."""
    return prefix, prefix + "\U0010ffff"


def _stored_source(tag: Any) -> SourceInfo | None:
    """The `source` of an output's metadata as stored, or None when this node did not write it."""
    try:
        return _source(json.loads(tag)["source"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _source(meta: dict[str, Any]) -> SourceInfo:
    info = SourceInfo(**meta)
    # written before origin header values were checked: drop what cannot be sent
    return replace(SourceInfo.from_origin(info.origin, info.version, info.checked_at, info.etag, info.last_modified,
                                          info.content_type), original_version=info.original_version)


#: called with a stored output's size and ETag before its body is read from disk (in a cache thread), for
#: outputs over diskcache's `disk_min_file_size` (32 KB): whether the answer sends the body. If not (a HEAD, a
#: 304), none of it is read: the output is an `UnreadOutput`, made of the metadata alone. It may raise (an
#: `EdgeError`), and then nothing is read
BeforeReading = Callable[[int, str | None], bool]


class OutputTier(DiskTier):
    def __init__(self, name: str, directory: Path, budget: int, health: CacheHealth,
                 evicted: Callable[[str, int], None] | None = None,
                 changed: Callable[[str], None] = lambda key: None, touch_interval: float = TOUCH_INTERVAL):
        self._on_change = changed
        super().__init__(name, directory, budget, health, evicted, touch_interval)

    def _changed(self, key: str) -> None:
        self._on_change(key)

    def get(self, key: str, before_reading: BeforeReading | None = None) -> CachedOutput | None:
        """The stored output, checked against its ETag (a hash of the body), or None. `before_reading`:
        see `BeforeReading`."""
        found = self._get(key, before_reading and partial(_unread_unless_needed, before_reading))
        if found is None:
            return None
        body, meta = found
        if isinstance(body, UnreadOutput):
            return body  # its size is the stored length; altered at that size, the next answer sending it finds out
        output = _output(CachedOutput, meta, body=body)
        if output is None:
            return None
        if not hashes_to(body, output.etag):
            return self._damaged(key)
        return output

    def delete_made_from_others(self, original: str, version: str) -> int | None:
        """Delete the outputs of the original `original` (its key) made from any version but `version`: with
        nothing recorded of the original (its bytes not kept, or evicted), what outputs it has are the only
        record of the version they were made from (blocking; as `delete_prefix`)."""
        return self.delete_prefix(original, version)

    def newest_source(self, original: str) -> SourceInfo | None:
        """What the output of the original `original` (its key) confirmed last was made from, or None when it
        has none (or the tier is unavailable): with nothing recorded of the original, the version this node saw
        last (blocking)."""
        def newest(handles: _Handles) -> SourceInfo | None:
            # picked in SQLite, as in `_entries_with_prefix` (in Python: 50 ms for an original with 5000 outputs)
            row = handles[1]._sql(
                "SELECT tag FROM Cache WHERE key >= ? AND key < ? AND raw = 1 AND (expire_time IS NULL OR expire_time"
                f" > ?) AND {_CHECKED_AT} IS NOT NULL ORDER BY {_CHECKED_AT} DESC LIMIT 1",
                _key_range(original) + (time.time(),)).fetchone()
            return None if row is None else _stored_source(row[0])
        return self._attempt("read", newest, None)

    def put(self, key: str, output: CachedOutput) -> None:
        meta = _fields(output)
        del meta["body"]
        meta["source"] = output.source.as_stored()
        meta[_LENGTH] = len(output.body)
        self._put(key, output.body, meta)


#: the metadata key of a stored output's body length: a HEAD or a 304 reads no body, so its ETag (a hash of the
#: body) cannot be checked, but a body cut short on disk (a crash mid-write, a full disk) shows in its size
_LENGTH = "length"


def _output(kind: type[O], meta: dict[str, Any], **more: Any) -> O | None:
    """The output of `kind` stored with `meta`, or None when an older version of the node wrote it (a
    miss, replaced on store)."""
    try:
        stored = {**meta, "source": _source(meta["source"])}
        stored.pop(_LENGTH, None)
        return kind(**more, **stored)
    except (KeyError, TypeError):
        return None


def _unread_unless_needed(before_reading: BeforeReading, size: int, meta: dict[str, Any]) -> UnreadOutput | None:
    """The output stored with `meta`, its `size` bytes left on disk, when `before_reading` says that the
    answer sends none of them (else None: they are read). A size other than the one stored is read too:
    the ETag check then finds the damage, and the answer is a miss rather than a wrong `Content-Length`."""
    if meta.get(_LENGTH, size) != size or before_reading(size, meta.get("etag")):
        return None
    return _output(UnreadOutput, meta, body=b"", stored_size=size)


class OriginalTier(DiskTier):
    """Originals with their bytes, and for the files of `local` origins their versions alone."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._versions: dict[str, SourceInfo] = {}  # to record at the next flush

    def get(self, key: str) -> StoredOriginal | None:
        """The stored original, checked against its version (a hash of the bytes), or None. A version
        recorded but not yet flushed is the one this process read last: as the record will be, not None
        (a file replaced within that second kept the outputs of its old version)."""
        with self._touched_lock:
            pending = self._versions.get(key)
        if pending is not None:
            return StoredOriginal(pending, b"", False)
        found = self._get(key)
        if found is None:
            return None
        body, meta = found
        kept = meta.pop("kept", True) is not False
        try:
            original = StoredOriginal(_source(meta), body, kept)
        except TypeError:  # written by an older version of the node
            return None
        if kept and not hashes_to(body, original.info.version):
            return self._damaged(key)
        return original

    def put(self, key: str, original: StoredOriginal) -> None:
        self._put(key, original.body, original.info.as_stored())

    def put_version_later(self, key: str, info: SourceInfo) -> None:
        """Record `key`'s version without bytes (a `local` file's, or an original's too large to keep) at the
        next flush, with the others in one transaction: a store of its own cost a miss of a new file 2-5 % more
        CPU (benchmarks/README.md, "A local file's version"). Nothing with no budget (`original_size = 0`:
        every record is evicted at once). Any thread may call this; it does not block."""
        with self._touched_lock:
            if self.budget and len(self._versions) < MAX_PENDING_VERSIONS:
                self._versions[key] = info

    def flush_touches(self) -> None:
        super().flush_touches()
        self.flush_versions()

    def flush_versions(self) -> None:
        """Write the versions `put_version_later` collected (blocking)."""
        with self._touched_lock:
            versions, self._versions = self._versions, {}
        if not versions:
            return

        def record(handles: _Handles) -> int:
            writer = handles[0]
            with writer.transact():
                for key, info in versions.items():
                    # `kept`: an older node reading this finds a field it does not know: a miss
                    writer.set(key, b"", tag=json.dumps({**info.as_stored(), "kept": False}))
            return self._evict_to_budget(writer)
        self._count_evicted(self._attempt("record versions", record, 0))


class NotFoundTier(DiskTier):
    """Paths no origin had, until a deadline. The deadline is checked against the node's clock (which
    tests can move); diskcache's own expiry only cleans up."""

    def missing_for(self, key: str, now: float, ttl: float) -> float:
        """How many more seconds `key` is remembered missing at `now` (0: it is not). A record with more than
        `ttl` left was made before the clock stepped back (else remembered for the step's hours), and is not."""
        found = self._get(key)
        try:
            left = float(found[1]["until"]) - now if found is not None else 0.0
        except (KeyError, TypeError, ValueError):
            return 0.0
        return left if 0 < left <= ttl else 0.0

    def put(self, key: str, now: float, ttl: float) -> None:
        if ttl > 0:
            self._put(key, b"", {"until": now + ttl}, expire=ttl)


def _fields(entry: Any) -> dict[str, Any]:
    """A dataclass's fields, one level deep (`dataclasses.asdict` deep-copies every value: with it and
    an expiry sweep on every store, a store took 0.32 ms of CPU instead of 0.28)."""
    return {field.name: getattr(entry, field.name) for field in fields(entry)}
