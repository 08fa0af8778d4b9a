"""A disk-tier hit answered without a body (a 304 to a matching `If-None-Match`, a HEAD) reads the stored
output's metadata, not its body: before, each read the whole value file (26.3 MB for the 12 MP PNG as it
is, `orig-true`) to send headers alone."""

import time
from pathlib import Path

import diskcache
from tornado.httpclient import AsyncHTTPClient

from edge.testing import total
from tests.nodes import NodeProcess, decode, exchange, local_config, until_stored, write_config
from tests.photos import SIZE, photos  # noqa: F401 - a fixture

WAIT = 10  # seconds any single answer may take here
#: requests of each kind: before, they read this many bodies
ASKED = 20
#: headers that differ from answer to answer
PER_ANSWER = {"Date", "X-Request-Id"}


def answer_parts(answer: bytes) -> tuple[bytes, dict[str, str], bytes]:
    """The status line, the headers other than `PER_ANSWER`, and the body of a raw HTTP/1.1 answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return status.encode(), {name: value for name, value in headers.items() if name not in PER_ANSWER}, body


def bytes_read(pid: int) -> int:
    """What process `pid` has read so far (`rchar`: every read(2), the page cache's included)."""
    line = next(line for line in Path(f"/proc/{pid}/io").read_text().splitlines() if line.startswith("rchar:"))
    return int(line.split()[1])


async def test_a_304_or_a_head_of_a_stored_output_reads_none_of_its_body(tmp_path, photos):  # noqa: F811
    # a budget whose admission share (a 256th) holds the 26 MB PNG when first made
    config = local_config(photos.folder, before='[server]\nworkers = 1\n[cache]\ndir = "cache"\nmemory_size = 0\n'
                                                'output_size = "8GB"')
    node = NodeProcess(write_config(tmp_path, config))
    try:
        made = await AsyncHTTPClient().fetch(node.url + "/tr:orig-true/photo.png", request_timeout=WAIT * 3)
        original = photos.read("photo.png")
        assert made.body == original and len(original) > 15_000_000
        await until_stored(tmp_path / "cache", 1)
        request = b"%s /tr:orig-true/photo.png HTTP/1.1\r\nHost: a\r\nConnection: close\r\n%s\r\n"
        status, hit, body = answer_parts(await exchange(node.url, request % (b"GET", b""), WAIT))
        assert (status, hit["X-Cache"], body) == (b"HTTP/1.1 200 OK", "HIT", original)
        etag = hit["Etag"].encode()
        [worker] = node.worker_pids()

        before = bytes_read(worker)
        unchanged = [answer_parts(await exchange(node.url, request % (b"GET", b"If-None-Match: %s\r\n" % etag), WAIT))
                     for _ in range(ASKED)]
        read_by_304s = bytes_read(worker) - before
        not_modified = {name: value for name, value in hit.items() if name not in ("Content-Type", "Content-Length")}
        assert unchanged == [(b"HTTP/1.1 304 Not Modified", not_modified, b"")] * ASKED
        assert read_by_304s < len(original)  # all of them, less than one body (before: ASKED bodies)

        before = bytes_read(worker)
        heads = [answer_parts(await exchange(node.url, request % (b"HEAD", b""), WAIT)) for _ in range(ASKED)]
        read_by_heads = bytes_read(worker) - before
        assert heads == [(b"HTTP/1.1 200 OK", hit, b"")] * ASKED  # Content-Length: the body's
        assert read_by_heads < len(original)

        status, after, body = answer_parts(await exchange(node.url, request % (b"GET", b""), WAIT))
        assert (status, after, body) == (b"HTTP/1.1 200 OK", hit, original)
        image = decode(made)
        assert (image.width, image.height) == SIZE
        metrics = (await AsyncHTTPClient().fetch(node.url + "/metrics")).body.decode()
        assert total(metrics, "edge_cache_requests_total", tier="output", result="hit") == 2 * ASKED + 2
        assert total(metrics, "edge_http_requests_total", status="304") == ASKED
    finally:
        assert node.stop() == 0
    print(f"bytes read: {read_by_304s / ASKED:.0f} per 304, {read_by_heads / ASKED:.0f} per HEAD")


async def test_a_304_or_a_head_from_disk_leaves_the_body_to_the_next_get(node_factory, tmp_path, photos):  # noqa: F811
    """Not kept in the memory tier without its body: the GET after them gets the whole image, and the
    memory tier keeps that."""
    node = await node_factory(write_config(tmp_path, local_config(photos.folder)))
    made = await node.fetch("/tr:w-1000/photo.jpg")  # a JPEG over 32 KB: a value file of its own
    assert made.code == 200 and 2**15 < len(made.body) < node.config.cache.memory_size // 16
    with diskcache.Cache(str(tmp_path / "cache" / "outputs")) as stored:
        [key] = list(stored.iterkeys())
    caches = node.node.caches
    assert caches.output_in_memory(key) is None  # stored on disk, not read since

    unchanged = await node.fetch("/tr:w-1000/photo.jpg", headers={"If-None-Match": made.headers["Etag"]})
    head = await node.fetch("/tr:w-1000/photo.jpg", method="HEAD")
    assert (unchanged.code, unchanged.headers["X-Cache"], unchanged.body) == (304, "HIT", b"")
    assert (head.code, head.headers["X-Cache"], head.headers["Content-Length"]) == (200, "HIT", str(len(made.body)))
    assert caches.output_in_memory(key) is None

    again = await node.fetch("/tr:w-1000/photo.jpg")
    assert (again.code, again.headers["X-Cache"], again.body) == (200, "HIT", made.body)
    assert decode(again).width == 1000
    assert caches.output_in_memory(key).body == made.body


async def test_a_304_or_a_head_of_a_stale_output_still_revalidates_it_with_its_body(node_factory, tmp_path,
                                                                                    photos):  # noqa: F811
    """A stale output's body is read, as before: the revalidation that confirms it stores it again."""
    node = await node_factory(write_config(tmp_path, local_config(photos.folder,
                                                                  before='[cache]\ndir = "cache"\nmemory_size = 0')))
    made = await node.fetch("/tr:w-1000/photo.jpg")
    node.node.clock = lambda: time.time() + 2 * node.config.cache.original_ttl  # the original is stale

    unchanged = await node.fetch("/tr:w-1000/photo.jpg", headers={"If-None-Match": made.headers["Etag"]})
    head = await node.fetch("/tr:w-1000/photo.jpg", method="HEAD")
    assert (unchanged.code, unchanged.headers["X-Cache"], unchanged.body) == (304, "MISS", b"")
    assert (head.code, head.headers["X-Cache"], head.headers["Content-Length"]) == (200, "HIT", str(len(made.body)))
    again = await node.fetch("/tr:w-1000/photo.jpg")  # confirmed and stored again by the 304: whole
    assert (again.code, again.headers["X-Cache"], again.body) == (200, "HIT", made.body)
