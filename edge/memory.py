"""Giving memory back after bursts (glibc's allocator, which libvips and Python both use).

libvips decodes in several threads; glibc gives each thread that contends an arena of its own (up to
8 per core), and freed memory stays in those arenas. After a burst of large originals a worker keeps
hundreds of MB it no longer uses. Two knobs, measured in benchmarks/README.md ("Memory", "Soak"):

- `[server] malloc_arenas`: caps the arenas (glibc's M_ARENA_MAX), set at worker start;
- `[server] memory_trim`: give freed memory back. At worker start, glibc's mmap and trim thresholds
  are fixed (`GIVE_BACK_THRESHOLDS`): by default glibc raises them each time a large block is freed
  (up to 32 and 64 MB), after which a heap's free top of up to 64 MB is kept: a worker's resident
  memory crept up by about 0.1 MB/s under mixed traffic. And after a burst (resident memory grew,
  and no request is in progress), the worker calls `malloc_trim(0)`, which returns the free pages of
  every arena; so do the supervisor before each fork and a worker once it has started (a page
  that is free there would be copied by the worker's first allocations into it).

Elsewhere than glibc (musl, or jemalloc preloaded) both knobs do nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
from collections.abc import Callable

log = logging.getLogger("edge.memory")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD), kept fixed: blocks from 8 MiB up (originals of 24 MP and
#: more) get pages of their own, unmapped when freed; a heap's free top beyond 1 MiB is returned at
#: once (glibc starts at 128 KiB: a little slack spares small frees a shrink and regrow of the heap).
#: Fixed at glibc's starting 128 KiB, every original and libvips buffer was a fresh mapping whose
#: zeroed pages faulted in: 4 ms of system time a 12 MP miss, 12-15 % of miss throughput, for the same
#: memory after a soak (benchmarks/README.md, "Misses outside libvips, third pass").
GIVE_BACK_THRESHOLDS = (8 * 2**20, 2**20)
#: growth of resident memory since the last trim that makes the next idle moment trim
TRIM_GROWTH_BYTES = 8 * 2**20
TRIM_CHECK_SECONDS = 1.0
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018 - both must exist
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc()


def configure_allocator(arenas: int, give_back: bool) -> None:
    """Cap glibc's malloc arenas for this process (0: glibc's default, 8 per core); `give_back`: fix
    the thresholds (`GIVE_BACK_THRESHOLDS`). Call it before the threads that allocate start."""
    if _LIBC is None:
        return
    settings = [(M_ARENA_MAX, arenas)] if arenas else []
    if give_back:
        settings += zip((M_MMAP_THRESHOLD, M_TRIM_THRESHOLD), GIVE_BACK_THRESHOLDS)
    for parameter, value in settings:
        if not _LIBC.mallopt(parameter, value):
            log.warning("mallopt(%d, %d) failed", parameter, value)


def resident_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE


def trim() -> None:
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


async def trim_after_bursts(idle: Callable[[], bool]) -> None:
    """Forever: once a second, if resident memory grew by TRIM_GROWTH_BYTES since the last trim and
    `idle()` holds, collect the cycles the burst left and give free memory back (in a thread: a trim of a
    large heap takes milliseconds). Requests cut short (clients gone while their layers loaded) leave cycles
    through their errors' tracebacks that hold their originals: the cyclic collector runs seldom in a worker
    (`gc.freeze`), and 250 MB stayed resident in an idle worker after six waves of eight of them."""
    if _LIBC is None:
        return
    baseline = resident_bytes()
    while True:
        await asyncio.sleep(TRIM_CHECK_SECONDS)
        if resident_bytes() > baseline + TRIM_GROWTH_BYTES and idle():
            await asyncio.to_thread(_collect_and_trim)
            baseline = resident_bytes()


def _collect_and_trim() -> None:
    gc.collect()
    trim()
