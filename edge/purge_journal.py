"""The purge journal of a fleet with a shared tier: a purge reaches the nodes that missed it.

A purge fans out to the peers it can reach; a node that is down, restarting or cut off misses it and
keeps what it cached, then makes more outputs from the original it kept and writes them to the shared
tier, where every node finds them. A shared-tier write started just before a purge can also land
just after it. So every purge that empties the shared tier is also written to it, as one empty object
per purge under `<folder>_purges/`, named by when it was made and what it covers:

    _purges/<nanoseconds since the epoch, 20 digits>-<8 hex digits: random, or signed>/<the key prefix, base64url>

(listing the folder is enough to read it; no endpoint id can start with `_`, so no output is there).
Every worker of every node lists the journal when it starts (before it serves) and every
`[shared_cache] purge_journal_every` (10 s), each time on from the last key it listed:

- the purges it had not applied yet are applied to its node's tiers (`Node.apply_purges`); one whose
  application failed (the cache busy) is tried again at the next reading. How far they are applied is
  marked in the cache folder (`APPLIED_FILE`: when the store wrote the newest applied, and the entries of
  the lookback before it), so a restarted node applies what it missed while down, and nothing twice. The
  mark is by the store's clock, one for the whole fleet: marked by the node's own, a clock once ahead (a
  machine booted before NTP set it) had left a mark still to come, and every other node's purge skipped
  until then, across restarts;
- a shared-tier object covered by a purge made after its original was last confirmed
  (`SourceInfo.checked_at`) is a miss (`covers`): late writes and the outputs of a node that missed
  the purge are never served.

Only the last `original_ttl` of the journal matters: an output confirmed longer ago is not fresh, and
is checked with the origin before it is served again. The purge that writes an entry deletes the
entries older than that by the store's clock (a page at a time). A prefix too long for an object key
is shortened, which purges more, never less. Times in names come from the nodes' clocks: keep them
synchronised (NTP); they may disagree by up to `CLOCK_SKEW_SECONDS` (5 minutes). A reading that
follows a recent entry also lists the last `LOOKBACK_SECONDS` (as long) again (up to `PAGES` pages),
so an entry from a node whose clock lags, or whose write landed late, is still found; a node whose clock lags
the store's by more writes its entries again by the store's time (`SharedTier.record_purge`). (`covers`
compares the times of two nodes' clocks as they are: an object confirmed less than the lag before a
lagging node's purge is not held back by it; slack there would keep every object confirmed in the
minutes after any purge out of the shared tier until its original is revalidated.) Anyone who can
write to the bucket can write here: keys that are not entries are skipped, and never stop a reading. With the
shared tier's `signing_key`, an entry's tag is signed (`_tag`), and one that is not is ignored.
"""

from __future__ import annotations

import base64
import hmac
import logging
import math
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cache.entries import CLOCK_SKEW_SECONDS
from .cache.purges import PurgeTimes
from .logs import Sparse
from .origin import OriginFailure

log = logging.getLogger("edge.purge_journal")

FOLDER = "_purges/"
#: an entry written by a node whose clock lags the reader's by up to this much is still read: each
#: reading lists `LOOKBACK_PAGES` pages of the entries this recent, on from where the last one stopped
LOOKBACK_SECONDS = CLOCK_SKEW_SECONDS
LOOKBACK_PAGES = 2
#: an entry made further ahead of the reader's clock is ignored: a node's clock that wrong is broken
FUTURE_SECONDS = CLOCK_SKEW_SECONDS
#: pages of 1000 entries one reading lists at most, at a worker's start and then; a longer journal
#: is read on at the next reading, from where this one stopped
START_PAGES = 100
PAGES = 20
#: entries a worker holds (the purges of the last `original_ttl`); beyond it the oldest tenth are forgotten at once
MAX_ENTRIES = 100_000
#: the applied mark's file in the cache folder, and the entries it names at most
APPLIED_FILE = "purges-applied"
MAX_MARKED = 1000
_TAG = re.compile(r"[0-9a-f]{8}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
#: entries not signed with the fleet's key are said once a minute at most
_UNSIGNED_LINES = Sparse(60.0)


def _entry_name(at: float, prefix: str, signing_key: bytes | None = None) -> str:
    """The name of an entry: its tag random, or signed with `signing_key` (`_tag`)."""
    stamp = f"{int(at * 1e9):020d}"
    encoded = base64.urlsafe_b64encode(prefix.encode()).decode().rstrip("=")
    return f"{stamp}-{secrets.token_hex(4) if signing_key is None else _tag(signing_key, stamp, encoded)}/{encoded}"


def _tag(signing_key: bytes, stamp: str, encoded: str) -> str:
    """The first 32 bits of the HMAC-SHA256 of an entry's time and prefix: enough against a bucket writer, who has
    to write billions of entries to land one (each read by every node costs microseconds), in the 8 hex digits
    every release reads as a tag."""
    return hmac.new(signing_key, f"{stamp}/{encoded}".encode(), "sha256").hexdigest()[:8]


def _signed(name: str, signing_keys: tuple[bytes, ...]) -> bool:
    """Whether an entry's name (one `_parse` reads) carries the tag of one of `signing_keys`."""
    stamp, _, encoded = name.partition("/")
    nanoseconds, _, tag = stamp.partition("-")
    return any(hmac.compare_digest(tag, _tag(key, nanoseconds, encoded)) for key in signing_keys)


def _time_name(at: float) -> str:
    """A name that sorts before every entry made at `at` or later."""
    return f"{max(int(at * 1e9), 0):020d}"


def _parse(name: str) -> tuple[float, str] | None:
    """(when, prefix) of an entry's name, or None when it is not one this module writes (anyone who can
    write to the bucket can put anything there: nothing of it may raise, or purge what no purge named)."""
    stamp, slash, encoded = name.partition("/")
    nanoseconds, dash, tag = stamp.partition("-")
    if not (slash and dash and len(nanoseconds) == 20 and nanoseconds.isascii() and nanoseconds.isdigit()
            and _TAG.fullmatch(tag) and _BASE64URL.fullmatch(encoded)):
        return None
    try:
        prefix = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        return None
    if "\0" not in prefix:  # every cache key prefix names its endpoint and ends it with \0
        return None
    return int(nanoseconds) / 1e9, prefix


class PurgeJournal:
    """The journal in the shared tier's bucket (`store`: an `s3` origin), as one worker reads it.
    `applied`: the file that marks how far the node's tiers have applied it."""

    def __init__(self, store: Any, retention: float, applied: Path, clock: Callable[[], float] = time.time,
                 signing_keys: tuple[bytes, ...] = ()):
        """`signing_keys`: the shared tier's (`SharedTier`): entries are written signed with the first, and only
        those signed with one are read."""
        self._store = store
        self._signing_keys = signing_keys
        #: entries ignored for not being signed with one of `signing_keys`, so far (counted by `SharedTier`)
        self.unsigned = 0
        self._retention = retention
        self._applied_file = applied
        self._clock = clock
        #: entry name → (when it was made, when the store wrote it, by the store's clock): the purges of the last
        #: `retention` seconds
        self._entries: dict[str, tuple[float, float]] = {}
        #: the latest purge of each prefix
        self._times = PurgeTimes()
        #: the last key listed: the next reading goes on from there (None before the first reading)
        self._cursor: str | None = None
        #: entries from too far ahead, left out (`FUTURE_SECONDS`)
        self._ignored: set[str] = set()
        #: (name, prefix) of the entries read and not applied to the node's tiers yet, oldest first
        self._pending: list[tuple[str, str]] = []
        #: the applied mark: entries the store wrote before `_applied_at` less the lookback, and those named,
        #: are applied; read from the cache folder at the first reading
        self._applied_at = 0.0
        self._applied_names: set[str] = set()
        #: whether a reading has listed all there was (then a reading lists fewer pages, and the lookback)
        self._started = False
        #: the last key the lookback listed, when it stopped before the cursor: the next one goes on from there
        self._lookback: str | None = None

    @property
    def _folder(self) -> str:
        return self._store.key_for(FOLDER)

    async def record(self, prefix: str, late_by: float = 0.0) -> str:
        """Write a purge of `prefix`, made now (by this node's clock, plus `late_by`: how far it lags the
        store's, `expire`); its key. Raises `OriginFailure` when the store fails."""
        now = self._clock() + late_by
        while True:
            key = self._folder + _entry_name(now, prefix, self._signing_keys[0] if self._signing_keys else None)
            if len(key.encode()) <= self._store.max_key_bytes:
                break
            if len(prefix) <= 1:
                break  # the folder alone is too long: the store refuses the key, and the purge says so
            prefix = prefix[:len(prefix) * 3 // 4]  # shorter: covers more
        await self._store.put_object(key, b"", "application/octet-stream")
        return key

    async def expire(self, key: str) -> float:
        """Delete a page of the entries older than the retention, by the store's clock (the time it
        wrote `key`): a node whose clock is ahead deletes nothing early. Failures are logged: the next
        purge deletes them. How far this node's clock lags the store's: the store's time of `key` less the
        time it is named by (0 when unknown)."""
        try:
            written = [at for listed, at in await self._store.list_objects(key) if listed == key]
            if written:
                await self._store.delete_keys([old for old, at in await self._store.list_objects(self._folder)
                                               if at < written[0] - self._retention])
                made = _parse(key[len(self._folder):])
                return written[0] - made[0] if made else 0.0
        except OriginFailure as failure:
            log.warning("the purge journal's expired entries were not deleted: %s", failure)
        return 0.0

    async def read(self) -> list[str]:
        """List what is new in the journal; the prefixes of every entry read and not applied yet,
        oldest first, for the caller to purge from the node's tiers (then it calls `applied`). Each
        page read is held at once: a reading cut short (a timeout) is not read again. Raises
        `OriginFailure`."""
        now = self._clock()
        if self._cursor is None:  # the first reading: from the start of the retention
            self._applied_at, self._applied_names = _read_applied(self._applied_file)
            self._cursor = self._folder + _time_name(now - self._retention)
            if self._applied_at > now + FUTURE_SECONDS:
                # marked by this node's clock while it ran ahead (a mark written before marks were the store's):
                # every purge of the retention is applied again, rather than the others' skipped until then
                log.warning("the purge journal's applied mark is %.0f s ahead of this node's clock: the purges of "
                            "the journal are applied again", self._applied_at - now)
                self._applied_at = 0.0
        elif self._cursor > self._folder + _time_name(now + LOOKBACK_SECONDS):
            # this node's clock went back further than the lookback reaches (it had been ahead): the entries
            # the others made since sort before where it had read to (they are applied: the store wrote them
            # after the mark)
            log.warning("this node's clock went back by more than %.0f s: the purge journal is read again",
                        LOOKBACK_SECONDS)
            self._cursor = self._folder + _time_name(now - self._retention)
        horizon = self._folder + _time_name(now)
        for _ in range(PAGES if self._started else START_PAGES):
            listed = await self._store.list_objects(self._folder, self._cursor, pages=1)
            for key, written in listed:
                self._take(key, now, written)
            if listed:  # anything listed moves it on, entries or not; never past now: the entries made
                self._cursor = min(listed[-1][0], horizon)  # from now on sort before those from the future
            if len(listed) < 1000 or self._cursor == horizon:
                break
        late = self._folder + _time_name(now - LOOKBACK_SECONDS)
        if self._started and self._cursor > late:  # recent entries: one may be late, from a lagging clock
            # all of them, a few pages a reading: one page had never reached an entry that landed late behind a
            # burst of over 1000 purges, and every page at each reading (20 calls) timed readings out, for the
            # 5 minutes, on a store answering in 1 s
            listed = await self._store.list_objects(self._folder, max(late, self._lookback or late),
                                                    pages=LOOKBACK_PAGES)
            for key, written in listed:
                self._take(key, now, written)
            stopped = len(listed) == LOOKBACK_PAGES * 1000 and listed[-1][0] < self._cursor
            self._lookback = listed[-1][0] if stopped else None
        self._started = True
        self._forget_before(now - self._retention)
        return [prefix for _, prefix in self._pending]

    def applied(self, count: int) -> None:
        """The first `count` prefixes `read` returned are purged from the node's tiers: mark them, in
        memory and in the cache folder (blocking)."""
        done, self._pending = self._pending[:count], self._pending[count:]
        if not done:
            return
        self._applied_at = max(self._applied_at, *(self._written(name) for name, _ in done))
        waiting = {name for name, _ in self._pending}
        since = self._applied_at - LOOKBACK_SECONDS
        self._applied_names = {name for name in self._applied_names | {name for name, _ in done}
                               if name not in waiting and self._written(name) >= since}
        _write_applied(self._applied_file, self._applied_at, sorted(self._applied_names)[-MAX_MARKED:])

    def made_at(self, prefix: str) -> float | None:
        """When the latest purge of `prefix` the journal holds was made (by its clock, at most the reader's)."""
        return self._times.of(prefix)

    def covers(self, cache_key: str, checked_at: float) -> bool:
        """Whether a purge made after `checked_at` covers `cache_key`."""
        return self._times.covers(cache_key, checked_at)

    def _take(self, key: str, now: float, written: float) -> None:
        name = key[len(self._folder):]
        if name in self._entries or name in self._ignored or (parsed := _parse(name)) is None:
            return
        at, prefix = parsed
        if self._signing_keys and not _signed(name, self._signing_keys):
            # a bucket writer's (each purge applied costs every worker of the fleet milliseconds), or a node's
            # without the key: said once a minute
            if (left_out := _UNSIGNED_LINES.allow()) is not None:
                log.warning("a purge journal entry not signed with the fleet's signing_key is ignored%s: %s",
                            left_out, name)
            self._ignore(name)
            self.unsigned += 1
            return
        if at > now + FUTURE_SECONDS:  # a clock that far ahead is wrong (or the entry a forgery)
            self._ignore(name)  # said once: every reading lists it again
            log.warning("a purge journal entry from %.0f s ahead of this node's clock is ignored: %s", at - now, name)
            return
        at = min(at, now)  # one from a clock a little ahead purges from now on
        self._entries[name] = (at, written)
        self._times.add(prefix, at)
        if name not in self._applied_names and written >= self._applied_at - LOOKBACK_SECONDS:
            self._pending.append((name, prefix))
        if len(self._entries) > MAX_ENTRIES:
            # a pass over them all: one per entry beyond it had cost 24 ms each, and forgot none (a time plus 1e-9
            # is the same float)
            times = sorted(at for at, _ in self._entries.values())
            self._forget_before(math.nextafter(times[-MAX_ENTRIES * 9 // 10 - 1], math.inf))

    def _ignore(self, name: str) -> None:
        if len(self._ignored) >= MAX_ENTRIES:
            self._ignored.clear()
        self._ignored.add(name)

    def _written(self, name: str) -> float:
        """When the store wrote entry `name` (0 for one no longer held)."""
        return self._entries.get(name, (0.0, 0.0))[1]

    def _forget_before(self, cutoff: float) -> None:
        self._entries = {name: times for name, times in self._entries.items() if times[0] >= cutoff}
        self._times.forget_before(cutoff)


def _read_applied(path: Path) -> tuple[float, set[str]]:
    """The applied mark: when the store wrote the newest purge applied to the node's tiers, and the entries
    of the lookback before it that were applied; (0, none) when there is none, or it cannot be read."""
    try:
        first, *names = path.read_text().split()
    except FileNotFoundError:
        return 0.0, set()
    except (OSError, ValueError) as error:  # unreadable, not UTF-8, empty: apply them all again
        log.warning("cannot read %s (%s): the purges of the journal are applied again", path, error)
        return 0.0, set()
    if not (len(first) == 20 and first.isascii() and first.isdigit()):
        return 0.0, set()
    return int(first) / 1e9, {name for name in names if _parse(name) is not None}


def _write_applied(path: Path, at: float, names: list[str]) -> None:
    try:
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text("\n".join([_time_name(at), *names]) + "\n")
        os.replace(temporary, path)
    except OSError as error:
        log.warning("cannot write %s (%s): the purges of the journal will be applied again", path, error)
