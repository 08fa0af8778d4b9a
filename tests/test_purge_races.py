"""Purges that race the work under way: what an origin fetch begun before a purge brings back, what a
remembered failure said, what a prefix purge is still deleting, is never kept past the purge
(edge/cache/purges.py). An operator who replaces an image and purges its URL gets the new image from
then on, not once the old one ages out."""

import asyncio
import json
import threading
import time

import diskcache
import pyvips
import pytest

from edge.cache import CacheHealth, Caches
from edge.cache.purges import BOOT, RECORD_SECONDS, PurgeTier, PurgeTimes, _delete_unchanged, node_time
from edge.cache.versions import SharedVersions
from edge.cache.tiers import OutputTier
from tests.nodes import decode, until, web_config, write_config
from tests.servers import HTTPOrigin

TOKEN = "purge-race-token-4b1d9e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RED, BLUE = (220, 30, 30), (30, 30, 220)


def noisy(colour: tuple[int, int, int]) -> bytes:
    """A JPEG of `colour` with noise, large enough (> 64 KiB) that the origin's stall holds its body."""
    noise = pyvips.Image.gaussnoise(800, 600, sigma=15, mean=0)
    image = noise.bandjoin([noise, noise]) + list(colour)
    return image.cast("uchar").copy(interpretation="srgb").jpegsave_buffer(Q=95)


def tint(response) -> tuple[int, int, int]:
    image = decode(response)
    return tuple(round(image.extract_band(band).avg()) for band in range(3))


def red(response) -> bool:
    r, g, b = tint(response)
    return r > b + 100


def blue(response) -> bool:
    r, g, b = tint(response)
    return b > r + 100


@pytest.fixture
async def origin():
    server = await HTTPOrigin(files={"a.jpg": noisy(RED)}).start()
    yield server
    await server.stop()


@pytest.fixture
async def node(origin, node_factory, tmp_path):
    return await node_factory(write_config(tmp_path, web_config(origin.url, f'[admin]\ntoken = "{TOKEN}"\n')))


async def purge(node, target: dict) -> None:
    response = await node.fetch("/_edge/purge", method="POST", headers=AUTH, body=json.dumps(target).encode())
    assert response.code == 200, response.body


async def test_a_fetch_under_way_during_a_purge_leaves_nothing_of_the_old_image(node, origin):
    stall = origin.behaviour.stall = asyncio.Event()
    before = asyncio.ensure_future(node.fetch("/tr:w-100/a.jpg"))

    async def fetching() -> bool:
        return origin.requests["a.jpg"] == 1
    await until(fetching, "the origin fetch under way")  # the old bytes are on their way
    origin.files["a.jpg"] = noisy(BLUE)
    await purge(node, {"url": "/a.jpg"})
    # asked after the purge while the old fetch is still under way: not the old fetch's answer
    after = asyncio.ensure_future(node.fetch("/tr:w-100/a.jpg"))
    await until(lambda: _requests(origin, 2), "a second origin fetch")
    stall.set()
    assert red(await before)  # asked before the purge: what the origin was sending then
    assert blue(await after)
    origin.behaviour.stall = None
    for path in ("/tr:w-100/a.jpg", "/tr:w-120/a.jpg"):  # the same size, and one made from the original
        response = await node.fetch(path)
        assert (response.code, blue(response)) == (200, True), (path, tint(response))


async def _requests(origin, count: int) -> bool:
    return origin.requests["a.jpg"] >= count


async def test_a_store_under_way_when_a_purge_deletes_is_deleted_after_it(node, origin, monkeypatch):
    """The store is checked against the purges before it writes and again after: a purge that deleted
    while the output was being written (its begin record after the first look) is seen by the second."""
    writing, go_on = threading.Event(), threading.Event()
    put = node.node.caches.outputs.put

    def slow_put(key, output):  # in a cache thread: the output's store, held between look and write
        writing.set()
        assert go_on.wait(10)
        put(key, output)
    monkeypatch.setattr(node.node.caches.outputs, "put", slow_put)
    first = await node.client.fetch(node.url + "/tr:w-100/a.jpg")  # answered before it is stored
    assert red(first)
    assert await asyncio.to_thread(writing.wait, 10)
    origin.files["a.jpg"] = noisy(BLUE)
    purged = await node.client.fetch(node.url + "/_edge/purge", method="POST", headers=AUTH,
                                     body=json.dumps({"url": "/a.jpg"}).encode())
    assert purged.code == 200
    go_on.set()
    await node.node.settle()
    monkeypatch.setattr(node.node.caches.outputs, "put", put)
    response = await node.fetch("/tr:w-100/a.jpg")
    assert (response.headers["X-Cache"], blue(response)) == ("MISS", True)


async def test_a_404_answered_across_a_purge_is_not_remembered(node, origin):
    """The operator uploads, then purges: a "not found" the origin was giving meanwhile may be from before the
    upload, and must not be kept for `not_found_ttl` after the purge."""
    origin.behaviour.status = 404
    hold = origin.behaviour.hold = asyncio.Event()

    async def asked() -> bool:
        return origin.requests["b.jpg"] == 1
    missing = asyncio.ensure_future(node.fetch("/tr:w-100/b.jpg"))
    await until(asked, "the origin fetch under way")
    await purge(node, {"url": "/b.jpg"})
    hold.set()
    assert (await missing).code == 404  # asked before the purge
    origin.behaviour.status = origin.behaviour.hold = None
    origin.files["b.jpg"] = noisy(BLUE)
    response = await node.fetch("/tr:w-100/b.jpg")
    assert (response.code, blue(response)) == (200, True)
    assert origin.requests["b.jpg"] == 2


async def test_a_purge_forgets_that_an_original_could_not_be_rendered(node, origin):
    origin.files["a.jpg"] = b"\xff\xd8 not a JPEG after all"
    assert (await node.fetch("/tr:w-100/a.jpg")).code == 422
    origin.files["a.jpg"] = noisy(BLUE)
    assert (await node.fetch("/tr:w-100/a.jpg")).code == 422  # remembered (`UNUSABLE_SECONDS`): no fetch
    await purge(node, {"url": "/a.jpg"})
    response = await node.fetch("/tr:w-100/a.jpg")
    assert (response.code, blue(response)) == (200, True)


def test_a_prefix_delete_moves_the_versions_only_once_its_deletes_are_committed(tmp_path):
    """A reader that sees a key's version moved must not still find the key: it would keep the old
    output in its memory tier as current (tests/test_purge_races.py's race, made deterministic)."""
    seen: list[bool] = []
    tier = OutputTier("output", tmp_path / "outputs", 10**9, CacheHealth(),
                      changed=lambda key: seen.append(other._get(key) is None))
    other = OutputTier("output", tmp_path / "outputs", 10**9, CacheHealth())
    for n in range(5):
        tier._put(f"shop\0dir/{n}.jpg\0", b"x" * 100, {})
    seen.clear()
    assert tier.delete_prefix("shop\0dir/") == 5
    assert seen == [True] * 5
    tier.close()
    other.close()


async def test_the_records_are_read_again_only_after_a_purge_and_once_for_all_who_ask(tmp_path, monkeypatch):
    caches = Caches(tmp_path, 10**8, 10**8)
    try:
        reads = []
        recent = caches.purges.recent
        monkeypatch.setattr(caches.purges, "recent", lambda: reads.append(1) or recent())
        assert not await caches.purged_since("\0a.jpg\0r3:w-1\0", 0.0)
        moved = set()
        for n in range(100_000):  # stores move their buckets' counters (all of them here), never the purges'
            key = f"\0img-{n}.jpg\0r3:w-1\0"
            caches.bump(key)
            moved.add(SharedVersions.bucket(key))
            if len(moved) == SharedVersions.BUCKETS:
                break
        assert not await caches.purged_since("\0a.jpg\0r3:w-1\0", 0.0) and len(reads) == 1
        await caches.io(caches.forget, "\0a.jpg\0")
        covered = await asyncio.gather(*(caches.purged_since("\0a.jpg\0r3:w-1\0", 0.0) for _ in range(20)))
        assert all(covered) and len(reads) == 2
    finally:
        caches.close()


def test_reading_the_records_deletes_those_no_work_can_race_and_keeps_the_rest(tmp_path):
    """Records carry no wall-clock expiry (a clock stepped forward reached it early: tests/test_clock_steps.py),
    so reading them deletes the spent ones: an earlier boot's, one past RECORD_SECONDS, a release's before
    `node_time`; a record of this boot within its time stays, as does one rewritten since it was read."""
    tier = PurgeTier("purges", tmp_path / "purges", 10**6, CacheHealth())
    spent = {"\0earlier-boot.jpg\0": {"at": 1.0, "node_time": node_time(), "boot": "another boot"},
             "\0too-old.jpg\0": {"at": 1.0, "node_time": node_time() - RECORD_SECONDS - 1, "boot": BOOT},
             "\0before-upgrade.jpg\0": {"at": time.time()}}
    with diskcache.Cache(str(tmp_path / "purges")) as writer:  # as those writers left them
        for prefix, record in spent.items():
            writer.set(prefix, b"", tag=json.dumps(record))
    assert tier.record("\0kept.jpg\0")
    assert tier.recent().by_node_time.last("\0kept.jpg\0r3:w-1\0") is not None
    with diskcache.Cache(str(tmp_path / "purges")) as cache:
        assert list(cache) == ["\0kept.jpg\0"] and len(cache) == 1
        # read as spent by one process while another recorded the prefix again: that record stays
        _delete_unchanged(cache, [("\0kept.jpg\0", json.dumps(spent["\0too-old.jpg\0"]))])
        assert list(cache) == ["\0kept.jpg\0"]
    tier.close()


def test_a_prefix_covers_the_keys_it_begins_and_no_other():
    times = PurgeTimes()
    times.add("shop\0dir/a", 10.0)
    for n in range(1, 200):  # prefixes longer than the keys looked up: never theirs
        times.add("shop\0dir/" + "x" * n + "/", 10.0)
    times.add("shop\0dir/b.jpg\0", 20.0)  # a whole path
    assert times.covers("shop\0dir/a/1.jpg\0r3:w-1\0", 5.0) and not times.covers("shop\0dir/a/1.jpg\0", 10.0)
    assert times.covers("shop\0dir/b.jpg\0r3:w-1\0", 15.0) and not times.covers("shop\0dir/c.jpg\0", 5.0)
    assert times.last("shop\0dir/b.jpg\0r3:w-1\0") == 20.0 and times.last("shop\0other.jpg\0") is None


def test_an_older_purge_added_later_never_hides_a_newer_one():
    """The journal lists an entry of a lagging clock, or one landed late, after newer ones of the same path: the
    latest time stays, or an output confirmed between the two purges would be served."""
    times = PurgeTimes()
    times.add("shop\0a.jpg\0", 20.0)
    times.add("shop\0a.jpg\0", 10.0)
    times.add("shop\0dir/", 20.0)
    times.add("shop\0dir/", 10.0)
    assert times.last("shop\0a.jpg\0r3:w-1\0") == times.last("shop\0dir/b.jpg\0r3:w-1\0") == 20.0
    assert times.covers("shop\0a.jpg\0r3:w-1\0", 15.0) and times.covers("shop\0dir/b.jpg\0r3:w-1\0", 15.0)


def test_a_journals_purge_applied_late_never_makes_the_records_latest_purge_older(tmp_path):
    """A fleet journal's purge applied after this node's own of the same path (made before it, by the wall clock)
    leaves the record's time the latest: an origin told an older `purged_at` trusts a listing made before the
    latest purge, and the shared tier serves an output confirmed between the two."""
    tier = PurgeTier("purges", tmp_path / "purges", 10**6, CacheHealth())
    try:
        before = time.time()
        assert tier.record("\0a.jpg\0")
        assert tier.record("\0a.jpg\0", made_at=before - 60)
        assert tier.recent().by_wall_clock.last("\0a.jpg\0r3:w-1\0") >= before
    finally:
        tier.close()


@pytest.mark.parametrize("forwarded", [{}, {"X-Edge-Purge-Forwarded": "1"}])
async def test_a_purge_that_cannot_be_recorded_says_so(origin, node_factory, tmp_path, forwarded):
    """Work under way could store what the purge removed: the purge is not done (502), as for a tier
    that could not be purged, and says which part failed; to the peer that forwarded it too, whose answer names
    this node (a mutation audit: a forwarded purge answering 200 survived)."""
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "purges").write_bytes(b"a file where the records' folder should be")
    node = await node_factory(write_config(tmp_path, web_config(
        origin.url, f'[admin]\ntoken = "{TOKEN}"\n[cache]\ndir = "cache"\n')))
    assert red(await node.fetch("/tr:w-100/a.jpg"))
    response = await node.fetch("/_edge/purge", method="POST", headers={**AUTH, **forwarded}, body=b'{"url": "/a.jpg"}')
    answer = json.loads(response.body)
    assert (response.code, answer["by_tier"]["purges"], answer["by_tier"]["output"]) == (502, "error", 1)
