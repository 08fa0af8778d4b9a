"""Soak: a bounded run of mixed traffic against a real node, as the open internet would send it.

    .venv/bin/python -m benchmarks.bench_soak [--seconds 60] [--concurrency 8] [--workers 1]
                                               [--malloc-arenas N] [--no-memory-trim]

The mix, drawn at random (fixed seed) by `--concurrency` client tasks: cache hits; misses (new widths
of 12 MP JPEGs and of large PNG originals, the bursts that used to leave memory behind); 404s;
hostile URLs (bad parameters, oversize requests, traversal, a body on a GET); an origin that fails
(502 expected) and one that stalls past its timeout (504 expected); and slow clients that open a
connection and dribble headers (the node must close them). Every answer is checked against what its
kind may answer; anything else in 5xx is *unexpected*, the goal being none.

Reports requests, status breakdown, unexpected 5xx, p50/p99 latency, and the workers' resident memory
fresh (before any request), at start (after a warm-up and 5 s idle), at peak and at the end (after
5 s idle), to stdout and to benchmarks/results/bench_soak.json. Goal: end within 10 % of start. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import pyvips
from tornado.httpclient import AsyncHTTPClient

from benchmarks.common import start_node_process
from tests.imagecorpus import photo_jpeg
from tests.servers import HTTPOrigin

RESULTS = Path(__file__).resolve().parent / "results"
REQUEST_TIMEOUT = 30
WARM_UP_SECONDS = 5
IDLE_AFTER_SECONDS = 5
HITS = [f"/tr:w-{w}/photo-{n}.jpg" for n in range(4) for w in (200, 400)]

#: kind → (share of requests, statuses it may answer)
MIX = {
    "hit": (40, {200}),
    "miss": (15, {200, 503}),
    "large": (5, {200, 503}),
    "not_found": (10, {404}),
    "hostile": (13, {400, 404}),
    "hostile_body": (2, {400, 599}),  # refused before the body is read: the client may see the reset
    "failing_origin": (5, {502}),
    "stalling_origin": (3, {504}),
    "slow_client": (7, {"closed"}),
}


def config(good: str, failing: str, stalling: str, workers: int, extra: str, memory_tier: str | None) -> str:
    # `dir` as write_config would set it without a [cache] section: the node's default is the user's cache
    cache = f'[cache]\ndir = "cache"\nmemory_size = "{memory_tier}"\n' if memory_tier is not None else ""
    return f"""
[server]
workers = {workers}
header_timeout = "3s"
{extra}
{cache}
[limits]
max_source_bytes = "40MB"

[[origins]]
name = "photos"
type = "web"
base_url = "{good}"

[[origins]]
name = "failing"
type = "web"
base_url = "{failing}"

[[origins]]
name = "stalling"
type = "web"
base_url = "{stalling}"
timeout = 2

[[endpoints]]
id = ""
origins = ["photos"]

[[endpoints]]
id = "failing"
origins = ["failing"]

[[endpoints]]
id = "stalling"
origins = ["stalling"]
"""


def worker_rss(node, anonymous: bool = False) -> int:
    """The workers' resident bytes; `anonymous`: without the file-backed pages (SQLite's memory-mapped
    cache files, libraries), which the kernel can drop at will."""
    total = 0
    for pid in node.worker_pids():
        try:
            _, resident, file_backed = map(int, Path(f"/proc/{pid}/statm").read_text().split()[:3])
        except FileNotFoundError:
            continue
        total += (resident - file_backed if anonymous else resident) * 4096
    return total


def hostile_request(rng: random.Random) -> dict:
    return rng.choice([
        {"path": "/tr:w-abc/photo-0.jpg"},
        {"path": "/tr:w-99999,h-99999/photo-0.jpg"},
        {"path": "/tr:bl-9999/photo-0.jpg"},
        {"path": "/%2e%2e/%2e%2e/etc/passwd"},
        {"path": "/tr:" + "w-10:" * 400 + "/photo-0.jpg"},
        {"path": "/" + "a" * 8000 + ".jpg"},
    ])


async def slow_client(url: str) -> str:
    """Open a connection, send half a request line, wait: the node must close it (header_timeout)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"GET /photo-0.jpg HT")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), REQUEST_TIMEOUT)
        return "closed" if data == b"" else "answered"
    except TimeoutError:
        return "held"
    finally:
        writer.close()


async def one_request(client: AsyncHTTPClient, url: str, kind: str, rng: random.Random, counter: int):
    if kind == "slow_client":
        return await slow_client(url)
    options: dict = {}
    if kind == "hit":
        path = rng.choice(HITS)
    elif kind == "miss":
        path = f"/tr:w-{rng.randrange(100, 1600)},q-{rng.randrange(50, 90)}/photo-{rng.randrange(4)}.jpg"
    elif kind == "large":
        path = f"/tr:w-{rng.randrange(100, 1600)}/large-{rng.randrange(2)}.png"
    elif kind == "not_found":
        path = f"/missing-{counter}.jpg"
    elif kind == "hostile":
        options = hostile_request(rng)
        path = options.pop("path")
    elif kind == "hostile_body":
        path, options = "/photo-0.jpg", {"method": "GET", "body": b"x" * 100_000}
    elif kind == "failing_origin":
        path = f"/failing/x-{counter}.jpg"
    else:
        path = f"/stalling/x-{counter}.jpg"
    response = await client.fetch(url + path, raise_error=False, request_timeout=REQUEST_TIMEOUT,
                                  allow_nonstandard_methods=True, **options)
    return response.code


async def run(seconds: float, concurrency: int, workers: int, extra: str, memory_tier: str | None) -> dict:
    rng = random.Random(8)
    photos = {f"photo-{n}.jpg": photo_jpeg(4000, 3000 + n) for n in range(4)}  # 12 MP
    photos.update({f"large-{n}.png": pyvips.Image.new_from_buffer(photo_jpeg(4000, 3000 - n), "")
                   .pngsave_buffer(compression=1) for n in range(2)})
    good, failing, stalling = (await HTTPOrigin(files=photos).start(), await HTTPOrigin().start(),
                               await HTTPOrigin().start())
    failing.behaviour.status = 500
    stalling.behaviour.delay = 20
    kinds, weights = zip(*((kind, share) for kind, (share, _) in MIX.items()))
    results: list[tuple[str, object, float]] = []
    rss: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        node = start_node_process(Path(tmp), config(good.url, failing.url, stalling.url, workers, extra, memory_tier))
        client = AsyncHTTPClient(force_instance=True, max_clients=concurrency)
        counter = 0
        fresh_rss = worker_rss(node)
        try:
            for path in HITS:  # the hit set, warm
                assert (await client.fetch(node.url + path, request_timeout=REQUEST_TIMEOUT)).code == 200

            async def sampler(stop: asyncio.Event) -> None:
                while not stop.is_set():
                    rss.append((time.monotonic(), worker_rss(node)))
                    await asyncio.sleep(0.25)

            async def traffic(until: float, record: bool) -> None:
                nonlocal counter
                while time.monotonic() < until:
                    counter += 1
                    kind = rng.choices(kinds, weights)[0]
                    started = time.perf_counter()
                    try:
                        outcome = await one_request(client, node.url, kind, rng, counter)
                    except Exception as exc:  # noqa: BLE001 - a refused or reset connection is an outcome
                        outcome = type(exc).__name__
                    if record:
                        results.append((kind, outcome, time.perf_counter() - started))

            warm_until = time.monotonic() + WARM_UP_SECONDS
            await asyncio.gather(*(traffic(warm_until, False) for _ in range(concurrency)))
            await asyncio.sleep(IDLE_AFTER_SECONDS)  # start is measured idle, as the end is
            start_rss, start_anon = worker_rss(node), worker_rss(node, anonymous=True)
            stop = asyncio.Event()
            sampling = asyncio.create_task(sampler(stop))
            ends = time.monotonic() + seconds
            await asyncio.gather(*(traffic(ends, True) for _ in range(concurrency)))
            await asyncio.sleep(IDLE_AFTER_SECONDS)
            stop.set()
            await sampling
            end_rss, end_anon = worker_rss(node), worker_rss(node, anonymous=True)
        finally:
            client.close()
            node.stop()
            for origin in (good, failing, stalling):
                await origin.stop()
    statuses = Counter(str(outcome) for _, outcome, _ in results)
    unexpected = Counter(f"{kind}: {outcome}" for kind, outcome, _ in results
                         if outcome not in MIX[kind][1])
    unexpected_5xx = sum(n for key, n in unexpected.items() if 500 <= _int(key.split(": ")[1]) < 599)
    latencies = sorted(elapsed for kind, _, elapsed in results if kind not in ("slow_client", "stalling_origin"))
    return {
        "seconds": seconds, "concurrency": concurrency, "workers": workers, "extra_config": extra.strip(),
        "memory_tier": memory_tier,
        "requests": len(results),
        "statuses": dict(sorted(statuses.items())),
        "unexpected": dict(unexpected),
        "unexpected_5xx": unexpected_5xx,
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(statistics.quantiles(latencies, n=100)[98] * 1000, 1),
        "rss_mb": {"fresh": round(fresh_rss / 1e6), "start": round(start_rss / 1e6), "peak": round(max(v for _, v in rss) / 1e6),
                   "end": round(end_rss / 1e6)},
        "end_vs_start": round(end_rss / start_rss - 1, 3),
        "anonymous_mb": {"start": round(start_anon / 1e6), "end": round(end_anon / 1e6)},
        "anonymous_end_vs_start": round(end_anon / start_anon - 1, 3),
    }


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--malloc-arenas", type=int, help="[server] malloc_arenas (default: the node's)")
    parser.add_argument("--no-memory-trim", action="store_true", help="[server] memory_trim = false")
    parser.add_argument("--memory-tier", help="[cache] memory_size, e.g. 0: the memory tier keeps outputs in RSS "
                                              "by design (64 MB by default), which the end-vs-start figure counts")
    args = parser.parse_args()
    extra = ""
    if args.malloc_arenas is not None:
        extra += f"malloc_arenas = {args.malloc_arenas}\n"
    if args.no_memory_trim:
        extra += "memory_trim = false\n"
    pyvips.cache_set_max(0)
    logging.getLogger("tornado.access").setLevel(logging.CRITICAL)  # the origins answer 404s and 500s on purpose
    result = asyncio.run(run(args.seconds, args.concurrency, args.workers, extra, args.memory_tier))
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_soak.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
