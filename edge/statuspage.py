"""`GET /_edge/status`: one HTML page for a person without Grafana (no JavaScript).

Every number comes from the node's own metrics, aggregated over the workers as `/metrics` is, so the
page and a scrape never disagree. "Recent" figures are differences against a snapshot of those
metrics taken every `SNAPSHOT_SECONDS` and kept for `HISTORY_SECONDS`: the page compares now with the
newest snapshot at least `WINDOW_SECONDS` old (or with the node's start, on a younger node) and
says how long the window really is. Protected like the purge API: when `[admin] token` is set, it
wants that token (as a bearer token, or as the password of HTTP basic authentication, so that a
browser asks for it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from html import escape

from .metrics import ORIGIN_FAILURES, Metrics
from .settings import Secret

SNAPSHOT_SECONDS = 10.0
WINDOW_SECONDS = 300.0
#: enough for the newest snapshot `WINDOW_SECONDS` old to be kept: every one is held in memory
HISTORY_SECONDS = WINDOW_SECONDS + 2 * SNAPSHOT_SECONDS
#: the page is rendered at most this often; others get the last one (it reads every worker's values)
RENDER_SECONDS = 1.0
#: an origin is failing when over `FAILING_SHARE` of its recent fetches failed, denials apart, or over
#: `DENIED_SHARE` were denied: a client chooses the paths, and an origin denies some whatever the
#: credentials (one 403 made it failing)
FAILING_SHARE, DENIED_SHARE = 0.05, 0.5
#: an origin is slow when over this share of its recent fetches were abandoned by their clients
SLOW_SHARE = 0.5

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
#: the tiers whose hits answer a request without an origin (as the dashboard and `EdgeCacheHitRatioDrop` count them)
ANSWERING_TIERS = ("output", "not_found", "shared")


@dataclass(frozen=True)
class Snapshot:
    at: float
    samples: Samples

    @functools.cached_property
    def _index(self) -> dict[tuple[str, ...], list[tuple[dict[str, str], float]]]:
        """The samples by name, and by name, label and value: each figure of the page a lookup among a few, not a
        pass over them all (400 endpoints had taken 10 s of the worker for a page)."""
        index: dict[tuple[str, ...], list[tuple[dict[str, str], float]]] = defaultdict(list)
        for (name, labels), value in self.samples.items():
            sample = (dict(labels), value)
            index[(name,)].append(sample)
            for label in labels:
                index[(name, *label)].append(sample)
        return index

    def _matching(self, name: str, labels: dict[str, str]) -> list[tuple[dict[str, str], float]]:
        first = next(iter(labels.items()), None)
        wanted = labels.items()
        return [(ls, v) for ls, v in self._index.get((name, *first) if first else (name,), ()) if wanted <= ls.items()]

    def total(self, name: str, **labels: str) -> float:
        return sum(v for _, v in self._matching(name, labels))

    def values(self, name: str, label: str, **labels: str) -> set[str]:
        """The values of `label` among the samples of `name` that have `labels`."""
        return {ls[label] for ls, _ in self._matching(name, labels) if label in ls}

    def pairs(self, name: str, first: str, second: str) -> list[tuple[str, str]]:
        """The values of two labels found together among the samples of `name`, sorted."""
        return sorted({(ls[first], ls[second]) for ls, _ in self._matching(name, {}) if first in ls and second in ls})


def snapshot(metrics: Metrics, now: float | None = None) -> Snapshot:
    """The node's `edge_*` counters and gauges as last written (`Metrics.flush`; blocking: in multiprocess
    mode it reads every worker's files). Histograms, which the page does not show, would be most of a
    snapshot's memory."""
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in metrics.node_registry().collect()
               if family.name.startswith("edge_") and family.type != "histogram"
               for s in family.samples}
    return Snapshot(time.time() if now is None else now, samples)


class StatusHistory:
    def __init__(self, metrics: Metrics):
        self._metrics = metrics
        self._snapshots: deque[Snapshot] = deque()
        self._page: tuple[float, str] | None = None

    async def take(self) -> None:
        taken = await self._snapshot()
        self._snapshots.append(taken)
        while self._snapshots and taken.at - self._snapshots[0].at > HISTORY_SECONDS:
            self._snapshots.popleft()

    async def _snapshot(self, now: float | None = None) -> Snapshot:
        self._metrics.flush()  # here on the IOLoop, where the counts are gathered, not in the thread
        return await asyncio.to_thread(snapshot, self._metrics, now)

    def baseline(self, now: float, started: float) -> Snapshot:
        """The newest snapshot at least `WINDOW_SECONDS` old; on a node younger than that, its start
        (every counter was 0; a worker's own first snapshot may come after another worker's requests);
        else the oldest snapshot (this worker was restarted since)."""
        older = [s for s in self._snapshots if now - s.at >= WINDOW_SECONDS]
        if older:
            return older[-1]
        if not self._snapshots or now - started <= WINDOW_SECONDS:
            return Snapshot(started or now, {})
        return self._snapshots[0]

    async def page(self) -> str:
        now = time.time()
        if self._page is None or now - self._page[0] >= RENDER_SECONDS:
            current = await self._snapshot(now)
            # in a thread: a page of many endpoints is many figures, and the worker's other requests go on meanwhile
            self._page = (now, await asyncio.to_thread(render, current,
                                                       self.baseline(now, current.total("edge_start_time_seconds"))))
        return self._page[1]


def authorized(authorization: str | None, token: Secret) -> bool:
    """The admin token as a bearer token (as for purges), or as the password of basic authentication
    (any user name), which a browser asks for."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return token.is_bearer_of(authorization)
    try:
        password = base64.b64decode(given.strip(), validate=True).decode().partition(":")[2]
    except (binascii.Error, UnicodeDecodeError):
        return False
    return token.is_bearer_of(f"Bearer {password}")


# -- the page ---------------------------------------------------------------------------------------

def render(now: Snapshot, before: Snapshot) -> str:
    window = now.at - before.at

    def recent(name: str, **labels: str) -> float:
        return max(0.0, now.total(name, **labels) - before.total(name, **labels))

    build = next((dict(ls) for (n, ls) in now.samples if n == "edge_build_info"), {})
    started = now.total("edge_start_time_seconds")
    sections = [
        _metrics_lost(now),
        _summary(now, build, started, recent),
        _endpoints(now, recent, window),
        _tiers(now, recent, window),
        _origins(now, recent, window),
    ]
    return PAGE.format(version=escape(build.get("version", "?")), body="\n".join(sections))


def _cell(key: str, value: float, text: str | None = None) -> str:
    """A number, with its exact value in `data-value` for machines (the tests read them)."""
    shown = text if text is not None else f"{value:.0f}"
    return f'<td data-key="{escape(key)}" data-value="{value:g}">{escape(shown)}</td>'


def _summary(now: Snapshot, build: dict[str, str], started: float, recent) -> str:
    def hit_ratio(key: str, value_of) -> str:
        # a 404 the negative cache remembers, and the shared tier's answers, answered without an origin too, as the
        # dashboard and the alert count them
        hits = sum(value_of("edge_cache_requests_total", tier=tier, result="hit") for tier in ANSWERING_TIERS)
        lookups = value_of("edge_cache_requests_total", tier="output")
        return _cell(key, hits / lookups if lookups else 0, f"{100 * hits / lookups:.1f} %" if lookups else "–")

    rows = [
        ("Version", f"<td>edge {escape(build.get('version', '?'))}, libvips {escape(build.get('libvips', '?'))}, "
                    f"Python {escape(build.get('python', '?'))}</td>"),
        ("Uptime", _cell("uptime_seconds", now.at - started, _duration(now.at - started)) if started else "<td>–</td>"),
        ("Config loaded", _config_loaded(now)),
        ("Workers", _cell("workers", now.total("edge_workers"))),
        ("Workers replaced", _worker_restarts(now.total("edge_worker_restarts"))),
        ("Memory (all workers)", _cell("resident_memory_bytes", now.total("edge_process_resident_memory_bytes"),
                                       _bytes(now.total("edge_process_resident_memory_bytes")))),
        ("Requests in flight", _cell("inflight", now.total("edge_inflight_requests"))),
        ("Output hit ratio, recent", hit_ratio("hit_ratio_recent", recent)),
        ("Output hit ratio, since start", hit_ratio("hit_ratio_total", now.total)),
    ]
    return "<h2>Node</h2>\n<table class=kv>" + "".join(f"<tr><th>{k}</th>{v}</tr>" for k, v in rows) + "</table>"


def _worker_restarts(restarts: float) -> str:
    """Workers that exited on their own since the node started (a crash, the OOM killer, `worker_timeout`): a node
    whose workers keep dying had looked as healthy here as any."""
    return _cell("worker_restarts", restarts, f"{restarts:.0f} since start, having exited on their own; the node's "
                                              "log says why" if restarts else "none")


def _metrics_lost(now: Snapshot) -> str:
    """Said first when some workers' values are missing: the page had shown a node serving every request as one
    of no worker, no version and no memory (`Workers 0`), saying nothing of why."""
    lost = now.total("edge_metrics_values_lost")
    if not lost:
        return ""
    return (f'<p class=failing data-key="metrics_values_lost" data-value="{lost:g}">The metric values of {lost:.0f} '
            "worker(s) found no room in the temporary folder (<code>TMPDIR</code>): every figure below is too low "
            "or missing. The node's log says where; make room there, then reload (SIGHUP).</p>")


def _config_loaded(now: Snapshot) -> str:
    """How long ago the config served was loaded, and whether the last SIGHUP's was refused."""
    ago = now.at - now.total("edge_config_last_reload_success_timestamp_seconds")
    refused = not now.total("edge_config_last_reload_successful")
    return _cell("config_loaded_seconds_ago", ago, f"{_duration(ago)} ago"
                 + ("; the last reload was refused: the node's log says why" if refused else ""))


def _endpoints(now: Snapshot, recent, window: float) -> str:
    rows = []
    for endpoint in sorted(now.values("edge_http_requests_total", "endpoint")):
        statuses = now.values("edge_http_requests_total", "status", endpoint=endpoint)
        cells = []
        for scope, value_of in (("recent", recent), ("total", now.total)):
            requests = value_of("edge_http_requests_total", endpoint=endpoint)
            client = sum(value_of("edge_http_requests_total", endpoint=endpoint, status=s) for s in statuses
                         if s.startswith("4"))
            server = sum(value_of("edge_http_requests_total", endpoint=endpoint, status=s) for s in statuses
                         if s.startswith("5"))
            cells += [_cell(f"requests_{scope}:{endpoint}", requests), _cell(f"4xx_{scope}:{endpoint}", client),
                      _cell(f"5xx_{scope}:{endpoint}", server)]
        rows.append(f"<tr><th>{escape(endpoint)}</th>{''.join(cells)}</tr>")
    return (f"<h2>Requests by endpoint</h2>\n<table><tr><th rowspan=2>endpoint</th>"
            f"<th colspan=3>last {_duration(window)}</th><th colspan=3>since start</th></tr>"
            "<tr><th>requests</th><th>4xx</th><th>5xx</th><th>requests</th><th>4xx</th><th>5xx</th></tr>"
            + "".join(rows) + "</table>")


def _tiers(now: Snapshot, recent, window: float) -> str:
    rows = []
    for tier in sorted(now.values("edge_cache_budget_bytes", "tier")):
        size, budget = now.total("edge_cache_size_bytes", tier=tier), now.total("edge_cache_budget_bytes", tier=tier)
        used = min(100.0, 100 * size / budget) if budget else 0.0
        rows.append(f"<tr><th>{escape(tier)}</th>{_cell(f'entries:{tier}', now.total('edge_cache_entries', tier=tier))}"
                    f"{_cell(f'size_bytes:{tier}', size, _bytes(size))}{_cell(f'budget_bytes:{tier}', budget, _bytes(budget))}"
                    f'<td><span class=bar><span style="width:{used:.0f}%"></span></span> {used:.0f} %</td></tr>')
    free, disk = now.total("edge_cache_filesystem_free_bytes"), now.total("edge_cache_filesystem_size_bytes")
    return ("<h2>Cache</h2>\n<table><tr><th>tier</th><th>entries</th><th>size</th><th>budget</th><th>used</th></tr>"
            + "".join(rows) + f"</table>\n<p>Filesystem: {_bytes(free)} free of {_bytes(disk)}.</p>\n"
            + _cache_errors(now, recent, window))


def _cache_errors(now: Snapshot, recent, window: float) -> str:
    """The cache's recent failures by tier and kind, and the shared tier's and the peers' purge calls': a folder
    gone or a disk full showed empty, healthy tiers, and a shared tier down nothing at all (the node serves on,
    storing less: `/_edge/ready` says `cache degraded` for its own tiers)."""
    failures = [*_recent(now, recent, "edge_cache_errors_total", "tier", "kind"),
                *_recent(now, recent, "edge_shared_cache_failures_total", "operation", "kind", "shared cache"),
                *_recent(now, recent, "edge_fleet_purge_calls_total", "peer", "outcome", "purge sent to", fine="ok")]
    if not failures:
        return f"<p>No cache errors in the last {_duration(window)}.</p>"
    items = "".join(f'<li data-key="{escape(key)}" data-value="{count:g}">{escape(text)}, {count:.0f}</li>'
                    for key, text, count in failures)
    return (f"<p class=failing>Cache errors in the last {_duration(window)}: the node serves, storing less or nothing "
            f"(its log says why):</p><ul>{items}</ul>")


def _recent(now: Snapshot, recent, metric: str, first: str, second: str, prefix: str = "",
            fine: str | None = None) -> list[tuple[str, str, float]]:
    """(data-key, text, count) of each pair of `metric`'s two labels counted recently, but `second` = `fine`."""
    counted = [(a, b, recent(metric, **{first: a, second: b}))
               for a, b in now.pairs(metric, first, second) if b != fine]
    key = metric.removeprefix("edge_").removesuffix("_total")
    return [(f"{key}:{a}:{b}", f"{prefix} {a}: {b}".strip(), count) for a, b, count in counted if count]


def _origins(now: Snapshot, recent, window: float) -> str:
    rows = []
    for origin in sorted(now.values("edge_origin_fetches_total", "origin")):
        fetches = recent("edge_origin_fetches_total", origin=origin)
        kinds = {kind: recent("edge_origin_fetches_total", origin=origin, outcome=kind) for kind in ORIGIN_FAILURES}
        failures = sum(kinds.values())
        abandoned = recent("edge_origin_fetches_total", origin=origin, outcome="abandoned")
        health = _origin_health(fetches, failures, kinds["denied"], abandoned)
        described = ", ".join(f"{kind} {n:.0f}" for kind, n in (*kinds.items(), ("abandoned", abandoned)) if n) or "–"
        rows.append(f"<tr><th>{escape(origin)}</th><td class={health} data-key='health:{escape(origin)}'>{health}</td>"
                    f"{_cell(f'fetches_recent:{origin}', fetches)}{_cell(f'failures_recent:{origin}', failures)}"
                    f"<td>{escape(described)}</td>"
                    f"{_cell(f'fetches_total:{origin}', now.total('edge_origin_fetches_total', origin=origin))}</tr>")
    return (f"<h2>Origins</h2>\n<table><tr><th>origin</th><th>health</th><th>fetches, last {_duration(window)}</th>"
            "<th>failures</th><th>by kind</th><th>fetches since start</th></tr>" + "".join(rows) + "</table>")


def _origin_health(fetches: float, failures: float, denied: float, abandoned: float) -> str:
    """`idle`, `failing`, `slow` or `ok`, from an origin's recent fetches (`FAILING_SHARE`, `SLOW_SHARE`)."""
    if not fetches:
        return "idle"
    if (failures - denied) / fetches > FAILING_SHARE or denied / fetches > DENIED_SHARE:
        return "failing"
    return "slow" if abandoned / fetches > SLOW_SHARE else "ok"


def _bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


PAGE = """<!doctype html>
<html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width">
<title>edge {version} status</title>
<style>
body {{ font: 15px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #111; background: #fff; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin-top: 1.6em; }}
table {{ border-collapse: collapse; }} th, td {{ padding: .25em .8em; border-bottom: 1px solid #ddd; text-align: right; }}
th:first-child {{ text-align: left; }} table.kv td {{ text-align: left; }}
.ok {{ color: #176f2c; }} .failing {{ color: #b00020; font-weight: bold; }} .idle {{ color: #666; }}
.slow {{ color: #a15c00; font-weight: bold; }}
.bar {{ display: inline-block; width: 8em; height: .8em; background: #e5e7eb; vertical-align: middle; }}
.bar span {{ display: block; height: 100%; background: #2563eb; }}
</style></head>
<body><h1>edge image node: status</h1>
{body}
<p>Every figure is the whole node's, from the same values as /metrics.</p>
</body></html>
"""
