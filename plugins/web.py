"""`type = "web"`: originals on any HTTP(S) server, at `base_url + "/" + path`.

One aiohttp `ClientSession` per origin lives from `open()` to `close()`, so connections to the origin
are kept alive and reused (tornado's simple client opens a connection per request; aiohttp is already
installed with aiobotocore). Redirects are followed here, at most 3, so that headers meant for the
origin (the forwarded `Host`, the extra `headers`, which may be tokens) never go to another host.

404/410 are not found; other 4xx are not found too, but logged (the origin is probably misconfigured);
5xx, timeouts and connection errors are origin errors.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

import edge
from edge.fetching import CHUNK_BYTES, check_announced_size, read_limited
from edge.hookspecs import hookimpl
from edge.origin import (
    NotModified,
    Origin,
    Original,
    OriginFailure,
    OriginNotFound,
    OriginRequest,
    OriginSettings,
    Validators,
)
from edge.settings import ConfigTable, Secret

log = logging.getLogger("edge.origin.web")

USER_AGENT = f"edge-image-node/{edge.__version__} (image edge node)"
MAX_REDIRECTS = 3
MAX_CONNECTIONS = 64
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NOT_FOUND = frozenset({404, 410})
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: headers the node sets itself; `headers` may not replace them
_RESERVED_HEADERS = frozenset({"host", "user-agent", "content-length", "transfer-encoding", "connection",
                               "if-none-match", "if-modified-since"})


class WebOrigin(Origin):
    type_name = "web"

    def __init__(self, settings: OriginSettings, *, base_url: str, forward_host: bool,
                 headers: dict[str, Secret]):
        super().__init__(settings)
        self.base_url = base_url
        self.forward_host = forward_host
        self._headers = headers  # values may be tokens: kept as `Secret`, shown masked
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_config(cls, settings: OriginSettings, table: ConfigTable) -> WebOrigin:
        base_url = table.str("base_url")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise table.error("base_url", f"expected an http:// or https:// URL without ?query, got {base_url!r}")
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
        origin = cls(settings, base_url=base_url.rstrip("/"), forward_host=table.bool("forward_host", False),
                     headers={name: Secret(value) for name, value in headers.items()})
        table.finish()
        return origin

    @property
    def takes_request_host(self) -> bool:
        return self.forward_host

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "headers": {name: str(value) for name, value in self._headers.items()}}

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": USER_AGENT},
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
            connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
            cookie_jar=aiohttp.DummyCookieJar(),  # one request's cookies must not ride on the next
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def url_for(self, path: str) -> URL:
        """`base_url/path`, the decoded path percent-encoded once (`+` → `%2B`, so no server reads a space)."""
        return URL(f"{self.base_url}/{quote(path, safe='/')}", encoded=True)

    def _origin_headers(self, validators: Validators | None, host: str | None) -> dict[str, str]:
        headers = {name: value.reveal() for name, value in self._headers.items()}
        if self.forward_host and host:
            headers["Host"] = host
        if validators is not None and validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators is not None and validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
        return headers

    async def fetch(self, request: OriginRequest) -> Original:
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
                        url = response.url.join(URL(location))
                        continue
                    return await self._read(response, path, max_bytes, validators)
        except aiohttp.ClientConnectorError:
            raise OriginFailure("refused", f"cannot connect to {origin}") from None
        except (aiohttp.ServerTimeoutError, TimeoutError):
            raise OriginFailure("timeout", f"no answer from {origin} in time") from None
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
            raise OriginFailure("bad_response", f"the response from {origin} was cut short") from None
        except aiohttp.ClientError as error:
            raise OriginFailure("error", f"{origin}: {type(error).__name__}") from None
        raise OriginFailure("bad_response", f"more than {MAX_REDIRECTS} redirects for {path!r}")

    async def _read(self, response: aiohttp.ClientResponse, path: str, max_bytes: int,
                    validators: Validators | None) -> Original:
        status = response.status
        if status == 304 and validators is not None:
            raise NotModified(path)
        if status in _NOT_FOUND:
            raise OriginNotFound(path)
        if 400 <= status < 500:
            log.warning("origin %r answered HTTP %d for %r; treated as not found", self.name, status, path)
            raise OriginNotFound(path)
        if status >= 500:
            raise OriginFailure("server_error", f"HTTP {status} for {path!r}")
        if status != 200:
            raise OriginFailure("bad_response", f"unexpected HTTP {status} for {path!r}")
        check_announced_size(response.content_length, max_bytes, path)
        body = await read_limited(response.content.iter_chunked(CHUNK_BYTES), max_bytes, path)
        return Original(body, etag=response.headers.get("ETag"), last_modified=response.headers.get("Last-Modified"),
                        content_type=response.headers.get("Content-Type"))


#: the `edge.plugin` API this module is written against
EDGE_PLUGIN_API = "1.0"


@hookimpl
def edge_origin_types() -> list[type[Origin]]:
    return [WebOrigin]
