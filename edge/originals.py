"""The originals tier in front of an endpoint's origin chain: freshness, revalidation, stale-if-error
and the negative cache of originals, decided here and nowhere else.

`OriginalSource.current` answers "the current original at this path" with its bytes, obtained in one
of four ways; what is known about new bytes (their version: a hash) follows, computed
beside the render rather than before it (a local origin's ETag, its file's modification time and
size, is the version as it is: nothing to hash):

- `FRESH`: from the originals tier, confirmed by the origin within `[cache] original_ttl`;
- `UNCHANGED`: the stored copy was stale, and the origin confirmed it (a conditional request: a 304
  costs no download);
- `FETCHED`: new bytes from the origin (none were stored, or they changed: then every output made
  from other bytes is dropped; with none recorded, each output's own version says which);
- `STALE`: the stored copy, past its freshness, because the origin failed (stale-if-error).

The origin chain is asked once per original for the whole node (single flight). "Not found" is
remembered for `[cache] not_found_ttl` (the negative cache) and drops what was cached for the path.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from . import chain
from .cache import Caches, SourceInfo, StoredOriginal, original_key
from .cache.entries import CLOCK_SKEW_SECONDS
from .cache.purges import node_time
from .config import CacheSettings
from .errors import BadGateway, NothingToServe
from .fetching import reading
from .flight import SETTLE_SECONDS, SingleFlight
from .logs import Sparse
from .metrics import Metrics
from .origin import NotModified, Validators
from .routing import ImageRequest

log = logging.getLogger("edge.cache")
#: while an origin fails, every request for a stale original falls back on it: one line per interval says so
_STALE_LINES = Sparse(chain.FAILURE_LOG_SECONDS)
#: originals whose origin failed to revalidate them, remembered per worker (the oldest forgotten first)
FAILING_KEYS = 4096


@dataclass(frozen=True)
class CurrentOriginal:
    """The original a request works from."""

    body: bytes
    #: what is known about it (see `info`): for fetched bytes, once they are hashed (in the cache's threads)
    described: asyncio.Future[SourceInfo]
    #: the name of the origin it came from, known before it is hashed
    origin: str
    #: whether the originals tier keeps these bytes: not when a local origin read them from this machine
    worth_keeping: bool = True
    #: whether the version is the hash of the bytes (else a local origin's ETag: `Origin.is_local`)
    version_is_hash: bool = True
    #: done once the originals tier has stored these bytes (`_keep`); None when nothing is stored
    kept: asyncio.Future[None] | None = None

    @classmethod
    def known(cls, info: SourceInfo, body: bytes, *, worth_keeping: bool = True,
              version_is_hash: bool = True) -> CurrentOriginal:
        described = asyncio.get_running_loop().create_future()
        described.set_result(info)
        return cls(body, described, info.origin, worth_keeping, version_is_hash)

    async def info(self) -> SourceInfo:
        """Where it came from, its validators and its version. Shielded: a request that goes away
        while waiting must not cancel it for the others sharing this original."""
        return await asyncio.shield(self.described)


@dataclass(frozen=True, slots=True)
class OriginalLookup:
    """What the originals tier held for a key when it was looked up."""

    #: the key's shared write counter, read before the lookup (see `Caches.version`)
    version: int | None
    #: how many more seconds the path is known missing (the negative cache); 0 if it is not
    missing_for: float
    stored: StoredOriginal | None


class OriginalSource:
    def __init__(self, caches: Caches, flights: SingleFlight, settings: CacheSettings, max_source_bytes: int,
                 metrics: Metrics, clock: Callable[[], float]):
        self._caches = caches
        self._flights = flights
        self._ttl = settings.original_ttl
        self._not_found_ttl = settings.not_found_ttl
        self._max_bytes = max_source_bytes
        self._metrics = metrics
        self._clock = clock
        #: origins this worker could not open (name → why: `Node.start`): each fetch from one fails, `not_open`
        self.unopened: dict[str, str] = {}
        #: key → until when (`now()`) its stale copy is served without asking the origin, which failed to revalidate
        #: it: each request had waited for the origin's failure again (a hung one: its whole timeout, every time)
        self._failing: OrderedDict[str, float] = OrderedDict()

    def now(self) -> float:
        """The node's clock, which freshness is measured by."""
        return self._clock()

    def is_fresh(self, source: SourceInfo, at: float | None = None) -> bool:
        """Whether the origin confirmed this version within `original_ttl` before `at` (a `now()`; default:
        now). Outputs are as fresh as the original they were made from. Not one confirmed further ahead of
        the clock than a fleet's clocks disagree: the clock stepped back since, and its age is unknown (else
        fresh for the step's hours more than `original_ttl`)."""
        return -CLOCK_SKEW_SECONDS < (self._clock() if at is None else at) - source.checked_at < self._ttl

    def as_stand_in(self, source: SourceInfo) -> SourceInfo:
        """`source` of an output made from the `di-` image in place of a missing original: fresh for
        `not_found_ttl` from now, as the 404 behind it, then made again (from the real original, once
        an origin has it)."""
        return replace(source, checked_at=self._clock() - self._ttl + self._not_found_ttl)

    async def current(self, request: ImageRequest, host: str | None,
                      looked_up: OriginalLookup | None = None, *, answers_404: bool = True) -> CurrentOriginal:
        """The current original at the request's path. `host`: the Host passed on to the origins (part
        of the key), or None when the endpoint's origins take none; `looked_up`: the originals tier's
        answer for it, when the caller already asked (`look_up_later`); `answers_404`: whether the request
        is answered 404 if it is missing (not so for a layer, a `di-` image, or an original a `di-` image
        stands in for), else the not_found tier does not count the lookup: its hits are counted as requests
        the cache answered (the hit ratio, over the outputs' lookups, one a request). Raises `NothingToServe`
        or `BadGateway` (when nothing is stored to fall back on)."""
        key = original_key(request.endpoint.id, request.path, host)
        looked_up = looked_up or await self._caches.io_or(OriginalLookup(None, 0.0, None), self.look_up_later(key))
        if answers_404:
            self._count("not_found", "hit" if looked_up.missing_for else "miss")
        if looked_up.missing_for:  # caches in front keep the answer no longer than the node does
            raise NothingToServe("not found", max_age=math.ceil(looked_up.missing_for))
        stored = looked_up.stored
        if stored is not None and stored.kept and self.is_fresh(stored.info):
            self._count("original", "hit")
            return CurrentOriginal.known(stored.info, stored.body)
        self._count("original", "stale" if stored is not None and stored.kept else "miss")
        failing_for = self._failing.get(key, 0.0) - self._clock()  # (a clock stepped back: more than it lasts, over)
        if stored is not None and stored.kept and 0 < failing_for <= self._not_found_ttl:
            return CurrentOriginal.known(stored.info, stored.body)
        try:
            with reading(key):  # the render waiting may read it past the fetch budget (`FetchBudget.reserve`)
                return await self._flights.run(key, partial(self._fetch_to_keep, request, host, key, stored),
                                               partial(self._fresh_stored, key), partial(self._keep, key, stored),
                                               seen=looked_up.version)
        except BadGateway as failure:
            if stored is None or not stored.kept:
                raise
            if (left_out := _STALE_LINES.allow()) is not None:
                log.warning("origin failed (%s); using the stale original of %r%s", failure.message, request.path,
                            left_out)
            # as long as a `STALE` answer's max-age: asked again once caches in front ask again
            self._failing[key] = self._clock() + self._not_found_ttl
            self._failing.move_to_end(key)
            if len(self._failing) > FAILING_KEYS:
                self._failing.popitem(last=False)
            return CurrentOriginal.known(stored.info, stored.body)

    def look_up_later(self, key: str) -> Callable[[], OriginalLookup]:
        """The originals tier's lookup of `key`, to call in a cache thread (blocking); the shared write
        counter is read now, on the IOLoop, before it: a store that races the lookup shows."""
        return partial(self._look_up, key, self._caches.version(key))

    def _look_up(self, key: str, version: int | None) -> OriginalLookup:
        if missing_for := self._caches.not_found.missing_for(key, self._clock(), self._not_found_ttl):
            return OriginalLookup(version, missing_for, None)
        return OriginalLookup(version, 0.0, self._caches.originals.get(key))

    async def _fresh_stored(self, key: str) -> CurrentOriginal | None:
        """What another worker's flight stored for `key`, if it is fresh."""
        stored = await self._caches.io_or(None, self._caches.originals.get, key)
        if stored is None or not stored.kept or not self.is_fresh(stored.info):
            return None
        return CurrentOriginal.known(stored.info, stored.body)

    async def _fetch(self, request: ImageRequest, host: str | None, key: str,
                     stored: StoredOriginal | None) -> CurrentOriginal:
        """A single flight's work: ask the origin chain (conditionally when the bytes are stored)."""
        caches = self._caches
        now, began = self._clock(), node_time()
        known = stored.info if stored is not None else None  # its version, whether the bytes are kept or not
        try:
            found = await chain.fetch_first(
                request.endpoint.origins, request.path, host=host, max_bytes=self._max_bytes,
                metrics=self._metrics, unopened=self.unopened,
                # a version held without an etag or a last_modified gives nothing to ask with: asked plainly
                # (`request.validators` None, as documented)
                known=chain.Known(known.origin, Validators(known.etag, known.last_modified))
                if known and stored.kept and (known.etag or known.last_modified) else None,
                purged_at=await caches.last_purge(key))
        except NotModified:
            assert stored is not None
            return CurrentOriginal.known(replace(stored.info, checked_at=now), stored.body)
        except NothingToServe:
            if not await caches.purged_since(key, began):  # else the origin may have it by now
                await caches.io_or(None, self._forget_missing, key, now)
            raise
        original, origin = found.original, found.origin
        if origin.is_local and original.etag:  # named by its ETag (`Origin.is_local`): nothing to hash
            fetched = CurrentOriginal.known(SourceInfo.from_origin(
                origin.name, original.etag, now, original.etag, original.last_modified, original.content_type),
                original.body, worth_keeping=False, version_is_hash=False)
        else:
            async def describe() -> SourceInfo:
                return SourceInfo.from_origin(origin.name, await caches.etag_of(original.body), now,
                                              original.etag, original.last_modified, original.content_type)

            fetched = CurrentOriginal(original.body, asyncio.ensure_future(describe()), origin.name,
                                      worth_keeping=not origin.is_local)
        if known is not None and known.version != (await fetched.info()).version:
            # a changed original replaces every output made from the old one, those under way included
            await caches.io_or(None, caches.replace_outputs, key)
        return fetched

    async def _fetch_to_keep(self, request: ImageRequest, host: str | None, key: str,
                             stored: StoredOriginal | None) -> CurrentOriginal:
        """`_fetch`'s original, with the future `_keep` completes."""
        fetched = await self._fetch(request, host, key, stored)
        return replace(fetched, kept=asyncio.get_running_loop().create_future())

    async def _keep(self, key: str, stored: StoredOriginal | None, original: CurrentOriginal) -> None:
        """The fetched (or confirmed) original into the originals tier, after the requests have it; of a
        `local` file, or bytes too large to keep, only its version, when it is new (`stored`: what the tier
        held before)."""
        try:
            info = await original.info()
            if original.worth_keeping and self._caches.holds(self._caches.originals, len(original.body)):
                await self._caches.store(key, StoredOriginal(info, original.body))
            elif stored is None or stored.info.version != info.version:
                # its version alone: a local file's, or bytes too large for the tier (where the bytes kept of
                # an earlier version had stayed, to be fetched again on every request)
                self._caches.originals.put_version_later(key, info)
            if stored is None:
                # nothing told which version the outputs were made from (bytes not kept, or evicted; a local
                # file's version not yet recorded by the worker that read it): outputs of another are dropped
                # here, not served beside the new ones until `original_ttl`
                await self._caches.io_or(None, self._caches.outputs.delete_made_from_others, key, info.version)
        finally:
            if original.kept is not None and not original.kept.done():
                original.kept.set_result(None)

    async def forget_unusable(self, key: str, original: CurrentOriginal) -> None:
        """Drop bytes no image could be made of (a 422) from the originals tier, once stored: they may
        be an origin's passing fault (a 200 with an empty or cut body, a broken gzip stream), else
        answered 422 for all of `original_ttl`. A corrupt original so costs a fetch per request (one
        per single flight), as an origin's error does."""
        if not original.worth_keeping:
            return
        if original.kept is not None:
            await asyncio.wait((original.kept,), timeout=SETTLE_SECONDS)  # as long as a store may take
        await self._caches.io_or(None, self._caches.originals.delete, key)

    def _forget_missing(self, key: str, now: float) -> None:
        """No origin has the path (any more): drop what was cached for it, remember the answer (blocking)."""
        self._caches.outputs.delete_prefix(key)
        self._caches.originals.delete(key)
        self._caches.not_found.put(key, now, self._not_found_ttl)

    def _count(self, tier: str, result: str) -> None:
        self._metrics.add(self._metrics.cache_requests, (tier, result))
