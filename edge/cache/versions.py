"""Version counters shared by every process that opens the same file, one per bucket of keys: the
memory tier uses a copy only while its bucket's counter is the one it was read at.

The file is allocated for real (`posix_fallocate`), never sparse: writing to a memory-mapped page
that the filesystem cannot back (a full disk) kills the process with SIGBUS, so when the space
cannot be allocated the file is not mapped at all (and the memory tier stays off).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import threading
import zlib
from pathlib import Path


class SharedVersions:
    """Reading a counter is a memory read; bumping one excludes other threads of this process (a lock)
    and other processes (a file lock): two bumps must never be merged into one, or a copy read
    between them would look current after the second write."""

    BUCKETS = 4096
    SIZE = BUCKETS * 8

    def __init__(self, path: Path):
        """Raises OSError when the file cannot be created or its space allocated."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size < self.SIZE:
                os.posix_fallocate(fd, 0, self.SIZE)
            self._map = mmap.mmap(fd, self.SIZE)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._counters = memoryview(self._map).cast("Q")
        self._lock = threading.Lock()

    @classmethod
    def bucket(cls, key: str) -> int:
        return zlib.crc32(key.encode("utf-8", "surrogatepass")) % cls.BUCKETS

    def read(self, bucket: int) -> int:
        return self._counters[bucket]

    def bump(self, bucket: int) -> None:
        with self._lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                self._counters[bucket] += 1
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._counters.release()
        self._map.close()
        os.close(self._fd)
