"""Prometheus metrics: every name the node exports, defined in one place (see `docs/operations.md`).

With several worker processes the CLI points `PROMETHEUS_MULTIPROC_DIR` at a fresh folder before
anything imports prometheus-client, and `/metrics` then aggregates every worker's values: counters and
histograms are summed, the cache gauges (the same shared cache seen by every worker) take the most
recent value, and `edge_inflight_requests` sums the live workers.
Label values are bounded: endpoint ids, origin names, formats, status codes — never a path.

Series exist from the start (at 0) for every label value known from the config (`initialise`), so
that `rate()` sees the first event. Multiprocess mode has no process collector, so each worker
samples its own CPU time, memory and file descriptors into `edge_process_*`, summed over the workers.
"""

from __future__ import annotations

import asyncio
import bisect
import glob
import logging
import mmap
import os
import platform
import shutil
import struct
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client import mmap_dict, multiprocess
from prometheus_client.core import GaugeMetricFamily

from .cache.health import ERROR_KINDS
from .httpserver import CONNECTION_CLOSES
from .signing import REASONS as SIGNATURE_REFUSALS

if TYPE_CHECKING:
    from .cache.tiers import DiskTier
    from .config import Config

log = logging.getLogger("edge.metrics")
# one worker's metrics, kept in its own memory, had each counter's `*_created` series too (133 of them), which
# the multiprocess files of several never have: a node exports the same series whatever its worker count
disable_created_metrics()

#: the alerts' thresholds (0.1 s, 2 s) are bounds: `histogram_quantile` interpolates within a bucket, and
#: with none at 2 a node answering everything in 1.2 s had a p99 "over 2 s" (1 + 1.5 × 0.99)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 2.5, 5, 10, 30)
#: `outcome` of `edge_origin_fetches_total`: a success, a miss, or the kind of failure
#: (an origin plugin's other kinds count as `error`, so the label stays bounded)
ORIGIN_SUCCESSES = ("found", "not_modified", "not_found")
ORIGIN_FAILURES = ("timeout", "refused", "denied", "server_error", "bad_response", "error")
#: outcomes that judge no origin: `busy` (the node's fetch memory was full), `abandoned` (every request
#: waiting for the fetch went away before it ended: a slow origin, or clients leaving at once), `too_large` (an
#: original over `[limits] max_source_bytes`, a 400: the origin answered; the limit, or the file, is to change)
ORIGIN_UNJUDGED = ("busy", "abandoned", "too_large")
#: `status` values of `edge_purge_requests_total` there from the start (others appear when answered)
PURGE_STATUSES = ("200", "400", "401", "502")
#: `outcome` values of `edge_fleet_purge_calls_total` (`edge.fanout.PeerResult`)
FLEET_PURGE_OUTCOMES = ("ok", "rejected", "unreachable", "timeout")
#: `result` values of `edge_cache_requests_total` per tier (a not-found record is never stale)
CACHE_RESULTS = {"output": ("hit", "miss", "stale"), "original": ("hit", "miss", "stale"),
                 "not_found": ("hit", "miss"), "shared": ("hit", "miss")}
#: the least time between two `/metrics` texts a worker makes (`Metrics.scraped`): a flood of
#: scrapes costs at most 5 a second, and a scrape waits at most this long
EXPOSITION_SECONDS = 0.2
#: `tier` values of `edge_cache_errors_total` besides the disk tiers' (its `kind` values: `ERROR_KINDS`)
CACHE_ERROR_TIERS = ("purges", "memory", "folder", "flight")
#: `reason` values of `edge_transform_refusals_total`: the transform queue was full, a transformation
#: waited `[server] transform_queue_timeout` in it, or `[server] decode_memory` stayed full for it
TRANSFORM_REFUSALS = ("queue_full", "queue_timeout", "decode_memory")
#: when the node started, Unix seconds: set by the supervisor before it forks its first workers, so that
#: a worker it forks later (a reload's, a dead one's replacement, writing into the files of the slot it
#: takes over) exports the same `edge_start_time_seconds`; a node run in one process takes its own start
node_started: float | None = None
#: statuses an endpoint's series start with (others appear when first answered): those the alerts count
#: too, which `increase()` misses when a series' first sample is already above 0 (a node's first 500s)
INITIAL_STATUSES = ("200", "304", "400", "404", "500", "502", "503", "504")


def endpoint_label(endpoint_id: str) -> str:
    """The `endpoint` label of an endpoint: its id, `default` for the endpoint at `/`."""
    return endpoint_id or "default"


def multiprocess_mode() -> bool:
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ


def process_name(slot: int) -> str:
    """What a worker's files in the multiprocess folder are named by: its slot (a number no other
    live worker holds, given back when it exits: `edge.supervisor.Slots`)."""
    return f"slot{slot}"


def name_files_by(slot: int) -> None:
    """In a new worker, before any metric is made: name its multiprocess files by `slot` rather than
    by its pid. A worker started in a dead one's slot then carries on that one's counts in the same
    files (counters and histograms keep their sums; the live gauges' files went with the dead worker),
    instead of leaving five files behind per worker that ever died or was replaced by a reload: a
    folder that grew without bound, and every `/metrics` reading it (8 kills and 20 reloads: 12 → 252
    files, 2.5 → 10.9 ms of CPU a scrape)."""
    from prometheus_client import values
    global _slot
    _slot = slot
    values.MmapedDict = _AllocatedMmapedDict
    values.ValueClass = values.MultiProcessValue(process_identifier=lambda: process_name(slot))


class _AllocatedMmapedDict(mmap_dict.MmapedDict):
    """prometheus-client's file of a worker's values, with its blocks allocated before it maps them. It sizes
    and grows its files by truncating them, sparse: on a full temporary folder, writing their pages through
    the map killed the worker with SIGBUS, every new worker again, until the supervisor stopped the node.
    Where the blocks cannot be had, when the file is made or when it grows, the worker keeps its values in
    memory (a memfd) and serves: they are missing from /metrics from then on, as its error log line says."""

    def __init__(self, filename: str, read_mode: bool = False):
        memory = None
        if not read_mode:
            try:
                _allocate(filename, _FIRST_SIZE)
            except OSError as error:
                _say_in_memory(filename, error)
                if os.path.exists(filename) and os.path.getsize(filename) == 0:
                    os.unlink(filename)
                memory = os.memfd_create(os.path.basename(filename), os.MFD_CLOEXEC)
        try:
            super().__init__(filename if memory is None else f"/proc/self/fd/{memory}", read_mode)
        finally:
            if memory is not None:
                os.close(memory)  # the map and its file object hold it now
        self._in_memory = memory is not None

    def _init_value(self, key: str) -> None:
        grown = self._capacity
        while self._used + len(key.encode()) + _VALUE_OVERHEAD > grown:
            grown *= 2
        if grown > self._capacity and not self._in_memory:
            try:
                _allocate(self._fname, grown)
            except OSError as error:  # the values so far, and the rest, in memory
                _say_in_memory(self._fname, error)
                memory = open(os.memfd_create(os.path.basename(self._fname), os.MFD_CLOEXEC), "r+b")
                memory.truncate(self._capacity)
                copy = mmap.mmap(memory.fileno(), self._capacity)
                copy[:] = self._m[:self._capacity]
                self._m.close()
                self._f.close()
                self._f, self._m, self._in_memory = memory, copy, True
        super()._init_value(key)


def _allocate(filename: str, size: int) -> None:
    """At least `size` bytes of `filename` given blocks (ENOSPC, not a sparse file). Not through an append-mode
    descriptor, as prometheus-client opens it: glibc's `posix_fallocate` where the filesystem has none (ramfs,
    some FUSE and NFS) writes zeros, which such a descriptor refuses (EBADF)."""
    fd = os.open(filename, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.posix_fallocate(fd, 0, max(os.fstat(fd).st_size, size))
    finally:
        os.close(fd)


def _say_in_memory(filename: str, error: OSError) -> None:
    if _notes is not None and _slot is not None:
        _notes.lost_values(_slot, True)
    log.error("no room for this worker's metrics in %s (%s): they are kept in its memory, missing from /metrics "
              "(edge_metrics_values_lost counts such workers)", os.path.dirname(filename), error.strerror or error)


class _SupervisorNotes:
    """What the supervisor and the workers tell each other for the workers' texts, in memory the supervisor
    maps before it forks its first worker (anonymous and shared: every worker forked after sees it), read
    when a text is made. Not in the workers' files: a failed reload forks no worker, and a worker whose
    values found no room in the folder cannot write there.

    - bytes 0–7: when the config in use was loaded (`edge_config_last_reload_success_timestamp_seconds`)
    - byte 8: 1 unless the last SIGHUP's config was refused (`edge_config_last_reload_successful`): the log
      alone had said so, and a fleet's config management saw every node green, serving the old config
    - bytes 12–15: how many workers the supervisor replaced after they exited on their own (a crash, the
      kernel's OOM killer, `worker_timeout`'s kill; `edge_worker_restarts`)
    - from byte 16, a byte per worker slot: 1 while that worker keeps its metric values in its memory
      (`edge_metrics_values_lost`). A 503 from that worker alone had made `up` flap, and every flap reset
      the gauge alerts' `for:` (a filesystem shared by /tmp and the cache: EdgeCacheDiskFull never fired)"""

    SLOTS_AT = 16
    SLOTS = 4096  # more workers than were ever alive at once (`edge.supervisor.Slots`)

    def __init__(self, loaded_at: float) -> None:
        self.memory = mmap.mmap(-1, self.SLOTS_AT + self.SLOTS)
        self.reloaded(True, loaded_at)

    def reloaded(self, successful: bool, at: float) -> None:
        if successful:
            struct.pack_into("d", self.memory, 0, at)
        self.memory[8] = successful

    def restarted(self) -> None:
        struct.pack_into("I", self.memory, 12, struct.unpack_from("I", self.memory, 12)[0] + 1)

    def lost_values(self, slot: int, lost: bool) -> None:
        if slot < self.SLOTS:
            self.memory[self.SLOTS_AT + slot] = lost

    def read(self) -> tuple[float, bool, int, int]:
        """(when the config was loaded, whether the last reload was, workers replaced, workers whose values are
        lost)"""
        return (struct.unpack_from("d", self.memory, 0)[0], bool(self.memory[8]),
                struct.unpack_from("I", self.memory, 12)[0], self.memory[self.SLOTS_AT:].count(1))


#: the supervisor's notes (`share_notes`), None in a node run without a supervisor (tests)
_notes: _SupervisorNotes | None = None
#: this worker's slot (`name_files_by`)
_slot: int | None = None


def share_notes(loaded_at: float) -> None:
    """In the supervisor, before it forks its first worker."""
    global _notes
    _notes = _SupervisorNotes(loaded_at)


def reloaded(successful: bool) -> None:
    """In the supervisor: a SIGHUP's config is served by every worker, or was refused."""
    if _notes is not None:
        _notes.reloaded(successful, time.time())


def worker_restarted() -> None:
    """In the supervisor, as it replaces a worker that exited on its own (not a reload's)."""
    if _notes is not None:
        _notes.restarted()


def slot_emptied(slot: int) -> None:
    """In the supervisor, once the worker in `slot` is reaped: its values (and their loss) went with it."""
    if _notes is not None:
        _notes.lost_values(slot, False)


class _NotesCollector:
    """The series `_SupervisorNotes` holds; without a supervisor, a config loaded as the node started."""

    def __init__(self, started: float) -> None:
        self.started = started

    def collect(self):
        loaded_at, successful, restarts, lost = (self.started, True, 0, 0) if _notes is None else _notes.read()
        yield GaugeMetricFamily(
            "edge_config_last_reload_successful", "0 when the config of the last SIGHUP was refused (the log "
            "says why; the workers serve the config loaded before), else 1", value=int(successful))
        yield GaugeMetricFamily(
            "edge_config_last_reload_success_timestamp_seconds", "When the config being served was loaded (the "
            "node's start or the last reload that took effect), Unix seconds", value=loaded_at)
        yield GaugeMetricFamily(
            "edge_worker_restarts", "Workers replaced since the node started because they exited on their own "
            "(crashed, killed by the kernel's OOM killer or for blocking past worker_timeout); reloads not counted",
            value=restarts)
        yield GaugeMetricFamily(
            "edge_metrics_values_lost", "Workers whose metric values found no room in the temporary folder: "
            "missing from this text (their counts, their gauges) until they are replaced", value=lost)


#: prometheus-client's first size of a values file, and what a value takes beside its key (at most)
_FIRST_SIZE = mmap_dict._INITIAL_MMAP_SIZE
_VALUE_OVERHEAD = 32


class _WorkersCollector(multiprocess.MultiProcessCollector):
    """The workers' files summed, but for one a worker has only just created: prometheus-client creates
    it empty, then sizes it, and read in between it raised `struct.error` (/metrics answered 500, and a
    worker starting beside another died in its first status snapshot). Its size never goes back to 0.

    The folder changes while it is read: the supervisor removes a reaped worker's live gauge files
    (`mark_process_dead`), and the worker that takes its slot creates them again, empty at first."""

    def collect(self):
        try:
            return self.merge(self._files(), accumulate=True)
        except struct.error:  # one sized, then removed and created again (empty) before it was read
            return self.merge(self._files(), accumulate=True)

    def _files(self) -> list[str]:
        files = []
        for path in glob.glob(os.path.join(self._path, "*.db")):
            try:
                if os.path.getsize(path):
                    files.append(path)
            except FileNotFoundError:  # a dead worker's live gauges, removed since the glob: not counted
                pass
        return files


class Metrics:
    """The node's metrics, registered in their own registry (one per node, so tests can run many)."""

    def __init__(self) -> None:
        # In multiprocess mode values live in the shared folder, not in this registry.
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple, object] = {}
        r = self.registry
        self._notes = _NotesCollector(time.time() if node_started is None else node_started)
        r.register(self._notes)
        self.http_requests = Counter(
            "edge_http_requests_total", "HTTP requests answered", ["endpoint", "status"], registry=r)
        self.http_duration = Histogram(
            "edge_http_request_duration_seconds", "Time to answer an image request",
            ["endpoint", "cache"], buckets=LATENCY_BUCKETS, registry=r)
        self.origin_fetch_duration = Histogram(
            "edge_origin_fetch_duration_seconds", "Time of one fetch from one origin",
            ["origin", "outcome"], buckets=LATENCY_BUCKETS, registry=r)
        self.origin_fetches = Counter(
            "edge_origin_fetches_total", "Fetches from origins by outcome", ["origin", "outcome"], registry=r)
        self.not_found = Counter(
            "edge_not_found_total", "Requests answered 404", ["endpoint"], registry=r)
        self.cache_requests = Counter(
            "edge_cache_requests_total", "Cache lookups by tier and result", ["tier", "result"], registry=r)
        self.cache_size = Gauge(
            "edge_cache_size_bytes", "Bytes in a cache tier", ["tier"], registry=r,
            multiprocess_mode="mostrecent")
        self.cache_entries = Gauge(
            "edge_cache_entries", "Entries in a cache tier", ["tier"], registry=r,
            multiprocess_mode="mostrecent")
        self.cache_budget = Gauge(
            "edge_cache_budget_bytes", "Configured byte budget of a cache tier", ["tier"], registry=r,
            multiprocess_mode="mostrecent")
        self.cache_filesystem_size = Gauge(
            "edge_cache_filesystem_size_bytes", "Size of the filesystem holding the cache", registry=r,
            multiprocess_mode="mostrecent")
        self.cache_filesystem_free = Gauge(
            "edge_cache_filesystem_free_bytes", "Free bytes on the filesystem holding the cache", registry=r,
            multiprocess_mode="mostrecent")
        self.cache_evictions = Counter(
            "edge_cache_evictions_total", "Entries evicted from a cache tier", ["tier"], registry=r)
        self.cache_errors = Counter(
            "edge_cache_errors_total", "Cache operations that failed (the request went on uncached), by "
            "tier and kind: full, unwritable, corrupt, damaged, busy, io, unavailable", ["tier", "kind"], registry=r)
        self.abandoned_work = Counter(
            "edge_abandoned_work_total", "Fetches and transforms cancelled because every request waiting "
            "for them went away (clients disconnected)", ["kind"], registry=r)
        self.dropped_stores = Counter(
            "edge_dropped_stores_total", "Outputs and originals answered but not stored, because the "
            "stores already waiting to be written held their byte budget", ["tier"], registry=r)
        self.cache_too_large = Counter(
            "edge_cache_too_large_total", "Outputs and originals answered but not stored: over an eighth of their "
            "tier's budget (made or fetched again each time they are asked), or an output over 1/256 of it rendered "
            "before the render that stores it (admission of large outputs)", ["tier"], registry=r)
        self.transform_duration = Histogram(
            "edge_transform_duration_seconds", "Time to decode, transform and encode one output",
            ["format"], buckets=LATENCY_BUCKETS, registry=r)
        self.transform_refusals = Counter(
            "edge_transform_refusals_total", "Transformations refused (503) because the node was overloaded: "
            "the transform queue was full, or they waited too long in it for a thread", ["reason"], registry=r)
        self.transform_timeouts = Counter(
            "edge_transform_timeouts_total", "Renders stopped at [limits] render_timeout (503; the same URL is "
            "then answered 503 at once for a while, without a render)", registry=r)
        self.coalesced_requests = Counter(
            "edge_coalesced_requests_total", "Waits on another request's work instead of doing it (single flight): "
            "for the fetch of an original, or for the render of an output",
            registry=r)
        self.inflight_requests = Gauge(
            "edge_inflight_requests", "Image requests being answered", registry=r,
            multiprocess_mode="livesum")
        self.response_bytes = Counter(
            "edge_response_bytes_total", "Image bytes sent", ["endpoint"], registry=r)
        # the fleet (docs/fleet.md); `peer` is one of the configured `[fleet] peers`
        self.fleet_purge_calls = Counter(
            "edge_fleet_purge_calls_total", "Purges forwarded to a peer, by outcome", ["peer", "outcome"],
            registry=r)
        # the purge API on this node (`POST /_edge/purge`); `status` is the answer's (a handful of values)
        self.purge_requests = Counter(
            "edge_purge_requests_total", "Calls of the purge API, by the answer's status (401: a refused token)",
            ["status"], registry=r)
        self.purged_entries = Counter(
            "edge_purged_entries_total", "Cached entries the purge API removed from this node's tiers", registry=r)
        self.shared_cache_writes = Counter(
            "edge_shared_cache_writes_total", "Outputs written to the shared cache tier", registry=r)
        self.purges_pending = Gauge(
            "edge_purges_pending", "Purges whose part in the shared cache tier waits to be tried again", registry=r,
            multiprocess_mode="mostrecent")
        self.shared_cache_failures = Counter(
            "edge_shared_cache_failures_total", "Shared cache tier calls skipped because they failed",
            ["operation", "kind"], registry=r)
        self.signature_refusals = Counter(
            "edge_signature_refusals_total", "Requests refused (401) for a missing, invalid or expired URL signature",
            ["endpoint", "reason"], registry=r)
        self.build_info = Gauge(
            "edge_build_info", "Always 1: the versions of the node, libvips and Python",
            ["version", "libvips", "python"], registry=r, multiprocess_mode="max")
        self.start_time = Gauge(
            "edge_start_time_seconds", "When the node started, Unix seconds", registry=r,
            multiprocess_mode="min")
        self.workers = Gauge(
            "edge_workers", "Worker processes serving", registry=r, multiprocess_mode="livesum")
        self.process_cpu = Counter(
            "edge_process_cpu_seconds", "CPU time of the workers (user and system)", registry=r)
        self.process_memory = Gauge(
            "edge_process_resident_memory_bytes", "Resident memory of the live workers", registry=r,
            multiprocess_mode="livesum")
        self.access_log_dropped = Counter(
            "edge_access_log_dropped_lines_total", "Access log lines dropped: standard output did not take them",
            registry=r)
        self.connections_closed = Counter(
            "edge_connections_closed_total", "Connections the node closed itself: their first request's headers "
            "came too late, a kept-alive connection stayed idle, max_connections were open (answered 503), "
            "the client took none of its answer for send_timeout, or its request could not be read (answered "
            "400, 414 or 431)",
            ["reason"], registry=r)
        self.open_connections = Gauge(
            "edge_open_connections", "Client connections open", registry=r, multiprocess_mode="livesum")
        self.connection_limit = Gauge(
            "edge_connection_limit", "Client connections the live workers may hold ([server] max_connections each)",
            registry=r, multiprocess_mode="livesum")
        self.process_fds = Gauge(
            "edge_process_open_fds", "Open file descriptors of the live workers", registry=r,
            multiprocess_mode="livesum")
        self._cpu_counted = 0.0
        #: the text `scraped` is making for the scrapes waiting, and when it made the last one
        self._next_text: asyncio.Future[bytes] | None = None
        self._last_text_at = float("-inf")
        #: the hot path's counts and observations of this IOLoop turn, not yet written (see `add`)
        self._pending_counts: dict[tuple, float] = {}
        self._pending_observations: dict[tuple, list] = {}  # [count per bucket, sum]
        self._flush_scheduled = False

    def observe_cache(self, tiers: Iterable[DiskTier], directory: Path) -> None:
        """Refresh the cache gauges (blocking: reads SQLite and statvfs)."""
        # every tier read before any gauge is set: a scrape between two slow reads saw one tier's new
        # count beside another's from the last refresh
        readings = [(tier.name, tier.volume(), len(tier), tier.budget) for tier in tiers]
        for name, volume, entries, budget in readings:
            self.cache_size.labels(name).set(volume)
            self.cache_entries.labels(name).set(entries)
            self.cache_budget.labels(name).set(budget)
        try:
            disk = shutil.disk_usage(directory)
        except OSError:  # the folder is gone or unreadable: counted in edge_cache_errors_total already
            return
        self.cache_filesystem_size.set(disk.total)
        self.cache_filesystem_free.set(disk.free)

    def initialise(self, config: Config, tiers: Iterable[str], libvips: str) -> None:
        """Create every series whose label values the config tells, at 0; set the constant ones."""
        tiers = tuple(tiers)
        for tier in tiers:
            self.cache_evictions.labels(tier)
        for tier in (*tiers, *(("shared",) if config.shared_cache is not None else ())):
            for result in CACHE_RESULTS.get(tier, ()):
                self.cache_requests.labels(tier, result)
        for tier in ("output", "original"):
            self.cache_too_large.labels(tier)
            self.dropped_stores.labels(tier)
        # a single error (one damaged value, a database rebuilt once) must show in `increase()`
        for tier in (*tiers, *CACHE_ERROR_TIERS):
            for kind in ERROR_KINDS:
                self.cache_errors.labels(tier, kind)
        for reason in TRANSFORM_REFUSALS:
            self.transform_refusals.labels(reason)
        for reason in CONNECTION_CLOSES:
            self.connections_closed.labels(reason)
        for origin in config.origins:
            for outcome in (*ORIGIN_SUCCESSES, *ORIGIN_UNJUDGED, *ORIGIN_FAILURES):
                self.origin_fetches.labels(origin.name, outcome)
            self.origin_fetch_duration.labels(origin.name, "abandoned")  # EdgeOriginAbandoned's quantile
        # a peer's first missed purge must show in `increase()`, which cannot see a series' first sample
        for peer in config.fleet.others:
            for outcome in FLEET_PURGE_OUTCOMES:
                self.fleet_purge_calls.labels(peer, outcome)
        if config.admin_token is not None:  # a first refused token must show in `increase()`
            for status in PURGE_STATUSES:
                self.purge_requests.labels(status)
        self.http_requests.labels("-", "500")  # a request no endpoint could be found for, when finding it failed
        for endpoint in config.endpoints:
            label = endpoint_label(endpoint.id)
            if endpoint.private_key is not None:  # either URL style: a rate() alert sees the first refusal
                for reason in SIGNATURE_REFUSALS:
                    self.signature_refusals.labels(label, reason)
            self.not_found.labels(label)
            self.response_bytes.labels(label)
            for status in INITIAL_STATUSES:
                self.http_requests.labels(label, status)
        from . import __version__

        self.build_info.labels(__version__, libvips, platform.python_version()).set(1)
        self.start_time.set(time.time() if node_started is None else node_started)
        self.workers.set(1)
        self.connection_limit.set(config.server.max_connections)
        self.sample_process()

    def sample_process(self) -> None:
        """This worker's CPU time (counted as it grows, so restarts never make it go back), resident
        memory and open file descriptors (Linux's /proc; elsewhere only the CPU time)."""
        cpu = time.process_time()
        self.process_cpu.inc(max(0.0, cpu - self._cpu_counted))
        self._cpu_counted = cpu
        try:
            with open("/proc/self/statm", "rb") as statm:
                self.process_memory.set(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
            self.process_fds.set(len(os.listdir("/proc/self/fd")))
        except OSError:
            pass

    # `edge.httpserver.ConnectionObserver`, for the images' server
    def connection_closed(self, reason: str) -> None:
        self.add(self.connections_closed, (reason,))

    def connections_open(self, count: int) -> None:
        self.open_connections.set(count)

    def child(self, metric, *labels: str):
        """`metric.labels(*labels)`, memoised: label values are few, and `labels()` is costly on the
        hit path."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def add(self, metric: Counter, labels: tuple[str, ...], amount: float = 1.0) -> None:
        """`metric.labels(*labels).inc(amount)`, written at the end of this IOLoop turn together with the
        turn's other counts (call on the IOLoop). Every write costs: a locked mmap write in multiprocess
        mode (measured 5 µs a counter and 18 µs a histogram observation on a loaded 2-core machine,
        2.6 and 6.4 µs in-process), so under load a turn that answers several hits writes each series
        once."""
        key = (metric, labels)
        self._pending_counts[key] = self._pending_counts.get(key, 0.0) + amount
        self._flush_soon()

    def observe(self, metric: Histogram, labels: tuple[str, ...], value: float) -> None:
        """`metric.labels(*labels).observe(value)`, written as `add` writes."""
        key = (metric, labels)
        pending = self._pending_observations.get(key)
        if pending is None:
            pending = self._pending_observations[key] = [[0] * len(metric._upper_bounds), 0.0]
        pending[0][bisect.bisect_left(metric._upper_bounds, value)] += 1  # buckets are `le`: value ≤ bound
        pending[1] += value
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._flush_scheduled:
            return
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no loop (a tool, a test): at once
            self.flush()
            return
        self._flush_scheduled = True

    def flush(self) -> None:
        """Write what `add` and `observe` gathered (also before every read of the values)."""
        self._flush_scheduled = False
        counts, self._pending_counts = self._pending_counts, {}
        observations, self._pending_observations = self._pending_observations, {}
        for (metric, labels), amount in counts.items():
            # the counter child's value, as the histograms' below (its `inc` checks, each call, that the
            # amount is not negative: these are counts and byte sizes)
            self.child(metric, *labels)._value.inc(amount)
        for (metric, labels), (buckets, total) in observations.items():
            # prometheus-client has no call to add many observations: its histogram child keeps one
            # value per bucket (non-cumulative) and the sum, which `observe` increments; these are
            # incremented the same way (tests/test_metrics.py compares the two)
            child = self.child(metric, *labels)
            child._sum.inc(total)
            for bucket, count in zip(child._buckets, buckets):
                if count:
                    bucket.inc(count)

    def node_registry(self) -> CollectorRegistry:
        """The values of this process, or of the whole node in multiprocess mode, as last written: `flush`
        first, on the IOLoop. (Reading may be done in a thread, as the status page's snapshots are; a flush
        from there raced the IOLoop's `add`: a count added as the thread took them was counted twice or lost.)"""
        if multiprocess_mode():
            registry = CollectorRegistry()
            _WorkersCollector(registry)
            registry.register(self._notes)
            return registry
        return self.registry

    def exposition(self) -> bytes:
        """The text of the node's metrics, as they are now (call on the IOLoop)."""
        self.flush()
        return generate_latest(self.node_registry())

    async def scraped(self) -> bytes:
        """The text for `GET /metrics`: an `exposition` made after the scrape arrived, but at most one
        per `EXPOSITION_SECONDS`; a scrape that comes sooner waits for the next one, which every scrape
        waiting shares. Each costs ~2.5 ms of CPU for 2 workers (the workers' files read and summed),
        and `/metrics` is on the main port unless `metrics_port` moves it: a flood of unauthenticated
        scrapes had taken a node's cache hits from 12 177 to 234 a second."""
        if self._next_text is None:
            self._next_text = asyncio.ensure_future(self._next_exposition())
        return await asyncio.shield(self._next_text)

    async def _next_exposition(self) -> bytes:
        try:
            await asyncio.sleep(self._last_text_at + EXPOSITION_SECONDS - time.monotonic())
            text = self.exposition()
            self._last_text_at = time.monotonic()
            return text
        finally:
            self._next_text = None
