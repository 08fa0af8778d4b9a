"""The purge journal of a fleet with a shared tier: a purge reaches the nodes that missed it.

A purge fans out to the peers it can reach; a node that is down, restarting or cut off misses it and
keeps what it cached, then makes more outputs from the original it kept and writes them to the shared
tier, where every node finds them. A shared-tier write started just before a purge can also land
just after it. So every purge that empties the shared tier is also written to it, as one empty object
per purge under `<folder>_purges/`, named by when it was made and what it covers:

    _purges/<nanoseconds since the epoch, 20 digits>-<8 random hex digits>/<the key prefix, base64url>

(listing the folder is enough to read it; no endpoint id can start with `_`, so no output is there).
Every worker of every node lists the journal when it starts and every `[shared_cache]
purge_journal_every` (10 s):

- the purges it had not applied yet are applied to its node's tiers (`Node.apply_purges`; the last
  one applied is kept in the cache folder, so a restarted node applies what it missed while down);
- a shared-tier object covered by a purge made after its original was last confirmed
  (`SourceInfo.checked_at`) is a miss (`covers`): late writes and the outputs of a node that missed
  the purge are never served.

Only the last `original_ttl` of the journal matters: an output confirmed longer ago is not fresh, and
is checked with the origin before it is served again. The purge that writes an entry deletes the
entries older than that by the store's clock (a page at a time). A prefix too long for an object key is shortened, which
purges more, never less. Times come from the nodes' clocks: keep them synchronised (NTP); entries
are reread `LOOKBACK_SECONDS` back, so one written by a node whose clock is behind is still found.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .origin import OriginFailure

log = logging.getLogger("edge.purge_journal")

FOLDER = "_purges/"
#: how far back each listing starts before the newest entry seen: what a writer's clock may lag
LOOKBACK_SECONDS = 60.0
#: entries one listing reads at most (1000 a page); the oldest of a longer journal are read next time
PAGES = 20
#: entries a worker holds (the purges of the last `original_ttl`); beyond it the oldest are forgotten
MAX_ENTRIES = 20_000
#: S3 limits a key to 1024 bytes of UTF-8
MAX_KEY_BYTES = 1024
#: the applied mark's file in the cache folder, and the entries it names at most
APPLIED_FILE = "purges-applied"
MAX_MARKED = 1000


def _entry_name(at: float, prefix: str) -> str:
    return f"{int(at * 1e9):020d}-{secrets.token_hex(4)}/" + base64.urlsafe_b64encode(prefix.encode()).decode().rstrip("=")


def _time_name(at: float) -> str:
    """A name that sorts before every entry made at `at` or later."""
    return f"{max(int(at * 1e9), 0):020d}"


def _parse(name: str) -> tuple[float, str] | None:
    """(when, prefix) of an entry's name, or None when it is not one this module writes."""
    stamp, slash, encoded = name.partition("/")
    nanoseconds, dash, tag = stamp.partition("-")
    if not (slash and dash and len(nanoseconds) == 20 and nanoseconds.isdigit() and len(tag) == 8):
        return None
    try:
        prefix = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, ValueError):
        return None
    return int(nanoseconds) / 1e9, prefix


class PurgeJournal:
    """The journal in the shared tier's bucket (`store`: an `s3` origin), as one worker reads it.
    `applied`: the file that names the newest entries applied to the node's tiers."""

    def __init__(self, store: Any, retention: float, applied: Path, clock: Callable[[], float] = time.time):
        self._store = store
        self._retention = retention
        self._applied_file = applied
        self._clock = clock
        #: entry name → (when, prefix), the purges of the last `retention` seconds
        self._entries: dict[str, tuple[float, str]] = {}
        #: the latest purge of each whole path (`endpoint \\0 path \\0`), and of each other prefix
        self._paths: dict[str, float] = {}
        self._prefixes: dict[str, float] = {}
        #: whether the first listing (which reads the applied mark) was made
        self._started = False

    @property
    def _folder(self) -> str:
        return self._store.key_for(FOLDER)

    async def record(self, prefix: str) -> None:
        """Write a purge of `prefix`, made now (raises `OriginFailure` when the store fails); delete a
        page of the entries past the retention."""
        now = self._clock()
        while True:
            key = self._folder + _entry_name(now, prefix)
            if len(key.encode()) <= MAX_KEY_BYTES:
                break
            if not prefix:
                break  # the folder alone is too long: the store refuses the key, and the purge says so
            prefix = prefix[:len(prefix) * 3 // 4]  # shorter: covers more
        await self._store.put_object(key, b"", "application/octet-stream")
        try:  # by the store's clock, which is the same for all: a node whose clock is ahead deletes nothing early
            (_, written), = await self._store.list_objects(key)
            await self._store.delete_keys([old for old, at in await self._store.list_objects(self._folder)
                                           if at < written - self._retention])
        except OriginFailure as failure:  # the purge is recorded: the next one deletes them
            log.warning("the purge journal's expired entries were not deleted: %s", failure)

    async def read(self) -> list[str]:
        """List the journal; the prefixes of the entries this worker had not read before, oldest first,
        for the caller to purge from the node's tiers (then it calls `applied`); on the first read,
        less those the cache folder's applied mark names or predates. Raises `OriginFailure`."""
        now = self._clock()
        applied_before = set() if self._started else _read_applied(self._applied_file)
        # of the entries this worker had not read: those the mark names were applied, and those older
        # than its oldest too (before the lookback: long applied); a worker's later readings apply all
        applied_until = min((_parse(name)[0] for name in applied_before), default=0.0)
        newest = max((at for at, _ in self._entries.values()), default=0.0)
        since = max(newest - LOOKBACK_SECONDS, now - self._retention)
        listed = await self._store.list_objects(self._folder, self._folder + _time_name(since), pages=PAGES)
        self._started = True
        fresh = []
        for key, _ in listed:
            name = key[len(self._folder):]
            if name in self._entries or (parsed := _parse(name)) is None:
                continue
            at, prefix = parsed
            self._hold(name, min(at, now), prefix)  # an entry from the future purges from now on
            if name not in applied_before and at >= applied_until:
                fresh.append(prefix)
        self._forget_before(now - self._retention)
        return fresh

    def applied(self) -> None:
        """The prefixes `read` returned are purged from the node's tiers: mark it in the cache folder
        (blocking), with the names of the entries of the lookback, which a restart reads again."""
        newest = max((at for at, _ in self._entries.values()), default=None)
        if newest is not None:
            recent = sorted(name for name, (at, _) in self._entries.items() if at >= newest - LOOKBACK_SECONDS)
            _write_applied(self._applied_file, recent[-MAX_MARKED:])

    def covers(self, cache_key: str, checked_at: float) -> bool:
        """Whether a purge made after `checked_at` covers `cache_key`."""
        if not self._entries:
            return False
        endpoint, _, rest = cache_key.partition("\0")
        path, _, _ = rest.partition("\0")
        if self._paths.get(f"{endpoint}\0{path}\0", 0.0) > checked_at:
            return True
        return any(at > checked_at and cache_key.startswith(prefix) for prefix, at in self._prefixes.items())

    def _hold(self, name: str, at: float, prefix: str) -> None:
        self._entries[name] = (at, prefix)
        index = self._paths if prefix.endswith("\0") and prefix.count("\0") == 2 else self._prefixes
        index[prefix] = max(index.get(prefix, 0.0), at)
        if len(self._entries) > MAX_ENTRIES:  # listed oldest first: the first held is the oldest
            del self._entries[next(iter(self._entries))]

    def _forget_before(self, cutoff: float) -> None:
        for name, (at, _) in list(self._entries.items()):
            if at < cutoff:
                del self._entries[name]
        for index in (self._paths, self._prefixes):
            for prefix, at in list(index.items()):
                if at < cutoff:
                    del index[prefix]


def _read_applied(path: Path) -> set[str]:
    """The entries the applied mark names: the newest purges applied to the node's tiers."""
    try:
        lines = path.read_text().split()
    except FileNotFoundError:
        return set()
    except OSError as error:  # the cache folder's trouble is reported by the tiers: apply all again
        log.warning("cannot read %s (%s): the purges of the journal are applied again", path, error)
        return set()
    return {name for name in lines if _parse(name) is not None}


def _write_applied(path: Path, names: list[str]) -> None:
    try:
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text("\n".join(names) + "\n")
        os.replace(temporary, path)
    except OSError as error:
        log.warning("cannot write %s (%s): the purges of the journal will be applied again", path, error)
