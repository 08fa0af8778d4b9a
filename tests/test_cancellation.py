"""A client that goes away cancels the work nobody else waits for: the origin fetch is abandoned (and
counted); work that another request still waits for goes on."""

import asyncio
from urllib.parse import urlsplit

import pytest

from tests.assets import solid
from tests.nodes import decode, until, web_config, write_config
from tests.scrape import total
from tests.servers import HTTPOrigin

PATH = "/tr:w-40/slow.jpg"


@pytest.fixture
async def stalling_origin():
    server = await HTTPOrigin(files={"slow.jpg": solid(80, 60, (200, 30, 30))}).start()
    server.behaviour.hold = asyncio.Event()  # answers only when the test says so
    yield server
    server.behaviour.hold.set()
    await server.stop()


@pytest.fixture
async def node(stalling_origin, node_factory, tmp_path):
    return await node_factory(write_config(tmp_path, web_config(stalling_origin.url)))


def metric(running, name: str, **labels: str) -> float:
    return total(running.node.metrics.exposition().decode(), name, **labels)


async def open_request(node_url: str, path: str) -> asyncio.StreamWriter:
    """A client that sends a request and reads nothing."""
    address = urlsplit(node_url)
    _, writer = await asyncio.open_connection(address.hostname, address.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {address.netloc}\r\n\r\n".encode())
    await writer.drain()
    return writer


async def test_a_disconnect_cancels_the_lone_origin_fetch(stalling_origin, node):
    client = await open_request(node.url, PATH)

    async def fetching():
        return stalling_origin.requests["slow.jpg"] == 1
    await until(fetching, "the fetch reaching the origin")
    client.close()
    await client.wait_closed()

    async def abandoned():
        return (metric(node, "edge_abandoned_work_total", kind="outputs"),
                metric(node, "edge_abandoned_work_total", kind="originals"),
                stalling_origin.disconnects) == (1, 1, 1)
    await until(abandoned, "the output's work and the origin fetch cancelled, the origin's connection closed")
    # on the request's endpoint, as its answer would have been (it was counted on none: "-")
    assert metric(node, "edge_http_requests_total", endpoint="default", status="499") == 1
    # its own outcome, `abandoned` (it had been counted `found`, then nothing, and a hung origin whose every
    # client left first looked idle), with the client's patience as its duration
    assert metric(node, "edge_origin_fetches_total") == 1
    assert metric(node, "edge_origin_fetches_total", outcome="abandoned") == 1
    assert metric(node, "edge_origin_fetch_duration_seconds_count", outcome="abandoned") == 1

    stalling_origin.behaviour.hold.set()  # the origin is back: nothing was stored, the next request fetches
    response = await node.fetch(PATH)
    assert (response.code, response.headers["X-Cache"], decode(response).width) == (200, "MISS", 40)
    assert stalling_origin.requests["slow.jpg"] == 2


async def test_work_another_request_waits_for_goes_on(stalling_origin, node):
    leaving = await open_request(node.url, PATH)

    async def fetching():
        return stalling_origin.requests["slow.jpg"] == 1
    await until(fetching, "the fetch reaching the origin")
    staying = asyncio.ensure_future(node.fetch(PATH))

    async def joined():
        return metric(node, "edge_coalesced_requests_total") == 1
    await until(joined, "the second request joining the flight")
    leaving.close()
    await leaving.wait_closed()

    async def gone():
        return metric(node, "edge_http_requests_total", status="499") == 1
    await until(gone, "the first request ending")
    stalling_origin.behaviour.hold.set()
    response = await staying
    assert (response.code, decode(response).width) == (200, 40)
    assert metric(node, "edge_abandoned_work_total") == 0
    assert (stalling_origin.requests["slow.jpg"], stalling_origin.disconnects) == (1, 0)


async def test_a_request_given_up_as_the_worker_stops_is_counted_on_its_endpoint(stalling_origin, node):
    """The 503 a request still waiting gets when the worker's drain is over (`give_up_serving`), like a
    499, had been counted on no endpoint ("-"): an endpoint's error rate missed it."""
    answer = asyncio.ensure_future(node.fetch(PATH))

    async def fetching():
        return stalling_origin.requests["slow.jpg"] == 1
    await until(fetching, "the fetch reaching the origin")
    assert node.node.give_up_serving() == 1
    response = await answer
    assert (response.code, response.headers["X-Edge-Error"]) == (503, "shutting_down")
    assert metric(node, "edge_http_requests_total", endpoint="default", status="503") == 1
