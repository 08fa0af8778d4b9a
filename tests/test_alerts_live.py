"""The alert rules and the dashboard against a real Prometheus scraping real 2-worker nodes under real
failures: each alert fires under its failure and on no other node, none fires under healthy traffic or
at idle, and every dashboard panel shows data. The rules are `conf/prometheus-alerts.yml` with only their
durations divided by 60 (a minute becomes a second: windows and `for:`), so the expressions are the ones
shipped; Prometheus scrapes and evaluates every second."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from tornado.httpclient import AsyncHTTPClient

from edge.testing import NodeProcess, photo_image, solid_image, write_config
from tests.loadbalancers import free_ports, stop_process
from tests.nodes import until, until_stored
from tests.s3server import shared_cache_table
from tests.servers import Behaviour, HTTPOrigin
from tests.test_cache_failures import fill, mount_tmpfs
from tests.test_operations import ALERTS, GRAFANA_VARIABLES, dashboard_queries

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None,
                                reason="prometheus not installed (Debian: apt-get install prometheus)")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: the most this test waits for Prometheus to see what a node did
BOUND = 60


def shortened(rules: str) -> str:
    """The rules with every duration (range windows and `for:`) divided by 60."""
    def scale(match: re.Match) -> str:
        return f"{match.group(1)}{int(match.group(2)) * SECONDS[match.group(3)] * 1000 // 60}ms{match.group(4)}"
    return re.sub(r"(\[|for: )(\d+)([smhd])(\]|\n)", scale, rules)


class Prometheus:
    def __init__(self, directory: Path, targets: dict[str, str]):
        """Scrape `targets` (name → node URL) as job `edge`, with the name as `instance`."""
        rules = directory / "rules.yml"
        rules.write_text(shortened(ALERTS.read_text()))
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "rule_files": [str(rules)],
                  "scrape_configs": [{"job_name": "edge", "scrape_timeout": "900ms", "static_configs": [
                      {"targets": [url.removeprefix("http://")], "labels": {"instance": name}}
                      for name, url in targets.items()]}]}
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{free_ports(1)[0]}"
        self.process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address={self.url.removeprefix('http://')}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = AsyncHTTPClient(force_instance=True)

    async def ready(self) -> None:
        deadline = time.monotonic() + BOUND
        while True:
            try:
                if (await self.client.fetch(f"{self.url}/-/ready", raise_error=False)).code == 200:
                    return
            except (ConnectionError, OSError):  # not listening yet
                pass
            assert time.monotonic() < deadline, "prometheus did not start"
            await asyncio.sleep(0.1)

    async def until_scraped(self, instance: str) -> None:
        async def scraped() -> bool:
            return bool(await self.query(f'up{{instance="{instance}"}} == 1'))
        await until(scraped, f"{instance}'s scrape", BOUND)

    async def query(self, expr: str) -> list[dict]:
        response = await self.client.fetch(f"{self.url}/api/v1/query?query={quote(expr)}", raise_error=False)
        answer = json.loads(response.body)
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]

    async def firing(self) -> set[tuple[str, str]]:
        """(instance, alert) of every alert firing now."""
        return {(r["metric"]["instance"], r["metric"]["alertname"])
                for r in await self.query('ALERTS{alertstate="firing"}')}

    def stop(self) -> None:
        self.client.close()
        stop_process(self.process)


def node_config(directory: Path, name: str, origin_url: str, server: str = "", more: str = "",
                cache: Path | None = None, endpoint: str = "") -> Path:
    cache = cache or directory / "caches" / name
    return write_config(directory, f"""[server]
workers = 2
{server}
[cache]
dir = "{cache}"
{more}
[[origins]]
name = "web"
type = "web"
base_url = "{origin_url}"

[[endpoints]]
id = ""
origins = ["web"]
{endpoint}
""", name=f"{name}.toml")


class Traffic:
    """Requests to nodes, each loop bounded by `BOUND`, until `stop()`."""

    def __init__(self):
        self.client = AsyncHTTPClient(force_instance=True, max_clients=100)
        self.tasks: list[asyncio.Task] = []
        self.stopping = False

    def every(self, seconds: float, node: NodeProcess, paths, concurrent: bool = False, burst: int = 1,
              patience: float = 15) -> None:
        """GET the next of `paths` (an iterator) from `node` every `seconds` (the next `burst` of them at
        once, if `concurrent`); wait for each answer unless `concurrent`, at most `patience` seconds."""
        async def get(path: str) -> None:
            await self.client.fetch(node.url + path, raise_error=False, request_timeout=patience)

        async def loop() -> None:
            deadline = time.monotonic() + BOUND
            paths_left = iter(paths)
            while not self.stopping and time.monotonic() < deadline:
                if concurrent:
                    self.tasks += [asyncio.ensure_future(get(next(paths_left))) for _ in range(burst)]
                else:
                    await get(next(paths_left))
                await asyncio.sleep(seconds)
        self.tasks.append(asyncio.ensure_future(loop()))

    async def stop(self) -> None:
        self.stopping = True
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.client.close()


def widths(start: int = 10, repeat: int = 0):
    """`/tr:w-N/a.jpg` for N from `start`: each a new URL (a miss), or cycling over `repeat` of them (hits)."""
    n = 0
    while True:
        yield f"/tr:w-{start + (n % repeat if repeat else n)}/a.jpg"
        n += 1


async def hold_connections(url: str, count: int, held: list) -> None:
    """Open `count` connections to `url` that send nothing (kept in `held`)."""
    host, port = url.removeprefix("http://").split(":")
    for _ in range(count):
        held.append(await asyncio.open_connection(host, int(port)))


async def knock(url: str, seconds: float, stopping) -> None:
    """Open a connection every `seconds`, send a request, read the answer (a 503 at max_connections)."""
    host, port = url.removeprefix("http://").split(":")
    deadline = time.monotonic() + BOUND
    while not stopping() and time.monotonic() < deadline:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /_edge/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        try:
            await asyncio.wait_for(reader.read(), 2)
        except (TimeoutError, ConnectionError):
            pass
        writer.close()
        await asyncio.sleep(seconds)


#: alert → the nodes (instances) it must fire on; on every other node (healthy, idle) it must not
EXPECTED = {
    "EdgeNodeDown": {"stopped"},
    "EdgeOriginErrorRate": {"origin_down"},  # denials have their own alert
    "EdgeOriginDenied": {"origin_denied"},
    "EdgeOriginFindsNothing": {"origin_misplaced"},
    "EdgeOriginAbandoned": {"clients_leave"},
    "EdgeSignaturesRefused": {"wrong_key"},
    "EdgeCacheHitRatioDrop": {"new_urls"},
    "EdgeLatencyP99High": {"slow_origin"},
    "EdgeCacheDiskNearlyFull": {"disk_full"},
    "EdgeCacheDiskFull": {"disk_full"},
    "EdgeCacheErrors": {"disk_full", "unwritable", "damaged"},
    "EdgeTransformsRefused": {"overloaded"},
    "EdgeRenderTimeouts": {"render_timeouts"},
    "EdgeWorkersRestarted": {"worker_killed"},
    "EdgeMetricsValuesLost": {"metrics_lost"},
    "EdgeConfigReloadFailed": {"reload_refused"},
    # what clients see: the nodes answering 502s and 503s (the render timeouts' node asks too few a second)
    "EdgeServerErrors": {"origin_down", "origin_denied", "overloaded"},
    "EdgeConnectionsNearLimit": {"connections"},
    "EdgeConnectionsRefused": {"connections"},
    "EdgePurgeMissedPeers": {"purge_peer_down"},
    "EdgeSharedTierFailing": {"shared_tier_down"},
}
#: an output large enough for a value file of its own
DAMAGED = "/tr:w-600,f-png/big.jpg"
#: induced on a node of their own, in a CPU-starved cgroup (`test_slow_hits_fire_on_a_cpu_starved_node`)
STARVED = {"EdgeHitLatencyP99High"}
#: alerts that must fire nowhere: the node has no known 500, and none of the failures above may cause one
SILENT = {"EdgeInternalErrors"}


#: dashboard series a node here may not have: a shared tier (none configured), work abandoned by clients
#: that went away
LEGITIMATELY_EMPTY = ('tier="shared"', "edge_shared_cache_", "edge_abandoned_work_total")


def grafana(query: str) -> str:
    """A dashboard query as Grafana sends it with every node and endpoint chosen."""
    for variable, value in {**GRAFANA_VARIABLES, "$__rate_interval": "10s"}.items():
        query = query.replace(variable, value)
    return query


def test_the_rules_tested_differ_from_the_shipped_ones_in_their_durations_only():
    shipped = ALERTS.read_text()
    tested = shortened(shipped)
    assert re.search(r"(\[|for: )\d+[smhd](\]|\n)", tested) is None and "[5000ms]" in tested
    assert re.sub(r"\d+(ms|[smhd])\b", "D", tested) == re.sub(r"\d+(ms|[smhd])\b", "D", shipped)


def test_the_rules_cover_every_alert():
    names = {rule["alert"] for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]}
    assert names == set(EXPECTED) | STARVED | SILENT


async def test_each_alert_fires_under_its_real_failure_and_no_other(tmp_path):
    image = solid_image(64, 48, (200, 40, 40))
    good = await HTTPOrigin(files={"a.jpg": image, "big.jpg": photo_image(1600, 1200)}).start()
    denying = await HTTPOrigin(files={"a.jpg": image}, behaviour=Behaviour(status=403)).start()
    # every request a new original: its fetch is what is slow
    slow = await HTTPOrigin(files={f"{n}.jpg": image for n in range(1000)}, behaviour=Behaviour(delay=2.5)).start()
    # every answer in ~1.2 s: under EdgeLatencyP99High's 2 s
    slowish = await HTTPOrigin(files={f"{n}.jpg": image for n in range(1000)},
                               behaviour=Behaviour(delay=1.2)).start()
    closed = f"http://127.0.0.1:{free_ports(1)[0]}"
    # every other node's cache on a filesystem of its own: the host's may be nearly full
    mounts = [mount_tmpfs(tmp_path / "small", "size=8m"), mount_tmpfs(tmp_path / "read-only", "size=64m"),
              mount_tmpfs(tmp_path / "caches", "size=512m"), mount_tmpfs(tmp_path / "tmp", "size=8m")]
    small, read_only, _, full_tmp = (next(mount) for mount in mounts)
    configs = {
        "healthy": node_config(tmp_path, "healthy", good.url),
        "idle": node_config(tmp_path, "idle", good.url),
        "stopped": node_config(tmp_path, "stopped", good.url),
        "origin_down": node_config(tmp_path, "origin_down", closed),
        "origin_denied": node_config(tmp_path, "origin_denied", denying.url),
        "new_urls": node_config(tmp_path, "new_urls", good.url),
        "slow_origin": node_config(tmp_path, "slow_origin", slow.url),
        "slowish_origin": node_config(tmp_path, "slowish_origin", slowish.url),
        # its base_url points where the origin has none of the images (a folder the deploy left out)
        "origin_misplaced": node_config(tmp_path, "origin_misplaced", f"{good.url}/elsewhere"),
        # its clients wait less than the slow origin takes, and less than its timeout
        "clients_leave": node_config(tmp_path, "clients_leave", slow.url),
        # asked for URLs signed with a key it no longer has
        "wrong_key": node_config(tmp_path, "wrong_key", good.url, endpoint='private_key = "the-new-key-0123"'),
        "disk_full": node_config(tmp_path, "disk_full", good.url, cache=small / "cache"),
        "unwritable": node_config(tmp_path, "unwritable", good.url, cache=read_only / "cache"),
        "damaged": node_config(tmp_path, "damaged", good.url),
        # its shared tier's S3 service is down (nothing listens there)
        "shared_tier_down": node_config(tmp_path, "shared_tier_down", good.url,
                                        more=shared_cache_table(closed, "shared", timeout="1s")),
        "overloaded": node_config(tmp_path, "overloaded", good.url,
                                  server='transform_threads = 1\ntransform_queue = 1\n'
                                  'transform_queue_timeout = "50ms"'),
        # every render stopped at its deadline (a new URL each time: a stopped one is not tried again)
        "render_timeouts": node_config(tmp_path, "render_timeouts", good.url,
                                       more='[limits]\nrender_timeout = "0.2s"\nmax_cost = 1_000_000'),
        "worker_killed": node_config(tmp_path, "worker_killed", good.url),  # one of its workers, as the OOM killer
        # its temporary folder, where its workers' metrics files are, fills up
        "metrics_lost": node_config(tmp_path, "metrics_lost", good.url),
        "reload_refused": node_config(tmp_path, "reload_refused", good.url),  # sent a config it refuses
        "connections": node_config(tmp_path, "connections", good.url,
                                   server='max_connections = 4\nheader_timeout = "60s"\nmetrics_port = 0'),
        "purge_peer_down": node_config(tmp_path, "purge_peer_down", good.url,
                                       more=f'[admin]\ntoken = "t0ken-for-the-test"\n[fleet]\npeers = ["{closed}"]'),
    }
    nodes: dict[str, NodeProcess] = {}
    traffic = Traffic()
    held: list = []
    prometheus = None
    ever: dict[str, set[str]] = {}
    try:
        environments = {"metrics_lost": {"TMPDIR": str(full_tmp)}}
        started = await asyncio.gather(*(asyncio.to_thread(NodeProcess, path, env=environments.get(name))
                                         for name, path in configs.items()), return_exceptions=True)
        nodes = {name: node for name, node in zip(configs, started) if isinstance(node, NodeProcess)}
        for failed in started:
            if not isinstance(failed, NodeProcess):
                raise failed
        # scraped on its metrics port: on the images' port a node at max_connections refuses the scrape too
        scraped = {name: node.url for name, node in nodes.items()}
        scraped["connections"] = nodes["connections"].wait_for_log(r"metrics on (http://\S+)/metrics").group(1)
        prometheus = Prometheus(tmp_path, scraped)
        await prometheus.ready()
        fill(small)
        fill(full_tmp)
        # its new workers' files find no room: the old ones' may have room left for every series the
        # traffic below adds (whether they had depended on how many series a node starts with)
        nodes["metrics_lost"].process.send_signal(signal.SIGHUP)
        refused = configs["reload_refused"]
        refused.write_text(refused.read_text() + "\n[server]\nworkers = 'many'\n")
        nodes["reload_refused"].process.send_signal(signal.SIGHUP)
        # the node checks at start that it can write in its cache folder: made read-only under it (a
        # read-only bind mount over it: the filesystem itself cannot be, with the databases open)
        cache = read_only / "cache"
        subprocess.run(["mount", "--bind", str(cache), str(cache)], check=True, timeout=30)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(cache)], check=True, timeout=30)

        await prometheus.until_scraped("damaged")  # else its first sample holds the error already
        await prometheus.until_scraped("worker_killed")  # its count at 0 first
        killed = nodes["worker_killed"].process.pid
        os.kill(int(Path(f"/proc/{killed}/task/{killed}/children").read_text().split()[0]), signal.SIGKILL)
        await damage_one_output(nodes["damaged"], tmp_path / "caches" / "damaged")
        traffic.every(0.1, nodes["healthy"], widths(repeat=8))
        traffic.every(0.1, nodes["origin_down"], widths())
        traffic.every(0.1, nodes["origin_denied"], widths())
        traffic.every(0.2, nodes["slow_origin"], (f"/tr:w-10/{n}.jpg" for n in range(1000)), concurrent=True)
        traffic.every(0.2, nodes["slowish_origin"], (f"/tr:w-10/{n}.jpg" for n in range(1000)), concurrent=True)
        traffic.every(0.1, nodes["origin_misplaced"], (f"/tr:w-10/{n}.jpg" for n in range(1000)))
        traffic.every(0.2, nodes["clients_leave"], (f"/tr:w-11/{n}.jpg" for n in range(1000)), concurrent=True,
                      patience=1.5)
        traffic.every(0.1, nodes["wrong_key"], (f"/tr:w-{n}/a.jpg?ik-s={n:040x}" for n in range(10, 10_000)))
        traffic.every(0.1, nodes["disk_full"], widths())
        traffic.every(0.1, nodes["unwritable"], widths())
        traffic.every(0.1, nodes["shared_tier_down"], widths())
        # new series (a format, a status) grow the workers' files, which finds no room
        traffic.every(0.1, nodes["metrics_lost"], (f"/tr:w-{n},f-{format}/{name}" for n in range(10, 10_000)
                                                   for format in ("webp", "png", "avif", "gif", "jpg")
                                                   for name in ("a.jpg", "missing.jpg")))
        # 6 renders at once: one a worker renders, one waits (and leaves after 50 ms), the next is refused
        traffic.every(0.5, nodes["overloaded"], (f"/tr:w-{w},f-webp/big.jpg" for w in range(800, 10_000)),
                      concurrent=True, burst=6)
        traffic.every(0.9, nodes["render_timeouts"],
                      (f"/tr:w-{8000 + n},h-8192,c-force,bl-100:bl-100:bl-100/big.jpg" for n in range(1000)))
        # twice what the workers may hold: however the kernel spreads them, each worker is full
        await hold_connections(nodes["connections"].url, 16, held)
        knocking = asyncio.ensure_future(knock(nodes["connections"].url, 0.2, lambda: traffic.stopping))
        traffic.tasks.append(knocking)
        purging = asyncio.ensure_future(purge_every(nodes["purge_peer_down"].url, 1, lambda: traffic.stopping))
        traffic.tasks.append(purging)
        # a node with a day of mostly hits (8 URLs asked again and again), then only new URLs
        traffic.every(0.1, nodes["new_urls"], hits_then_misses(8))

        deadline = time.monotonic() + BOUND
        stopped_at = time.monotonic() + 3
        while time.monotonic() < deadline:
            if stopped_at and time.monotonic() > stopped_at:
                await asyncio.to_thread(nodes["stopped"].stop)
                stopped_at = 0
            for instance, alert in await prometheus.firing():
                ever.setdefault(alert, set()).add(instance)
            if all(ever.get(alert, set()) >= wanted for alert, wanted in EXPECTED.items()):
                break
            await asyncio.sleep(0.5)
        empty = [query for query in dashboard_queries() if not await prometheus.query(grafana(query))]
        assert not [query for query in empty if not any(name in query for name in LEGITIMATELY_EMPTY)], empty
        unexpected = {alert: instances - EXPECTED.get(alert, set()) for alert, instances in ever.items()}
        missing = {alert: wanted - ever.get(alert, set()) for alert, wanted in EXPECTED.items()}
        assert not any(unexpected.values()) and not any(missing.values()), (
            {alert: instances for alert, instances in unexpected.items() if instances},
            {alert: instances for alert, instances in missing.items() if instances})
    finally:
        await traffic.stop()
        for _, writer in held:
            writer.close()
        await asyncio.gather(*(asyncio.to_thread(node.stop) for node in nodes.values()))
        if prometheus is not None:
            prometheus.stop()
        for origin in (good, denying, slow, slowish):
            await origin.stop()
        subprocess.run(["umount", "-l", str(read_only / "cache")], timeout=30, check=False)
        for mount in mounts:
            next(mount, None)


#: cgroup v1's cpu controller, and cgroup v2's root (where the `cpu` controller may be enabled for children)
CGROUP_V1, CGROUP_V2 = Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")


@contextlib.contextmanager
def cpu_starved_cgroup(name: str):
    """A cgroup whose processes share a tenth of one CPU, in quotas of 25 ms every 250 ms (a container whose
    CPU limit is too low for its load): its directory, or None where this machine lets the test make none.
    Removed on leaving, once its processes are gone."""
    group = None
    try:
        if (CGROUP_V1 / "cpu.cfs_quota_us").exists():
            group = CGROUP_V1 / name
            group.mkdir()
            (group / "cpu.cfs_period_us").write_text("250000")
            (group / "cpu.cfs_quota_us").write_text("25000")
        elif "cpu" in (CGROUP_V2 / "cgroup.controllers").read_text().split():
            (CGROUP_V2 / "cgroup.subtree_control").write_text("+cpu")
            group = CGROUP_V2 / name
            group.mkdir()
            (group / "cpu.max").write_text("25000 250000")
        if group is not None:  # a process can be moved in (a delegated cgroup v2 may refuse it)
            probe = subprocess.Popen(["sleep", "30"])
            try:
                (group / "cgroup.procs").write_text(str(probe.pid))
            finally:
                probe.kill()
                probe.wait(timeout=10)
    except OSError:
        if group is not None:  # made in part
            _removed(group)
        group = None
    try:
        yield group
    finally:
        if group is not None:
            _removed(group)


def _removed(group: Path) -> bool:
    """Remove a cgroup once its processes have left it (they do as they exit): whether it was."""
    for _ in range(100):
        try:
            group.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            time.sleep(0.1)
    return False


async def test_slow_hits_fire_on_a_cpu_starved_node(tmp_path):
    """EdgeHitLatencyP99High: a node in a cgroup with a tenth of a CPU, which a busy process shares (a noisy
    neighbour in the same container), serves the same 8 hits again and again; ~3 % of them wait a throttled
    period (~0.2 s), its scrapes still answer (~0.25 s). The alert fires there and nowhere else, and no
    other alert fires: a healthy node beside it serves the same traffic."""
    with cpu_starved_cgroup(f"edge-test-{tmp_path.name}") as group:
        if group is None:
            pytest.skip("no cgroup with a CPU quota can be made here (cgroup v1's cpu or v2's cpu.max, as root)")
        origin = await HTTPOrigin(files={"a.jpg": solid_image(64, 48, (200, 40, 40))}).start()
        nodes = {name: NodeProcess(node_config(tmp_path, name, origin.url)) for name in ("starved", "healthy")}
        traffic, prometheus, burner = Traffic(), Prometheus(tmp_path, {n: node.url for n, node in nodes.items()}), None
        try:
            await prometheus.ready()
            burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            starved = nodes["starved"].process.pid
            children = subprocess.run(["pgrep", "-P", str(starved)], capture_output=True, text=True, timeout=10)
            for pid in (starved, *map(int, children.stdout.split()), burner.pid):
                (group / "cgroup.procs").write_text(str(pid))
            for node in nodes.values():
                traffic.every(0.01, node, widths(repeat=8))
            deadline, ever = time.monotonic() + BOUND, set()
            while time.monotonic() < deadline and ("starved", "EdgeHitLatencyP99High") not in ever:
                ever |= await prometheus.firing()
                await asyncio.sleep(0.5)
            assert ever == {("starved", "EdgeHitLatencyP99High")}
        finally:
            await traffic.stop()
            if burner is not None:
                burner.kill()
                burner.wait(timeout=10)
            await asyncio.gather(*(asyncio.to_thread(node.stop) for node in nodes.values()))
            prometheus.stop()
            await origin.stop()


async def damage_one_output(node: NodeProcess, cache: Path) -> None:
    """One cache error, once: an output's value file cut short (a crash mid-write, a bad disk), then read."""
    client = AsyncHTTPClient(force_instance=True)
    try:
        made = await client.fetch(node.url + DAMAGED)
        await until_stored(cache, 1)
        (value_file,) = (cache / "outputs").rglob("*.val")
        value_file.write_bytes(value_file.read_bytes()[: len(made.body) // 2])
        assert (await client.fetch(node.url + DAMAGED)).body == made.body  # made again
    finally:
        client.close()


def hits_then_misses(urls: int):
    yield from (f"/tr:w-{10 + n % urls}/a.jpg" for n in range(100))
    yield from widths(start=200)


async def purge_every(url: str, seconds: float, stopping) -> None:
    client = AsyncHTTPClient(force_instance=True)
    deadline = time.monotonic() + BOUND
    try:
        while not stopping() and time.monotonic() < deadline:
            await client.fetch(url + "/_edge/purge", method="POST", body=b'{"url": "/a.jpg"}', raise_error=False,
                               headers={"Authorization": "Bearer t0ken-for-the-test"}, request_timeout=10)
            await asyncio.sleep(seconds)
    finally:
        client.close()
