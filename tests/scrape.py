"""Reading a node's `/metrics` the way Prometheus does."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient

from tests.nodes import until


async def scrape(node_url: str) -> str:
    response = await AsyncHTTPClient(force_instance=True).fetch(node_url + "/metrics")
    return response.body.decode()


def samples(text: str, name: str, **labels: str) -> dict[tuple, float]:
    """The samples called `name` whose labels include `labels`: {sorted label items: value}."""
    return {tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == name and labels.items() <= s.labels.items()}


def total(text: str, name: str, **labels: str) -> float:
    return sum(samples(text, name, **labels).values())


async def scrape_when(node_url: str, name: str, expected: float, **labels: str) -> str:
    """The exposition once `name{labels}` reaches `expected`: a worker counts a request just after
    answering it, and the cache gauges are refreshed every few seconds."""
    async def reached():
        return total(await scrape(node_url), name, **labels) == expected
    await until(reached, f"{name}{labels} == {expected}")
    return await scrape(node_url)
