"""The shipped HAProxy and nginx configs (`deploy/haproxy`, `deploy/nginx`), run for real in front of
three nodes: one URL always reaches one node, a lost node's URLs move to the others and no other URL
moves, and the admin API and /metrics are reachable only through the internal listener."""

import asyncio
import json
import socket
import time

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.fleet import AUTH, served_by, start_fleet
from tests.loadbalancers import BALANCERS, LoadBalancer
from tests.nodes import RunningNode, local_config

# 48 URLs: the ring places each node by its random port, so with 18 a node owned none of them about once in
# 500 runs; with 48, (2/3)^48 makes that about once in 10^8.
URLS = [f"/tr:w-{width}/{name}" for width in range(20, 52, 2) for name in ("coffee.jpg", "chelsea.jpg", "camera.jpg")]


@pytest.fixture
async def nodes(node_factory, tmp_path):
    return await start_fleet(node_factory, tmp_path, local_config())


@pytest.fixture(params=BALANCERS)
async def balancer(request, nodes, tmp_path):
    lb = LoadBalancer(request.param, [node.url for node in nodes], tmp_path / request.param)
    yield lb
    lb.stop()


async def fetch(url: str, **kwargs):
    return await AsyncHTTPClient().fetch(url, raise_error=False, request_timeout=30, **kwargs)


async def owner(balancer: LoadBalancer, nodes: list[RunningNode], path: str) -> int:
    """Request `path` through the public listener; the index of the node that answered."""
    return (await served_by(balancer.public_url, nodes, path))[0]


async def test_one_url_one_node_and_a_lost_node_moves_only_its_urls(balancer, nodes):
    owners = {path: await owner(balancer, nodes, path) for path in URLS}
    assert set(owners.values()) == {0, 1, 2}  # spread over the fleet
    for path in URLS:  # and sticky: the same node again, which has it cached
        assert await owner(balancer, nodes, path) == owners[path]

    lost = owners[URLS[0]]
    await nodes[lost].stop()
    for path in URLS:
        now = await owner(balancer, nodes, path)
        if owners[path] == lost:
            assert now != lost
        else:
            assert now == owners[path], (path, "moved although its node is alive")


async def test_admin_api_and_metrics_only_on_the_internal_listener(balancer, nodes):
    public, internal = balancer.public_url, balancer.internal_url
    purge = {"method": "POST", "body": b'{"url": "/coffee.jpg"}', "headers": AUTH}
    for path in ("/metrics", "/_edge/ready", "/_edge/health", "/%5Fedge/ready", "/metrics?x=1"):
        response = await fetch(public + path)
        assert response.code == 404, path
        assert b"edge_" not in response.body and b"ready" not in response.body
    for path in ("/_edge/purge", "/%5Fedge/purge", "//_edge/purge"):
        assert (await fetch(public + path, **purge)).code in (403, 404, 405), path
    assert (await fetch(public + "/tr:w-20/coffee.jpg")).code == 200

    response = await fetch(internal + "/_edge/purge", **purge)
    assert response.code == 200 and len(json.loads(response.body)["peers"]) == 2
    # the marker of the nodes' calls to each other is stripped here too: with it, a purge had reached one node
    # alone (not its peers, the shared tier nor the journal), answered 200
    marked = await fetch(internal + "/_edge/purge", **{**purge, "headers": {**AUTH, "X-Edge-Purge-Forwarded": "1"}})
    assert marked.code == 200 and len(json.loads(marked.body)["peers"]) == 2
    assert (await fetch(internal + "/metrics")).code == 404
    assert (await fetch(internal + "/tr:w-20/coffee.jpg")).code == 404


async def test_a_cors_preflight_reaches_the_nodes_and_other_methods_do_not(balancer, nodes):
    """The node answers preflights (docs/security.md): the balancers had refused them (nginx 403, HAProxy 405),
    without CORS headers, so a page's fetch with `If-None-Match` or client hints failed."""
    preflight = await fetch(balancer.public_url + "/tr:w-20/coffee.jpg", method="OPTIONS", headers={
        "Origin": "https://shop.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "if-none-match"})
    assert preflight.code == 204 and preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert preflight.headers["Access-Control-Allow-Headers"] == "If-None-Match"
    posted = await fetch(balancer.public_url + "/tr:w-20/coffee.jpg", method="POST", body=b"x")
    assert posted.code in (403, 405)


#: what the test balancers wait for a purge's answer: over a purge's own time here (no shared tier, every peer up)
ADMIN_TIMEOUT = 4


@pytest.mark.parametrize("kind", BALANCERS)
async def test_a_purge_sent_to_a_node_that_does_not_answer_is_done_by_another(kind, nodes, tmp_path):
    """A node that hangs (a frozen machine: its socket takes connections, nothing answers) behind the internal
    listener: the purges the balancer sends it are sent to the next node after the answer timeout, and answered
    there. They had got the balancer's bare 504, nothing purged anywhere until that node woke up (fleet probe)."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)  # never accepts: the kernel completes the handshakes, nothing reads
        urls = [nodes[0].url, nodes[1].url, f"http://127.0.0.1:{hung.getsockname()[1]}"]
        lb = LoadBalancer(kind, urls, tmp_path / kind, admin_timeout=ADMIN_TIMEOUT)
        try:
            purges = [fetch(lb.internal_url + "/_edge/purge", method="POST", body=b'{"url": "/coffee.jpg"}',
                            headers=AUTH) for _ in range(3)]  # one at least to each node, the hung one too
            started = time.monotonic()
            answers = await asyncio.gather(*purges)
            waited = time.monotonic() - started
        finally:
            lb.stop()
    assert [(a.code, a.headers.get("Content-Type")) for a in answers] == [(200, "application/json")] * 3
    assert waited >= ADMIN_TIMEOUT  # one went to the hung node first (not yet marked down), then to the next
