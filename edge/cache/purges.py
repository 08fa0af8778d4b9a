"""Recent purges, as every process of a node sees them: which key prefixes were purged, and when.

A purge deletes what is cached; work under way when it comes (an origin fetch, a render, a 404 being
recorded, a 304 confirming the old original) would store what it made from the purged original just
after, where it stayed until `original_ttl` (tests/test_purge_races.py). So `Caches.forget` records
each purge here, in the cache folder, as it begins and again once it has deleted everything; work
begun before a record that covers its key stores nothing (`Caches.purged_since`, checked before the
store writes and again after), remembered failures begun before one are forgotten, and an origin
learns when the path was last purged (`OriginRequest.purged_at`). (The shared tier's objects are held
to the fleet's purge journal instead, edge/purge_journal.py.) Purges and work are ordered by
`node_time` (the machine's monotonic clock), not the wall clock: a wall clock stepped back after a
purge made every later request look older than it, for hours (no single flight, nothing stored).
A shared counter (a slot of the versions file of its own) moves with every record, so a process reads
the records again only after a purge: checking costs one `pread` otherwise.
"""

from __future__ import annotations

import bisect
import json
import time
from collections import Counter
from pathlib import Path

import diskcache

from .tiers import DiskTier

#: how long a purge is remembered: longer than any work may run (the origin chains' timeouts, a
#: render, the queue; `flight.wait_bound`) and than a render that took too long is remembered
#: (`pipeline.TIMED_OUT_SECONDS`)
RECORD_SECONDS = 900.0


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # not Linux: records of an earlier boot, within RECORD_SECONDS of it, may be misordered
        return ""


#: this boot of the machine: `node_time`s written to disk compare only with those of the same boot
BOOT = _boot_id()


def node_time() -> float:
    """When, on the clock that orders purges and work on this node: `CLOCK_MONOTONIC`, the same in every
    process of the machine and never stepped (NTP only slews it), unlike the wall clock. Within `BOOT`."""
    return time.monotonic()


class PurgeTimes:
    """The latest purge of each key prefix, looked up in a few dict reads: whole paths
    (`endpoint \\0 path \\0`) at once, other prefixes once per length held."""

    def __init__(self) -> None:
        self._paths: dict[str, float] = {}
        self._prefixes: dict[str, float] = {}
        self._lengths: Counter[int] = Counter()
        #: the lengths held, shortest first (`None`: to sort again)
        self._sorted: list[int] | None = []

    def add(self, prefix: str, at: float) -> None:
        if prefix.endswith("\0") and prefix.count("\0") == 2:
            self._paths[prefix] = max(self._paths.get(prefix, 0.0), at)
            return
        if prefix not in self._prefixes:
            self._lengths[len(prefix)] += 1
            self._sorted = None
        self._prefixes[prefix] = max(self._prefixes.get(prefix, 0.0), at)

    def covers(self, key: str, after: float) -> bool:
        """Whether a purge made after `after` covers `key`."""
        return (self.last(key) or 0.0) > after

    def of(self, prefix: str) -> float | None:
        """When the latest purge of exactly `prefix` was made, or None."""
        return self._paths.get(prefix) or self._prefixes.get(prefix)

    def last(self, key: str) -> float | None:
        """When the latest purge covering `key` was made, or None."""
        endpoint, _, rest = key.partition("\0")
        path, _, _ = rest.partition("\0")
        times = [self._paths.get(f"{endpoint}\0{path}\0", 0.0),
                 *(self._prefixes.get(key[:length], 0.0) for length in self._lengths_upto(len(key)))]
        return max(times) or None

    def _lengths_upto(self, most: int) -> list[int]:
        """The prefix lengths held up to `most`: a key is looked up once per length no longer than it,
        however many longer prefixes were purged."""
        if self._sorted is None:
            self._sorted = sorted(self._lengths)
        return self._sorted[:bisect.bisect_right(self._sorted, most)]

    def forget_before(self, cutoff: float) -> None:
        self._paths = {prefix: at for prefix, at in self._paths.items() if at >= cutoff}
        for prefix in [prefix for prefix, at in self._prefixes.items() if at < cutoff]:
            del self._prefixes[prefix]
            self._lengths[len(prefix)] -= 1
            if not self._lengths[len(prefix)]:
                del self._lengths[len(prefix)]
                self._sorted = None


class RecentPurges:
    """The purge records: by `node_time` (this boot's; what work is ordered against) and by wall clock
    (what an origin is told, `OriginRequest.purged_at`)."""

    def __init__(self) -> None:
        self.by_node_time = PurgeTimes()
        self.by_wall_clock = PurgeTimes()


class PurgeTier(DiskTier):
    """The records, one per prefix (its latest time), each kept `RECORD_SECONDS` by `node_time`. Not by
    diskcache's expiry: that is the wall clock's, and a clock stepped forward past it had the next purge's
    write delete the record of one made seconds before, while the work it raced was still under way.
    Reading the records deletes those past their time instead (`recent`)."""

    def record(self, prefix: str, made_at: float | None = None) -> bool:
        """(blocking) Whether it was recorded (a failure is counted and logged). `made_at`: when the purge was
        made (wall clock), if before now: one of the fleet's journal, applied here later."""
        def write(handles: tuple) -> bool:
            writer = handles[0]
            at = time.time() if made_at is None else max(made_at, _made_at(writer.get(prefix, tag=True)[1]))
            tag = json.dumps({"at": at, "node_time": node_time(), "boot": BOOT})
            writer.set(prefix, b"", tag=tag)
            self._evict_to_budget(writer)  # a flood of long prefixes stays within the budget (the oldest go)
            return True
        return self._attempt("record a purge", write, False)

    def recent(self) -> RecentPurges:
        """(blocking) The records of this boot made within `RECORD_SECONDS`; none when they cannot be read
        (counted). The others are deleted: an earlier boot's came before any work of this one."""
        def read(handles: tuple) -> list[tuple[str, str]]:
            # one query for them all (diskcache reads a key at a time); its `tag` column holds our JSON
            return handles[1]._sql("SELECT key, tag FROM Cache WHERE raw = 1").fetchall()
        recent, oldest, spent = RecentPurges(), node_time() - RECORD_SECONDS, []
        for prefix, tag in self._attempt("read purges", read, []):
            try:
                if not isinstance(prefix, str):  # a damaged row: its prefix would fail every path compared to it
                    raise TypeError(prefix)
                record = json.loads(tag)
                made, at = float(record["node_time"]), float(record["at"])
            except (TypeError, ValueError, KeyError):  # not a record of ours, or of a release before node_time
                spent.append((prefix, tag))
                continue
            if record.get("boot") == BOOT and made >= oldest:
                recent.by_node_time.add(prefix, made)
                recent.by_wall_clock.add(prefix, at)
            else:
                spent.append((prefix, tag))
        if spent:
            self._attempt("delete spent purge records", lambda handles: _delete_unchanged(handles[0], spent), None)
        return recent


def _made_at(tag: str | None) -> float:
    """When the purge a record's tag names was made (0 for none, or not a record of ours): a journal's purge
    applied late must not make a later one of the same prefix look older."""
    try:
        return float(json.loads(tag)["at"])
    except (TypeError, ValueError, KeyError):
        return 0.0


def _delete_unchanged(writer: diskcache.Cache, records: list[tuple[str, str]]) -> None:
    """Delete these (key, tag) rows where the tag is still the one read: a purge of the same prefix recorded
    meanwhile (another process) is kept. Raw rows of empty values: diskcache's triggers keep its counts."""
    with writer.transact():
        for key, tag in records:
            writer._sql("DELETE FROM Cache WHERE key = ? AND raw = 1 AND tag IS ?", (key, tag))
