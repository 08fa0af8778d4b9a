"""The order of a miss: the response goes out before the output and the original are stored, and what
was answered is stored after it. What a miss stores: a local origin's originals are not copied."""

import asyncio
import errno
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from edge.origin import NotModified, OriginNotFound, OriginRequest, OriginSettings, SourceTooLarge
from plugins.local import LocalOrigin
from tests.nodes import SAMPLES, decode, local_config, start_node, until, web_config, write_config
from tests.assets import solid
from tests.scrape import samples
from tests.servers import HTTPOrigin

STORE_WAIT = 30


async def test_the_response_does_not_wait_for_the_stores(tmp_path):
    origin = await HTTPOrigin(files={"camera.jpg": (SAMPLES / "camera.jpg").read_bytes()}).start()
    node = await start_node(write_config(tmp_path, web_config(origin.url, before='[cache]\ndir = "cache"\n')))
    caches = node.node.caches
    disk_free = threading.Event()
    stores: list[str] = []

    def stuck(put):  # a disk that does not take writes until the test says so (bounded)
        def wait_then_put(key, value):
            stores.append(key)
            assert disk_free.wait(STORE_WAIT)
            put(key, value)
        return wait_then_put

    caches.outputs.put = stuck(caches.outputs.put)
    caches.originals.put = stuck(caches.originals.put)
    try:
        response = await node.client.fetch(node.url + "/tr:w-120/camera.jpg", raise_error=False)
        assert response.code == 200 and response.headers["X-Cache"] == "MISS"
        assert decode(response).width == 120
        assert len(caches.outputs) == 0 and len(caches.originals) == 0  # answered, not yet stored

        disk_free.set()
        await node.node.settle()
        assert len(stores) == 2 and len(caches.outputs) == 1 and len(caches.originals) == 1
        again = await node.fetch("/tr:w-120/camera.jpg")
        assert again.headers["X-Cache"] == "HIT" and again.body == response.body
    finally:
        disk_free.set()
        await node.stop()
        await origin.stop()


async def test_a_local_origins_originals_are_read_from_its_folder_not_copied(tmp_path):
    node = await start_node(write_config(tmp_path, local_config(before='[cache]\ndir = "cache"\n')))
    try:
        for width in (120, 80):
            response = await node.fetch(f"/tr:w-{width}/camera.jpg")
            assert response.headers["X-Cache"] == "MISS" and decode(response).width == width
        # its version alone is kept (to drop the outputs of an older file), not its bytes
        (key,) = list(node.node.caches.originals._handles[1].iterkeys())
        record = node.node.caches.originals.get(key)
        assert (record.kept, record.body, len(node.node.caches.outputs)) == (False, b"", 2)
        fetches = samples(node.node.metrics.exposition().decode(), "edge_origin_fetches_total", outcome="found")
        assert sum(fetches.values()) == 2  # each new size read the folder again
        assert (await node.fetch("/tr:w-80/camera.jpg")).headers["X-Cache"] == "HIT"
    finally:
        await node.stop()


async def test_a_remote_original_is_fetched_while_the_render_threads_are_busy(tmp_path):
    # Originals are fetched ahead of a free render thread: an origin's latency overlaps the renders.
    origin = await HTTPOrigin(files={"camera.jpg": (SAMPLES / "camera.jpg").read_bytes()}).start()
    node = await start_node(write_config(tmp_path, web_config(origin.url, "[server]\ntransform_threads = 1\n")))
    thread_free = threading.Event()
    try:
        busy = asyncio.ensure_future(node.node.renderer.run(thread_free.wait, STORE_WAIT))  # the one render thread
        request = asyncio.ensure_future(node.fetch("/tr:w-120/camera.jpg"))

        async def fetched():
            return origin.requests["camera.jpg"] == 1
        await until(fetched, "the original fetched while the render thread is busy")
        assert not request.done()
        thread_free.set()
        assert await busy
        response = await request
        assert response.code == 200 and decode(response).width == 120 and origin.requests["camera.jpg"] == 1
    finally:
        thread_free.set()
        await node.stop()
        await origin.stop()


async def test_a_local_file_that_grows_while_read_is_read_whole_within_the_limit(tmp_path, monkeypatch):
    """The local origin reads the size it found and one byte more; a file that grew meanwhile (its
    size is shown smaller here) is still read whole, or refused past `max_bytes`."""
    (tmp_path / "photo.jpg").write_bytes(b"x" * 5000)
    origin = LocalOrigin(OriginSettings("disk", "local"), tmp_path)
    real_fstat = os.fstat

    def smaller(fd):
        found = real_fstat(fd)
        return SimpleNamespace(st_mode=found.st_mode, st_size=1000, st_mtime=found.st_mtime,
                               st_mtime_ns=found.st_mtime_ns)

    monkeypatch.setattr(os, "fstat", smaller)
    assert (await origin.fetch(OriginRequest("photo.jpg", max_bytes=5000))).body == b"x" * 5000
    with pytest.raises(SourceTooLarge):
        await origin.fetch(OriginRequest("photo.jpg", max_bytes=4999))


async def test_a_local_file_rewritten_with_another_size_at_the_same_mtime_is_read_again(tmp_path):
    """The local origin's ETag is the file's mtime (in ns) and its size: a copy that keeps the mtime (`cp -p`,
    `rsync -t`) but not the length is another version, not a 304 that keeps the old image."""
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"x" * 5000)
    origin = LocalOrigin(OriginSettings("disk", "local"), tmp_path)
    first = await origin.fetch(OriginRequest("photo.jpg", max_bytes=10**6))
    with pytest.raises(NotModified):
        await origin.fetch(OriginRequest("photo.jpg", max_bytes=10**6, validators=first.validators))
    mtime_ns = photo.stat().st_mtime_ns
    photo.write_bytes(b"y" * 4000)
    os.utime(photo, ns=(mtime_ns, mtime_ns))
    again = await origin.fetch(OriginRequest("photo.jpg", max_bytes=10**6, validators=first.validators))
    assert again.body == b"y" * 4000 and again.etag != first.etag
    assert again.last_modified == first.last_modified


async def test_a_local_file_of_exactly_the_limit_is_read_and_one_byte_more_is_not(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"x" * 5000)
    origin = LocalOrigin(OriginSettings("disk", "local"), tmp_path)
    assert (await origin.fetch(OriginRequest("photo.jpg", max_bytes=5000))).body == b"x" * 5000
    with pytest.raises(SourceTooLarge):
        await origin.fetch(OriginRequest("photo.jpg", max_bytes=4999))


async def test_a_local_origin_asked_for_a_path_with_an_empty_segment_finds_nothing(tmp_path):
    """Next to an origin that does not merge slashes, the node asks the local origin for `inside//ok.jpg` as sent:
    the filesystem reads `inside/ok.jpg` for it, one file under many URLs, each a cache entry a purge misses."""
    (tmp_path / "inside").mkdir()
    (tmp_path / "inside" / "ok.jpg").write_bytes(b"x" * 100)
    origin = LocalOrigin(OriginSettings("disk", "local"), tmp_path)
    assert (await origin.fetch(OriginRequest("inside/ok.jpg", max_bytes=10**6))).body == b"x" * 100
    for path in ("inside//ok.jpg", "inside/ok.jpg/"):
        with pytest.raises(OriginNotFound):
            await origin.fetch(OriginRequest(path, max_bytes=10**6))


async def test_a_local_path_through_a_file_is_not_found_not_a_failure(tmp_path):
    """`ok.jpg/more.jpg` where `ok.jpg` is a file fails with ENOTDIR: a path missing from the root, like ENOENT."""
    (tmp_path / "ok.jpg").write_bytes(b"x" * 100)
    origin = LocalOrigin(OriginSettings("disk", "local"), tmp_path)
    with pytest.raises(OriginNotFound):
        await origin.fetch(OriginRequest("ok.jpg/more.jpg", max_bytes=10**6))


def test_a_file_made_a_fifo_after_the_check_is_not_waited_for(tmp_path, monkeypatch):
    """A FIFO put in a file's place between `_resolve`'s check and the open would hold the open, and the
    origin's thread with it, until some writer came (the fetch is abandoned at its timeout, the thread
    is not): it is not found, at once."""
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    origin = LocalOrigin(OriginSettings("disk", "local"), tmp_path)
    monkeypatch.setattr(origin, "_resolve", lambda path: fifo)  # as if the swap came right after the check
    pool = ThreadPoolExecutor(1)
    try:
        read = pool.submit(origin._open, OriginRequest("photo.jpg", max_bytes=5000))
        with pytest.raises(OriginNotFound):
            read.result(timeout=10)
    finally:
        try:  # a reader still blocked in its open is let go by a writer's
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as error:
            assert error.errno == errno.ENXIO  # no reader: nothing was left waiting
        pool.shutdown()


async def test_the_request_doing_the_work_answers_within_the_nodes_bound_too(tmp_path):
    """Every request of an image waits at most the node's bound (`flight.wait_bound`: here a 2 s origin,
    0.5 s of queueing, a 0.5 s render), the one doing the work included. A `di-` default image's and an
    image layer's originals are fetched after the main one's, so with an origin taking 1.4 s a request
    (its path missing) adds up to 4.2 s; the balancers' answer timeout is set from the bound, and the
    node answers its own 504 before it, not a 200 after it. (An origin taking 0.9 s of a 1 s timeout had
    passed it on a busy machine, a 504 of the origin's.)"""
    origin = await HTTPOrigin(files={"default.jpg": solid(400, 300, (200, 40, 40)),
                                     "logo.jpg": solid(60, 40, (40, 40, 200))}).start()
    config = web_config(origin.url, origin='timeout = "2s"\n', before="""[cache]
dir = "cache"
[server]
transform_queue_timeout = "0.5s"
[limits]
render_timeout = "0.5s"
""")
    node = await start_node(write_config(tmp_path, config))
    url = node.url + "/tr:w-200,di-default.jpg,l-image,i-logo.jpg,l-end/missing.jpg"
    try:
        origin.behaviour.delay = 1.4
        started = time.monotonic()
        response = await node.client.fetch(url, raise_error=False, request_timeout=30)
        waited = time.monotonic() - started
        assert (response.code, response.headers.get("X-Edge-Error")) == (504, "wait_timeout"), response.body
        assert 3.0 <= waited < 4.2, waited

        origin.behaviour.delay = 0  # an origin within the bound: the same URL is served
        response = await node.client.fetch(url, raise_error=False, request_timeout=30)
        assert response.code == 200 and decode(response).width == 200
    finally:
        await node.stop()
        await origin.stop()
