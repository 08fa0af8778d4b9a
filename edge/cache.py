"""The output cache: on disk (LRU, size-bounded, surviving restarts, shared by the worker processes),
with a small per-process memory tier in front for the hottest outputs.

Two measured costs shape it (see `benchmarks/bench_hit.py`):

- diskcache's `least-recently-used` policy turns every read into a write (about 6× slower reads).
  Reads here go through a second handle with no per-read bookkeeping, and the keys read are marked
  as used in one batch every second (`flush_touches`): eviction is LRU to within a second.
- Even a plain SQLite read of a 20 kB output costs about a third of a hit. The memory tier answers
  hot keys from RAM. It stays correct across processes through `SharedVersions`: every write or
  delete of a key bumps a version shared by all workers, and a memory copy is used only while its
  key's version is the one it was read at.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import mmap
import os
import threading
import zlib
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import diskcache


@dataclass(frozen=True)
class CachedOutput:
    """A stored response: the body and the headers that were decided when it was produced."""

    body: bytes
    content_type: str
    etag: str
    last_modified: str | None = None
    vary_accept: bool = False
    canonical_link: str | None = None
    origin: str | None = None


def strong_etag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


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


class OutputCache:
    def __init__(self, directory: Path, size_limit: int, memory_limit: int):
        directory.mkdir(parents=True, exist_ok=True)
        self._writer = diskcache.Cache(str(directory), size_limit=size_limit,
                                       eviction_policy="least-recently-used")
        self._reader = diskcache.Cache(str(directory))
        self._reader.reset("eviction_policy", "none", update=False)
        self._versions = SharedVersions(directory / "versions.bin")
        self._memory = _MemoryTier(memory_limit)
        self._touched: set[str] = set()
        self._touched_lock = threading.Lock()

    def get(self, key: str) -> CachedOutput | None:
        """The stored output, or None. Call from the IOLoop thread (the memory tier is not locked)."""
        bucket = SharedVersions.bucket(key)
        version = self._versions.read(bucket)  # read before the disk, so a racing write is seen next time
        output = self._memory.get(key, version)
        if output is None:
            body, meta = self._reader.get(key, tag=True)
            if body is None:
                return None
            output = CachedOutput(body=body, **json.loads(meta))
            self._memory.put(key, version, output)
        with self._touched_lock:
            self._touched.add(key)
        return output

    def put(self, key: str, output: CachedOutput) -> None:
        meta = asdict(output)
        del meta["body"]
        self._writer.set(key, output.body, tag=json.dumps(meta))
        self._versions.bump(SharedVersions.bucket(key))

    def delete(self, key: str) -> bool:
        removed = self._writer.delete(key)
        self._versions.bump(SharedVersions.bucket(key))
        return removed

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
        self._versions.close()
