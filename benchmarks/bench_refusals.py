"""What a request refused for overload costs the node, against a cache hit in the same run.

A node of one worker with one render thread and a queue of one, both held by slow renders (24 MP AVIFs of a
12 MP photo, tens of seconds each), is sent requests for new widths of the photo, 32 at a time: each is refused 503
`queue_full`. Then as many requests for one cached output. Reported per round: the worker's CPU per
request (every thread but libvips' and the render threads, read from /proc), medians over the rounds, and the
refusal's cost as a ratio to the hit's. A burst past the queue is an attacker's cheapest lever on the other
endpoints' hits: the refusals take the cores the hits need (docs/security.md, "Endpoints take turns").

    .venv/bin/python -m benchmarks.bench_refusals [--rounds 5] [--requests 600]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import CLOCK_TICKS, median, start_node_process
from edge.testing import Scrape, photo_image
from tests.nodes import local_config

#: 32 requests at a time, as the noisy-tenant probe's burst per worker
CONCURRENCY = 32
#: threads whose CPU is the renders' own, not what answering a request costs
RENDER_THREADS = ("vips", "pool")


def request_cpu_seconds(pid: int) -> float:
    """CPU time of the process' threads that answer requests (not libvips' nor the render threads)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        if text[text.index("(") + 1:text.rindex(")")].startswith(RENDER_THREADS):
            continue
        fields = text.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def get(url: str, timeout: float = 30) -> int | None:
    """The answer's status; None when there was none within `timeout`."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            answer.read()
            return answer.status
    except urllib.error.HTTPError as error:
        error.read()
        return error.code
    except TimeoutError:
        return None


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return answer.read().decode()


def cpu_ms_per_request(worker: int, urls: list[str], status: int) -> float:
    before = request_cpu_seconds(worker)
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        statuses = list(pool.map(get, urls))
    if set(statuses) != {status}:
        raise RuntimeError(f"expected every answer {status}, got {sorted(set(statuses))}")
    return (request_cpu_seconds(worker) - before) / len(urls) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        originals = Path(folder) / "originals"
        originals.mkdir()
        (originals / "photo.jpg").write_bytes(photo_image(4240, 2832))
        node = start_node_process(Path(folder), local_config(originals, before=(
            '[server]\ntransform_threads = 1\ntransform_queue = 1\naccess_log = false\n'
            '[limits]\nmax_cost = 5000\nrender_timeout = "600s"\n')))
        pool = ThreadPoolExecutor(2)
        try:
            [worker] = node.worker_pids()
            hit = f"{node.url}/tr:w-300,q-77/photo.jpg"  # a key none of the refused requests has
            get(hit)
            # the thread and the queue's one place held for the whole run (each AVIF takes seconds)
            slow = []
            for number in range(2):  # one after the other: the second must find the first running, not refuse it
                slow.append(pool.submit(get, f"{node.url}/tr:w-6000,f-avif,q-{90 + number}/photo.jpg"))
                deadline = time.monotonic() + 10
                while Scrape(get_text(f"{node.url}/metrics")).total("edge_inflight_requests") <= number:
                    if time.monotonic() > deadline:
                        raise RuntimeError("a slow render did not start")
                    time.sleep(0.05)  # the gauge is sampled every second
            if get(f"{node.url}/tr:w-99/photo.jpg", timeout=5) != 503:
                raise RuntimeError("the slow renders did not fill the thread and the queue")
            refusals, hits = [], []
            for number in range(args.rounds):
                widths = range(100 + number * args.requests, 100 + (number + 1) * args.requests)
                refusals.append(cpu_ms_per_request(worker, [f"{node.url}/tr:w-{w}/photo.jpg" for w in widths], 503))
                hits.append(cpu_ms_per_request(worker, [hit] * args.requests, 200))
                if any(task.done() for task in slow):
                    raise RuntimeError("a slow render ended: the queue was not held for the whole round")
        finally:
            node.stop()
            pool.shutdown(wait=False, cancel_futures=True)
    refusal, hit_cost = median(refusals), median(hits)
    print(f"{args.rounds} rounds x {args.requests} requests, {CONCURRENCY} at a time, medians:")
    print(f"  refused 503 queue_full  {refusal:.2f} ms CPU/request")
    print(f"  cache hit               {hit_cost:.2f} ms CPU/request")
    print(f"  refusal / hit           {refusal / hit_cost:.1f}")


if __name__ == "__main__":
    main()
