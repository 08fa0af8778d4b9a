"""`/metrics` of a node with two workers, parsed as Prometheus parses it, after a known sequence of
requests: every count is the whole node's, whichever worker answered."""

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytest_asyncio
import yaml
from prometheus_client import Counter, Gauge, Histogram, generate_latest
from tornado.httpclient import AsyncHTTPClient

from edge.config import load_config
from edge.metrics import Metrics
from edge.pluginmanager import load_plugins
from tests.assets import colour, solid
from tests.nodes import NodeProcess, local_config, until_stored, web_config, write_config
from tests.scrape import samples, scrape, scrape_until, scrape_when, total
from tests.servers import HTTPOrigin

WAIT_LIMIT = 30
OTHER_ENDPOINT = '[[endpoints]]\nid = "other"\norigins = ["web"]\n'
PROMTOOL = shutil.which("promtool")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def metrics_after_a_known_sequence(tmp_path_factory):
    """(exposition text, response sizes): the sequence runs once, against a 2-worker node."""
    tmp_path = tmp_path_factory.mktemp("metrics")
    origin = await HTTPOrigin(files={"a.jpg": solid(120, 80, colour(3)), "b.jpg": solid(90, 60, colour(4))}).start()
    node = NodeProcess(write_config(tmp_path, web_config(origin.url, "[server]\nworkers = 2\n", after=OTHER_ENDPOINT)))
    client = AsyncHTTPClient(force_instance=True)
    sent = []
    try:
        async def get(path: str, status: int) -> None:
            # a new connection each time, so that both workers answer some
            response = await client.fetch(node.url + path, raise_error=False, headers={"Connection": "close"})
            assert response.code == status, (path, response.code, response.body)
            sent.append(len(response.body))

        await get("/tr:w-50/a.jpg", 200)  # output miss, original miss, origin found, transform
        # stored after the answer: until then a request on the other worker waits for the store (a coalesced miss)
        await until_stored(tmp_path / "cache", 1)
        await until_stored(tmp_path / "cache", 1, tier="originals")
        for _ in range(3):
            await get("/tr:w-50/a.jpg", 200)  # output hits
        await get("/tr:w-60/a.jpg", 200)  # output miss, original hit, transform
        await get("/tr:w-60,f-png/a.jpg", 200)  # output miss, original hit, transform to PNG
        await get("/tr:w-50/gone.jpg", 404)  # origin not found
        await get("/tr:w-70/gone.jpg", 404)  # the negative cache answers
        origin.behaviour.status = 500
        await get("/tr:w-50/b.jpg", 502)  # origin error
        origin.behaviour.status = None
        await scrape_when(node.url, "edge_http_requests_total", 9)
        # every tier's count in the same text: the tiers of a worker's refresh used to be set one by one
        entries = {"output": 3, "original": 1, "not_found": 1}
        text = await scrape_until(node.url, lambda text: all(
            total(text, "edge_cache_entries", tier=tier) == count for tier, count in entries.items()),
            f"edge_cache_entries {entries}")
    finally:
        client.close()
        node.stop()
        await origin.stop()
    return text, sent


@pytest.fixture
def exposition(metrics_after_a_known_sequence):
    return metrics_after_a_known_sequence[0]


def only(text, name, **labels):
    found = samples(text, name, **labels)
    assert len(found) <= 1, found
    return sum(found.values())


@pytest.mark.parametrize("name, labels, expected", [
    ("edge_http_requests_total", {"endpoint": "default", "status": "200"}, 6),
    ("edge_http_requests_total", {"endpoint": "default", "status": "404"}, 2),
    ("edge_http_requests_total", {"endpoint": "default", "status": "502"}, 1),
    ("edge_http_request_duration_seconds_count", {"endpoint": "default", "cache": "hit"}, 3),
    ("edge_http_request_duration_seconds_count", {"endpoint": "default", "cache": "miss"}, 3),
    ("edge_http_request_duration_seconds_count", {"endpoint": "default", "cache": "error"}, 3),  # 404s, 502
    ("edge_not_found_total", {"endpoint": "default"}, 2),
    ("edge_origin_fetches_total", {"origin": "web", "outcome": "found"}, 1),
    ("edge_origin_fetches_total", {"origin": "web", "outcome": "not_found"}, 1),
    ("edge_origin_fetches_total", {"origin": "web", "outcome": "server_error"}, 1),
    ("edge_origin_fetches_total", {"origin": "web", "outcome": "refused"}, 0),  # series exist from the start
    ("edge_origin_fetches_total", {"origin": "web", "outcome": "denied"}, 0),
    ("edge_cache_evictions_total", {"tier": "output"}, 0),
    ("edge_cache_evictions_total", {"tier": "not_found"}, 0),
    ("edge_cache_requests_total", {"tier": "original", "result": "stale"}, 0),
    ("edge_http_requests_total", {"endpoint": "default", "status": "504"}, 0),
    ("edge_response_bytes_total", {"endpoint": "other"}, 0),
    ("edge_not_found_total", {"endpoint": "other"}, 0),
    ("edge_workers", {}, 2),
    ("edge_origin_fetch_duration_seconds_count", {"origin": "web", "outcome": "found"}, 1),
    ("edge_cache_requests_total", {"tier": "output", "result": "hit"}, 3),
    ("edge_cache_requests_total", {"tier": "output", "result": "miss"}, 6),
    ("edge_cache_requests_total", {"tier": "original", "result": "hit"}, 2),
    ("edge_cache_requests_total", {"tier": "original", "result": "miss"}, 3),
    ("edge_cache_requests_total", {"tier": "not_found", "result": "hit"}, 1),
    ("edge_transform_duration_seconds_count", {"format": "jpg"}, 2),
    ("edge_transform_duration_seconds_count", {"format": "png"}, 1),
    ("edge_coalesced_requests_total", {}, 0),
    ("edge_inflight_requests", {}, 0),
    ("edge_cache_entries", {"tier": "output"}, 3),
    ("edge_cache_entries", {"tier": "original"}, 1),
    ("edge_cache_entries", {"tier": "not_found"}, 1),
])
def test_counts_after_a_known_sequence(exposition, name, labels, expected):
    assert only(exposition, name, **labels) == expected


def test_every_cache_error_series_is_there_at_0_before_the_first_error(exposition):
    """An alert's `increase()` sees a tier's first error only in a series that existed before it: the
    purge records' tier (`purges`) had none until its first failure."""
    for tier in ("output", "original", "not_found", "purges", "memory", "folder", "flight"):
        for kind in ("full", "unwritable", "corrupt", "damaged", "busy", "io", "unavailable"):
            found = samples(exposition, "edge_cache_errors_total", tier=tier, kind=kind)
            assert list(found.values()) == [0], (tier, kind)


def test_every_cache_lookup_and_too_large_series_is_there_at_0_from_the_start(tmp_path):
    """The hit ratio counts `tier=~"output|not_found"` hits, which `increase()` sees only in a series there
    before them: the not_found tier's had once been left out with a loop folded into another."""
    metrics = Metrics()
    metrics.initialise(load_config(write_config(tmp_path, web_config("http://127.0.0.1:9")), load_plugins()),
                       ("output", "original", "not_found"), libvips="8.18.0")
    text = generate_latest(metrics.registry).decode()
    assert samples(text, "edge_cache_requests_total") == {
        (("result", result), ("tier", tier)): 0 for tier, results in
        (("output", ("hit", "miss", "stale")), ("original", ("hit", "miss", "stale")), ("not_found", ("hit", "miss")))
        for result in results}
    for name in ("edge_cache_too_large_total", "edge_dropped_stores_total"):  # (the latter had none: SRE probe)
        assert samples(text, name) == {(("tier", "output"),): 0, (("tier", "original"),): 0}, name


def test_every_series_an_alert_names_is_there_before_its_first_count(exposition):
    """`increase()` misses a series' first sample: a series an alert selects by an exact label value must
    exist at 0 before it counts (a node's first 500s had not fired `EdgeInternalErrors`)."""
    rules = yaml.safe_load((Path(__file__).parents[1] / "conf" / "prometheus-alerts.yml").read_text())
    named = {(name, tuple(sorted(re.findall(r'(\w+)="([^"]*)"', matchers))))
             for group in rules["groups"] for rule in group["rules"]
             for name, matchers in re.findall(r"(edge_\w+)\{([^}]*)\}", rule["expr"])}
    # by an exact value but the job's (a peer's or the shared tier's series exist with their config only)
    exact = {(name, kept) for name, labels in named if (kept := tuple(pair for pair in labels if pair[0] != "job"))}
    assert ("edge_http_requests_total", (("status", "500"),)) in exact
    missing = [(name, labels) for name, labels in exact if not samples(exposition, name, **dict(labels))]
    assert not missing


def test_bytes_and_sizes(metrics_after_a_known_sequence):
    text, sent = metrics_after_a_known_sequence
    assert only(text, "edge_response_bytes_total", endpoint="default") == sum(sent[:6])
    assert only(text, "edge_cache_size_bytes", tier="output") > 0
    assert only(text, "edge_cache_budget_bytes", tier="original") == 10**9
    assert 0 < only(text, "edge_cache_filesystem_free_bytes") <= only(text, "edge_cache_filesystem_size_bytes")


def test_build_info_and_the_workers_processes(exposition):
    import platform

    import pyvips

    import edge

    libvips = ".".join(str(pyvips.version(i)) for i in range(3))
    assert samples(exposition, "edge_build_info") == {
        (("libvips", libvips), ("python", platform.python_version()), ("version", edge.__version__)): 1}
    # summed over the two live workers (sampled every second)
    assert only(exposition, "edge_process_resident_memory_bytes") > 2 * 20 * 10**6
    assert only(exposition, "edge_process_open_fds") >= 2 * 5
    assert only(exposition, "edge_process_cpu_seconds_total") > 0
    assert 0 < time.time() - only(exposition, "edge_start_time_seconds") < 600


async def test_one_worker_exports_the_series_several_do(node_factory, tmp_path):
    """Kept in its own memory, one worker's counters each had a `*_created` series too (133), which the
    multiprocess files of several never have (docs probe)."""
    node = await node_factory(write_config(tmp_path, local_config()))
    assert (await node.fetch("/tr:w-10/coffee.jpg")).code == 200
    text = (await node.fetch("/metrics")).body.decode()
    assert "edge_http_requests_total{" in text and "_created" not in text


def test_labels_are_bounded(exposition):
    for family_samples in (samples(exposition, name) for name in
                           {line.split("{")[0].split(" ")[0] for line in exposition.splitlines()
                            if line.startswith("edge_")}):
        for labels in family_samples:
            for label, value in labels:
                assert "/" not in value and ".jpg" not in value, (label, value)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus)")
def test_promtool_accepts_the_exposition(exposition):
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=exposition, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_metrics_on_their_own_port(tmp_path):
    """`[server] metrics_port`: the whole node's metrics there, and not on the port the world sees."""
    origin = await HTTPOrigin(files={"a.jpg": solid(120, 80, colour(3))}).start()
    node = NodeProcess(write_config(tmp_path, web_config(origin.url, "[server]\nworkers = 2\nmetrics_port = 0\n")))
    client = AsyncHTTPClient(force_instance=True)
    try:
        metrics_url = node.wait_for_log(r"metrics on (http://\S+)/metrics").group(1)
        assert metrics_url != node.url
        assert (await client.fetch(node.url + "/tr:w-20/a.jpg")).code == 200
        text = await scrape_when(metrics_url, "edge_http_requests_total", 1, status="200")
        assert only(text, "edge_workers") == 2
        elsewhere = await client.fetch(node.url + "/metrics", raise_error=False)
        assert (elsewhere.code, elsewhere.body) == (404, b"not found\n")
        assert dict(origin.requests) == {"a.jpg": 1}  # /metrics on the main port never reached the origin
    finally:
        client.close()
        node.stop()
        await origin.stop()


async def test_metrics_on_their_own_address(tmp_path):
    """`[server] metrics_host`: a node behind a proxy on its machine (127.0.0.1) scraped from another had its
    metrics there too: the shipped systemd config could not be scraped (SRE probe). Here on every address."""
    node = NodeProcess(write_config(tmp_path, local_config(
        before='[server]\nmetrics_port = 0\nmetrics_host = "0.0.0.0"\n')))
    try:
        port = int(node.wait_for_log(r"metrics on http://0\.0\.0\.0:(\d+)/metrics").group(1))
        assert only(await scrape(f"http://127.0.0.1:{port}"), "edge_workers") == 1
        assert node.url.startswith("http://127.0.0.1:")  # the images' port where it was
    finally:
        node.stop()


async def test_a_worker_that_dies_is_counted_and_a_reload_is_not(tmp_path):
    """A worker killed (the OOM killer's SIGKILL) was replaced without a trace in /metrics: the replacement
    counts itself from zero and `edge_workers` read 2 throughout. `edge_worker_restarts` counts it; a
    SIGHUP's new workers are no restart."""
    origin = await HTTPOrigin(files={"a.jpg": solid(120, 80, colour(3))}).start()
    node = NodeProcess(write_config(tmp_path, web_config(origin.url, "[server]\nworkers = 2\n")))
    try:
        assert only(await scrape_when(node.url, "edge_workers", 2), "edge_worker_restarts") == 0
        workers = Path(f"/proc/{node.process.pid}/task/{node.process.pid}/children").read_text().split()
        os.kill(int(workers[0]), signal.SIGKILL)
        # said as what it most often is (a container's OOM kills had shown as bare exits)
        node.wait_for_log(r"exited with status -9; restarted \(killed by SIGKILL: most often the kernel's OOM killer")
        await scrape_when(node.url, "edge_worker_restarts", 1)
        node.process.send_signal(signal.SIGHUP)
        node.wait_for_log(r"config reloaded from")
        for _ in range(4):  # whichever worker answers
            assert only(await scrape(node.url), "edge_worker_restarts") == 1
    finally:
        node.stop()
        await origin.stop()


async def test_batched_counts_and_observations_equal_direct_ones():
    # the hot path's `add`/`observe` write once per IOLoop turn, through prometheus-client's histogram
    # internals (its per-bucket values and sum): this pins that they add up as `observe` would
    from edge.metrics import LATENCY_BUCKETS, Metrics

    batched, direct = Metrics(), Metrics()
    values = [0.0004, *LATENCY_BUCKETS, 0.003, 0.003, 45.0]  # bounds themselves belong to their bucket
    for value in values:
        batched.observe(batched.http_duration, ("default", "hit"), value)
        batched.add(batched.http_requests, ("default", "200"))
        direct.http_duration.labels("default", "hit").observe(value)
        direct.http_requests.labels("default", "200").inc()
    batched.add(batched.response_bytes, ("default",), 1234)
    direct.response_bytes.labels("default").inc(1234)
    written, expected = batched.exposition().decode(), direct.exposition().decode()  # a read writes first
    for name in ("edge_http_request_duration_seconds_bucket", "edge_http_request_duration_seconds_sum",
                 "edge_http_request_duration_seconds_count", "edge_http_requests_total", "edge_response_bytes_total"):
        assert samples(written, name) == samples(expected, name), name
    await asyncio.sleep(0)
    batched.add(batched.http_requests, ("default", "200"))
    await asyncio.sleep(0)  # written at the end of the turn, without a read
    assert samples(generate_latest(batched.registry).decode(), "edge_http_requests_total",
                   status="200") == {(("endpoint", "default"), ("status", "200")): len(values) + 1}


async def test_a_flood_of_scrapes_costs_one_text_per_interval_and_none_is_older_than_its_scrape():
    """A /metrics text costs ~2.5 ms of CPU for 2 workers; a flood of scrapes on the main port took
    cache hits from 12 177 to 234 a second when each scrape made its own."""
    from edge import metrics as edge_metrics

    metrics = edge_metrics.Metrics()
    made = []
    exposition = metrics.exposition
    metrics.exposition = lambda: made.append(1) or exposition()
    first = await metrics.scraped()
    metrics.add(metrics.http_requests, ("default", "200"))
    flood = await asyncio.gather(*(metrics.scraped() for _ in range(50)))  # sooner: they wait for the next
    assert len(made) == 2 and all(text is flood[0] for text in flood) and flood[0] is not first
    assert samples(flood[0].decode(), "edge_http_requests_total", status="200") == {
        (("endpoint", "default"), ("status", "200")): 1}


ROOT = Path(__file__).resolve().parent.parent
#: identifiers in the docs that start with `edge_` and are no metric: packages, entry points, upstreams
NOT_METRICS = {"edge_builtin_origins", "edge_origin_types", "edge_azure_blob", "edge_sqlite_origin", "edge_node",
               "edge_nodes", "edge_admin"}


def registered() -> dict[str, tuple[str, set[str]]]:
    """Every metric a node exposes: name as scraped → (type, label names)."""
    found = {}
    for metric in vars(Metrics()).values():
        if isinstance(metric, (Counter, Gauge, Histogram)):
            kind = {Counter: "counter", Gauge: "gauge", Histogram: "histogram"}[type(metric)]
            found[metric._name + ("_total" if kind == "counter" else "")] = (kind, set(metric._labelnames))
    for family in Metrics().registry.collect():  # and those read as the text is made (`_NotesCollector`)
        name = family.name + ("_total" if family.type == "counter" else "")
        found.setdefault(name, (family.type, {label for sample in family.samples for label in sample.labels}))
    return found


def test_the_metrics_table_of_docs_operations_md_is_what_the_node_registers():
    """Every row of the table (name, type, labels) and every metric in a row, both ways."""
    table = {}
    for names, kind, labels in re.findall(r"^\| (`edge_[^|]*) \| (\w+) \| ([^|]*) \|",
                                          (ROOT / "docs" / "operations.md").read_text(), re.M):
        # labels are written `name` or `name` (`value`/`value`), comma-separated; `—` for none
        label_names = set(re.findall(r"(?:^|, )`(\w+)`", re.sub(r"\([^)]*\)", "", labels.strip())))
        table.update({name: (kind, label_names) for name in re.findall(r"`(edge_\w+)`", names)})
    assert table == registered()


def promql_of_the_repository() -> list[tuple[str, str]]:
    """(where, text) of everything naming a metric: the docs, the alert rules, the dashboard's queries."""
    texts = [(str(p.relative_to(ROOT)), p.read_text()) for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]]
    texts.append(("conf/prometheus-alerts.yml", (ROOT / "conf" / "prometheus-alerts.yml").read_text()))
    dashboard = (ROOT / "conf" / "grafana-dashboard.json").read_text()
    queries = re.findall(r'"(?:expr|query)": (".*?(?<!\\)")', dashboard)
    texts.append(("conf/grafana-dashboard.json", "\n".join(json.loads(query) for query in queries)))
    return texts


@pytest.mark.parametrize("where, text", promql_of_the_repository(),
                         ids=[where for where, _ in promql_of_the_repository()])
def test_every_metric_the_docs_alerts_and_dashboard_name_exists_with_the_labels_they_select(where, text):
    metrics = registered()
    series = {}  # every name a scrape shows: a histogram's _bucket, _count and _sum
    for name, (kind, labels) in metrics.items():
        series[name] = labels
        if kind == "histogram":
            series.update({name + "_bucket": labels | {"le"}, name + "_count": labels, name + "_sum": labels})
    for match in re.finditer(r"\b(edge_[a-z_]+)(?:\{([^}]*)\})?", text):
        name, selector = match.groups()
        if name in NOT_METRICS:
            continue
        assert name in series, f"{where}: {name} is no metric of the node"
        for label in re.findall(r"([a-z_]+)\s*(?:=~|!=|!~|=)", selector or ""):
            assert label in series[name] | {"instance", "job"}, f"{where}: {name} has no label {label}"


@pytest.mark.parametrize("between", ["glob and size", "size and read"])
def test_a_worker_reaped_while_the_folder_is_read_leaves_the_others_counted(tmp_path, monkeypatch, between):
    """The supervisor removes a dead worker's live gauge files (`mark_process_dead`) whenever it reaps one,
    and the worker that takes its slot creates them again, empty at first, while a live worker may be
    reading the folder for a scrape or a status snapshot: a file listed, then removed before it was sized,
    raised FileNotFoundError, and one sized, then removed and created again before it was read,
    struct.error: the scrape a 500, the status page too, and a starting worker's first snapshot killed it."""
    import glob

    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    from edge.metrics import _WorkersCollector

    def write(name, metric, sample, value):
        values = MmapedDict(str(tmp_path / name))
        values.write_value(mmap_key(metric, sample, [], [], "help"), value, 0.0)
        values.close()

    for slot in (0, 1):  # two workers' files, as prometheus-client writes them
        write(f"counter_slot{slot}.db", "edge_coalesced_requests", "edge_coalesced_requests_total", 5 + slot)
        write(f"gauge_livesum_slot{slot}.db", "edge_workers", "edge_workers", 1)
    reaped = tmp_path / "gauge_livesum_slot1.db"
    if between == "glob and size":
        listed = glob.glob

        def listed_then_reaped(pattern):
            found = listed(pattern)
            reaped.unlink(missing_ok=True)
            return found
        monkeypatch.setattr(glob, "glob", listed_then_reaped)
    else:
        sized = os.path.getsize

        def sized_then_replaced(path):
            size = sized(path)
            if path == str(reaped) and size:
                reaped.unlink()
                reaped.touch()  # the replacement's, not sized yet
            return size
        monkeypatch.setattr(os.path, "getsize", sized_then_replaced)
    families = {family.name: family for family in _WorkersCollector(None, path=str(tmp_path)).collect()}
    assert [s.value for s in families["edge_coalesced_requests"].samples] == [11]  # the dead worker's counts stay
    assert [s.value for s in families["edge_workers"].samples] == [1]


TURNS = 20_000


async def test_status_snapshots_taken_while_the_worker_counts_neither_lose_nor_repeat_a_count():
    """The status page reads the node's metrics in a thread (in multiprocess mode they are files to read),
    and that read first wrote what `add` had gathered on the IOLoop, from the thread: a count added as the
    thread took them was counted twice or lost (threads switched often: 1 000 000 counts read as 1 000 012
    to 1 000 216)."""
    from edge.statuspage import StatusHistory

    metrics = Metrics()
    history = StatusHistory(metrics)
    counting = True

    async def snapshots():
        while counting:
            await history.take()
    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # the thread and the IOLoop interleaved as finely as a loaded machine may
    try:
        taking = asyncio.ensure_future(snapshots())
        for _ in range(TURNS):  # IOLoop turns, each answering 50 requests
            for status in ("200", "304", "404", "200", "200") * 10:
                metrics.add(metrics.http_requests, ("default", status))
            await asyncio.sleep(0)
        counting = False
        await taking
    finally:
        sys.setswitchinterval(switching)
    assert total(metrics.exposition().decode(), "edge_http_requests_total") == TURNS * 50


async def test_a_bug_is_counted_as_500_on_its_endpoint_whose_series_was_there(node_factory, tmp_path, monkeypatch):
    """A 500 is the node's bug: counted on the endpoint `-` (no answer, no endpoint), a series born above 0,
    and `EdgeInternalErrors` (an `increase()`) missed it."""
    from tests.nodes import local_config
    running = await node_factory(write_config(tmp_path, local_config()))
    requests = running.node.metrics.http_requests
    # in the text before any request (`labels()` would make the series it reads: a mutation audit, where one
    # leaving the endpoint `-` out survived that)
    before = samples(running.node.metrics.exposition().decode(), "edge_http_requests_total")
    assert before[(("endpoint", "default"), ("status", "500"))] == before[(("endpoint", "-"), ("status", "500"))] == 0

    def bug(call):
        raise RuntimeError("a bug")
    monkeypatch.setattr(running.node.pipeline, "_planned", bug)
    response = await running.fetch("/tr:w-20/coffee.jpg")
    assert (response.code, response.body) == (500, b"internal error\n")
    assert requests.labels("default", "500")._value.get() == 1


def test_the_cpu_seconds_count_each_second_of_cpu_once(monkeypatch):
    """Sampled every second, the counter grows by the CPU time used since the last sample, not by the total so far
    (a mutation audit: one adding the total at each sample, a `rate()` of many times the CPU, survived)."""
    metrics = Metrics()
    readings = iter((1.0, 1.5, 1.5, 4.0))
    monkeypatch.setattr(time, "process_time", lambda: next(readings))
    for counted in (1.0, 1.5, 1.5, 4.0):
        metrics.sample_process()
        assert total(metrics.exposition().decode(), "edge_process_cpu_seconds_total") == counted
