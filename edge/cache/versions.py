"""Version counters shared by every process that opens the same file, one per bucket of keys: the
memory tier uses a copy only while its bucket's counter is the one it was read at.

The counters are read and written with `pread`/`pwrite`, not through a memory map: a mapped file that
someone truncates (`: > versions.bin`, a tool rewriting it in place) kills the process with SIGBUS
at its next read, and a crash loop of workers stops the node. A read that comes up short says the
file shrank instead. The file is allocated for real (`posix_fallocate`), never sparse, as before.

A generation word after the counters, random and set by the first process to open the file, is
part of every version read: a file deleted and made again, or truncated and grown back, starts a
new generation, so no copy read under the old one can ever look current (its counters restart at
zero). `replaced()` finds such a file for a process still holding the old one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import struct
import threading
import weakref
import zlib
from collections.abc import Iterator
from pathlib import Path

_WORD = struct.Struct("<Q")


class SharedVersions:
    """Reading a counter is one `pread`; bumping one excludes other threads of this process (a lock)
    and other processes (a file lock): two bumps must never be merged into one, or a copy read
    between them would look current after the second write."""

    BUCKETS = 4096
    #: a counter of its own after the generation word, moved by every purge recorded (edge/cache/purges.py)
    PURGES = BUCKETS + 1
    SIZE = (PURGES + 1) * _WORD.size
    _GENERATION_AT = BUCKETS * _WORD.size

    def __init__(self, path: Path):
        """Raises OSError when the file cannot be created or its space allocated."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._closed = weakref.finalize(self, os.close, fd)  # once no thread holds this any more
        status = os.fstat(fd)
        if status.st_size < self.SIZE:
            os.posix_fallocate(fd, 0, self.SIZE)
        self.path, self._fd, self._identity = path, fd, (status.st_dev, status.st_ino)
        self._lock = threading.Lock()
        with self._file_locked():
            generation = self._word(self._GENERATION_AT)
            if not generation:
                generation = 1 + secrets.randbelow(2**64 - 1)
                os.pwrite(fd, _WORD.pack(generation), self._GENERATION_AT)
        self.generation = generation
        self._base = generation << 64  # a version: the generation, then the counter

    @classmethod
    def bucket(cls, key: str) -> int:
        return zlib.crc32(key.encode("utf-8", "surrogatepass")) % cls.BUCKETS

    def read(self, bucket: int) -> int | None:
        """The bucket's version (or `PURGES`'), or None when the file has shrunk under this process."""
        raw = os.pread(self._fd, 8, bucket * 8)
        return self._base + _WORD.unpack(raw)[0] if len(raw) == 8 else None

    def bump(self, bucket: int) -> None:
        with self._lock, self._file_locked():
            os.pwrite(self._fd, _WORD.pack((self._word(bucket * 8) + 1) % 2**64), bucket * 8)

    def replaced(self) -> bool:
        """Whether the file at `path` is no longer the one this process reads: deleted, made again,
        shrunk, or of another generation (blocking: a stat and a read)."""
        try:
            status = os.stat(self.path)
        except OSError:
            return True
        return ((status.st_dev, status.st_ino) != self._identity or status.st_size < self.SIZE
                or self._word(self._GENERATION_AT) != self.generation)

    def close(self) -> None:
        self._closed()

    def _word(self, offset: int) -> int:
        raw = os.pread(self._fd, 8, offset)
        return _WORD.unpack(raw)[0] if len(raw) == 8 else 0

    @contextlib.contextmanager
    def _file_locked(self) -> Iterator[None]:
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
