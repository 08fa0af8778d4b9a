"""Purges that race the work under way: what an origin fetch begun before a purge brings back, what a
remembered failure said, what a prefix purge is still deleting, is never kept past the purge
(edge/cache/purges.py). An operator who replaces an image and purges its URL gets the new image from
then on, not once the old one ages out."""

import asyncio
import json

import pyvips
import pytest

from edge.cache import CacheHealth
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
