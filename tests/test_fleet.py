"""Issue 11's fleet, end to end: three nodes behind HAProxy (the shipped config), a counting origin,
moto as the shared tier. Each output is made once across the fleet; a purge sent to any node reaches
every node and the shared tier; a lost node's URLs come back from the shared tier without an origin
fetch or a render; a purge while a node is down purges the others and names it."""

import asyncio
import json

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.assets import centre_colour, colour, same_colour, solid
from tests.fleet import AUTH, renders, served_by, start_fleet
from tests.loadbalancers import LoadBalancer, require
from tests.nodes import decode, until, web_config
from tests.s3server import shared_cache_table
from tests.servers import HTTPOrigin

BUCKET = "fleet-shared"
#: one original per URL, so that an origin request is one URL's
PATHS = [f"/tr:w-40/img-{number}.jpg" for number in range(12)]


@pytest.fixture
async def origin():
    server = await HTTPOrigin(files={f"img-{n}.jpg": solid(120, 80, colour(n)) for n in range(12)}).start()
    yield server
    await server.stop()


@pytest.fixture
async def fleet(s3, origin, node_factory, tmp_path):
    require("haproxy")
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    shared = shared_cache_table(s3.url, BUCKET)
    nodes = await start_fleet(node_factory, tmp_path, web_config(origin.url, after=shared))
    balancer = LoadBalancer("haproxy", [node.url for node in nodes], tmp_path / "haproxy")
    yield nodes, balancer
    balancer.stop()
    for node in nodes:
        await node.stop()  # their background writes end before the bucket goes
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def shared_objects(s3) -> list[str]:
    """The outputs in the shared tier (not the purge journal's entries)."""
    return [item["Key"] for item in s3.client().list_objects_v2(Bucket=BUCKET).get("Contents", [])
            if not item["Key"].startswith("outputs/_purges/")]


async def purge(url: str, target: dict):
    return await AsyncHTTPClient().fetch(url + "/_edge/purge", method="POST", headers=AUTH,
                                         body=json.dumps(target).encode(), raise_error=False, request_timeout=30)


async def written(s3, count: int) -> None:
    async def all_there() -> bool:
        return len(shared_objects(s3)) == count
    await until(all_there, "the shared tier's background writes")


def reads_of(s3, path: str) -> list:
    """The shared tier's GETs of `path`'s outputs (the default endpoint's objects are under `_default/`)."""
    return [call for call in s3.gets(BUCKET) if call.key.startswith(f"outputs/_default/{origin_path(path)}/")]


def origin_path(path: str) -> str:
    return path.rsplit("/", 1)[1]


async def test_a_fleet_behaves_like_one_big_node(fleet, origin, s3):
    nodes, balancer = fleet
    lb = balancer.public_url

    # every output made once across the fleet, each by its node
    owners = {}
    for path in PATHS:
        owners[path], response = await served_by(lb, nodes, path)
        assert response.headers["X-Cache"] == "MISS"
        assert same_colour(centre_colour(decode(response)), colour(PATHS.index(path)))
    for path in PATHS:
        assert (await served_by(lb, nodes, path)) [1].headers["X-Cache"] == "HIT"
    assert set(owners.values()) == {0, 1, 2}
    assert renders(nodes) == len(PATHS) and all(origin.requests[origin_path(p)] == 1 for p in PATHS)
    await written(s3, len(PATHS))

    # a purge sent to a node that does not hold the URL: a MISS where it lives, gone from the shared tier
    target = PATHS[0]
    elsewhere = next(i for i in range(3) if i != owners[target])
    response = await purge(nodes[elsewhere].url, {"url": "/" + origin_path(target)})
    answer = json.loads(response.body)
    assert (response.code, answer["shared"], [p["outcome"] for p in answer["peers"]]) == (
        200, {"removed": 1, "journal": "written"}, ["ok", "ok"])
    assert len(shared_objects(s3)) == len(PATHS) - 1
    node, response = await served_by(lb, nodes, target)
    assert (node, response.headers["X-Cache"], origin.requests[origin_path(target)]) == (owners[target], "MISS", 2)
    await written(s3, len(PATHS))
    renders_before = renders(nodes)

    # a node lost: only its URLs move, and they come back from the shared tier: no fetch, no render;
    # a herd on one of them reads the shared tier once
    lost = owners[PATHS[1]]
    await nodes[lost].stop()
    fetched = dict(origin.requests)
    shared_reads = len(reads_of(s3, PATHS[1]))
    herd = await asyncio.gather(*(AsyncHTTPClient().fetch(lb + PATHS[1], request_timeout=30) for _ in range(8)))
    # A request that looked in the cache just before the leader stored, and asked for the work just
    # after, finds the stored copy through the single flight's own lookup: labelled MISS (as a waiter
    # in another worker is), though it read nothing more: the shared tier once, no fetch, no render.
    assert "SHARED" in {r.headers["X-Cache"] for r in herd} <= {"SHARED", "HIT", "MISS"}
    assert all(same_colour(centre_colour(decode(r)), colour(1)) for r in herd)
    assert len(reads_of(s3, PATHS[1])) == shared_reads + 1
    for path in PATHS[2:]:
        node, response = await served_by(lb, nodes, path)
        if owners[path] == lost:
            assert (node != lost, response.headers["X-Cache"]) == (True, "SHARED"), path
            assert same_colour(centre_colour(decode(response)), colour(PATHS.index(path)))
        else:
            assert (node, response.headers["X-Cache"]) == (owners[path], "HIT"), path
    assert renders(nodes) == renders_before and dict(origin.requests) == fetched
    for path in PATHS:  # and are now kept where they landed
        assert (await served_by(lb, nodes, path))[1].headers["X-Cache"] == "HIT"

    # a purge while that node is down: the live ones and the shared tier purged, the lost one named
    live = [i for i in range(3) if i != lost]
    response = await purge(nodes[live[0]].url, {"prefix": "/"})
    answer = json.loads(response.body)
    assert response.code == 502
    assert answer["shared"] == {"removed": len(PATHS), "journal": "written"}
    assert {p["peer"]: p["outcome"] for p in answer["peers"]} == {
        nodes[live[1]].url: "ok", nodes[lost].url: "unreachable"}
    for path in PATHS[:4]:
        assert (await served_by(lb, nodes, path))[1].headers["X-Cache"] == "MISS"
