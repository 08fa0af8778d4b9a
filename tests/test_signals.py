"""Signals to `edge serve`: SIGHUP reloads the config without failing a request, a bad config is
kept out, SIGTERM refuses new connections at once and lets a slow request finish, and a supervisor
that gives up says so."""

import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import pyvips
from tornado.httpclient import AsyncHTTPClient

from tests.nodes import (MARKED_ORIGINS, SAMPLES, NodeProcess, decode, install_plugin, local_config, polled, refused,
                         until, until_stored, web_config, write_config)
from tests.scrape import scrape, total
from tests.servers import HTTPOrigin

SAMPLES_PNG = "/tr:w-64/coffee.jpg"
BEFORE = "[server]\nworkers = 2\n"
AFTER = BEFORE + '[named_transformations]\nthumb = "w-30"\n'
LOAD_REQUESTS = 400  # bound of the load loop
SCRAPES = 600  # bound of a scraping loop


async def load(url: str, stop: asyncio.Event, statuses: list[int]) -> None:
    """Requests one after another until `stop` is set (at most LOAD_REQUESTS): half hits, half new
    outputs (misses), each on a new connection so both generations of workers get some."""
    client = AsyncHTTPClient(force_instance=True)
    for n in range(LOAD_REQUESTS):
        if stop.is_set():
            break
        path = SAMPLES_PNG if n % 2 else f"/tr:w-{20 + n % 97}/coffee.jpg"
        response = await client.fetch(url + path, headers={"Connection": "close"}, raise_error=False,
                                      request_timeout=30)
        statuses.append(response.code)
    client.close()


async def test_sighup_under_load_serves_the_new_config_and_fails_no_request(tmp_path):
    config = write_config(tmp_path, local_config(before=BEFORE))
    node = NodeProcess(config)
    try:
        client = AsyncHTTPClient()
        assert (await client.fetch(node.url + "/tr:n-thumb/coffee.jpg", raise_error=False)).code == 400
        old_workers = set(node.worker_pids())
        stop, statuses = asyncio.Event(), []
        clients = [asyncio.create_task(load(node.url, stop, statuses)) for _ in range(4)]
        await until(answered(statuses, 20), "the load running")
        write_config(tmp_path, local_config(before=AFTER))
        mark = len(node.log)
        node.process.send_signal(signal.SIGHUP)
        await asyncio.to_thread(node.wait_for_log, "config reloaded", 60, mark)
        await until(answered(statuses, len(statuses) + 20), "more answers after the reload")
        stop.set()
        await asyncio.gather(*clients)
        assert set(statuses) == {200}, sorted(set(statuses))
        # every worker now serves the new config
        for _ in range(8):
            named = await client.fetch(node.url + "/tr:n-thumb/coffee.jpg", headers={"Connection": "close"})
            assert decode(named).width == 30
        await asyncio.to_thread(gone, node, old_workers)
    finally:
        assert node.stop() == 0


def answered(statuses, count: int):
    async def condition() -> bool:
        return len(statuses) >= count
    return condition


def gone(node: NodeProcess, pids: set[int], timeout: float = 30) -> None:
    """Until none of `pids` is a worker of `node` any more; fail after `timeout` seconds."""
    polled(lambda: not pids & set(node.worker_pids()), f"workers {sorted(pids)} to end", timeout)


@pytest.mark.parametrize("appended, reason", [
    (b"\n[server]\nport = 'not a number'\n", "not valid TOML"),
    (b"\n# caf\xe9 (Latin-1)\n", "not UTF-8 text"),  # had ended the node: a UnicodeDecodeError
])
async def test_sighup_with_a_bad_config_keeps_the_running_one(tmp_path, appended, reason):
    config = write_config(tmp_path, local_config(before=AFTER.replace("workers = 2", "workers = 1")))
    node = NodeProcess(config)
    try:
        workers = node.worker_pids()
        config.write_bytes(config.read_bytes() + appended)
        mark = len(node.log)
        node.process.send_signal(signal.SIGHUP)
        line = await asyncio.to_thread(node.wait_for_log, "config not reloaded", 30, mark)
        assert "the running one is kept" in line.string and reason in line.string, line.string
        assert node.worker_pids() == workers  # never replaced
        named = await AsyncHTTPClient().fetch(node.url + "/tr:n-thumb/coffee.jpg")
        assert decode(named).width == 30
    finally:
        assert node.stop() == 0


async def test_sighup_to_a_cache_folder_serve_could_not_use_keeps_the_running_config(tmp_path):
    """The checks `edge serve` makes of `[cache] dir` before it starts hold for a reload too: a folder it
    cannot create or write in had been taken, and the new workers served everything uncached."""
    (tmp_path / "a-file").write_text("not a folder")
    config = write_config(tmp_path, local_config(before="[server]\nworkers = 1\n[cache]\ndir = \"cache\"\n"))
    node = NodeProcess(config)
    try:
        workers = node.worker_pids()
        config.write_text(local_config(before="[server]\nworkers = 1\n[cache]\ndir = \"a-file/cache\"\n"))
        mark = len(node.log)
        node.process.send_signal(signal.SIGHUP)
        line = await asyncio.to_thread(node.wait_for_log, "config not reloaded", 30, mark)
        assert line.string.rstrip().endswith(
            f"the running one is kept: {config}: [cache] dir: cache folder {tmp_path / 'a-file' / 'cache'}: "
            f"{tmp_path / 'a-file'} is not a folder"), line.string
        assert node.worker_pids() == workers
        client = AsyncHTTPClient()
        await client.fetch(node.url + "/tr:w-31/coffee.jpg")
        await until_stored(tmp_path / "cache", 1)  # stored after the answer: a request before that joins the work
        assert (await client.fetch(node.url + "/tr:w-31/coffee.jpg")).headers["X-Cache"] == "HIT"
    finally:
        assert node.stop() == 0


async def test_sighup_says_which_changes_need_a_restart_and_applies_the_rest(tmp_path):
    config = write_config(tmp_path, local_config(before="[server]\nworkers = 1\n"))
    node = NodeProcess(config)
    try:
        old_workers = set(node.worker_pids())
        write_config(tmp_path, local_config(before=AFTER))  # 2 workers (needs a restart) and a named transformation
        mark = len(node.log)
        node.process.send_signal(signal.SIGHUP)
        warned = await asyncio.to_thread(node.wait_for_log, "needs a restart", 30, mark)
        assert "[server] workers changed in the file but needs a restart; keeping workers = 1" in warned.string
        await asyncio.to_thread(node.wait_for_log, "config reloaded", 60, mark)
        await asyncio.to_thread(gone, node, old_workers)
        assert len(node.worker_pids()) == 1
        named = await AsyncHTTPClient().fetch(node.url + "/tr:n-thumb/coffee.jpg")
        assert decode(named).width == 30
    finally:
        assert node.stop() == 0


async def test_sighup_applies_log_level_and_log_format_to_the_supervisor_and_the_new_workers(tmp_path):
    """`log_format` and `log_level` are reloaded like every key but the four that need a restart: the
    supervisor's own lines and the new workers' are written the new way from the reload on."""
    config = write_config(tmp_path, local_config(before="[server]\nworkers = 2\n"))
    node = NodeProcess(config)
    try:
        write_config(tmp_path, local_config(before='[server]\nworkers = 2\nlog_format = "json"\n'))
        mark = len(node.log)
        node.process.send_signal(signal.SIGHUP)
        reloaded = await asyncio.to_thread(node.wait_for_log, "config reloaded", 60, mark)
        assert json.loads(reloaded.string)["logger"] == "edge"  # the supervisor's line
        workers = set(node.worker_pids())
        write_config(tmp_path, local_config(
            before='[server]\nworkers = 2\nlog_format = "json"\nlog_level = "warning"\n'))
        mark = len(node.log)
        node.process.send_signal(signal.SIGHUP)
        # the workers the first reload started say they drain as they are replaced: at info, in JSON (the
        # first workers' plain line may come late, after `mark`)
        drained = await asyncio.to_thread(node.wait_for_log, '"message": "draining', 30, mark)
        assert json.loads(drained.string)["logger"] == "edge.server"
        await asyncio.to_thread(gone, node, workers)
        # the supervisor is at warning now: its info lines about this reload are left out
        assert not any("new worker(s)" in line or "config reloaded" in line for line in node.log[mark:]), node.log
    finally:
        assert node.stop() == 0


async def held_request(tmp_path, before: str = "") -> tuple[HTTPOrigin, NodeProcess, asyncio.Future]:
    """A node whose web origin holds its answer (until `origin.behaviour.hold` is set), and a request
    for an image of it, once it has reached the origin."""
    origin = await HTTPOrigin(files={"slow.jpg": (SAMPLES / "coffee.jpg").read_bytes()}).start()
    origin.behaviour.hold = asyncio.Event()
    try:
        node = NodeProcess(write_config(tmp_path, web_config(origin.url, before=before)))
    except BaseException:
        await origin.stop()
        raise
    request = asyncio.ensure_future(AsyncHTTPClient().fetch(node.url + "/tr:w-50/slow.jpg", raise_error=False,
                                                          request_timeout=30))

    async def reached_the_origin() -> bool:
        return origin.requests["slow.jpg"] > 0

    try:
        await until(reached_the_origin, "the request reaching the origin")
    except BaseException:
        node.stop()
        await origin.stop()
        raise
    return origin, node, request


async def test_a_request_still_in_progress_when_the_grace_ends_is_answered_503_not_cut(tmp_path):
    origin, node, request = await held_request(tmp_path, '[server]\nshutdown_grace = "1s"\n')
    try:  # the origin holds its answer until the test ends
        node.process.send_signal(signal.SIGTERM)
        response = await request
        assert response.code == 503 and response.headers["Retry-After"] == "1"
        assert response.headers["X-Edge-Error"] == "shutting_down" and response.body == b"node shutting down, retry\n"
        assert response.headers["Cache-Control"] == "no-store"
        assert await asyncio.to_thread(node.process.wait, 30) == 0
        assert any("1 answered 503" in line for line in node.log)
        # its drain ended at the grace: the supervisor's kill waits `KILL_MARGIN_SECONDS` more for its exit
        assert not any("had not exited" in line for line in node.log), node.log
    finally:
        origin.behaviour.hold.set()
        node.stop()
        await origin.stop()


async def test_sigterm_refuses_new_connections_at_once_lets_a_slow_request_finish_and_exits_0(tmp_path):
    """A full stop closes every listening socket, the metrics port's too, as its drain begins: a client or a
    balancer is refused at once (and goes elsewhere) instead of waiting in the backlog for the grace."""
    origin, node, request = await held_request(tmp_path, "[server]\nworkers = 2\nmetrics_port = 0\n")
    try:
        metrics_url = node.wait_for_log(r"metrics on (http://\S+)/metrics").group(1)
        node.process.send_signal(signal.SIGTERM)
        await until(lambda: refused(node.url, metrics_url), "both ports refusing connections", timeout=1)
        await asyncio.to_thread(node.wait_for_log, r"draining: 1 request\(s\) in progress", 10)
        assert not request.done()
        origin.behaviour.hold.set()
        response = await request
        assert response.code == 200 and decode(response).width == 50
        assert await asyncio.to_thread(node.process.wait, 30) == 0
    finally:
        node.stop()
        await origin.stop()


async def test_scrapes_on_the_metrics_port_under_way_at_a_reload_are_answered(tmp_path):
    """A scrape waiting for the worker's next text (`EXPOSITION_SECONDS`) as its worker ends is answered: it
    had been cancelled with the worker, a 500 on one scrape at every reload (an `up` flap, nothing logged)."""
    node = NodeProcess(write_config(tmp_path, local_config(before="[server]\nworkers = 2\nmetrics_port = 0\n")))
    client = AsyncHTTPClient(force_instance=True)
    stop, statuses = asyncio.Event(), []

    async def scraping() -> None:  # back to back, three at a time: all but one wait for a text
        for _ in range(SCRAPES):
            if stop.is_set():
                break
            response = await client.fetch(metrics_url, headers={"Connection": "close"}, raise_error=False,
                                          request_timeout=10)
            statuses.append(response.code)

    try:
        metrics_url = node.wait_for_log(r"metrics on (http://\S+/metrics)").group(1)
        scrapers = [asyncio.create_task(scraping()) for _ in range(3)]
        for _ in range(3):
            old_workers = set(node.worker_pids())
            mark = len(node.log)
            node.process.send_signal(signal.SIGHUP)
            await asyncio.to_thread(node.wait_for_log, "config reloaded", 60, mark)
            await asyncio.to_thread(gone, node, old_workers)
        stop.set()
        await asyncio.gather(*scrapers)
        assert len(statuses) > 10 and set(statuses) == {200}, sorted(set(statuses))
    finally:
        client.close()
        assert node.stop() == 0


def test_a_supervisor_whose_workers_keep_crashing_as_they_start_gives_up_after_backing_off(tmp_path):
    """Workers that die as they start, each time, none serving, are started again after 0.5, 1, 2 and 4 s, then the node
    stops with 1; each crash's stacks are logged (faulthandler), and the line names the signal (soak probe: 10
    restarts in 0.4 s, and "exited with status -11" alone)."""
    site = tmp_path / "site"
    install_plugin(site, "marked", MARKED_ORIGINS)
    (tmp_path / "crash").touch()
    crashing = f'[[origins]]\nname = "crashing"\ntype = "crashing"\nmarker = "{tmp_path / "crash"}"\n'
    config = write_config(tmp_path, local_config(before="[server]\nworkers = 1", after=crashing))
    node = subprocess.run([sys.executable, "-m", "edge", "serve", "--port", "0", "--config", str(config)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(site), os.environ.get(
                              "PYTHONPATH"))))})
    log = node.stderr.splitlines()
    assert node.returncode == 1, node.stderr
    exits = [line for line in log if "exited with status" in line or "keep dying" in line]
    assert [re.search(r"; (restarted|restarting in [\d.]+s)|keep dying", line)[0] for line in exits] == [
        "; restarted", "; restarting in 0.5s", "; restarting in 1s", "; restarting in 2s", "; restarting in 4s",
        "keep dying"]
    assert "status -11; restarted (SIGSEGV: a crash in native code" in exits[0]
    assert "each of the 1 worker(s) died 6 times in a row before serving; stopping the node" in exits[-1]
    assert sum("Fatal Python error: Segmentation fault" in line for line in log) == 6
    assert any('File "' + str(site / "edge_marked_origin" / "__init__.py") in line for line in log)


async def test_sigusr1_and_sigusr2_are_logged_and_ignored_by_the_supervisor_and_its_workers(tmp_path):
    """Their default action ends a process: `kill -USR1`, meant for another server or sent by a log
    rotator written for one, had stopped the node (the supervisor) or a worker (replaced, its requests
    failed)."""
    node = NodeProcess(write_config(tmp_path, local_config(before="[server]\nworkers = 1\n")))
    try:
        workers = node.worker_pids()
        for pid in (node.process.pid, *workers):
            for signum in (signal.SIGUSR1, signal.SIGUSR2):
                mark = len(node.log)
                os.kill(pid, signum)
                await asyncio.to_thread(node.wait_for_log, f"ignored signal {signum.name} \\(pid {pid}\\)", 30, mark)
        assert node.process.poll() is None and node.worker_pids() == workers
        assert decode(await AsyncHTTPClient().fetch(node.url + "/tr:w-30/coffee.jpg")).width == 30
    finally:
        assert node.stop() == 0


@pytest.mark.parametrize("hit", [False, True])
async def test_a_next_request_already_sent_when_the_drain_begins_is_answered_then_the_connection_closed(
        node_factory, tmp_path, hit):
    """A reload drains the old workers, closing their kept-alive connections that wait for a next request.
    One whose next request had already arrived was closed unread: its client got a reset for a request it had
    sent, which the node then answered into the closed connection, logged and counted as a 200."""
    running = await node_factory(write_config(tmp_path, local_config()))
    path = "/tr:w-40/coffee.jpg"
    if hit:
        await running.client.fetch(running.url + path)  # the next answer from the hit shortcut
    client = socket.create_connection(("127.0.0.1", int(running.url.rpartition(":")[2])), timeout=10)
    try:
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        client.sendall(request)
        first = await asyncio.to_thread(read_response, client)
        assert first.status == 200 and first.getheader("Connection") is None and first.read()

        async def waiting_for_the_next() -> bool:  # else it may read the next request as soon as it is sent
            return any(state.between_requests for state in running.server._states.values())
        await until(waiting_for_the_next, "the connection waiting for its next request")
        client.sendall(request)  # in the server's socket now, unread: the drain's first step runs before a poll
        draining = asyncio.ensure_future(running.server.drain(5, running.node.give_up_serving))
        second = await asyncio.to_thread(read_response, client)
        assert (second.status, second.getheader("Connection")) == (200, "close")
        assert pyvips.Image.new_from_buffer(second.read(), "").width == 40
        assert await asyncio.to_thread(client.recv, 1) == b""  # then closed
        await draining
    finally:
        client.close()


def read_response(connection: socket.socket) -> http.client.HTTPResponse:
    response = http.client.HTTPResponse(connection)
    response.begin()
    return response


@pytest.mark.parametrize("request_line, connection", [
    (b"GET /tr:w-50/slow.jpg HTTP/1.1\r\nHost: x\r\n", "close"),
    # HTTP/1.0 closes unless told otherwise: no `Keep-Alive` (Tornado wrote it for a client asking, closing or not)
    (b"GET /tr:w-50/slow.jpg HTTP/1.0\r\nConnection: keep-alive\r\n", None)])
async def test_an_answer_in_progress_when_the_drain_begins_says_connection_close(node_factory, tmp_path, request_line,
                                                                                 connection):
    """Its client would send a next request on the kept-alive connection, which the drain closes after it."""
    origin = await HTTPOrigin(files={"slow.jpg": (SAMPLES / "coffee.jpg").read_bytes()}).start()
    origin.behaviour.hold = asyncio.Event()
    running = await node_factory(write_config(tmp_path, web_config(origin.url)))
    client = socket.create_connection(("127.0.0.1", int(running.url.rpartition(":")[2])), timeout=10)
    try:
        client.sendall(request_line + b"\r\n")

        async def reached_the_origin() -> bool:
            return origin.requests["slow.jpg"] > 0
        await until(reached_the_origin, "the request reaching the origin")
        draining = asyncio.ensure_future(running.server.drain(5, running.node.give_up_serving))
        await asyncio.sleep(0)  # the drain's first step: the connection is marked
        origin.behaviour.hold.set()
        answer = await asyncio.to_thread(read_response, client)
        assert (answer.status, answer.getheader("Connection")) == (200, connection)
        assert pyvips.Image.new_from_buffer(answer.read(), "").width == 50
        assert await asyncio.to_thread(client.recv, 1) == b""
        await draining
    finally:
        client.close()
        await origin.stop()


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_refused_reload_shows_in_the_metrics_and_the_status_page_until_one_takes_effect(tmp_path, workers):
    """A SIGHUP's config refused had been said by the log alone: a fleet's config management saw every node
    green, each serving its old config."""
    config = write_config(tmp_path, local_config(before=f"[server]\nworkers = {workers}\n"))
    text = config.read_text()  # with its [cache] dir, kept by the reloads
    node = NodeProcess(config)
    client = AsyncHTTPClient(force_instance=True)

    async def reload_state() -> tuple[float, float]:
        scraped = await scrape(node.url)
        return (total(scraped, "edge_config_last_reload_successful"),
                total(scraped, "edge_config_last_reload_success_timestamp_seconds"))

    async def status_page_says(wanted: str) -> bool:
        return wanted in (await client.fetch(node.url + "/_edge/status")).body.decode()

    try:
        successful, loaded_at = await reload_state()
        assert successful == 1 and 0 < time.time() - loaded_at < 60
        await until(lambda: status_page_says("Config loaded"), "the status page")
        assert not await status_page_says("refused")
        config.write_text(text + "\n[server]\nworkers = 'many'\n")
        mark = len(node.log)
        node.process.send_signal(signal.SIGHUP)
        await asyncio.to_thread(node.wait_for_log, "config not reloaded", 30, mark)
        for _ in range(4):  # whichever worker answers
            assert await reload_state() == (0, loaded_at)
        await until(lambda: status_page_says("the last reload was refused: the node"),
                    "the status page saying so")
        config.write_text(text)
        mark = len(node.log)
        node.process.send_signal(signal.SIGHUP)
        await asyncio.to_thread(node.wait_for_log, "config reloaded", 60, mark)
        for _ in range(4):
            successful, reloaded_at = await reload_state()
            assert successful == 1 and loaded_at < reloaded_at <= time.time()
        await until(lambda: status_page_says("ago</td>"), "the status page")  # its row without the refusal
    finally:
        client.close()
        assert node.stop() == 0


def solid_jpeg(rgb: list[int]) -> bytes:
    """A picture of one colour: what an origin's files are made of, each origin's of its own colour."""
    return pyvips.Image.black(200, 150).new_from_image(rgb).copy(interpretation="srgb").jpegsave_buffer()


def centre(response) -> list[int]:
    """The colour at the centre of an image answer (a JPEG's colours drift by a few levels)."""
    image = decode(response)
    return [round(level / 50) * 50 for level in image.getpoint(image.width // 2, image.height // 2)[:3]]


GREEN, RED, BLUE = [0, 200, 0], [200, 0, 0], [0, 0, 200]


def img_endpoint(origin: str) -> str:
    """Config text: endpoint `img` on the origin table `origin`, one worker, a cache folder in the test's own."""
    return f'[server]\nworkers = 1\n[cache]\ndir = "cache"\n[[origins]]\nname = "o"\n{origin}\n' \
           '[[endpoints]]\nid = "img"\norigins = ["o"]\n'


async def test_an_endpoint_pointed_at_other_origins_is_purged_by_a_reload_and_by_a_restart(tmp_path):
    """An endpoint moved from a web origin to a local folder by a SIGHUP had served a size never asked before
    from the web origin's original, still fresh in the originals tier for `original_ttl` (a day), and a restart on
    a changed config as well (reload probe). The node purges a moved endpoint itself: on a reload once the old
    workers have exited, at a start when the origins differ from those it last served."""
    green = await HTTPOrigin(files={"p1.jpg": solid_jpeg(GREEN)}).start()
    blue = await HTTPOrigin(files={"p1.jpg": solid_jpeg(BLUE)}).start()
    (tmp_path / "red").mkdir()
    (tmp_path / "red" / "p1.jpg").write_bytes(solid_jpeg(RED))
    cache = tmp_path / "cache"
    client = AsyncHTTPClient(force_instance=True)

    async def served(node: NodeProcess, size: int) -> list[int]:
        response = await client.fetch(f"{node.url}/img/tr:w-{size}/p1.jpg")
        assert response.headers["X-Cache"] == "MISS"
        return centre(response)

    config = write_config(tmp_path, img_endpoint(f'type = "web"\nbase_url = "{green.url}"'))
    node = NodeProcess(config)
    try:
        assert await served(node, 100) == GREEN
        await until_stored(cache, 1, "originals")  # what a size asked next would be made from
        await until_stored(cache, 1)
        old_workers = set(node.worker_pids())
        write_config(tmp_path, img_endpoint(f'type = "local"\nroot = "{tmp_path / "red"}"'))
        mark = len(node.log)
        node.process.send_signal(signal.SIGHUP)
        line = await asyncio.to_thread(node.wait_for_log, "SIGHUP: the origins of", 60, mark)
        assert line.string.rstrip().endswith(
            "SIGHUP: the origins of endpoint(s) 'img' changed: purged their 1 cached output(s), 1 original(s) and "
            "0 404(s), made from the old origins' files"), line.string
        assert not old_workers & set(node.worker_pids())  # purged once they had exited
        assert await served(node, 333) == RED and await served(node, 100) == RED
        await until_stored(cache, 1, "originals")  # the local file's version
        await until_stored(cache, 2)
    finally:
        assert node.stop() == 0
    write_config(tmp_path, img_endpoint(f'type = "web"\nbase_url = "{blue.url}"'))
    node = NodeProcess(config)
    try:
        line = await asyncio.to_thread(node.wait_for_log, "the origins of", 60)
        assert line.string.rstrip().endswith(
            "since the node last ran, the origins of endpoint(s) 'img' changed: purged their 2 cached output(s), "
            "1 original(s) and 0 404(s), made from the old origins' files"), line.string
        assert await served(node, 444) == BLUE and await served(node, 100) == BLUE
        assert blue.requests["p1.jpg"] == 1 and green.requests["p1.jpg"] == 1
    finally:
        client.close()
        assert node.stop() == 0
        await green.stop()
        await blue.stop()


async def test_a_start_on_other_origins_purges_the_endpoint_in_the_shared_tier_too(tmp_path, s3):
    """As `edge purge --prefix` does: the fleet's shared tier had served the old origin's output back (`SHARED`)."""
    from tests.s3server import shared_cache_table
    s3.client().create_bucket(Bucket="moved")
    green = await HTTPOrigin(files={"p1.jpg": solid_jpeg(GREEN)}).start()
    (tmp_path / "red").mkdir()
    (tmp_path / "red" / "p1.jpg").write_bytes(solid_jpeg(RED))
    shared = shared_cache_table(s3.url, "moved")
    two_workers = "[server]\nworkers = 2\n"  # the supervisor's purge beside the workers' multiprocess metrics
    config = write_config(tmp_path, img_endpoint(f'type = "web"\nbase_url = "{green.url}"').replace(
        "[server]\nworkers = 1\n", two_workers) + shared)
    client = AsyncHTTPClient(force_instance=True)

    async def objects() -> int:  # the endpoint's outputs (beside them, `_purges/`: the purge journal)
        return len(s3.client().list_objects_v2(Bucket="moved", Prefix="outputs/img/").get("Contents", []))

    async def stored() -> bool:
        return await objects() == 1

    node = NodeProcess(config)
    try:
        assert centre(await client.fetch(f"{node.url}/img/tr:w-100/p1.jpg")) == GREEN
        await until(stored, "the output in the shared tier")
    finally:
        assert node.stop() == 0
    write_config(tmp_path, img_endpoint(f'type = "local"\nroot = "{tmp_path / "red"}"').replace(
        "[server]\nworkers = 1\n", two_workers) + shared)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    node = NodeProcess(config, env={"TMPDIR": str(temporary)})
    try:
        line = await asyncio.to_thread(node.wait_for_log, "the origins of", 60)
        assert "since the node last ran, the origins of endpoint(s) 'img' changed: purged their 1 cached output(s)" \
            in line.string, line.string
        assert await objects() == 0
        response = await client.fetch(f"{node.url}/img/tr:w-100/p1.jpg")
        assert response.headers["X-Cache"] == "MISS" and centre(response) == RED
        assert total(await scrape(node.url), "edge_workers") == 2
        # the supervisor's purge counted nothing beside the workers' files (under its pid, a start time of 0)
        (folder,) = temporary.glob("edge-metrics-*")
        assert {path.name.rsplit("_", 1)[1] for path in folder.iterdir()} == {"slot0.db", "slot1.db"}
    finally:
        client.close()
        assert node.stop() == 0
        await green.stop()


async def test_a_reload_or_restart_that_leaves_the_origins_where_they_were_purges_nothing(tmp_path):
    """An origin's timeout and its name are not where its files come from: its outputs stay hits across a reload and
    a restart (a rename had purged the endpoint: new-features probe)."""
    config = write_config(tmp_path, img_endpoint(f'type = "local"\nroot = "{SAMPLES}"'))
    node = NodeProcess(config)
    client = AsyncHTTPClient(force_instance=True)
    url = f"{node.url}/img/tr:w-100/coffee.jpg"
    try:
        assert (await client.fetch(url)).headers["X-Cache"] == "MISS"
        await until_stored(tmp_path / "cache", 1)
        old_workers = set(node.worker_pids())
        write_config(tmp_path, img_endpoint(f'type = "local"\nroot = "{SAMPLES}"\ntimeout = "9s"').replace(
            '"o"', '"renamed"'))
        mark = len(node.log)
        node.process.send_signal(signal.SIGHUP)
        await asyncio.to_thread(node.wait_for_log, "config reloaded", 60, mark)
        await asyncio.to_thread(gone, node, old_workers)
        assert (await client.fetch(url)).headers["X-Cache"] == "HIT"
        assert not any("the origins of" in line for line in node.log[mark:]), node.log[mark:]
    finally:
        assert node.stop() == 0
    node = NodeProcess(config)
    try:
        assert (await client.fetch(f"{node.url}/img/tr:w-100/coffee.jpg")).headers["X-Cache"] == "HIT"
        assert not any("the origins of" in line for line in node.log), node.log
    finally:
        client.close()
        assert node.stop() == 0


async def test_an_endpoint_removed_then_added_again_on_other_origins_is_purged(tmp_path):
    """Removed by a reload, then added again on another folder: it had served the first folder's outputs as hits
    (the record of its origins went with it; new-features probe)."""
    for colour, rgb in (("red", RED), ("blue", BLUE)):
        (tmp_path / colour).mkdir()
        (tmp_path / colour / "p1.jpg").write_bytes(solid_jpeg(rgb))
    config = write_config(tmp_path, img_endpoint(f'type = "local"\nroot = "{tmp_path / "red"}"'))
    node = NodeProcess(config)
    client = AsyncHTTPClient(force_instance=True)
    try:
        assert centre(await client.fetch(f"{node.url}/img/tr:w-100/p1.jpg")) == RED
        await until_stored(tmp_path / "cache", 1)
        for origin, endpoint in (("red", "other"), ("blue", "img")):
            write_config(tmp_path, img_endpoint(f'type = "local"\nroot = "{tmp_path / origin}"').replace(
                'id = "img"', f'id = "{endpoint}"'))
            mark = len(node.log)
            node.process.send_signal(signal.SIGHUP)
            await asyncio.to_thread(node.wait_for_log, "config reloaded", 60, mark)
        line = await asyncio.to_thread(node.wait_for_log, "SIGHUP: the origins of", 60, mark)
        assert "endpoint(s) 'img' changed: purged their 1 cached output(s)" in line.string, line.string
        response = await client.fetch(f"{node.url}/img/tr:w-100/p1.jpg")
        assert (response.headers["X-Cache"], centre(response)) == ("MISS", BLUE)
    finally:
        client.close()
        assert node.stop() == 0


async def test_an_unreadable_record_of_the_origins_served_purges_nothing_and_is_written_again(tmp_path):
    """The cache folder's `origins.json` cut short or not the node's: no endpoint is taken for moved (a purge in
    doubt would empty the cache), and the node writes what it serves."""
    config = write_config(tmp_path, img_endpoint(f'type = "local"\nroot = "{SAMPLES}"'))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "origins.json").write_text('{"img": ["')
    node = NodeProcess(config)
    try:
        await asyncio.to_thread(node.wait_for_log, "listening on", 60)
        assert any("origins.json is unreadable" in line for line in node.log), node.log
        assert not any("the origins of" in line for line in node.log), node.log
        written = json.loads((tmp_path / "cache" / "origins.json").read_text())
        assert list(written) == ["img"] and len(written["img"]) == 64  # a SHA-256 of where its originals come from
    finally:
        assert node.stop() == 0


async def test_a_reload_that_adds_a_metrics_port_keeps_metrics_on_the_main_port_until_a_restart(tmp_path):
    """`metrics_port`'s socket is bound at the start: a reload that moved /metrics to it would leave it nowhere,
    the main port answering 404 and no metrics port listening."""
    config = write_config(tmp_path, local_config(before="[server]\nworkers = 2\n"))
    node = NodeProcess(config)
    try:
        old_workers = set(node.worker_pids())
        write_config(tmp_path, local_config(before='[server]\nworkers = 2\nmetrics_port = 0\n'))
        mark = len(node.log)
        node.process.send_signal(signal.SIGHUP)
        warned = await asyncio.to_thread(node.wait_for_log, "needs a restart", 30, mark)
        assert "[server] metrics_port changed in the file but needs a restart; keeping metrics_port = None" in \
            warned.string, warned.string
        await asyncio.to_thread(node.wait_for_log, "config reloaded", 60, mark)
        await asyncio.to_thread(gone, node, old_workers)
        for _ in range(4):  # whichever worker answers
            assert total(await scrape(node.url), "edge_workers") == 2
    finally:
        assert node.stop() == 0
