"""The on-disk cache: three tiers under `[cache] dir`, each an LRU diskcache with its own byte budget,
surviving restarts and shared by the worker processes.

- `outputs`: transformed responses, the main tier.
- `originals`: fetched originals, so that ten sizes of one image cost one origin fetch, and so that a
  stale original can be revalidated (conditional request) or served when the origin fails.
- `not_found`: short-lived "no origin has this path" records (the negative cache).

Measured costs shape the reads (see `benchmarks/bench_hit.py`):

- diskcache's `least-recently-used` policy turns every read into a write (about 6× slower reads).
  Reads here go through a second handle with no per-read bookkeeping, and the keys read are marked
  as used in one batch every second (`flush_touches`): eviction is LRU to within a second.
- Even a plain SQLite read of a 20 kB output costs about a third of a hit. A small per-process memory
  tier in front of the outputs answers hot keys from RAM. It stays correct across processes through
  `SharedVersions`: every write or delete of an output key (a store, an eviction, a purge) bumps a
  version shared by all workers, and a memory copy is used only while its key's version is the one
  it was read at.

diskcache does not say what it culls, and culls ten entries at a time when one would do, so its
culling is off (`cull_limit=0`): after every store the tier deletes its least-recently-used entries
one by one until it is within budget, and counts them (`edge_cache_evictions_total`).

Keys start with `endpoint \\0 path \\0` in every tier, so "everything cached for a path" and "for a
path prefix" are key ranges, which a purge deletes through the primary-key index (`delete_prefix`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import mmap
import os
import sqlite3
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import diskcache

log = logging.getLogger("edge.cache")

#: A tier never keeps an entry larger than this fraction of its budget: one huge image must not
#: evict the whole tier (and with `original_size = 0`, originals are simply not kept).
MAX_ENTRY_SHARE = 8
#: Budget of the not-found records: each is ~200 bytes, so this holds hundreds of thousands.
NOT_FOUND_BUDGET = 64 * 10**6


def strong_etag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def path_key(endpoint_id: str, path: str) -> str:
    """The key of an original (and the key prefix of all its outputs)."""
    return f"{endpoint_id}\0{path}\0"


def path_prefix_key(endpoint_id: str, path_prefix: str) -> str:
    """The key prefix shared by every entry whose path starts with `path_prefix`."""
    return f"{endpoint_id}\0{path_prefix}"


def output_key(endpoint_id: str, path: str, canonical_transformation: str, negotiated_format: str) -> str:
    return f"{path_key(endpoint_id, path)}{canonical_transformation}\0{negotiated_format}"


@dataclass(frozen=True)
class SourceInfo:
    """What is known about a version of an original: where it came from, its validators for a
    conditional request, a version (hash of the bytes) and when the origin last confirmed it."""

    origin: str
    version: str
    checked_at: float
    etag: str | None = None
    last_modified: str | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class StoredOriginal:
    """An original as the originals tier gives it out. `body` is None only when the origin confirmed
    a version whose bytes the tier no longer holds (the caller already has what it made from them)."""

    info: SourceInfo
    body: bytes | None


@dataclass(frozen=True)
class CachedOutput:
    """A stored response: the body, the headers decided when it was produced, and the version of the
    original it was made from (its freshness is that original's)."""

    body: bytes
    content_type: str
    etag: str
    source: SourceInfo
    vary_accept: bool = False
    canonical_link: str | None = None

    def confirmed(self, source: SourceInfo) -> CachedOutput:
        """This output, now known to be made from the current version of its original."""
        return replace(self, source=source)


class SharedVersions:
    """Version counters shared by every process that opens the same file, one per bucket of keys.
    Reading one is a memory read; bumping one takes a file lock (writes are rare next to reads)."""

    BUCKETS = 4096

    def __init__(self, path: Path):
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        size = self.BUCKETS * 8
        if os.fstat(self._fd).st_size < size:
            os.ftruncate(self._fd, size)
        self._map = mmap.mmap(self._fd, size)
        self._counters = memoryview(self._map).cast("Q")

    @classmethod
    def bucket(cls, key: str) -> int:
        return zlib.crc32(key.encode()) % cls.BUCKETS

    def read(self, bucket: int) -> int:
        return self._counters[bucket]

    def bump(self, bucket: int) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            self._counters[bucket] += 1
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._counters.release()
        self._map.close()
        os.close(self._fd)


class _MemoryTier:
    """A byte-bounded LRU of outputs, each remembered with the shared version it was read at."""

    def __init__(self, size_limit: int):
        self.size_limit = size_limit
        self._entries: OrderedDict[str, tuple[int, CachedOutput]] = OrderedDict()
        self._size = 0

    def get(self, key: str, version: int) -> CachedOutput | None:
        found = self._entries.get(key)
        if found is None or found[0] != version:
            return None
        self._entries.move_to_end(key)
        return found[1]

    def put(self, key: str, version: int, output: CachedOutput) -> None:
        if len(output.body) > self.size_limit // 16:  # a few large outputs must not flush the rest
            return
        self.discard(key)
        self._entries[key] = (version, output)
        self._size += len(output.body)
        while self._size > self.size_limit:
            _, (_, evicted) = self._entries.popitem(last=False)
            self._size -= len(evicted.body)

    def discard(self, key: str) -> None:
        found = self._entries.pop(key, None)
        if found is not None:
            self._size -= len(found[1].body)


class Tier:
    """One diskcache directory: LRU within a byte budget, fast reads with batched touches, prefix
    deletes, and a count of what culling evicts."""

    def __init__(self, name: str, directory: Path, budget: int,
                 evicted: Callable[[str, int], None] | None = None):
        directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.budget = budget
        self._evicted = evicted
        self._writer = diskcache.Cache(str(directory), size_limit=budget, cull_limit=0,
                                       eviction_policy="least-recently-used")
        self._reader = diskcache.Cache(str(directory))
        self._reader.reset("eviction_policy", "none", update=False)
        self._touched: set[str] = set()
        self._touched_lock = threading.Lock()

    def _get(self, key: str) -> tuple[bytes, dict[str, Any]] | None:
        body, meta = self._reader.get(key, tag=True)
        if body is None:
            return None
        self._touch(key)
        return body, json.loads(meta)

    def _touch(self, key: str) -> None:
        with self._touched_lock:
            self._touched.add(key)

    def _changed(self, key: str) -> None:
        """Called after `key` was written or deleted (by this process)."""

    def _put(self, key: str, body: bytes, meta: dict[str, Any], expire: float | None = None) -> None:
        """Store, then evict least-recently-used entries until the tier is within budget (blocking).
        A store that fails (a full disk, a database locked too long) is logged, and the request that
        made the entry is still answered with it."""
        if len(body) > self.budget // MAX_ENTRY_SHARE:
            return
        try:
            self._writer.set(key, body, tag=json.dumps(meta), expire=expire)
        except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
            log.error("cannot store in the %s tier: %s", self.name, exc)
            return
        self._changed(key)
        self._writer.expire()  # an expired record leaving is not an eviction
        evicted = self._evict_to_budget()
        if evicted and self._evicted is not None:
            self._evicted(self.name, evicted)

    def _evict_to_budget(self) -> int:
        evicted = 0
        while self._writer.volume() > self.budget:
            # the `Cache_access_time` index that diskcache keeps for its LRU policy
            oldest = self._writer._sql("SELECT key FROM Cache ORDER BY access_time LIMIT 1").fetchall()
            if not oldest:
                break
            evicted += self.delete(oldest[0][0])  # False when another worker got there first
        return evicted

    def delete(self, key: str) -> bool:
        removed = self._writer.delete(key)
        self._changed(key)
        return removed

    def delete_prefix(self, prefix: str) -> int:
        """Delete every entry whose key starts with `prefix`; return how many (blocking)."""
        with self._writer.transact():
            return sum(self.delete(key) for key in list(self._keys_with_prefix(prefix)))

    def _keys_with_prefix(self, prefix: str) -> Iterator[str]:
        # A range over diskcache's `Cache(key, raw)` unique index: str keys are stored as TEXT, which
        # SQLite orders by bytes, and no UTF-8 text starting with `prefix` sorts after prefix + U+10FFFF.
        # (diskcache has no public prefix query; `iterkeys` would scan the whole tier. Like the LRU
        # query above, this reads diskcache's table directly: tests/test_purge.py and
        # tests/test_cache_tiers.py pin both.)
        rows = self._writer._sql("SELECT key FROM Cache WHERE key >= ? AND key < ? AND raw = 1",
                                 (prefix, prefix + "\U0010ffff"))
        return (key for (key,) in rows.fetchall() if isinstance(key, str) and key.startswith(prefix))

    def flush_touches(self) -> None:
        """Mark the keys read since the last flush as recently used (blocking: run it off the loop)."""
        with self._touched_lock:
            touched, self._touched = self._touched, set()
        if not touched:
            return
        with self._writer.transact():
            for key in touched:
                handle = self._writer.get(key, read=True)
                if hasattr(handle, "close"):
                    handle.close()

    def volume(self) -> int:
        return self._writer.volume()

    def __len__(self) -> int:
        return len(self._writer)

    def close(self) -> None:
        self._reader.close()
        self._writer.close()


class OutputCache(Tier):
    def __init__(self, name: str, directory: Path, budget: int, memory_budget: int,
                 evicted: Callable[[str, int], None] | None = None):
        super().__init__(name, directory, budget, evicted)
        self._versions = SharedVersions(directory / "versions.bin")
        self._memory = _MemoryTier(memory_budget)

    def get(self, key: str) -> CachedOutput | None:
        """The stored output, or None. Call from the IOLoop thread (the memory tier is not locked)."""
        version = self._versions.read(SharedVersions.bucket(key))  # before the disk: a racing write shows next time
        output = self._memory.get(key, version)
        if output is not None:
            self._touch(key)
            return output
        found = self._get(key)
        if found is None:
            return None
        body, meta = found
        try:
            output = CachedOutput(body=body, **{**meta, "source": SourceInfo(**meta["source"])})
        except (KeyError, TypeError):  # written by an older version of the node: a miss, replaced on store
            return None
        self._memory.put(key, version, output)
        return output

    def put(self, key: str, output: CachedOutput) -> None:
        meta = asdict(output)
        del meta["body"]
        self._put(key, output.body, meta)

    def _changed(self, key: str) -> None:
        self._versions.bump(SharedVersions.bucket(key))

    def close(self) -> None:
        super().close()
        self._versions.close()


class OriginalCache(Tier):
    def get(self, key: str) -> StoredOriginal | None:
        found = self._get(key)
        if found is None:
            return None
        body, meta = found
        try:
            return StoredOriginal(SourceInfo(**meta), body)
        except TypeError:  # written by an older version of the node
            return None

    def put(self, key: str, original: StoredOriginal) -> None:
        assert original.body is not None
        self._put(key, original.body, asdict(original.info))


class NotFoundCache(Tier):
    """Paths no origin had, until a deadline. The deadline is checked against the node's clock (which
    tests can move); diskcache's own expiry only cleans up."""

    def known_missing(self, key: str, now: float) -> bool:
        found = self._get(key)
        return found is not None and now < found[1]["until"]

    def put(self, key: str, now: float, ttl: float) -> None:
        if ttl > 0:
            self._put(key, b"", {"until": now + ttl}, expire=ttl)


class Caches:
    """The node's tiers under `[cache] dir`. Opened by each serving process and by `edge purge`."""

    def __init__(self, directory: Path, output_size: int, original_size: int, memory_size: int = 0,
                 evicted: Callable[[str, int], None] | None = None):
        self.outputs = OutputCache("output", directory / "outputs", output_size, memory_size, evicted)
        self.originals = OriginalCache("original", directory / "originals", original_size, evicted)
        self.not_found = NotFoundCache("not_found", directory / "not-found", NOT_FOUND_BUDGET, evicted)
        self.tiers: tuple[Tier, ...] = (self.outputs, self.originals, self.not_found)

    def forget(self, prefix: str) -> dict[str, int]:
        """Delete every entry of every tier whose key starts with `prefix`; the count per tier."""
        return {tier.name: tier.delete_prefix(prefix) for tier in self.tiers}

    def flush_touches(self) -> None:
        for tier in self.tiers:
            tier.flush_touches()

    def close(self) -> None:
        for tier in self.tiers:
            tier.close()
