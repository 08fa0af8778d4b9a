"""The herd: N concurrent cold requests for one URL against a node with 2 workers, in front of an HTTP
origin that counts what reaches it. Reports the origin fetches per herd (goal: 1) and the p50/p99
latency of the herd's requests against a single cold request of the same kind, measured in the same
rounds (alternating); medians over rounds.

    .venv/bin/python -m benchmarks.bench_herd [--herd 100] [--rounds 5] [--origin-delay 0.05]

The origin (on 127.0.0.1, in this process) answers after `--origin-delay` seconds, as a remote one
would; the node runs as `edge serve` with 2 workers. Results go to stdout and
benchmarks/results/bench_herd.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient

from benchmarks.common import median, start_node_process
from tests.imagecorpus import photo_jpeg
from tests.nodes import web_config
from tests.scrape import scrape, total
from tests.servers import HTTPOrigin

RESULTS = Path(__file__).resolve().parent / "results"
REQUEST_TIMEOUT = 60


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


async def timed_get(client: AsyncHTTPClient, url: str) -> float:
    started = time.perf_counter()
    response = await client.fetch(url, request_timeout=REQUEST_TIMEOUT)
    assert response.code == 200
    return time.perf_counter() - started


async def run(herd: int, rounds: int, origin_delay: float) -> dict:
    photo = photo_jpeg(2400, 1600)
    origin = await HTTPOrigin().start()
    origin.behaviour.delay = origin_delay
    with tempfile.TemporaryDirectory() as tmp:
        node = start_node_process(Path(tmp), web_config(origin.url, "[server]\nworkers = 2\n"))
        client = AsyncHTTPClient(force_instance=True, max_clients=herd)
        measured = []
        try:
            for number in range(rounds):
                single_path, herd_path = f"single-{number}.jpg", f"herd-{number}.jpg"
                origin.files[single_path] = origin.files[herd_path] = photo
                coalesced_before = total(await scrape(node.url), "edge_coalesced_requests_total")
                herd_first = number % 2 == 0  # alternate, so drift hits both alike
                single = None
                if not herd_first:
                    single = await timed_get(client, f"{node.url}/tr:w-600/{single_path}")
                latencies = await asyncio.gather(
                    *(timed_get(client, f"{node.url}/tr:w-600/{herd_path}") for _ in range(herd)))
                if herd_first:
                    single = await timed_get(client, f"{node.url}/tr:w-600/{single_path}")
                # the same herd again, now all cache hits: what N concurrent requests cost by themselves
                hits = await asyncio.gather(
                    *(timed_get(client, f"{node.url}/tr:w-600/{herd_path}") for _ in range(herd)))
                measured.append({
                    "origin_fetches": origin.requests[herd_path],
                    "coalesced": total(await scrape(node.url), "edge_coalesced_requests_total") - coalesced_before,
                    "single_cold_s": single,
                    "herd_p50_s": quantile(latencies, 0.50),
                    "herd_p99_s": quantile(latencies, 0.99),
                    "hit_herd_p50_s": quantile(hits, 0.50),
                    "hit_herd_p99_s": quantile(hits, 0.99),
                })
        finally:
            client.close()
            node.stop()
            await origin.stop()
    return {
        "herd": herd, "rounds": rounds, "origin_delay_s": origin_delay, "original_bytes": len(photo),
        "per_round": measured,
        "medians": {key: median([m[key] for m in measured])
                    for key in ("origin_fetches", "coalesced", "single_cold_s", "herd_p50_s", "herd_p99_s",
                                "hit_herd_p50_s", "hit_herd_p99_s")},
        "max_origin_fetches": max(m["origin_fetches"] for m in measured),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--herd", type=int, default=100, help="concurrent requests per herd (≤ 500)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (≤ 50)")
    parser.add_argument("--origin-delay", type=float, default=0.05, help="seconds the origin takes to answer")
    args = parser.parse_args()
    herd, rounds = min(max(args.herd, 2), 500), min(max(args.rounds, 1), 50)
    report = asyncio.run(run(herd, rounds, max(args.origin_delay, 0.0)))

    m = report["medians"]
    print(f"herd of {herd} cold requests for one URL, 2 workers, origin delay {args.origin_delay:g}s, "
          f"{report['original_bytes']} B original → w-600; {rounds} rounds, medians:")
    print(f"  origin fetches per herd      {m['origin_fetches']:.0f} (max over rounds {report['max_origin_fetches']}; goal 1)")
    print(f"  coalesced requests per herd  {m['coalesced']:.0f} of {herd}")
    print(f"  single cold request          {m['single_cold_s'] * 1000:7.1f} ms")
    print(f"  herd p50                     {m['herd_p50_s'] * 1000:7.1f} ms   ratio {m['herd_p50_s'] / m['single_cold_s']:.2f}")
    print(f"  herd p99                     {m['herd_p99_s'] * 1000:7.1f} ms   ratio {m['herd_p99_s'] / m['single_cold_s']:.2f}")
    print(f"  the same herd, all hits      p50 {m['hit_herd_p50_s'] * 1000:.1f} ms, p99 {m['hit_herd_p99_s'] * 1000:.1f} ms"
          " (what N concurrent requests cost this client and node by themselves)")
    waiting = m["herd_p50_s"] - m["hit_herd_p50_s"]
    print(f"  herd p50 minus that          {waiting * 1000:7.1f} ms   ratio {waiting / m['single_cold_s']:.2f}"
          " (the wait for the one fetch and transform)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_herd.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
