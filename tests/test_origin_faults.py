"""S3 and web origins that fail, over real sockets: stopped, slow, 5xx, denied, cut short, too large.

Each time: with a later origin that has the file, it is served from there; without one, the status and
`X-Edge-Error` say which origin failed and how; and afterwards the node serves normally again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from edge import pipeline
from edge.fetching import read_limited
from edge.origin import SourceTooLarge
from tests.assets import centre_colour, colour, same_colour, solid
from tests.nodes import EVERY_MISS_TO_ORIGIN, SAMPLES, decode, local_config, until_stored, web_config, write_config
from tests.s3server import S3Server
from tests.scrape import total
from tests.servers import Behaviour, HTTPOrigin
from tests.test_cache_failures import mount_tmpfs

BUCKET = "edge-faults"
PRIMARY = colour(10)
FALLBACK = colour(50)
BIG = (SAMPLES / "astronaut.jpg").read_bytes()  # 84 kB, over the 50 kB limit below
WRONG_SECRET = "wrong-secret-do-not-log-me"
TIMEOUT = 2.0  # an origin's whole fetch: a large object from moto on a loaded machine took over 0.5 s once
EXPECTED = {  # fault → (status, X-Edge-Error kind) when no later origin has the file
    "refused": (502, "refused"),
    "slow": (504, "timeout"),
    "server_error": (502, "server_error"),
    "denied": (502, "denied"),
    "cut_short": (502, "bad_response"),
}


@dataclass
class Primary:
    table: str
    break_with: Callable[[str], Awaitable[None]]
    heal: Callable[[], Awaitable[None]]


@pytest.fixture(scope="module")
def bucket(s3_server):
    client = s3_server.client()
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="photo.jpg", Body=solid(300, 200, PRIMARY))
    client.put_object(Bucket=BUCKET, Key="big.jpg", Body=BIG)


@pytest.fixture
async def s3_primary(s3, bucket):
    """The bucket through a server of its own (moto's state is shared), so that it can be stopped."""
    server = S3Server().start()
    table = server.origin_table("primary", BUCKET, secret=WRONG_SECRET, extra=f"timeout = {TIMEOUT}")

    async def break_with(fault: str) -> None:
        if fault == "refused":
            server.stop()
        elif fault == "denied":
            s3.require_auth(True)  # the origin's secret is wrong: moto's signature check now refuses it
        else:
            server.faults.delay = 30 if fault == "slow" else 0
            server.faults.status = 500 if fault == "server_error" else None
            server.faults.truncate_to = 100 if fault == "cut_short" else None

    async def heal() -> None:
        s3.require_auth(False)
        server.reset()

    yield Primary(table, break_with, heal)
    server.stop()


@pytest.fixture
async def web_primary():
    origin = await HTTPOrigin(files={"photo.jpg": solid(300, 200, PRIMARY), "big.jpg": BIG}).start()
    table = f'[[origins]]\nname = "primary"\ntype = "web"\nbase_url = "{origin.url}"\ntimeout = {TIMEOUT}\n'

    async def break_with(fault: str) -> None:
        behaviour = origin.behaviour
        if fault == "refused":
            await origin.stop()
        behaviour.delay = 30 if fault == "slow" else 0
        behaviour.status = {"server_error": 500, "denied": 403}.get(fault)
        behaviour.truncate_to = 100 if fault == "cut_short" else None
        behaviour.chunked = fault == "unannounced_length"

    async def heal() -> None:
        origin.behaviour = type(origin.behaviour)()

    yield Primary(table, break_with, heal)
    await origin.stop()


@pytest.fixture(params=["s3", "web"])
def primary(request) -> Primary:
    """The origin under test, first in the endpoint's list, `fallback` (a local folder) after it."""
    return request.getfixturevalue(f"{request.param}_primary")


@pytest.fixture
async def node(primary, node_factory, tmp_path):
    fallback = tmp_path / "fallback"
    fallback.mkdir()
    (fallback / "photo.jpg").write_bytes(solid(300, 200, FALLBACK))
    text = EVERY_MISS_TO_ORIGIN + primary.table + f"""
[[origins]]
name = "fallback"
type = "local"
root = "{fallback}"

[limits]
max_source_bytes = "50KB"

[[endpoints]]
id = ""
origins = ["primary", "fallback"]

[[endpoints]]
id = "alone"
origins = ["primary"]
"""
    return await node_factory(write_config(tmp_path, text))


def shows(response, rgb) -> bool:
    return response.code == 200 and same_colour(centre_colour(decode(response)), rgb)


@pytest.mark.parametrize("fault", list(EXPECTED))
async def test_a_failing_origin_hands_over_and_the_node_recovers(primary, node, fault, caplog):
    assert shows(await node.fetch("/tr:w-10/photo.jpg"), PRIMARY)
    await primary.break_with(fault)

    with caplog.at_level(logging.DEBUG):
        assert shows(await node.fetch("/tr:w-11/photo.jpg"), FALLBACK)  # the next origin was tried
        alone = await node.fetch("/alone/tr:w-12/photo.jpg")
    status, kind = EXPECTED[fault]  # a web server's 403 too: `denied`, not "not found here"
    assert (alone.code, alone.headers["X-Edge-Error"]) == (status, f"primary: {kind}")
    assert alone.headers["Cache-Control"] == "no-store"  # a CDN must not keep the failure
    # on-call tells expired credentials from a network failure in the metrics too
    exposition = node.node.metrics.exposition().decode()
    assert total(exposition, "edge_origin_fetches_total", origin="primary", outcome=kind) == 2
    everything_said = alone.body.decode() + str(alone.headers) + caplog.text
    assert WRONG_SECRET not in everything_said

    # healthy afterwards: the primary serves again (or, stopped, the rest of the node still does)
    if fault == "refused":
        assert (await node.fetch("/_edge/health")).code == 200
        assert shows(await node.fetch("/tr:w-13/photo.jpg"), FALLBACK)
    else:
        await primary.heal()
        assert shows(await node.fetch("/alone/tr:w-13/photo.jpg"), PRIMARY)


async def test_a_source_over_the_limit_is_a_400_and_harmless(primary, node, caplog):
    response = await node.fetch("/big.jpg")
    assert (response.code, response.body) == (400, b"source too large\n")
    assert shows(await node.fetch("/alone/tr:w-14/photo.jpg"), PRIMARY)
    # counted and said as what it is (it had been counted `found`, and said nowhere)
    exposition = node.node.metrics.exposition().decode()
    assert total(exposition, "edge_origin_fetches_total", origin="primary", outcome="too_large") == 1
    assert total(exposition, "edge_origin_fetches_total", origin="primary", outcome="found") == 1
    assert "origin 'primary': 'big.jpg' is over [limits] max_source_bytes" in caplog.text
    # and remembered, for every URL of it: not read again up to the limit for each request (40 MB a request)
    response = await node.fetch("/tr:w-10/big.jpg")
    assert (response.code, response.body) == (400, b"source too large\n")
    exposition = node.node.metrics.exposition().decode()
    assert total(exposition, "edge_origin_fetches_total", origin="primary", outcome="too_large") == 1


@pytest.mark.parametrize("primary", ["web"], indirect=True)
async def test_a_source_over_the_limit_without_a_length_is_a_400(primary, node):
    await primary.break_with("unannounced_length")  # chunked: the size shows only while reading
    response = await node.fetch("/big.jpg")
    assert (response.code, response.body) == (400, b"source too large\n")


async def test_a_source_announced_over_the_limit_is_refused_before_its_body_is_read(node_factory, tmp_path):
    """Its Content-Length says enough: a 400 at once, not a download up to the limit first (here an origin that
    sends 64 KiB, under the limit, then stalls: a read of it waited out the origin's timeout, a 504)."""
    stall = asyncio.Event()
    origin = await HTTPOrigin(files={"big.jpg": BIG * 4}, behaviour=Behaviour(stall=stall)).start()
    try:
        node = await node_factory(write_config(tmp_path, web_config(
            origin.url, '[limits]\nmax_source_bytes = "100KB"\n', origin="timeout = 3")))
        response = await node.fetch("/big.jpg")
        assert (response.code, response.body) == (400, b"source too large\n")
        assert origin.requests["big.jpg"] == 1
    finally:
        stall.set()
        await origin.stop()


@pytest.mark.parametrize("origin_type", ["local", "web"])
async def test_an_original_of_exactly_max_source_bytes_is_served_and_a_byte_more_is_a_400(node_factory, tmp_path,
                                                                                          origin_type):
    """The limit is the largest original taken, whichever origin type reads it (a mutation refusing a body of
    exactly the limit, once read, survived)."""
    files = {"exact.jpg": BIG, "over.jpg": BIG + b"\0"}  # a JPEG with a byte after its end decodes all the same
    limits = f"[limits]\nmax_source_bytes = {len(BIG)}\n"
    web = None
    if origin_type == "web":
        web = await HTTPOrigin(files=files).start()
        config = web_config(web.url, after=limits)
    else:
        (tmp_path / "files").mkdir()
        for name, body in files.items():
            (tmp_path / "files" / name).write_bytes(body)
        config = local_config(tmp_path / "files", after=limits)
    try:
        node = await node_factory(write_config(tmp_path, config))
        exact = await node.fetch("/tr:w-100/exact.jpg")
        over = await node.fetch("/tr:w-100/over.jpg")
    finally:
        if web is not None:
            await web.stop()
    assert exact.code == 200 and decode(exact).width == 100
    assert (over.code, over.body) == (400, b"source too large\n")


async def test_reading_stops_at_the_limit():
    produced = []

    async def chunks():
        for index in range(100):
            produced.append(index)
            yield b"x" * 1000

    with pytest.raises(SourceTooLarge):
        await read_limited(chunks(), 2500, "big.jpg")
    assert len(produced) == 3
    assert await read_limited(chunks(), 100_000, "big.jpg") == b"x" * 100_000  # exactly the limit: read
    with pytest.raises(SourceTooLarge):  # a byte over it: refused
        await read_limited(chunks(), 99_999, "big.jpg")


@pytest.mark.parametrize("broken", [b"", BIG[:len(BIG) // 2]])
async def test_bytes_no_image_could_be_made_of_are_not_kept(node_factory, tmp_path, broken, monkeypatch):
    """A 200 with an empty or cut body, once: a 422, and the next request fetches again (it was kept for
    `original_ttl`, a day of 422s), once the original's 422 is no longer remembered (here at once)."""
    monkeypatch.setattr(pipeline, "UNUSABLE_SECONDS", 0.0)
    origin = await HTTPOrigin(files={"photo.jpg": broken}).start()
    try:
        node = await node_factory(write_config(tmp_path, web_config(origin.url)))
        response = await node.fetch("/tr:w-100/photo.jpg")
        assert (response.code, response.body) == (422, b"unsupported or corrupt source image\n")
        origin.files["photo.jpg"] = BIG
        response = await node.fetch("/tr:w-50/photo.jpg")
        assert response.code == 200 and decode(response).width == 50
        assert origin.requests["photo.jpg"] == 2
    finally:
        await origin.stop()


async def test_an_original_answered_422_is_answered_so_without_fetching_again_for_a_while(node_factory, tmp_path):
    """It is dropped from the originals tier (above): without the memory every request would download the
    whole original again, an amplifier of the origin's egress, and not for the URL alone: each other URL of
    it (`w-1` … `w-8192`) had fetched it again too (30 MB of a video behind a web origin, 20 times in 3 s).
    A purge of the path forgets it at once. One whose header reads as an image's but whose pixels do not (cut
    short) is remembered for its URL alone: a layer's original or the output's format may fail so too."""
    video = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4000  # no image: a video's first bytes
    origin = await HTTPOrigin(files={"photo.jpg": video, "cut.jpg": BIG[:len(BIG) // 2]}).start()
    try:
        node = await node_factory(write_config(tmp_path, web_config(
            origin.url, '[admin]\ntoken = "a-long-random-admin-token"\n')))
        for width in range(100, 105):
            response = await node.fetch(f"/tr:w-{width},h-{width}/photo.jpg")
            assert (response.code, response.body) == (422, b"unsupported or corrupt source image\n")
            assert (await node.fetch("/tr:w-100/cut.jpg")).code == 422
        assert (origin.requests["photo.jpg"], origin.requests["cut.jpg"]) == (1, 1)
        origin.files["photo.jpg"] = BIG
        purged = await node.fetch("/_edge/purge", method="POST", body=b'{"url": "/photo.jpg"}',
                                  headers={"Authorization": "Bearer a-long-random-admin-token"})
        assert purged.code == 200
        response = await node.fetch("/tr:w-50/photo.jpg")
        assert response.code == 200 and decode(response).width == 50 and origin.requests["photo.jpg"] == 2
    finally:
        await origin.stop()


async def test_a_local_origin_whose_root_is_gone_fails_and_keeps_what_is_cached(node_factory, tmp_path):
    """A `local` root renamed away (a lost mount) is an origin failure, not every path missing: a 502 naming
    it, the path's outputs kept and no 404 remembered, so the node serves again as soon as the root is back.
    Taken for not found, it had deleted the path's outputs and answered 404 for `not_found_ttl` after."""
    root = tmp_path / "files"
    root.mkdir()
    (root / "a.jpg").write_bytes(solid(300, 200, PRIMARY))
    node = await node_factory(write_config(tmp_path, f'[[origins]]\nname = "disk"\ntype = "local"\nroot = "{root}"\n'
                                                     '[[endpoints]]\nid = ""\norigins = ["disk"]\n'))
    assert (await node.fetch("/tr:w-50/a.jpg")).code == 200
    root.rename(tmp_path / "away")
    lost = await node.fetch("/tr:w-60/a.jpg")
    assert (lost.code, lost.headers["X-Edge-Error"], lost.body) == (502, "disk: error", b"origin error\n")
    kept = await node.fetch("/tr:w-50/a.jpg")
    assert kept.code == 200 and same_colour(centre_colour(kept.body), PRIMARY)
    (tmp_path / "away").rename(root)
    back = await node.fetch("/tr:w-60/a.jpg")
    assert back.code == 200 and same_colour(centre_colour(back.body), PRIMARY)


async def test_a_local_origin_whose_mount_is_lost_fails_and_keeps_what_is_cached(node_factory, tmp_path):
    """The root a mount point: unmounted, it is an empty folder of another filesystem, which had been every
    path missing (a 404, the outputs deleted) where the lost mount is an origin failure."""
    mounted = mount_tmpfs(tmp_path / "mnt", "size=8m")
    root = next(mounted)
    try:
        (root / "a.jpg").write_bytes(solid(300, 200, PRIMARY))
        config = f'[[origins]]\nname = "disk"\ntype = "local"\nroot = "{root}"\n[[endpoints]]\nid = ""\norigins = ["disk"]\n'
        node = await node_factory(write_config(tmp_path, config))
        assert (await node.fetch("/tr:w-50/a.jpg")).code == 200
        subprocess.run(["umount", "-l", str(root)], timeout=30, check=True)
        lost = await node.fetch("/tr:w-60/a.jpg")
        assert (lost.code, lost.headers["X-Edge-Error"]) == (502, "disk: error")
        assert (await node.fetch("/tr:w-50/a.jpg")).code == 200  # kept
    finally:
        next(mounted, None)


async def _ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> tuple[int, dict, bytes]:
    """One request on a kept-alive connection: the status, the headers (lower-case names), the body."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in head[1:] if line)
    headers = {name.lower(): value for name, value in headers.items()}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    return int(head[0].split()[1]), headers, body


@contextlib.contextmanager
def at_descriptor_limit():
    """This process at its file descriptor limit (its soft limit lowered for real) for the block."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.dup(0)  # a new descriptor takes the lowest number free: at the limit, none is
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_a_fetch_out_of_file_descriptors_is_the_nodes_503_not_the_origins_502(node_factory, tmp_path):
    """At the process' file descriptor limit the `local` origin's open fails (EMFILE): it was a 502 `samples: error`,
    counted and logged as the origin's failure, so its alerts sent the on-call to a healthy origin (operator probe,
    `ulimit -n 128` and 300 clients). The limit is lowered for real, on a connection already open."""
    node = await node_factory(write_config(tmp_path, local_config(SAMPLES, before=EVERY_MISS_TO_ORIGIN)))
    reader, writer = await asyncio.open_connection("127.0.0.1", int(node.url.rsplit(":", 1)[1]))
    try:
        assert (await _ask(reader, writer, "/tr:w-20/coffee.jpg"))[0] == 200
        with at_descriptor_limit():
            status, headers, body = await _ask(reader, writer, "/tr:w-20/astronaut.jpg")
    finally:
        writer.close()
    assert (status, body) == (503, b"node overloaded: out of file descriptors, retry later\n")
    assert (headers["x-edge-error"], headers["retry-after"]) == ("out_of_descriptors", "1")
    exposition = node.node.metrics.exposition().decode()
    assert total(exposition, "edge_origin_fetches_total", origin="samples", outcome="error") == 0
    assert total(exposition, "edge_origin_fetches_total", origin="samples", outcome="busy") == 1


async def test_a_cache_out_of_file_descriptors_is_said_so_not_unwritable(node_factory, tmp_path):
    """At the process' file descriptor limit SQLite cannot open a database, and says "unable to open" as of a folder it
    may not write: logged, counted and reported by `/_edge/ready` as `unwritable` (the folder's probe file as `io`),
    it sent the on-call to a healthy disk, where the requests were answered 503 `out_of_descriptors`
    (scarce-resources probe, `prlimit --nofile=128:128` and 300 idle connections)."""
    node = await node_factory(write_config(tmp_path, local_config(SAMPLES)))
    reader, writer = await asyncio.open_connection("127.0.0.1", int(node.url.rsplit(":", 1)[1]))
    try:
        assert (await _ask(reader, writer, "/tr:w-20/coffee.jpg"))[0] == 200
        await until_stored(tmp_path / "cache", 1)  # (after the answer: not a store failing at the limit)
        with at_descriptor_limit():
            # a thread with no connection of its own opens one, as each cache thread does at its first call
            assert await asyncio.to_thread(node.node.caches.outputs.volume) == 0  # (0: it failed)
            status, _, body = await _ask(reader, writer, "/_edge/ready")
    finally:
        writer.close()
    assert (status, body) == (200, b"ready, cache degraded: folder: out_of_descriptors; output: out_of_descriptors\n")
    exposition = node.node.metrics.exposition().decode()
    assert total(exposition, "edge_cache_errors_total", tier="output", kind="out_of_descriptors") == 1
    assert total(exposition, "edge_cache_errors_total", tier="folder", kind="out_of_descriptors") == 1
    assert total(exposition, "edge_cache_errors_total", kind="unwritable") == 0
    assert total(exposition, "edge_cache_errors_total", kind="io") == 0
