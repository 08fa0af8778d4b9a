"""The on-disk output cache: LRU, size-bounded, surviving restarts, shared by the worker processes.

diskcache's `least-recently-used` policy turns every read into a write (about 6× slower reads).
Reads here go through a second handle with no per-read bookkeeping, and the keys read are marked
as used in one batch every second (`flush_touches`), so eviction is LRU to within a second and a
hit costs one SQLite read.
"""

from __future__ import annotations

import hashlib
import json
import threading
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


class OutputCache:
    def __init__(self, directory: Path, size_limit: int):
        directory.mkdir(parents=True, exist_ok=True)
        self._writer = diskcache.Cache(str(directory), size_limit=size_limit,
                                       eviction_policy="least-recently-used")
        self._reader = diskcache.Cache(str(directory))
        self._reader.reset("eviction_policy", "none", update=False)
        self._touched: set[str] = set()
        self._touched_lock = threading.Lock()

    def get(self, key: str) -> CachedOutput | None:
        found = self._reader.get(key, tag=True)
        body, meta = found
        if body is None:
            return None
        with self._touched_lock:
            self._touched.add(key)
        return CachedOutput(body=body, **json.loads(meta))

    def put(self, key: str, output: CachedOutput) -> None:
        meta = asdict(output)
        del meta["body"]
        self._writer.set(key, output.body, tag=json.dumps(meta))

    def delete(self, key: str) -> bool:
        return self._writer.delete(key)

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
