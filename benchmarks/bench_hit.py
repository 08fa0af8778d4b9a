"""Cache-hit throughput: the node against a bare Tornado handler serving the same bytes from memory.

Both servers run as single processes on 127.0.0.1 and are driven by the same wrk load in alternating
rounds, so the machine's noise hits both alike; the figures that matter are ratios of medians. Two are
reported: requests per second, and the server's CPU time per request (read from /proc), which stays
meaningful when other work shares the machine. Goal: the node serves cache hits at ≥ 0.8 of the bare
handler's rate.

    .venv/bin/python -m benchmarks.bench_hit [--rounds 5] [--seconds 3]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from benchmarks.baselines import BARE_TORNADO_SERVER
from benchmarks.common import LoadResult, load_arguments, print_load_ratios, start_node_process, wrk_load
from tests.nodes import local_config

PATH = "/tr:w-300/astronaut.jpg"


def node_config(access_log: bool) -> str:
    return local_config(before=f"[server]\naccess_log = {str(access_log).lower()}")


def main() -> None:
    args = load_arguments(__doc__)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        nodes = {}
        for access_log in (True, False):
            folder = work / f"log-{access_log}"
            folder.mkdir()
            nodes[access_log] = start_node_process(folder, node_config(access_log))
        body = urllib.request.urlopen(nodes[True].url + PATH, timeout=30).read()  # the miss: now cached
        urllib.request.urlopen(nodes[False].url + PATH, timeout=30).read()
        (work / "body.jpg").write_bytes(body)
        bare = subprocess.Popen([sys.executable, "-c", BARE_TORNADO_SERVER, str(work / "body.jpg"), "1"],
                                stdout=subprocess.PIPE, text=True)
        bare_url = f"http://127.0.0.1:{bare.stdout.readline().strip()}/"
        try:
            targets = {
                "bare": (bare_url, bare.pid),
                "node": (nodes[True].url + PATH, nodes[True].worker_pids()[0]),
                "node, no access log": (nodes[False].url + PATH, nodes[False].worker_pids()[0]),
            }
            results: dict[str, list[LoadResult]] = {name: [] for name in targets}
            for _ in range(args.rounds):
                for name, (url, pid) in targets.items():
                    results[name].append(wrk_load(url, pid, args.seconds))
        finally:
            bare.terminate()
            bare.wait(10)
            for node in nodes.values():
                node.stop()

    print(f"cache-hit throughput, {len(body)} B body, {args.rounds} rounds of {args.seconds}s, medians:")
    print_load_ratios(results, "bare")

if __name__ == "__main__":
    main()
