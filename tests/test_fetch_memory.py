"""`[server] fetch_memory`: originals being fetched at once are held to a byte budget; beyond it a
request waits, then gets 503 with Retry-After, and the fetches within the budget complete."""

import asyncio

import pyvips

from edge.fetching import fetch_budget
from tests.nodes import decode, until, web_config, write_config
from tests.servers import HTTPOrigin

BUDGET = """[server]
fetch_memory = "12MB"
fetch_memory_wait = "1s"
[limits]
max_source_bytes = "6MB"
"""


def noise_png(seed: int) -> bytes:
    """An uncompressed 1280x1280 RGB PNG: about 5 MB that no compression shrinks."""
    image = pyvips.Image.gaussnoise(1280, 1280, mean=128 + seed, sigma=60).cast("uchar")
    return image.bandjoin([image, image]).pngsave_buffer(compression=0)


async def test_fetches_beyond_the_budget_get_503_while_it_holds(node_factory, tmp_path):
    files = {f"{name}.png": noise_png(n) for n, name in enumerate("abc")}
    assert all(4_900_000 < len(body) < 6_000_000 for body in files.values())
    origin = await HTTPOrigin(files=files).start()
    try:
        origin.behaviour.stall = asyncio.Event()
        node = await node_factory(write_config(tmp_path, web_config(origin.url, BUDGET)))
        first = [asyncio.ensure_future(node.fetch(f"/tr:w-64/{name}.png")) for name in "ab"]
        async def two_fetches_hold_the_budget() -> bool:
            return fetch_budget.in_use >= 9_800_000

        await until(two_fetches_hold_the_budget, "two fetches holding the budget")
        refused = await node.fetch("/tr:w-64/c.png", timeout=10)
        assert (refused.code, refused.headers["Retry-After"], refused.headers["X-Edge-Error"]) == (
            503, "1", "fetch_memory")  # named: no alert of its own counts it (SRE probe)
        assert refused.body == b"node overloaded, retry later\n"
        origin.behaviour.stall.set()
        for response in await asyncio.gather(*first):
            assert response.code == 200 and decode(response).width == 64
        assert fetch_budget.in_use == 0  # everything reserved was given back
        assert (await node.fetch("/tr:w-64/c.png")).code == 200  # and the budget serves again
    finally:
        await origin.stop()
