"""Cache hits counted in instructions: the node (1 worker) against bare Tornado, with valgrind's callgrind.

On a shared machine CPU time per request moves by ±15 % from one run to the next; the number of
instructions a process executes per request does not. Each server runs under callgrind twice, answering
N1 and then N2 sequential requests on one keep-alive connection after a warm-up; the difference of the
two totals over N2 - N1 is the cost of one hit, start-up excluded. The node's periodic jobs (metrics
sampling and the access log's timed flush, LRU marks, cache gauges, status snapshots) are switched off:
under valgrind a request takes ~50 times longer, so they would be charged to the requests ~50 times over.
With one connection every request is its own IOLoop turn: the metrics and access-log batching that
load brings does not help here, so this is the node's dearest case. User-space instructions only: the
kernel's share (socket writes) is the same for both.

Caveats: `rep stos`/`rep movs` count once per byte under valgrind, so large `memset`s weigh more here
than on the CPU; Python frames show as `_PyEval_EvalFrameDefault`, not by function (use py-spy for that).

    .venv/bin/python -m benchmarks.bench_hit_instructions [--n1 100] [--n2 600]

Needs valgrind (Debian: apt-get install valgrind); about 6 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import http.client
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.baselines import BARE_TORNADO_SERVER
from tests.nodes import SAMPLES, local_config, write_config

PATH = "/tr:w-300/astronaut.jpg"
WARM_UP = 30
#: `python -c NODE`: `edge serve` with the periodic jobs off
NODE = ("import edge.server, edge.statuspage; edge.server.TOUCH_FLUSH_SECONDS = edge.server.FLUSH_SECONDS = "
        "edge.server.GAUGE_REFRESH_SECONDS = edge.statuspage.SNAPSHOT_SECONDS = 1e6; "
        "import runpy; runpy.run_module('edge', run_name='__main__', alter_sys=True)")
START_TIMEOUT = 600


def instructions(target: str, requests: int, work: Path, body_file: Path) -> int:
    """Instructions executed by `target` (`node` or `bare`, all its processes) from start to exit,
    having answered WARM_UP + `requests` requests for the same cache hit. The node writes the body it
    serves into `body_file`; bare Tornado serves that file."""
    work.mkdir()
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={work}/callgrind.out.%p"]
    if target == "node":
        config = write_config(work, local_config(
            SAMPLES, before=f'[server]\nworkers = 1\n[cache]\ndir = "{work / "cache"}"\n'))
        server = subprocess.Popen([*valgrind, sys.executable, "-c", NODE, "serve", "--port", "0", "--config",
                                   str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=work)
        for line in server.stderr:  # bounded by the process: it exits (EOF) if it cannot start
            if found := re.search(r"listening on http://127\.0\.0\.1:(\d+)", line):
                port = int(found.group(1))
                break
        else:
            raise RuntimeError("the node did not start")
        path = PATH
    else:
        server = subprocess.Popen([*valgrind, sys.executable, "-c", BARE_TORNADO_SERVER, str(body_file), "1"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=work)
        port, path = int(server.stdout.readline()), "/hit.jpg"
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=START_TIMEOUT)
        for number in range(WARM_UP + requests):
            connection.request("GET", path, headers={"User-Agent": "bench", "Accept": "*/*"})
            response = connection.getresponse()
            body = response.read()
            if number == WARM_UP - 1 and target == "node":
                if response.headers["X-Cache"] != "HIT":
                    raise RuntimeError("the node did not answer from its cache after the warm-up")
                body_file.write_bytes(body)
        connection.close()
    finally:
        server.terminate()
        server.wait(START_TIMEOUT)
    return sum(int(re.search(r"^summary:\s+(\d+)", out.read_text(), re.MULTILINE).group(1))
               for out in work.glob("callgrind.out.*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n1", type=int, default=100)
    parser.add_argument("--n2", type=int, default=600)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("this benchmark needs valgrind (Debian: apt-get install valgrind)")
    per_hit = {}
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(2) as pool:
        body_file = Path(tmp) / "body.jpg"  # the node's output, then served by bare Tornado
        for target in ("node", "bare"):
            first, second = (pool.submit(instructions, target, n, Path(tmp) / f"{target}-{n}", body_file)
                             for n in (args.n1, args.n2))
            per_hit[target] = (second.result() - first.result()) / (args.n2 - args.n1)
    print(f"instructions per cache hit (callgrind, 1 process, 1 keep-alive connection, {args.n2} - {args.n1} "
          "requests):")
    print(f"  bare Tornado {per_hit['bare'] / 1000:7.0f} k")
    print(f"  node         {per_hit['node'] / 1000:7.0f} k   bare/node {per_hit['bare'] / per_hit['node']:.3f}")


if __name__ == "__main__":
    main()
