"""Purge fan-out: the same purge sent to every other node of the fleet (`[fleet] peers`).

Each call carries the admin token and `X-Edge-Purge-Forwarded`, which tells the peer to purge only
itself: a purge crosses the fleet once, whichever node received it, and never loops. Peers are called
in parallel, each within `[fleet] timeout`; the answer names each peer with its outcome, so an
operator sees which node was not purged.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.simple_httpclient import HTTPTimeoutError

from .config import FleetSettings
from .httpserver import PURGE_PATH
from .settings import Secret

if TYPE_CHECKING:  # prometheus-client is imported only once the CLI has chosen its metrics mode
    from prometheus_client import Counter

FORWARDED_HEADER = "X-Edge-Purge-Forwarded"
#: peers called at once by one fan-out
MAX_PARALLEL_CALLS = 32
#: a peer's answer is a small JSON object; anything larger is not one
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class PeerResult:
    """What one peer said: `ok` (purged; `removed` entries), `rejected` (it answered another status),
    `unreachable` (no connection, or a broken answer) or `timeout`."""

    peer: str
    outcome: str
    status: int | None = None
    removed: int | None = None

    def describe(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"peer": self.peer, "outcome": self.outcome}
        if self.status is not None:
            answer["status"] = self.status
        if self.removed is not None:
            answer["removed"] = self.removed
        return answer


class FanOut:
    """One HTTP client per process for fan-out calls."""

    def __init__(self, fleet: FleetSettings, calls: Counter | None = None):
        self.fleet = fleet
        self._calls = calls  # edge_fleet_purge_calls_total{peer, outcome}
        self._client = AsyncHTTPClient(force_instance=True, max_clients=MAX_PARALLEL_CALLS,
                                       max_body_size=MAX_ANSWER_BYTES)

    async def purge(self, token: Secret, target: dict[str, str]) -> list[PeerResult]:
        """Ask every other node to purge `target`; one result per peer, in the configured order."""
        body = json.dumps(target).encode()
        results = await asyncio.gather(*(self._call(peer, token, body) for peer in self.fleet.others))
        if self._calls is not None:
            for result in results:
                self._calls.labels(result.peer, result.outcome).inc()
        return list(results)

    async def _call(self, peer: str, token: Secret, body: bytes) -> PeerResult:
        timeout = self.fleet.timeout
        try:
            response = await self._client.fetch(
                peer + PURGE_PATH, method="POST", body=body, raise_error=False, follow_redirects=False,
                connect_timeout=timeout, request_timeout=timeout,
                headers={"Authorization": f"Bearer {token.reveal()}", FORWARDED_HEADER: "1",
                         "Content-Type": "application/json"})
        except HTTPTimeoutError:
            return PeerResult(peer, "timeout")
        except (HTTPClientError, OSError):  # refused, reset, cut short, an oversized answer
            return PeerResult(peer, "unreachable")
        if response.code != 200:
            return PeerResult(peer, "rejected", status=response.code)
        try:
            removed = json.loads(response.body)["removed"]
        except (ValueError, KeyError, TypeError):
            return PeerResult(peer, "unreachable", status=response.code)
        return PeerResult(peer, "ok", status=200, removed=removed if isinstance(removed, int) else None)

    def close(self) -> None:
        self._client.close()
