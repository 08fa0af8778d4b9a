"""`type = "web"`: originals on any HTTP(S) server, at `base_url + "/" + path`.

One aiohttp `ClientSession` per origin lives from `open()` to `close()`, so connections to the origin
are kept alive and reused (tornado's simple client opens a connection per request; aiohttp is already
installed with aiobotocore). Redirects are followed here, at most 3, so that headers meant for the
origin (the forwarded `Host`, the extra `headers`, which may be tokens) never go to another host.

Redirect policy (the web origin must not become a way into the operator's network): a redirect is
followed only to `base_url`'s own scheme, host and port, or to an origin listed in `redirect_allow`
(`"https://cdn.example.com"`, `"https://*.example.com"`, or `"*"` for any). A target reached through
a wildcard must resolve to public addresses only: loopback, private, link-local and other special
addresses are refused unless listed exactly (the check runs in the resolver the connection uses, so a
name cannot resolve differently between check and connect). User info in a `Location`
(`http://user:pw@host/`) is dropped, never sent as credentials.

404/410 are not found; other 4xx are not found too, but logged, once a minute per status in each worker (the origin
is probably misconfigured; a client choosing paths an origin answers 400 or 414 must not write a line per
request); 5xx, timeouts and connection errors are origin errors. A refused redirect is an origin error
whose message names the path, the target and why: the node logs it with its other failures, at most once
per interval.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import socket
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from edge.plugin import (
    CHUNK_BYTES,
    USER_AGENT,
    ConfigTable,
    NotModified,
    Origin,
    Original,
    OriginFailure,
    OriginNotFound,
    OriginRequest,
    OriginSettings,
    Secret,
    Validators,
    hookimpl,
    host_name,
    read_limited,
    without_userinfo,
)

if TYPE_CHECKING:
    import aiohttp
    from aiohttp.abc import AbstractResolver
    from yarl import URL

log = logging.getLogger("edge.origin.web")

MAX_REDIRECTS = 3
MAX_CONNECTIONS = 64
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NOT_FOUND = frozenset({404, 410})
#: statuses that are the origin's refusal of the node (credentials, a policy)
_DENIED = frozenset({401, 403})
#: statuses that say "not now": a timeout or a rate limit
_TRY_LATER = frozenset({408, 429})
#: an unusual 4xx (not found all the same) is logged at most once per this many seconds per status, in each worker:
#: the client chooses the paths, and an origin that answers them all 400 or 414 is one problem, not one per request
UNUSUAL_STATUS_LOG_SECONDS = 60.0
_REDIRECT_ENTRY = re.compile(r"^(\*|https?://(\*\.)?[A-Za-z0-9.\-\[\]:]+)$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: headers the node sets itself; `headers` may not replace them
_RESERVED_HEADERS = frozenset({"host", "user-agent", "content-length", "transfer-encoding", "connection",
                               "if-none-match", "if-modified-since"})


class RedirectPolicy:
    """Where a web origin's redirects may lead: its own origin, exact listed origins (any address),
    and wildcard-listed hosts whose addresses are all public."""

    def __init__(self, base_url: str, allow: tuple[str, ...]):
        from yarl import URL

        self.base = URL(base_url).origin()
        self.exact = frozenset({self.base} | {URL(entry).origin() for entry in allow if "*" not in entry})
        #: (scheme or None for any, host suffix or "" for any host)
        self.wildcards = tuple(_wildcard(entry) for entry in allow if "*" in entry)

    def refusal(self, target: URL) -> str | None:
        """Why a redirect to `target` is refused, or None when it may be followed."""
        if target.scheme not in ("http", "https") or not target.host:
            return "not an http(s) URL"
        if target.origin() in self.exact:
            return None
        host = target.host.lower()
        if not any((scheme is None or scheme == target.scheme) and (not suffix or host.endswith(suffix))
                   for scheme, suffix in self.wildcards):
            return "not base_url's scheme, host and port, nor listed in redirect_allow"
        if _is_ip_literal(host) and not _is_public(host):
            return "a loopback, private or link-local address not listed exactly in redirect_allow"
        if _IPV4_FORM.fullmatch(host.rstrip(".").rpartition(".")[2]) and not _is_ip_literal(host):
            # `2130706433`, `127.1`, `0x7f.1`: URLs read an address there (WHATWG), aiohttp refuses the form
            return "an IPv4 address not written in its canonical form"
        return None

    def trusted_endpoints(self) -> frozenset[tuple[str, int]]:
        """The (host, port) that may resolve to any address: base_url's and those listed exactly. By port too: a
        wildcard-allowed redirect to base_url's host name on another port (`origin.internal:6379`) had reached that
        private address, another service of the origin's machine."""
        return frozenset((url.host.lower(), url.port) for url in self.exact)


def _where(target: URL) -> str:
    """A redirect target for a message: its scheme, host and port (never its path or query), or only
    its scheme when it has no host (`file:///etc/passwd`: yarl has no origin for it)."""
    if target.scheme in ("http", "https") and target.host:
        return str(target.origin())
    return f"a {target.scheme or 'scheme-less'}: URL"


def _wildcard(entry: str) -> tuple[str | None, str]:
    if entry == "*":
        return None, ""
    scheme, _, host = entry.partition("://")
    return scheme, host.removeprefix("*")  # "*.example.com" → ".example.com"


#: a last label that makes a host an IPv4 address in some form (a name's last label is never numeric)
_IPV4_FORM = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


#: IPv6 prefixes that carry an IPv4 address in their last 32 bits to a gateway that connects to it: NAT64's
#: well-known prefix (RFC 6052) and the IPv4-compatible form (deprecated, RFC 4291). Python counts them global
#: whatever IPv4 address they carry
_CARRYING_IPV4 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("::/96"))
#: NAT64's local-use prefix (RFC 8215): a site's own translators, where the IPv4 address sits depends on the
#: prefix length the site chose; never global, whatever Python says
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")


def _is_public(address: str) -> bool:
    """Whether the address is global, and so is the IPv4 address it carries to a gateway (6to4, NAT64: a
    private name's AAAA record synthesized by DNS64 reached the private IPv4 service)."""
    parsed = ipaddress.ip_address(address.strip("[]").split("%")[0])
    if not parsed.is_global or parsed in _LOCAL_NAT64:
        return False
    if isinstance(parsed, ipaddress.IPv6Address):
        carried = parsed.ipv4_mapped or parsed.sixtofour or next(
            (ipaddress.IPv4Address(int(parsed) & 0xFFFFFFFF) for network in _CARRYING_IPV4 if parsed in network),
            None)
        return carried is None or carried.is_global
    return True


class NotPublic(OSError):
    """A name resolved to no public address (and is not trusted to)."""


@functools.cache
def _public_only_resolver() -> type[AbstractResolver]:
    """The resolver class, defined on first use: aiohttp is imported only by a node with a web origin."""
    import aiohttp
    from aiohttp.abc import AbstractResolver

    class PublicOnlyResolver(AbstractResolver):
        """Resolves as usual, but keeps only public addresses for names not trusted by the policy: a
        wildcard-allowed redirect target cannot lead to 127.0.0.1 or 10.0.0.0/8 through DNS."""

        def __init__(self, trusted: frozenset[tuple[str, int]]):
            self._resolver = aiohttp.DefaultResolver()
            self._trusted = trusted

        async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):
            results = await self._resolver.resolve(host, port, family)
            if (host.lower(), port) in self._trusted:
                return results
            public = [result for result in results if _is_public(result["host"])]
            if not public:
                raise NotPublic(f"{host} resolves to no public address")
            return public

        async def close(self) -> None:
            await self._resolver.close()

    return PublicOnlyResolver


class WebOrigin(Origin):
    type_name = "web"

    def __init__(self, settings: OriginSettings, *, base_url: str, forward_host: bool | tuple[str, ...],
                 headers: dict[str, Secret], redirect_allow: tuple[str, ...] = (), merge_slashes: bool = True):
        super().__init__(settings)
        # aiohttp (with yarl) costs a process ~9 MB: imported once a config names a web origin (in `edge
        # serve`'s supervisor, before it forks: the workers share it), never without one
        import aiohttp  # noqa: F401
        self.base_url = base_url
        #: true (every client's Host is sent), false (none), or the host names whose Host is sent
        self.forward_host = forward_host
        self._forwarded = frozenset(forward_host) if isinstance(forward_host, tuple) else None
        self._headers = headers  # values may be tokens: kept as `Secret`, shown masked
        self.redirect_allow = redirect_allow
        #: the server reads `a//b.jpg` as `a/b.jpg`, as nginx (`merge_slashes`) and most servers do
        self.merges_slashes = merge_slashes
        self._redirects = RedirectPolicy(base_url, redirect_allow)
        self._session: aiohttp.ClientSession | None = None
        #: when each unusual 4xx status (not found all the same) was last logged
        self._unusual_status_logged_at: dict[int, float] = {}

    @classmethod
    def from_config(cls, settings: OriginSettings, table: ConfigTable) -> WebOrigin:
        base_url, parts = table.url("base_url")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise table.error("base_url", "expected an http:// or https:// URL without ?query, "
                                          f"got {without_userinfo(base_url)!r}")
        if parts.username or parts.password:  # it would show in logs and config dumps
            raise table.error("base_url", "expected no user:password@ in the URL; send credentials with "
                                          'headers = { Authorization = "${ENV_VAR}" }')
        headers = table.str_map("headers", {})
        for name, value in headers.items():
            if not _HEADER_NAME.match(name):
                raise table.error("headers", f"{name!r} is not a valid header name")
            if name.lower() in _RESERVED_HEADERS:
                raise table.error("headers", f"{name!r} is set by the node itself and cannot be replaced")
            if "\r" in value or "\n" in value:
                raise table.error("headers", f"the value of {name!r} contains a line break")
        redirect_allow = table.str_list("redirect_allow", ())
        for entry in redirect_allow:
            if not _REDIRECT_ENTRY.match(entry):
                raise table.error("redirect_allow", f"expected \"*\" or scheme://host[:port] with an optional "
                                                    f"leading *. in the host, got {entry!r}")
        origin = cls(settings, base_url=base_url.rstrip("/"),
                     forward_host=table.bool_or_host_names("forward_host", False),
                     headers={name: Secret(value) for name, value in headers.items()},
                     redirect_allow=redirect_allow, merge_slashes=table.bool("merge_slashes", True))
        table.finish()
        return origin

    @property
    def takes_request_host(self) -> bool:
        return bool(self.forward_host)

    def takes_host(self, host: str) -> bool:
        return self._forwarded is None or host_name(host) in self._forwarded

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "headers": {name: str(value) for name, value in self._headers.items()}}

    async def open(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(
            headers={"User-Agent": USER_AGENT},
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
            connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS,
                                           resolver=_public_only_resolver()(self._redirects.trusted_endpoints())),
            cookie_jar=aiohttp.DummyCookieJar(),  # one request's cookies must not ride on the next
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def url_for(self, path: str) -> URL:
        """`base_url/path`, the decoded path percent-encoded once (`+` → `%2B`, so no server reads a space)."""
        from yarl import URL

        return URL(f"{self.base_url}/{quote(path, safe='/')}", encoded=True)

    def _origin_headers(self, validators: Validators | None, host: str | None) -> dict[str, str]:
        headers = {name: value.reveal() for name, value in self._headers.items()}
        if host:  # given only when `takes_host`
            headers["Host"] = host
        if validators is not None and validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators is not None and validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
        return headers

    async def fetch(self, request: OriginRequest) -> Original:
        import aiohttp  # imported with the origin: a lookup

        path, max_bytes, validators = request.path, request.max_bytes, request.validators
        url = self.url_for(path)
        origin = url.origin()
        headers = self._origin_headers(validators, request.host)
        try:
            for _ in range(MAX_REDIRECTS + 1):
                # only the configured origin gets its headers (and conditional ones): never another host
                sent = headers if url.origin() == origin else {}
                async with self._session.get(url, headers=sent, allow_redirects=False) as response:
                    location = response.headers.get("Location")
                    if response.status in _REDIRECTS and location:
                        url = self._redirect_target(response.url, location, path)
                        continue
                    return await self._read(response, path, max_bytes, validators)
        except aiohttp.ClientConnectorCertificateError as error:  # the port answers: "cannot connect" misled
            raise OriginFailure("refused", f"the TLS certificate of {url.origin()} does not verify "
                                           f"({_reason(error.certificate_error)}): SSL_CERT_FILE names the CAs "
                                           "trusted (docs/origins.md)") from None
        except aiohttp.ClientSSLError as error:
            raise OriginFailure("refused", f"no TLS with {url.origin()} ({_reason(error.os_error)}): is it an "
                                           "https:// port?") from None
        except aiohttp.ClientConnectorError as error:
            if isinstance(error.os_error, NotPublic):  # a redirect target's name led to a special address
                raise OriginFailure("redirect_refused",
                                    f"redirect for {path!r} to {url.origin()} refused: {error.os_error}") from None
            if isinstance(error.os_error, socket.gaierror):  # a typo'd host, told apart from a closed port
                raise OriginFailure("refused", f"cannot connect to {url.origin()}: its name does not resolve") from None
            raise OriginFailure("refused", f"cannot connect to {url.origin()}") from None
        except (aiohttp.ServerTimeoutError, TimeoutError):
            raise OriginFailure("timeout", f"no answer from {origin} in time") from None
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
            raise OriginFailure("bad_response", f"the response from {origin} was cut short") from None
        except aiohttp.ClientResponseError as error:  # its HTTP parser's: two Content-Lengths, bytes past one
            raise OriginFailure("bad_response", f"malformed response from {origin}: {error.message[:200]!r}") from None
        except aiohttp.ClientError as error:
            raise OriginFailure("error", f"{origin}: {type(error).__name__}") from None
        raise OriginFailure("bad_response", f"more than {MAX_REDIRECTS} redirects for {path!r}")

    def _redirect_target(self, current: URL, location: str, path: str) -> URL:
        from yarl import URL

        try:
            target = current.join(URL(location))
        except ValueError:
            raise OriginFailure("bad_response", f"unreadable redirect for {path!r}") from None
        if target.user is not None or target.password is not None:
            target = target.with_user(None)  # never credentials: aiohttp would send them as Basic auth
        reason = self._redirects.refusal(target)
        if reason is not None:
            raise OriginFailure("redirect_refused", f"redirect for {path!r} to {_where(target)} refused: {reason}")
        return target

    async def _read(self, response: aiohttp.ClientResponse, path: str, max_bytes: int,
                    validators: Validators | None) -> Original:
        status = response.status
        if status == 304 and validators is not None:
            raise NotModified(path)
        if status in _NOT_FOUND:
            raise OriginNotFound(path)
        # a refusal or a passing overload is the origin's failure, never "not found": that would answer
        # (and let caches in front keep) a 404 and drop every output of the path, stale copies included
        if status in _DENIED:
            raise OriginFailure("denied", f"HTTP {status} for {path!r}")
        if status in _TRY_LATER:
            raise OriginFailure("server_error", f"HTTP {status} for {path!r}")
        if 400 <= status < 500:
            now, logged_at = time.monotonic(), self._unusual_status_logged_at.get(status)
            if logged_at is None or now - logged_at >= UNUSUAL_STATUS_LOG_SECONDS:
                self._unusual_status_logged_at[status] = now
                log.warning("origin %r answered HTTP %d, treated as not found (logged at most once a minute per "
                            "status by each worker): %r", self.name, status, path)
            raise OriginNotFound(path)
        if status >= 500:
            raise OriginFailure("server_error", f"HTTP {status} for {path!r}")
        if status != 200:
            raise OriginFailure("bad_response", f"unexpected HTTP {status} for {path!r}")
        body = await read_limited(response.content.iter_chunked(CHUNK_BYTES), max_bytes, path,
                                  announced=response.content_length)
        return Original(body, etag=response.headers.get("ETag"), last_modified=response.headers.get("Last-Modified"),
                        content_type=response.headers.get("Content-Type"))


def _reason(error: object) -> str:
    """What TLS said went wrong, in its own short words (`self-signed certificate`, `WRONG_VERSION_NUMBER`)."""
    return str(getattr(error, "verify_message", None) or getattr(error, "reason", None) or type(error).__name__)[:100]


#: the `edge.plugin` API this module is written against
EDGE_PLUGIN_API = "1.4"


@hookimpl
def edge_origin_types() -> list[type[Origin]]:
    return [WebOrigin]
