"""Shared pieces of the benchmarks: servers in child processes, wrk, CPU accounting, medians."""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import pyvips

from tests.nodes import NodeProcess, write_config

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("this benchmark needs wrk (Debian: apt-get install wrk)")
    return wrk


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass(frozen=True)
class LoadResult:
    requests_per_second: float
    #: the server's CPU time per request, in microseconds: robust when the machine is shared
    cpu_us_per_request: float
    #: wrk's 99th percentile of latency, in milliseconds
    p99_ms: float = 0.0


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk_load(url: str, server_pid: int | Sequence[int], seconds: int, connections: int = 16,
             script: Path | None = None) -> LoadResult:
    """One bounded wrk run (1 thread, keep-alive connections) against a 127.0.0.1 URL; the CPU time is
    that of `server_pid` (or the sum over several), the requests may come from a wrk Lua `script`."""
    assert url.startswith("http://127.0.0.1:")
    pids = [server_pid] if isinstance(server_pid, int) else list(server_pid)
    cpu_before = sum(map(cpu_seconds, pids))
    command = [require_wrk(), "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency", url]
    if script is not None:
        command[1:1] = ["-s", str(script)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30, check=True,
                            preexec_fn=_raise_fd_limit)
    cpu = sum(map(cpu_seconds, pids)) - cpu_before
    if "Non-2xx" in result.stdout or "Socket errors" in result.stdout:
        raise RuntimeError("benchmark run had errors:\n" + result.stdout)
    requests = int(re.search(r"(\d+) requests in", result.stdout).group(1))
    if requests == 0:
        raise RuntimeError("no request answered in the run: make it longer\n" + result.stdout)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", result.stdout)
    return LoadResult(rate, cpu / requests * 1e6, float(p99.group(1)) * _UNITS_MS[p99.group(2)])


def _raise_fd_limit() -> None:
    """wrk needs a file descriptor per connection (1000 connections are above a common soft limit)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def read_port(stdout: TextIO, processes: int) -> str:
    """The port a baseline server script listens on: it prints it once per process, all the same."""
    ports = {stdout.readline().strip() for _ in range(processes)}
    if len(ports) != 1 or "" in ports:
        raise RuntimeError(f"the server did not start: ports {ports}")
    return ports.pop()


@dataclass
class ForkedServer:
    """A baseline server script (`benchmarks/baselines.py`) run with `python -c` in `processes`
    processes (Tornado's `fork_processes`), each printing its port."""

    process: subprocess.Popen
    url: str
    pids: list[int]

    @classmethod
    def start(cls, script: str, args: list[str], processes: int) -> ForkedServer:
        process = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True,
                                   cwd=Path(__file__).resolve().parent.parent)  # scripts import `benchmarks`
        port = read_port(process.stdout, processes)
        pid = process.pid
        pids = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        return cls(process, f"http://127.0.0.1:{port}/", pids if processes > 1 else [pid])

    def stop(self) -> None:
        for pid in self.pids:
            if pid != self.process.pid:
                os.kill(pid, signal.SIGTERM)  # tornado's fork_processes leaves its children to us
        self.process.terminate()
        self.process.wait(10)
        self.process.stdout.close()


def start_node_process(directory: Path, config_text: str) -> NodeProcess:
    """`edge serve` in a child process, its access log discarded (`tests.nodes.start_node` is in-process)."""
    return NodeProcess(write_config(directory, config_text), stdout=subprocess.DEVNULL)


def median(values: list[float]) -> float:
    return statistics.median(values)


def print_load_ratios(results: dict[str, list[LoadResult]], baseline: str) -> None:
    """One line per target: median req/s and CPU per request, each as a ratio to `baseline`'s."""
    base_rate = median([r.requests_per_second for r in results[baseline]])
    base_cpu = median([r.cpu_us_per_request for r in results[baseline]])
    width = max(map(len, results))
    for name, runs in results.items():
        rate = median([r.requests_per_second for r in runs])
        cpu = median([r.cpu_us_per_request for r in runs])
        print(f"  {name:{width}s} {rate:7.0f} req/s (ratio {rate / base_rate:.2f})   "
              f"{cpu:5.0f} µs CPU/request ({baseline}/this {base_cpu / cpu:.2f})")


def load_parser(doc: str) -> argparse.ArgumentParser:
    """`--rounds` and `--seconds` of a wrk benchmark whose module docstring is `doc`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    return parser


def load_arguments(doc: str) -> argparse.Namespace:
    return load_parser(doc).parse_args()


def render_arguments(doc: str) -> argparse.Namespace:
    """`--rounds` of a benchmark whose module docstring is `doc`, timing renders in this process: libvips is then
    on one thread and without its operation cache, so that a round's CPU time is that render's alone."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    pyvips.cache_set_max(0)
    pyvips.concurrency_set(1)
    return arguments
