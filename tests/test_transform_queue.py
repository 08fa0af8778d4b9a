"""`[server] transform_queue_timeout` over a real node: a render that waits that long for a transform thread
leaves the queue without running and its requests get 503 with Retry-After at once, rather than waiting
behind the renders ahead of it (minutes on an overloaded node, past the balancers' answer timeout)."""

import asyncio
import time

from edge.testing import total
from tests.nodes import decode, local_config, until, write_config
from tests.photos import SIZE, photos  # noqa: F401 - a fixture

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
        return node.node.renderer._pending == 1
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
