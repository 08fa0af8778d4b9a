"""The originals tier in front of an endpoint's origin chain.

`OriginalSource.get` answers "the current original at this path". While a cached original is fresh
(`[cache] original_ttl`) it comes from the originals tier. Otherwise the origin chain is asked, once
per path for the whole node (single flight), and conditionally when a version is already known, so
that an unchanged original costs a 304 rather than a download. A changed original replaces the
outputs made from the old one. When the origin fails and a stale copy exists, the stale copy is used
(stale-if-error). "Not found" is remembered for `[cache] not_found_ttl` (the negative cache).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from functools import partial

from . import chain
from .cache import Caches, SourceInfo, StoredOriginal, path_key, strong_etag
from .config import CacheSettings
from .errors import NotFound, OriginFailed
from .flight import SingleFlight
from .metrics import Metrics
from .origin import NotModified, Validators
from .routing import ImageRequest

log = logging.getLogger("edge.cache")


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

    def is_fresh(self, source: SourceInfo) -> bool:
        """Whether the origin confirmed this version within `original_ttl`."""
        return self._clock() - source.checked_at < self._ttl

    async def get(self, request: ImageRequest, made_from: SourceInfo | None = None) -> StoredOriginal:
        """The current original at the request's path. `made_from` is the version the caller's stale
        output was made from: when the origin confirms it, the result may carry no body."""
        key = path_key(request.endpoint.id, request.path)
        missing = self._caches.not_found.known_missing(key, self._clock())
        self._count("not_found", "hit" if missing else "miss")
        if missing:
            raise NotFound("not found")
        stored = await asyncio.to_thread(self._caches.originals.get, key)
        if stored is not None and self.is_fresh(stored.info):
            self._count("original", "hit")
            return stored
        self._count("original", "miss" if stored is None else "stale")
        try:
            original = await self._flights.run(key, partial(self._fetch, request, key, stored, made_from),
                                               partial(self._fresh_stored, key))
        except OriginFailed as failure:
            if stored is None:
                raise
            log.warning("origin failed (%s); using the stale original of %r", failure.message, request.path)
            return stored
        if original.body is None and (made_from is None or made_from.version != original.info.version):
            # another request's revalidation confirmed a version whose bytes this one does not hold
            original = await self._fetch(request, key, None, None)
        return original

    async def _fresh_stored(self, key: str) -> StoredOriginal | None:
        stored = await asyncio.to_thread(self._caches.originals.get, key)
        return stored if stored is not None and self.is_fresh(stored.info) else None

    async def _fetch(self, request: ImageRequest, key: str, stored: StoredOriginal | None,
                     made_from: SourceInfo | None) -> StoredOriginal:
        known = stored.info if stored is not None else made_from
        now = self._clock()
        try:
            found = await chain.fetch_first(
                request.endpoint.origins, request.path, host=request.host, max_bytes=self._max_bytes,
                metrics=self._metrics,
                known=chain.Known(known.origin, Validators(known.etag, known.last_modified)) if known else None)
        except NotModified:
            assert known is not None
            confirmed = StoredOriginal(replace(known, checked_at=now), stored.body if stored else None)
            if stored is not None:
                await asyncio.to_thread(self._caches.originals.put, key, confirmed)
            return confirmed
        except NotFound:
            await asyncio.to_thread(self._forget_missing, key, now)
            raise
        original = found.original
        fetched = StoredOriginal(
            SourceInfo(origin=found.origin.name, version=strong_etag(original.body), checked_at=now,
                       etag=original.etag, last_modified=original.last_modified,
                       content_type=original.content_type),
            original.body)
        if known is not None and known.version != fetched.info.version:
            # a changed original replaces every output made from the old one
            await asyncio.to_thread(self._caches.outputs.delete_prefix, key)
        await asyncio.to_thread(self._caches.originals.put, key, fetched)
        return fetched

    def _forget_missing(self, key: str, now: float) -> None:
        """No origin has the path (any more): drop what was cached for it, remember the answer."""
        self._caches.outputs.delete_prefix(key)
        self._caches.originals.delete(key)
        self._caches.not_found.put(key, now, self._not_found_ttl)

    def close(self) -> None:
        self._flights.close()

    def _count(self, tier: str, result: str) -> None:
        self._metrics.child(self._metrics.cache_requests, tier, result).inc()
