"""Cache misses through a real node against bare pyvips, in the same run (alternating rounds, medians).

    .venv/bin/python -m benchmarks.bench_miss [--rounds 5] [--requests 96] [--workers 2] [--threads 2]
        [--transform-threads N] [--no-cold] [--new-originals] [--by-library]
        [--profile benchmarks/results/miss-flame.svg]

- **Miss throughput**: a 2000×1333 photo-like JPEG (on a `local` origin) → JPEG 260–500 px wide,
  every URL new (an output miss; the original comes from the originals tier after its first fetch,
  or with `--new-originals` every URL a new file, as in `benchmarks/compare.py`: an original miss too),
  8 requests at a time, against an `edge serve` node with `--workers` workers; the baseline is bare
  pyvips (`thumbnail_buffer` of the file's bytes + `jpegsave_buffer` with the node's encoder options)
  on a pool of `--threads` threads, 8 images queued at a time. A second baseline is the least a
  Tornado service can do for a miss (`baselines.BARE_SERVICE_SERVER`: the same HTTP client and load,
  the same processes and threads as the node, the original read and rendered with the node's
  shrink-on-load in one hand-off to a thread, no cache, metrics or log): what the node costs beyond it is
  the node's own. Also each system's CPU per image (its processes' CPU time from /proc).
- **Single cold miss**: one request at a time for a new original (nothing cached, the origin read),
  1 / 2.7 / 12 / 24 MP → w-300, against bare pyvips reading the file and doing the same, one at a time,
  and against the bare Tornado service (HTTP included, as for the node).

`--by-library` samples the node's and the bare service's processes with `perf record` (Linux perf,
root or `perf_event_paranoid` ≤ 1) during their throughput rounds and splits each one's CPU per miss by
where it ran: libvips (codecs included: the wheel links them in), the Python interpreter and its C
extensions, the kernel, the C library, SQLite. What the node spends beyond the service in each is
the node's own; the same in libvips says the render is the same work.

`--profile FILE.svg` records the node's workers with py-spy (`pip install py-spy`; root or ptrace
rights) during the throughput rounds and writes a flame graph (`FILE.txt`: collapsed stacks, to
count). The load average is printed with the figures: on a shared machine only the ratios mean anything.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pyvips
from tornado.httpclient import AsyncHTTPClient

from benchmarks.baselines import BARE_SERVICE_SERVER, encoder_options
from benchmarks.bench_transform import bare_save
from benchmarks.common import ForkedServer, median, start_node_process
from benchmarks.compare import unique_jpeg
from edge.config import Defaults
from tests.imagecorpus import photo_jpeg
from tests.nodes import local_config

CONCURRENCY = 8
WIDTHS = range(260, 501)
#: single cold miss: megapixels → size of the original
COLD_SIZES = {"1 MP": (1224, 816), "2.7 MP": (2000, 1333), "12 MP": (4240, 2832), "24 MP": (6000, 4000)}
COLD_WIDTH = 300
REQUEST_TIMEOUT = 120
#: `--by-library`: samples a second of each thread's CPU time
PERF_HZ = 999
#: where a sample's code lives (its object file's name) → the row it counts in, first match
LIBRARIES = [("libvips", re.compile(r"libvips")), ("Python and its C extensions", re.compile(
    r"libpython|/python3?[.\d]*$|\.cpython-|_cffi_backend")), ("kernel", re.compile(r"kernel")),
    ("SQLite", re.compile(r"sqlite")), ("C library", re.compile(r"libc\.|libm\.|ld-linux|libstdc|vdso|libgcc"))]


def process_tree(pid: int) -> list[int]:
    """`pid` and its live children (the node's supervisor and workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [pid, *(int(child) for child in children.read_text().split())] if children.exists() else [pid]


def process_tree_cpu(pid: int) -> float:
    """CPU seconds used so far by `pid` and its live children."""
    total = 0.0
    for one in process_tree(pid):
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def node_round(client: AsyncHTTPClient, base: str, urls: list[str], pid: int,
                     cache: str | None = "MISS") -> tuple[float, float]:
    """Throughput (img/s) and CPU ms per image of the node (or, with `cache=None`, the bare service)
    over `urls`, `CONCURRENCY` at a time."""
    queue = iter(urls)

    async def worker() -> None:
        for url in queue:
            response = await client.fetch(base + url, request_timeout=REQUEST_TIMEOUT)
            assert response.code == 200 and response.headers.get("X-Cache", "")[:4] == (cache or ""), response.headers

    cpu = process_tree_cpu(pid)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    return len(urls) / elapsed, (process_tree_cpu(pid) - cpu) / len(urls) * 1000


@contextmanager
def perf_samples(pids: list[int], into: Counter, folder: Path):
    """Add to `into` the CPU samples of `pids` (all their threads) while the block runs, by library."""
    output = folder / "perf.data"
    output.unlink(missing_ok=True)
    perf = subprocess.Popen(["perf", "record", "-F", str(PERF_HZ), "-q", "-o", str(output),
                             "-p", ",".join(map(str, pids))], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not output.exists() or output.stat().st_size == 0:  # attached once it has written its header
        if perf.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"perf record did not start: {perf.stderr.read().decode().strip()}")
        time.sleep(0.01)
    try:
        yield
    finally:
        perf.send_signal(signal.SIGINT)
        perf.wait(timeout=60)
        script = subprocess.run(["perf", "script", "-F", "ip,dso", "-i", str(output)], capture_output=True,
                                text=True, timeout=120, check=True)
        for line in script.stdout.splitlines():
            where = line.rsplit("(", 1)[-1].rstrip(") ")
            into[next((row for row, pattern in LIBRARIES if pattern.search(where)), "other")] += 1


def library_table(node: Counter, service: Counter, misses: int) -> str:
    """CPU ms per miss by library, the node's against the bare service's."""
    rows = [row for row, _ in LIBRARIES] + ["other"]
    lines = ["| CPU per miss (ms) | node | bare Tornado service | node − service |", "| --- | --- | --- | --- |"]
    for row, node_samples, service_samples in [*((row, node[row], service[row]) for row in rows),
                                               ("all", sum(node.values()), sum(service.values()))]:
        node_ms, service_ms = (samples / PERF_HZ * 1000 / misses for samples in (node_samples, service_samples))
        lines.append(f"| {row} | {node_ms:.2f} | {service_ms:.2f} | {node_ms - service_ms:+.2f} |")
    return "\n".join(lines)


def bare_one(path: Path, width: int, defaults: Defaults) -> bytes:
    return bare_save(pyvips.Image.thumbnail_buffer(path.read_bytes(), width), "jpg", encoder_options(defaults))


def bare_round(pool: ThreadPoolExecutor, jobs: list[tuple[Path, int]], defaults: Defaults) -> tuple[float, float]:
    """Throughput (img/s) and CPU ms per image of bare pyvips (this process's CPU time: the client is idle)."""
    cpu = time.process_time()
    started = time.perf_counter()
    results = list(pool.map(lambda job: bare_one(*job, defaults), jobs))
    elapsed = time.perf_counter() - started
    assert all(results)
    return len(jobs) / elapsed, (time.process_time() - cpu) / len(jobs) * 1000


async def cold_single(client: AsyncHTTPClient, url: str, cache: str | None = "MISS") -> float:
    started = time.perf_counter()
    response = await client.fetch(url, request_timeout=REQUEST_TIMEOUT)
    assert response.code == 200 and response.headers.get("X-Cache", "")[:4] == (cache or "")
    return time.perf_counter() - started


def bare_single(path: Path, defaults: Defaults) -> float:
    started = time.perf_counter()
    bare_one(path, COLD_WIDTH, defaults)
    return time.perf_counter() - started


def start_profile(pid: int, output: Path) -> subprocess.Popen:
    output.parent.mkdir(parents=True, exist_ok=True)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([py_spy, "record", "--pid", str(pid), "--subprocesses", "--native", "--rate", "100",
                             "--format", "raw" if output.suffix == ".txt" else "flamegraph", "--output", str(output)],
                            stdout=subprocess.DEVNULL)


async def run(args: argparse.Namespace) -> None:
    defaults = Defaults()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "originals"
        folder.mkdir()
        miss_body = photo_jpeg(2000, 1333)
        (folder / "miss.jpg").write_bytes(miss_body)
        for name, (width, height) in COLD_SIZES.items():
            body = photo_jpeg(width, height)
            for number in range(args.rounds):
                (folder / f"cold-{name.replace(' ', '')}-{number}.jpg").write_bytes(body)
        node = start_node_process(Path(tmp), local_config(
            folder, f'[server]\nworkers = {args.workers}\ntransform_threads = {args.transform_threads}\n'
                    f'[cache]\ndir = "{tmp}/cache"\n'))
        pid = node.process.pid
        threads = args.transform_threads or os.cpu_count()
        options = encoder_options(defaults)
        service = ForkedServer.start(BARE_SERVICE_SERVER, [str(folder), str(args.workers), str(threads),
                                                           *map(str, (options.quality, options.avif_quality,
                                                                      options.avif_effort))],
                                     args.workers)
        client = AsyncHTTPClient(force_instance=True, max_clients=CONCURRENCY)
        pool = ThreadPoolExecutor(args.threads)
        widths = itertools.cycle(WIDTHS)
        # every URL new: a width and a quality (both part of the key, about the same work each)
        new_urls = (f"/tr:w-{w},q-{q}/miss.jpg" for q, w in itertools.product(range(80, 60, -1), WIDTHS))
        if args.new_originals:  # every URL a new file (a JPEG comment apart: the same decoding work)
            for number in range(args.rounds * args.requests):
                (folder / f"new-{number}.jpg").write_bytes(unique_jpeg(miss_body, str(number)))
            new_urls = (f"/tr:w-{w}/new-{n}.jpg" for n, w in zip(itertools.count(), itertools.cycle(WIDTHS)))
        service_urls = itertools.cycle(f"jpg/{w}/miss.jpg" for w in WIDTHS)
        print(f"libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}; node: {args.workers} workers "
              f"x {args.transform_threads or os.cpu_count()} transform threads; "
              f"bare: {args.threads} threads; load average at start {os.getloadavg()[0]:.1f}")
        try:
            await client.fetch(f"{node.url}/tr:w-300/miss.jpg")  # warm-up: codecs, original cached
            bare_round(pool, [(folder / "miss.jpg", 300)] * CONCURRENCY, defaults)
            profile = start_profile(pid, args.profile) if args.profile else None
            node_rates, node_cpu, bare_rates, service_rates, service_cpu = [], [], [], [], []
            node_samples, service_samples = Counter(), Counter()

            def sampled(pids: list[int], into: Counter):
                return perf_samples(pids, into, Path(tmp)) if args.by_library else nullcontext()
            try:
                for number in range(args.rounds):
                    urls = list(itertools.islice(new_urls, args.requests))
                    jobs = [(folder / "miss.jpg", w) for w in itertools.islice(widths, args.requests)]
                    if number % 2:
                        bare_rates.append(bare_round(pool, jobs, defaults))
                    with sampled(process_tree(pid), node_samples):
                        rate, cpu = await node_round(client, node.url, urls, pid)
                    node_rates.append(rate)
                    node_cpu.append(cpu)
                    with sampled(process_tree(service.process.pid), service_samples):
                        rate, cpu = await node_round(client, service.url,
                                                     list(itertools.islice(service_urls, args.requests)),
                                                     service.process.pid, cache=None)
                    service_rates.append(rate)
                    service_cpu.append(cpu)
                    if not number % 2:
                        bare_rates.append(bare_round(pool, jobs, defaults))
            finally:
                if profile is not None:
                    profile.send_signal(2)
                    profile.wait(timeout=60)
            bare_rates, bare_cpu = [rate for rate, _ in bare_rates], [cpu for _, cpu in bare_rates]
            ratio = median(node_rates) / median(bare_rates)
            print(f"miss throughput, 2000x1333 JPEG -> 260-500 px JPEG, concurrency {CONCURRENCY}, "
                  f"{args.rounds} rounds x {args.requests}:")
            print(f"  node {median(node_rates):7.1f} img/s ({median(node_cpu):.1f} ms CPU/img)   "
                  f"bare pyvips {median(bare_rates):7.1f} img/s ({median(bare_cpu):.1f} ms CPU/img)   "
                  f"ratio {ratio:.2f} (goal >= 0.95), CPU bare/node {median(bare_cpu) / median(node_cpu):.2f}")
            print(f"  bare Tornado service {median(service_rates):7.1f} img/s ({median(service_cpu):.1f} ms CPU/img): "
                  f"node/service {median(node_rates) / median(service_rates):.2f}, "
                  f"CPU service/node {median(service_cpu) / median(node_cpu):.2f}")
            if args.by_library:
                misses = args.rounds * args.requests
                print(f"CPU per miss by library (perf, {PERF_HZ} samples a CPU second, {misses} misses each):\n"
                      + library_table(node_samples, service_samples, misses))

            print(f"single cold miss -> w-{COLD_WIDTH} JPEG, one at a time, {args.rounds} rounds:")
            for name in () if args.no_cold else COLD_SIZES:
                node_times, bare_times, service_times = [], [], []
                for number in range(args.rounds):
                    file = f"cold-{name.replace(' ', '')}-{number}.jpg"
                    if number % 2:
                        bare_times.append(bare_single(folder / file, defaults))
                    node_times.append(await cold_single(client, f"{node.url}/tr:w-{COLD_WIDTH}/{file}"))
                    service_times.append(await cold_single(client, f"{service.url}jpg/{COLD_WIDTH}/{file}", cache=None))
                    if not number % 2:
                        bare_times.append(bare_single(folder / file, defaults))
                print(f"  {name:7s} node {median(node_times) * 1000:6.1f} ms   bare {median(bare_times) * 1000:6.1f} ms"
                      f"   bare Tornado service {median(service_times) * 1000:6.1f} ms"
                      f"   node/service {median(node_times) / median(service_times):.2f}"
                      f"   node/bare {median(node_times) / median(bare_times):.2f} (goal <= 1.1)")
        finally:
            client.close()
            pool.shutdown()
            node.stop()
            service.stop()
        print(f"load average at end {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=96, help="requests per throughput round")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--transform-threads", type=int, default=0,
                        help="the node's [server] transform_threads (0: its default)")
    parser.add_argument("--threads", type=int, default=2, help="bare pyvips threads")
    parser.add_argument("--no-cold", action="store_true", help="only the throughput case")
    parser.add_argument("--new-originals", action="store_true",
                        help="throughput: every URL a new original (an original miss too), as in compare.py")
    parser.add_argument("--profile", type=Path, help="write a py-spy flame graph (SVG) of the node's workers")
    parser.add_argument("--by-library", action="store_true",
                        help="split the node's and the bare service's CPU per miss by library (Linux perf)")
    args = parser.parse_args()
    args.rounds = min(max(args.rounds, 1), 20)
    args.requests = min(max(args.requests, CONCURRENCY), 1000)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
