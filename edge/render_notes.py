"""What a worker's render threads are working on, in memory its supervisor shares.

A worker that a fatal signal ends (a crash in libvips or a loader, an abort) or the OOM killer kills writes no
line of its own, and the access log line of the request that killed it is never written: the log said "exited
with status -11" and no more, and an original that crashes the renderer could not be found (soak probe). Each
render thread writes its request (`REQUEST_ID`, `REQUEST_TARGET`) in a row of an anonymous shared mapping the
supervisor made before the fork, and clears it when the call ends; the supervisor reads the rows left of a worker
that died. Only libvips' pool is noted (a miss's work; a hit never renders): a write of a few hundred bytes.
"""

from __future__ import annotations

import itertools
import mmap
import threading
from collections.abc import Callable
from typing import TypeVar

from .logs import REQUEST_ID, REQUEST_TARGET

T = TypeVar("T")

#: bytes of a row: a request's id and target, cut (a client's path may be 32 kB long)
ROW_BYTES = 512


class RenderNotes:
    """`rows` rows, one per render thread, shared with the processes forked after it was made."""

    def __init__(self, rows: int):
        self.rows = rows
        self._memory = mmap.mmap(-1, max(rows, 1) * ROW_BYTES)  # anonymous and shared: what a child writes, we read
        self._next_row = itertools.count()
        self._own = threading.local()

    def write(self, note: str) -> int | None:
        """Note what the calling thread works on; its row, or None past the rows."""
        row = getattr(self._own, "row", None)
        if row is None:
            row = self._own.row = next(self._next_row)  # (a thread's row is its own: no lock on the write)
        if row >= self.rows:
            return None
        data = note.encode("utf-8", "replace")[:ROW_BYTES - 1] + b"\0"
        self._memory[row * ROW_BYTES:row * ROW_BYTES + len(data)] = data
        return row

    def clear(self, row: int) -> None:
        self._memory[row * ROW_BYTES] = 0

    def read(self) -> list[str]:
        """The notes left (of a worker that died: what it was rendering)."""
        rows = (self._memory[row * ROW_BYTES:(row + 1) * ROW_BYTES] for row in range(self.rows))
        return [row.split(b"\0", 1)[0].decode("utf-8", "replace") for row in rows if row[0]]

    def close(self) -> None:
        self._memory.close()


#: this worker's (`keep`): None in the supervisor, and where nothing reads them (a node in a test's process)
_kept: RenderNotes | None = None


def keep(notes: RenderNotes) -> None:
    """Note this process' renders in `notes` from now on (a worker, at its start)."""
    global _kept
    _kept = notes


def noting(function: Callable[..., T]) -> Callable[..., T]:
    """`function`, noting the calling request while it runs on a pool thread (called on the loop, in the request's
    context: the pool's threads do not see it)."""
    notes = _kept
    if notes is None:
        return function
    note = f"{REQUEST_ID.get() or '-'} {REQUEST_TARGET.get() or '-'}"

    def noted(*args):
        row = notes.write(note)
        try:
            return function(*args)
        finally:
            if row is not None:
                notes.clear(row)
    return noted
