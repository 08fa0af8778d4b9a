"""Cache hits: the node against bare Tornado serving the same bytes from memory, in one command.

Every round runs each target of each case once, in turn, so the machine's noise hits all alike; the
figures are medians over the rounds and the ones that matter are ratios to the baseline of the same
case. Reported per target: requests per second, the servers' CPU time per request (read from /proc:
steadier than throughput on a shared machine) and wrk's p99 latency.

- `1 worker`: the node with one worker vs one bare Tornado process, at 16 and 256 connections
  (goal ≥ 0.9 of bare).
- `2 workers`: the node with two workers vs two bare processes on one port (`SO_REUSEPORT`, as the
  node), at 16 connections (goal ≥ 0.9), with how the requests spread over the node's workers; and
  p99 at 256 and 1000 connections (goal ≤ 1.2× bare).
- `20k keys`: one node (one worker) answering 20 000 cached outputs read at random vs one hot key
  (goal ≥ 0.97: what the LRU bookkeeping of a long tail of keys costs); and one bare Tornado process
  answering 20 000 copies of the same bytes from a dict by path, at random vs one: what a long tail
  costs any server that holds it in memory (the CPU's caches), before the node does anything.

    .venv/bin/python -m benchmarks.bench_hit [--rounds 5] [--seconds 3] [--only 2-workers ...]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import diskcache
from prometheus_client.mmap_dict import MmapedDict

from benchmarks.baselines import BARE_TORNADO_SERVER
from benchmarks.common import ForkedServer, LoadResult, load_parser, median, start_node_process, wrk_load
from tests.nodes import SAMPLES, NodeProcess, local_config

PATH = "/tr:w-300/astronaut.jpg"
#: the 20k-keys case: small outputs, so that all of them fit the memory tier (as hot ones would)
KEYS = 20_000
KEY_PATH = "/tr:w-100/k{}/astronaut.jpg"
_LUA_PATH = KEY_PATH.replace("{}", "%d")

RANDOM_KEYS = f"""
math.randomseed(os.time())
request = function()
  return wrk.format(nil, string.format("{_LUA_PATH}", math.random(0, {KEYS - 1})))
end
"""
HOT_KEY = f"""
request = function()
  return wrk.format(nil, string.format("{_LUA_PATH}", 0 * math.random(0, {KEYS - 1})))
end
"""


def start_node(folder: Path, workers: int, memory_size: str = "64MB", root: Path = SAMPLES) -> NodeProcess:
    folder.mkdir()
    return start_node_process(folder, local_config(root, before=(
        f'[server]\nworkers = {workers}\n[cache]\ndir = "{folder / "cache"}"\nmemory_size = "{memory_size}"\n')))


def requests_per_worker(pids: list[int]) -> list[float]:
    """`edge_http_requests_total` of each worker, from its multiprocess metrics file (found through
    the worker's memory maps)."""
    counts = []
    for pid in pids:
        maps = Path(f"/proc/{pid}/maps").read_text()
        # named by its slot (edge.metrics.name_files_by), the one counter file the worker keeps mapped
        path = re.search(r"(/\S+/counter_[^/\s]+\.db)$", maps, re.MULTILINE).group(1)
        counts.append(sum(value for key, value, *_ in MmapedDict.read_all_values_from_file(path)
                          if json.loads(key)[1] == "edge_http_requests_total"))
    return counts


def fill_keys(cache_dir: Path, url: str) -> bytes:
    """Store KEYS outputs (copies of one made by the node) as the node would have stored them; that
    output."""
    urllib.request.urlopen(url + KEY_PATH.format(0), timeout=60).read()
    with diskcache.Cache(str(cache_dir / "outputs")) as outputs:
        deadline = time.monotonic() + 30
        while not len(outputs) and time.monotonic() < deadline:  # stored just after the response
            time.sleep(0.01)
        (key,) = list(outputs.iterkeys())
        assert "\0k0/astronaut.jpg\0" in key, key
        body, tag = outputs.get(key, tag=True)
        with outputs.transact():
            for n in range(1, KEYS):
                outputs.set(key.replace("k0/astronaut.jpg", f"k{n}/astronaut.jpg"), body, tag=tag)
    return body


def read_every_key(url: str, threads: int = 4) -> None:
    """GET each key once (keep-alive connections in a few threads)."""
    port = int(url.rsplit(":", 1)[1])

    def read(first: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for n in range(first, KEYS, threads):
            connection.request("GET", KEY_PATH.format(n))
            response = connection.getresponse()
            response.read()
            assert response.status == 200 and response.headers["X-Cache"] == "HIT", (n, response.status)
        connection.close()

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(read, range(threads)))


CASES = ("1-worker", "2-workers", "20k-keys")


def arguments() -> argparse.Namespace:
    parser = load_parser(__doc__)
    parser.add_argument("--only", nargs="+", choices=CASES, default=CASES, help="run only these cases")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        servers: list = []
        runs: dict[str, Callable[[], LoadResult]] = {}
        two_pids: list[int] = []
        body = b""
        try:
            if "1-worker" in args.only:
                one, bare_one, body = start_pair(work, "one", 1, servers)
                for connections in (16, 256):
                    runs[f"1 worker, {connections} conn: bare"] = lambda c=connections: wrk_load(
                        bare_one.url, bare_one.pids, args.seconds, c)
                    runs[f"1 worker, {connections} conn: node"] = lambda c=connections: wrk_load(
                        one.url + PATH, one.worker_pids(), args.seconds, c)
            if "2-workers" in args.only:
                two, bare_two, body = start_pair(work, "two", 2, servers)
                two_pids = two.worker_pids()
                for connections in (16, 256, 1000):
                    seconds = max(args.seconds, connections // 200)  # 1000 connections: p99 near a second
                    runs[f"2 workers, {connections} conn: bare"] = lambda c=connections, s=seconds: wrk_load(
                        bare_two.url, bare_two.pids, s, c)
                    runs[f"2 workers, {connections} conn: node"] = lambda c=connections, s=seconds: wrk_load(
                        two.url + PATH, two_pids, s, c)
            if "20k-keys" in args.only:
                scripts = {}
                for name, text in (("random", RANDOM_KEYS), ("hot", HOT_KEY)):
                    scripts[name] = work / f"{name}.lua"
                    scripts[name].write_text(text)
                (work / "originals" / "k0").mkdir(parents=True)  # the other keys exist only in the cache
                shutil.copy(SAMPLES / "astronaut.jpg", work / "originals" / "k0")
                keys = start_node(work / "keys", 1, memory_size="512MB", root=work / "originals")
                servers.append(keys)
                (work / "key.jpg").write_bytes(fill_keys(work / "keys" / "cache", keys.url))
                keys_pid = keys.worker_pids()[0]
                read_every_key(keys.url)  # all in the memory tier
                assert urllib.request.urlopen(keys.url + KEY_PATH.format(KEYS - 1)).headers["X-Cache"] == "HIT"
                bare_keys = ForkedServer.start(BARE_TORNADO_SERVER, [str(work / "key.jpg"), "1", "handler", str(KEYS),
                                                                     KEY_PATH], 1)
                servers.append(bare_keys)
                for case, server, pids in (("20k keys", keys, keys_pid), ("20k keys, bare Tornado", bare_keys,
                                                                          bare_keys.pids)):
                    for target, script in (("hot key", scripts["hot"]), ("random", scripts["random"])):
                        runs[f"{case}: {target}"] = lambda s=server, p=pids, f=script: wrk_load(
                            s.url, p, args.seconds, script=f)

            results: dict[str, list[LoadResult]] = {name: [] for name in runs}
            spreads: list[list[float]] = []
            for _ in range(args.rounds):
                for name, run in runs.items():
                    before = requests_per_worker(two_pids) if name == "2 workers, 16 conn: node" else None
                    results[name].append(run())
                    if before is not None:
                        after = requests_per_worker(two_pids)
                        spreads.append([a - b for a, b in zip(after, before)])
            load = os.getloadavg()
        finally:
            for server in servers:
                server.stop()

    print(f"cache hits, {len(body) or '-'} B body ({KEYS} keys case: w-100 outputs), {args.rounds} rounds of "
          f"{args.seconds}s, wrk 1 thread, medians; load average at the end {load[0]:.1f} / {load[1]:.1f} / "
          f"{load[2]:.1f} on {os.cpu_count()} cores")
    print_cases(results)
    if spreads:
        shares = ", ".join("/".join(f"{count / sum(spread):.0%}" for count in spread) for spread in spreads)
        print(f"  2 workers, 16 conn: requests per worker, each round: {shares}")


def start_pair(work: Path, name: str, workers: int, servers: list) -> tuple[NodeProcess, ForkedServer, bytes]:
    """A node with `workers` workers, and as many bare Tornado processes answering the node's cached
    output of PATH (both added to `servers`); and that output."""
    node = start_node(work / name, workers)
    servers.append(node)
    for _ in range(50):  # until the node answers from its cache (it stores after answering)
        response = urllib.request.urlopen(node.url + PATH, timeout=60)
        body = response.read()
        if response.headers["X-Cache"] == "HIT":
            break
    else:
        raise RuntimeError("the node did not cache " + PATH)
    (work / f"{name}.jpg").write_bytes(body)
    bare = ForkedServer.start(BARE_TORNADO_SERVER, [str(work / f"{name}.jpg"), str(workers)], workers)
    servers.append(bare)
    return node, bare, body


def print_cases(results: dict[str, list[LoadResult]]) -> None:
    """Each case's targets as ratios to the case's baseline (its first target)."""
    cases: dict[str, list[str]] = {}
    for name in results:
        cases.setdefault(name.split(": ")[0], []).append(name)
    for case, names in cases.items():
        base = {field: median([getattr(r, field) for r in results[names[0]]])
                for field in ("requests_per_second", "cpu_us_per_request", "p99_ms")}
        print(f"  {case}")
        for name in names:
            rate, cpu, p99 = (median([getattr(r, field) for r in results[name]]) for field in base)
            print(f"    {name.split(': ')[1]:9s} {rate:7.0f} req/s ({rate / base['requests_per_second']:.2f})  "
                  f"{cpu:5.0f} µs CPU/req (base/this {base['cpu_us_per_request'] / cpu:.2f})  "
                  f"p99 {p99:7.1f} ms ({p99 / base['p99_ms']:.2f}×)")


if __name__ == "__main__":
    main()
