"""Reading a node's `/metrics` the way Prometheus does."""

from __future__ import annotations

from tornado.httpclient import AsyncHTTPClient

from edge.testing import samples, total  # noqa: F401 - the tests' names for them


async def scrape(node_url: str) -> str:
    response = await AsyncHTTPClient(force_instance=True).fetch(node_url + "/metrics")
    return response.body.decode()
