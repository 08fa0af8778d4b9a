"""The Tornado application: `Node` (the per-process state, built once from the validated `Config`) and
the handlers. `ImageHandler` is HTTP in and HTTP out; the request path itself is `edge/pipeline.py`.
`edge/hits.py` answers fresh memory-tier hits in front of this application, with the helpers below
(`image_headers`, `count_image_answer`, `client_address`), so that both answer a hit alike.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections.abc import Callable
from functools import partial
from urllib.parse import quote, unquote_to_bytes

import pyvips
import tornado.web
from tornado import httputil
from tornado.http1connection import HTTP1Connection
from tornado.iostream import StreamClosedError

from . import accesslog, purge, statuspage
from .accesslog import FLUSH_SECONDS, AccessLog
from .cache import Caches, CacheHealth
from .cache.entries import http_time, request_time
from .config import Config
from .errors import (BadRequest, EdgeError, InvalidTransformation, NothingToServe, SendMemoryExhausted, ShuttingDown,
                     StartupError, Unauthorized, one_line)
from .fanout import FORWARDED_HEADER, FanOut
from .flight import SingleFlight, wait_bound
from .httpserver import PURGE_PATH, cors_headers, date_header_now
from .logs import CLIENT_NOISE_SECONDS, REQUEST_ID, REQUEST_TARGET, Sparse
from .metrics import Metrics
from .origin import Origin
from .originals import OriginalSource
from .pipeline import ImageCall, Pipeline, Served
from .routing import Router
from .settings import redact
from .shared_cache import SharedTier
from .signing import NO_EXPIRY
from .transform.formats import EXTENSIONS, IMAGE_EXTENSIONS, MIME_TYPES, TYPE_EXTENSIONS
from .transform.hints import DPR_HEADERS, WIDTH_HEADERS
from .transform.held import DecodeBudget
from .transform.render import Renderer, allow_only_input_loaders

log = logging.getLogger("edge")
#: lines about a request a handler refused (an argument that is not UTF-8, a body Tornado cannot parse) or
#: failed on (a bug, a readiness check's included): a client can cause one per request
_REQUEST_FAILURE_LINES = Sparse(CLIENT_NOISE_SECONDS)

TOUCH_FLUSH_SECONDS = 1.0
GAUGE_REFRESH_SECONDS = 5.0
#: how often each worker tidies the cache (`Caches.tidy`: the value files of stores a killed process left, 0.4 s
#: of CPU for 20 000 files, and a budget lowered since the last run), also as it starts
TIDY_SECONDS = 3600.0
#: a stopping worker waits this long for its last access log lines to be written (a stalled reader of
#: standard output must not hold its exit)
ACCESS_LOG_DRAIN_SECONDS = 2.0
#: `/_edge/ready` checks at most once per this many seconds per worker; probes meanwhile share the answer
READY_SECONDS = 1.0
#: seconds a readiness probe waits for the check, then is answered the cache is stuck: within a balancer's check
#: timeout (the shipped HAProxy's is 1 s, Kubernetes' default too)
READY_ANSWER_SECONDS = 0.5
#: the status logged and counted for a request whose client went away before the answer (nginx's)
CLIENT_CLOSED_REQUEST = 499
CACHE_CONTROL, CONTENT_LENGTH, X_CACHE = "Cache-Control", "Content-Length", "X-Cache"
#: bodies larger than this are written after the header block, not joined to it: Tornado's
#: `write_headers(start_line, headers, body)` (what `finish(body)` comes to) builds one new bytes object
#: of both, a copy of the whole body held until the client has read it (a client that stops reading a
#: 150 MB image held 150 MB more). Below it, the copy costs less than the second write's system call.
LARGE_BODY = 256 * 1024
#: how long an origin's `open()` may take in a starting worker, and its `close()` in a stopping one
ORIGIN_OPEN_SECONDS = 30.0
ORIGIN_CLOSE_SECONDS = 3.0
#: a stopping worker cancels its background work again after this many seconds while some still runs, and goes on
#: without it after `BACKGROUND_STOP_SECONDS`
CANCEL_AGAIN_SECONDS = 0.1
BACKGROUND_STOP_SECONDS = 5.0
#: a worker that replaced a dead one serves without an origin it could not open, and tries `open()` again
#: after this many seconds, twice as long each time, up to `REOPEN_MAX_SECONDS`
REOPEN_FIRST_SECONDS = 1.0
REOPEN_MAX_SECONDS = 60.0
#: `X-Cache` of each `Served.cache`
X_CACHE_VALUES = {cache: cache.upper() for cache in ("hit", "miss", "stale", "shared")}
#: the request headers the node reads that a CORS preflight may have allowed (`Access-Control-Allow-Headers`):
#: content negotiation, revalidation and preconditions, client hints, the request id; by lower-case name
CORS_REQUEST_HEADERS = {name.lower(): name for name in ("Accept", "If-None-Match", "If-Match", "If-Unmodified-Since",
                                                         *WIDTH_HEADERS, *DPR_HEADERS, "X-Request-Id")}
#: seconds a browser may keep a preflight's answer (Firefox's most; Chromium keeps at most 2 hours)
CORS_MAX_AGE = "86400"


class LargeBodies:
    """Bytes of large bodies (over `LARGE_BODY`) this process is sending, held to `[server] send_memory`.
    A body stays in memory until its client has taken it (for an output read from disk, a copy per
    request), and a client may read slowly, or not at all until `send_timeout` drops it: without a
    bound, a thousand such clients hold a thousand bodies. A body is counted once however many clients
    it is being sent to (a herd's one output): the memory is that of one. One body is always let
    through, however large, so that no setting refuses every answer of an image. (The hit shortcut's
    bodies are the memory tier's own, shared by every client: not counted.)"""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.held = 0
        #: id of each body being sent → how many clients it is being sent to (the ids are stable: each
        #: sender holds its body)
        self._senders: dict[int, int] = {}

    def refuses(self, size: int) -> bool:
        """Whether a new body of `size` would not be let through now (also asked from the cache's threads,
        before a stored body is read: `ImageHandler._body_needed`)."""
        held = self.held
        return bool(held) and held + size > self.capacity

    def hold(self, body: bytes) -> bool:
        senders = self._senders.get(id(body), 0)
        if not senders:
            if self.refuses(len(body)):
                return False
            self.held += len(body)
        self._senders[id(body)] = senders + 1
        return True

    def release(self, body: bytes) -> None:
        senders = self._senders.pop(id(body)) - 1
        if senders:
            self._senders[id(body)] = senders
        else:
            self.held -= len(body)


def send_body(connection: HTTP1Connection, body: bytes, then: Callable[[int], None]) -> None:
    """Write `body` after `connection`'s header block (not joined to it: no copy of the body), and
    `then(bytes sent)` once the kernel has taken it all or the connection has closed: what a client that
    left mid-way was sent (as nginx's `$body_bytes_sent`), for the access log's `bytes` and
    `edge_response_bytes_total`. `then` is called later, never before this returns."""
    stream = connection.stream  # an `edge.httpserver` connection's: it counts what it queues and sends
    start = stream.queued
    connection.write(body)  # through Tornado's framing: it counts what `Content-Length` is owed
    try:
        done = stream.write(b"")  # done once all written so far is sent; failed if the connection closes first
    except StreamClosedError:  # closed already
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
    done.add_done_callback(lambda _: then(min(max(stream.sent - start, 0), len(body))))


class Node:
    """The per-process state of a node: config, cache, renderer, router, metrics, origins, pipeline."""

    def __init__(self, config: Config):
        self.config = config
        allow_only_input_loaders(config.limits.allow_svg)
        #: wall-clock seconds for cache freshness; tests replace it to move time forward.
        self.clock: Callable[[], float] = time.time
        self.metrics = metrics = Metrics()
        self.router = Router(config.endpoints, named=config.named_transformations, clock=lambda: self.clock())
        health = CacheHealth(count=lambda tier, kind: metrics.cache_errors.labels(tier, kind).inc())
        self.caches = Caches(config.cache.dir, config.cache.output_size, config.cache.original_size,
                             config.cache.memory_size, health=health,
                             evicted=lambda tier, count: metrics.cache_evictions.labels(tier).inc(count),
                             dropped=lambda tier: metrics.dropped_stores.labels(tier).inc(),
                             too_large=lambda tier: metrics.add(metrics.cache_too_large, (tier,)))
        metrics.initialise(config, (tier.name for tier in self.caches.tiers),
                           libvips=".".join(str(pyvips.version(i)) for i in range(3)))
        # one single flight per kind of key, each with its own leases: an output's and an original's
        # work never share a lease
        waiting = wait_bound(config)
        self.flights = {kind: SingleFlight(kind, config.cache.dir / "flights" / kind, waiting,
                                           coalesced=metrics.coalesced_requests.inc,
                                           abandoned=metrics.abandoned_work.labels(kind).inc, health=health,
                                           version=self.caches.version, bump=self.caches.bump,
                                           purged_since=self.caches.purged_since,
                                           discard=partial(self.caches.discard, tier),
                                           io=partial(self.caches.io_or, None))
                        for kind, tier in (("outputs", self.caches.outputs), ("originals", self.caches.originals))}
        self.originals = OriginalSource(self.caches, self.flights["originals"], config.cache,
                                        config.limits.max_source_bytes, metrics, clock=lambda: self.clock())
        self.renderer = Renderer(config.defaults, config.limits, config.server.transform_threads,
                                 config.server.transform_queue, config.fonts, config.server.transform_queue_timeout,
                                 refused=lambda reason: metrics.add(metrics.transform_refusals, (reason,)),
                                 timed_out=metrics.transform_timeouts.inc,
                                 decode_budget=DecodeBudget(config.server.decode_memory,
                                                            config.server.decode_memory_wait))
        #: the fleet's shared second tier, between this node's disk and the origins
        self.shared = SharedTier.of(config, metrics)
        #: what purges could not do in the shared tier, tried again by one worker of the node
        self.pending_purges = purge.PendingPurges(config.cache.dir / purge.PENDING_FOLDER) if self.shared else None
        self.pipeline = Pipeline(config, self.router, self.caches, self.originals, self.flights["outputs"],
                                 self.renderer, metrics, self.shared)
        self.access_log = AccessLog(config.server.access_log, dropped=metrics.access_log_dropped.inc)
        self.status = statuspage.StatusHistory(self.metrics)
        #: `Cache-Control` of images, and of 404s (as long as the negative cache keeps them)
        self.image_cache_control = f"public, max-age={config.defaults.cache_control_max_age}"
        self.not_found_cache_control = f"public, max-age={int(config.cache.not_found_ttl)}"
        #: every answer to an image request carries these, errors too: a page's `fetch()` reads a 404's status
        #: only with them (`[server] cors_origin`; none when it is "")
        self.cors_headers = cors_headers(config.server.cors_origin)
        #: image requests being answered by this process; sampled into the gauge (an mmap write
        #: per request and per answer is a measurable part of a cache hit)
        self.inflight = 0
        #: the image requests awaiting the pipeline, which `give_up_serving` answers 503
        self.serving: set[ImageHandler] = set()
        self.large_bodies = LargeBodies(config.server.send_memory)
        self._readiness: asyncio.Future[tuple[bool, str]] | None = None  # the last check (`readiness`)
        self._readiness_at = 0.0
        self._background: list[asyncio.Task] = []
        #: purges received from outside go to the other nodes of the fleet too
        self.fan_out = FanOut(config.fleet, self.metrics.fleet_purge_calls) if config.fleet.others else None

    async def start(self, replacing: bool = False) -> None:
        """Open the origins and the shared tier, then start the background work. An origin that does not
        open stops the worker (`StartupError`): at the node's start and on a reload, a config or its
        credentials are so refused at once (a reload keeps the running workers). `replacing`: this worker
        replaces one that served and exited on its own, the config known good, so it serves without such an origin
        (`_open_later`): its storage away for a moment had stopped every replacement, and then the whole node,
        every other origin's endpoints with it."""
        unopened = []
        for origin in self.config.origins:
            try:
                await open_origin(origin)
            except StartupError as error:
                if not replacing:
                    raise
                log.error("%s: this worker replaces one that exited, so it serves without it (its fetches fail, "
                          "X-Edge-Error: %s: not_open) and tries again", error, origin.name)
                self.originals.unopened[origin.name] = str(error)
                unopened.append(origin)
        for flight in self.flights.values():
            await self.caches.io(flight.open_leases)
        if self.shared is not None:
            await self.shared.open()
            await self.apply_purges()  # before serving: what it cached may have been purged while it was away
        self._background = [
            *(asyncio.create_task(self._open_later(origin)) for origin in unopened),
            asyncio.create_task(self._every(TOUCH_FLUSH_SECONDS, self._cache_housekeeping)),
            asyncio.create_task(self._every(FLUSH_SECONDS, self._sample)),
            asyncio.create_task(self._every(GAUGE_REFRESH_SECONDS, self._refresh_gauges)),
            asyncio.create_task(self._every(statuspage.SNAPSHOT_SECONDS, self.status.take)),
            asyncio.create_task(self._every(TIDY_SECONDS, self._tidy_cache, first=0)),
        ]
        if self.shared is not None:
            every = self.config.shared_cache.purge_journal_every
            self._background += [asyncio.create_task(self._every(every, self.apply_purges)),
                                 asyncio.create_task(self._every(purge.SHARED_RETRY_SECONDS, self._retry_purges))]
        await self._refresh_gauges()
        await self.status.take()

    async def _open_later(self, origin: Origin) -> None:
        """Try `open()` again, less and less often, until it works: then the origin is fetched from."""
        delay = REOPEN_FIRST_SECONDS
        while True:
            await asyncio.sleep(delay)
            delay = min(2 * delay, REOPEN_MAX_SECONDS)
            try:
                await open_origin(origin)
            except StartupError as error:
                log.error("%s; tried again in %.0fs", error, delay)
                continue
            del self.originals.unopened[origin.name]
            log.info("origin %r opened: fetched from again", origin.name)
            return

    async def stop(self) -> None:
        await self._stop_background()
        if self.pending_purges is not None:
            self.pending_purges.close()
        await self.settle()  # what was answered is stored before the cache closes
        self.metrics.flush()
        await self._cache_housekeeping()
        self.access_log.flush()
        await asyncio.to_thread(self.access_log.written, ACCESS_LOG_DRAIN_SECONDS)
        for origin in self.config.origins:
            if origin.name not in self.originals.unopened:
                await close_origin(origin)
        if self.shared is not None:
            await self.shared.close()
        self.renderer.shutdown()
        if self.fan_out is not None:
            self.fan_out.close()
        self.caches.close(also=tuple(flight.release_thread for flight in self.flights.values()))
        for flight in self.flights.values():
            flight.close()

    async def _stop_background(self) -> None:
        """Cancel the background work, and again while some runs on: Python 3.11's `asyncio.wait_for` swallows a
        cancellation that comes as the call it waits on ends (a journal reading every 0.2 s did), and its loop went on,
        holding the worker's stop for good. Bounded: a task that never ends is left, and said so."""
        pending = set(self._background)
        deadline = time.monotonic() + BACKGROUND_STOP_SECONDS
        while pending and time.monotonic() < deadline:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=CANCEL_AGAIN_SECONDS)
        if pending:
            log.error("%d background task(s) still running after %gs of cancelling; the worker stops without them: %s",
                      len(pending), BACKGROUND_STOP_SECONDS, ", ".join(sorted(task.get_name() for task in pending)))

    def give_up_serving(self) -> int:
        """Answer every image request still awaiting the pipeline `503 node shutting down` (the
        worker's drain is over); how many there were."""
        handlers = list(self.serving)
        for handler in handlers:
            handler.give_up()
        return len(handlers)

    async def settle(self) -> None:
        """Wait (bounded) until the results already answered are stored."""
        for flight in self.flights.values():
            await flight.settle()
        await self.pipeline.settle()
        await self.caches.io(self.caches.originals.flush_versions)  # else written within a second

    async def _every(self, seconds: float, job, first: float | None = None) -> None:
        """`job()` every `seconds`, the first time after `first` seconds (default: `seconds`)."""
        asyncio.current_task().set_name(job.__name__)  # what a stop that cannot end it names
        delay = seconds if first is None else first
        while True:
            await asyncio.sleep(delay)
            delay = seconds
            try:
                await job()
            except Exception:  # a periodic job must never die silently
                log.exception("background job %s failed", job.__name__)

    async def _tidy_cache(self) -> None:
        await self.caches.io(self.caches.tidy)

    async def apply_purges(self) -> None:
        """Purge this node's tiers of what the fleet's purge journal holds that they have not applied
        (`edge/purge_journal.py`): the purges sent while this node was away, cut off or not called.
        Never raises: a worker starts and serves whatever the journal holds."""
        try:
            prefixes = await self.shared.read_purges()
            if not prefixes:
                return
            # recorded as made when the journal says, not now: the shared tier's objects made since are current
            removed = await self.caches.io(purge.forget_here, self.caches, prefixes,
                                           "the fleet's journal's purges (tried again at the next reading)",
                                           self.shared.journal.made_at)
            if None in removed.values():
                return
            await asyncio.to_thread(self.shared.journal.applied, len(prefixes))
            log.info("applied %d purge(s) of the fleet's journal", len(prefixes))
        except Exception:  # a bug: logged, and the worker goes on
            log.exception("reading the fleet's purge journal failed")

    async def _retry_purges(self) -> None:
        await purge.retry_pending(self.pending_purges, self.shared, self.caches.io)
        await self.count_pending_purges()

    async def count_pending_purges(self) -> None:
        """`edge_purges_pending`: after each round of retries, and after a purge that left one."""
        if self.pending_purges is None:
            return
        if (count := await self.caches.io_or(None, self.pending_purges.count)) is not None:  # (None: the disk hangs)
            self.metrics.purges_pending.set(count)

    async def _sample(self) -> None:
        self.metrics.inflight_requests.set(self.inflight)
        self.metrics.sample_process()
        self.access_log.flush()

    async def _cache_housekeeping(self) -> None:
        await self.caches.io(self.caches.every_second)
        await self.caches.close_replaced()
        for flight in self.flights.values():
            await flight.follow_replacement()

    async def readiness(self) -> tuple[bool, str]:
        """`check_readiness`, at most once per `READY_SECONDS`: the requests meanwhile share its answer
        (a check costs ~2 ms of CPU and a file written: a flood of unauthenticated probes would
        otherwise cost 13 health checks' CPU each, and a disk write)."""
        now = time.monotonic()
        if self._readiness is None or now - self._readiness_at >= READY_SECONDS:
            self._readiness_at, self._readiness = now, asyncio.ensure_future(check_readiness(self.caches))
        try:
            return await asyncio.wait_for(asyncio.shield(self._readiness), READY_ANSWER_SECONDS)
        except TimeoutError:
            # a cache disk beginning to hang holds the check for `IO_WAIT_SECONDS` (5 s): the shipped HAProxy gives
            # a check 1 s, and marked the serving node down for seconds (fleet probe)
            degraded = list(dict.fromkeys([*self.caches.health.degraded(), "folder: stuck"]))
            return True, f"ready, cache degraded: {'; '.join(degraded)}"

    def cache_control(self, signed_until: int | None, provisional: bool = False,
                      fresh_until: float | None = None) -> str:
        """An image's `Cache-Control`: caches in front must not keep an expiring signed URL's image
        past its expiry, nor a provisional answer (a stale copy the origin could not confirm, the `di-`
        image standing in for a missing original) longer than a 404: the current or the real image may
        come at any time, and a CDN would otherwise keep the stand-in for `cache_control_max_age`; nor a
        stand-in past `fresh_until`, when the node makes it again."""
        if (signed_until is None or signed_until == NO_EXPIRY) and fresh_until is None:
            return self.not_found_cache_control if provisional else self.image_cache_control
        longest = int(self.config.cache.not_found_ttl) if provisional else self.config.defaults.cache_control_max_age
        now = self.clock()
        if signed_until is not None and signed_until != NO_EXPIRY:
            longest = min(longest, signed_until - int(now))
        if fresh_until is not None:
            longest = min(longest, math.ceil(fresh_until - now))
        return f"public, max-age={max(0, longest)}"

    async def _refresh_gauges(self) -> None:
        await self.caches.io(self.metrics.observe_cache, self.caches.tiers, self.config.cache.dir)


class BaseHandler(tornado.web.RequestHandler):
    node: Node
    #: the `X-Edge-Error` of an error answer, for the access log
    edge_error: str | None = None
    request_id: str | None = None

    def initialize(self, node: Node) -> None:
        self.node = node
        self.started = time.monotonic()
        self.answered: float | None = None

    def seconds(self) -> float:
        """How long the request has taken until its answer was written out to the connection (the time a
        client then takes to download a large body is not the node's): by the monotonic clock, not Tornado's
        `request_time()` (the wall clock's: a request across a step back of the clock took -2 h, in the access
        log and the duration histogram's sum, which then went down)."""
        return (self.answered or time.monotonic()) - self.started

    def clear(self) -> None:
        # Tornado's `clear` (called for every answer, and again for an error's): the `Date` formatted
        # once a second (per response it was 4 % of a cache hit's Python time), no `Server` header (it
        # named Tornado's version), the request id (checked or made by `request_id`: no `set_header`
        # check needed), and `nosniff` on every answer: a body is what its `Content-Type` says (an error's
        # line may quote the request), never a page a browser sniffed in it
        if self.request_id is None:
            self.request_id = accesslog.request_id(header_value(self.request.headers, "X-Request-Id"))
        self._headers = httputil.HTTPHeaders({"Content-Type": "text/html; charset=UTF-8", "Date": date_header_now(),
                                              "X-Request-Id": self.request_id, "X-Content-Type-Options": "nosniff"})
        self._write_buffer = []
        self._status_code = 200
        self._reason = httputil.responses[200]

    def prepare(self) -> None:
        # in the request's own task (Tornado's `_execute`): what is logged while it is served names it
        REQUEST_ID.set(self.request_id)
        REQUEST_TARGET.set(f"{self.request.method} {self.request.host}{self.request.path}")

    def compute_etag(self) -> None:
        return None  # ETags are computed once, when an output is stored, never by hashing each body

    def log_exception(self, typ, value, tb) -> None:
        # Tornado's own lines name the request by its whole target, query included (a signed URL's `ik-s`,
        # a token), one per request: here by its path, one per `CLIENT_NOISE_SECONDS` per status or exception.
        # A client's error is no warning (warnings are what an operator acts on), and its reason comes before
        # the path, which a client makes as long as it likes (the line's cut had taken the reason)
        request = self.request
        summary = f"{request.method} {request.path} ({request.remote_ip})"
        if isinstance(value, tornado.web.HTTPError):
            message = value.get_message()
            if message and (left_out := _REQUEST_FAILURE_LINES.allow(value.status_code)) is not None:
                log.log(logging.INFO if value.status_code < 500 else logging.WARNING, "%d %s, in %s%s",
                        value.status_code, message, summary, left_out)
        elif (left_out := _REQUEST_FAILURE_LINES.allow(typ)) is not None:
            log.error("uncaught exception in %s%s", summary, left_out, exc_info=(typ, value, tb))

    def write_error(self, status_code: int, **kwargs) -> None:
        # Only reached for errors that are not `EdgeError`s (Tornado's `HTTPError`s: a method the
        # handler has not, an argument that is not UTF-8; or a bug): never show a traceback.
        exception = kwargs["exc_info"][1] if "exc_info" in kwargs else None
        message = self._reason
        if status_code >= 500:
            message = "internal error"
        elif isinstance(exception, tornado.web.HTTPError) and status_code == 400 and exception.log_message:
            # Tornado's words name the argument (`Invalid unicode in tr: b'\\xff'`); `one_line` below
            try:
                message = exception.log_message % exception.args if exception.args else exception.log_message
            except (TypeError, ValueError):
                pass
        if status_code == 405:
            headers = {"Allow": ", ".join(self.allowed_methods()), "X-Edge-Error": "method_not_allowed"}
        else:
            headers = {"X-Edge-Error": "internal" if status_code >= 500 else "bad_request"}
        self._send_plain(status_code, message, headers)

    @classmethod
    def allowed_methods(cls) -> list[str]:
        """The methods this handler answers (a 405's `Allow`, RFC 9110 15.5.6)."""
        return [method for method in cls.SUPPORTED_METHODS
                if getattr(cls, method.lower()) is not tornado.web.RequestHandler._unimplemented_method]

    @classmethod
    def may_take(cls, method: str) -> bool:
        """Whether a request with `method` may get an answer other than a 405."""
        return method in cls.allowed_methods()

    def _send_plain(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        """An error answer (or a plain one): one `text/plain` line. The one place error bodies are
        written: `one_line` escapes what could break the line (a message may quote the client's input),
        and header values are kept to printable ASCII (Tornado refuses CR and LF in them, and encodes
        them as Latin-1)."""
        self.clear()
        self.set_status(status)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():  # may replace Cache-Control
            self.set_header(name, _header_safe(value))
        self.edge_error = self._headers.get("X-Edge-Error")
        self.finish(one_line(message) + "\n")

    def _send_error(self, error: EdgeError) -> None:
        headers = dict(error.headers)
        if error.kind and "X-Edge-Error" not in headers:
            headers["X-Edge-Error"] = error.kind
        if isinstance(error, NothingToServe):
            headers["Cache-Control"] = self.node.not_found_cache_control if error.max_age is None \
                else f"public, max-age={error.max_age}"
        self._send_plain(error.status, error.message, headers)


def _header_safe(value: str) -> str:
    """A header value as printable ASCII (`one_line`, then non-ASCII as `\\xe9`, `\\u65e5`)."""
    return one_line(value).encode("ascii", "backslashreplace").decode("ascii")


class UnroutedHandler(BaseHandler):
    """Every request no route takes (Tornado's own answer is an HTML page): a request target that is
    not a path (`*`, `example.com:443`, an absolute URL of another scheme; `edge.httpserver` has made
    an `http(s)://` one a path already) is a 400, any other path a 404, whatever the method."""

    def prepare(self) -> None:
        self._answer()

    def write_error(self, status_code: int, **kwargs) -> None:
        self._answer()  # a method Tornado does not know (405 before `prepare`): the same answer

    def _answer(self) -> None:
        if self.request.path.startswith("/"):
            self._send_plain(404, "not found", {"X-Edge-Error": NothingToServe.kind})
        else:
            self._send_plain(400, "invalid request target", {"X-Edge-Error": BadRequest.kind})

    def on_finish(self) -> None:
        # counted as the image requests no endpoint took: open-proxy scans (`CONNECT`, `GET *`) showed in no metric
        count_image_answer(self.node.metrics, "-", self.get_status(), "error", self.seconds(), 0)


class ImageHandler(BaseHandler):
    #: what answered it, for `cache_label`; None for a CORS preflight, which asked for no image
    cache_result: str | None = "miss"
    endpoint_label = "-"
    origin_name: str | None = None
    body_bytes = 0
    #: the task answering this request while it awaits the pipeline (cancelled if the client goes away)
    _serving: asyncio.Task | None = None
    _client_gone = False
    _given_up = False
    #: whether `prepare` counted the request in `Node.inflight`
    _counted = False
    #: `Node.cors_headers`, once `initialize` has the node
    cors_headers: dict[str, str] = {}

    async def get(self) -> None:
        await self._serve()

    async def head(self) -> None:
        await self._serve()

    def prepare(self) -> None:
        super().prepare()
        if self.request.method == "OPTIONS" and self._answered_preflight():
            return
        self.node.inflight += 1
        self._counted = True

    def initialize(self, node: Node) -> None:
        super().initialize(node)
        self.cors_headers = node.cors_headers
        self._headers.update(self.cors_headers)  # Tornado's first `clear` came before the node was known

    def clear(self) -> None:
        super().clear()
        self._headers.update(self.cors_headers)  # on every answer, errors included

    @classmethod
    def may_take(cls, method: str) -> bool:
        return method == "OPTIONS" or super().may_take(method)  # a CORS preflight is answered (`prepare`)

    def _answered_preflight(self) -> bool:
        """Answer a CORS preflight (an `OPTIONS` with `Origin` and `Access-Control-Request-Method`) when
        CORS is on; whether it was one. Any other `OPTIONS` is a 405, as before."""
        headers = self.request.headers
        if not (self.cors_headers and "Origin" in headers and "Access-Control-Request-Method" in headers):
            return False
        self.set_status(204)
        self.cache_result = None
        self._headers["Access-Control-Allow-Methods"] = "GET, HEAD"
        # only the headers the node reads: a browser then refuses to send any other (a cookie-like token)
        requested = (name.strip().lower() for name in headers.get("Access-Control-Request-Headers", "").split(","))
        allowed = [CORS_REQUEST_HEADERS[name] for name in requested if name in CORS_REQUEST_HEADERS]
        if allowed:
            self._headers["Access-Control-Allow-Headers"] = ", ".join(allowed)
        self._headers["Access-Control-Max-Age"] = CORS_MAX_AGE
        self.finish()
        return True

    def on_connection_close(self) -> None:
        if self._serving is not None:
            self._client_gone = True
            self._serving.cancel()  # the flight goes on if other requests wait for the same work

    def give_up(self) -> None:
        """Stop awaiting the pipeline and answer 503 (`Node.give_up_serving`)."""
        if self._serving is not None:
            self._given_up = True
            self._serving.cancel()

    @property
    def cache_label(self) -> str | None:
        """The answer's `cache` in the latency histogram and the access log: `error` for an error answer (a 4xx
        or 5xx, Tornado's 405 and a 412 included), apart from the misses: a crowd of instant 400s hid slow ones.
        A request whose client left (499) is labelled by the work it waited on. None for a CORS preflight: not in
        the histogram (its instant 204s were misses)."""
        status = self.get_status()
        return "error" if status >= 400 and status != CLIENT_CLOSED_REQUEST else self.cache_result

    def on_finish(self) -> None:
        if self._counted:  # not when Tornado refused the method before `prepare` (a 405)
            self.node.inflight -= 1
        count_image_answer(self.node.metrics, self.endpoint_label, self.get_status(), self.cache_label,
                           self.seconds(), self.body_bytes)

    async def _serve(self) -> None:
        headers = self.request.headers
        # as sent, as the path's `tr:` is: Tornado's `get_query_arguments` strips spaces and turns control
        # characters into spaces (`?tr=w-100%20` was `w-100`, a text layer's `%00` a space)
        try:
            transformations = [value.decode() for value in self.request.query_arguments.get("tr", ())] \
                if self.request.query else []
        except UnicodeDecodeError:  # as the path says it (Tornado's message echoed the bytes)
            self._send_error(InvalidTransformation("tr", "not UTF-8 after percent-decoding"))
            return
        if len(transformations) > 1:  # which one would be meant? (Tornado's argument: the last)
            self._send_error(InvalidTransformation("tr", "given more than once in the query"))
            return
        call = ImageCall(self.request.host, self.request.uri, transformations[0] if transformations else None,
                         header_value(headers, "Accept"), headers, self._body_needed)
        self._serving = task = asyncio.current_task()
        self.node.serving.add(self)
        try:
            served = await self.node.pipeline.serve(call)
        except asyncio.CancelledError:
            if not (self._client_gone or self._given_up):
                raise
            task.uncancel()  # our own cancel: counted on the request's endpoint, as its answer would have been
            self.endpoint_label = self.node.pipeline.endpoint_of(call)
            if self._client_gone:  # nobody to answer
                self.set_status(CLIENT_CLOSED_REQUEST, "Client Closed Request")
            else:  # the worker is stopping
                self._send_error(ShuttingDown())
            return
        except Exception:  # a bug (Tornado answers 500): counted on the request's endpoint, whose series exists
            self.endpoint_label = self.node.pipeline.endpoint_of(call)
            raise
        finally:
            self._serving = None
            self.node.serving.discard(self)
        self.endpoint_label, self.cache_result = served.endpoint, served.cache
        if served.error is not None:
            self.origin_name = served.error.origin
            self._send_error(served.error)
        elif (body := self._respond(served)) is not None:
            await self._send_large(body)

    def _body_needed(self, size: int, etag: str | None) -> bool:
        """Whether `_respond` sends a stored output's body, still on disk (asked from a cache thread:
        `BeforeReading`): not for a HEAD nor a 304, which are then answered without reading it. `_respond`'s
        refusal of a large body is made here already, before it is read: else a crowd of refused requests
        reads theirs, four at a time, over the worker's `send_memory` (docs/security.md#memory). A body that
        gets through here is held in `_respond`."""
        headers = self.request.headers
        if self.request.method == "HEAD" or (etag and (_etag_matches(header_value(headers, "If-None-Match"), etag)
                                                       or _failed_precondition(headers, etag, None))):
            return False
        if size > LARGE_BODY and self.node.large_bodies.refuses(size):
            raise SendMemoryExhausted()
        return True

    def _query_is_true(self, name: str) -> bool:
        """Whether the query's (last) `name` is `true`: its bytes compared, none decoded (Tornado's decoding refused
        one that is not UTF-8 with a 400 quoting it, after the image was made)."""
        values = self.request.query_arguments.get(name) if self.request.query else None
        return bool(values) and values[-1].strip() == b"true"

    def _respond(self, served: Served) -> bytes | None:
        """Answer with `served`'s output; a body over `LARGE_BODY` is returned, to be sent by `_send_large`."""
        output = served.output
        self.origin_name = output.source.origin
        if _failed_precondition(self.request.headers, output.etag, output.last_modified):
            self._send_plain(412, "precondition failed", {"X-Edge-Error": "precondition_failed"})
            return None
        # Tornado's header map, filled without `set_header`'s checks of each value: these were
        # checked once, when the output was made (`CachedOutput.headers`), or are the node's own. `Date` as
        # answered, not as the request came: a `Last-Modified` of when the origin confirmed the original, later
        # (a file dated in the future), would have followed it, and `If-Unmodified-Since: <Date>` failed
        self._headers["Date"] = date_header_now()
        self._headers.update(image_headers(self.node, served, self.cache_result))
        name = served.request.attachment
        # ImageKit's query word; on a Cloudinary-style endpoint the query changes nothing (`fl_attachment` says it)
        if name is None and served.request.endpoint.url_style != "cloudinary" and self._query_is_true("ik-attachment"):
            name = ""
        if name is not None:
            self._headers["Content-Disposition"] = attachment(self.request.path, output.content_type, name)
        if _etag_matches(header_value(self.request.headers, "If-None-Match"), output.etag):
            self.set_status(304)
            self.finish()
            return None
        size = output.size  # an `UnreadOutput`'s too: a HEAD's Content-Length is that of the body it would get
        self._headers[CONTENT_LENGTH] = str(size)
        if self.request.method == "HEAD":
            self.finish()
            return None
        if size <= LARGE_BODY:
            self.body_bytes = size
            self.finish(output.body)
            return None
        if not self.node.large_bodies.hold(output.body):
            self._send_error(SendMemoryExhausted())
            return None
        return output.body

    async def _send_large(self, body: bytes) -> None:
        """Send a body over `LARGE_BODY` after the header block (else Tornado joins the two: a copy of the
        body), and finish once it is sent or its client has gone: `body_bytes` is what it was sent."""
        self.flush()
        sent: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        send_body(self.request.connection, body, sent.set_result)
        self.answered = time.monotonic()  # written out: how long its client then takes is not the node's
        try:
            self.body_bytes = await sent
        finally:
            self.node.large_bodies.release(body)
        self.finish()


async def open_origin(origin: Origin) -> None:
    """`origin.open()`, bounded, and a failure that names the origin (its message's credentials masked)."""
    try:
        async with asyncio.timeout(ORIGIN_OPEN_SECONDS):
            await origin.open()
    except BaseException as error:  # a plugin's bug too, whatever it raises: one line naming it, no traceback
        if _ours(error):
            raise
        raise StartupError(f"origin {origin.name!r} (type {origin.type_name!r}) did not open: "
                           f"{_why(error, ORIGIN_OPEN_SECONDS)}") from None


async def close_origin(origin: Origin) -> None:
    """`origin.close()`, bounded: a stopping worker must not wait for a plugin's hung close until killed."""
    try:
        async with asyncio.timeout(ORIGIN_CLOSE_SECONDS):
            await origin.close()
    except BaseException as error:
        if _ours(error):
            raise
        log.warning("origin %r did not close: %s", origin.name, _why(error, ORIGIN_CLOSE_SECONDS))


def _ours(error: BaseException) -> bool:
    """Whether `error` is the cancellation of the calling task (a plugin may raise a `CancelledError` of its own)."""
    return isinstance(error, asyncio.CancelledError) and asyncio.current_task().cancelling() > 0


def _why(error: BaseException, seconds: float) -> str:
    """An origin's `open` or `close` failure in a line: its timeout, or its exception (credentials masked)."""
    return f"no answer in {seconds:g} s" if isinstance(error, TimeoutError) else \
        f"{type(error).__name__}: {redact(str(error))}"


def image_headers(node: Node, served: Served, cache: str) -> tuple[tuple[str, str], ...]:
    """An image answer's headers beyond `Date`, `X-Request-Id` and `Node.cors_headers` (`ImageHandler`,
    and `edge.hits` for its hits): the output's own, `Cache-Control` and `X-Cache`."""
    output, request = served.output, served.request
    provisional = output.stand_in or cache == "stale"
    # a stand-in is as fresh as `OriginalSource.as_stand_in` made its source
    fresh_until = output.source.checked_at + node.config.cache.original_ttl if output.stand_in else None
    cache_control = node.cache_control(request.signed_until, provisional=provisional, fresh_until=fresh_until)
    if request.immutable and not provisional:  # Cloudinary's `fl_immutable_cache`: no revalidation on reload
        cache_control += ", immutable"
    return (*output.headers, (CACHE_CONTROL, cache_control), (X_CACHE, X_CACHE_VALUES[cache]))


def count_image_answer(metrics: Metrics, endpoint: str, status: int, cache: str | None, seconds: float,
                       body_bytes: int) -> None:
    """The metrics of an answered image request (`ImageHandler`, and `edge.hits` for its hits); its latency
    unless `cache` is None (a CORS preflight)."""
    metrics.add(metrics.http_requests, (endpoint, str(status)))
    if cache is not None:
        metrics.observe(metrics.http_duration, (endpoint, cache), seconds)
    if body_bytes:
        metrics.add(metrics.response_bytes, (endpoint,), body_bytes)
    if status == 404:
        metrics.add(metrics.not_found, (endpoint,))


def client_address(node: Node, remote_ip: str, headers: httputil.HTTPHeaders) -> str:
    """The client the access log names: the peer, or what trusted proxies say it forwarded for."""
    trusted = node.config.server.trusted_proxies
    return accesslog.client_address(remote_ip, headers.get("X-Forwarded-For"), trusted) if trusted else remote_ip


def header_value(headers: httputil.HTTPHeaders, name: str) -> str | None:
    """`headers.get(name)`, without the exception that a missing header costs there (1 µs, several times
    a request)."""
    return headers[name] if name in headers else None


#: characters of the file's name (the URL's last segment, or `fl_attachment`'s) that `attachment` keeps
ATTACHMENT_NAME_CHARS = 200


def attachment(request_path: str, content_type: str, name: str = "") -> str:
    """`Content-Disposition` for `ik-attachment=true` and `fl_attachment[:<name>]`: the file name is
    `name` or else the URL's last segment, with the extension of what is sent (`photo.jpg` asked for as
    WebP downloads as `photo.webp`), in ASCII in `filename` and whole in `filename*` (RFC 6266)."""
    if not name:
        # the path as Tornado reads the request line, a character per byte: bytes sent unencoded are UTF-8 too
        name = unquote_to_bytes(request_path.rpartition("/")[2].encode("latin-1", errors="replace")).decode(
            errors="replace")
    name = name[:ATTACHMENT_NAME_CHARS]
    stem, dot, extension = name.rpartition(".")
    if not dot or extension.lower() not in IMAGE_EXTENSIONS:
        stem = name
    if not (stem and MIME_TYPES.get(EXTENSIONS.get(extension.lower(), "")) == content_type):  # `p.JPG`, `p.jpeg` kept
        name = f"{stem or 'image'}.{TYPE_EXTENSIONS.get(content_type, 'img')}"
    fallback = re.sub(r"[^A-Za-z0-9._ -]", "_", name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    candidates = (tag.strip().removeprefix("W/") for tag in if_none_match.split(","))
    return etag in candidates


def _failed_precondition(headers: httputil.HTTPHeaders, etag: str, last_modified: str | None) -> bool:
    """Whether an image answer's `If-Match`, or without it its `If-Unmodified-Since`, fails (RFC 9110 13.2.2,
    steps 1 and 2): the answer is then a 412, never the image. `If-Match` compares strongly (a `W/` tag never
    matches); a date that does not parse, or an output without `Last-Modified`, leaves the request as it is."""
    if "If-Match" in headers:
        if_match = headers["If-Match"].strip()
        return if_match != "*" and etag not in (tag.strip() for tag in if_match.split(","))
    if last_modified is None or "If-Unmodified-Since" not in headers:
        return False
    since, modified = request_time(headers["If-Unmodified-Since"]), http_time(last_modified)
    return since is not None and modified is not None and modified > since


class HealthHandler(BaseHandler):
    """Liveness: the process answers."""

    def get(self) -> None:
        self._send_plain(200, "ok")

    head = get  # RFC 9110 9.3.2: what takes GET takes HEAD (Tornado sends no body); balancers probe with either


class ReadyHandler(BaseHandler):
    """Readiness: config loaded, libvips works. A failing cache does not make the node unready: it
    still answers every request (uncached), so a load balancer should keep sending it traffic; the
    body says `ready, cache degraded: …` (and `edge_cache_errors_total` counts the failures)."""

    async def get(self) -> None:
        ready, body = await self.node.readiness()
        self._send_plain(200 if ready else 503, body)

    head = get


async def check_readiness(caches: Caches) -> tuple[bool, str]:
    """Whether libvips works, and `/_edge/ready`'s body (blocking work in threads: an encode, and a
    probe file written in the cache folder)."""
    try:
        await asyncio.to_thread(_check_libvips)
        degraded = await caches.io_or(caches.health.degraded(), caches.check)
    except (pyvips.Error, OSError) as exc:
        log.warning("not ready: %s", exc)
        return False, "not ready"
    except Exception:  # a bug: not ready too, and its traceback (once an interval: probes come every second)
        if (left_out := _REQUEST_FAILURE_LINES.allow("readiness")) is not None:
            log.exception("not ready: the readiness check failed%s", left_out)
        return False, "not ready"
    return True, f"ready, cache degraded: {'; '.join(degraded)}" if degraded else "ready"


def _check_libvips() -> None:
    pyvips.Image.black(2, 2).jpegsave_buffer()


class MetricsHandler(BaseHandler):
    def initialize(self, node: Node, here: bool = True) -> None:
        super().initialize(node)
        self.here = here  # False on the main port when `[server] metrics_port` serves them

    async def get(self) -> None:
        if not self.here:
            self._send_plain(404, "not found")
            return
        text = await self.node.metrics.scraped()
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(text)

    head = get


class PurgeHandler(BaseHandler):
    """`POST /_edge/purge` with the admin token as a bearer token; off (404) when no token is set."""

    async def post(self) -> None:
        node = self.node
        token = node.config.admin_token
        try:
            if token is None:
                raise NothingToServe("not found")
            if not token.is_bearer_of(self.request.headers.get("Authorization")):
                raise Unauthorized("unauthorized", headers={"WWW-Authenticate": 'Bearer realm="edge purge"'})
            target = purge.parse_body(self.request.body)
            status, answer = await purge.purge_serving(node.caches, node.router, target, token, node.fan_out,
                                                       node.shared, node.pending_purges,
                                                       forwarded=FORWARDED_HEADER in self.request.headers)
        except EdgeError as error:
            self._send_error(error)  # with its X-Edge-Error, as the image requests' (a refused token: `unauthorized`)
            return
        log.info("purged %d cached entries for %s", answer["removed"], target)
        node.metrics.purged_entries.inc(answer["removed"])
        if answer.get("shared", {}).get("retrying"):  # the gauge had said 0 until the next round, 10 s on
            await node.count_pending_purges()
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(answer) + "\n")

    def on_finish(self) -> None:
        # every answer, refusals too: a token being guessed shows in Prometheus, not only in the access log
        self.node.metrics.purge_requests.labels(str(self.get_status())).inc()


class StatusHandler(BaseHandler):
    """`GET /_edge/status`: the status page (`edge.statuspage`), behind the admin token when one is set."""

    async def get(self) -> None:
        token = self.node.config.admin_token
        if token is not None and not statuspage.authorized(self.request.headers.get("Authorization"), token):
            self._send_plain(401, "unauthorized", {"WWW-Authenticate": 'Basic realm="edge status"',
                                                   "X-Edge-Error": Unauthorized.kind})
            return
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        self.finish(await self.node.status.page())

    head = get


#: answered without an access-log line unless `[server] access_log_probes`
PROBES = (HealthHandler, ReadyHandler, MetricsHandler)


#: the paths that are not images, and their handlers (every other path is `ImageHandler`'s)
ADMIN_HANDLERS = {"/_edge/health": HealthHandler, "/_edge/ready": ReadyHandler, PURGE_PATH: PurgeHandler,
                  "/_edge/status": StatusHandler, "/metrics": MetricsHandler}


def refuses_method(method: str, path: str) -> bool:
    """Whether `make_app`'s application answers `method` on `path` with a 405, whatever else the request says
    (`edge.httpserver` answers it at once, not after a body held back for a `100 (Continue)`)."""
    return not ADMIN_HANDLERS.get(path, ImageHandler).may_take(method)


def make_app(node: Node) -> tornado.web.Application:
    args = {"node": node}
    metrics_args = {**args, "here": node.config.server.metrics_port is None}
    admin = [(path, handler, metrics_args if handler is MetricsHandler else args)
             for path, handler in ADMIN_HANDLERS.items()]
    # images first, so that an image request is matched by one pattern, not six: every path but the
    # admin ones (which Tornado anchors at both ends)
    images = "/(?!(?:" + "|".join(path.removeprefix("/") for path in ADMIN_HANDLERS) + ")$).*"
    return tornado.web.Application(
        [(images, ImageHandler, args), *admin],
        log_function=_log_request,
        compress_response=False,
        default_handler_class=UnroutedHandler,
        default_handler_args=args,
    )


def make_metrics_app(node: Node) -> tornado.web.Application:
    """`/metrics` alone, for `[server] metrics_port`."""
    return tornado.web.Application([(r"/metrics", MetricsHandler, {"node": node})], log_function=_log_request,
                                   default_handler_class=UnroutedHandler, default_handler_args={"node": node})


def _log_request(handler: tornado.web.RequestHandler) -> None:
    if not isinstance(handler, BaseHandler):  # Tornado's own 404/405 handlers
        return
    node, request = handler.node, handler.request
    access_log = node.access_log
    image = isinstance(handler, ImageHandler)
    if not access_log.enabled or (not image and isinstance(handler, PROBES)
                                  and not node.config.server.access_log_probes):
        return
    headers = request.headers
    access_log.write(request.method, request.path, handler.get_status(), handler.seconds(),
                     client_address(node, request.remote_ip, headers), request.host,
                     header_value(headers, "User-Agent"), header_value(headers, "Referer"), handler.request_id,
                     handler.edge_error, *((handler.endpoint_label, handler.cache_label, handler.body_bytes,
                                            handler.origin_name) if image else ()))
