"""A node that hangs (SIGSTOP: a stopped process, a frozen VM) behind the shipped HAProxy and nginx
configs, in front of three `edge serve` processes: the requests it held and the new requests for its
URLs are answered 200 by another node after the answer timeout, not 504; a
node stopped for a deploy (SIGTERM) finishes what it holds while its new requests go to another node at
once; and a slow but legitimate answer, or the node's own timeout answer, is never retried on a second node."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from urllib.parse import urlsplit

import pytest
import pyvips
from tornado.httpclient import AsyncHTTPClient

from edge.config import load_config
from edge.flight import wait_bound
from edge.pluginmanager import load_plugins
from tests.assets import centre_colour, colour, same_colour, solid
from tests.loadbalancers import ANSWER_MARGIN, BALANCERS, DEPLOY, SHIPPED_ANSWER_TIMEOUT, LoadBalancer
from tests.nodes import EVERY_MISS_TO_ORIGIN, NodeProcess, decode, refused, until, web_config, write_config
from tests.servers import HTTPOrigin

#: the origin's timeout on the test nodes: an answer the origin holds longer is the node's own 504
ORIGIN_TIMEOUT = 3
#: test nodes: one worker each, every miss to the origin, a 404 not remembered (owners are found with 404s)
NODE_CONFIG = EVERY_MISS_TO_ORIGIN + """
[server]
workers = 1
access_log = false

[limits]
render_timeout = "1s"
"""
CANDIDATES = [f"/tr:w-40/img-{number}.jpg" for number in range(12)]
#: seconds a client of the test waits at most for any answer
CLIENT_TIMEOUT = 40


def node_config(origin_url: str) -> str:
    return web_config(origin_url, before=NODE_CONFIG, origin=f'timeout = "{ORIGIN_TIMEOUT}s"\n')


def answer_bound(config_text: str, directory) -> int:
    """What the balancers wait for a node running `config_text`: its longest answer, plus the margin."""
    config = load_config(write_config(directory, config_text, "bound.toml"), load_plugins())
    return int(wait_bound(config)) + ANSWER_MARGIN


def test_the_shipped_answer_timeout_is_the_default_nodes_bound_plus_the_margin(tmp_path):
    """With the defaults (one origin, 10 s; `render_timeout` 20 s) a node answers within 40 s."""
    assert answer_bound(web_config("http://127.0.0.1:9"), tmp_path) == SHIPPED_ANSWER_TIMEOUT
    assert f"timeout server {SHIPPED_ANSWER_TIMEOUT}s" in (DEPLOY / "haproxy" / "haproxy.cfg").read_text()
    assert f"proxy_read_timeout {SHIPPED_ANSWER_TIMEOUT}s;" in (DEPLOY / "nginx" / "edge.conf").read_text()


@pytest.fixture
async def origin():
    server = await HTTPOrigin(files={f"img-{n}.jpg": solid(120, 80, colour(n)) for n in range(len(CANDIDATES))}).start()
    yield server
    await server.stop()


@pytest.fixture
def nodes(origin, tmp_path):
    started: list[NodeProcess] = []
    try:
        for number in range(3):
            folder = tmp_path / f"node-{number}"
            folder.mkdir()
            started.append(NodeProcess(write_config(folder, node_config(origin.url))))
        yield started
    finally:
        for node in started:
            for pid in pids(node):  # a stopped node is woken first, else SIGTERM waits for ever
                os.kill(pid, signal.SIGCONT)
            node.stop()


@pytest.fixture
def answer_timeout(tmp_path) -> int:
    """The balancers' answer timeout for the test nodes, derived as the shipped one is."""
    return answer_bound(node_config("http://127.0.0.1:9"), tmp_path)


@pytest.fixture(params=BALANCERS)
def balancer(request, nodes, answer_timeout, tmp_path):
    lb = LoadBalancer(request.param, [node.url for node in nodes], tmp_path / request.param,
                      answer_timeout=answer_timeout, name_the_node=True)
    yield lb
    lb.stop()


def pids(node: NodeProcess) -> list[int]:
    """The supervisor and its workers: all of them stop when a machine freezes."""
    if node.process.poll() is not None:
        return []
    return [node.process.pid, *node.worker_pids()]


async def owners(balancer: LoadBalancer, origin: HTTPOrigin, paths: list[str] = CANDIDATES) -> list[int]:
    """The node that owns each of `paths`, found with 404s (nothing is cached or fetched twice)."""
    origin.behaviour.status = 404
    found = []
    for path in paths:
        response = await get(balancer, path)
        assert response.code == 404
        found.append(balancer.served_by(response.headers))
    origin.behaviour.status = None
    origin.requests.clear()
    return found


async def get(balancer: LoadBalancer, path: str):
    return await AsyncHTTPClient().fetch(balancer.public_url + path, raise_error=False,
                                         request_timeout=CLIENT_TIMEOUT)


async def timed(balancer: LoadBalancer, path: str) -> tuple[str, int, float, int | None]:
    """(path, status, seconds, the index of the node that answered: None without a node's answer)."""
    start = time.monotonic()
    response = await get(balancer, path)
    if response.code == 200:
        assert same_colour(centre_colour(decode(response)), colour(CANDIDATES.index(path))), path
    served = balancer.served_by(response.headers) if "X-Edge-Node" in response.headers else None
    return path, response.code, time.monotonic() - start, served


async def test_a_hung_nodes_requests_are_answered_by_another_node(balancer, nodes, origin, answer_timeout):
    owner = await owners(balancer, origin)
    victim = max(range(3), key=owner.count)  # owns at least 4 of the 12
    victims_urls = [path for path, node in zip(CANDIDATES, owner) if node == victim]
    held, arriving = victims_urls[:2], victims_urls[2:4]

    # two requests in flight on the victim (its origin fetches held), then the node freezes
    origin.behaviour.hold = asyncio.Event()
    in_flight = [asyncio.ensure_future(timed(balancer, path)) for path in held]

    async def fetching():
        return all(origin.requests[path.rsplit("/", 1)[1]] == 1 for path in held)
    await until(fetching, "the victim fetching its originals", timeout=10)
    for pid in pids(nodes[victim]):
        os.kill(pid, signal.SIGSTOP)
    origin.behaviour.hold.set()  # the other nodes' fetches answer at once
    new = [asyncio.ensure_future(timed(balancer, path)) for path in arriving]
    results = await asyncio.gather(*in_flight, *new)

    # what the victim holds, and what reaches it before a balancer takes it out (HAProxy: two unanswered checks,
    # ~5 s; nginx: two timed-out requests), waits for the answer timeout, then goes to the next node
    bound = answer_timeout + 3
    assert [(path, code) for path, code, *_ in results] == [(path, 200) for path in held + arriving], results
    assert max(seconds for _, _, seconds, _ in results) <= bound, results
    # once out, the victim's URLs go straight to the next node
    path, code, seconds, _ = await timed(balancer, arriving[0])
    assert (code, seconds < 2) == (200, True), (path, code, seconds)


#: seconds a new request for a stopping node's URL may take: its connection is refused, the balancer asks the next
#: node (before: it waited in the node's backlog until the node exited, `shutdown_grace` later)
STOPPING_BOUND = 2


async def test_a_stopping_nodes_new_requests_go_to_another_node_at_once(balancer, nodes, origin):
    owner = await owners(balancer, origin)
    victim = max(range(3), key=owner.count)  # owns at least 4 of the 12
    held, *arriving = [path for path, node in zip(CANDIDATES, owner) if node == victim][:3]

    # a request in flight on the victim (its origin fetch held), then the node is stopped
    origin.behaviour.hold = asyncio.Event()
    origin.behaviour.held_paths = frozenset({held.rsplit("/", 1)[1]})
    in_flight = asyncio.ensure_future(timed(balancer, held))

    async def fetching():
        return origin.requests[held.rsplit("/", 1)[1]] == 1
    await until(fetching, "the victim fetching its original", timeout=10)
    nodes[victim].process.send_signal(signal.SIGTERM)
    await until(lambda: refused(nodes[victim].url), "the victim refusing connections", timeout=1)
    arrived = await asyncio.gather(*(timed(balancer, path) for path in arriving))
    assert [(path, code) for path, code, *_ in arrived] == [(path, 200) for path in arriving], arrived
    assert max(seconds for _, _, seconds, _ in arrived) < STOPPING_BOUND, arrived
    assert victim not in [served for *_, served in arrived], arrived
    assert not in_flight.done()
    origin.behaviour.hold.set()
    path, code, _, served = await in_flight
    assert (path, code, served) == (held, 200, victim)
    assert await asyncio.to_thread(nodes[victim].process.wait, 30) == 0


async def test_a_stopping_nodes_answer_under_way_reaches_a_slow_client_whole(nodes, origin, answer_timeout, tmp_path):
    """HAProxy marks a node stopped for a deploy down within seconds (it refuses connections, checks
    included); an answer it is still sending to a slow client finishes all the same. (With
    `on-marked-down shutdown-sessions` HAProxy cut it there: a body shorter than its Content-Length.)"""
    balancer = LoadBalancer("haproxy", [node.url for node in nodes], tmp_path / "haproxy",
                            answer_timeout=answer_timeout, name_the_node=True)
    try:
        paths = [f"/tr:orig-true/big-{number}.png" for number in range(6)]
        owner = await owners(balancer, origin, paths)
        path, victim = paths[0], nodes[owner[0]]
        # 24 MB: more than the kernel's and HAProxy's buffers between the node and a client that stops reading
        noise = pyvips.Image.gaussnoise(4000, 2000, mean=128, sigma=60).cast("uchar")
        big = noise.bandjoin([noise.flip("horizontal"), noise.flip("vertical")]).pngsave_buffer(compression=0)
        origin.files[path.rsplit("/", 1)[1]] = big

        # a slow client: a small receive buffer, and it stops reading after the first bytes
        address = urlsplit(balancer.public_url)
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        client.setblocking(False)
        await asyncio.get_running_loop().sock_connect(client, (address.hostname, address.port))
        reader, writer = await asyncio.open_connection(sock=client)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: img.example.com\r\nConnection: close\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CLIENT_TIMEOUT)
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")))
        first = await asyncio.wait_for(reader.readexactly(64 * 1024), CLIENT_TIMEOUT)

        victim.process.send_signal(signal.SIGTERM)

        async def marked_down():  # HAProxy says so on its log
            return "is DOWN" in balancer.log.read_text()
        await until(marked_down, "HAProxy marking the stopping node down", timeout=10)
        rest = await asyncio.wait_for(reader.read(), CLIENT_TIMEOUT)
        writer.close()
        assert (length, len(first) + len(rest)) == (len(big), len(big))
        assert first + rest == big
        assert await asyncio.to_thread(victim.process.wait, 30) == 0
    finally:
        balancer.stop()


async def test_a_slow_answer_and_the_nodes_own_timeout_are_not_retried(balancer, nodes, origin):
    """An answer slower than a round of the balancer's checks (a cold render of a large original) comes
    from its node alone; an origin past its timeout is the node's own 504, passed on, not asked elsewhere."""
    slow, timing_out = CANDIDATES[0], CANDIDATES[1]
    origin.behaviour.delay = ORIGIN_TIMEOUT - 0.5
    path, code, seconds, _ = await timed(balancer, slow)
    assert (code, seconds >= ORIGIN_TIMEOUT - 0.5, origin.requests["img-0.jpg"]) == (200, True, 1), (path, seconds)

    origin.behaviour.delay = 0
    origin.behaviour.hold = asyncio.Event()  # never set: the node's fetch times out
    response = await get(balancer, timing_out)
    assert (response.code, origin.requests["img-1.jpg"]) == (504, 1), response.body[:200]
    origin.behaviour.hold.set()
