"""`/_edge/status` of a 2-worker node, rendered by headless Chromium: the screenshot is a page, not a
blank, and every number on it matches the node's `/metrics`; an origin's health is judged as the alerts
judge it. And it is protected like the purge API."""

import base64
import os
import re
import signal
import shutil
import subprocess

import pytest
import pyvips
from tornado.httpclient import AsyncHTTPClient

from edge.statuspage import Snapshot, _origins
from tests.loadbalancers import free_ports
from tests.nodes import NodeProcess, local_config, until_stored, write_config
from tests.s3server import shared_cache_table
from tests.scrape import scrape_when, total

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--window-size=1100,1400"]
#: an origin that refuses every connection (nothing listens on port 9 of the loopback)
BROKEN = '[[origins]]\nname = "broken"\ntype = "web"\nbase_url = "http://127.0.0.1:9"\n' \
         '[[endpoints]]\nid = "legacy"\norigins = ["broken"]\n'
TOKEN = "status-token-5e6f7a8b9c"


def chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"  # a fresh one each run
    result = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install chromium)")
async def test_the_status_page_in_chromium_shows_what_metrics_say(tmp_path):
    config = local_config(before='[server]\nworkers = 2\n[cache]\ndir = "cache"\n', after=BROKEN)
    node = NodeProcess(write_config(tmp_path, config))
    client = AsyncHTTPClient(force_instance=True)
    try:
        os.kill(node.worker_pids()[0], signal.SIGKILL)  # a worker that dies is replaced, and said so
        await scrape_when(node.url, "edge_worker_restarts", 1)
        # the second 404 is remembered (answered by the cache); a layer's remembered 404 (a 400) and one a
        # `di-` image stands in for (a 200 it renders) are not
        for path, status in (("/tr:w-40/coffee.jpg", 200), ("/tr:w-40/coffee.jpg", 200), ("/tr:w-40/coffee.jpg", 200),
                             ("/tr:w-50/camera.jpg", 200), ("/tr:w-40/missing.jpg", 404),
                             ("/tr:w-40/missing.jpg", 404), ("/tr:w-40,l-image,i-missing.jpg,l-end/coffee.jpg", 400),
                             ("/tr:w-40,di-camera.jpg/missing.jpg", 200),
                             ("/tr:w-abc/coffee.jpg", 400), ("/legacy/tr:w-40/a.jpg", 502)):
            response = await client.fetch(node.url + path, raise_error=False, headers={"Connection": "close"})
            assert response.code == status, path
            if response.headers.get("X-Cache") == "MISS" and "coffee" in path:
                await until_stored(tmp_path / "cache", 1)  # then the two others are hits, on either worker
        await scrape_when(node.url, "edge_http_requests_total", 10)
        metrics = await scrape_when(node.url, "edge_cache_entries", 3, tier="output")  # and the di- one

        shot = tmp_path / "status.png"
        chromium(tmp_path, f"--screenshot={shot}", node.url + "/_edge/status")
        dom = chromium(tmp_path, "--dump-dom", node.url + "/_edge/status").stdout
    finally:
        client.close()
        node.stop()

    image = pyvips.Image.new_from_file(str(shot))
    assert (image.width, image.height) == (1100, 1400)
    assert image.deviate() > 10  # text and tables, not one colour
    assert image.min() < 60 and image.max() > 200  # dark text on a light page

    shown = {key: float(value) for key, value in re.findall(r'data-key="([^"]+)" data-value="([^"]+)"', dom)}
    expected = {
        "workers": total(metrics, "edge_workers"), "worker_restarts": 1,
        "requests_total:default": total(metrics, "edge_http_requests_total", endpoint="default"),
        "4xx_total:default": 4, "5xx_total:default": 0,
        "requests_total:legacy": 1, "5xx_total:legacy": 1,
        "requests_recent:default": 9,  # the node is younger than the window: recent is everything
        "entries:output": total(metrics, "edge_cache_entries", tier="output"),
        "size_bytes:output": total(metrics, "edge_cache_size_bytes", tier="output"),
        "budget_bytes:original": total(metrics, "edge_cache_budget_bytes", tier="original"),
        "hit_ratio_total": (total(metrics, "edge_cache_requests_total", tier="output", result="hit")
                            + total(metrics, "edge_cache_requests_total", tier="not_found", result="hit"))
        / total(metrics, "edge_cache_requests_total", tier="output"),
        "fetches_total:samples": total(metrics, "edge_origin_fetches_total", origin="samples"),
        "failures_recent:broken": total(metrics, "edge_origin_fetches_total", origin="broken", outcome="refused"),
    }
    assert {key: shown.get(key) for key in expected} == pytest.approx(expected)
    assert expected["workers"] == 2 and expected["hit_ratio_total"] == pytest.approx(3 / 9)
    assert "<td class=\"failing\" data-key=\"health:broken\">failing</td>" in dom
    assert "<td class=\"ok\" data-key=\"health:samples\">ok</td>" in dom
    assert "refused 1" in dom and "<script" not in dom


async def test_the_status_page_wants_the_admin_token_when_one_is_set(node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, local_config(before=f'[admin]\ntoken = "{TOKEN}"\n')))
    refused = await node.fetch("/_edge/status")
    assert (refused.code, refused.headers["WWW-Authenticate"]) == (401, 'Basic realm="edge status"')
    assert (await node.fetch("/_edge/status", headers={"Authorization": "Bearer wrong"})).code == 401
    # basic credentials that do not decode, or are no text, or name another password (a mutation audit: one letting
    # those that do not decode in survived)
    for credentials in ("!!!", base64.b64encode(b"admin:\xff\xfe").decode(),
                        base64.b64encode(b"admin:wrong").decode(), base64.b64encode(TOKEN.encode()).decode()):
        refused = await node.fetch("/_edge/status", headers={"Authorization": f"Basic {credentials}"})
        assert refused.code == 401, credentials
    bearer = await node.fetch("/_edge/status", headers={"Authorization": f"Bearer {TOKEN}"})
    basic = await node.fetch("/_edge/status", headers={
        "Authorization": "Basic " + base64.b64encode(f"admin:{TOKEN}".encode()).decode()})
    for page in (bearer, basic):
        assert page.code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
        assert page.headers["Cache-Control"] == "no-store" and b"edge image node: status" in page.body
    assert TOKEN.encode() not in bearer.body


async def test_without_a_token_the_page_is_open_like_metrics(node_factory, tmp_path):
    node = await node_factory(write_config(tmp_path, local_config()))
    page = await node.fetch("/_edge/status")
    assert page.code == 200 and b'data-key="workers" data-value="1"' in page.body
    assert b"No cache errors in the last" in page.body and b"cache_errors:" not in page.body


@pytest.mark.parametrize("outcomes, health", [
    ({"found": 15, "denied": 1}, "ok"),  # a client's dot file: one 403 had made the origin failing
    ({"found": 1, "denied": 9}, "failing"),  # credentials that no longer work
    ({"found": 19, "timeout": 2}, "failing"),
    ({"found": 2, "abandoned": 8}, "slow"),  # every client gave up waiting for it: it had looked idle
    ({}, "idle"),
    # each share at its limit is not over it (a mutation audit: `>=` for each survived)
    ({"found": 19, "timeout": 1}, "ok"),
    ({"found": 1, "denied": 1}, "ok"),
    ({"found": 1, "abandoned": 1}, "ok"),
])
def test_an_origins_health_on_the_status_page(outcomes, health):
    samples = {("edge_origin_fetches_total", (("origin", "web"), ("outcome", outcome))): float(count)
               for outcome, count in {"found": 0, **outcomes}.items()}
    now = Snapshot(0.0, samples)
    page = _origins(now, now.total, 300)
    assert f"<td class={health} data-key='health:web'>{health}</td>" in page


async def test_a_failing_cache_is_on_the_status_page(node_factory, tmp_path):
    """The cache folder replaced by a file while the node runs: the page showed every tier empty and healthy, while
    /_edge/ready said `cache degraded` (operator probe)."""
    node = await node_factory(write_config(tmp_path, local_config()))
    for _ in range(100):  # the node may write in it meanwhile: a removal then finds a file it did not list
        shutil.rmtree(tmp_path / "cache", ignore_errors=True)
        if not (tmp_path / "cache").exists():
            break
    (tmp_path / "cache").write_text("not a folder")
    assert (await node.fetch("/tr:w-20/astronaut.jpg")).code == 200  # served, not stored
    page = (await node.fetch("/_edge/status")).body.decode()
    assert "<p class=failing>Cache errors in the last" in page
    assert re.search(r'data-key="cache_errors:output:[a-z]+" data-value="[1-9]', page), page


async def test_a_shared_tier_down_is_on_the_status_page(node_factory, tmp_path):
    """It showed nothing of it, while every miss waited on the tier (SRE probe)."""
    down = shared_cache_table(f"http://127.0.0.1:{free_ports(1)[0]}", "nowhere", timeout="2s")  # nothing listens there
    node = await node_factory(write_config(tmp_path, local_config(after=down)))
    assert (await node.fetch("/tr:w-20/astronaut.jpg")).code == 200  # served, the tier refused
    page = (await node.fetch("/_edge/status")).body.decode()
    assert re.search(r'data-key="shared_cache_failures:get:(refused|timeout)" data-value="[1-9]', page), page


async def test_recent_figures_span_the_window_and_the_history_kept_is_bounded(monkeypatch):
    """A node 1000 s old, a snapshot every 10 s, 1 request a second: "recent" is the last 300 s (the newest snapshot
    at least that old), and only the snapshots that may still be that one are kept (a mutation audit: comparing with
    the oldest kept, and keeping every snapshot, both survived)."""
    from edge import statuspage
    from edge.metrics import Metrics

    started, clock = 1000.0, [1000.0]

    def at(t: float) -> Snapshot:
        return Snapshot(t, {("edge_start_time_seconds", ()): started,
                            ("edge_http_requests_total", (("endpoint", "default"), ("status", "200"))): t - started})

    async def snapshot_at_clock(now=None):
        return at(clock[0] if now is None else now)

    history = statuspage.StatusHistory(Metrics())
    monkeypatch.setattr(history, "_snapshot", snapshot_at_clock)
    monkeypatch.setattr(statuspage.time, "time", lambda: clock[0])
    for second in range(1000, 2001, 10):
        clock[0] = float(second)
        await history.take()
    assert [s.at for s in history._snapshots] == [float(t) for t in range(1680, 2001, 10)]  # 320 s: HISTORY_SECONDS
    assert history.baseline(2000.0, started).at == 1700.0
    page = await history.page()
    assert 'data-key="requests_recent:default" data-value="300"' in page
    assert 'data-key="requests_total:default" data-value="1000"' in page and "last 5.0 min" in page


async def test_a_worker_replaced_since_the_window_began_compares_with_its_oldest_snapshot(monkeypatch):
    """A node older than the window whose worker keeps snapshots younger than it (the worker was replaced): "recent"
    is since that worker's oldest snapshot, not since the node's start, and says how long that is (a mutation
    audit: comparing with the node's start survived)."""
    from edge import statuspage
    from edge.metrics import Metrics

    started, clock = 1000.0, [5000.0]

    async def snapshot_at_clock(now=None):
        t = clock[0] if now is None else now
        return Snapshot(t, {("edge_start_time_seconds", ()): started,
                            ("edge_http_requests_total", (("endpoint", "default"), ("status", "200"))): t - started})

    history = statuspage.StatusHistory(Metrics())
    monkeypatch.setattr(history, "_snapshot", snapshot_at_clock)
    monkeypatch.setattr(statuspage.time, "time", lambda: clock[0])
    for second in (5000.0, 5010.0, 5020.0):
        clock[0] = second
        await history.take()
    assert history.baseline(5120.0, started).at == 5000.0
    assert history.baseline(1200.0, started) == Snapshot(started, {})  # a node younger than the window: its start
    clock[0] = 5120.0
    page = await history.page()
    assert 'data-key="requests_recent:default" data-value="120"' in page and "last 2.0 min" in page
    assert 'data-key="requests_total:default" data-value="4120"' in page


def test_a_count_lower_than_the_windows_start_is_none_recent_and_a_tier_over_budget_is_full():
    """Counts that went down since the baseline (a replaced worker's are gone) are 0 recent, never negative; a tier
    over its budget (until the next eviction) is 100 % used, its bar full, not wider than the table (a mutation
    audit: dropping either bound survived)."""
    from edge.statuspage import render

    def at(t: float, requests: int, size: int) -> Snapshot:
        return Snapshot(t, {("edge_http_requests_total", (("endpoint", "default"), ("status", "200"))): float(requests),
                            ("edge_cache_size_bytes", (("tier", "output"),)): float(size),
                            ("edge_cache_budget_bytes", (("tier", "output"),)): 1000.0})

    page = render(at(600.0, 40, 1500), at(300.0, 90, 900))
    assert 'data-key="requests_recent:default" data-value="0"' in page
    assert 'data-key="requests_total:default" data-value="40"' in page
    assert '<span style="width:100%"></span></span> 100 %</td>' in page


def test_purges_a_peer_took_are_no_cache_errors_and_those_it_missed_are():
    """A mutation audit: one listing every purge sent to a peer as a cache error, those that went well too, survived."""
    from edge.statuspage import _cache_errors

    def at(t: float, **outcomes: int) -> Snapshot:
        return Snapshot(t, {("edge_fleet_purge_calls_total", (("outcome", o), ("peer", "http://b:8080"))): float(n)
                            for o, n in {"ok": 0, "timeout": 0, **outcomes}.items()})

    before = at(0.0, ok=2)
    missed = [("fleet_purge_calls:http://b:8080:timeout", "1")]
    for now, shown in ((at(60.0, ok=7), []), (at(60.0, ok=7, timeout=1), missed)):
        page = _cache_errors(now, lambda name, **labels: now.total(name, **labels) - before.total(name, **labels), 60)
        assert re.findall(r'data-key="([^"]+)" data-value="([^"]+)"', page) == shown
        assert ("No cache errors in the last 1.0 min." in page) == (not shown)


def test_the_hit_ratio_counts_the_answers_of_every_tier_that_spares_the_origin():
    """Output hits, remembered 404s and the shared tier's hits, over the output tier's lookups, as the dashboard
    and `EdgeCacheHitRatioDrop` count them (a mutation audit: one leaving the shared tier's hits out survived)."""
    from edge.statuspage import _summary

    def at(t: float, output_hits: int, output_misses: int, not_found_hits: int, shared_hits: int) -> Snapshot:
        counts = {("output", "hit"): output_hits, ("output", "miss"): output_misses,
                  ("not_found", "hit"): not_found_hits, ("shared", "hit"): shared_hits, ("shared", "miss"): 7}
        return Snapshot(t, {("edge_cache_requests_total", (("result", result), ("tier", tier))): float(n)
                            for (tier, result), n in counts.items()})

    before, now = at(0.0, 1, 3, 0, 1), at(60.0, 4, 6, 1, 2)
    page = _summary(now, {}, 0.0, lambda name, **labels: now.total(name, **labels) - before.total(name, **labels))
    assert f'data-key="hit_ratio_total" data-value="{7 / 10:g}">70.0 %' in page
    assert f'data-key="hit_ratio_recent" data-value="{5 / 6:g}">83.3 %' in page


async def test_the_page_is_made_at_most_once_a_second(monkeypatch):
    """Each page reads every worker's values: a page asked within `RENDER_SECONDS` of the last is that one (a mutation
    audit: one making a page for every request survived)."""
    from edge import statuspage
    from edge.metrics import Metrics

    clock, taken = [1000.0], []

    async def snapshot_at(now=None):
        taken.append(now)
        return Snapshot(now, {("edge_start_time_seconds", ()): 1000.0, ("edge_workers", ()): float(len(taken))})

    history = statuspage.StatusHistory(Metrics())
    monkeypatch.setattr(history, "_snapshot", snapshot_at)
    monkeypatch.setattr(statuspage.time, "time", lambda: clock[0])
    pages = []
    for second in (1000.0, 1000.0, 1000.9, 1001.0, 1001.5, 1002.5):
        clock[0] = second
        pages.append(await history.page())
    assert taken == [1000.0, 1001.0, 1002.5]
    assert [pages.index(page) for page in pages] == [0, 0, 0, 3, 3, 5]
    assert 'data-key="workers" data-value="3"' in pages[5]
