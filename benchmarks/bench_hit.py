"""Cache-hit throughput: the node against a bare Tornado handler serving the same bytes from memory.

Both servers run as single processes on 127.0.0.1 and are driven by the same wrk load in alternating
rounds, so the machine's noise hits both alike; the figure that matters is the ratio of the medians.
Goal: the node serves cache hits at ≥ 0.8 of the bare handler's rate.

    .venv/bin/python -m benchmarks.bench_hit [--rounds 5] [--seconds 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from benchmarks.common import median, start_node, wrk_requests_per_second
from tests.nodes import SAMPLES

PATH = "/tr:w-300/astronaut.jpg"

BARE_SERVER = """
import asyncio, sys
import tornado.web
body = open(sys.argv[1], "rb").read()
class Bare(tornado.web.RequestHandler):
    def compute_etag(self):
        return None
    def get(self):
        self.set_header("Content-Type", "image/jpeg")
        self.finish(body)
async def main():
    server = tornado.web.Application([(r"/.*", Bare)]).listen(0, "127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]
    print(port, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def node_config(access_log: bool) -> str:
    return f"""
[server]
access_log = {str(access_log).lower()}
[[origins]]
name = "samples"
type = "local"
root = "{SAMPLES}"
[[endpoints]]
id = ""
origins = ["samples"]
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        nodes = {}
        for access_log in (True, False):
            folder = work / f"log-{access_log}"
            folder.mkdir()
            nodes[access_log] = start_node(folder, node_config(access_log))
        body = urllib.request.urlopen(nodes[True].url + PATH, timeout=30).read()  # the miss: now cached
        urllib.request.urlopen(nodes[False].url + PATH, timeout=30).read()
        (work / "body.jpg").write_bytes(body)
        bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(work / "body.jpg")],
                                stdout=subprocess.PIPE, text=True)
        bare_url = f"http://127.0.0.1:{bare.stdout.readline().strip()}/"
        try:
            rates: dict[str, list[float]] = {"bare": [], "node": [], "node, no access log": []}
            for _ in range(args.rounds):
                rates["bare"].append(wrk_requests_per_second(bare_url, args.seconds))
                rates["node"].append(wrk_requests_per_second(nodes[True].url + PATH, args.seconds))
                rates["node, no access log"].append(
                    wrk_requests_per_second(nodes[False].url + PATH, args.seconds))
        finally:
            bare.terminate()
            bare.wait(10)
            for node in nodes.values():
                node.stop()

    print(f"cache-hit throughput, {len(body)} B body, {args.rounds} rounds of {args.seconds:g}s, medians:")
    baseline = median(rates["bare"])
    for name, values in rates.items():
        print(f"  {name:22s} {median(values):8.0f} req/s   ratio {median(values) / baseline:.2f}")


if __name__ == "__main__":
    main()
