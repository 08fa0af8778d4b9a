"""`[server] transform_queue_timeout` over a real node: a render that waits that long for a transform thread
leaves the queue without running and its requests get 503 with Retry-After at once, rather than waiting
behind the renders ahead of it (minutes on an overloaded node, past the balancers' answer timeout)."""

import asyncio
import time

from edge.testing import total
from tests.nodes import as_predicate, decode, local_config, until, web_config, write_config
from tests.photos import SIZE, photos  # noqa: F401 - a fixture
from tests.servers import HTTPOrigin

QUEUE_TIMEOUT = 1.0
#: a 12 MP photo to AVIF at its full size: 3-3.5 s of one core on the test machine, well over the queue timeout
#: (over the default cost budget, which prices AVIF for noise: `SLOW_BUDGET` admits it)
SLOW = "/tr:f-avif/photo.jpg"
SLOW_BUDGET = "[limits]\nmax_cost = 1000\n"
QUICK = "/tr:w-300/photo.jpg"
WAIT = 15  # seconds any single answer may take here
QUEUE_TIMEOUT_BODY = b"node overloaded: waited too long for a transform thread, retry later\n"


async def test_a_render_that_waited_transform_queue_timeout_is_answered_503_and_never_runs(
        node_factory, tmp_path, photos):  # noqa: F811
    config = local_config(photos.folder, before=f'[server]\ntransform_threads = 1\n'
                                                f'transform_queue_timeout = "{QUEUE_TIMEOUT}s"\n'
                                                f'access_log = false\n{SLOW_BUDGET}')
    node = await node_factory(write_config(tmp_path, config))
    metrics = node.node.metrics
    started = time.monotonic()
    slow = asyncio.ensure_future(node.fetch(SLOW, timeout=WAIT))

    async def slow_render_queued():  # the one thread is idle: the slow render starts as it is queued
        # and its original's flight has ended, stored: the requests below would join it while it stores (CI once)
        return node.node.renderer._pending == 1 and not node.node.flights["originals"]._flights
    await until(slow_render_queued, "the slow render handed to the transform thread", timeout=WAIT)

    queued_at = time.monotonic()
    # two requests for one new URL: one render queued behind the slow one, the other request joins its flight
    refused = await asyncio.gather(*(node.fetch(QUICK, timeout=WAIT) for _ in range(2)))
    refused_after = time.monotonic() - queued_at
    assert [(r.code, r.headers.get("Retry-After"), r.headers.get("X-Edge-Error"), r.body) for r in refused] \
        == [(503, "1", "queue_timeout", QUEUE_TIMEOUT_BODY)] * 2
    assert not slow.done()  # answered while the render ahead still runs, not after it

    served = await asyncio.wait_for(slow, WAIT)
    slow_took = time.monotonic() - started
    assert served.code == 200 and (decode(served).width, decode(served).height) == SIZE
    assert QUEUE_TIMEOUT <= refused_after < QUEUE_TIMEOUT + 1.5 and refused_after < slow_took
    text = metrics.exposition().decode()
    assert total(text, "edge_transform_refusals_total", reason="queue_timeout") == 1  # one render, two requests
    assert total(text, "edge_transform_refusals_total", reason="queue_full") == 0
    assert total(text, "edge_coalesced_requests_total") == 1
    assert total(text, "edge_transform_duration_seconds_count") == 1

    # the URL was not remembered as failed: asked again with the thread free, it renders (once) and is served
    again = await node.fetch(QUICK, timeout=WAIT)
    assert (again.code, again.headers["X-Cache"], decode(again).width) == (200, "MISS", 300)
    assert total(metrics.exposition().decode(), "edge_transform_duration_seconds_count") == 2


#: ~0.2-0.4 s of one core each on the 12 MP photo; a width of each for its own output
BUSY = "/a/tr:w-{},bl-8/photo.jpg"


async def test_one_endpoints_queued_renders_do_not_stand_in_front_of_anothers(node_factory, tmp_path,
                                                                              photos):  # noqa: F811
    """Renders are started endpoint after endpoint: a tenant with its queue full (noisy-tenant probe: 32 requests at
    once made another endpoint's misses 80 times slower, 2 in 5 a 503) has another endpoint's render wait for one
    of its renders at most, and has the rest of its own refused while the other's are taken."""
    config = local_config(photos.folder, before=f'[server]\ntransform_threads = 1\ntransform_queue = 2\n'
                                                f'transform_queue_timeout = "{WAIT}s"\naccess_log = false\n',
                          after='[[endpoints]]\nid = "a"\norigins = ["samples"]\n'
                                '[[endpoints]]\nid = "b"\norigins = ["samples"]\n')
    node = await node_factory(write_config(tmp_path, config))
    renderer = node.node.renderer
    noisy = [asyncio.ensure_future(node.fetch(BUSY.format(2000 + i), timeout=WAIT)) for i in range(5)]

    async def queue_full():  # a render running and two waiting: the capacity (1 + 2) is the noisy tenant's
        return renderer._pending == 3 and sum(task.done() for task in noisy) == 2
    await until(queue_full, "the noisy endpoint's renders queued, its last two refused", timeout=WAIT)
    assert sorted(task.result().headers["X-Edge-Error"] for task in noisy if task.done()) == ["queue_full"] * 2

    quiet = await node.fetch("/b/tr:w-300/photo.jpg", timeout=WAIT)  # admitted into the full queue: its first
    assert (quiet.code, decode(quiet).width) == (200, 300)
    # started once the render running when it was queued ended (two, should the first end before it was queued):
    # not after every render the noisy endpoint queued before it
    assert sum(task.done() for task in noisy) <= 2 + 2
    answers = await asyncio.wait_for(asyncio.gather(*noisy), WAIT * 2)
    assert sorted(a.code for a in answers) == [200, 200, 200, 503, 503]
    text = node.node.metrics.exposition().decode()
    assert total(text, "edge_transform_refusals_total", reason="queue_full") == 2


async def test_a_render_the_queue_would_refuse_is_refused_before_its_original_is_fetched(node_factory, tmp_path,
                                                                                          photos):  # noqa: F811
    """A burst past the queue had each request read its original only to be refused (150 connections at once: 6.4 MB
    each, and another endpoint's hits slowed 20-fold: noisy-tenant re-probe)."""
    files = {"photo.jpg": photos.read(photos.jpeg), "other.jpg": photos.read(photos.jpeg)}
    origin = await HTTPOrigin(files=files).start()
    try:
        config = web_config(origin.url, before=f'[server]\ntransform_threads = 1\ntransform_queue = 1\n'
                                               f'access_log = false\n{SLOW_BUDGET}')
        node = await node_factory(write_config(tmp_path, config))
        slow = [asyncio.ensure_future(node.fetch(path, timeout=WAIT)) for path in (SLOW, "/tr:f-avif,q-79/photo.jpg")]
        await until(as_predicate(lambda: node.node.renderer._pending == 2), "a slow render running, one queued",
                    timeout=WAIT)
        refused = await node.fetch("/tr:w-300/other.jpg", timeout=WAIT)
        assert (refused.code, refused.headers["X-Edge-Error"]) == (503, "queue_full")
        assert origin.requests["other.jpg"] == 0 and not any(task.done() for task in slow)
        assert [r.code for r in await asyncio.wait_for(asyncio.gather(*slow), 2 * WAIT)] == [200, 200]
        assert total(node.node.metrics.exposition().decode(), "edge_transform_refusals_total", reason="queue_full") == 1
    finally:
        await origin.stop()
