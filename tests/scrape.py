"""Reading a node's `/metrics` the way Prometheus does."""

from __future__ import annotations

from tornado.httpclient import AsyncHTTPClient

from edge.testing import samples, total  # noqa: F401 - the tests' names for them
from tests.nodes import until


async def scrape(node_url: str) -> str:
    client = AsyncHTTPClient(force_instance=True)
    try:
        return (await client.fetch(node_url + "/metrics")).body.decode()
    finally:
        client.close()


async def scrape_when(node_url: str, name: str, expected: float, **labels: str) -> str:
    """The exposition once `name{labels}` reaches `expected`: a worker counts a request just after
    answering it, and the cache gauges are refreshed every few seconds."""
    seen = []

    async def reached():
        seen.append(await scrape(node_url))
        return total(seen[-1], name, **labels) == expected
    await until(reached, f"{name}{labels} == {expected}")
    return seen[-1]  # another scrape may reach the other worker, whose text may be older (`EXPOSITION_SECONDS`)
