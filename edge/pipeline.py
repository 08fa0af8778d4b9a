"""The request path of an image, top to bottom. The HTTP handler (`edge/server.py`) turns a request
into an `ImageCall`, awaits `Pipeline.serve`, and turns the `Served` into a response; everything in
between happens here, in this order:

    plan         (`Pipeline._plan`)         the steps down to the key, memoised per request (below):
    route        edge/routing.py            Host or first segment → endpoint; `tr:` segment; path
    signature    edge/signing.py            with the endpoint's private_key: `ik-s`/`ik-t` → 401, before any lookup
    parse        edge/transform/options.py  `tr:` + `?tr=` → Transformation (canonical form = key)
    hints        edge/transform/hints.py    `w-auto`/`dpr-auto` ← Sec-CH-Width/Sec-CH-DPR (+ Vary, key)
    cost         edge/transform/cost.py     the work the URL alone implies, held to [limits] max_cost
    plan format  edge/transform/formats.py  f-/extension/Accept → planned format (+ Vary: Accept)
    lookup       edge/cache/                memory tier → output tier (and on a miss the originals tier, in the
                                            same thread hand-off); a fresh HIT is answered here (a plain
                                            GET's memory-tier hit even before: `memory_hit`, edge/hits.py);
                                            a body `[server] send_memory` would refuse is not even read,
                                            nor one a HEAD or a 304 does not send (but to revalidate it)
    flight       edge/flight.py             one producer per key for the whole node; others wait
      shared     edge/shared_cache.py       the fleet's shared tier, when configured: SHARED
      original   edge/originals.py          originals tier → origin chain: FRESH/UNCHANGED/FETCHED/STALE
      layers     edge/originals.py          the image layers' originals, the same way (`Pipeline._overlays`)
      render     edge/transform/render.py   libvips in a bounded thread pool (or `orig-true`)
    respond      edge/server.py             the output goes out (ETag hashed in the render's thread)
    store        edge/flight.py (keep)      after the response: output tier (and originals tier),
                                            then the shared tier; the lease is held until stored

The plan (route … key) depends only on the Host, the request target, Accept and the config, so the
pipeline keeps the latest plans by (Host, target, Accept) and a repeat request skips straight to the
lookup: as many as fit in a twentieth of `[cache] memory_size` (`PlanMemo`), so that the hits the
memory tier answers are planned once. Not memoised: plans that read client hints (other headers),
URLs signed with an expiry (`ik-t`: the clock), errors (counted and answered afresh), and requests
larger than `PLAN_MEMO_MAX_CHARS`. A config reload starts new workers, hence new memos; a purge
changes what is cached, never a plan. Beyond the plan memo (a long tail of URLs), the checked
transformation is memoised by its texts, which many paths share: a new URL's plan costs ~8 µs,
routing most of it.

Cancellation: when the client goes away the handler cancels the task awaiting `serve`; the single
flight then cancels the work (origin fetch, transform) if no other request waits for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from urllib.parse import quote

from .cache import BeforeReading, CachedOutput, Caches, SourceInfo, UnreadOutput, original_key, output_key
from .cache.purges import node_time
from .chain import given_host
from .config import Config
from .errors import (BadGateway, BadRequest, EdgeError, InvalidTransformation, NothingToServe, OutOfMemory,
                     RenderTimedOut, SignatureRefused, UnprocessableSource, WatermarkMissing, drop_tracebacks)
from .fetching import Holding, fetch_budget
from .flight import SETTLE_SECONDS, SingleFlight
from .logs import Sparse
from .metrics import Metrics, endpoint_label
from .originals import CurrentOriginal, OriginalLookup, OriginalSource
from .routing import ImageRequest, Router
from .settings import host_name
from .shared_cache import SharedTier
from .signing import NO_EXPIRY
from .transform.cost import ENCODE_COUNTED, check_cost
from .transform.formats import AS_IS_TYPES, LOADER_FORMATS, MAY_ANIMATE, MIME_TYPES, plan_format
from .transform.hints import NO_HINTS, negotiate
from .transform.layers import fetched
from .transform.options import Transformation, layered, parse_transformation
from .transform.render import Renderer, SettingsTag

log = logging.getLogger("edge.pipeline")


@dataclass(slots=True)  # not frozen: on the hit path, frozen dataclasses cost microseconds each
class ImageCall:
    """What the pipeline needs of an HTTP request."""

    host: str
    #: the request target as sent (path and query, still percent-encoded), starting with `/`: the
    #: router checks URL signatures on it
    uri: str
    #: the `tr` query parameter, decoded
    query_transformation: str | None
    accept: str | None
    #: the request's headers, read for the client hints of `w-auto` / `dpr-auto`
    headers: Mapping[str, str] = field(default_factory=dict)
    #: called with a stored output's size and ETag before its body is read from disk (`BeforeReading`): whether
    #: the answer sends the body (a HEAD and a 304 do not: it is then left unread), or raises the error the
    #: answer would end in once read (`[server] send_memory`), so that none is
    before_reading: BeforeReading | None = None


@dataclass(slots=True)
class Served:
    """The answer: an output or an error, and how to label it."""

    #: the endpoint's id (`default` for the default endpoint), `-` when none matched
    endpoint: str
    #: `hit` (fresh from the cache), `miss` (waited on an origin or a transform), `stale` (the origin
    #: failed; an old copy is served), `shared` (from the fleet's shared tier), `error` (with `error`)
    cache: str
    output: CachedOutput | None = None
    error: EdgeError | None = None
    #: what the URL asked for, with an output: its signature's expiry, which caches in front must not
    #: outlast, and the answer's own headers (`attachment`, `immutable`)
    request: ImageRequest | None = None


#: the plan memo's share of `[cache] memory_size`: 1/20, 3.2 MB a worker by default (~4000 plans of
#: short URLs). A plan the memo no longer holds costs ~8 µs again, 25 µs in a busy server, 10 % of a
#: hit answered by edge/hits.py: 20 000 keys read at random ran at 0.79-0.86 of one hot key with 1024
#: plans and 0.81-1.03 (median 0.92, 13 runs) with all of them memoised (benchmarks/README.md,
#: "The long tail, fourth pass" and "No regression elsewhere (fifth pass)")
PLAN_MEMO_SHARE = 20
#: the plan memo's budget however small the memory tier (off included): ~1300 plans of short URLs
PLAN_MEMO_MIN_BYTES = 10**6
#: a request whose Host, target and Accept are longer than this together is planned every time
PLAN_MEMO_MAX_CHARS = 1024
#: checked transformations kept per process, for the plans the plan memo does not hold (a site uses
#: few; parsing has its own memo, the cost check alone costs 3–6 µs on top)
TRANSFORMATION_MEMO_SIZE = 1024
#: seconds an output whose render passed `render_timeout` is answered 503 at once, without rendering
#: again: the same work on the same original would end the same way, and each try holds a render
#: thread (and ~20 s of CPU) for the whole deadline. Not a render that passed it short of CPU
#: (`RenderTimedOut.contended`: a burst of renders, a busy machine): ten minutes of 503s for everyone had
#: followed a new image's first request that met a burst (or an attacker's)
TIMED_OUT_SECONDS = 600.0
#: seconds a URL answered 422 (no image could be made of its original) is answered so without a fetch,
#: and every URL of an original that is no image at all: it is dropped from the originals tier, so each
#: request would download it again.
#: Short, and per worker: the fault may be the origin's passing one (a purge forgets it, as it does a
#: timed-out render)
UNUSABLE_SECONDS = 10.0
#: an original that is no image at all is said in the log once a minute per origin at most (a client chooses the
#: paths): an origin answering 200 with a page in an image's place had shown as 422s alone
_UNREADABLE_LINES = Sparse(60.0)
#: seconds a URL whose render was refused 400 (a text layer larger than the output limit, an output or a decode
#: too large for this original) is answered so without rendering: the refusal had cost the render's work each
#: time (a 500-character text at fs-500: 0.3 s of CPU per request, nothing cached, a stream of them slowing
#: every other miss 100-fold). And every URL of an original over `max_source_bytes`, without a fetch (each had
#: read up to the limit from the origin: 40 MB for a 100-byte request). Per worker; a purge forgets it
REFUSED_SECONDS = 60.0
#: outputs remembered so, or as timed out, per process; the oldest are forgotten first
FAILED_KEYS = 4096


@dataclass(slots=True)  # not frozen: built on every plan memo miss
class _Plan:
    """What one request asks for, once routed, parsed and planned."""

    endpoint: str
    request: ImageRequest
    transformation: Transformation
    planned_format: str
    vary_accept: bool
    #: the client hints the output depends on (`Sec-CH-Width, Width`), or None
    client_hints: str | None
    #: the Host passed on to the origins (and part of the keys), or None when they take none
    host: str | None
    original_key: str
    key: str


class PlanMemo:
    """Plans by (Host, request target, Accept), first in first out within a byte budget: a plan costs
    about `PLAN_BYTES` plus `PLAN_BYTES_PER_CHAR` for each character of its key (measured with
    tracemalloc: 760 B for a 46-character key, 4.3 kB for 936; its strings appear again in the route,
    the path and the cache keys), so long URLs, a hostile client's included, hold fewer plans."""

    PLAN_BYTES = 600
    PLAN_BYTES_PER_CHAR = 4

    def __init__(self, budget: int):
        self.budget = budget
        self._plans: OrderedDict[tuple[str, str, str | None], _Plan] = OrderedDict()
        self._bytes = 0
        self.get = self._plans.get  # the hit path's lookup, without a call of ours in between

    def remember(self, key: tuple[str, str, str | None], plan: _Plan) -> None:
        """Keep `plan`, dropping the oldest plans beyond the budget. `key` is not held: a request is
        planned only when the memo has no plan for it."""
        self._plans[key] = plan
        self._bytes += self._cost(key)
        while self._bytes > self.budget:
            self._bytes -= self._cost(self._plans.popitem(last=False)[0])

    def _cost(self, key: tuple[str, str, str | None]) -> int:
        host, uri, accept = key
        return self.PLAN_BYTES + self.PLAN_BYTES_PER_CHAR * (len(host) + len(uri) + len(accept or ""))


class Pipeline:
    """One worker's request path for images (`serve`; `memory_hit` for a hit that needs no await)."""

    def __init__(self, config: Config, router: Router, caches: Caches, originals: OriginalSource,
                 flights: SingleFlight, renderer: Renderer, metrics: Metrics, shared: SharedTier | None = None):
        self._config = config
        self._router = router
        self._caches = caches
        self._originals = originals
        self._flights = flights
        self._renderer = renderer
        self._metrics = metrics
        self._shared = shared
        self._canonical_bases = {origin.name: _canonical_base(origin.settings.canonical_base_url)
                                 for origin in config.origins if origin.settings.canonical_base_url}
        #: each endpoint's origins that take the client's Host (`Origin.takes_request_host`)
        self._host_takers = {e.id: [origin for origin in e.origins if origin.takes_request_host]
                             for e in config.endpoints}
        self._settings = SettingsTag(config.defaults, config.limits, config.fonts)
        #: (Host, request target, Accept) → the request's plan (see the module's doc)
        self._plans = PlanMemo(max(config.cache.memory_size // PLAN_MEMO_SHARE, PLAN_MEMO_MIN_BYTES))
        #: (endpoint, `tr:` text, `?tr=` text, named only) → the transformation and its canonical text
        self._transformations: OrderedDict[tuple[str, str | None, str | None, bool],
                                           tuple[Transformation, str]] = OrderedDict()
        #: output or original key → until when (monotonic) its URLs are answered without fetching or rendering,
        #: with what (a render that passed the deadline, `TIMED_OUT_SECONDS`; one refused 400, `REFUSED_SECONDS`;
        #: an original no image could be made of, `UNUSABLE_SECONDS`), and when that was remembered (`node_time`:
        #: a purge since forgets it)
        self._failed: OrderedDict[str, tuple[float, Callable[[], EdgeError], float]] = OrderedDict()
        #: originals no image could be made of, being dropped from the originals tier
        self._forgetting: set[asyncio.Future] = set()

    async def serve(self, call: ImageCall) -> Served:
        endpoint = "-"
        began = self._originals.now()
        try:
            plan = self._planned(call)
            endpoint, key = plan.endpoint, plan.key
            version = self._caches.version(key)  # before the lookup: a store that races it shows
            cached, original = self._caches.output_in_memory(key), None
            if cached is None:
                cached, original = await self._caches.output_and(key, self._original_lookup(plan), call.before_reading)
                if isinstance(cached, UnreadOutput) and not self._originals.is_fresh(cached.source):
                    cached = await self._caches.output(key)  # revalidated, it is stored again: with its body
            fresh = cached is not None and self._originals.is_fresh(cached.source)
            self._count("output", "hit" if fresh else "stale" if cached else "miss")
            if fresh:
                return Served(endpoint, "hit", cached, request=plan.request)

            try:
                output, cache_label = await self._flights.run(key, partial(self._produce, plan, cached, original),
                                                              partial(self._fresh_stored, key),
                                                              partial(self._keep, key), seen=version)
            except BadGateway:
                if cached is None:
                    raise
                # stale-if-error: the origin failed and its original is no longer held, but an output made
                # from it is (labelled below, by its original's freshness)
                output, cache_label = cached, "stale"
            if cache_label != "shared":
                # stale if its original was when the request began (a stale copy the origin could not confirm):
                # one that turned stale while the output was made (a slow render or layer) failed nobody
                cache_label = "miss" if self._originals.is_fresh(output.source, at=began) else "stale"
            return Served(endpoint, cache_label, output, request=plan.request)
        except EdgeError as error:
            drop_tracebacks(error)
            if isinstance(error, SignatureRefused):  # counted once answered: planning has no side effect
                self._metrics.add(self._metrics.signature_refusals, (error.endpoint, error.reason))
            return Served(error.endpoint or endpoint, "error", error=error)
        except MemoryError:  # an allocation failed, anywhere (a render's thread too): the node's overload, no bug's 500
            return Served(endpoint, "error", error=OutOfMemory())

    async def settle(self, timeout: float = SETTLE_SECONDS) -> None:
        """Wait (bounded) until the originals no image could be made of are dropped."""
        if self._forgetting:
            await asyncio.wait(list(self._forgetting), timeout=timeout)

    def memory_hit(self, call: ImageCall) -> Served | None:
        """`serve`'s answer when it needs no await: the output fresh in the memory tier (the plan
        memoised for the next request); else None, and nothing is counted (`serve` will be, errors
        included)."""
        try:
            plan = self._planned(call)
        except EdgeError:
            return None
        cached = self._caches.output_in_memory(plan.key)
        if cached is None or not self._originals.is_fresh(cached.source):
            return None
        self._count("output", "hit")
        return Served(plan.endpoint, "hit", cached, request=plan.request)

    def endpoint_of(self, call: ImageCall) -> str:
        """The `endpoint` label of a call `serve` gave no answer to (its client gone, the worker stopping)."""
        plan = self._plans.get((call.host, call.uri, call.accept))
        if plan is not None:
            return plan.endpoint
        try:
            return endpoint_label(self._router.route(call.host, call.uri).endpoint.id)
        except EdgeError:
            return "-"

    def _planned(self, call: ImageCall) -> _Plan:
        return self._plans.get((call.host, call.uri, call.accept)) or self._plan(call)

    def _plan(self, call: ImageCall) -> _Plan:
        """Route, check the signature, parse, apply client hints, check the cost, plan the format, name
        the key; memoised when the plan depends on nothing but the memo's key (see the module's doc)."""
        request = self._router.route(call.host, call.uri)
        endpoint = endpoint_label(request.endpoint.id)
        try:
            transformation, requested = self._transformation(request, call.query_transformation)
            # the original's bytes (or, for a Cloudinary URL without components, its conversion to the extension's
            # format) whatever the browser takes or the URL says: one key, no `Vary`
            as_stored = transformation.serves_original
            if request.thumbnail and not as_stored:
                transformation = _thumbnail(transformation)
                requested = transformation.canonical()
            hints = NO_HINTS
            if transformation.client_hints and not as_stored:  # else nothing to build: the hit path as it was
                hints = negotiate(transformation, call.headers, self._config.limits.max_output_side)
                transformation = hints.transformation
                check_cost(transformation, self._config.limits)
            defaults = self._config.defaults
            planned_format, vary_accept = (plan_format(None, request.path, None) if as_stored else
                                           plan_format(transformation.output_format, request.path, call.accept,
                                                       defaults.auto_format, defaults.auto_format_smallest))
            if planned_format in ENCODE_COUNTED and transformation.output_format is not None and not as_stored:
                # f-gif, f-webp: the encode counts (one the URL does not name, `.avif`, falls back when over budget)
                check_cost(transformation, self._config.limits, formats=(planned_format,), defaults=defaults)
        except EdgeError as error:
            error.endpoint = error.endpoint or endpoint  # a bad transformation is counted on its endpoint
            raise
        host = host_name(request.host)  # its port and a trailing dot name the same site: one key, one fetch
        if not any(given_host(origin, host) for origin in self._host_takers[request.endpoint.id]):
            host = None  # keyed without a Host: no origin of the endpoint is given this one
        original = original_key(request.endpoint.id, request.path, host)
        key = output_key(original, requested, planned_format if vary_accept else "", hints.key,
                         self._settings.of(transformation), planned_format)
        plan = _Plan(endpoint, request, transformation, planned_format, vary_accept, hints.vary, host, original, key)
        if (hints is NO_HINTS and request.signed_until in (None, NO_EXPIRY)
                and len(call.host) + len(call.uri) + len(call.accept or "") <= PLAN_MEMO_MAX_CHARS):
            self._plans.remember((call.host, call.uri, call.accept), plan)
        return plan

    def _transformation(self, request: ImageRequest, query: str | None) -> tuple[Transformation, str]:
        """The request's transformation (with the endpoint's watermark) and its canonical text, its
        cost checked as far as the URL alone tells (client hints aside); memoised by the texts it is
        made of, which many paths share."""
        if request.transformation is not None:  # a Cloudinary-style URL's, parsed with its path
            transformation, memo_key = request.transformation, None
        else:
            memo_key = (request.endpoint.id, request.path_transformation, query, request.named_only)
            if (made := self._transformations.get(memo_key)) is not None:
                return made
            transformation = parse_transformation(request.path_transformation, query,
                                                  named=self._config.named_transformations,
                                                  named_only=request.named_only)
        if request.endpoint.watermark:
            if transformation.serves_original:
                # the original's untouched bytes would be the image without its watermark, to anyone adding
                # `orig-true` (or writing a Cloudinary URL without components): the plain URL's image instead
                transformation = Transformation()
            transformation = layered(transformation, request.endpoint.watermark)
        if not transformation.client_hints:  # with hints, checked once they apply
            check_cost(transformation, self._config.limits)  # what the URL alone makes too costly: no fetch
        made = transformation, transformation.canonical()
        if memo_key is not None:
            _remember(self._transformations, memo_key, made, TRANSFORMATION_MEMO_SIZE)
        return made

    def _original_lookup(self, plan: _Plan) -> Callable[[CachedOutput | None], OriginalLookup | None] | None:
        """For the cache thread that reads the output: unless that output is fresh, the original's
        lookup as well, in the same hand-off (each costs ~40 µs of CPU and more in latency). Not when
        this worker's flight for the key is under way: its leader has looked."""
        if self._flights.running(plan.key):
            return None
        look_up, is_fresh = self._originals.look_up_later(plan.original_key), self._originals.is_fresh
        return lambda output: None if output is not None and is_fresh(output.source) else look_up()

    async def _fresh_stored(self, key: str) -> tuple[CachedOutput, str] | None:
        """What another worker's single flight stored for `key`, if fresh."""
        output = self._caches.output_in_memory(key) or await self._caches.output(key)
        return (output, "miss") if output is not None and self._originals.is_fresh(output.source) else None

    async def _produce(self, plan: _Plan, cached: CachedOutput | None,
                       looked_up: OriginalLookup | None) -> tuple[CachedOutput, str]:
        """A single flight's work: the shared tier's copy, or the current original and the output made
        from it. With where it came from: `shared` or `miss`. (The shared lookup is inside the
        flight: a herd on a URL that just moved to this node reads the shared tier once.)
        `looked_up`: what the originals tier held for the original, when the output's lookup asked."""
        if cached is None and self._shared is not None:
            cached = await self._shared.get(plan.key, await self._caches.last_purge(plan.key))
            if (cached is not None and self._originals.is_fresh(cached.source)
                    and not _superseded(cached, await self._version_seen_last(plan, looked_up))):
                return cached, "shared"
        # the URL's failure, or its original's (no image can be made of it, whatever the transformation)
        failed = await self._remembered_failure(plan.key) or await self._remembered_failure(plan.original_key)
        if failed is not None and cached is None:  # not even a fetch; with a copy, one may confirm it
            raise failed()
        if cached is None and not plan.transformation.serves_original:
            self._renderer.check_room(plan.endpoint)  # a render the queue would refuse: refused before its fetch
        # the originals are held against `[server] fetch_memory` from their reads to the render's end (its wait
        # for a thread included): uncounted, renders waiting for a thread had each held theirs (+1.5 GB). Counted on
        # the endpoint: one under its share does not wait for the others' (`FetchBudget.reserve`)
        with fetch_budget.holding(plan.endpoint) as holding:
            try:
                original, key = await self._original(plan, looked_up)
            except BadRequest as error:  # over `max_source_bytes`: each URL of it had downloaded up to the limit again
                self._remember_failure(plan.original_key, error.again().again, REFUSED_SECONDS)
                raise
            holding.add(original.body)
            stand_in = key != plan.original_key
            overlays = await self._overlays(plan, holding)
            if cached is not None:
                source = await self._source_of(original, overlays, stand_in)
                if cached.source.version == source.version and cached.stand_in == stand_in:
                    return cached.confirmed(source), "miss"  # the original and layers unchanged: so is the output
            if failed is not None:
                raise failed()
            try:
                return await self._render(plan, original, overlays, stand_in), "miss"
            except UnprocessableSource as error:
                # named in the access log: an origin answering 200 with its login page had shown as no origin's fault
                error.origin = original.origin
                forgetting = asyncio.ensure_future(self._originals.forget_unusable(key, original))
                self._forgetting.add(forgetting)  # held until done: the loop keeps only a weak reference
                forgetting.add_done_callback(self._forgetting.discard)
                # an original that is no image at all by its original's key: each other URL of it (w-1 … w-8192) had
                # downloaded it again, whole (30 MB of a video behind a web origin, 20 times in 3 s)
                # its message too (a PDF, an SVG left unread, named: the next requests had got the generic one)
                self._remember_failure(key if error.unreadable else plan.key, error.again().again, UNUSABLE_SECONDS)
                if error.unreadable:
                    _say_unreadable(original, key)
                raise
            except RenderTimedOut as error:
                if not error.contended:  # short of CPU, the same work may end in time once the burst is over
                    self._remember_failure(plan.key, RenderTimedOut, TIMED_OUT_SECONDS)
                raise
            except BadRequest as error:
                # a copy never raised: the error itself holds its traceback, and through it the render's frames
                self._remember_failure(plan.key, error.again().again, REFUSED_SECONDS)
                raise

    async def _version_seen_last(self, plan: _Plan, looked_up: OriginalLookup | None) -> SourceInfo | None:
        """The version of the original this node confirmed last: the originals tier's record, else (none kept:
        `original_size = 0`, or evicted) what its newest output was made from. None when the lookup was left to
        the flight under way (`_original_lookup`)."""
        if looked_up is None or looked_up.missing_for:
            return None
        if looked_up.stored is not None:
            return looked_up.stored.info
        return await self._caches.io_or(None, self._caches.outputs.newest_source, plan.original_key)

    async def _remembered_failure(self, key: str) -> Callable[[], EdgeError] | None:
        """The failure remembered for `key` (an output's, or an original's), unless it expired or was purged."""
        until, failed, remembered_at = self._failed.get(key, (0.0, None, 0.0))
        if failed is None or until <= time.monotonic() or await self._caches.purged_since(key, remembered_at):
            return None
        return failed

    def _remember_failure(self, key: str, error: Callable[[], EdgeError], seconds: float) -> None:
        self._failed.pop(key, None)  # a key that had expired is the newest again
        _remember(self._failed, key, (time.monotonic() + seconds, error, node_time()), FAILED_KEYS)

    async def _keep(self, key: str, produced: tuple[CachedOutput, str]) -> None:
        """Store what the flight produced: after the response, never on its critical path."""
        output, cache_label = produced
        await self._caches.store(key, output)
        if self._shared is not None and cache_label != "shared":
            self._shared.put_later(key, output)

    async def _original(self, plan: _Plan, looked_up: OriginalLookup | None) -> tuple[CurrentOriginal, str]:
        """The original, or the `di-` default image when no origin has it (missing too: 404); with the
        originals tier's key of the one returned."""
        default_image = plan.transformation.default_image
        try:
            return (await self._originals.current(plan.request, plan.host, looked_up,
                                                  answers_404=default_image is None), plan.original_key)
        except NothingToServe:
            if default_image is None:
                raise
            request = replace(plan.request, path=default_image)
            return (await self._originals.current(request, plan.host, answers_404=False),
                    original_key(request.endpoint.id, default_image, plan.host))

    async def _overlays(self, plan: _Plan, holding: Holding) -> dict[str, CurrentOriginal]:
        """The originals of the image layers, through the same originals tier, single flight and
        limits as the main one, each added to `holding` as it arrives. One that no origin has is a 400 naming the
        layer's input; a 502 when the endpoint's watermark draws it (the operator's error, not the client's)."""
        if plan.transformation.serves_original:
            return {}
        paths = sorted(fetched(plan.transformation.steps))

        async def current(path: str) -> CurrentOriginal:
            try:
                layer = await self._originals.current(replace(plan.request, path=path), plan.host, answers_404=False)
            except NothingToServe:
                if path in plan.request.endpoint.watermark_images:
                    raise WatermarkMissing(path) from None
                raise InvalidTransformation(f"i-{path}", "no such image on this endpoint") from None
            holding.add(layer.body)
            return layer
        return dict(zip(paths, await asyncio.gather(*map(current, paths))))

    async def _source_of(self, original: CurrentOriginal, overlays: Mapping[str, CurrentOriginal],
                         stand_in: bool) -> SourceInfo:
        """`_made_from`, fresh only as long as a stand-in may be (`as_stand_in`) when it is one."""
        source = await _made_from(original, overlays)
        return self._originals.as_stand_in(source) if stand_in else source

    async def _render(self, plan: _Plan, original: CurrentOriginal, overlays: dict[str, CurrentOriginal],
                      stand_in: bool) -> CachedOutput:
        """Transform the original (or pass it through for `orig-true`) into a storable output. New
        bytes are hashed (their version) while they render: the version is needed only for the output."""
        serves_original = plan.transformation.serves_original
        header = (await self._renderer.probe(original.body, svg_read=False, as_is=True, lane=plan.endpoint)
                  if serves_original else None)
        fmt = LOADER_FORMATS.get(header.loader) if header else None
        if header and plan.request.original_as in (None, fmt):  # passed through (else converted: `photo.webp`)
            # the ETag is the hash of the original's bytes: its version, when that is their hash (hashed once)
            etag = ((await original.info()).version if original.version_is_hash
                    else await self._caches.etag_of(original.body))
            body = original.body
            content_type = MIME_TYPES[fmt] if fmt is not None else AS_IS_TYPES.get(header.loader)
            if content_type is None:
                raise UnprocessableSource()
        else:
            started = time.perf_counter()
            rendered = await self._renderer.render(original.body, plan.transformation, plan.planned_format,
                                                   {path: overlay.body for path, overlay in overlays.items()},
                                                   lane=plan.endpoint)
            body, fmt, etag = rendered.body, rendered.format, rendered.etag
            content_type = MIME_TYPES[fmt]
            self._metrics.observe(self._metrics.transform_duration, (fmt,), time.perf_counter() - started)
        source = await self._source_of(original, overlays, stand_in)
        base = self._canonical_bases.get(source.origin)
        return CachedOutput(
            body=body,
            content_type=content_type,
            etag=etag,
            source=source,
            vary_accept=plan.vary_accept,
            client_hints=plan.client_hints,
            canonical_link=_canonical_link(base, plan.request.path) if base else None,
            stand_in=stand_in,
        )

    def _count(self, tier: str, result: str) -> None:
        self._metrics.add(self._metrics.cache_requests, (tier, result))


async def _made_from(current: CurrentOriginal, layers: Mapping[str, CurrentOriginal]) -> SourceInfo:
    """What an output is made from: the original, and the layers' originals when it has any. Its
    version covers theirs (a changed overlay makes a new output), and it is as fresh as the least
    recently confirmed of them."""
    original = await current.info()
    if not layers:
        return original
    overlays = [await layer.info() for layer in layers.values()]
    version = hashlib.sha256("\n".join([original.version, *(o.version for o in overlays)]).encode()).hexdigest()
    return replace(original, version=version, original_version=original.version,
                   checked_at=min([original.checked_at, *(o.checked_at for o in overlays)]))


def _superseded(output: CachedOutput, known: SourceInfo | None) -> bool:
    """Whether this node confirmed another version of the output's original (`known`, see `_version_seen_last`)
    after the output was made: the shared tier keeps outputs of an original this node has seen change (a local
    file rewritten, new bytes of a web original fetched for a new size), which came back fresh once its own were
    dropped."""
    return (known is not None and known.version_of_original != output.source.version_of_original
            and known.checked_at >= output.source.checked_at)


def _thumbnail(transformation: Transformation) -> Transformation:
    """ImageKit's `ik-thumbnail.jpg`: a still, a JPEG unless `f-` says otherwise: an animation's first frame (or
    `pg-N`'s), also in a format that could animate (`f-webp`, `f-gif`, `f-auto` had been the whole animation)."""
    output = transformation.output
    page = output.page or (1 if output.format in MAY_ANIMATE else None)  # `pg-1` of a still is the still
    return replace(transformation, output=replace(output, format=output.format or "jpg", page=page))


def _remember(memo: OrderedDict, key: object, value: object, size: int) -> None:
    """Keep `value` in a first-in-first-out memo of `size` entries (an OrderedDict: a dict's oldest
    key is found by skipping the deleted ones, 1.7 µs at 1024 entries against 0.4)."""
    if len(memo) >= size:
        memo.popitem(last=False)
    memo[key] = value


def _canonical_base(base_url: str) -> str:
    """The configured base, with anything that cannot stand in a header's `<URI>` percent-encoded."""
    return quote(base_url.rstrip("/"), safe="/:@!$&'()*+,;=~%?#[]")


def _canonical_link(base: str, path: str) -> str:
    """`Link: <base/path>; rel="canonical"`, the decoded path percent-encoded (UTF-8): a name such as
    `日本.jpg` stays a valid header, and `>`, `;`, `"` or `,` in a name cannot add link parameters."""
    return f'<{base}/{quote(path, safe="/")}>; rel="canonical"'


def _say_unreadable(original: CurrentOriginal, key: str) -> None:
    if (left_out := _UNREADABLE_LINES.allow(original.origin)) is not None:
        path = key.split("\0")[1]
        log.warning("origin %r answered %r with %d bytes that are no image (starting %r): a page in its place?%s",
                    original.origin, path, len(original.body), original.body[:16], left_out)
