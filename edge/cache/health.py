"""What went wrong with the cache, for the log, the metrics and `/_edge/ready`.

A cache that fails never fails a request: reads become misses and writes are skipped, so the node
serves uncached. Each failure is counted (`edge_cache_errors_total{tier,kind}`), logged at most once
per tier and kind every `LOG_EVERY_SECONDS` (a full disk must not write a line per request), and
remembered for `RECENT_SECONDS`, during which `/_edge/ready` reports the cache as degraded.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import diskcache

from ..errors import out_of_descriptors
from ..logs import Sparse

log = logging.getLogger("edge.cache")

LOG_EVERY_SECONDS = 600.0
RECENT_SECONDS = 60.0

#: what a failing cache operation can raise; anything else is a bug and propagates, but for what diskcache
#: raises from its own code reading what a damaged database holds (`cache_failure`)
CACHE_ERRORS = (OSError, sqlite3.Error, diskcache.Timeout)
_DISKCACHE = os.path.dirname(diskcache.__file__) + os.sep

_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


#: every `kind` a cache failure is counted under: `error_kind`'s, a stored value failing its hash check
#: (`damaged`), the versions file that cannot be opened (`unavailable`) and the cache's threads held past a
#: request's wait (`stuck`: `Caches.io_or`)
ERROR_KINDS = ("full", "unwritable", "out_of_descriptors", "corrupt", "damaged", "busy", "io", "unavailable", "stuck")
#: descriptors SQLite may take to open a database: the database, its write-ahead log, its shared memory and a
#: temporary file (`_at_descriptor_limit`)
SQLITE_DESCRIPTORS = 4


def cache_failure(exc: BaseException) -> bool:
    """Whether `exc` is the cache's failure rather than a bug of the node's: one of `CACHE_ERRORS`, or any
    error raised inside diskcache's own code, which trusts the rows it reads. A damaged database gives it
    a setting whose name is not text when a thread opens its connection (a `TypeError` on `startswith`):
    that was a 500, now a `corrupt` cache error, the database rebuilt."""
    if isinstance(exc, CACHE_ERRORS):
        return True
    frames = exc.__traceback__
    while frames is not None and frames.tb_next is not None:
        frames = frames.tb_next
    return frames is not None and frames.tb_frame.f_code.co_filename.startswith(_DISKCACHE)


def error_kind(exc: BaseException) -> str:
    """`full`, `unwritable`, `out_of_descriptors`, `corrupt`, `busy` or `io`: a short, stable word for metrics."""
    if isinstance(exc, diskcache.Timeout):
        return "busy"
    if out_of_descriptors(exc):
        return "out_of_descriptors"
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOENT and exc.filename:  # a value file's folder not made? diskcache's makedirs
            return _not_made(Path(os.fsdecode(exc.filename))) or "io"  # swallows its EROFS, EACCES or ENOSPC
        return "full" if exc.errno in _FULL else "unwritable" if exc.errno in _UNWRITABLE else "io"
    message = str(exc).lower()
    if "full" in message:
        return "full"
    if "unable to open" in message:
        return "out_of_descriptors" if _at_descriptor_limit() else "unwritable"
    if "readonly" in message or "read-only" in message:
        return "unwritable"
    if "locked" in message or "busy" in message:
        return "busy"
    if "malformed" in message or "not a database" in message or not isinstance(exc, sqlite3.OperationalError):
        return "corrupt"
    return "io"


def _at_descriptor_limit() -> bool:
    """Whether this process could not open what SQLite opens for a database (it says "unable to open" of a process
    out of descriptors as of a folder it may not write: taken for `unwritable`, that sent the on-call to a healthy
    disk, where the requests were answered 503 `out_of_descriptors`)."""
    taken: list[int] = []
    try:
        for _ in range(SQLITE_DESCRIPTORS):
            taken.append(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:
        return out_of_descriptors(exc)
    finally:
        for descriptor in taken:
            os.close(descriptor)
    return False


def _not_made(path: Path) -> str | None:
    """Why a folder of `path` could not be made, by its nearest folder that exists (blocking): `unwritable` (a
    read-only filesystem, or a folder this user may not write), `full` (no space or no inode left), or None."""
    for folder in path.parents:
        try:
            filesystem = os.statvfs(folder)
        except FileNotFoundError:
            continue
        except OSError:
            return None
        if filesystem.f_flag & os.ST_RDONLY or not os.access(folder, os.W_OK):
            return "unwritable"
        # (a filesystem without an inode count, btrfs, says 0 of 0 inodes)
        return "full" if filesystem.f_bavail == 0 or (filesystem.f_files and filesystem.f_favail == 0) else None
    return None


def reason(exc: BaseException) -> str:
    """What a log line says of a cache failure: diskcache's `Timeout` has no words of its own."""
    if isinstance(exc, diskcache.Timeout) and not str(exc):
        return "the database stayed locked past the busy timeout (by another process, or a thread of this one)"
    return str(exc) or type(exc).__name__


class CacheHealth:
    """Failures of the cache as seen by this process (any thread)."""

    def __init__(self, count: Callable[[str, str], None] = lambda tier, kind: None,
                 clock: Callable[[], float] = time.monotonic):
        self._count = count
        self._clock = clock
        self._lock = threading.Lock()
        self._last_failure: dict[tuple[str, str], float] = {}
        self._lines = Sparse(LOG_EVERY_SECONDS, clock)  # per (tier, kind); used under `_lock`

    def failed(self, tier: str, kind: str, what: str) -> None:
        """Record a failure of `tier`; `what` says what failed (for the log; never a secret)."""
        now = self._clock()
        with self._lock:
            self._last_failure[tier, kind] = now
            left_out = self._lines.allow((tier, kind))
        self._count(tier, kind)
        if left_out is not None:
            log.error("cache (%s): %s [%s]; serving uncached where needed (logged once per %d s)%s",
                      tier, what, kind, LOG_EVERY_SECONDS, left_out)

    def degraded(self) -> list[str]:
        """`tier: kind` for every failure within the last `RECENT_SECONDS`."""
        now = self._clock()
        with self._lock:
            return sorted(f"{tier}: {kind}" for (tier, kind), at in self._last_failure.items()
                          if now - at < RECENT_SECONDS)
