"""A fleet of in-process nodes for tests: each knows the others (`[fleet] peers`) and itself."""

from __future__ import annotations

from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.netutil import bind_sockets

from tests.nodes import RunningNode, write_config

TOKEN = "fleet-admin-token-5d1c9e7a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def start_fleet(node_factory, directory: Path, config_text: str, size: int = 3,
                      fleet_extra: str = "", more_peers: tuple[str, ...] = ()) -> list[RunningNode]:
    """`size` nodes, each with its own cache under `directory/node-N`, the admin token, and a
    `[fleet]` table naming all of them (and `more_peers`). `config_text` is the rest of the config."""
    sockets = [bind_sockets(0, "127.0.0.1") for _ in range(size)]
    urls = [f"http://127.0.0.1:{bound[0].getsockname()[1]}" for bound in sockets]
    peers = ", ".join(f'"{url}"' for url in (*urls, *more_peers))
    nodes = []
    for number, (bound, url) in enumerate(zip(sockets, urls)):
        folder = directory / f"node-{number}"
        folder.mkdir()
        text = f"""
[server]
access_log = false

[admin]
token = "{TOKEN}"

[fleet]
peers = [{peers}]
self_url = "{url}"
{fleet_extra}
{config_text}"""
        nodes.append(await node_factory(write_config(folder, text), sockets=bound))
    return nodes


def answered(node: RunningNode) -> float:
    """Image requests this node has answered."""
    return sum(sample.value for family in node.node.metrics.http_requests.collect()
               for sample in family.samples if sample.name == "edge_http_requests_total")


def renders(nodes: list[RunningNode]) -> float:
    """Transformations made by these nodes."""
    return sum(sample.value for node in nodes for family in node.node.metrics.transform_duration.collect()
               for sample in family.samples if sample.name == "edge_transform_duration_seconds_count")


async def served_by(base_url: str, nodes: list[RunningNode], path: str) -> tuple[int, HTTPResponse]:
    """Request `path` from the load balancer at `base_url`: which node answered, and the response."""
    before = [answered(node) for node in nodes]
    response = await AsyncHTTPClient().fetch(base_url + path, raise_error=False, request_timeout=30)
    assert response.code == 200, (path, response.code, response.body[:200])
    moved = [i for i, node in enumerate(nodes) if answered(node) != before[i]]
    assert len(moved) == 1, moved
    return moved[0], response
