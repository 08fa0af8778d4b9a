"""The shared second tier (`[shared_cache]`): every output a node renders is also written to an
S3-compatible bucket, and a node that misses locally reads it from there before asking any origin.
A node that inherits a lost node's URLs, joins, or restarts with an empty disk serves them without
fetching or rendering again (docs/fleet.md).

- **Keys** start with the endpoint and the original's path, so a purge finds them by prefix (a file's
  own directly under it: `delete_prefix`):
  `<folder><endpoint>/<path of the original>/<hash of the rest of the cache key>` (the default
  endpoint is `_default`, which no endpoint id can be). A path that S3 or an HTTP library could
  rewrite (`.`/`..`/empty segments) or that makes the key too long is simply not shared.
- **Objects** carry what a local entry carries: a one-line JSON header (content type, ETag, the
  original's version and validators, and the object's own key) before the body. A read checks the body
  against its ETag, the key against the one asked for (an object copied or moved to another key is not that
  key's image), the content type against the image types the node makes, and takes no freshness from the
  future: a damaged object, or one copied from another key, is a miss, never a wrong image. Whoever can write
  the bucket could still write an object of their own making for any key; with `signing_key`, the fleet's
  objects carry an HMAC of their header (which holds the key and the body's hash), and any other is a miss.
- **Never a client error, never on the critical path.** Reads are bounded by `timeout`, and after
  `SKIP_AFTER_FAILURES` failed in a row a worker skips them for `SKIP_SECONDS` (a hung store had added
  its whole `timeout` to every miss of the fleet); writes run after the response in the background, at
  most `max_writes` at a time and a bounded backlog beyond which they are dropped. Every failure is
  counted (`edge_shared_cache_failures_total`) and skipped, also what the store's client raises
  unclassified (its bug: logged with the traceback).
- One S3 client per process: the tier wraps an `s3` origin (`plugins/s3.py`), which already has the
  client, path-style addressing for S3-compatible stores and the classification of S3's errors.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import time
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, replace
from hashlib import sha256
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .cache import MAX_ENTRY_SHARE, CachedOutput, SourceInfo, hashes_to, header_value
from .cache.entries import CLOCK_SKEW_SECONDS
from .errors import FetchMemoryExhausted, SharedCacheFailure
from .fetching import fetch_budget
from .logs import Sparse
from .origin import OriginFailure, OriginNotFound, SourceTooLarge
from .purge_journal import APPLIED_FILE, LOOKBACK_SECONDS, PurgeJournal
from .transform.formats import MIME_TYPES

if TYPE_CHECKING:  # prometheus-client is imported only once the CLI has chosen its metrics mode
    from .config import Config
    from .metrics import Metrics
    from .settings import Secret

T = TypeVar("T")

#: a purge's deletion of a prefix may take this many times `[shared_cache] timeout` (many calls, each of many
#: keys); the store's own client is given as long for each call (`config`), every operation bounded here
PURGE_TIMEOUTS = 10

log = logging.getLogger("edge.shared_cache")

#: the longest a reading of the purge journal takes (5 × `timeout` below it): a starting worker reads it before it
#: serves, and a store that hangs had kept a node with a 10 s `timeout` from serving for 50 s (past a balancer's
#: checks, near a reload's 60 s); what a reading cut short did not list, the next one reads
JOURNAL_READ_SECONDS = 15.0
#: the first line of every object this tier writes (the format's version)
MAGIC = b"edge-output/2\n"
#: the first line of the objects earlier nodes wrote (no key in the header): a plain miss, made again
OLD_MAGIC = b"edge-output/1\n"
#: the first line of a signed object (`signing_key`), then the HMAC-SHA256 of its header, in hex, on a line
SIGNED_MAGIC = b"edge-output/2s\n"
MAC_LINE_BYTES = 65  # 64 hex digits and the newline
#: the only content types an object may claim (every output is one)
IMAGE_TYPES = frozenset(MIME_TYPES.values())
#: background writes waiting for a slot, per slot, beyond which new ones are dropped
BACKLOG_PER_WRITE = 16
#: bytes of outputs the background writes hold (written or waiting), beyond which new ones are dropped (but the
#: first: an output of any size the tier takes goes out alone): counted alone, a hung store backing up 128 large
#: outputs held them all, up to an eighth of the output tier each
BACKLOG_BYTES = 64 * 2**20
#: a worker's purge calls in flight at once (journal entries, prefixes deleted), of its client's 64 connections:
#: five Cloudinary-style purges at once had 75 calls in flight, and the tier's reads queued behind them
PURGE_CALLS = 16
DEFAULT_ENDPOINT = "_default"
#: a tier that is down fails every call: say so in the log at most this often per operation
LOG_EVERY_SECONDS = 60.0
#: reads failed in a row (the store down, hung or refusing) after which a worker skips its reads (a miss at
#: once, counted `skipped`) for `SKIP_SECONDS`; then one read tries it again, and a success ends the skipping
SKIP_AFTER_FAILURES = 5
SKIP_SECONDS = 10.0
#: kinds of failure that say nothing of the store's health (the object's, or this worker's own budget)
_NOT_THE_STORES = frozenset({"damaged", "busy", "too_large"})


@dataclass(frozen=True)
class SharedCacheSettings:
    #: an `s3` origin (`plugins.s3.S3Origin`) over the bucket: the same keys as an `s3` origin
    store: Any
    #: seconds a read, a write or a purge may take before it is skipped
    timeout: float = 2.0
    #: background writes at once
    max_writes: int = 8
    #: seconds between two readings of the purge journal by each worker (`edge/purge_journal.py`)
    purge_journal_every: float = 10.0
    #: the fleet's key: objects written are signed with it, and only those signed with it are read
    signing_key: Secret | None = None
    #: keys whose objects are read too (a rotation's other key), written again signed with `signing_key`
    previous_signing_keys: tuple[Secret, ...] = ()

    def describe(self) -> dict[str, Any]:
        """For `edge check-config`: the bucket's keys (secrets masked), the timeout, the writes."""
        store = {k: v for k, v in self.store.describe().items() if k not in ("name", "type")}
        return {**store, "timeout": self.timeout, "max_writes": self.max_writes,
                "purge_journal_every": self.purge_journal_every,
                "signing_key": None if self.signing_key is None else str(self.signing_key),
                "previous_signing_keys": [str(key) for key in self.previous_signing_keys]}


def encode(output: CachedOutput, key: str, signing_key: bytes | None = None) -> bytes:
    meta = asdict(output)
    del meta["body"]
    meta["source"] = output.source.as_stored()
    meta["key"] = key
    header = json.dumps(meta, separators=(",", ":")).encode()
    if signing_key is None:
        return MAGIC + header + b"\n" + output.body
    return SIGNED_MAGIC + _mac(signing_key, header) + b"\n" + header + b"\n" + output.body


def _mac(signing_key: bytes, header: bytes) -> bytes:
    return hmac.new(signing_key, header, "sha256").hexdigest().encode()


def unsigned(data: bytes, signing_keys: tuple[bytes, ...]) -> bool:
    """Whether `data` is an object a node wrote without signing (or an earlier node's): with a key, a plain miss,
    as during the hour a fleet starts signing, not a damaged object."""
    return data.startswith(OLD_MAGIC) or (bool(signing_keys) and data.startswith(MAGIC))


def signed_with(data: bytes, signing_key: bytes) -> bool:
    """Whether `data` is an object signed with `signing_key` (its header's HMAC; the rest is `decode`'s to check)."""
    mac, header = _signature(data)
    return hmac.compare_digest(mac, _mac(signing_key, header) + b"\n")


def _signature(data: bytes) -> tuple[bytes, bytes]:
    """A signed object's MAC line and header, copied alone (checked on the event loop at every hit while a key is
    rotated: slicing the body had cost 6.6 ms for 4 MB)."""
    start = len(SIGNED_MAGIC) + MAC_LINE_BYTES
    end = data.find(b"\n", start)
    return data[len(SIGNED_MAGIC):start], data[start:end if end >= 0 else len(data)]


def decode(data: bytes, key: str, now: float, signing_keys: tuple[bytes, ...] = ()) -> CachedOutput | None:
    """The output the object at `key` holds, or None when it is not one this tier wrote for that key (signed
    with one of `signing_keys`, when there are any), claims a type that is not an image, or its body does not
    match its ETag (blocking: hashes the body). A time it was last confirmed after `now`, by up to
    `CLOCK_SKEW_SECONDS`, is taken as `now`."""
    if data.startswith(SIGNED_MAGIC):
        if signing_keys and not any(signed_with(data, signing_key) for signing_key in signing_keys):
            return None
        rest = data[len(SIGNED_MAGIC) + MAC_LINE_BYTES:]
    elif not signing_keys and data.startswith(MAGIC):
        rest = data[len(MAGIC):]
    else:
        return None
    header, newline, body = rest.partition(b"\n")
    try:
        meta = json.loads(header)
        if meta.pop("key") != key:
            return None
        output = CachedOutput(body=body, **{**meta, "source": SourceInfo(**meta["source"])})
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    # anyone with access to the bucket could have written it: every header must go out as it is, and
    # what freshness is computed from must be of the right type
    source = output.source
    optional = (output.canonical_link, output.client_hints, source.last_modified, source.etag)
    if not (newline and output.content_type in IMAGE_TYPES and _sendable(output.etag)
            and isinstance(output.vary_accept, bool) and isinstance(output.stand_in, bool)
            and all(v is None or _sendable(v) for v in optional)
            and isinstance(source.origin, str) and isinstance(source.version, str)
            and (source.original_version is None or isinstance(source.original_version, str))
            and type(source.checked_at) in (int, float)):
        return None
    if not hashes_to(body, output.etag):
        return None
    if now < source.checked_at <= now + CLOCK_SKEW_SECONDS:  # a writer's clock a little ahead: confirmed now
        return replace(output, source=replace(source, checked_at=now))
    return output


def _sendable(value: Any) -> bool:
    return isinstance(value, str) and header_value(value) == value


class SharedTier:
    def __init__(self, settings: SharedCacheSettings, metrics: Metrics, output_budget: int, retention: float,
                 applied: Path):
        """`retention`: `[cache] original_ttl`, how long a purge matters (`edge/purge_journal.py`);
        `applied`: the file where the purges applied to this node's tiers are marked."""
        self.store = settings.store
        self.timeout = settings.timeout
        keys = (settings.signing_key, *settings.previous_signing_keys) if settings.signing_key else ()
        #: the keys whose objects are read; the first, objects are written with
        self._signing_keys = tuple(key.reveal().encode() for key in keys)
        self._signing_key = self._signing_keys[0] if keys else None
        self.journal = PurgeJournal(settings.store, retention, applied, signing_keys=self._signing_keys)
        self._metrics = metrics
        #: what the node's output tier would not keep either
        self._max_entry_bytes = output_budget // MAX_ENTRY_SHARE
        self._slots = asyncio.Semaphore(settings.max_writes)
        self._purge_calls = asyncio.Semaphore(PURGE_CALLS)
        self._max_pending = settings.max_writes * BACKLOG_PER_WRITE
        self._writes: set[asyncio.Task] = set()
        self._pending_bytes = 0  # of the outputs `_writes` hold
        self._failure_lines = Sparse(LOG_EVERY_SECONDS)  # per operation
        #: reads failed in a row, and until when (`clock`) they are skipped
        self._failed_reads = 0
        self._skip_reads_until = 0.0
        self.clock = time.monotonic

    @classmethod
    def of(cls, config: Config, metrics: Metrics) -> SharedTier | None:
        """The tier `[shared_cache]` configures, if any."""
        if config.shared_cache is None:
            return None
        return cls(config.shared_cache, metrics, config.cache.output_size, config.cache.original_ttl,
                   config.cache.dir / APPLIED_FILE)

    async def open(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        """Let pending writes finish (each is bounded by the timeout), then close the client."""
        if self._writes:
            await asyncio.wait(self._writes, timeout=self.timeout * 2)
            for task in self._writes:
                task.cancel()
        await self.store.close()

    # -- keys -------------------------------------------------------------------------------------
    def object_key(self, cache_key: str) -> str | None:
        """The object of a cache key (`endpoint \\0 path \\0 rest`), or None when it is not shared."""
        endpoint, path, rest = cache_key.split("\0", 2)
        return self._key(endpoint, path, "/" + sha256(rest.encode()).hexdigest()[:32], whole_path=True)

    def object_prefix(self, key_prefix: str) -> str | None:
        """The object key prefix of a cache key prefix (`endpoint \\0 path \\0`, or `endpoint \\0
        path prefix`), as a purge gives it."""
        endpoint, path_prefix, *whole = key_prefix.split("\0")
        return self._key(endpoint, path_prefix, "/" if whole else "", whole_path=bool(whole))

    def _key(self, endpoint: str, path: str, suffix: str, whole_path: bool) -> str | None:
        segments = path.split("/")
        if not whole_path:
            segments = segments[:-1]  # a prefix may end within a segment, or with "/"
        if any(segment in ("", ".", "..") for segment in segments):
            return None
        key = self.store.key_for(f"{endpoint or DEFAULT_ENDPOINT}/{path}{suffix}")
        return key if len(key.encode()) <= self.store.max_key_bytes else None

    # -- the three operations ---------------------------------------------------------------------
    async def get(self, cache_key: str, purged_at: float | None = None) -> CachedOutput | None:
        """The output stored for `cache_key`, or None (absent, damaged, made from an original confirmed
        before a purge that covers it, or the tier failed: counted). `purged_at`: the node's own latest
        purge covering the key (wall clock), which the journal may not have told this worker yet."""
        key = self.object_key(cache_key)
        if key is None:
            return None
        if self._failed_reads >= SKIP_AFTER_FAILURES:
            if self.clock() < self._skip_reads_until:
                return self._failed("get", "skipped")
            # this read tries the store again; the others meanwhile are skipped (every miss had waited on it)
            self._skip_reads_until = self.clock() + self.timeout
        try:
            # held to the process's fetch budget, as originals are (a larger object cannot be held: a miss)
            max_bytes = min(self._max_entry_bytes, fetch_budget.capacity)
            found = await asyncio.wait_for(self.store.get_object(key, max_bytes=max_bytes), self.timeout)
            now = time.time()
            output = await asyncio.to_thread(decode, found.body, key, now, self._signing_keys)
            if output is None and not unsigned(found.body, self._signing_keys):
                self._failed("get", "damaged")
            if output is not None and (self.journal.covers(cache_key, output.source.checked_at)
                                       or (purged_at or 0.0) > output.source.checked_at):
                output = None  # written late, or by a node that missed the purge: made from a purged original
            elif output is not None and output.source.checked_at > now:
                # by a clock further ahead than the fleet's may disagree (`decode`): of unknown age, as in the
                # local tiers. Taken as confirmed now, it had escaped every purge's hold-back, fresh for a day
                output = None
        except OriginNotFound:
            output = None
        except (OriginFailure, SourceTooLarge, TimeoutError) as error:
            return self._failed("get", error)
        except FetchMemoryExhausted:  # a miss, never a 503: the origin's fetch will wait its own turn
            return self._failed("get", "busy")
        except Exception as error:  # what the store's client should have classified (its bug): a miss all the
            return self._unexpected("get", error)  # same, never a 500 (botocore's ValueError for a date had been one)
        self._failed_reads = 0
        if output is not None and len(self._signing_keys) > 1 and not signed_with(found.body, self._signing_key):
            self.put_later(cache_key, output)  # signed with a key being rotated out: signed again with the current
        # a lookup that failed is a failure, counted apart, not a miss: with the tier down, its hit ratio read 0 %
        self._metrics.child(self._metrics.cache_requests, "shared", "miss" if output is None else "hit").inc()
        return output

    def put_later(self, cache_key: str, output: CachedOutput) -> None:
        """Write `output` in the background (never awaited by a request)."""
        key, size = self.object_key(cache_key), len(output.body)
        if key is None or size > self._max_entry_bytes:
            return
        if len(self._writes) >= self._max_pending or (self._writes and self._pending_bytes + size > BACKLOG_BYTES):
            self._failed("put", "backlog_full")
            return
        self._pending_bytes += size
        task = asyncio.create_task(self._put(key, output))
        self._writes.add(task)
        task.add_done_callback(functools.partial(self._written, size))

    def _written(self, size: int, task: asyncio.Task) -> None:
        self._writes.discard(task)
        self._pending_bytes -= size

    async def _put(self, key: str, output: CachedOutput) -> None:
        async with self._slots:
            try:
                data = await asyncio.to_thread(encode, output, key, self._signing_key)
                await asyncio.wait_for(self.store.put_object(key, data, output.content_type), self.timeout)
            except (OriginFailure, TimeoutError) as error:
                self._failed("put", error)
                return
            except Exception as error:  # (else the task ends in an exception nobody retrieves)
                self._unexpected("put", error)
                return
        self._metrics.shared_cache_writes.inc()

    async def delete_prefix(self, key_prefix: str) -> int:
        """Delete every object under a purge's cache key prefix; how many. Raises `SharedCacheFailure`
        (counted) when the tier cannot be purged: the caller must report it."""
        prefix = self.object_prefix(key_prefix)
        if prefix is None:
            return 0
        # a path's objects are `<path>/<hash>`: those of a file `a` are directly under `a/`, those of the
        # folder `a/`'s files deeper. A purge of `a` takes its own only, one of the prefix `a/` all but them
        whole_path = key_prefix.count("\0") == 2  # `endpoint \0 path \0`, as `object_prefix` reads it
        direct = True if whole_path else False if prefix.endswith("/") else None
        # listing and deleting a large prefix takes many calls: allow it more than one read
        async with self._purge_calls:
            return await self._reported("delete", self.store.delete_prefix(prefix, direct),
                                        self.timeout * PURGE_TIMEOUTS)

    async def record_purge(self, key_prefixes: list[str]) -> None:
        """Write a purge of cache key prefixes to the journal (an entry each, written at once), for the nodes
        it does not reach. Raises `SharedCacheFailure` (counted) when the tier cannot: the caller must report
        it."""
        async def record(prefix: str, late_by: float = 0.0) -> str:
            async with self._purge_calls:
                return await self.journal.record(prefix, late_by)
        keys = await self._reported("journal", asyncio.gather(*map(record, key_prefixes)), self.timeout)
        late_by = 0.0
        try:  # recorded: the journal's housekeeping (once a purge) no longer decides the purge's answer
            late_by = await asyncio.wait_for(self.journal.expire(keys[-1]), self.timeout * 2)
        except TimeoutError:
            log.warning("the purge journal's expired entries were not deleted in time")
        except Exception as error:  # `expire` logs the store's failures; this is what it did not classify
            self._unexpected("journal", error)
        if abs(late_by) > LOOKBACK_SECONDS:
            # named by a clock that far behind the store's, the entries sort where running nodes no longer read:
            # they applied such a purge only once restarted (a node 400 s behind: never, and nothing said so);
            # that far ahead, every reader ignores them (`FUTURE_SECONDS`), a node the purge could not call too
            log.warning("this node's clock is %.0f s %s the shared cache's: its purges are written to the journal "
                        "again by the store's time; synchronise its clock (NTP)", abs(late_by),
                        "behind" if late_by > 0 else "ahead of")
            await self._reported("journal", asyncio.gather(*(record(prefix, late_by) for prefix in key_prefixes)),
                                 self.timeout)

    async def read_purges(self) -> list[str] | None:
        """The key prefixes of the journal's purges this worker has not read yet (`PurgeJournal.read`);
        None when the tier failed (counted)."""
        unsigned = self.journal.unsigned
        try:
            # a long journal is several pages: more than one read, but a starting worker waits for it
            return await self._reported("journal", self.journal.read(), min(self.timeout * 5, JOURNAL_READ_SECONDS))
        except SharedCacheFailure:
            return None
        finally:  # a bucket writer's entries, or a node's without the key: an SRE's signal, not the log's alone
            if self.journal.unsigned > unsigned:
                self._metrics.child(self._metrics.shared_cache_failures, "journal", "unsigned").inc(
                    self.journal.unsigned - unsigned)

    async def _reported(self, operation: str, call: Awaitable[T], seconds: float) -> T:
        """`call`'s result within `seconds`; else `SharedCacheFailure`, counted."""
        try:
            return await asyncio.wait_for(call, seconds)
        except TimeoutError:
            self._failed(operation, "timeout")
            raise SharedCacheFailure("timeout", "the shared cache did not answer in time") from None
        except OriginFailure as error:  # the bucket's client is an `s3` origin's
            self._failed(operation, error)
            raise SharedCacheFailure(error.kind, str(error)) from error
        except Exception as error:  # its bug: the purge says the tier failed, never a 500
            self._unexpected(operation, error)
            raise SharedCacheFailure("error", type(error).__name__) from None

    def _unexpected(self, operation: str, error: Exception) -> None:
        """A failure the store's client raised unclassified (a bug): counted as `error`, logged with its
        traceback at most once a minute per operation."""
        self._metrics.child(self._metrics.shared_cache_failures, operation, "error").inc()
        if operation == "get":
            self._read_failed()
        if (left_out := self._failure_lines.allow((operation, "unexpected"))) is not None:
            log.error("shared cache %s raised an unexpected error; counted in edge_shared_cache_failures_total%s",
                      operation, left_out, exc_info=error)

    def _failed(self, operation: str, error: BaseException | str) -> None:
        kind = error if isinstance(error, str) else getattr(error, "kind", "timeout" if isinstance(
            error, TimeoutError) else "too_large")
        self._metrics.child(self._metrics.shared_cache_failures, operation, kind).inc()
        if operation == "get" and kind not in _NOT_THE_STORES and kind != "skipped":
            self._read_failed()
        if kind != "skipped" and (left_out := self._failure_lines.allow(operation)) is not None:
            log.warning("shared cache %s skipped (%s); counted in edge_shared_cache_failures_total%s", operation,
                        str(error) or kind, left_out)

    def _read_failed(self) -> None:
        """One more read failed in a row: past `SKIP_AFTER_FAILURES`, skip reads for `SKIP_SECONDS`."""
        self._failed_reads += 1
        if self._failed_reads >= SKIP_AFTER_FAILURES:
            if self.clock() >= self._skip_reads_until and self._failure_lines.allow("skipping") is not None:
                log.warning("shared cache reads failed %d times in a row: skipped for %gs at a time until one "
                            "succeeds (misses go to the origin without waiting for the tier); counted in "
                            "edge_shared_cache_failures_total{operation=\"get\",kind=\"skipped\"}",
                            self._failed_reads, SKIP_SECONDS)
            self._skip_reads_until = self.clock() + SKIP_SECONDS
