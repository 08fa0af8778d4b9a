"""Side by side, one command: the node against thumbor, bare pyvips, bare Tornado and nginx.

    .venv/bin/python -m benchmarks.compare [--quick] [--rounds N] [--only hits|cold|memory]

What runs, all on 127.0.0.1, started and stopped by this script:
- the node: `edge serve --workers 2`, one local origin over a folder of generated photos;
- thumbor as deployed behind a balancer: 2 single-process instances behind nginx (round robin,
  upstream keep-alive), file loader over the same folder, file storage and file result storage on
  (unsafe URLs stored), the same quality (JPEG, WebP; AVIF the node's AVIF quality), AVIF speed = 9 - the
  node's effort,
  non-progressive JPEG; installed once into its own virtualenv under ~/.cache/edge-bench/, never
  into the project's;
- bare pyvips: `thumbnail_buffer` + save with the node's encoder options, a 2-thread pool;
- bare Tornado: 2 processes (one SO_REUSEPORT socket each) answering the node's cached bytes from memory,
  through a `RequestHandler`, and once more from Tornado's HTTP server alone (an `HTTPMessageDelegate`
  writing the response: what no handler of `tornado.web` can undercut);
- the bare Tornado service (`baselines.BARE_SERVICE_SERVER`): the least a Tornado image service does
  for a miss, 2 processes × 2 threads like the node, the file read and rendered with the node's
  shrink-on-load in one hand-off to a thread, no cache, metrics or log, glibc's allocator defaults:
  for misses and their memory, what the node costs beyond it is the node's own;
- nginx (2 workers) serving the same bytes as a static file: the floor for hits.
- the engines alone (`benchmarks/engines.py`): libvips and Pillow without HTTP, one thread each.

Measured in alternating rounds (the order of the systems rotates every round), medians:
cache-hit throughput, CPU per request, p50/p99 and how evenly the workers share the CPU, at 16
and 256 connections (wrk); single cold
misses of 1, 12 and 24 MP JPEGs to 300 px; miss throughput to 300 px JPEG, WebP and AVIF from a
2000x1333 JPEG at concurrency 8 with unique URLs (unique files: every request is a miss; the node's
`X-Cache` and the files thumbor's result storage gains prove it); PSS and RSS (sums over each
system's processes) idle, at peak and after a 12 MP miss load. CPU, RSS and PSS are read from /proc.

Writes benchmarks/results/compare.md and compare.png (`--quick`: compare-quick.*; `--only hits`, `cold`
or `memory`, those rows alone: compare-hits.*, compare-cold.*, compare-memory.*) and, after a full run,
the table in README.md between its `compare:start`/`compare:end` markers.

Needs: wrk and nginx (Debian: `apt-get install wrk nginx`), matplotlib (`pip install -e '.[bench]'`),
python3-venv and PyPI (thumbor's virtualenv, ~2 min the first time; reused after). A full run
takes 6-12 minutes on 2 cores (bounded by --budget, 14 min); `--quick` under 2 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pyvips

import edge
from benchmarks import engines
from benchmarks.baselines import BARE_SERVICE_SERVER, BARE_TORNADO_SERVER, encoder_options
from benchmarks.common import cpu_seconds, median, read_port
from edge.config import Defaults
from edge.testing import NodeProcess, write_config
from tests.imagecorpus import photo_jpeg
from tests.nodes import SAMPLES, local_config

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
# the newest thumbor (its wheels: CPython >= 3.10); Pillow >= 11.3 encodes AVIF itself (with aom, as libvips)
THUMBOR_VERSION = "7.8.0"
THUMBOR_REQUIREMENTS = (f"thumbor=={THUMBOR_VERSION}", "Pillow==12.3.0")
THUMBOR_VENV = Path.home() / ".cache" / "edge-bench" / f"thumbor-{THUMBOR_VERSION}"

WIDTH = 300
FORMATS = ("jpg", "webp", "avif")
THUMBOR_FORMAT = {"jpg": "jpeg", "webp": "webp", "avif": "avif"}
FORMAT_NAME = {"jpg": "JPEG", "webp": "WebP", "avif": "AVIF"}
LOADER = {"jpg": "jpegload", "webp": "webpload", "avif": "heifload"}
MISS_SOURCE = (2000, 1333)
COLD_SOURCES = {"1 MP": (1224, 816), "12 MP": (4000, 3000), "24 MP": (6000, 4000)}
MEMORY_SOURCE = (4000, 3000)
CONNECTIONS = (16, 256)
CONCURRENCY = 8
NODE, THUMBOR, BARE_PYVIPS, BARE_TORNADO, NGINX = "node", "thumbor", "bare pyvips", "bare Tornado", "nginx"
BARE_HTTP = "bare Tornado HTTP server"
BARE_SERVICE = "bare Tornado service"
REQUEST_TIMEOUT = 120
START_TIMEOUT = 60


@dataclass(frozen=True)
class Plan:
    rounds: int
    hit_seconds: int
    cold_per_round: int
    miss_batch: int
    memory_batch: int
    memory_rounds: int
    settle_seconds: float


# 12 MP load: 5 rounds of 24 (3 of 16 gave node/bare ratios 0.89-1.13 from run to run); cold misses: 30
# a system and size (10 gave a 1 MP node/bare of 1.37 and 1.57 an hour apart; quartiles span ~4 ms)
FULL = Plan(rounds=5, hit_seconds=4, cold_per_round=6, miss_batch=32, memory_batch=24, memory_rounds=5,
            settle_seconds=3)
QUICK = Plan(rounds=2, hit_seconds=1, cold_per_round=1, miss_batch=8, memory_batch=8, memory_rounds=1,
             settle_seconds=1)


# -- processes ----------------------------------------------------------------------------------------
def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants that are still alive."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
    return pids


def tree_cpu(pids: list[int]) -> float:
    """User + system CPU seconds of every process of `pids`' trees."""
    total = 0.0
    for pid in {p for root in pids for p in process_tree(root)}:
        with contextlib.suppress(OSError):  # a process that has just exited
            total += cpu_seconds(pid)
    return total


def tree_rss(pids: list[int]) -> float:
    """Resident memory of every process of `pids`' trees, summed, in MB."""
    total = 0
    for pid in {p for root in pids for p in process_tree(root)}:
        with contextlib.suppress(OSError):
            match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
            total += int(match.group(1)) if match else 0
    return total / 1024


def tree_pss(pids: list[int]) -> float:
    """Proportional set size of every process of `pids`' trees, summed, in MB: each page is divided
    among the processes that map it (a page a supervisor shares with 2 forked workers counts a third
    in each), so the sum is what the system costs the machine; a sum of RSS counts that page 3 times."""
    total = 0
    for pid in {p for root in pids for p in process_tree(root)}:
        with contextlib.suppress(OSError):
            match = re.search(r"^Pss:\s+(\d+) kB", Path(f"/proc/{pid}/smaps_rollup").read_text(), re.M)
            total += int(match.group(1)) if match else 0
    return total / 1024


@dataclass(frozen=True)
class Footprint:
    """A system's memory in MB, summed over its processes."""

    rss: float
    pss: float


class Service:
    """A child process in its own session (Ctrl-C reaches only this script, which stops it), stopped
    with its whole process group: SIGTERM, SIGKILL after 10 s."""

    def __init__(self, name: str, command: list[str], *, pass_fds: tuple[int, ...] = (),
                 stdin=None, stdout=None, cwd: Path | None = None, log: Path | None = None):
        self.name, self.log = name, log
        self._log = log.open("w") if log else subprocess.DEVNULL
        self.process = subprocess.Popen(command, stdin=stdin, stdout=stdout, stderr=self._log,
                                        pass_fds=pass_fds, cwd=cwd, start_new_session=True, text=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        with contextlib.suppress(ProcessLookupError):  # workers that outlived their master
            os.killpg(self.process.pid, signal.SIGKILL)
        if self._log is not subprocess.DEVNULL:
            self._log.close()


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float = REQUEST_TIMEOUT) -> tuple[int, http.client.HTTPMessage, bytes]:
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1"
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def wait_until_serving(url: str, service: Service | None = None, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if service is not None and service.process.poll() is not None:
            said = "".join(service.log.read_text().splitlines(True)[-20:]) if service.log else ""
            raise RuntimeError(f"{service.name} exited with status {service.process.returncode}:\n{said}")
        with contextlib.suppress(OSError):
            if get(url, timeout=5)[0] == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout} s")
        time.sleep(0.1)


# -- the systems ----------------------------------------------------------------------------------------
@dataclass
class System:
    """One system under test: the roots of its process trees and its URLs."""

    name: str
    roots: list[int]
    base_url: str = ""
    miss_path: Callable[[str, str], str] | None = None  # (file name, format) -> URL path
    hit_url: str = ""
    #: the processes that share the serving (default: the children of the first root)
    worker_roots: list[int] | None = None

    def cpu(self) -> float:
        return tree_cpu(self.roots)

    def memory(self) -> Footprint:
        return Footprint(tree_rss(self.roots), tree_pss(self.roots))

    def workers(self) -> list[int]:
        if self.worker_roots is not None:
            return self.worker_roots
        root = self.roots[0]
        return [int(pid) for pid in Path(f"/proc/{root}/task/{root}/children").read_text().split()]


def nginx_binary() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")  # not on a user's PATH


def start_nginx(stack: contextlib.ExitStack, directory: Path, workers: int, server: str) -> Service:
    """nginx in the foreground with everything (pid, logs, temp files) under `directory`."""
    directory.mkdir(parents=True)
    temp = "\n".join(f"  {kind}_temp_path {directory}/{kind};" for kind in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = "user root;" if os.geteuid() == 0 else ""  # workers must read our 0700 temporary folder
    (directory / "nginx.conf").write_text(f"""
{user}
worker_processes {workers};
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
{temp}
{server}
}}
""")
    service = Service("nginx", [nginx_binary(), "-p", str(directory), "-c", str(directory / "nginx.conf"),
                                "-e", str(directory / "error.log")], log=directory / "stderr.log")
    stack.callback(service.stop)
    return service


def start_node(stack: contextlib.ExitStack, work: Path, corpus: Path) -> System:
    folder = work / "node"
    folder.mkdir()
    node = NodeProcess(write_config(folder, local_config(corpus)), "--workers", "2", stdout=subprocess.DEVNULL)
    stack.callback(node.stop)
    return System(NODE, [node.process.pid], node.url,
                  lambda name, fmt: f"/tr:w-{WIDTH},f-{fmt}/{name}", f"{node.url}/tr:w-{WIDTH}/hit.jpg")


THUMBOR_CONF = """
LOADER = 'thumbor.loaders.file_loader'
FILE_LOADER_ROOT_PATH = {corpus!r}
STORAGE = 'thumbor.storages.file_storage'
FILE_STORAGE_ROOT_PATH = {storage!r}
RESULT_STORAGE = 'thumbor.result_storages.file_storage'
RESULT_STORAGE_FILE_STORAGE_ROOT_PATH = {results!r}
RESULT_STORAGE_STORES_UNSAFE = True
ALLOW_UNSAFE_URL = True
QUALITY = {quality}
WEBP_QUALITY = {quality}
AVIF_QUALITY = {avif_quality}
AVIF_SPEED = {avif_speed}
AVIF_CODEC = 'aom'
PROGRESSIVE_JPEG = False
PRESERVE_EXIF_INFO = False
NON_BLOCKING_SOCKETS = True
MAX_AGE = {max_age}
"""


def thumbor_venv() -> Path:
    """thumbor's own virtualenv, installed once and reused (a stamp marks a complete install)."""
    stamp = THUMBOR_VENV / "installed.txt"
    wanted = "\n".join(THUMBOR_REQUIREMENTS)
    if stamp.exists() and stamp.read_text() == wanted:
        return THUMBOR_VENV
    print(f"installing {' '.join(THUMBOR_REQUIREMENTS)} into {THUMBOR_VENV} (once)", flush=True)
    shutil.rmtree(THUMBOR_VENV, ignore_errors=True)
    THUMBOR_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(THUMBOR_VENV)], check=True, timeout=300)
    subprocess.run([str(THUMBOR_VENV / "bin" / "python"), "-m", "pip", "install", "-q", *THUMBOR_REQUIREMENTS],
                   check=True, timeout=900)
    stamp.write_text(wanted)
    return THUMBOR_VENV


def thumbor_path(name: str, fmt: str) -> str:
    return f"/unsafe/{WIDTH}x0/filters:format({THUMBOR_FORMAT[fmt]})/{name}"


def start_thumbor(stack: contextlib.ExitStack, work: Path, corpus: Path, venv: Path) -> tuple[System, Path]:
    """2 single-process thumbor instances (each on a socket this script binds) behind nginx."""
    folder = work / "thumbor"
    folder.mkdir()
    results = folder / "result-storage"
    defaults = Defaults()
    conf = folder / "thumbor.conf"
    conf.write_text(THUMBOR_CONF.format(corpus=str(corpus), storage=str(folder / "storage"),
                                        results=str(results), quality=defaults.quality,
                                        avif_quality=encoder_options(defaults).avif_quality,
                                        avif_speed=9 - defaults.avif_effort,
                                        max_age=defaults.cache_control_max_age))
    instances, ports = [], []
    for number in range(2):
        sock = listening_socket()
        stack.callback(sock.close)
        ports.append(sock.getsockname()[1])
        instance = Service(f"thumbor {number}", [str(venv / "bin" / "thumbor"), "--conf", str(conf),
                                                 "--fd", str(sock.fileno()), "-l", "error"],
                           pass_fds=(sock.fileno(),), log=folder / f"thumbor-{number}.log")
        stack.callback(instance.stop)
        instances.append(instance)
    for port, instance in zip(ports, instances):
        wait_until_serving(f"http://127.0.0.1:{port}/healthcheck", instance)
    port = free_port()
    upstream = "\n".join(f"    server 127.0.0.1:{p};" for p in ports)
    balancer = start_nginx(stack, folder / "nginx", 1, f"""
  upstream thumbor {{
{upstream}
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://thumbor;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }}
  }}""")
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(base + "/healthcheck", balancer)
    roots = [instance.pid for instance in instances] + [balancer.pid]
    return System(THUMBOR, roots, base, thumbor_path, base + thumbor_path("hit.jpg", "jpg"),
                  [instance.pid for instance in instances]), results


def start_static_nginx(stack: contextlib.ExitStack, work: Path, body: bytes) -> System:
    static = work / "static"
    static.mkdir()
    (static / "hit.jpg").write_bytes(body)
    port = free_port()
    service = start_nginx(stack, work / "nginx-static", 2, f"""
  types {{ image/jpeg jpg; }}
  sendfile on;
  server {{
    listen 127.0.0.1:{port};
    root {static};
  }}""")
    url = f"http://127.0.0.1:{port}/hit.jpg"
    wait_until_serving(url, service)
    return System(NGINX, [service.pid], hit_url=url)


def start_baseline_server(stack: contextlib.ExitStack, name: str, script: str, args: list[str], processes: int,
                          probe_path: str) -> tuple[Service, str]:
    """A `benchmarks.baselines` server script in `processes` processes: the service and its base URL,
    once `probe_path` answers 200."""
    service = Service(name, [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, cwd=ROOT)
    stack.callback(service.stop)
    url = f"http://127.0.0.1:{read_port(service.process.stdout, processes)}"
    wait_until_serving(url + probe_path, service)
    return service, url


def start_bare_tornado(stack: contextlib.ExitStack, work: Path, body: bytes, processes: int,
                       layer: str = "handler") -> System:
    """`baselines.BARE_TORNADO_SERVER` answering `body`: through a RequestHandler (`handler`), or
    from Tornado's HTTP server alone (`connection`)."""
    (work / "bare-body.jpg").write_bytes(body)
    name = BARE_TORNADO if layer == "handler" else BARE_HTTP
    service, url = start_baseline_server(stack, name, BARE_TORNADO_SERVER,
                                         [str(work / "bare-body.jpg"), str(processes), layer], processes, "/hit.jpg")
    return System(name, [service.pid], hit_url=f"{url}/hit.jpg")


def start_bare_service(stack: contextlib.ExitStack, corpus: Path, processes: int) -> System:
    options = encoder_options(Defaults())
    service, url = start_baseline_server(
        stack, BARE_SERVICE, BARE_SERVICE_SERVER,
        [str(corpus), str(processes), str(processes), *map(str, (options.quality, options.avif_quality,
                                                                 options.avif_effort))],
        processes, f"/jpg/{WIDTH}/hit.jpg")
    return System(BARE_SERVICE, [service.pid], url, lambda name, fmt: f"/{fmt}/{WIDTH}/{name}")


BARE_PYVIPS_WORKER = r"""
import json, sys, time, types
from concurrent.futures import ThreadPoolExecutor
import pyvips
from benchmarks.baselines import bare_save
pyvips.cache_set_max(0)
options = types.SimpleNamespace(quality=int(sys.argv[2]), avif_quality=int(sys.argv[3]), avif_effort=int(sys.argv[4]))
pool = ThreadPoolExecutor(int(sys.argv[1]))
def render(path, fmt, width):
    with open(path, "rb") as file:
        return bare_save(pyvips.Image.thumbnail_buffer(file.read(), width), fmt, options)
for line in sys.stdin:
    job = json.loads(line)
    started = time.perf_counter()
    outputs = list(pool.map(lambda path: render(path, job["fmt"], job["width"]), job["paths"]))
    seconds = time.perf_counter() - started
    first = pyvips.Image.new_from_buffer(outputs[0], "")
    print(json.dumps({"seconds": seconds, "width": first.width, "loader": first.get("vips-loader")}), flush=True)
"""


class BarePyvips:
    """thumbnail_buffer + save in a 2-thread pool, in its own process (its RSS is its own)."""

    def __init__(self, stack: contextlib.ExitStack, threads: int = 2):
        options = encoder_options(Defaults())
        self.service = Service(BARE_PYVIPS, [sys.executable, "-c", BARE_PYVIPS_WORKER, str(threads),
                                             *map(str, (options.quality, options.avif_quality, options.avif_effort))],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
        stack.callback(self.service.stop)
        self.system = System(BARE_PYVIPS, [self.service.pid])

    def render(self, paths: list[Path], fmt: str) -> float:
        """Seconds to render `paths` to `fmt`, WIDTH px wide; checks the first output."""
        self.service.process.stdin.write(json.dumps({"paths": [str(p) for p in paths], "fmt": fmt,
                                                     "width": WIDTH}) + "\n")
        self.service.process.stdin.flush()
        line = self.service.process.stdout.readline()  # the worker answers or exits (EOF)
        if not line:
            raise RuntimeError("the bare pyvips worker exited")
        answer = json.loads(line)
        if answer["width"] != WIDTH or not answer["loader"].startswith(LOADER[fmt]):
            raise RuntimeError(f"bare pyvips made a wrong image: {answer}")
        return answer["seconds"]


# -- loads --------------------------------------------------------------------------------------------
@dataclass
class HitRun:
    rate: float
    cpu_us: float
    p50_ms: float
    p99_ms: float
    errors: int
    #: the busiest serving process's share of the serving processes' CPU (1 / processes: even)
    busiest: float


def wrk_run(system: System, seconds: int, connections: int) -> HitRun:
    assert system.hit_url.startswith("http://127.0.0.1:")
    workers = system.workers()
    worker_cpu = [tree_cpu([pid]) for pid in workers]
    cpu = system.cpu()
    result = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency",
                             system.hit_url], capture_output=True, text=True, timeout=seconds + 60, check=True)
    cpu = system.cpu() - cpu
    worker_cpu = [tree_cpu([pid]) - before for pid, before in zip(workers, worker_cpu)]
    out = result.stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    errors += int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    return HitRun(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), cpu / max(requests, 1) * 1e6,
                  wrk_latency(out, "50%"), wrk_latency(out, "99%"), errors,
                  max(worker_cpu) / sum(worker_cpu) if sum(worker_cpu) > 0 else 1.0)


def wrk_latency(out: str, percentile: str) -> float:
    value, unit = re.search(rf"^\s+{percentile}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


@dataclass
class MissRun:
    rate: float
    cpu_ms: float
    errors: int = 0
    hits: int = 0  # responses that did not come from a render
    peak: Footprint = Footprint(0.0, 0.0)  # the highest RSS and the highest PSS seen


class MemorySampler:
    """The peaks of a system's summed RSS and PSS, sampled every 50 ms while the block runs (when
    `sampling`: reading /proc/<pid>/smaps_rollup walks the process's mappings under its memory lock,
    which its page faults and mmaps wait for, so the timed phases run without it)."""

    def __init__(self, system: System, sampling: bool = True):
        self.system, self.peak = system, system.memory() if sampling else Footprint(0.0, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._sampling = sampling

    def _run(self) -> None:
        while self._sampling and not self._stop.wait(0.05):
            self._sample()

    def _sample(self) -> None:
        now = self.system.memory()
        self.peak = Footprint(max(self.peak.rss, now.rss), max(self.peak.pss, now.pss))

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        if self._sampling:
            self._sample()


def fetch_all(base_url: str, paths: list[str], concurrency: int) -> list[tuple[int, str, bytes]]:
    """GET every path, `concurrency` keep-alive connections at a time: (status, X-Cache, body) each."""
    parts = urlsplit(base_url)
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for path in paths:
        todo.put(path)
    answers: list[tuple[int, str, bytes]] = []

    def client() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=REQUEST_TIMEOUT)
        try:
            while True:
                try:
                    path = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    connection.request("GET", path)
                    response = connection.getresponse()
                    answers.append((response.status, response.headers.get("X-Cache", ""), response.read()))
                except (OSError, http.client.HTTPException) as error:
                    answers.append((0, "", repr(error).encode()))
                    connection.close()
        finally:
            connection.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(REQUEST_TIMEOUT * len(paths))
    return answers


def count_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def unique_jpeg(body: bytes, tag: str) -> bytes:
    """The JPEG `body` with a comment segment (COM) holding `tag` right after its SOI marker: other
    bytes, the same pixels and the same decoding work."""
    comment = tag.encode()
    return body[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + body[2:]


class Bench:
    """The systems, the corpus and the measurements of one run."""

    def __init__(self, plan: Plan, work: Path, corpus: Path, systems: dict[str, System], bare: BarePyvips,
                 thumbor_results: Path, deadline: float):
        self.plan, self.work, self.corpus = plan, work, corpus
        self.systems, self.bare, self.thumbor_results = systems, bare, thumbor_results
        self.deadline = deadline
        self.cut_short: list[str] = []
        self.thumbor_stored = 0
        self.thumbor_requests = 0
        self.node_misses = self.node_requests = 0
        self.sources: dict[tuple[int, int], bytes] = {}

    def rounds(self, phase: str, count: int) -> Iterator[int]:
        """Round numbers; stops early (at least one round) when the run's time budget is spent."""
        for number in range(count):
            if number and time.monotonic() > self.deadline:
                self.cut_short.append(f"{phase}: {number} of {count} rounds (time budget)")
                return
            yield number

    def unique_files(self, size: tuple[int, int], names: list[str]) -> list[Path]:
        """Copies of one generated photo, each made unique by a JPEG comment (so neither system can
        reuse anything across them), under the shared originals folder."""
        if size not in self.sources:
            self.sources[size] = photo_jpeg(*size)
        body = self.sources[size]
        paths = []
        for name in names:
            path = self.corpus / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(unique_jpeg(body, name))
            paths.append(path)
        return paths

    def misses(self, system: System, files: list[Path], fmt: str, concurrency: int,
               sample_memory: bool = False) -> MissRun:
        """Every file rendered once to `fmt` by `system`, checked to have been a miss and a right image;
        with its peak memory when `sample_memory`."""
        if system is self.bare.system:
            cpu = system.cpu()
            with MemorySampler(system, sample_memory) as memory:
                seconds = self.bare.render(files, fmt)
            return MissRun(len(files) / seconds, (system.cpu() - cpu) / len(files) * 1e3, peak=memory.peak)
        paths = [system.miss_path(str(f.relative_to(self.corpus)), fmt) for f in files]
        stored = count_files(self.thumbor_results) if system.name == THUMBOR else 0
        cpu = system.cpu()
        with MemorySampler(system, sample_memory) as memory:
            started = time.perf_counter()
            answers = fetch_all(system.base_url, paths, concurrency)
            seconds = time.perf_counter() - started
        cpu = system.cpu() - cpu
        good = [body for status, _, body in answers if status == 200]
        errors = len(answers) - len(good) + len(paths) - len(answers)
        if not good:
            raise RuntimeError(f"{system.name}: no request answered 200: {answers[:1]}")
        first = pyvips.Image.new_from_buffer(good[0], "")
        if first.width != WIDTH or not first.get("vips-loader").startswith(LOADER[fmt]):
            raise RuntimeError(f"{system.name} answered a wrong image: {first.width} px, {first.get('vips-loader')}")
        if system.name == NODE:
            hits = sum(1 for status, cache, _ in answers if status == 200 and cache != "MISS")
            self.node_requests += len(good)
            self.node_misses += len(good) - hits
        elif system.name == THUMBOR:
            hits = len(good) - self.thumbor_new_results(stored, len(good))
        else:  # the bare service keeps nothing
            hits = 0
        return MissRun(len(good) / seconds, cpu / max(len(good), 1) * 1e3, errors, hits, memory.peak)

    def thumbor_new_results(self, before: int, expected: int) -> int:
        """Files thumbor's result storage gained (it stores after responding: a bounded wait)."""
        deadline = time.monotonic() + 10
        while (gained := count_files(self.thumbor_results) - before) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        self.thumbor_requests += expected
        self.thumbor_stored += gained
        return gained

    def order(self, names: list[str], number: int) -> list[System]:
        """The systems in `names`, rotated by the round number: each goes first in turn."""
        shift = number % len(names)
        return [self.systems[name] for name in names[shift:] + names[:shift]]

    def hits(self) -> dict[tuple[str, int], list[HitRun]]:
        names = [NODE, THUMBOR, BARE_TORNADO, BARE_HTTP, NGINX]
        results: dict[tuple[str, int], list[HitRun]] = {}
        stored = count_files(self.thumbor_results)
        for number in self.rounds("hits", self.plan.rounds):
            for connections in CONNECTIONS:
                for system in self.order(names, number):
                    run = wrk_run(system, self.plan.hit_seconds, connections)
                    results.setdefault((system.name, connections), []).append(run)
            print(f"  hits, round {number + 1}", flush=True)
        if count_files(self.thumbor_results) != stored:
            raise RuntimeError("thumbor rendered during the hit runs: its result storage did not serve them")
        return results

    def cold(self) -> dict[tuple[str, str], list[float]]:
        names = [NODE, THUMBOR, BARE_PYVIPS, BARE_SERVICE]
        results: dict[tuple[str, str], list[float]] = {}
        for number in self.rounds("cold misses", self.plan.rounds):
            for label, size in COLD_SOURCES.items():
                files = self.unique_files(size, [f"cold/{label.replace(' ', '')}-{number}-{k}.jpg"
                                                 for k in range(self.plan.cold_per_round)])
                for k, file in enumerate(files):  # the systems interleaved file by file: the machine drifts
                    for system in self.order(names, number + k):
                        run = self.misses(system, [file], "jpg", 1)
                        if run.errors or run.hits:
                            raise RuntimeError(f"{system.name}: the cold miss of {label} failed or was a hit")
                        results.setdefault((system.name, label), []).append(1e3 / run.rate)
            print(f"  cold misses, round {number + 1}", flush=True)
        return results

    def throughput(self) -> dict[tuple[str, str], list[MissRun]]:
        names = [NODE, THUMBOR, BARE_PYVIPS, BARE_SERVICE]
        results: dict[tuple[str, str], list[MissRun]] = {}
        for number in self.rounds("miss throughput", self.plan.rounds):
            for fmt in FORMATS:
                files = self.unique_files(MISS_SOURCE, [f"miss/{fmt}-{number}-{i}.jpg"
                                                        for i in range(self.plan.miss_batch)])
                for system in self.order(names, number):
                    results.setdefault((system.name, fmt), []).append(self.misses(system, files, fmt, CONCURRENCY))
            print(f"  miss throughput, round {number + 1}", flush=True)
        return results

    def memory(self) -> tuple[dict[str, Footprint], dict[tuple[str, str], list[MissRun]], dict[str, list[Footprint]]]:
        """Idle memory, the 12 MP miss load (throughput and peak memory), memory once it has settled."""
        names = [NODE, THUMBOR, BARE_PYVIPS, BARE_SERVICE]
        idle = {name: system.memory() for name, system in self.systems.items()}
        loads: dict[tuple[str, str], list[MissRun]] = {}
        settled: dict[str, list[Footprint]] = {}
        for number in self.rounds("12 MP miss load", self.plan.memory_rounds):
            files = self.unique_files(MEMORY_SOURCE, [f"memory/{number}-{i}.jpg"
                                                      for i in range(self.plan.memory_batch)])
            for system in self.order(names, number):
                load = self.misses(system, files, "jpg", CONCURRENCY, sample_memory=True)
                loads.setdefault((system.name, "12 MP"), []).append(load)
                time.sleep(self.plan.settle_seconds)  # the measure: memory a few seconds after the load
                settled.setdefault(system.name, []).append(system.memory())
            print(f"  12 MP miss load, round {number + 1}", flush=True)
        return idle, loads, settled


# -- report -----------------------------------------------------------------------------------------
@dataclass
class Row:
    measure: str
    cells: dict[str, str]
    ratios: list[tuple[str, float, str, bool | None]] = field(default_factory=list)  # (label, value, goal, met)
    #: goals held to baselines made of the fixed stack alone (Tornado, libvips):
    #: (the node's ratio whose goal it is, label, value, met)
    floors: list[tuple[str, str, float, bool]] = field(default_factory=list)

    def ratio_text(self) -> str:
        text = "; ".join(f"{label} **{value:.2f}**{f' (goal {goal})' if goal else ''}{MARKS[met]}"
                         for label, value, goal, met in self.ratios) or "—"
        return text + "".join(f"; stack alone: {label} **{value:.2f}**{MARKS[met]}"
                              for _, label, value, met in self.floors)

    def verdict(self) -> str | None:
        """For each goal the node misses: whether the stack alone meets it in the same run (then the
        gap is the node's own work) or misses it too (then no service built on it would meet it).
        The bare service decides when it was measured: bare pyvips is libvips with no HTTP server, and
        Tornado is as fixed a part of the stack as libvips."""
        own = "".join(f"; the node's own work on top: node/service {value:.2f}"
                      for label, value, _, _ in self.ratios if label == "node/service")
        verdicts = []
        for label, value, goal, met in self.ratios:
            if met is not False:
                continue
            floors = [(name, floor, floor_met) for of, name, floor, floor_met in self.floors if of == label]
            listed = ", ".join(f"{name} {floor:.2f}{MARKS[floor_met]}" for name, floor, floor_met in floors)
            service_met = [floor_met for name, _, floor_met in floors if name.startswith("service/")]
            if not floors:
                reach = "no stack-alone baseline for it"
            elif all(service_met) and any(floor_met for _, _, floor_met in floors):
                reach = f"the stack alone meets it ({listed}): the gap is the node's own work"
            else:
                engine = ("; libvips alone, with no HTTP server, meets it: the rest is Tornado's"
                          if any(floor_met for _, _, floor_met in floors) else "")
                reach = (f"the stack alone misses it too ({listed}): out of reach of the least service built "
                         f"on Tornado and libvips{engine}{own}")
            verdicts.append(f"{label} {value:.2f} (goal {goal}); {reach}")
        return f"- {self.measure}: {' — '.join(verdicts)}." if verdicts else None


MARKS = {True: " ✓", False: " ✗", None: ""}


def machine() -> dict[str, str]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    memory = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 2**20
    versions = subprocess.run([str(THUMBOR_VENV / "bin" / "python"), "-c",
                               "import thumbor, PIL; print(thumbor.__version__, PIL.__version__)"],
                              capture_output=True, text=True, timeout=60).stdout.split()
    nginx = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True, timeout=30).stderr.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT, timeout=30).stdout.strip()
    return {
        "cpu": f"{os.cpu_count()} cores, {model}, {memory:.0f} GB",
        "software": f"Python {platform.python_version()}, libvips {pyvips.version(0)}.{pyvips.version(1)}."
                    f"{pyvips.version(2)}, edge {edge.__version__} ({commit or 'no git'}), thumbor {versions[0]}"
                    f" (Pillow {versions[1]}), {nginx.replace('nginx version: ', '')}",
    }


def build_rows(hits, cold, throughput, idle, loads, settled) -> list[Row]:
    rows: list[Row] = []
    dash = "—"

    def hit(name: str, connections: int, attribute: str) -> float:
        return median([getattr(run, attribute) for run in hits[(name, connections)]])

    for connections in CONNECTIONS:
        if (NODE, connections) not in hits:
            continue
        rate = {name: hit(name, connections, "rate") for name in (NODE, THUMBOR, BARE_TORNADO, BARE_HTTP, NGINX)}
        cpu = {name: hit(name, connections, "cpu_us") for name in rate}
        errors = {name: sum(run.errors for run in hits[(name, connections)]) for name in rate}

        def cell(name: str) -> str:
            return f"{rate[name]:.0f} req/s, {cpu[name]:.0f} µs CPU" + (f" ({errors[name]} errors)"
                                                                         if errors[name] else "")
        rows.append(Row(f"cache hit, {connections} connections", {
            NODE: cell(NODE), THUMBOR: cell(THUMBOR), BARE_PYVIPS: dash,
            "bare": f"Tornado {cell(BARE_TORNADO)}; Tornado's HTTP server alone {cell(BARE_HTTP)}; nginx {cell(NGINX)}"},
            [("node/Tornado req/s", rate[NODE] / rate[BARE_TORNADO], "≥ 0.9", rate[NODE] / rate[BARE_TORNADO] >= 0.9),
             ("node/thumbor", rate[NODE] / rate[THUMBOR], "≥ 5", rate[NODE] / rate[THUMBOR] >= 5),
             ("Tornado/thumbor", rate[BARE_TORNADO] / rate[THUMBOR], "", None),
             ("HTTP server alone/thumbor", rate[BARE_HTTP] / rate[THUMBOR], "", None),
             ("CPU Tornado/node", cpu[BARE_TORNADO] / cpu[NODE], "", None)]))
        p50 = {name: hit(name, connections, "p50_ms") for name in rate}
        p99 = {name: hit(name, connections, "p99_ms") for name in rate}
        rows.append(Row(f"hit p50 / p99, {connections} connections", {
            name: f"{milliseconds(p50[name])} / {milliseconds(p99[name])} ms" for name in (NODE, THUMBOR)} | {
            BARE_PYVIPS: dash,
            "bare": f"Tornado {milliseconds(p50[BARE_TORNADO])} / {milliseconds(p99[BARE_TORNADO])} ms; "
                    f"nginx {milliseconds(p50[NGINX])} / {milliseconds(p99[NGINX])} ms"},
            [("p99 node/Tornado", p99[NODE] / p99[BARE_TORNADO], "≤ 1.2", p99[NODE] / p99[BARE_TORNADO] <= 1.2)]))
        busiest = {name: [run.busiest for run in hits[(name, connections)]] for name in rate}

        def spread(name: str) -> str:
            return f"{median(busiest[name]):.0%} (most uneven round {max(busiest[name]):.0%})"
        rows.append(Row(f"busiest worker's share of hit CPU, {connections} connections (50 % = even)", {
            NODE: spread(NODE), THUMBOR: spread(THUMBOR), BARE_PYVIPS: dash,
            "bare": f"Tornado {spread(BARE_TORNADO)}; nginx {spread(NGINX)}"}))
    for label in COLD_SOURCES:
        if (NODE, label) not in cold:
            continue
        ms = {name: median(cold[(name, label)]) for name in (NODE, THUMBOR, BARE_PYVIPS, BARE_SERVICE)}
        rows.append(Row(f"cold miss, {label} JPEG → {WIDTH} px JPEG", {
            name: f"{milliseconds(ms[name])} ms" for name in (NODE, THUMBOR, BARE_PYVIPS)} | {
            "bare": f"Tornado service {milliseconds(ms[BARE_SERVICE])} ms"},
            [("node/bare", ms[NODE] / ms[BARE_PYVIPS], "≤ 1.1", ms[NODE] / ms[BARE_PYVIPS] <= 1.1),
             ("node/service", ms[NODE] / ms[BARE_SERVICE], "", None),
             ("thumbor/node", ms[THUMBOR] / ms[NODE], "", None)],
            [("node/bare", "service/bare", ms[BARE_SERVICE] / ms[BARE_PYVIPS],
              ms[BARE_SERVICE] / ms[BARE_PYVIPS] <= 1.1)]))
    goals = {fmt: (0.95, 1.2) for fmt in FORMATS} | {"12 MP": (0.95, 1.5)}
    sources = {fmt: f"{MISS_SOURCE[0]}×{MISS_SOURCE[1]} JPEG → {WIDTH} px {FORMAT_NAME[fmt]}" for fmt in FORMATS}
    sources["12 MP"] = f"{MEMORY_SOURCE[0]}×{MEMORY_SOURCE[1]} JPEG → {WIDTH} px JPEG"
    for (key, runs_by_system) in [(fmt, throughput) for fmt in FORMATS] + [("12 MP", loads)]:
        if (NODE, key) not in runs_by_system:
            continue
        runs = {name: runs_by_system[(name, key)] for name in (NODE, THUMBOR, BARE_PYVIPS, BARE_SERVICE)
                if (name, key) in runs_by_system}
        rate = {name: median([r.rate for r in value]) for name, value in runs.items()}
        cpu = {name: median([r.cpu_ms for r in value]) for name, value in runs.items()}
        flaws = {name: (sum(r.errors for r in value), sum(r.hits for r in value)) for name, value in runs.items()}

        def cell(name: str) -> str:
            errors, hit_count = flaws[name]
            note = (f" ({errors} errors)" if errors else "") + (f" ({hit_count} not misses)" if hit_count else "")
            return f"{rate[name]:.1f} img/s, {cpu[name]:.1f} ms CPU/img{note}"
        bare_goal, thumbor_goal = goals[key]
        service = BARE_SERVICE in rate
        rows.append(Row(f"miss throughput, {sources[key]}, concurrency {CONCURRENCY}",
                        {name: cell(name) for name in (NODE, THUMBOR, BARE_PYVIPS)}
                        | {"bare": f"Tornado service {cell(BARE_SERVICE)}" if service else dash},
                        [("node/bare", rate[NODE] / rate[BARE_PYVIPS], f"≥ {bare_goal}",
                          rate[NODE] / rate[BARE_PYVIPS] >= bare_goal),
                         ("node/thumbor", rate[NODE] / rate[THUMBOR], f"≥ {thumbor_goal}",
                          rate[NODE] / rate[THUMBOR] >= thumbor_goal)]
                        + ([("node/service", rate[NODE] / rate[BARE_SERVICE], "", None),
                            ("CPU service/node", cpu[BARE_SERVICE] / cpu[NODE], "", None)] if service else []),
                        [("node/thumbor", f"{label}/thumbor", rate[name] / rate[THUMBOR],
                          rate[name] / rate[THUMBOR] >= thumbor_goal)
                         for name, label in ((BARE_SERVICE, "service"), (BARE_PYVIPS, "bare")) if name in rate]
                        + ([("node/bare", "service/bare", rate[BARE_SERVICE] / rate[BARE_PYVIPS],
                             rate[BARE_SERVICE] / rate[BARE_PYVIPS] >= bare_goal)] if service else [])))
    if (NODE, "12 MP") in loads:
        names = (NODE, THUMBOR, BARE_PYVIPS, BARE_SERVICE)
        for kind in ("pss", "rss"):  # PSS: what the machine spends (the goal); RSS counts shared pages per process
            label = kind.upper()
            peak = {name: max(getattr(r.peak, kind) for r in loads[(name, "12 MP")]) for name in names}
            steady = {name: median([getattr(f, kind) for f in settled[name]]) for name in names}
            still = {name: getattr(footprint, kind) for name, footprint in idle.items()}
            ratios = {"peak": peak[NODE] / peak[THUMBOR], "steady": steady[NODE] / peak[THUMBOR]}
            goal = {key: ("≤ 1", ratio <= 1) if kind == "pss" else ("", None) for key, ratio in ratios.items()}
            rows.append(Row(f"{label} idle, before the miss loads", {name: f"{still[name]:.0f} MB" for name in names}
                            | {"bare": f"Tornado {still[BARE_TORNADO]:.0f} MB; nginx {still[NGINX]:.0f} MB; "
                                       f"Tornado service {still[BARE_SERVICE]:.0f} MB"}))
            rows.append(Row(f"{label} peak, 12 MP miss load", {name: f"{peak[name]:.0f} MB" for name in names}
                            | {"bare": f"Tornado service {peak[BARE_SERVICE]:.0f} MB"},
                            [("node/thumbor", ratios["peak"], *goal["peak"]),
                             ("node/service", peak[NODE] / peak[BARE_SERVICE], "", None)],
                            memory_floors("node/thumbor", peak, peak[THUMBOR]) if kind == "pss" else []))
            rows.append(Row(f"{label} steady, after the 12 MP load", {name: f"{steady[name]:.0f} MB" for name in names}
                            | {"bare": f"Tornado service {steady[BARE_SERVICE]:.0f} MB"},
                            [("node steady/thumbor peak", ratios["steady"], *goal["steady"]),
                             ("node/service", steady[NODE] / steady[BARE_SERVICE], "", None)],
                            memory_floors("node steady/thumbor peak", steady, peak[THUMBOR]) if kind == "pss" else []))
    return rows


def memory_floors(goal_of: str, footprint: dict[str, float], thumbor_peak: float) -> list[tuple[str, str, float, bool]]:
    """The memory goal of the node's `goal_of` ratio (at most thumbor's peak) held to bare pyvips and
    the bare service."""
    return [(goal_of, f"{label}/thumbor peak", footprint[name] / thumbor_peak, footprint[name] <= thumbor_peak)
            for name, label in ((BARE_PYVIPS, "bare"), (BARE_SERVICE, "service"))]


def verdicts(rows: list[Row]) -> str:
    """The goals the node misses in this run, each held to the stack alone (see `Row.verdict`)."""
    lines = [verdict for row in rows if (verdict := row.verdict())]
    if not lines:
        return "Every goal met."
    return ("Goals missed in this run, each held to the bare baselines (the bare Tornado service: Tornado, one "
            "hand-off to a libvips render as the node's, no cache; bare pyvips):\n\n" + "\n".join(lines))


def engine_section(costs: dict[tuple[str, str], float], throughput, loads) -> str:
    """benchmarks/engines.py's table, and each system's CPU per miss split into its engine's render
    and the rest (the service: HTTP, origin, cache, logs)."""
    lines = ["`benchmarks/engines.py`: the engines alone, one thread, no HTTP; CPU ms per image, medians:",
             "", engines.table(costs), "",
             "| miss, concurrency 8 | node: CPU/img = render + service | thumbor: CPU/img = render + service |",
             "| --- | --- | --- |"]
    for label, runs, key in (("2000×1333", throughput, "jpg"), ("4000×3000", loads, "12 MP")):
        if (NODE, key) not in runs:
            continue
        cells = []
        for name, engine in ((NODE, engines.NODE_RENDER), (THUMBOR, engines.PILLOW_RENDER)):
            cpu = median([run.cpu_ms for run in runs[(name, key)]])
            render = costs[(engine, label)]
            cells.append(f"{cpu:.1f} = {render:.1f} + {cpu - render:.1f}")
        lines.append(f"| {label} → {WIDTH} px JPEG | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def milliseconds(value: float) -> str:
    """Three significant figures or so, without exponents."""
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def table(rows: list[Row]) -> str:
    lines = [f"| measure | {NODE} (2 workers) | {THUMBOR} (2 × 1 process, nginx) | {BARE_PYVIPS} (2 threads) "
             f"| bare Tornado (2 processes) / nginx; misses: the bare Tornado service | ratios (goal from issue 15) |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {row.measure} | {row.cells[NODE]} | {row.cells[THUMBOR]} | {row.cells[BARE_PYVIPS]} | "
              f"{row.cells['bare']} | {row.ratio_text()} |" for row in rows]
    return "\n".join(lines)


def chart(path: Path, hits, cold, throughput, loads, settled, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {NODE: "#1f77b4", THUMBOR: "#ff7f0e", BARE_PYVIPS: "#2ca02c", BARE_TORNADO: "#9467bd", BARE_HTTP: "#e377c2", NGINX: "#7f7f7f",
               BARE_SERVICE: "#8c564b"}
    figure, axes = plt.subplots(2, 2, figsize=(13, 9))

    def bars(axis, groups: list[str], names: list[str], value: Callable[[str, str], float | None], ylabel: str):
        width = 0.8 / len(names)
        for index, name in enumerate(names):
            values = [value(name, group) for group in groups]
            xs = [g + index * width for g in range(len(groups))]
            axis.bar(xs, [v or 0 for v in values], width, label=name, color=colours[name])
        axis.set_xticks([g + width * (len(names) - 1) / 2 for g in range(len(groups))], groups)
        axis.set_ylabel(ylabel)
        axis.legend(fontsize=8)

    def med(data, key, attribute=None):
        if key not in data:
            return None
        return median([getattr(r, attribute) if attribute else r for r in data[key]])

    bars(axes[0][0], [f"{c} connections" for c in CONNECTIONS], [NODE, THUMBOR, BARE_TORNADO, BARE_HTTP, NGINX],
         lambda name, group: med(hits, (name, int(group.split()[0])), "rate"), "cache hits, req/s")
    axes[0][0].set_yscale("log")
    axes[0][1].set_title("")
    miss_groups = {FORMAT_NAME[fmt]: (throughput, fmt) for fmt in FORMATS} | {"12 MP → JPEG": (loads, "12 MP")}
    bars(axes[0][1], list(miss_groups), [NODE, THUMBOR, BARE_PYVIPS, BARE_SERVICE],
         lambda name, group: med(miss_groups[group][0], (name, miss_groups[group][1]), "rate"),
         f"misses to {WIDTH} px, img/s (concurrency {CONCURRENCY})")
    bars(axes[1][0], list(COLD_SOURCES), [NODE, THUMBOR, BARE_PYVIPS, BARE_SERVICE],
         lambda name, group: med(cold, (name, group)), "single cold miss, ms")
    bars(axes[1][1], ["peak", "steady"], [NODE, THUMBOR, BARE_PYVIPS, BARE_SERVICE],
         lambda name, group: (max((r.peak.pss for r in loads.get((name, "12 MP"), [])), default=None)
                              if group == "peak" else median([f.pss for f in settled.get(name, [])] or [None])),
         "PSS under 12 MP miss load, MB")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def update_readme(summary: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- compare:start -->", "<!-- compare:end -->"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        readme.write_text(f"{before}{start}\n{summary}\n{end}{rest.split(end, 1)[1]}")


# -- main ---------------------------------------------------------------------------------------------
def missing_requirements() -> list[str]:
    missing = []
    if shutil.which("wrk") is None:
        missing.append("wrk (Debian: apt-get install wrk)")
    if nginx_binary() is None:
        missing.append("nginx (Debian: apt-get install nginx)")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        missing.append("matplotlib (pip install -e '.[bench]')")
    return missing


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few seconds per case, for development")
    parser.add_argument("--rounds", type=int, help="rounds per measure (default 5; --quick 2)")
    parser.add_argument("--budget", type=float, default=14, help="minutes after which no new round starts")
    parser.add_argument("--output", type=Path, default=RESULTS, help="folder for compare.md and compare.png")
    parser.add_argument("--only", choices=["hits", "cold", "memory"],
                        help="only the cache-hit rows, the cold-miss rows or the memory rows (writes "
                             "compare-hits.md/.png, compare-cold.md/.png, compare-memory.md/.png)")
    return parser.parse_args()


def main() -> int:
    args = arguments()
    if missing := missing_requirements():
        print("benchmarks/compare.py needs: " + "; ".join(missing), file=sys.stderr)
        return 2
    plan = QUICK if args.quick else FULL
    if args.rounds:
        plan = Plan(**{**vars(plan), "rounds": args.rounds, "memory_rounds": min(plan.memory_rounds, args.rounds)})
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # and SIGTERM run the cleanup below
    venv = thumbor_venv()
    started = time.monotonic()
    load_before = os.getloadavg()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with tempfile.TemporaryDirectory(prefix="edge-compare-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        corpus = work / "originals"
        corpus.mkdir()
        print("starting the node, thumbor, nginx and the baselines", flush=True)
        node = start_node(stack, work, corpus)
        thumbor, thumbor_results = start_thumbor(stack, work, corpus, venv)
        bench = Bench(plan, work, corpus, {}, BarePyvips(stack), thumbor_results,
                      started + args.budget * 60)
        shutil.copy(SAMPLES / "astronaut.jpg", corpus / "hit.jpg")  # a real photo: a real-size output
        status, headers, body = get(node.hit_url)
        if status != 200:
            raise RuntimeError(f"the node did not answer its hit URL ({status})")
        # the node stores after it answers: a second request may still get the first one's flight
        deadline = time.monotonic() + 10
        while get(node.hit_url)[1].get("X-Cache") != "HIT":
            if time.monotonic() > deadline:
                raise RuntimeError("the node did not cache its hit URL within 10 s")
            time.sleep(0.05)
        for _ in range(4):  # both thumbor instances: the result is stored by the first, read by all
            if get(thumbor.hit_url)[0] != 200:
                raise RuntimeError("thumbor did not answer its hit URL")
        bench.systems = {NODE: node, THUMBOR: thumbor, BARE_PYVIPS: bench.bare.system,
                         BARE_TORNADO: start_bare_tornado(stack, work, body, 2),
                         BARE_HTTP: start_bare_tornado(stack, work, body, 2, "connection"),
                         BARE_SERVICE: start_bare_service(stack, corpus, 2),
                         NGINX: start_static_nginx(stack, work, body)}
        print(f"measuring ({plan.rounds} rounds; node {node.base_url}, thumbor {thumbor.base_url})", flush=True)
        idle, loads, settled, hits, cold, throughput, engine_costs = {}, {}, {}, {}, {}, {}, {}
        if args.only in (None, "memory"):
            idle, loads, settled = bench.memory()  # first: idle memory before any other load
        if args.only in (None, "hits"):
            hits = bench.hits()
        if args.only in (None, "cold"):
            cold = bench.cold()
        if args.only is None:
            throughput = bench.throughput()
            print("  the engines alone", flush=True)
            engine_costs = engines.measure(venv / "bin" / "python", plan.rounds, work)
        seconds = time.monotonic() - started
    load_after = os.getloadavg()

    rows = build_rows(hits, cold, throughput, idle, loads, settled)
    about = machine()
    load = (f"load average (1/5/15 min) {'/'.join(f'{v:.2f}' for v in load_before)} before, "
            f"{'/'.join(f'{v:.2f}' for v in load_after)} after")
    suffix = ("-quick" if args.quick else "") + (f"-{args.only}" if args.only else "")
    args.output.mkdir(parents=True, exist_ok=True)
    md, png = args.output / f"compare{suffix}.md", args.output / f"compare{suffix}.png"
    defaults = Defaults()
    thumbor_check = (f"thumbor's result storage gained {bench.thumbor_stored} files for "
                     f"{bench.thumbor_requests} miss requests")
    engine_text = (f"\n## Where a miss's CPU goes: the engine and the service\n\n"
                   f"{engine_section(engine_costs, throughput, loads)}\n" if engine_costs else "")
    text = f"""# The node side by side with thumbor, bare pyvips, bare Tornado and nginx

`.venv/bin/python -m benchmarks.compare{' --quick' if args.quick else ''}{f' --only {args.only}' if args.only else ''}`, {when}, {seconds / 60:.1f} min.

- Machine: {about['cpu']}; {load}.
- Software: {about['software']}.
- Plan: {plan.rounds} alternating rounds (the systems' order rotates each round), medians. Hits: wrk, 1 thread,
  {plan.hit_seconds} s per case, the node's {len(body) // 1024} kB {WIDTH} px JPEG of the sample `astronaut.jpg`. Cold misses:
  {plan.cold_per_round} unique files per size, system and round, one at a time. Miss throughput: {plan.miss_batch} unique
  files per format and round. 12 MP miss load: {plan.memory_batch} unique files per round, {plan.memory_rounds} rounds,
  memory sampled every 50 ms during it (and only then: reading it slows what runs) and read
  {plan.settle_seconds:g} s after each. CPU is each system's own (all its processes, from /proc); RSS and
  PSS are summed over its processes: RSS counts a page shared by forked processes in each, PSS divides it among
  them, so the PSS sum is what the system costs the machine (the goal is on PSS).
- Configuration: the node's defaults (quality {defaults.quality}, AVIF effort {defaults.avif_effort}, access log on),
  `--workers 2`, one local origin; thumbor {THUMBOR_VERSION} with its PIL engine and no engine thread pool (its
  defaults), file loader over the same folder, file storage, file result storage storing unsafe URLs, quality
  {defaults.quality} for JPEG and WebP, {encoder_options(defaults).avif_quality} for AVIF (the node's AVIF quality for
  it), AVIF speed {9 - defaults.avif_effort} with aom, non-progressive JPEG,
  behind nginx (1 worker, round robin, upstream keep-alive); nginx's floor: 2 workers, sendfile.
- Misses: the node answered `X-Cache: MISS` to {bench.node_misses} of {bench.node_requests} miss requests, and {thumbor_check}.
- Goals: issue 15's (WebP and AVIF miss throughput take the JPEG row's); ✓ met, ✗ not met in this run. Ratios are of
  medians; on a shared machine read CPU per request or image (each system's own) before rates.
{''.join(f'- Cut short: {note}.{chr(10)}' for note in bench.cut_short)}
{table(rows)}

{verdicts(rows)}

![chart](compare{suffix}.png)
{engine_text}"""
    md.write_text(text)
    chart(png, hits, cold, throughput, loads, settled, f"edge vs thumbor, {when}; {about['cpu']}; {load}")
    print(text)
    if not args.quick and not args.only:
        update_readme(f"Measured by `benchmarks/compare.py` on {about['cpu']}, {when}; {load}; "
                      f"[the full table and chart](benchmarks/results/compare.md).\n\n{table(rows)}\n\n{verdicts(rows)}")
    print(f"wrote {md} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
