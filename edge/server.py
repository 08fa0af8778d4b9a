"""The Tornado application. `ImageHandler._serve` is the request path, top to bottom:

route → parse → cache lookup → [single flight: original through the originals tier and origin chain →
transform → store] → respond.

Everything a request needs is built once per process in `Node` from the validated `Config`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial

import pyvips
import tornado.web

from . import purge
from .accesslog import FLUSH_SECONDS, AccessLog
from .cache import CachedOutput, Caches, SourceInfo, StoredOriginal, output_key, strong_etag
from .config import Config
from .errors import EdgeError, NotFound, OriginFailed, Unauthorized, UnprocessableSource
from .fanout import FORWARDED_HEADER, FanOut
from .shared_cache import SharedTier
from .flight import SingleFlight, wait_bound
from .metrics import Metrics
from .originals import OriginalSource
from .routing import ImageRequest, Router
from .transform.formats import LOADER_FORMATS, MIME_TYPES, plan_format
from .transform.options import Transformation, parse_transformation
from .transform.render import Renderer

log = logging.getLogger("edge")

TOUCH_FLUSH_SECONDS = 1.0
GAUGE_REFRESH_SECONDS = 5.0


class Node:
    """The per-process state of a node: config, cache, renderer, router, metrics, origins."""

    def __init__(self, config: Config):
        self.config = config
        #: wall-clock seconds for cache freshness; tests replace it to move time forward.
        self.clock: Callable[[], float] = time.time
        self.metrics = Metrics()
        self.router = Router(config.endpoints)
        self.origins = {origin.name: origin for origin in config.origins}
        self.caches = Caches(config.cache.dir, config.cache.output_size, config.cache.original_size,
                             config.cache.memory_size,
                             evicted=lambda tier, count: self.metrics.cache_evictions.labels(tier).inc(count))
        self.outputs = self.caches.outputs
        # one single flight per kind of key, each with its own leases: an output's and an original's
        # work never share a lease
        self.flights, original_flights = (
            SingleFlight(config.cache.dir / "flights" / kind, wait_bound(config.endpoints),
                         self.metrics.coalesced_requests) for kind in ("outputs", "originals"))
        self.originals = OriginalSource(self.caches, original_flights, config.cache,
                                        config.limits.max_source_bytes, self.metrics, clock=lambda: self.clock())
        self.renderer = Renderer(config.defaults, config.limits, config.server.transform_threads,
                                 config.server.transform_queue)
        self.access_log = AccessLog(config.server.access_log)
        #: `Cache-Control` of images, and of 404s (as long as the negative cache keeps them)
        self.image_cache_control = f"public, max-age={config.defaults.cache_control_max_age}"
        self.not_found_cache_control = f"public, max-age={int(config.cache.not_found_ttl)}"
        #: image requests being answered by this process; sampled into the gauge (an mmap write
        #: per request and per answer is a measurable part of a cache hit)
        self.inflight = 0
        self._background: list[asyncio.Task] = []
        #: purges received from outside go to the other nodes of the fleet too
        self.fan_out = FanOut(config.fleet, self.metrics.fleet_purge_calls) if config.fleet.others else None
        #: the shared second tier, between this node's disk and the origins
        self.shared = (SharedTier(config.shared_cache, self.metrics, config.cache.output_size)
                       if config.shared_cache is not None else None)

    async def start(self) -> None:
        for origin in self.config.origins:
            await origin.open()
        if self.shared is not None:
            await self.shared.open()
        self._background = [
            asyncio.create_task(self._every(TOUCH_FLUSH_SECONDS, self._flush_touches)),
            asyncio.create_task(self._every(FLUSH_SECONDS, self._sample)),
            asyncio.create_task(self._every(GAUGE_REFRESH_SECONDS, self._refresh_gauges)),
        ]
        await self._refresh_gauges()

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._flush_touches()
        self.access_log.flush()
        for origin in self.config.origins:
            await origin.close()
        if self.shared is not None:
            await self.shared.close()
        self.renderer.shutdown()
        if self.fan_out is not None:
            self.fan_out.close()
        self.flights.close()
        self.originals.close()
        self.caches.close()

    async def _every(self, seconds: float, job) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:  # a periodic job must never die silently
                log.exception("background job %s failed", job.__name__)

    async def _sample(self) -> None:
        self.metrics.inflight_requests.set(self.inflight)
        self.access_log.flush()

    async def _flush_touches(self) -> None:
        await asyncio.to_thread(self.caches.flush_touches)

    async def _refresh_gauges(self) -> None:
        await asyncio.to_thread(self.metrics.observe_cache, self.caches.tiers, self.config.cache.dir)

    def cache_key(self, request: ImageRequest, transformation: Transformation, planned_format: str,
                  vary_accept: bool) -> str:
        """Endpoint, path, canonical transformation, and the negotiated format where `Accept` decided it."""
        negotiated = planned_format if vary_accept else ""
        return output_key(request.endpoint.id, request.path, transformation.canonical(), negotiated)

    async def fresh_output(self, key: str) -> tuple[CachedOutput, str] | None:
        """What another worker's single flight stored for `key` (read on the IOLoop, like every output)."""
        output = self.outputs.get(key)
        return (output, "miss") if output is not None and self.originals.is_fresh(output.source) else None


class BaseHandler(tornado.web.RequestHandler):
    node: Node

    def initialize(self, node: Node) -> None:
        self.node = node

    def compute_etag(self) -> None:
        return None  # ETags are computed once, when an output is stored, never by hashing each body

    def write_error(self, status_code: int, **kwargs) -> None:
        # Only reached for errors that are not `EdgeError`s: never show a traceback.
        self._send_plain(status_code, "internal error" if status_code >= 500 else self._reason)

    def _send_plain(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.clear()
        self.set_status(status)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():  # may replace Cache-Control
            self.set_header(name, value)
        self.finish(message + "\n")


class ImageHandler(BaseHandler):
    cache_result = "miss"
    endpoint_label = "-"
    origin_name: str | None = None
    body_bytes = 0

    async def get(self) -> None:
        await self._serve()

    async def head(self) -> None:
        await self._serve()

    def prepare(self) -> None:
        self.node.inflight += 1

    def on_finish(self) -> None:
        node, status = self.node, self.get_status()
        metrics = node.metrics
        node.inflight -= 1
        elapsed = self.request.request_time()
        metrics.child(metrics.http_requests, self.endpoint_label, str(status)).inc()
        metrics.child(metrics.http_duration, self.endpoint_label, self.cache_result).observe(elapsed)
        if status == 404:
            metrics.child(metrics.not_found, self.endpoint_label).inc()

    async def _serve(self) -> None:
        node = self.node
        try:
            request = node.router.route(self.request.host, self.request.path)
            self.endpoint_label = request.endpoint.id or "default"
            transformation = parse_transformation(request.path_transformation, self._query("tr"),
                                                  named=node.config.named_transformations,
                                                  named_only=request.endpoint.named_only)
            planned_format, vary_accept = plan_format(transformation.output_format, request.path,
                                                      self.request.headers.get("Accept"))
            key = node.cache_key(request, transformation, planned_format, vary_accept)

            cached = node.outputs.get(key)
            fresh = cached is not None and node.originals.is_fresh(cached.source)
            node.metrics.child(node.metrics.cache_requests, "output",
                               "hit" if fresh else "stale" if cached else "miss").inc()
            if fresh:
                output = cached
            else:
                try:
                    output, self.cache_result = await node.flights.run(
                        key, partial(self._fetch_transform_store, request, key, transformation, planned_format,
                                     vary_accept, cached),
                        partial(node.fresh_output, key))
                except OriginFailed:
                    if cached is None:
                        raise
                    output = cached  # stale-if-error
            if self.cache_result != "shared":
                self.cache_result = self._cache_result(cached, output)
            self._respond(output)
        except EdgeError as error:
            self._send_error(error)

    def _cache_result(self, cached: CachedOutput | None, output: CachedOutput) -> str:
        """`hit`: from the cache, fresh, without waiting on an origin; `stale`: past its freshness,
        because the origin failed; `miss`: this request waited on the origin (or on another's fetch)."""
        if not self.node.originals.is_fresh(output.source):
            return "stale"
        return "hit" if output is cached else "miss"

    async def _fetch_transform_store(self, request: ImageRequest, key: str, transformation: Transformation,
                                     planned_format: str, vary_accept: bool,
                                     cached: CachedOutput | None) -> tuple[CachedOutput, str]:
        """A single flight's work: the shared tier's copy, or the current original and the output made
        from it; stored. With how it was obtained (`shared` or `miss`)."""
        node = self.node
        if cached is None and node.shared is not None:
            cached = await node.shared.get(key)
            if cached is not None and node.originals.is_fresh(cached.source):
                await asyncio.to_thread(node.outputs.put, key, cached)
                return cached, "shared"
        source = await self._original(request, transformation.default_image, cached.source if cached else None)
        if cached is not None and cached.source.version == source.info.version:
            output = cached.confirmed(source.info)  # the original is unchanged: so is the output
        else:
            output = await self._produce(request, source, transformation, planned_format, vary_accept)
        await asyncio.to_thread(node.outputs.put, key, output)
        if node.shared is not None:
            node.shared.put_later(key, output)  # after the response: never on its critical path
        return output, "miss"

    async def _original(self, request: ImageRequest, default_image: str | None,
                        made_from: SourceInfo | None) -> StoredOriginal:
        """The original (through the originals tier), or the `di-` default image when no origin has it
        (missing too: 404)."""
        try:
            return await self.node.originals.get(request, made_from)
        except NotFound:
            if default_image is None:
                raise
            return await self.node.originals.get(replace(request, path=default_image), made_from)

    async def _produce(self, request: ImageRequest, source: StoredOriginal, transformation: Transformation,
                       planned_format: str, vary_accept: bool) -> CachedOutput:
        """Transform the original (or pass it through for `orig-true`) into a storable output."""
        node = self.node
        assert source.body is not None
        if transformation.serves_original:
            header = await node.renderer.probe(source.body)
            body, fmt = source.body, LOADER_FORMATS.get(header.loader)
            if fmt is None:
                raise UnprocessableSource()
        else:
            started = time.perf_counter()
            rendered = await node.renderer.render(source.body, transformation, planned_format)
            body, fmt = rendered.body, rendered.format
            node.metrics.transform_duration.labels(fmt).observe(time.perf_counter() - started)
        origin = node.origins.get(source.info.origin)
        base = origin.settings.canonical_base_url if origin else None
        return CachedOutput(
            body=body,
            content_type=MIME_TYPES[fmt],
            etag=strong_etag(body),
            source=source.info,
            vary_accept=vary_accept,
            canonical_link=f"<{base.rstrip('/')}/{request.path}>; rel=\"canonical\"" if base else None,
        )

    def _query(self, name: str) -> str | None:
        # most image URLs have no query: skip Tornado's argument decoding for them
        return self.get_query_argument(name, None) if self.request.query else None

    def _respond(self, output: CachedOutput) -> None:
        self.origin_name = output.source.origin
        self.set_header("Content-Type", output.content_type)
        self.set_header("Cache-Control", self.node.image_cache_control)
        self.set_header("ETag", output.etag)
        self.set_header("X-Cache", self.cache_result.upper())
        if output.source.last_modified:
            self.set_header("Last-Modified", output.source.last_modified)
        if output.vary_accept:
            self.set_header("Vary", "Accept")
        if output.canonical_link:
            self.set_header("Link", output.canonical_link)
        if self._query("ik-attachment") == "true":
            self.set_header("Content-Disposition", "attachment")
        if _etag_matches(self.request.headers.get("If-None-Match"), output.etag):
            self.set_status(304)
            self.finish()
            return
        self.set_header("Content-Length", len(output.body))
        if self.request.method == "HEAD":
            self.finish()
            return
        self.body_bytes = len(output.body)
        metrics = self.node.metrics
        metrics.child(metrics.response_bytes, self.endpoint_label).inc(self.body_bytes)
        self.finish(output.body)

    def _send_error(self, error: EdgeError) -> None:
        headers = dict(error.headers)
        if error.kind and "X-Edge-Error" not in headers:
            headers["X-Edge-Error"] = error.kind
        if error.status == 404:
            headers["Cache-Control"] = self.node.not_found_cache_control
        self._send_plain(error.status, error.message, headers)


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    candidates = (tag.strip().removeprefix("W/") for tag in if_none_match.split(","))
    return etag in candidates


class HealthHandler(BaseHandler):
    """Liveness: the process answers."""

    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.finish("ok\n")


class ReadyHandler(BaseHandler):
    """Readiness: config loaded, cache writable, libvips works."""

    async def get(self) -> None:
        try:
            await asyncio.to_thread(_check_ready, self.node)
        except Exception as exc:  # readiness reports any failure as not ready
            log.warning("not ready: %s", exc)
            self._send_plain(503, "not ready")
            return
        self.set_header("Cache-Control", "no-store")
        self.finish("ready\n")


def _check_ready(node: Node) -> None:
    probe_dir = node.config.cache.dir
    probe_file = probe_dir / f".ready-{id(node)}"
    probe_file.write_bytes(b"ok")
    probe_file.unlink()
    pyvips.Image.black(2, 2).jpegsave_buffer()


class MetricsHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(self.node.metrics.exposition())


class PurgeHandler(BaseHandler):
    """`POST /_edge/purge` with the admin token as a bearer token; off (404) when no token is set."""

    async def post(self) -> None:
        node = self.node
        token = node.config.admin_token
        try:
            if token is None:
                raise NotFound("not found")
            if not purge.authorized(self.request.headers.get("Authorization"), token):
                raise Unauthorized("unauthorized", headers={"WWW-Authenticate": 'Bearer realm="edge purge"'})
            target = purge.parse_body(self.request.body)
            status, answer = await purge.purge_serving(node.caches, node.router, target, token, node.fan_out,
                                                       node.shared, forwarded=FORWARDED_HEADER in self.request.headers)
        except EdgeError as error:
            self._send_plain(error.status, error.message, error.headers)
            return
        log.info("purged %d cached entries for %s", answer["removed"], target)
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(answer) + "\n")


def make_app(node: Node) -> tornado.web.Application:
    args = {"node": node}
    return tornado.web.Application(
        [
            (r"/_edge/health", HealthHandler, args),
            (r"/_edge/ready", ReadyHandler, args),
            (r"/_edge/purge", PurgeHandler, args),
            (r"/metrics", MetricsHandler, args),
            (r"/.*", ImageHandler, args),
        ],
        log_function=_log_request,
        compress_response=False,
    )


def _log_request(handler: tornado.web.RequestHandler) -> None:
    if not isinstance(handler, BaseHandler):  # Tornado's own 404/405 handlers
        return
    request = handler.request
    if isinstance(handler, ImageHandler):
        handler.node.access_log.write(request.method, request.path, handler.get_status(), request.request_time(),
                                      endpoint=handler.endpoint_label, cache=handler.cache_result,
                                      body_bytes=handler.body_bytes, origin=handler.origin_name)
    else:
        handler.node.access_log.write(request.method, request.path, handler.get_status(), request.request_time())
