"""Memory under miss load: the node's memory (PSS and RSS) while 12 MP JPEG originals are resized.

    .venv/bin/python -m benchmarks.bench_memory [--seconds 30] [--rounds 1] [--workers 2] [--concurrency 8]
        [--variants defaults transform_threads]

Each variant of the node's memory settings (defaults; glibc's own allocator settings; the memory tier
off; one render thread per worker; jemalloc, when Debian's libjemalloc2 is installed) serves, on a
fresh node with `--workers` workers, `--concurrency` client tasks asking for new widths (260–500 px)
and qualities of four 12 MP JPEGs: every request is a miss (fetch, decode with shrink-on-load,
encode, store). The memory of all the node's processes (supervisor and workers), summed, is sampled
every 0.2 s: *plateau* (median over the second half of the load), *peak*, and *after* (5 s idle after
the load), as PSS (each page divided among the processes sharing it: what the node costs the
machine) and as RSS (a page the workers share with the supervisor counted in each). Baseline in the same run: *bare pyvips*, `--workers`
processes each rendering the same thumbnails with pyvips alone on as many threads as a worker renders
on (one per core, the node's default): the memory libvips needs for the same work, without a server
or a cache. Variants and the baseline alternate when `--rounds` > 1 (the variants' order rotates each
round); medians. Each variant's misses per second are printed too (same run: compare variants by their
ratio). `--variants` runs only those whose name, or the setting in its brackets, starts with one of
the words given (`defaults`, `glibc`, `memory`, `one`, `transform_threads`, `jemalloc`). Results to stdout and
benchmarks/results/bench_memory.json. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import os
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import pyvips
from tornado.httpclient import AsyncHTTPClient

from benchmarks.compare import tree_pss, tree_rss
from edge.testing import NodeProcess, write_config
from tests.imagecorpus import photo_jpeg
from tests.servers import HTTPOrigin

RESULTS = Path(__file__).resolve().parent / "results"
REQUEST_TIMEOUT = 60
SAMPLE_SECONDS = 0.2
IDLE_AFTER_SECONDS = 5
PHOTOS = 4
JEMALLOC = Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")

#: variant → (lines of [server], lines of [cache], environment of the node)
VARIANTS: dict[str, tuple[str, str, dict[str, str]]] = {
    "defaults": ("", "", {}),
    "glibc defaults (malloc_arenas = 0, memory_trim = false)": ("malloc_arenas = 0\nmemory_trim = false", "", {}),
    "memory tier off (memory_size = 0)": ("", "memory_size = 0", {}),
    "one render thread per worker (transform_threads = 1)": ("transform_threads = 1", "", {}),
}
if JEMALLOC.exists():
    VARIANTS["jemalloc (LD_PRELOAD)"] = ("", "", {"LD_PRELOAD": str(JEMALLOC)})


def config(origin: str, workers: int, server: str, cache: str) -> str:
    return f"""
[server]
workers = {workers}
access_log = false
{server}
[cache]
dir = "cache"
{cache}
[[origins]]
name = "photos"
type = "web"
base_url = "{origin}"

[[endpoints]]
id = ""
origins = ["photos"]
"""


def memory(pids: list[int]) -> tuple[float, float]:
    """PSS and RSS of `pids`' process trees, summed, MB."""
    return tree_pss(pids), tree_rss(pids)


def summary(samples: list[tuple[float, float]], after: tuple[float, float] | None) -> dict:
    figures = {}
    for index, kind in enumerate(("pss", "rss")):
        second_half = [sample[index] for sample in samples[len(samples) // 2:]]
        figures |= {f"{kind}_plateau_mb": round(statistics.median(second_half)),
                    f"{kind}_peak_mb": round(max(sample[index] for sample in samples)),
                    f"{kind}_after_mb": round(after[index]) if after else None}
    return figures


async def node_round(origin: str, variant: str, seconds: float, workers: int, concurrency: int,
                     requests: itertools.count) -> dict:
    server, cache, env = VARIANTS[variant]
    with tempfile.TemporaryDirectory() as tmp:
        node = NodeProcess(write_config(Path(tmp), config(origin, workers, server, cache)), env=env)
        client = AsyncHTTPClient(force_instance=True, max_clients=concurrency)
        samples: list[tuple[float, float]] = []
        statuses: dict[int, int] = {}
        node_pids = [node.process.pid]  # the supervisor and, below it, the workers
        try:
            fresh = memory(node_pids)
            stop = asyncio.Event()

            async def sampler() -> None:
                while not stop.is_set():
                    samples.append(memory(node_pids))
                    await asyncio.sleep(SAMPLE_SECONDS)

            async def misses(until: float) -> None:
                while time.monotonic() < until:
                    n = next(requests)  # a new (width, photo, quality): a miss, for 29k requests
                    path = f"/tr:w-{260 + n % 241},q-{60 + n // 964 % 30}/photo-{n // 241 % PHOTOS}.jpg"
                    response = await client.fetch(node.url + path, raise_error=False, request_timeout=REQUEST_TIMEOUT)
                    statuses[response.code] = statuses.get(response.code, 0) + 1

            sampling = asyncio.create_task(sampler())
            ends = time.monotonic() + seconds
            await asyncio.gather(*(misses(ends) for _ in range(concurrency)))
            stop.set()
            await sampling
            await asyncio.sleep(IDLE_AFTER_SECONDS)
            after = memory(node_pids)
        finally:
            client.close()
            node.stop()
    return {"pss_fresh_mb": round(fresh[0]), "rss_fresh_mb": round(fresh[1]), **summary(samples, after),
            "requests": sum(statuses.values()), "statuses": statuses}


def _bare_worker(photos: list[bytes], threads: int, seconds: float, seed: int) -> None:
    """One process: `threads` threads each making thumbnails of the photos with pyvips alone."""
    pyvips.cache_set_max(0)
    pyvips.concurrency_set(1)
    ends = time.monotonic() + seconds
    rng = random.Random(seed)

    def renders() -> None:
        while time.monotonic() < ends:
            pyvips.Image.thumbnail_buffer(rng.choice(photos), 260 + rng.randrange(241)).jpegsave_buffer()

    pool = [threading.Thread(target=renders) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def bare_round(photos: list[bytes], seconds: float, workers: int) -> dict:
    context = multiprocessing.get_context("forkserver")
    processes = [context.Process(target=_bare_worker, args=(photos, os.cpu_count(), seconds, n))
                 for n in range(workers)]
    for process in processes:
        process.start()
    samples: list[tuple[float, float]] = []
    ends = time.monotonic() + seconds + REQUEST_TIMEOUT  # bounded even if a process hangs
    while any(process.is_alive() for process in processes) and time.monotonic() < ends:
        samples.append(memory([process.pid for process in processes]))
        time.sleep(SAMPLE_SECONDS)
    for process in processes:
        process.kill()
        process.join()
    return summary(samples, None)


async def run(seconds: float, rounds: int, workers: int, concurrency: int, variants: list[str]) -> dict:
    photos = {f"photo-{n}.jpg": photo_jpeg(4000, 3000 + n) for n in range(PHOTOS)}  # 12 MP each
    origin = await HTTPOrigin(files=photos).start()
    requests = itertools.count()
    results: dict[str, list[dict]] = {name: [] for name in ["bare pyvips", *variants]}
    try:
        for number in range(rounds):
            results["bare pyvips"].append(await asyncio.to_thread(
                bare_round, list(photos.values()), seconds, workers))
            for variant in variants[number % len(variants):] + variants[:number % len(variants)]:
                results[variant].append(await node_round(origin.url, variant, seconds, workers, concurrency, requests))
    finally:
        await origin.stop()
    return {name: {key: _median([run[key] for run in runs]) for key in runs[0] if key != "statuses"}
            | {"statuses": runs[-1].get("statuses")} for name, runs in results.items()}


def _median(values: list):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--variants", nargs="+", metavar="WORD",
                        help="only the variants whose name, or its setting in brackets, starts with a WORD")
    args = parser.parse_args()
    variants = [name for name in VARIANTS
                if not args.variants or any(name.startswith(word) or f"({word}" in name for word in args.variants)]
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    results = asyncio.run(run(args.seconds, args.rounds, args.workers, args.concurrency, variants))
    meta = {"seconds": args.seconds, "rounds": args.rounds, "workers": args.workers, "concurrency": args.concurrency,
            "load_average_before": load_before, "load_average": Path("/proc/loadavg").read_text().split()[:3]}
    print(json.dumps(meta))
    width = max(map(len, results))
    for name, figures in results.items():
        print(f"  {name:{width}s}  " + "  ".join(
            f"{kind.upper()} fresh {figures.get(f'{kind}_fresh_mb')} plateau {figures[f'{kind}_plateau_mb']} "
            f"peak {figures[f'{kind}_peak_mb']} after {figures[f'{kind}_after_mb']} MB" for kind in ("pss", "rss"))
            + (f"  ({figures['requests']} requests, {figures['requests'] / args.seconds:.2f} misses/s)"
               if figures.get("requests") is not None else ""))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_memory.json").write_text(json.dumps({**meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
