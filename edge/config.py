"""The node's configuration: a TOML file parsed once into typed, validated, frozen objects.

See `docs/configuration.md` for every key. Without `--config` the node runs the embedded default
(`edge/default.toml`: one local origin over the sample images shipped with the package).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cloudinary_urls import cloud_names
from .cores import usable_cores
from .errors import ConfigError, InvalidTransformation
from .fetching import DEFAULT_FETCH_MEMORY, DEFAULT_FETCH_MEMORY_WAIT
from .origin import Origin, OriginSettings, described
from .pluginmanager import Plugins
from .settings import (HOST_NAME, ConfigTable, Secret, listen_host, redact, regular_file_bytes, split_url,
                       without_userinfo)
from .shared_cache import PURGE_TIMEOUTS, SharedCacheSettings

if TYPE_CHECKING:  # imported where they are used: the transform package imports this module
    from .transform.fonts import Font
    from .transform.layers import Layer
    from .transform.options import Transformation

EMBEDDED_DEFAULT = Path(__file__).with_name("default.toml")
_ENDPOINT_ID = re.compile(r"^[A-Za-z0-9-]*$")
URL_STYLES = ("imagekit", "cloudinary")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
#: the port a browser leaves out of an origin it writes, by scheme
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: one web origin as `cors_origin` takes it, lower-cased: `scheme://host[:port]`, no path, not even `/`
_WEB_ORIGIN = re.compile(rf"[a-z][a-z0-9+.-]*://{HOST_NAME}(?::([0-9]{{1,5}}))?")


class Placeholders(dict):
    """An environment in which a `${NAME}` not given stands for a placeholder (`<NAME>`). `edge check-config
    --no-env` gives none: a config is checked without its secrets, whatever the shell holds. `edge purge` and
    `edge cache stats` give the shell's: they use no secret, and an operator's shell in an incident has not
    the service's (systemd's `EnvironmentFile`, credentials)."""

    def __contains__(self, name: object) -> bool:
        return True

    def __missing__(self, name: str) -> str:
        return f"<{name}>"


def default_cache_dir() -> Path | None:
    """A per-user cache folder, as the XDG base-directory spec says; None for a user without a home
    folder (HOME unset and a uid with no passwd entry, as `docker run --user 12345` runs)."""
    base = os.environ.get("XDG_CACHE_HOME")
    if base:
        return Path(base) / "edge-image-node"
    try:
        return Path.home() / ".cache" / "edge-image-node"
    except RuntimeError:
        return None


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    #: threads running libvips (0 = one per usable core: `edge.cores`); image work never runs on the IOLoop.
    transform_threads: int = 0
    #: transformations waiting for a thread beyond which requests get 503 + Retry-After.
    transform_queue: int = 64
    #: seconds a transformation may wait for a thread; then it leaves the queue unrun and its requests get
    #: 503 + Retry-After. Part of `flight.wait_bound`, hence of the balancers' answer timeout (docs/fleet.md)
    transform_queue_timeout: float = 10.0
    access_log: bool = True
    # -- limits against hostile or stuck clients (see docs/security.md, "Server limits") --
    #: seconds a new connection has to send its first request's headers
    header_timeout: float = 10.0
    #: seconds a kept-alive connection may wait for its next request's headers
    idle_timeout: float = 60.0
    #: seconds a request body may take to arrive
    body_timeout: float = 10.0
    #: seconds a client may go without accepting any more of a response before the connection is dropped
    send_timeout: float = 60.0
    max_header_size: int = 32 * 1024
    #: body of any request but the admin API's (image URLs are GETs: they need none)
    max_request_body: int = 4 * 1024
    #: body of `POST /_edge/purge`
    max_admin_body: int = 1024 * 1024
    #: open connections per worker; beyond it a connection gets 503 and is closed
    max_connections: int = 1024
    #: seconds a stopping worker lets requests in progress finish (SIGTERM, SIGHUP's old workers)
    shutdown_grace: float = 10.0
    #: seconds a worker's event loop may go without a turn (serving, or starting) before the supervisor kills it
    worker_timeout: float = 30.0
    # -- memory (see docs/security.md, "Memory") --
    #: bytes of originals in memory at once, per worker: being fetched, and held by renders until they end; more
    #: waits, then 503
    fetch_memory: int = DEFAULT_FETCH_MEMORY
    #: seconds a fetch waits for `fetch_memory` before the request gets 503
    fetch_memory_wait: float = DEFAULT_FETCH_MEMORY_WAIT
    #: bytes the renders hold at once, per worker: originals decoded whole (AVIF/HEIF, interlaced PNG, GIF) and
    #: images made in memory (`transform/held.py`); more waits, then 503
    decode_memory: int = 10**9
    #: seconds a render waits for `decode_memory` before the request gets 503
    decode_memory_wait: float = 5.0
    #: bytes of large bodies (over 256 KiB) being sent at once, per worker; beyond it such an answer gets 503
    send_memory: int = 256 * 10**6
    #: glibc malloc arenas per worker (0 = glibc's default: 8 per core)
    malloc_arenas: int = 2
    #: give free memory back to the system after bursts (glibc `malloc_trim`)
    memory_trim: bool = True
    #: diagnostics on stderr: level, and "text" or "json" lines
    log_level: str = "info"
    log_format: str = "text"
    #: access-log lines for /metrics and the health checks (off: scrapes and probes drown the traffic)
    access_log_probes: bool = False
    #: peers whose X-Forwarded-For names the client (the front proxy's addresses, as CIDRs)
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    #: serve /metrics on this port only (None: on the main port)
    metrics_port: int | None = None
    #: the address `metrics_port` listens on (None: `host`'s): a node behind a proxy on its own machine
    #: (127.0.0.1) scraped by a Prometheus on another
    metrics_host: str | None = None
    #: `Access-Control-Allow-Origin` and `Timing-Allow-Origin` of image answers (with `Access-Control-Expose-Headers`):
    #: "*" or one origin; "" sends none
    cors_origin: str = "*"

    @property
    def metrics_address(self) -> str:
        """Where `metrics_port` listens."""
        return self.metrics_host or self.host


@dataclass(frozen=True)
class CacheSettings:
    #: required: `_cache` falls back on `default_cache_dir` only when the file has none
    dir: Path
    output_size: int = 2 * 10**9
    #: per-process memory tier in front of the output cache (0 = off)
    memory_size: int = 64 * 10**6
    original_size: int = 10**9
    original_ttl: float = 86400.0
    not_found_ttl: float = 60.0


@dataclass(frozen=True)
class Defaults:
    quality: int = 80
    avif_effort: int = 2
    #: JPEG below quality 90 in 4:2:0 (libvips' rule, and most image CDNs'); off: 4:4:4, as ImageKit by default
    chroma_subsampling: bool = True
    cache_control_max_age: int = 31536000
    #: a URL without `f-` is served as with `f-auto` (ImageKit's default), whatever its extension
    auto_format: bool = False
    #: `f-auto` encodes every format the browser accepts and serves the smallest (costs the encodes)
    auto_format_smallest: bool = False


@dataclass(frozen=True)
class Limits:
    max_source_bytes: int = 40 * 10**6
    max_source_pixels: int = 100_000_000
    #: bytes one render may hold: originals that their loaders decode whole (AVIF/HEIF, interlaced PNG, GIF),
    #: estimated from their headers, and the images it makes in memory: more is a 400 (a 48 MP AVIF takes
    #: ~0.75 GB, a phone's HEIC ~0.4)
    max_decode_memory: int = 10**9
    max_output_side: int = 8192
    max_frames: int = 100
    #: SVG sources are rendered only when the operator enables them (a renderer of untrusted XML)
    allow_svg: bool = False
    #: seconds one render may run in its thread before it is stopped (503); flight waiters allow this and
    #: `[server] transform_queue_timeout`
    render_timeout: float = 20.0
    #: the most work one URL may ask for, in megapixels of work (see edge/transform/cost.py)
    max_cost: float = 200.0


@dataclass(frozen=True)
class FleetSettings:
    """`[fleet]`: the other nodes behind the same load balancer, for purge fan-out (docs/fleet.md)."""

    #: base URLs of every node, without a trailing slash (this node may be among them)
    peers: tuple[str, ...] = ()
    #: this node's own URL among `peers`, which it does not call
    self_url: str | None = None
    #: seconds per peer call
    timeout: float = 5.0

    @property
    def others(self) -> tuple[str, ...]:
        return tuple(peer for peer in self.peers if peer != self.self_url)


@dataclass(frozen=True)
class Endpoint:
    """A URL-endpoint: an identifier (`""` is the default endpoint at `/`) and/or host names."""

    id: str
    origins: tuple[Origin, ...]
    hosts: tuple[str, ...] = ()
    #: signs and verifies URLs (`ik-s`); see docs/signed-urls.md
    private_key: Secret | None = None
    #: keys that still verify while pages signed with them are live (rotation); never used to sign
    previous_private_keys: tuple[Secret, ...] = ()
    #: every request needs a valid signature (401 otherwise)
    signed_only: bool = False
    named_only: bool = False
    url_style: str = "imagekit"
    #: layers drawn on every image this endpoint serves (`watermark = "l-image,…,l-end"`); see
    #: docs/configuration.md
    watermark: tuple[Layer, ...] = ()

    @property
    def watermark_images(self) -> frozenset[str]:
        """The paths of the originals the watermark's image layers draw (its nested layers' included)."""
        from .transform.layers import fetched
        from .transform.options import DEFAULT_STEP

        return frozenset(fetched((replace(DEFAULT_STEP, layers=self.watermark),)))


@dataclass(frozen=True)
class Config:
    source: str
    server: ServerSettings
    cache: CacheSettings
    defaults: Defaults
    limits: Limits
    named_transformations: dict[str, str]
    admin_token: Secret | None
    origins: tuple[Origin, ...]
    endpoints: tuple[Endpoint, ...]
    fleet: FleetSettings = field(default_factory=FleetSettings)
    shared_cache: SharedCacheSettings | None = None
    #: `ff-<name>` → its font: the shipped default and `[fonts]`
    fonts: dict[str, Font] = field(default_factory=dict)
    #: a message or summary with each value that came from the environment written as its `${NAME}`
    #: (`ConfigTable.masked`): a secret given to a key that takes none (`host`, `[cache] dir`) was printed
    #: in clear by start-up errors and check-config
    masked: Callable[[str], str] = field(default=str, repr=False, compare=False)

    def with_overrides(self, **server: Any) -> Config:
        """A copy with `[server]` keys replaced (command-line flags override the file)."""
        changes = {k: v for k, v in server.items() if v is not None}
        return Config(**{**vars(self), "server": ServerSettings(**{**vars(self.server), **changes})})

    def describe(self) -> dict[str, Any]:
        """A summary for `edge check-config`, with every secret masked."""
        return {
            "source": self.source,
            "server": vars(self.server),
            "cache": {k: str(v) for k, v in vars(self.cache).items()},
            "defaults": vars(self.defaults),
            "limits": vars(self.limits),
            "named_transformations": self.named_transformations,
            "admin": {"token": str(self.admin_token) if self.admin_token else None},
            "origins": [described(origin) for origin in self.origins],
            "endpoints": [
                {"id": e.id, "hosts": list(e.hosts), "origins": [o.name for o in e.origins],
                 "private_key": str(e.private_key) if e.private_key else None,
                 "previous_private_keys": [str(key) for key in e.previous_private_keys],
                 "signed_only": e.signed_only, "named_only": e.named_only, "url_style": e.url_style,
                 "watermark": len(e.watermark)}
                for e in self.endpoints
            ],
            "fleet": vars(self.fleet),
            "shared_cache": self.shared_cache and self.shared_cache.describe(),
            "fonts": {name: font.file for name, font in self.fonts.items()},
        }


def origin_identities(config: Config) -> dict[str, str]:
    """Where each endpoint's originals come from, by endpoint id: a digest of its origins' types and public
    attributes (`Origin.describe`: its `root`, bucket, `base_url`…; not its timeout, nor a secret's value), of a
    size that no origin's settings change. Kept in the cache folder between runs (`purge.origins_served`)."""
    def identity(origin: Origin) -> dict[str, Any]:  # (its name is only the config's: a rename moves nothing)
        return {**described(origin), "name": None, "timeout": None}

    return {endpoint.id: hashlib.sha256(json.dumps([identity(origin) for origin in endpoint.origins], sort_keys=True,
                                                   default=str).encode()).hexdigest()
            for endpoint in config.endpoints}


def endpoints_fetching_elsewhere(before: dict[str, str], new: Config) -> list[Endpoint]:
    """The endpoints of `new` whose originals come from elsewhere than `before` (`origin_identities` of the
    config served before): another list of origins, or an origin of another type or other public attributes.
    Their cached outputs and originals came from the old origins' files, and were served as fresh until
    `original_ttl` revalidated them: an endpoint pointed back from a staging bucket served staging images for up
    to a day, downstream caches keeping them a year. An endpoint new or removed is none of them."""
    now = origin_identities(new)
    return [endpoint for endpoint in new.endpoints if endpoint.id in before and before[endpoint.id] != now[endpoint.id]]


#: the largest config file read: the shipped examples are under 10 kB
MAX_CONFIG_BYTES = 1_000_000


def _config_bytes(file: Path, label: str) -> bytes:
    try:
        return regular_file_bytes(file, MAX_CONFIG_BYTES)
    except ValueError as exc:
        raise ConfigError(f"{label}: {exc}") from None


def load_config(path: str | Path | None, plugins: Plugins,
                environ: dict[str, str] | None = None) -> Config:
    """Parse and validate a config file (the embedded default when `path` is None)."""
    file = Path(path) if path is not None else EMBEDDED_DEFAULT
    label = str(path) if path is not None else "<embedded default>"
    try:
        # utf-8-sig: the byte-order mark some Windows editors start a file with is no TOML
        data = tomllib.loads(_config_bytes(file, label).decode("utf-8-sig"))
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        line = exc.object.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{label}: not UTF-8 text (line {line}: byte {exc.object[exc.start]:#04x}); "
                          f"TOML files are UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: not valid TOML: {exc}") from None
    root = ConfigTable(data, file=label, table="", base_dir=file.resolve().parent, environ=environ)
    try:
        return _parse(root, label, plugins)
    except ConfigError as error:  # also those not raised by a table (a check across tables)
        raise ConfigError(root.masked(str(error))) from None


def _parse(root: ConfigTable, label: str, plugins: Plugins) -> Config:
    server = _server(root.subtable("server"))
    cache = _cache(root.subtable("cache"))
    defaults = _defaults(root.subtable("defaults"))
    limits = _limits(root.subtable("limits"))
    if server.fetch_memory < limits.max_source_bytes:
        raise ConfigError(f"{label}: [server] fetch_memory: expected at least [limits] max_source_bytes "
                          f"({limits.max_source_bytes} bytes), or no original that large could be fetched")
    if server.decode_memory < limits.max_decode_memory:
        raise ConfigError(f"{label}: [server] decode_memory: expected at least [limits] max_decode_memory "
                          f"({limits.max_decode_memory} bytes), or a render within that limit could never start")
    named = _named_transformations(root.subtable("named_transformations"))
    admin = root.subtable("admin")
    admin_token = admin.secret("token")
    if admin_token is not None and not admin_token.reveal().strip():
        raise admin.error("token", "is empty: set a long random token, or remove the key to turn the purge API off")
    if admin_token is not None and not all("!" <= char <= "~" for char in admin_token.reveal()):
        # an `Authorization` header carries it: one holding anything else could never be sent as written
        raise admin.error("token", "holds a character that is not printable ASCII (a space, a tab, a letter "
                                   "with an accent...): use letters, digits and punctuation")
    admin.finish()
    origin_tables, endpoint_tables = root.tables("origins"), root.tables("endpoints")
    fleet = _fleet(root.subtable("fleet"))
    shared_cache = _shared_cache(root, plugins)
    fonts = _fonts(root.subtable("fonts"))
    # before the tables are checked against each other: `[[endpoint]]` had been reported as no [[endpoints]]
    root.finish()
    origins = _origins(origin_tables, plugins)
    endpoints = _endpoints(root, endpoint_tables, {o.name: o for o in origins})
    return Config(label, server, cache, defaults, limits, named, admin_token, origins, endpoints, fleet=fleet,
                  shared_cache=shared_cache, fonts=fonts, masked=root.masked)


def per_core(count: int) -> int:
    """`count`, where 0 means one per usable core (`workers`, `transform_threads`, `--workers`): the
    CPU affinity and cgroup quota count, not only the machine's cores (`edge.cores`)."""
    return count or usable_cores().count


def _server(t: ConfigTable) -> ServerSettings:
    d = ServerSettings()
    settings = ServerSettings(
        host=_listen_host(t),
        port=t.int("port", d.port, min=0, max=65535),
        workers=per_core(t.int("workers", d.workers, min=0, max=256)),
        transform_threads=per_core(t.int("transform_threads", d.transform_threads, min=0, max=256)),
        transform_queue=t.int("transform_queue", d.transform_queue, min=1, max=100_000),
        transform_queue_timeout=_positive(t, "transform_queue_timeout",
                                          t.duration("transform_queue_timeout", d.transform_queue_timeout)),
        access_log=t.bool("access_log", d.access_log),
        header_timeout=_positive(t, "header_timeout", t.duration("header_timeout", d.header_timeout)),
        idle_timeout=_positive(t, "idle_timeout", t.duration("idle_timeout", d.idle_timeout)),
        body_timeout=_positive(t, "body_timeout", t.duration("body_timeout", d.body_timeout)),
        send_timeout=_positive(t, "send_timeout", t.duration("send_timeout", d.send_timeout)),
        max_header_size=t.size("max_header_size", d.max_header_size),
        max_request_body=t.size("max_request_body", d.max_request_body),
        max_admin_body=t.size("max_admin_body", d.max_admin_body),
        max_connections=t.int("max_connections", d.max_connections, min=1),
        shutdown_grace=t.duration("shutdown_grace", d.shutdown_grace),
        worker_timeout=_worker_timeout(t, t.duration("worker_timeout", d.worker_timeout)),
        fetch_memory=t.size("fetch_memory", d.fetch_memory),
        fetch_memory_wait=t.duration("fetch_memory_wait", d.fetch_memory_wait),
        decode_memory=t.size("decode_memory", d.decode_memory),
        decode_memory_wait=t.duration("decode_memory_wait", d.decode_memory_wait),
        send_memory=t.size("send_memory", d.send_memory),
        malloc_arenas=t.int("malloc_arenas", d.malloc_arenas, min=0, max=1024),
        memory_trim=t.bool("memory_trim", d.memory_trim),
        **_server_operations(t, d),
    )
    if settings.max_header_size < 1024:
        raise t.error("max_header_size", "expected at least 1KiB (a request line and a Host header)")
    if settings.metrics_port and settings.metrics_port == settings.port:  # whatever the addresses: 0.0.0.0 has both
        raise t.error("metrics_port", f"expected another port than port ({settings.port}), or none: /metrics is "
                                      "then served on port")
    if settings.metrics_host is not None and settings.metrics_port is None:
        raise t.error("metrics_host", "needs metrics_port: without it /metrics is on the main port, at host")
    t.finish()
    return settings


def _positive(t: ConfigTable, key: str, seconds: float) -> float:
    if seconds <= 0:
        raise t.error(key, "expected a duration above zero")
    return seconds


#: a worker's heartbeat comes every second (`supervisor.HEARTBEAT_SECONDS`): a shorter `worker_timeout` fires
#: on a healthy loop, writing every thread's stack to stderr about once a second, forever
MIN_WORKER_TIMEOUT = 2.0


def _worker_timeout(t: ConfigTable, seconds: float) -> float:
    if seconds < MIN_WORKER_TIMEOUT:
        raise t.error("worker_timeout", f"expected at least {MIN_WORKER_TIMEOUT:g}s: a worker's heartbeat comes "
                                        "every second")
    return seconds


def _server_operations(t: ConfigTable, d: ServerSettings) -> dict[str, Any]:
    """The `[server]` keys for operating a node: logging, the client address, the metrics port."""
    proxies = []
    for text in t.str_list("trusted_proxies", ()):
        try:
            proxies.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise t.error("trusted_proxies", f"expected IP addresses or CIDR ranges, got {text!r}") from None
    return {
        "log_level": t.str("log_level", d.log_level, choices=LOG_LEVELS),
        "log_format": t.str("log_format", d.log_format, choices=LOG_FORMATS),
        "access_log_probes": t.bool("access_log_probes", d.access_log_probes),
        "trusted_proxies": tuple(proxies),
        "metrics_port": t.int("metrics_port", None, min=0, max=65535),
        "metrics_host": _listen_host(t, "metrics_host", None),
        "cors_origin": _cors_origin(t, d.cors_origin),
    }


def _cors_origin(t: ConfigTable, default: str) -> str:
    """`cors_origin`: "*", "" or one origin, as a browser serialises the page's origin, which it compares
    with the header exactly: lower case, the port without leading zeros, none when it is the scheme's
    default (`https://Shop.example.com:443` is sent as `https://shop.example.com`)."""
    written = t.str("cors_origin", default)
    origin = written.lower()
    if origin in ("*", ""):
        return origin
    match = _WEB_ORIGIN.fullmatch(origin)
    if match is not None and 0 < int(match[1] or 1) <= 65535:
        scheme, _, _ = origin.partition("://")
        site = origin[:match.start(1) - 1] if match[1] is not None else origin
        port = int(match[1]) if match[1] is not None else None
        return site if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{site}:{port}"
    raise t.error("cors_origin", f'expected "*", one origin such as "https://shop.example.com" (scheme://host[:port], '
                                 f'no path) or "" (no CORS headers), got {written!r}')


def _cache(t: ConfigTable) -> CacheSettings:
    directory = t.path("dir", None) or default_cache_dir()
    if directory is None:
        raise t.error("dir", "not set, and this user has no home folder for the default (~/.cache/edge-image-node): "
                             "HOME is unset and the user has no entry in /etc/passwd; set [cache] dir")
    d = CacheSettings(dir=directory)
    settings = CacheSettings(
        dir=directory,
        output_size=t.size("output_size", d.output_size),
        memory_size=t.size("memory_size", d.memory_size),
        original_size=t.size("original_size", d.original_size),
        original_ttl=t.duration("original_ttl", d.original_ttl),
        not_found_ttl=t.duration("not_found_ttl", d.not_found_ttl),
    )
    t.finish()
    return settings


def _defaults(t: ConfigTable) -> Defaults:
    d = Defaults()
    settings = Defaults(
        quality=t.int("quality", d.quality, min=1, max=100),
        avif_effort=t.int("avif_effort", d.avif_effort, min=0, max=9),
        chroma_subsampling=t.bool("chroma_subsampling", d.chroma_subsampling),
        cache_control_max_age=t.int("cache_control_max_age", d.cache_control_max_age, min=0),
        auto_format=t.bool("auto_format", d.auto_format),
        auto_format_smallest=t.bool("auto_format_smallest", d.auto_format_smallest),
    )
    t.finish()
    return settings


def _limits(t: ConfigTable) -> Limits:
    d = Limits()
    settings = Limits(
        max_source_bytes=t.size("max_source_bytes", d.max_source_bytes),
        max_source_pixels=t.int("max_source_pixels", d.max_source_pixels, min=1),
        max_decode_memory=t.size("max_decode_memory", d.max_decode_memory),
        max_output_side=t.int("max_output_side", d.max_output_side, min=1, max=65500),
        max_frames=t.int("max_frames", d.max_frames, min=1),
        allow_svg=t.bool("allow_svg", d.allow_svg),
        render_timeout=t.duration("render_timeout", d.render_timeout),
        max_cost=t.number("max_cost", d.max_cost, min=1),
    )
    if settings.render_timeout <= 0:
        raise t.error("render_timeout", "must be more than 0s: every render would be stopped at once")
    t.finish()
    return settings


#: a fan-out answers only once every peer has: keep the list to what one node may wait on
MAX_PEERS = 256


def _fleet(t: ConfigTable) -> FleetSettings:
    d = FleetSettings()
    peers = tuple(_node_url(t, "peers", url) for url in t.str_list("peers", d.peers))
    if len(peers) > MAX_PEERS:
        raise t.error("peers", f"expected at most {MAX_PEERS} nodes, got {len(peers)}")
    if len(set(peers)) != len(peers):
        raise t.error("peers", "lists a node twice")
    self_url = t.str("self_url", None)
    if self_url is not None:
        self_url = _node_url(t, "self_url", self_url)
        if self_url not in peers:
            raise t.error("self_url", f"{self_url!r} is not one of the peers")
    settings = FleetSettings(peers=peers, self_url=self_url,
                             timeout=t.duration("timeout", d.timeout))
    if settings.timeout <= 0:
        raise t.error("timeout", "expected a duration above 0")
    t.finish()
    return settings


#: the shortest `[shared_cache] signing_key`: 128 bits as hex
MIN_SIGNING_KEY_CHARS = 32
#: a rotation needs one; each more is an HMAC more for every object or journal entry signed with none of them
MAX_PREVIOUS_SIGNING_KEYS = 4


def _shared_cache(root: ConfigTable, plugins: Plugins) -> SharedCacheSettings | None:
    """`[shared_cache]`: the keys of an `s3` origin, plus `timeout`, `max_writes`, `purge_journal_every`,
    `signing_key`, `previous_signing_keys`."""
    present = "shared_cache" in root.keys()
    t = root.subtable("shared_cache")
    if not present:
        return None
    d = SharedCacheSettings(store=None)
    timeout = t.duration("timeout", d.timeout)
    if timeout <= 0:
        raise t.error("timeout", "expected a duration above 0")
    max_writes = t.int("max_writes", d.max_writes, min=1, max=256)
    journal_every = t.duration("purge_journal_every", d.purge_journal_every)
    if not 0.1 <= journal_every <= 3600:  # a listing each 0.1 s per worker at most; an hour of stale images at most
        raise t.error("purge_journal_every", "expected a duration from 0.1s to 1h")
    signing_key = t.secret("signing_key")
    previous_keys = tuple(Secret(key) for key in t.str_list("previous_signing_keys", ()))
    if previous_keys and signing_key is None:
        raise t.error("previous_signing_keys", "needs signing_key")
    if len(previous_keys) > MAX_PREVIOUS_SIGNING_KEYS:
        raise t.error("previous_signing_keys", f"expected at most {MAX_PREVIOUS_SIGNING_KEYS} keys (a rotation needs "
                                               "one; drop a key once `[cache] original_ttl` has passed since its swap)")
    given = [("signing_key", None, signing_key),
             *(("previous_signing_keys", index, key) for index, key in enumerate(previous_keys))]
    for key, index, value in given:
        if value is not None and len(value.reveal()) < MIN_SIGNING_KEY_CHARS and not t.stands_in(key, index):
            raise t.error(key, f"expected at least {MIN_SIGNING_KEY_CHARS} characters (`openssl rand -hex 32`)")
    # its client's calls as long as a purge's (a slow listing or DeleteObjects of 1000 keys had failed each try at
    # `timeout`, against a store that answered); every operation is bounded by its own share of it
    store = plugins.origin_type("s3").from_config(
        OriginSettings("shared_cache", "s3", timeout=timeout * PURGE_TIMEOUTS), t)
    return SharedCacheSettings(store=store, timeout=timeout, max_writes=max_writes,
                               purge_journal_every=journal_every, signing_key=signing_key,
                               previous_signing_keys=previous_keys)


def _listen_host(t: ConfigTable, key: str = "host", default: str | None = ServerSettings.host) -> str | None:
    text = t.str(key, default)
    try:
        return None if text is None else listen_host(text)
    except ValueError as error:
        raise t.error(key, str(error)) from None


def _node_url(t: ConfigTable, key: str, url: str) -> str:
    """A node's base URL, `http(s)://host:port` (and maybe a path), without a trailing slash."""
    try:
        parts = split_url(url)
    except ValueError:  # an IPv6 host without its `]`, a port out of range
        raise t.error(key, f"expected a node's base URL such as http://10.0.0.11:8080, "
                           f"got {without_userinfo(url)!r}") from None
    if parts.username is not None or parts.password is not None:  # not echoed: it would show the password
        raise t.error(key, "a node's URL takes no user information (user:password@): the purge API's "
                           "admin token authenticates the call, and a password there would replace it")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise t.error(key, f"expected a node's base URL such as http://10.0.0.11:8080, got {without_userinfo(url)!r}")
    return url.rstrip("/")


def _parsed(t: ConfigTable, key: str, text: str) -> Transformation:
    """`text` parsed as a transformation; its 400 a config error naming `key` (a parser's bug is not one)."""
    from .transform.options import parse_transformation

    try:
        return parse_transformation(text)
    except InvalidTransformation as exc:
        raise t.error(key, exc.message) from None


_NAMED_TRANSFORMATION = re.compile(r"[A-Za-z0-9_.@-]{1,100}")


def _named_transformations(t: ConfigTable) -> dict[str, str]:
    named = {}
    for name in t.keys():
        if not _NAMED_TRANSFORMATION.fullmatch(name):  # `a:b`, `a,b` or `a b` could never be asked for
            raise t.error(name, "a name is letters, digits, '.', '_', '@' and '-', as URLs write it (n-<name>)")
        text = t.str(name).removeprefix("tr:")  # as ImageKit's dashboard writes them
        _parsed(t, name, text)  # the parser validates each definition
        named[name] = text
    t.finish()
    return named


def _fonts(t: ConfigTable) -> dict[str, Font]:
    """`[fonts] Name = "path/to/font.ttf"`, next to the shipped default; each file read once here."""
    from .transform.fonts import read_font, shipped_fonts
    from .transform.layers import FONT_NAME

    fonts = dict(shipped_fonts())
    for name in t.keys():
        path = t.path(name)
        # `/` for a font ImageKit's URLs name by its media-library path (`ff-fonts@@Poppins.ttf`: "fonts/Poppins.ttf")
        if not FONT_NAME.fullmatch(name.replace("/", "@@")) or "@" in name or name.startswith("/"):
            raise t.error(name, "a font name is letters, digits, '.', '_', '-' and '/'")
        try:
            fonts[name] = read_font(path)
        except OSError as exc:
            raise t.error(name, f"cannot read {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise t.error(name, f"{path}: {exc}") from None
    t.finish()
    return fonts


def _watermark(t: ConfigTable) -> tuple[Layer, ...]:
    """`watermark = "l-image,i-logo.png,…,l-end"`: one or more layers and nothing else."""
    from .transform.options import DEFAULT_STEP

    text = t.str("watermark", "")
    if not text:
        return ()
    steps = _parsed(t, "watermark", text).steps
    if len(steps) != 1 or replace(steps[0], layers=()) != DEFAULT_STEP or not steps[0].layers:
        raise t.error("watermark", "expected layers only (l-image,…,l-end or l-text,…,l-end)")
    return steps[0].layers


def _origins(tables: list[ConfigTable], plugins: Plugins) -> tuple[Origin, ...]:
    origins: list[Origin] = []
    for t in tables:
        name = t.str("name")
        t.table += f" {name!r}"
        type_name = t.str("type")
        try:
            origin_type = plugins.origin_type(type_name)
        except LookupError as error:
            raise t.error("type", str(error)) from None
        if any(o.name == name for o in origins):
            raise t.error("name", f"another origin is already named {name!r}")
        settings = OriginSettings(
            name=name, type=type_name,
            timeout=_positive(t, "timeout", t.duration("timeout", OriginSettings.timeout)),
            canonical_base_url=t.str("canonical_base_url", None),
        )
        try:
            origin = origin_type.from_config(settings, t)
        except ConfigError:
            raise
        except BaseException as error:  # a plugin's bug, whatever it raises: a config error naming it, not a dead node
            # (a stray KeyboardInterrupt or CancelledError on a SIGHUP had ended the supervisor, and the node)
            raise t.error("type", f"the {type_name!r} origin type failed to read its table: "
                                  f"{type(error).__name__}: {redact(str(error))}") from None
        if not isinstance(origin, Origin):
            # the base class's from_config is a stub that returns None: a class that forgot its own meets it
            missing = (" (its class does not define from_config: the base class's returns nothing)"
                       if origin is None and getattr(origin_type.from_config, "__func__", None)
                       is Origin.from_config.__func__ else "")
            raise t.error("type", f"the {type_name!r} origin type's from_config returned {type(origin).__name__}, "
                                  f"not an origin{missing}")
        try:
            bool(origin.takes_request_host)  # read by every worker as it starts: one that raised ended each
        except Exception as error:
            raise t.error("type", f"the {type_name!r} origin type's takes_request_host raised "
                                  f"{type(error).__name__}: {redact(str(error))}") from None
        t.finish()  # again, for a type that forgot to: an operator's misspelt key would be ignored
        origins.append(origin)
    return tuple(origins)


def _endpoints(root: ConfigTable, tables: list[ConfigTable], origins: dict[str, Origin]) -> tuple[Endpoint, ...]:
    endpoints: list[Endpoint] = []
    owners: dict[str, str] = {}  # host → id of the endpoint that owns it
    if not tables:
        raise root.error("endpoints", "expected at least one [[endpoints]] table")
    for t in tables:
        endpoint_id = t.str("id", "")
        if not _ENDPOINT_ID.match(endpoint_id):
            raise t.error("id", f"expected letters, digits and hyphens, got {endpoint_id!r}")
        if any(e.id == endpoint_id for e in endpoints):
            raise t.error("id", f"another endpoint already has id {endpoint_id!r}")
        names = t.str_list("origins")
        if not names:
            raise t.error("origins", "expected at least one origin name")
        for name in names:
            if name not in origins:
                raise t.error("origins", f"no origin is named {name!r}")
        endpoint = Endpoint(
            id=endpoint_id,
            origins=tuple(origins[name] for name in names),
            hosts=_hosts(t, endpoint_id, owners),
            private_key=t.secret("private_key"),
            previous_private_keys=tuple(Secret(key) for key in t.str_list("previous_private_keys", ())),
            signed_only=t.bool("signed_only", False),
            named_only=t.bool("named_only", False),
            url_style=t.str("url_style", "imagekit", choices=URL_STYLES),
            watermark=_watermark(t),
        )
        t.finish()
        _check_signing(t, endpoint)
        if endpoint.url_style == "cloudinary" and not cloud_names(endpoint.origins):
            raise t.error("url_style", 'needs an origin with folder = "/res/<cloud>/" (a Cloudinary backup bucket): '
                                       "its cloud name is the first segment of the URLs served")
        endpoints.append(endpoint)
    for origin in origins.values():
        # a Cloudinary backup's private assets: outputs are cached by URL, not by signature, so the origin serves
        # them only when no endpoint using it takes unsigned URLs
        if hasattr(origin, "serves_signed_types"):
            users = [e for e in endpoints if origin in e.origins]
            origin.serves_signed_types = bool(users) and all(e.signed_only for e in users)
    return tuple(endpoints)


def _check_signing(t: ConfigTable, endpoint: Endpoint) -> None:
    """An empty key would sign with a key anyone knows; a requirement without a key refuses everything."""
    if endpoint.private_key is not None and not endpoint.private_key.reveal().strip():
        raise t.error("private_key", "is empty: set the endpoint's private key, or remove the key")
    if any(not key.reveal().strip() for key in endpoint.previous_private_keys):
        raise t.error("previous_private_keys", "contains an empty key")
    if endpoint.private_key is None:
        for key, given in (("signed_only", endpoint.signed_only),
                           ("previous_private_keys", endpoint.previous_private_keys)):
            if given:
                raise t.error(key, "needs private_key")
    if endpoint.signed_only and endpoint.named_only and endpoint.url_style == "imagekit":
        # named_only restricts unsigned URLs (a signed URL may ask for any transformation), and
        # signed_only refuses them all: together, named_only would do nothing.
        raise t.error("named_only", "cannot be combined with signed_only: named_only limits unsigned URLs, "
                                    "which signed_only refuses (see docs/signed-urls.md)")


def _hosts(t: ConfigTable, endpoint_id: str, owners: dict[str, str]) -> tuple[str, ...]:
    """An endpoint's `hosts`, lower-cased; a host that could never match a `Host` header, or that
    another endpoint owns already, is an error (the router would silently pick one)."""
    hosts = []
    for host in t.host_names("hosts", ()):
        if host in owners:
            other = owners[host]
            raise t.error("hosts", f"{host!r} is also a host of the endpoint with id {other!r}" if other != endpoint_id
                          else f"{host!r} is listed twice")
        owners[host] = endpoint_id
        hosts.append(host)
    return tuple(hosts)
