"""Purge fan-out (`[fleet]`): a purge sent to any node purges every node once, names each peer's
outcome, and answers 502 naming a peer that could not be purged; `edge purge --fleet` does the same."""

import asyncio
import json
import socket
import sys
import time

import pytest

from edge.errors import ConfigError
from edge.metrics import FLEET_PURGE_OUTCOMES
from edge.purge import purge_offline
from tests.fleet import AUTH, TOKEN, start_fleet
from tests.nodes import local_config, write_config
from tests.scrape import samples, scrape
from tests.test_config import config_error, load

PATHS = ("/tr:w-30/coffee.jpg", "/tr:w-40/coffee.jpg", "/tr:w-30/chelsea.jpg")


@pytest.fixture
async def fleet(node_factory, tmp_path):
    return await start_fleet(node_factory, tmp_path, local_config())


async def warm(nodes) -> None:
    """Every path cached on every node (as after a load balancer change)."""
    for node in nodes:
        for path in PATHS:
            assert (await node.fetch(path)).code == 200


async def cache_results(node) -> list[str]:
    return [(await node.fetch(path)).headers["X-Cache"] for path in PATHS]


async def purge(node, target, headers=AUTH):
    return await node.fetch("/_edge/purge", method="POST", headers=headers, body=json.dumps(target).encode())


async def fanned_out(node) -> dict:
    """The purges a node forwarded, by peer and outcome (the series at 0 left out)."""
    return {labels: value for labels, value in (await calls_by_peer(node)).items() if value}


async def calls_by_peer(node) -> dict:
    return samples(await scrape(node.url), "edge_fleet_purge_calls_total")


async def test_a_purge_sent_to_one_node_purges_every_node_once(fleet):
    # every peer's every outcome is a series from the start, so that an alert's `increase()` sees
    # the first purge that misses a peer (it cannot see a series' first sample)
    assert await calls_by_peer(fleet[1]) == {(("outcome", outcome), ("peer", fleet[i].url)): 0.0
                                             for i in (0, 2) for outcome in FLEET_PURGE_OUTCOMES}
    await warm(fleet)
    response = await purge(fleet[1], {"url": "/coffee.jpg"})
    assert (response.code, response.headers["Content-Type"]) == (200, "application/json")
    answer = json.loads(response.body)
    # two outputs on this node, and the version of the local origin's file (its bytes are not kept)
    assert answer["removed"] == 3 and answer["by_tier"] == {"output": 2, "original": 1, "not_found": 0}
    assert answer["peers"] == [{"peer": fleet[i].url, "outcome": "ok", "status": 200, "removed": 3} for i in (0, 2)]
    for node in fleet:
        assert await cache_results(node) == ["MISS", "MISS", "HIT"]
    # the peers purged themselves only: nothing came back to the first node, nothing went further
    assert {labels: value for labels, value in (await fanned_out(fleet[1])).items()} == {
        (("outcome", "ok"), ("peer", fleet[i].url)): 1.0 for i in (0, 2)}
    assert await fanned_out(fleet[0]) == {} and await fanned_out(fleet[2]) == {}


async def test_a_peer_down_is_named_and_the_live_ones_are_still_purged(fleet):
    await warm(fleet)
    await fleet[2].stop()
    response = await purge(fleet[0], {"prefix": "/"})
    assert response.code == 502
    assert json.loads(response.body)["peers"] == [
        {"peer": fleet[1].url, "outcome": "ok", "status": 200, "removed": 5},  # 3 outputs, 2 files' versions
        {"peer": fleet[2].url, "outcome": "unreachable"}]
    assert await cache_results(fleet[0]) == await cache_results(fleet[1]) == ["MISS"] * 3
    assert (await fanned_out(fleet[0]))[(("outcome", "unreachable"), ("peer", fleet[2].url))] == 1


async def test_a_peer_that_does_not_answer_in_time_is_a_timeout(node_factory, tmp_path):
    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        silent_url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        node, = await start_fleet(node_factory, tmp_path, local_config(), size=1,
                                  fleet_extra='timeout = "300ms"', more_peers=(silent_url,))
        started = time.monotonic()
        response = await purge(node, {"url": "/coffee.jpg"})
    assert (response.code, json.loads(response.body)["peers"]) == (502, [{"peer": silent_url, "outcome": "timeout"}])
    # within `[fleet] timeout` and the purge's own work: a call bounded in its connect alone waited Tornado's 20 s
    # for the answer (a mutation audit)
    assert time.monotonic() - started < 10


async def answering_peer(answer: bytes) -> tuple[asyncio.Server, str]:
    """A peer that answers every request with `answer` (raw bytes), then closes the connection: its server and URL."""
    async def reply(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_a_peer_s_redirect_is_not_followed_with_the_token(node_factory, tmp_path):
    """A peer answering 307 (a proxy in front of it, a host taken over) would have the purge sent on, the admin token
    with it, wherever it says: it is a rejection (a mutation following redirects survived)."""
    elsewhere: list[bytes] = []

    async def record(reader, writer):
        elsewhere.append(await reader.read(1024))
        writer.close()
    listener = await asyncio.start_server(record, "127.0.0.1", 0)
    target = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}/_edge/purge"
    redirecting, peer = await answering_peer(f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}\r\n"
                                             "Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
    try:
        node, = await start_fleet(node_factory, tmp_path, local_config(), size=1, more_peers=(peer,))
        response = await purge(node, {"url": "/coffee.jpg"})
    finally:
        redirecting.close()
        listener.close()
    assert (response.code, json.loads(response.body)["peers"]) == (
        502, [{"peer": peer, "outcome": "rejected", "status": 307}])
    assert elsewhere == []


@pytest.mark.parametrize("page, said", [
    (b"<html>back soon</html>", {"status": 200}),  # a proxy's maintenance page in front of the peer
    (json.dumps({"removed": 1, "padding": "x" * 70_000}).encode(), {}),  # past MAX_ANSWER_BYTES: not read
])
async def test_a_peer_answering_200_with_no_purge_answer_is_not_counted_purged(node_factory, tmp_path, page, said):
    """A 200 whose body is no purge's answer purged nothing there, as far as the node can tell: the peer is
    `unreachable`, and the purge a 502 (mutations calling it `ok`, or reading an answer of any size, survived)."""
    proxy, peer = await answering_peer(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
                                       b"Connection: close\r\n\r\n%s" % (len(page), page))
    try:
        node, = await start_fleet(node_factory, tmp_path, local_config(), size=1, more_peers=(peer,))
        response = await purge(node, {"url": "/coffee.jpg"})
    finally:
        proxy.close()
    assert (response.code, json.loads(response.body)["peers"]) == (
        502, [{"peer": peer, "outcome": "unreachable", **said}])
    assert await fanned_out(node) == {(("outcome", "unreachable"), ("peer", peer)): 1.0}


async def test_a_peer_with_another_token_rejects_the_purge(node_factory, tmp_path):
    (tmp_path / "other").mkdir()
    other_config = local_config(before='[admin]\ntoken = "another-one"\n')
    other = await node_factory(write_config(tmp_path / "other", other_config))
    node, = await start_fleet(node_factory, tmp_path, local_config(), size=1, more_peers=(other.url,))
    response = await purge(node, {"url": "/coffee.jpg"})
    assert (response.code, json.loads(response.body)["peers"]) == (
        502, [{"peer": other.url, "outcome": "rejected", "status": 401}])


async def test_a_forwarded_purge_is_not_forwarded_again(fleet):
    response = await purge(fleet[0], {"url": "/coffee.jpg"}, headers={**AUTH, "X-Edge-Purge-Forwarded": "1"})
    assert response.code == 200 and "peers" not in json.loads(response.body)
    assert await fanned_out(fleet[0]) == {}


async def test_edge_purge_fleet_from_the_command_line(fleet):
    await warm(fleet)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge", "purge", "--config", str(fleet[0].config.source), "--fleet",
        "--url", "/coffee.jpg", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err
    answer = json.loads(out)
    assert answer["removed"] == 3 and [p["outcome"] for p in answer["peers"]] == ["ok", "ok"]
    for node in fleet:
        assert await cache_results(node) == ["MISS", "MISS", "HIT"]

    await fleet[1].stop()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge", "purge", "--config", str(fleet[0].config.source), "--fleet",
        "--url", "/coffee.jpg", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 3
    assert json.loads(out)["peers"][0] == {"peer": fleet[1].url, "outcome": "unreachable"}


@pytest.mark.parametrize("table, message", [
    ('peers = ["ftp://a"]',
     r"\[fleet\] peers: expected a node's base URL such as http://10.0.0.11:8080, got 'ftp://a'"),
    ('peers = ["http://a:99999"]', r"\[fleet\] peers: expected a node's base URL"),
    ('peers = ["http://admin:hunter2-pass@a:1"]', r"\[fleet\] peers: a node's URL takes no user information "
                                                  r"\(user:password@\): the purge API's admin token"),
    ('peers = ["http://a:1", "http://a:1/"]', r"\[fleet\] peers: lists a node twice"),
    # every purge calls each (a mutation letting any number through survived)
    ("peers = [" + ", ".join(f'"http://a:{port}"' for port in range(1, 258)) + "]",
     r"\[fleet\] peers: expected at most 256 nodes, got 257"),
    ('peers = ["http://a:1"]\nself_url = "http://b:1"', r"\[fleet\] self_url: 'http://b:1' is not one of the peers"),
    ('peers = []\ntimeout = "0s"', r"\[fleet\] timeout: expected a duration above 0"),
    ('peer = []', r"\[fleet\] peer: unknown key"),
])
def test_fleet_config_errors_name_the_key(tmp_path, table, message):
    with pytest.raises(ConfigError, match=message) as raised:
        raise ConfigError(config_error(tmp_path, local_config(before=f"[fleet]\n{table}\n")))
    assert "hunter2" not in str(raised.value)


def test_a_fleet_of_the_most_peers_taken_loads(tmp_path):
    peers = [f"http://a:{port}" for port in range(1, 257)]
    assert load(tmp_path, local_config(before=f"[fleet]\npeers = {json.dumps(peers)}\n")).fleet.peers == tuple(peers)


def test_edge_purge_fleet_without_the_admin_token_is_a_config_error(tmp_path):
    """The peers' purge API needs the token: without it each peer had been called and answered 401 (a mutation
    audit: dropping the check survived)."""
    config = load(tmp_path, local_config(before=f'[cache]\ndir = "{tmp_path}"\n'
                                                f'[fleet]\npeers = ["http://127.0.0.1:9"]\n'))
    with pytest.raises(ConfigError, match=r"\[admin\] token: --fleet calls the peers' purge API, which needs"):
        purge_offline(config, {"url": "/coffee.jpg"}, fleet=True)


def test_edge_purge_fleet_from_a_host_without_the_cache_folder_purges_the_peers_and_makes_none(tmp_path):
    """An admin host with the fleet's config but no cache: the peers are the purge (a mutation audit: refusing it
    as a config that is not the node's survived)."""
    absent = tmp_path / "absent"
    config = load(tmp_path, local_config(before=f'[admin]\ntoken = "{TOKEN}"\n[cache]\ndir = "{absent}"\n'
                                                f'[fleet]\npeers = ["http://127.0.0.1:9"]\n'))
    status, answer = purge_offline(config, {"url": "/coffee.jpg"}, fleet=True)
    assert (status, answer["removed"], answer["peers"]) == (
        502, 0, [{"peer": "http://127.0.0.1:9", "outcome": "unreachable"}])
    assert not absent.exists()
