"""Purge: remove everything cached for a URL's path (every transformed output, the original, a
not-found record), or for every path under a prefix. `POST /_edge/purge` and `edge purge` share it.

A target is written as a URL the node serves (`https://img.example.com/shop/tr:w-300/shoes/red.jpg`)
or just its path (`/shop/shoes/red.jpg`): the host and the first segment pick the endpoint exactly as
for an image request; the transformation and the query are ignored, since all variants go. A prefix
is matched against the decoded path (`/shop/shoes/` removes all of `shoes/`; `/shop/` the endpoint).

In a fleet (`[fleet] peers`), a purge received from outside is also sent to every peer
(`edge.fanout`), and the answer lists each peer's result; one that fails makes the answer a 502.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import Any
from urllib.parse import urlsplit

from .cache import Caches, path_key, path_prefix_key
from .config import Config
from .errors import BadRequest, ConfigError, NotFound
from .fanout import FanOut, PeerResult
from .routing import Router
from .settings import Secret

log = logging.getLogger("edge.purge")


def authorized(authorization: str | None, token: Secret) -> bool:
    """Whether an `Authorization` header carries the admin token (compared in constant time)."""
    scheme, _, given = (authorization or "").partition(" ")
    given = given.strip()
    return scheme.lower() == "bearer" and bool(given) and hmac.compare_digest(given.encode(), token.reveal().encode())


def parse_body(body: bytes) -> dict[str, str]:
    """`{"url": "..."}` or `{"prefix": "..."}`, or a 400 that says what is wrong."""
    try:
        return parse_target(json.loads(body))
    except (ValueError, UnicodeDecodeError):
        raise BadRequest('expected a JSON body: {"url": "..."} or {"prefix": "..."}') from None


def parse_target(target: Any) -> dict[str, str]:
    if not isinstance(target, dict) or len(target) != 1 or not target.keys() <= {"url", "prefix"}:
        raise BadRequest('expected exactly one of "url" or "prefix"')
    (kind, value), = target.items()
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{kind}: expected a URL or a path")
    return target


def key_prefix(router: Router, target: dict[str, str]) -> str:
    """The cache-key prefix of everything the target covers."""
    (kind, value), = target.items()
    parts = urlsplit(value)
    try:
        request = router.route(parts.netloc, "/" + parts.path.lstrip("/"), allow_empty_path=True)
    except NotFound:
        raise BadRequest(f"{kind}: no endpoint of this node serves {value!r}") from None
    if kind == "url":
        if not request.path:
            raise BadRequest("url: names no image")
        return path_key(request.endpoint.id, request.path)
    return path_prefix_key(request.endpoint.id, request.path)


def purge(caches: Caches, router: Router, target: dict[str, str]) -> dict[str, Any]:
    """Remove what `target` covers from every tier (blocking); the answer for the caller."""
    removed = caches.forget(key_prefix(router, target))
    return {"removed": sum(removed.values()), "by_tier": removed}


async def purge_serving(caches: Caches, router: Router, target: dict[str, str], token: Secret,
                        fan_out: FanOut | None, forwarded: bool) -> tuple[int, dict[str, Any]]:
    """`POST /_edge/purge` on a running node: this node's tiers, then every peer unless the call was
    itself forwarded by a peer. The status and the answer."""
    answer = await asyncio.to_thread(purge, caches, router, target)
    if fan_out is None or forwarded:
        return 200, answer
    status, answer = with_peers(answer, await fan_out.purge(token, target))
    for failed in (peer for peer in answer["peers"] if peer["outcome"] != "ok"):
        log.warning("purge of %s not done on peer %s: %s", target, failed["peer"], failed["outcome"])
    return status, answer


def with_peers(answer: dict[str, Any], results: list[PeerResult]) -> tuple[int, dict[str, Any]]:
    """The answer of a fanned-out purge and its status: 502 when a peer was not purged."""
    answer["peers"] = [result.describe() for result in results]
    return (200 if all(result.outcome == "ok" for result in results) else 502), answer


def purge_offline(config: Config, target: dict[str, str]) -> dict[str, Any]:
    """`edge purge`: the same, on the cache folder directly (whether or not the node is running)."""
    caches = Caches(config.cache.dir, config.cache.output_size, config.cache.original_size)
    try:
        return purge(caches, Router(config.endpoints), target)
    finally:
        caches.close()


def purge_fleet_offline(config: Config, target: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """`edge purge --fleet`: this node's cache folder, then every peer through its purge API."""
    if config.admin_token is None:
        raise ConfigError(f"{config.source}: [admin] token: --fleet calls the peers' purge API, which needs the token")
    if not config.fleet.others:
        raise ConfigError(f"{config.source}: [fleet] peers: --fleet needs the other nodes of the fleet")
    answer = purge_offline(config, target)

    async def call_peers() -> list[PeerResult]:
        fan_out = FanOut(config.fleet)
        try:
            return await fan_out.purge(config.admin_token, target)
        finally:
            fan_out.close()

    return with_peers(answer, asyncio.run(call_peers()))
