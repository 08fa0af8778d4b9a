"""Reading a node's `/metrics` the way Prometheus does."""

from __future__ import annotations

from collections.abc import Callable

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
    return await scrape_until(node_url, lambda text: total(text, name, **labels) == expected,
                              f"{name}{labels} == {expected}")


async def scrape_until(node_url: str, reached: Callable[[str], bool], what: str) -> str:
    """The first exposition that `reached` accepts (`what` it waits for)."""
    seen = []

    async def accepted():
        seen.append(await scrape(node_url))
        return reached(seen[-1])
    await until(accepted, what)
    return seen[-1]  # another scrape may reach the other worker, whose text may be older (`EXPOSITION_SECONDS`)
