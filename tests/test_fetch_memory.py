"""`[server] fetch_memory`: originals being fetched, and held by the renders made from them until they end, are
held to a byte budget; beyond it a request waits, then gets 503 with Retry-After, and the work within the budget
completes."""

import asyncio
import threading

import pytest
import pyvips

from edge.fetching import FetchBudget, fetch_budget, fetch_memory, in_thread, reading
from edge.testing import total
from tests.nodes import as_predicate, decode, until, web_config, write_config
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


async def test_originals_of_no_announced_length_hold_the_budget_as_they_arrive(node_factory, tmp_path):
    """Chunk by chunk: two bodies of 5 MB without Content-Length, stalled before their last chunk, hold 10 of the
    12 MB, and a third fetch gets 503 (had they held nothing, a thousand such reads grew the worker unbounded)."""
    files = {f"{name}.png": noise_png(n) for n, name in enumerate("abc")}
    origin = await HTTPOrigin(files=files).start()
    try:
        origin.behaviour.chunked, origin.behaviour.stall = True, asyncio.Event()
        node = await node_factory(write_config(tmp_path, web_config(origin.url, BUDGET)))
        first = [asyncio.ensure_future(node.fetch(f"/tr:w-64/{name}.png")) for name in "ab"]
        await until(as_predicate(lambda: fetch_budget.in_use >= 9_700_000), "two unannounced reads holding 10 MB")
        refused = await node.fetch("/tr:w-64/c.png", timeout=10)
        assert (refused.code, refused.headers["X-Edge-Error"]) == (503, "fetch_memory")
        origin.behaviour.stall.set()
        for response in await asyncio.gather(*first):
            assert response.code == 200 and decode(response).width == 64
        assert fetch_budget.in_use == 0
    finally:
        await origin.stop()


async def test_originals_waiting_for_a_render_thread_hold_the_budget(node_factory, tmp_path):
    """Originals read stay in memory until their render ends: those of renders waiting for a thread hold the
    budget, so a further fetch waits (its body unread) and gets 503; an original shared by two renders counts
    once; and a URL whose originals together are over the budget is still served, alone."""
    files = {f"{name}.png": noise_png(n) for n, name in enumerate("abcd")}
    origin = await HTTPOrigin(files=files).start()
    gate = threading.Event()
    try:
        one_thread = BUDGET.replace("[server]\n", '[server]\ntransform_threads = 1\ntransform_queue_timeout = "20s"\n')
        node = await node_factory(write_config(tmp_path, web_config(origin.url, one_thread)))
        renderer = node.node.renderer
        blocker = asyncio.ensure_future(renderer.run(gate.wait, 20))  # the one render thread, busy

        queued = [asyncio.ensure_future(node.fetch(url, timeout=20))
                  for url in ("/tr:w-64/a.png", "/tr:w-65/a.png", "/tr:w-64/b.png")]

        async def three_renders_queued() -> bool:
            return renderer._pending == 4
        await until(three_renders_queued, "three renders waiting for the thread")
        assert fetch_budget.held == len(files["a.png"]) + len(files["b.png"])  # a.png once for two renders
        assert fetch_budget.in_use == 0

        refused = await node.fetch("/tr:w-64/c.png", timeout=10)
        assert (refused.code, refused.headers["X-Edge-Error"]) == (503, "fetch_memory")

        gate.set()
        await blocker
        for response, width in zip(await asyncio.gather(*queued), (64, 65, 64)):
            assert response.code == 200 and decode(response).width == width
        assert (fetch_budget.held, fetch_budget.in_use) == (0, 0)

        # 15 MB of originals for one URL, over the 12 MB budget: served when nothing else is held
        layered = await node.fetch("/tr:w-64,l-image,i-c.png,l-end:l-image,i-d.png,l-end/a.png", timeout=20)
        assert layered.code == 200 and decode(layered).width == 64
        assert (fetch_budget.held, fetch_budget.in_use) == (0, 0)
    finally:
        gate.set()
        await origin.stop()


async def test_renders_each_over_the_budget_with_their_layers_are_served_one_after_the_other(node_factory, tmp_path):
    """Two URLs whose originals together are each over the budget, asked at once: each holds its first originals
    and needs room for the others. The render that held originals first reads on past the budget; the other waits
    for it to end, then does the same (both had waited for each other, and got 503)."""
    files = {f"{name}.png": noise_png(n) for n, name in enumerate("abcdef")}
    origin = await HTTPOrigin(files=files).start()
    try:
        node = await node_factory(write_config(tmp_path, web_config(origin.url, BUDGET.replace('"1s"', '"20s"'))))
        urls = ("/tr:w-64,l-image,i-b.png,l-end:l-image,i-c.png,l-end/a.png",
                "/tr:w-64,l-image,i-e.png,l-end:l-image,i-f.png,l-end/d.png")
        for response in await asyncio.gather(*(node.fetch(url, timeout=30) for url in urls)):
            assert response.code == 200 and decode(response).width == 64
        assert (fetch_budget.held, fetch_budget.in_use) == (0, 0)
    finally:
        await origin.stop()


async def test_a_layer_that_arrives_after_its_render_failed_holds_nothing(node_factory, tmp_path):
    """One layer missing (the render's 400) while another is still read: `gather` lets that one finish after the
    render's hold ended, and its `add` had put the hold back for good (the budget held by nobody, and the oldest
    holder forever, so that no render read past it again)."""
    files = {"a.png": noise_png(0), "slow.png": noise_png(1)}
    origin = await HTTPOrigin(files=files).start()
    try:
        origin.behaviour.hold, origin.behaviour.held_paths = asyncio.Event(), frozenset({"slow.png"})
        node = await node_factory(write_config(tmp_path, web_config(origin.url, BUDGET.replace('"1s"', '"20s"'))))
        refused = asyncio.ensure_future(node.fetch(
            "/tr:w-64,l-image,i-slow.png,l-end:l-image,i-missing.png,l-end/a.png", timeout=20))

        async def slow_asked() -> bool:
            return origin.requests["slow.png"] == 1
        await until(slow_asked, "the slow layer asked for")
        assert (await refused).code == 400  # the missing layer
        origin.behaviour.hold.set()
        assert (await node.fetch("/tr:w-64/slow.png", timeout=20)).code == 200  # once the late layer has arrived
        assert (fetch_budget.held, fetch_budget.in_use, len(fetch_budget._holdings)) == (0, 0, 0)
    finally:
        origin.behaviour.hold.set()
        await origin.stop()


async def test_a_read_cancelled_in_its_thread_holds_its_bytes_until_it_returns():
    """A timeout or a client gone cancels the fetch, not the read running in its thread, which goes on filling memory:
    the block's bytes had been given back at once (a plugin's 6 threads of 40 MB reads: 472 MB on a 200 MB budget)."""
    reading, release = threading.Event(), threading.Event()

    def read() -> bytes:
        reading.set()
        assert release.wait(10)
        return b"x" * 1000

    async def fetch() -> bytes:
        async with fetch_memory(1000):
            return await in_thread(read)

    before = fetch_budget.in_use
    task = asyncio.ensure_future(fetch())
    await until(as_predicate(reading.is_set), "the read started in its thread")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fetch_budget.in_use == before + 1000  # the read goes on: its bytes stay held
    release.set()
    await until(as_predicate(lambda: fetch_budget.in_use == before), "the bytes given back once the read returned")


async def test_a_read_the_oldest_render_waits_for_goes_past_the_budget_whoever_started_it():
    """The oldest render joins a read another render started (a layer of one URL, the base of another): that read
    waited for room the oldest render held, and both waited for each other until the 503 (memory probe)."""
    budget = FetchBudget(12, 10)
    with budget.holding() as oldest:
        oldest.add(bytes(8))  # its base, read: 8 of the 12 held

        async def a_younger_render_reads_b() -> None:
            with budget.holding(), reading("b.png"):
                await budget.reserve(8)
                budget.release(8)
        younger = asyncio.ensure_future(a_younger_render_reads_b())
        await until(as_predicate(lambda: budget._waiters), "the younger render's read waiting for room")
        with reading("b.png"):  # the oldest render waits for it too (it joins that read's single flight)
            await asyncio.wait_for(younger, 5)
    assert (budget.in_use, budget.held) == (0, 0)


async def test_originals_of_no_announced_length_read_at_once_over_the_budget_are_all_served(node_factory, tmp_path):
    """Bodies without Content-Length reserve as they arrive: four of 5 MB at once into 12 MB each took part of the
    budget and waited for room only the others could give, none served (memory probe: eight at the default
    budget, seven 504s and a 503). The oldest render's read goes on past the budget, then the others'."""
    files = {f"{name}.png": noise_png(n) for n, name in enumerate("abcd")}
    origin = await HTTPOrigin(files=files).start()
    try:
        origin.behaviour.chunked = True
        node = await node_factory(write_config(tmp_path, web_config(origin.url, BUDGET.replace('"1s"', '"20s"'))))
        answers = await asyncio.gather(*(node.fetch(f"/tr:w-64/{name}.png", timeout=30) for name in "abcd"))
        assert [(a.code, decode(a).width) for a in answers] == [(200, 64)] * 4
        assert (fetch_budget.held, fetch_budget.in_use) == (0, 0)
    finally:
        await origin.stop()


async def test_endpoints_whose_origins_stall_leave_another_endpoint_its_share_of_the_budget(node_factory, tmp_path):
    """Reads are not taken back, and an origin that announces 40 MB and sends a byte a second holds its reservation
    for its whole `timeout`: five such reads had filled a worker's 200 MB, and every other endpoint's fetch waited,
    then got 503, counted `busy` on its own origin (noisy-tenant probe; and with two stalling endpoints once one was
    kept from the whole budget). An endpoint under its share of the budget while others hold originals reads past
    it; a stalling endpoint over its share gets the 503 itself."""
    files = {f"{name}.png": noise_png(n) for n, name in enumerate("abd")}
    (tmp_path / "local").mkdir()
    small = pyvips.Image.gaussnoise(1000, 1000, mean=128, sigma=60).cast("uchar")  # 3 MB: 2 MB are left
    (tmp_path / "local" / "c.png").write_bytes(small.bandjoin([small, small]).pngsave_buffer(compression=0))
    origin = await HTTPOrigin(files=files).start()
    try:
        origin.behaviour.stall = asyncio.Event()  # headers and 64 KiB of each, the rest when it is set
        config = web_config(origin.url, BUDGET, after=f'[[endpoints]]\nid = "a2"\norigins = ["web"]\n'
                                                      f'[[origins]]\nname = "local"\ntype = "local"\n'
                                                      f'root = "{tmp_path / "local"}"\n'
                                                      '[[endpoints]]\nid = "b"\norigins = ["local"]\n')
        node = await node_factory(write_config(tmp_path, config))
        stalled = [asyncio.ensure_future(node.fetch(path, timeout=10))
                   for path in ("/tr:w-64/a.png", "/a2/tr:w-64/b.png")]
        await until(as_predicate(lambda: fetch_budget.in_use >= 9_800_000), "two endpoints' reads holding 10 of 12 MB")
        # over the budget, the first endpoint is over its share too: it waits, then gets 503, counted on its origin
        refused = await node.fetch("/tr:w-64/d.png", timeout=10)
        assert (refused.code, refused.headers["X-Edge-Error"]) == (503, "fetch_memory")
        # another endpoint's 3 MB is within its share (12 MB over three endpoints): read past the budget
        served = await node.fetch("/b/tr:w-64/c.png", timeout=10)
        assert (served.code, decode(served).width) == (200, 64) and not any(task.done() for task in stalled)
        origin.behaviour.stall.set()
        assert [(await task).code for task in stalled] == [200, 200]
        metrics = node.node.metrics.exposition().decode()
        assert total(metrics, "edge_origin_fetches_total", origin="web", outcome="busy") == 1
        assert total(metrics, "edge_origin_fetches_total", origin="local", outcome="busy") == 0
        assert fetch_budget.in_use == fetch_budget.held == 0 and not fetch_budget.shares
    finally:
        await origin.stop()
