"""A machine whose wall clock steps (a VM resumed after hours, NTP stepping it by hours either way):
real nodes whose clock libfaketime steps while they run (`CLOCK_MONOTONIC` left alone, as the kernel
does, but for a VM whose monotonic clock jumps too), and in-process nodes whose freshness clock is moved (docs/operations.md#when-the-clock-steps)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from pathlib import Path

import diskcache
import pyvips
import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.assets import centre_colour, colour, same_colour, solid
from tests.nodes import NodeProcess, decode, local_config, until, web_config, write_config
from tests.servers import HTTPOrigin
from tests.test_purge_races import BLUE, RED, blue, noisy, red

LIBFAKETIME = next((path for path in (Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"),
                                      Path("/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"),
                                      Path("/usr/lib/faketime/libfaketime.so.1"))
                    if path.exists()), None)
needs_faketime = pytest.mark.skipif(LIBFAKETIME is None, reason="libfaketime is not installed (apt: faketime)")
TOKEN = "clock-step-token-5e2a"
HOUR = 3600.0


class SteppedClock:
    """A node process's wall clock, stepped by writing libfaketime's offset file (read at every call:
    `FAKETIME_NO_CACHE`); its monotonic clock is the machine's."""

    def __init__(self, directory: Path):
        self.file = directory / "faketime"
        self.step(0)

    def step(self, seconds: float) -> None:
        self.file.write_text(f"{seconds:+.0f}\n")

    def env(self, monotonic_too: bool = False) -> dict[str, str]:
        return {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(self.file),
                "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "0" if monotonic_too else "1"}


@pytest.fixture
async def origin():
    server = await HTTPOrigin(files={"a.jpg": solid(80, 60, colour(1))}).start()
    yield server
    await server.stop()


@pytest.fixture
def clock(tmp_path):
    return SteppedClock(tmp_path)


@pytest.fixture
def stepped_node(origin, clock, tmp_path):
    config = web_config(origin.url, f'[cache]\ndir = "{tmp_path}/cache"\n[admin]\ntoken = "{TOKEN}"\n')
    node = NodeProcess(write_config(tmp_path, config), env=clock.env())
    yield node
    node.stop()


async def get(node: NodeProcess, path: str):
    return await AsyncHTTPClient().fetch(node.url + path, raise_error=False)


async def purge(node: NodeProcess, url: str) -> None:
    response = await AsyncHTTPClient().fetch(node.url + "/_edge/purge", method="POST", raise_error=False,
                                             headers={"Authorization": f"Bearer {TOKEN}"},
                                             body=json.dumps({"url": url}).encode())
    assert response.code == 200, response.body


@needs_faketime
def test_a_monotonic_clock_jumping_forward_kills_no_worker(clock, tmp_path):
    """A virtual machine resumed or migrated sees even `CLOCK_MONOTONIC` jump: every worker's last heartbeat
    then looks an hour old at once, and the first worker heard from after the jump woke the supervisor
    while the other's silence read 3600 s: killed, its requests lost. Live workers beat again within a
    second and are kept; one truly silent is still killed (tests/test_workers.py)."""
    node = NodeProcess(write_config(tmp_path, local_config(before='[server]\nworkers = 2\nworker_timeout = "2s"')),
                       env=clock.env(monotonic_too=True))
    try:
        workers = sorted(node.worker_pids())
        for hours in (1, 2, 3):  # forward only, as CLOCK_MONOTONIC goes
            clock.step(hours * HOUR)
            time.sleep(3)  # longer than worker_timeout: an absence of kills is what is checked
        assert sorted(node.worker_pids()) == workers
        assert not [line for line in node.log if "no sign of life" in line]
    finally:
        assert node.stop() == 0


@needs_faketime
async def test_the_stepped_clock_moves_the_wall_clock_only(clock):
    probe = ("import time; print(time.time() - time.monotonic())")
    env = clock.env()

    async def offset() -> float:
        process = await asyncio.create_subprocess_exec("python3", "-c", probe, env=env,
                                                       stdout=asyncio.subprocess.PIPE)
        output, _ = await asyncio.wait_for(process.communicate(), 10)
        return float(output)

    before = await offset()
    clock.step(-2 * HOUR)
    assert before - await offset() == pytest.approx(2 * HOUR, abs=60)


@needs_faketime
async def test_a_url_purged_before_the_clock_steps_back_is_cached_again_at_once(stepped_node, origin, clock,
                                                                             tmp_path):
    """The purge is recorded at the wall time before the step: work begun after the step must not look
    older than it (it was refused its single flight and never stored, for hours)."""
    assert (await get(stepped_node, "/tr:w-40/a.jpg")).code == 200
    await purge(stepped_node, "/a.jpg")
    origin.files["a.jpg"] = solid(80, 60, colour(2))
    clock.step(-2 * HOUR)

    herd = await asyncio.gather(*(get(stepped_node, "/tr:w-40/a.jpg") for _ in range(6)))
    assert [response.code for response in herd] == [200] * 6
    assert all(same_colour(centre_colour(decode(response)), colour(2)) for response in herd)
    assert origin.requests["a.jpg"] == 2  # one fetch for the herd: the single flight holds
    with diskcache.Cache(str(tmp_path / "cache" / "outputs")) as outputs:
        async def stored() -> bool:
            return len(outputs) == 1
        await until(stored, "the output stored", timeout=5)
    again = await get(stepped_node, "/tr:w-40/a.jpg")
    assert (again.code, again.headers["X-Cache"]) == (200, "HIT")
    assert origin.requests["a.jpg"] == 2


@needs_faketime
async def test_a_purge_made_before_the_clock_steps_forward_still_holds_back_the_fetch_it_raced(stepped_node, origin,
                                                                                             clock):
    """diskcache expired the purge records by the wall clock: after a step forward past their 15 minutes, the
    next purge's write deleted the record of one made seconds before, and a request after that purge was
    given the old image of the origin fetch begun before it (and so was every request, for `original_ttl`)."""
    origin.files["a.jpg"] = noisy(RED)
    stall = origin.behaviour.stall = asyncio.Event()
    before = asyncio.ensure_future(get(stepped_node, "/tr:w-40/a.jpg"))

    async def fetches(count: int) -> bool:
        return origin.requests["a.jpg"] == count
    await until(lambda: fetches(1), "the origin fetch under way", timeout=10)  # the old bytes on their way
    origin.files["a.jpg"] = noisy(BLUE)
    await purge(stepped_node, "/a.jpg")
    clock.step(2 * HOUR)
    await purge(stepped_node, "/b.jpg")  # any later purge's write
    after = asyncio.ensure_future(get(stepped_node, "/tr:w-40/a.jpg"))
    try:
        await until(lambda: fetches(2), "a fetch of its own for the request after the purge", timeout=5)
    finally:
        stall.set()
    assert red(await before)  # asked before the purge: what the origin was sending then
    assert blue(await after)


@pytest.fixture
async def node(origin, node_factory, tmp_path):
    return await node_factory(write_config(tmp_path, web_config(origin.url, """
[cache]
dir = "cache"
original_ttl = "1h"
not_found_ttl = "60s"
""")))


def stepped(running, seconds: float) -> None:
    """Step the in-process node's freshness clock by `seconds` (back when negative)."""
    running.node.clock = lambda: time.time() + seconds


async def test_outputs_confirmed_before_the_clock_stepped_back_are_revalidated_once(node, origin):
    """Fresh for `original_ttl` whatever the clock says: not for the hours of the step more."""
    first = await node.fetch("/tr:w-40/a.jpg")
    stepped(node, -60)  # within the skew a fleet's clocks may have: still fresh
    assert (await node.fetch("/tr:w-40/a.jpg")).headers["X-Cache"] == "HIT"
    assert origin.requests["a.jpg"] == 1

    stepped(node, -2 * HOUR)
    revalidated = await node.fetch("/tr:w-40/a.jpg")
    assert (revalidated.code, revalidated.headers["X-Cache"], revalidated.body) == (200, "MISS", first.body)
    assert origin.requests["a.jpg"] == 2  # one conditional request: a 304, the output kept
    assert (await node.fetch("/tr:w-40/a.jpg")).headers["X-Cache"] == "HIT"  # confirmed at the new time
    assert origin.requests["a.jpg"] == 2


async def test_a_404_remembered_before_the_clock_stepped_back_is_not_remembered_for_hours(node, origin):
    assert (await node.fetch("/tr:w-40/new.jpg")).code == 404
    origin.files["new.jpg"] = solid(80, 60, colour(2))
    stepped(node, -2 * HOUR)
    found = await node.fetch("/tr:w-40/new.jpg")
    assert found.code == 200 and same_colour(centre_colour(decode(found)), colour(2))
    assert origin.requests["new.jpg"] == 2


@needs_faketime
async def test_a_forward_step_past_original_ttl_revalidates_once_per_original(stepped_node, origin, clock):
    """Every output goes stale at once: the herd of all their URLs asks the origin once per original (a
    304 keeps every output), not once per URL."""
    origin.files["b.jpg"] = solid(80, 60, colour(3))
    urls = [f"/tr:w-{width}/{name}" for name in ("a.jpg", "b.jpg") for width in (20, 30, 40, 50)]
    first = {url: (await get(stepped_node, url)).body for url in urls}
    assert origin.requests["a.jpg"] == origin.requests["b.jpg"] == 1
    clock.step(2 * 24 * HOUR)

    asked = [url for url in urls for _ in range(3)]
    herd = await asyncio.gather(*(get(stepped_node, url) for url in asked))
    assert [(response.code, response.body) for response in herd] == [(200, first[url]) for url in asked]
    assert origin.requests["a.jpg"] == origin.requests["b.jpg"] == 2


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of the processes `pids`, from /proc (in clock ticks of 1/100 s)."""
    return sum(sum(map(int, Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13]))
               for pid in pids) / os.sysconf("SC_CLK_TCK")


@needs_faketime
async def test_a_render_under_way_when_the_monotonic_clock_jumps_is_not_stopped(clock, tmp_path):
    """A jump past `render_timeout` stopped the render running then: its request was answered 503 and the
    URL was, by that worker, for `TIMED_OUT_SECONDS` (10 minutes) without rendering again."""
    noise = pyvips.Image.gaussnoise(6000, 4000, sigma=40, mean=128)
    big = noise.bandjoin([noise, noise]).cast("uchar").copy(interpretation="srgb").jpegsave_buffer(Q=90)
    origin = await HTTPOrigin(files={"big.jpg": big}).start()
    config = web_config(origin.url, '[server]\nworkers = 2\n[cache]\ndir = "cache"\n')
    node = NodeProcess(write_config(tmp_path, config), env=clock.env(monotonic_too=True))
    try:
        workers = node.worker_pids()
        rendering = asyncio.ensure_future(get(node, "/tr:w-5900,bl-100/big.jpg"))

        async def fetched() -> bool:
            return origin.requests["big.jpg"] == 1
        await until(fetched, "the original asked for", timeout=10)
        before = cpu_seconds(workers)

        async def under_way() -> bool:  # the render, seconds of CPU on this machine, has begun
            return cpu_seconds(workers) - before >= 0.4 or rendering.done()
        await until(under_way, "the render under way", timeout=10)
        clock.step(25)  # past `render_timeout` (20 s), within the answer's bound (the origin's 10 s more)
        response = await rendering
        assert response.code == 200, response.body
        assert decode(response).width == 5900
        again = await get(node, "/tr:w-5900,bl-100/big.jpg")
        assert (again.code, again.body) == (200, response.body)
        assert origin.requests["big.jpg"] == 1
    finally:
        assert node.stop() == 0
        await origin.stop()


@needs_faketime
async def test_a_reload_whose_new_workers_start_across_a_monotonic_jump_is_not_abandoned(clock, tmp_path):
    """The reload's deadline (60 s for the new workers to serve) was on the monotonic clock: a jump while they
    started abandoned the reload (the new workers killed, the old config kept)."""
    node = NodeProcess(write_config(tmp_path, local_config(before='[server]\nworkers = 2')),
                       env=clock.env(monotonic_too=True))
    try:
        old = set(node.worker_pids())
        node.process.send_signal(signal.SIGHUP)
        new: set[int] = set()
        deadline = time.monotonic() + 10
        while len(new) < 2 and time.monotonic() < deadline:  # held before they serve: the jump comes first
            for pid in set(node.worker_pids()) - old - new:
                os.kill(pid, signal.SIGSTOP)
                new.add(pid)
        assert len(new) == 2
        clock.step(HOUR)
        time.sleep(2)  # longer than a turn of the supervisor's loop: an absence of abandon is what is checked
        for pid in new:
            with contextlib.suppress(ProcessLookupError):  # killed, when the reload was abandoned
                os.kill(pid, signal.SIGCONT)
        node.wait_for_log("config reloaded", timeout=10)
        assert not [line for line in node.log if "not reloaded" in line]

        async def only_the_new_ones() -> bool:
            return set(node.worker_pids()) == new
        await until(only_the_new_ones, "the old workers gone", timeout=10)
    finally:
        assert node.stop() == 0


@needs_faketime
async def test_a_request_drained_across_a_monotonic_jump_is_answered(clock, tmp_path):
    """The kill of an old worker left draining after a reload was on the supervisor's monotonic clock: a jump
    killed it at once, its request in progress cut without an answer. It ends now as its own clock says:
    503 (`shutdown_grace` over) or 504 (the wait for its image over)."""
    origin = await HTTPOrigin(files={"a.jpg": noisy(RED)}).start()
    config = web_config(origin.url, '[server]\nworkers = 2\n[cache]\ndir = "cache"\n')
    node = NodeProcess(write_config(tmp_path, config), env=clock.env(monotonic_too=True))
    stall = origin.behaviour.stall = asyncio.Event()
    try:
        request = asyncio.ensure_future(get(node, "/tr:w-40/a.jpg"))

        async def fetched() -> bool:
            return origin.requests["a.jpg"] == 1
        await until(fetched, "the original asked for", timeout=10)
        node.process.send_signal(signal.SIGHUP)
        node.wait_for_log("config reloaded", timeout=10)
        clock.step(HOUR)
        response = await asyncio.wait_for(request, 15)
        assert response.code in (503, 504), (response.code, response.error)
        # its fetch ended an hour past its timeout (by the timeout or by the 503's cancellation, whichever the
        # worker ran first): not blamed on a blocking plugin alone
        node.wait_for_log("a fetch ended", timeout=10)
        late = [line for line in node.log if "a fetch ended" in line]
        assert all("the machine's clock jumped forward" in line for line in late)
        stall.set()
        again = await get(node, "/tr:w-40/a.jpg")
        assert again.code == 200 and red(again)
    finally:
        stall.set()
        assert node.stop() == 0
        await origin.stop()


@needs_faketime
def test_a_kept_alive_connection_outlives_a_monotonic_jump(clock, tmp_path):
    """The sweep that found the jump closed nothing, but the next one, a second later, found every connection
    waiting for its next request since an hour: all closed as past `idle_timeout` (60 s)."""
    node = NodeProcess(write_config(tmp_path, local_config(before='[server]\nworkers = 2')),
                       env=clock.env(monotonic_too=True))
    try:
        host, port = node.url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as kept:
            request = b"GET /_edge/health HTTP/1.1\r\nHost: x\r\n\r\n"
            kept.sendall(request)
            assert kept.recv(4096).startswith(b"HTTP/1.1 200 ")
            clock.step(HOUR)
            time.sleep(3)  # two sweeps and more: that the connection is still open is what is checked
            kept.sendall(request)
            assert kept.recv(4096).startswith(b"HTTP/1.1 200 ")
    finally:
        assert node.stop() == 0


@needs_faketime
async def test_a_request_across_a_step_back_takes_no_negative_time(stepped_node, origin, clock):
    """Durations were Tornado's `request_time()`, by the wall clock: a request across a step back of 2 h took
    -7199 s, in the access log and in the duration histogram, whose sum then went down."""
    origin.files["a.jpg"] = noisy(RED)
    stall = origin.behaviour.stall = asyncio.Event()
    request = asyncio.ensure_future(get(stepped_node, "/tr:w-40/a.jpg"))

    async def fetched() -> bool:
        return origin.requests["a.jpg"] == 1
    try:
        await until(fetched, "the original asked for", timeout=10)
        clock.step(-2 * HOUR)
    finally:
        stall.set()
    assert (await request).code == 200
    metrics = (await get(stepped_node, "/metrics")).body.decode()
    sums = [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
            if line.startswith('edge_http_request_duration_seconds_sum{cache="miss"')]
    assert len(sums) == 1 and 0 < sums[0] < 30
