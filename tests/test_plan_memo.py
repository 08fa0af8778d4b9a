"""The pipeline's memo of request plans (`edge.pipeline`): a repeated request skips routing, parsing and
the cost check, and is never answered from a plan that no longer holds. Here: Accept under `f-auto`,
the memo's bounds, the memo of checked transformations that paths share, and a config reload.
Elsewhere, with URLs asked for again: client hints (test_client_hints.py, one URL with several
widths), an expired `ik-t` (test_signed_urls.py), purges (test_purge.py).
"""

import asyncio
import signal

from tornado.httpclient import AsyncHTTPClient

from edge import pipeline
from edge.config import load_config
from edge.pluginmanager import load_plugins
from tests.nodes import NodeProcess, decode, loader, local_config, write_config
from tests.scrape import scrape_when
from tests.test_signals import gone
from tests.transform_node import fetch_image, image_node, image_root  # noqa: F401

FORMATS_BY_ACCEPT = [("image/webp,*/*", "webpload"), ("image/jpeg,*/*", "jpegload"), ("image/avif,*/*", "heifload")]


async def test_f_auto_follows_each_requests_accept(image_node):
    for _ in range(2):  # the second time round, every plan is a remembered one
        for accept, expected in FORMATS_BY_ACCEPT:
            response, _ = await fetch_image(image_node, "/tr:w-40,f-auto/photo.jpg", headers={"Accept": accept})
            assert loader(response) == expected, accept
            assert response.headers["Vary"] == "Accept"
    hits = await fetch_image(image_node, "/tr:w-40,f-auto/photo.jpg", headers={"Accept": "image/webp"})
    assert (hits[0].headers["X-Cache"], loader(hits[0])) == ("HIT", "webpload")


async def test_the_memo_is_bounded(image_node, monkeypatch):
    plans = image_node.node.pipeline._plans
    assert plans.budget == image_node.node.config.cache.memory_size // pipeline.PLAN_MEMO_SHARE
    plans = pipeline.PlanMemo(plans.budget)
    monkeypatch.setattr(image_node.node.pipeline, "_plans", plans)
    await fetch_image(image_node, "/tr:w-10/missing-0.jpg", status=404)  # not found, after planning: a plan
    monkeypatch.setattr(plans, "budget", 3 * plans._bytes)  # room for three plans of such URLs
    for n in range(1, 5):
        await fetch_image(image_node, f"/tr:w-10/missing-{n}.jpg", status=404)
    assert [uri for _, uri, _ in plans._plans] == [f"/tr:w-10/missing-{n}.jpg" for n in (2, 3, 4)]
    long_name = "x" * pipeline.PLAN_MEMO_MAX_CHARS
    await fetch_image(image_node, f"/tr:w-10/{long_name}.jpg", status=404)
    assert len(plans._plans) == 3 and not any(long_name in uri for _, uri, _ in plans._plans)
    await fetch_image(image_node, "/tr:w-10/missing-0.jpg?tr=w-,,", status=400)  # an error: no plan
    assert [uri for _, uri, _ in plans._plans] == [f"/tr:w-10/missing-{n}.jpg" for n in (2, 3, 4)]
    # ... counted on its endpoint, as before plans were remembered
    await scrape_when(image_node.url, "edge_http_requests_total", 1, endpoint="default", status="400")


def test_the_memo_holds_fewer_plans_of_long_urls():
    """The budget is in bytes, each plan's estimated from its key: a hostile client's long URLs hold
    fewer plans, and the memo stays within its budget whatever it holds."""
    memo = pipeline.PlanMemo(budget=20_000)
    for n in range(100):
        memo.remember(("cdn.example.com", f"/tr:w-100/photos/k{n}.jpg", None), None)
    short = len(memo._plans)
    for n in range(100):
        memo.remember(("cdn.example.com", f"/tr:w-100/{'x' * 900}{n}.jpg", "image/avif,*/*"), None)
    assert [uri[-6:] for _, uri, _ in memo._plans] == [f"{n}.jpg".rjust(6, "x") for n in range(100 - len(memo._plans), 100)]
    assert short > 4 * len(memo._plans) > 0
    assert memo._bytes == sum(map(memo._cost, memo._plans)) <= memo.budget


def test_the_budget_follows_the_memory_tier(tmp_path):
    for memory_size, budget in (("64MB", 3_200_000), ("512MB", 25_600_000), ("0", pipeline.PLAN_MEMO_MIN_BYTES)):
        text = local_config(before=f'[cache]\ndir = "c"\nmemory_size = "{memory_size}"\n')
        config = load_config(write_config(tmp_path, text), load_plugins())
        assert pipeline.Pipeline(config, *[None] * 6)._plans.budget == budget


async def test_paths_share_one_checked_transformation(image_node, monkeypatch):
    monkeypatch.setattr(pipeline, "TRANSFORMATION_MEMO_SIZE", 2)
    transformations = image_node.node.pipeline._transformations
    transformations.clear()
    for n in range(3):
        await fetch_image(image_node, f"/tr:w-10/missing-{n}.jpg", status=404)
    assert list(transformations) == [("", "w-10", None, False)]
    for width in (11, 12):
        await fetch_image(image_node, f"/tr:w-{width}/missing-0.jpg", status=404)
    assert [text for _, text, _, _ in transformations] == ["w-11", "w-12"]
    for _ in range(2):  # too costly: refused every time, nothing remembered
        response, _ = await fetch_image(image_node, "/tr:w-8000,h-8000,bl-100/photo.jpg", status=400)
        assert response.body.decode() == ("transformation too costly: about 278 megapixels of work exceed "
                                          "[limits] max_cost = 200\n")
    assert [text for _, text, _, _ in transformations] == ["w-11", "w-12"]


async def test_a_reload_changes_the_answer_of_a_remembered_url(tmp_path):
    config = write_config(tmp_path, local_config(before='[named_transformations]\nthumb = "w-30"\n'))
    node = NodeProcess(config)
    client = AsyncHTTPClient()
    try:
        for _ in range(2):
            assert decode(await client.fetch(node.url + "/tr:n-thumb/coffee.jpg")).width == 30
        write_config(tmp_path, local_config(before='[named_transformations]\nthumb = "w-40"\n'))
        mark, old_workers = len(node.log), set(node.worker_pids())
        node.process.send_signal(signal.SIGHUP)
        await asyncio.to_thread(node.wait_for_log, "config reloaded", 60, mark)
        await asyncio.to_thread(gone, node, old_workers)  # (until then one may still accept)
        reloaded = await client.fetch(node.url + "/tr:n-thumb/coffee.jpg", headers={"Connection": "close"})
        assert decode(reloaded).width == 40
    finally:
        assert node.stop() == 0
