"""`edge serve` as a real process: workers share one port (a socket each), one cache and one
/metrics; SIGTERM stops everything."""

import asyncio
import os
import re
import shutil
import signal
import socket
import sys
import time
from urllib.parse import urlsplit

import pytest
from tornado.httpclient import AsyncHTTPClient

from edge.supervisor import CONFIRM_SECONDS
from edge.testing import ServingNode, image_size, photo_image
from tests.assets import colour, solid
from tests.nodes import (MARKED_ORIGINS, NodeProcess, decode, install_plugin, local_config, polled, until,
                         until_stored, web_config, write_config)
from tests.scrape import samples, scrape, scrape_when, total
from tests.servers import Behaviour, HTTPOrigin

CONFIG = local_config(before="[server]\nworkers = 2")


def children_of(pid):
    tasks = f"/proc/{pid}/task/{pid}/children"
    with open(tasks) as handle:
        return [int(child) for child in handle.read().split()]


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie has exited; it only waits to be reaped
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().split(")")[-1].split()[0] != "Z"


@pytest.fixture
def two_workers(tmp_path):
    node = NodeProcess(write_config(tmp_path, CONFIG))
    yield node
    node.stop()


async def test_two_workers_share_the_cache_and_one_metrics_endpoint(two_workers):
    client = AsyncHTTPClient()
    url = two_workers.url + "/tr:w-120/coffee.jpg"
    # Separate connections, so both workers get requests; each answer names its worker's pid.
    first = await client.fetch(url, headers={"Connection": "close"})
    assert first.headers["X-Cache"] == "MISS" and decode(first).width == 120
    hits = [await client.fetch(url, headers={"Connection": "close"}) for _ in range(20)]
    assert {h.headers["X-Cache"] for h in hits} == {"HIT"}
    assert {h.body for h in hits} == {first.body}

    workers = children_of(two_workers.process.pid)
    assert len(workers) == 2

    metrics = await scrape(two_workers.url)
    cache = samples(metrics, "edge_cache_requests_total")
    assert cache[(("result", "miss"), ("tier", "output"))] == 1
    assert cache[(("result", "hit"), ("tier", "output"))] == 20
    requests = samples(metrics, "edge_http_requests_total")
    assert requests[(("endpoint", "default"), ("status", "200"))] == 21


def listening_sockets(pid: int, port: int) -> set[int]:
    """Inodes of the listening TCP sockets on `port` that process `pid` holds."""
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    listening.add(int(fields[9]))
    held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    return {inode for inode in listening if f"socket:[{inode}]" in held}


def test_each_worker_accepts_on_its_own_socket_and_the_supervisor_keeps_them_all(two_workers):
    # SO_REUSEPORT: the kernel spreads connections over the workers' sockets
    port = int(two_workers.url.rsplit(":", 1)[1])
    first, second = (listening_sockets(pid, port) for pid in children_of(two_workers.process.pid))
    assert len(first) == len(second) == 1 and first != second
    assert listening_sockets(two_workers.process.pid, port) == first | second


def memory_kb(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        return {line.split(":")[0]: int(line.split()[1]) for line in handle.readlines()[1:]}


def test_the_workers_share_what_the_supervisor_imported_before_forking(two_workers):
    """The supervisor imports Python's, Tornado's and libvips' code and the node's before it forks:
    each worker maps those pages shared with it (copy-on-write) instead of importing its own copy."""
    supervisor = two_workers.process.pid
    with open(f"/proc/{supervisor}/maps") as handle:
        assert "libvips" in handle.read()
    for worker in children_of(supervisor):
        memory = memory_kb(worker)
        assert memory["Shared_Dirty"] > 16 * 1024  # anonymous pages it inherited, not copied since
        assert memory["Pss"] < 0.8 * memory["Rss"]


def test_sigterm_stops_the_supervisor_and_every_worker(tmp_path):
    node = NodeProcess(write_config(tmp_path, CONFIG))
    workers = children_of(node.process.pid)
    assert len(workers) == 2
    assert node.stop() == 0
    assert not any(alive(pid) for pid in workers)


def test_a_worker_that_does_not_stop_is_killed_saying_so(tmp_path):
    """A worker told to stop that does not exit (its loop held: a plugin's blocking close()) was killed without
    a line, where the docs promised one."""
    node = NodeProcess(write_config(tmp_path, CONFIG.replace("[server]\n", '[server]\nshutdown_grace = "1s"\n')))
    stopped = children_of(node.process.pid)[0]
    os.kill(stopped, signal.SIGSTOP)  # as a loop held: it takes no SIGTERM either
    assert node.stop() == 0
    assert any(re.search(rf"worker \d \(pid {stopped}\) had not exited shutdown_grace \+ 5s after it was told to "
                         r"stop \(its event loop held\?\): killed", line) for line in node.log), node.log


def test_a_killed_worker_is_replaced(tmp_path):
    node = NodeProcess(write_config(tmp_path, CONFIG))
    try:
        victim = children_of(node.process.pid)[0]
        os.kill(victim, signal.SIGKILL)
        node.wait_for_log(f"pid {victim}\\) exited with status .*; restarted")
        replacement = set(children_of(node.process.pid)) - {victim}
        assert len(replacement) == 2
    finally:
        assert node.stop() == 0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        user, system = stat.read().rpartition(")")[2].split()[11:13]
    return (int(user) + int(system)) / os.sysconf("SC_CLK_TCK")


def test_a_worker_that_dies_rendering_is_logged_with_the_request_it_rendered_for(tmp_path):
    """A worker ended by a signal (here SIGKILL, as the OOM killer does) while it renders: its access log line is
    never written, and the log said "exited with status -9" alone; the supervisor names the request (soak probe)."""
    (tmp_path / "photo.jpg").write_bytes(photo_image())
    node = NodeProcess(write_config(tmp_path, local_config(tmp_path, before="[server]\nworkers = 1\n[limits]\n"
                                                                            "max_cost = 2000")))  # a long render
    try:
        (victim,) = node.worker_pids()
        idle = cpu_seconds(victim)
        parts = urlsplit(node.url)
        client = socket.create_connection((parts.hostname, parts.port), timeout=10)
        client.sendall(b"GET /tr:w-3500,f-avif,q-95/photo.jpg?sig=no-query-logged HTTP/1.1\r\nHost: shop.example\r\n"
                       b"X-Request-Id: dying-render-1\r\n\r\n")
        polled(lambda: cpu_seconds(victim) - idle > 0.3, "the render under way", 20)
        os.kill(victim, signal.SIGKILL)
        node.wait_for_log(rf"pid {victim}\) exited with status -9")
        client.close()
        (line,) = [line for line in node.log if "was rendering" in line]
        assert line.rstrip().endswith(f"worker 0 (pid {victim}) was rendering for dying-render-1 GET "
                             "shop.example/tr:w-3500,f-avif,q-95/photo.jpg when it ended")
        assert image_size(ServingNode(node).get("/tr:w-30/photo.jpg")[2]) == (30, 22)  # its replacement serves
        assert not [line for line in node.log if "was rendering" in line][1:]  # a worker that exits serving: none
    finally:
        assert node.stop() == 0
    assert sum("was rendering" in line for line in node.log) == 1


async def test_workers_that_die_leave_no_metrics_files_behind_and_their_counts_stay(tmp_path):
    """A worker's multiprocess files are named by its slot, which its replacement takes over: before,
    each worker that ever died left five files that every /metrics read (12 → 252 after 28 restarts)."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    node = NodeProcess(write_config(tmp_path, CONFIG), env={"TMPDIR": str(temporary)})
    try:
        client = AsyncHTTPClient()
        for width in range(20, 30):
            assert (await client.fetch(f"{node.url}/tr:w-{width}/coffee.jpg")).code == 200
        # counted just after the answer: a worker killed in between would take its count along
        await scrape_when(node.url, "edge_http_requests_total", 10, status="200")
        (folder,) = temporary.glob("edge-metrics-*")
        files = sorted(path.name for path in folder.iterdir())
        assert len(files) == 12  # five kinds of file and the counters' per worker, two workers
        for _ in range(4):
            victim = node.worker_pids()[0]
            seen = len(node.log)
            os.kill(victim, signal.SIGKILL)
            node.wait_for_log(f"pid {victim}\\) exited with status .*; restart", start=seen)  # (in 0.5s, 1s...)
            metrics = await scrape_when(node.url, "edge_workers", 2)  # the dead one's live gauges gone, and back
        assert sorted(path.name for path in folder.iterdir()) == files
        assert total(metrics, "edge_http_requests_total", status="200") == 10  # the dead workers' counts too
    finally:
        assert node.stop() == 0


async def test_workers_of_many_reloads_draining_at_once_leave_no_metrics_files_behind(tmp_path):
    """Reloads whose old workers drain slow requests hold many generations at once. Slots were 4 × workers
    + 4: a worker past them was named by its pid, and its files stayed in the folder (read by every
    scrape) after it exited: 9 quick reloads of 2 workers left 38."""
    hold = asyncio.Event()
    origin = await HTTPOrigin(files={f"{n}.jpg": solid(40, 30, colour(1)) for n in range(64)},
                              behaviour=Behaviour(hold=hold)).start()
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    config = web_config(origin.url, '[server]\nworkers = 2\nshutdown_grace = "60s"', origin='timeout = "60s"')
    node = NodeProcess(write_config(tmp_path, config), env={"TMPDIR": str(temporary)})
    (folder,) = temporary.glob("edge-metrics-*")
    client = AsyncHTTPClient(force_instance=True, max_clients=64)
    held = []
    try:
        for generation in range(7):
            for _ in range(8):  # on separate connections: each worker of this generation is likely to hold some
                held.append(client.fetch(f"{node.url}/{len(held)}.jpg", raise_error=False, request_timeout=60,
                                         headers={"Connection": "close"}))

            async def all_held():
                return origin.requests.total() == len(held)
            await until(all_held, f"{len(held)} requests held at the origin")
            mark = len(node.log)
            node.process.send_signal(signal.SIGHUP)

            async def reloaded():
                return any("config reloaded" in line for line in node.log[mark:])
            await until(reloaded, "the reload")
        assert len(node.worker_pids()) > 12  # beyond the slots there were
        hold.set()
        assert {response.code for response in await asyncio.gather(*held)} == {200}

        async def drained():
            return len(node.worker_pids()) == 2
        await until(drained, "the old workers' exit")
        await scrape_when(node.url, "edge_http_requests_total", len(held), status="200")
        names = [path.name for path in folder.iterdir()]
        assert all("_slot" in name for name in names), names
    finally:
        hold.set()
        client.close()
        assert node.stop() == 0
        await origin.stop()


async def test_a_metrics_file_a_worker_has_only_just_created_is_read_as_empty(tmp_path):
    """prometheus-client creates a worker's file empty, then sizes it: read in between (by a scrape, the
    status page's snapshot, a starting worker's first snapshot), it raised struct.error: /metrics
    answered 500, and a worker starting beside another exited with status 1 (seen with 12 nodes
    starting at once)."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    node = NodeProcess(write_config(tmp_path, CONFIG), env={"TMPDIR": str(temporary)})
    try:
        (folder,) = temporary.glob("edge-metrics-*")
        (folder / "gauge_livesum_slot7.db").touch()  # as a new worker's, before it is sized
        client = AsyncHTTPClient()
        for _ in range(4):  # whichever worker answers
            response = await client.fetch(node.url + "/metrics", raise_error=False)
            assert response.code == 200 and total(response.body.decode(), "edge_workers") == 2
        victim = node.worker_pids()[0]
        seen = len(node.log)
        os.kill(victim, signal.SIGKILL)  # its replacement starts with the file there
        node.wait_for_log(f"pid {victim}\\) exited with status .*; restarted", start=seen)
        await scrape_when(node.url, "edge_workers", 2)
        assert (await client.fetch(node.url + "/_edge/status", raise_error=False)).code == 200
    finally:
        assert node.stop() == 0
    log = "".join(node.log)
    assert "exited with status 1" not in log and "struct.error" not in log, log


async def test_a_deleted_metrics_folder_is_made_again_and_the_workers_replaced(tmp_path):
    """A cleaner of the temporary folder deletes it: /metrics had counted nothing from then on, and every
    new worker failed to open its files (a reload was refused; a crashed worker's replacements kept dying,
    and the supervisor stopped the node)."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    node = NodeProcess(write_config(tmp_path, CONFIG), env={"TMPDIR": str(temporary)})
    try:
        client = AsyncHTTPClient()
        (folder,) = temporary.glob("edge-metrics-*")
        old_workers = set(node.worker_pids())
        seen = len(node.log)
        shutil.rmtree(folder)
        await asyncio.to_thread(node.wait_for_log, "workers replaced; 2 old worker", 60, seen)
        assert folder.is_dir()

        async def replaced() -> bool:
            return not old_workers & set(node.worker_pids())
        await until(replaced, "the old workers gone")
        for width in range(20, 25):
            assert (await client.fetch(f"{node.url}/tr:w-{width}/coffee.jpg")).code == 200
        metrics = await scrape_when(node.url, "edge_http_requests_total", 5, status="200")
        assert total(metrics, "edge_workers") == 2
        victim = node.worker_pids()[0]  # a crashed worker is replaced, its files opened in the folder
        seen = len(node.log)
        os.kill(victim, signal.SIGKILL)
        node.wait_for_log(f"pid {victim}\\) exited with status .*; restarted", start=seen)
        await scrape_when(node.url, "edge_workers", 2)
        seen = len(node.log)
        node.process.send_signal(signal.SIGHUP)
        await asyncio.to_thread(node.wait_for_log, "config reloaded", 60, seen)
    finally:
        assert node.stop() == 0


def test_a_killed_supervisors_metrics_folder_is_removed_by_the_next_start(tmp_path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    alive_elsewhere = temporary / f"edge-metrics-{os.getpid()}-kept"  # a live process's: kept
    unnamed = temporary / "edge-metrics-abc"  # not one of ours by name: kept
    for folder in (alive_elsewhere, unnamed):
        folder.mkdir()
    killed = NodeProcess(write_config(tmp_path, CONFIG), env={"TMPDIR": str(temporary)})
    (orphan,) = temporary.glob(f"edge-metrics-{killed.process.pid}-*")
    killed.process.kill()  # SIGKILL: no `finally` removes the folder
    killed.process.wait(10)
    killed.stop()
    assert orphan.exists()
    node = NodeProcess(write_config(tmp_path, CONFIG), env={"TMPDIR": str(temporary)})
    try:
        assert not orphan.exists() and alive_elsewhere.exists() and unnamed.exists()
        assert len(list(temporary.glob(f"edge-metrics-{node.process.pid}-*"))) == 1
    finally:
        assert node.stop() == 0


def test_a_worker_whose_event_loop_stops_is_killed_and_replaced(tmp_path):
    """A stopped process (SIGSTOP, a debugger) gives no heartbeat either, and cannot write its stacks: the
    kill's line says so rather than pointing at stacks that are not there."""
    node = NodeProcess(write_config(tmp_path, local_config(before='[server]\nworkers = 2\nworker_timeout = "2s"')))
    try:
        victim = node.worker_pids()[0]
        os.kill(victim, signal.SIGSTOP)
        stopped_at = time.monotonic()
        node.wait_for_log(rf"worker \d \(pid {victim}\) gave no sign of life for [7-9]s \(the process is stopped\): "
                          "killed; it wrote no stacks$", timeout=15)
        assert 2 + CONFIRM_SECONDS <= time.monotonic() - stopped_at < 2 + CONFIRM_SECONDS + 3
        # killed for its silence, said above: not blamed on the OOM killer
        node.wait_for_log(f"pid {victim}\\) exited with status -9; restarted$", timeout=10)
        assert victim not in node.worker_pids() and len(node.worker_pids()) == 2
        other = next(pid for pid in node.worker_pids() if pid != victim)
        time.sleep(3)  # the workers that run keep their heartbeat: none of them is killed meanwhile
        assert other in node.worker_pids() and len([line for line in node.log if "no sign of life" in line]) == 1
    finally:
        assert node.stop() == 0


def stuck_node(tmp_path, workers: int = 1) -> NodeProcess:
    """A node of `workers` worker(s) with two `stuck` origins (MARKED_ORIGINS), the first `/stuck/`'s, and a `local`
    one, `worker_timeout` 2 s."""
    site = tmp_path / "site"
    install_plugin(site, "marked", MARKED_ORIGINS)
    stuck = "".join(f'[[origins]]\nname = "stuck{n}"\ntype = "stuck"\nmarker = "{tmp_path / "opened"}"\n'
                    for n in range(2)) + '[[endpoints]]\nid = "stuck"\norigins = ["stuck0"]\n'
    config = write_config(tmp_path, local_config(
        before=f'[server]\nworkers = {workers}\nworker_timeout = "2s"\nshutdown_grace = "1s"', after=stuck))
    return NodeProcess(config, env={"PYTHONPATH": os.pathsep.join(filter(None, (str(site), os.environ.get(
        "PYTHONPATH"))))})


def blocked_at(node: NodeProcess, function: str) -> None:
    """The node logged a blocked worker's stacks (faulthandler's, from `_beating`) with the stuck origin's
    `function` in them, before the kill's line."""
    node.wait_for_log(r"^Timeout \(0:00:02\)!")
    text = "".join(node.log)
    at = text.index("Timeout (0:00:02)!")
    assert re.search(rf'File ".*edge_marked_origin/__init__.py", line \d+ in {function}\n', text[at:])
    assert text.index("no sign of life") > at


def test_a_worker_whose_origin_blocks_its_start_is_killed_and_replaced(tmp_path):
    """An origin's `open()` blocking the event loop escapes the open's own bound (it is awaited): the node
    had stayed silent for good, its port taking connections into the backlog. A starting worker beats: one
    whose opens are slow but await (two origins of 1.5 s here, with a `worker_timeout` of 2 s) starts."""
    node = stuck_node(tmp_path)
    try:
        killed = node.wait_for_log(r"worker 0 \(pid (\d+)\) gave no sign of life for \d+s \(its event loop is "
                                   r"blocked while it started: an origin's open\(\)\?\): killed").group(1)
        node.wait_for_log(rf"pid {killed}\) exited with status -9; restarted")
        blocked_at(node, "open")
        assert ServingNode(node).get("/tr:w-32/coffee.jpg")[0] == 200
        assert len([line for line in node.log if "no sign of life" in line]) == 1  # its replacement started
    finally:
        assert node.stop() == 0


def test_a_node_says_it_listens_only_once_every_worker_serves(tmp_path):
    """One worker's start blocked (an origin's open()): the node is not said to listen while it is replaced."""
    node = stuck_node(tmp_path, workers=2)
    try:
        text = "".join(node.log)
        assert text.index("gave no sign of life") < text.index("listening on"), text
    finally:
        assert node.stop() == 0


def test_a_worker_blocked_by_an_origin_s_fetch_names_it_before_it_is_killed(tmp_path):
    """The kill's line cannot say what blocked the loop: the worker's threads' stacks, written by
    faulthandler once the silence reaches `worker_timeout`, do (a plugin author's probe had only the kill)."""
    (tmp_path / "opened").touch()  # no open() blocks
    node = stuck_node(tmp_path)
    try:
        address = urlsplit(node.url)
        with socket.create_connection((address.hostname, address.port), timeout=10) as client:
            client.sendall(b"GET /stuck/blocks.jpg HTTP/1.1\r\nHost: a\r\n\r\n")
            node.wait_for_log(r"worker 0 \(pid \d+\) gave no sign of life for \d+s \(its event loop is blocked\): "
                              r"killed; its threads' stacks, written when the silence reached worker_timeout, are above",
                              timeout=15)
        blocked_at(node, "fetch")
    finally:
        assert node.stop() == 0


async def test_embedded_default_serves_a_sample_then_counts_a_miss_and_a_hit(tmp_path):
    node = NodeProcess(None, env={"XDG_CACHE_HOME": str(tmp_path)})
    try:
        client = AsyncHTTPClient()
        first = await client.fetch(node.url + "/tr:w-300/astronaut.jpg")
        await until_stored(tmp_path / "edge-image-node", 1)  # else the other worker may answer a miss
        second = await client.fetch(node.url + "/tr:w-300/astronaut.jpg")
        image = decode(first)
        assert (image.width, image.get("vips-loader")) == (300, "jpegload_buffer")
        assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
        metrics = await scrape(node.url)
        cache = samples(metrics, "edge_cache_requests_total")
        assert cache[(("result", "miss"), ("tier", "output"))] == 1
        assert cache[(("result", "hit"), ("tier", "output"))] == 1
        assert (tmp_path / "edge-image-node" / "outputs").is_dir()  # the per-user cache folder
    finally:
        assert node.stop() == 0


def test_a_metrics_folder_named_after_this_very_pid_is_a_restarted_containers():
    from edge.cli import _gone
    assert _gone(os.getpid())  # its own is not made yet: pid 1 again after `docker restart`
    assert not _gone(os.getppid())
    assert _gone(2**22 + 1)  # above Linux's largest pid


async def test_the_start_time_stays_the_nodes_across_reloads_and_restarted_workers(tmp_path):
    """`edge_start_time_seconds` (and the status page's uptime) is when the node started: a worker that
    takes a slot over (a reload's, a crashed one's replacement) had written its own start there, so that
    from the second reload on the node looked seconds old."""
    config = write_config(tmp_path, CONFIG)
    node = NodeProcess(config)
    try:
        started = total(await scrape(node.url), "edge_start_time_seconds")
        for _ in range(2):  # the second reload's workers take the first workers' slots
            workers = set(node.worker_pids())
            mark = len(node.log)
            node.process.send_signal(signal.SIGHUP)
            node.wait_for_log("config reloaded", start=mark)
            polled(lambda: not workers & set(node.worker_pids()), "the old workers' exit", 30)
        victim = node.worker_pids()[0]
        mark = len(node.log)
        os.kill(victim, signal.SIGKILL)
        node.wait_for_log(f"pid {victim}\\) exited with status .*; restarted", start=mark)
        metrics = await scrape_when(node.url, "edge_workers", 2)
        assert total(metrics, "edge_start_time_seconds") == started
    finally:
        assert node.stop() == 0


def test_a_worker_that_crashes_as_it_starts_is_started_again_later_and_later_while_the_others_serve(tmp_path):
    """One worker whose replacements crash as they start (a plugin's native code) is started again after 0.5, 1, 2 s...
    while the other serves, and comes back once the cause is gone: it had been started again 10 times in 0.4 s, and
    the node stopped, the serving worker with it (soak probe)."""
    site = tmp_path / "site"
    install_plugin(site, "marked", MARKED_ORIGINS)
    crash = tmp_path / "crash"
    crashing = f'[[origins]]\nname = "crashing"\ntype = "crashing"\nmarker = "{crash}"\n'
    node = NodeProcess(write_config(tmp_path, local_config(before="[server]\nworkers = 2", after=crashing)),
                       env={"PYTHONPATH": os.pathsep.join(filter(None, (str(site), os.environ.get("PYTHONPATH"))))})
    serving = ServingNode(node)
    try:
        crash.touch()
        victim, survivor = node.worker_pids()
        os.kill(victim, signal.SIGKILL)
        node.wait_for_log(r"exited with status -11; restarting in 2s \(4 worker\(s\) \d in a row died before serving\)",
                          30)
        assert node.process.poll() is None and node.worker_pids() == [survivor]
        assert {serving.get(f"/tr:w-{width}/coffee.jpg")[0] for width in range(30, 40)} == {200}
        crash.unlink()

        def back() -> bool:
            pids = node.worker_pids()
            return len(pids) == 2 and alive(pids[1])
        polled(back, "the crashing worker's number served again", 10)
        mark = len(node.log)
        assert {image_size(serving.get(f"/tr:w-{width}/coffee.jpg")[2])[0] for width in range(40, 60)} == set(
            range(40, 60))
        assert not any("exited" in line for line in node.log[mark:])
    finally:
        assert node.stop() == 0


def test_workers_that_a_request_crashes_are_replaced_at_once_however_often(tmp_path):
    """A URL whose fetch (or render) crashes the worker, asked again and again: each worker had served, so each is
    replaced at once and the node serves on; counted as workers crashing as they start, one client's loop had every
    worker waiting to start again, the port closed, then the node stopped in 8 s (new-features probe)."""
    site = tmp_path / "site"
    install_plugin(site, "marked", MARKED_ORIGINS)
    crashing = (f'[[origins]]\nname = "crashing"\ntype = "crashing"\nmarker = "{tmp_path / "absent"}"\n'
                '[[endpoints]]\nid = "crashing"\norigins = ["crashing"]\n')
    node = NodeProcess(write_config(tmp_path, local_config(before="[server]\nworkers = 2", after=crashing)),
                       env={"PYTHONPATH": os.pathsep.join(filter(None, (str(site), os.environ.get("PYTHONPATH"))))})
    serving = ServingNode(node)
    try:
        for crash in range(8):
            mark = len(node.log)
            with pytest.raises(ConnectionError):
                serving.get("/crashing/boom.jpg")
            node.wait_for_log(r"exited with status -11; restarted", 30, start=mark)
            polled(lambda: len(node.worker_pids()) == 2, "the crashed worker replaced", 10)
            assert serving.get(f"/tr:w-{30 + crash}/coffee.jpg")[0] == 200
        assert node.process.poll() is None
        assert not any("restarting in" in line or "keep dying" in line for line in node.log)
    finally:
        assert node.stop() == 0


def test_a_fetch_that_never_ends_when_cancelled_does_not_hold_its_workers_stop(tmp_path):
    """A plugin's fetch that swallows every cancellation is answered at its timeout and left to end by itself: the
    worker's end waited for it, every later stop or reload then took `shutdown_grace` + 5 s and a SIGKILL, logged as
    an event loop held (plugin probe)."""
    site = tmp_path / "site"
    install_plugin(site, "marked", MARKED_ORIGINS)
    swallowing = (f'[[origins]]\nname = "for_ever"\ntype = "swallowing"\nmarker = "{tmp_path}"\ntimeout = 0.5\n'
                  '[[endpoints]]\nid = "for-ever"\norigins = ["for_ever"]\n')
    config = write_config(tmp_path, local_config(before='[server]\nworkers = 1\nshutdown_grace = "10s"',
                                                 after=swallowing))
    node = NodeProcess(config, env={"PYTHONPATH": os.pathsep.join(filter(None, (str(site), os.environ.get(
        "PYTHONPATH"))))})
    serving = ServingNode(node)
    assert serving.get("/for-ever/a.jpg")[0] == 504
    started = time.monotonic()
    assert node.stop() == 0
    assert time.monotonic() - started < 8  # not shutdown_grace + 5 s, then killed
    assert any("task(s) still running 2s after they were cancelled" in line for line in node.log)
    assert not any("had not exited" in line for line in node.log)


def slow_config_node(tmp_path, reading_timeout: float) -> NodeProcess:
    """A node of two workers with a `slow_config` origin (MARKED_ORIGINS) whose `from_config` waits while
    `tmp_path/held` is there, its supervisor giving a SIGHUP's reading `reading_timeout` seconds."""
    site = tmp_path / "site"
    install_plugin(site, "marked", MARKED_ORIGINS)
    slow = f'[[origins]]\nname = "slow"\ntype = "slow_config"\nmarker = "{tmp_path / "held"}"\n'
    config = write_config(tmp_path, local_config(before="[server]\nworkers = 2", after=slow))
    command = ("import sys; from edge import cli, supervisor; "
               f"supervisor.READING_TIMEOUT_SECONDS = {reading_timeout}; sys.exit(cli.main())")
    return NodeProcess(config, edge=(sys.executable, "-c", command), env={"PYTHONPATH": os.pathsep.join(
        filter(None, (str(site), os.environ.get("PYTHONPATH"))))})


def hold_the_reading(node: NodeProcess, tmp_path) -> int:
    """SIGHUP with the origin's `from_config` held; returns once it waits. The log's length then."""
    (tmp_path / "held").touch()
    mark = len(node.log)
    node.process.send_signal(signal.SIGHUP)
    polled((tmp_path / "reading").exists, "the reading's start", 30)
    return mark


def test_a_reload_whose_reading_blocks_leaves_the_supervisor_at_work(tmp_path):
    """A plugin's `from_config` that blocks (a credential file on a hung mount) ran in the supervisor's only
    thread at a SIGHUP: a worker that died meanwhile was not replaced, a SIGTERM not acted on (plugin probe)."""
    node = slow_config_node(tmp_path, reading_timeout=60)
    serving = ServingNode(node)
    try:
        mark = hold_the_reading(node, tmp_path)
        dead = node.worker_pids()[0]
        os.kill(dead, signal.SIGKILL)
        node.wait_for_log(rf"pid {dead}\) exited with status -9; restarted", 30, mark)
        assert serving.get("/tr:w-32/coffee.jpg")[0] == 200
        node.process.send_signal(signal.SIGHUP)  # read again once the first reading has ended
        (tmp_path / "held").unlink()
        node.wait_for_log("config reloaded", 60, mark)
        mark = node.log.index(node.wait_for_log("config reloaded", 60, mark).string) + 1
        mark = node.log.index(node.wait_for_log("config reloaded", 60, mark).string) + 1
        assert len(node.worker_pids()) >= 2 and serving.get("/tr:w-32/coffee.jpg")[0] == 200
        # the SIGHUP sent while the first was read is one reload more, after it: not one after every reload from then on
        with pytest.raises(TimeoutError):
            node.wait_for_log("is valid; starting", 3, mark)
    finally:
        (tmp_path / "held").unlink(missing_ok=True)
        assert node.stop() == 0


def test_a_reading_that_takes_too_long_is_given_up_and_the_node_stops_at_once(tmp_path):
    node = slow_config_node(tmp_path, reading_timeout=2)
    serving = ServingNode(node)
    try:
        mark = hold_the_reading(node, tmp_path)
        node.process.send_signal(signal.SIGHUP)  # while it is read: refused with it, not read once it ends
        node.wait_for_log(r"config not reloaded, the running one is kept: reading it took over 2s \(a plugin's "
                          r"from_config, or the cache folder on a hung disk\?\); it is held at:", 30, mark)
        held = "".join(node.log[mark:]).split("it is held at:")[1]  # one line: its line ends written as \n
        assert held.startswith(r'\n  File "') and "edge/supervisor.py" not in held
        assert re.search(r'File ".*edge_marked_origin/__init__.py", line \d+, in from_config\\n', held)
        assert serving.metrics().total("edge_config_last_reload_successful") == 0
        mark = len(node.log)
        node.process.send_signal(signal.SIGHUP)
        node.wait_for_log(r"config not reloaded, the running one is kept: the reading of an earlier SIGHUP, given "
                          r"up, has still not ended \(\d+s; where it is held was logged then\)", 30, mark)
        (tmp_path / "held").unlink()
        node.wait_for_log(r"the reading of the config given up ended after \d+s; what it read is not used: SIGHUP "
                          r"again to reload", 30, mark)
        with pytest.raises(TimeoutError):
            node.wait_for_log("is valid; starting", 3, mark)
        assert not any("config reloaded" in line for line in node.log)
        hold_the_reading(node, tmp_path)  # and stopped while it is held
        started = time.monotonic()
        assert node.stop() == 0
        assert time.monotonic() - started < 15
    finally:
        (tmp_path / "held").unlink(missing_ok=True)
        node.stop()


def test_a_reload_whose_new_workers_cannot_start_is_abandoned_and_the_old_workers_serve_on(tmp_path):
    """A reload's new workers that exit before they serve (an origin that does not open: its storage offline) end
    the reload: the running workers and config are kept, the other new workers stopped (not restarted with the old
    config), the refusal counted, and the next SIGHUP, the storage back, reloads."""
    site, storage = tmp_path / "site", tmp_path / "storage"
    install_plugin(site, "marked", MARKED_ORIGINS)
    storage.mkdir()
    online = storage / "online"
    online.touch()
    stored = f'[[origins]]\nname = "stored"\ntype = "checking"\nmarker = "{online}"\n'
    config = write_config(tmp_path, local_config(before="[server]\nworkers = 2", after=stored))
    node = NodeProcess(config, env={"PYTHONPATH": os.pathsep.join(filter(None, (str(site), os.environ.get(
        "PYTHONPATH"))))})
    serving = ServingNode(node)
    try:
        old = set(node.worker_pids())
        write_config(tmp_path, local_config(before='[server]\nworkers = 2\n[named_transformations]\nthumb = "w-30"',
                                            after=stored))
        online.unlink()
        mark = len(node.log)
        node.process.send_signal(signal.SIGHUP)
        node.wait_for_log(r"config not reloaded, the running one is kept: a new worker exited with status 3 before "
                          r"serving", 30, mark)
        polled(lambda: set(node.worker_pids()) == old, "only the old workers left", 30)
        assert serving.metrics().total("edge_config_last_reload_successful") == 0
        assert serving.get("/tr:n-thumb/coffee.jpg")[0] == 400  # the old config's: no such named transformation
        assert serving.get("/tr:w-30/coffee.jpg")[0] == 200
        assert not any("restarted" in line or "config reloaded" in line for line in node.log[mark:]), node.log
        online.touch()
        mark = len(node.log)
        node.process.send_signal(signal.SIGHUP)
        node.wait_for_log("config reloaded", 60, mark)
        polled(lambda: not old & set(node.worker_pids()), "the old workers' exit", 30)
        status, _, body = serving.get("/tr:n-thumb/coffee.jpg")
        assert (status, image_size(body)[0]) == (200, 30)
        assert serving.metrics().total("edge_config_last_reload_successful") == 1
    finally:
        online.touch()
        assert node.stop() == 0
