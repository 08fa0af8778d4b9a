"""Shared pieces of the benchmarks: servers in child processes, wrk, medians."""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from tests.nodes import NodeProcess, write_config


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("this benchmark needs wrk (Debian: apt-get install wrk)")
    return wrk


def wrk_requests_per_second(url: str, seconds: int, connections: int = 16) -> float:
    """One bounded wrk run (1 thread, keep-alive connections) against a 127.0.0.1 URL."""
    assert url.startswith("http://127.0.0.1:")
    result = subprocess.run([require_wrk(), "-t1", f"-c{connections}", f"-d{round(seconds)}s", url],
                            capture_output=True, text=True, timeout=seconds + 30, check=True)
    if "Non-2xx" in result.stdout or "Socket errors" in result.stdout:
        raise RuntimeError("benchmark run had errors:\n" + result.stdout)
    return float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1))


def start_node(directory: Path, config_text: str) -> NodeProcess:
    return NodeProcess(write_config(directory, config_text), stdout=subprocess.DEVNULL)


def median(values: list[float]) -> float:
    return statistics.median(values)
