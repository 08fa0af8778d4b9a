"""A fleet: 3 nodes behind HAProxy (the shipped config) with a shared S3 tier (moto), against 1 node
with the same total cache budget, on a Zipf-distributed set of URLs larger than one node's cache.

Reports, with the goals of issue 11:
- output hit ratio of the fleet vs the single node (goal: the fleet ≥ the single node, whose budget
  is 3× one fleet node's);
- origin fetches per unique URL across the fleet (goal 1.0: each output fetched and made once, even
  after local evictions, thanks to the shared tier);
- share of URLs remapped when one node is lost (goal ≤ 1/N + 5 %), and how many URLs of live nodes
  moved (goal 0);
- share of the remapped URLs answered from the shared tier, `X-Cache: SHARED` (goal ≥ 95 %);
- cache-hit throughput through HAProxy vs straight to the node (wrk, alternating rounds, medians).

    .venv/bin/python -m benchmarks.bench_fleet [--requests 3000] [--urls 900] [--rounds 3]

Everything runs on 127.0.0.1 and is bounded (three to five minutes on 2 shared cores: the misses
render). Needs haproxy and wrk.
Results go to stdout and benchmarks/results/bench_fleet.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient

from benchmarks.bench_s3 import start_s3_process
from benchmarks.common import median, start_node_process, wrk_load
from tests.loadbalancers import LoadBalancer, require
from tests.nodes import SAMPLES, local_config
from tests.s3server import REGION, TEST_KEY_ID, TEST_SECRET, S3Server
from tests.scrape import scrape, total

RESULTS = Path(__file__).resolve().parent / "results"
IMAGES = ("astronaut.jpg", "camera.jpg", "chelsea.jpg", "coffee.jpg")
BUCKET = "edge-fleet-bench"
#: one fleet node's output budget; the single node gets 3× (the same total)
NODE_BUDGET = 1_000_000
CONCURRENCY = 8
ZIPF_EXPONENT = 0.9
MARKED_DOWN_TIMEOUT = 30


def url_set(originals: Path, count: int) -> list[str]:
    """`count` URLs, each of its own original (copies of the sample photos), so that an origin fetch
    is one URL's: no two URLs share an original's fetch."""
    originals.mkdir()
    urls = []
    for number in range(count):
        image = IMAGES[number % len(IMAGES)]
        name = f"{number:05d}-{image}"
        (originals / name).write_bytes((SAMPLES / image).read_bytes())
        urls.append(f"/tr:w-{60 + number % 240}/{name}")
    return urls


def zipf_sequence(urls: list[str], requests: int, seed: int = 11) -> list[str]:
    """`requests` draws, URL i with weight 1/(i+1)^s, in a shuffled popularity order."""
    rng = random.Random(seed)
    ranked = urls[:]
    rng.shuffle(ranked)
    weights = [1 / (rank + 1) ** ZIPF_EXPONENT for rank in range(len(ranked))]
    return rng.choices(ranked, weights, k=requests)


def node_config(originals: Path, s3_url: str, output_size: int) -> str:
    return local_config(originals, before=f"""
[server]
access_log = false

[cache]
dir = "cache"
output_size = {output_size}
original_size = 0
""", after=f"""
[shared_cache]
bucket = "{BUCKET}"
folder = "/outputs/"
region = "{REGION}"
endpoint_url = "{s3_url}"
access_key_id = "{TEST_KEY_ID}"
secret_access_key = "{TEST_SECRET}"
""")


async def drive(base_url: str, paths: list[str]) -> list[tuple[str, str, str]]:
    """GET every path (CONCURRENCY at a time, in order); (path, X-Cache, X-Edge-Node) of each."""
    client = AsyncHTTPClient(force_instance=True, max_clients=CONCURRENCY)
    queue = iter(paths)
    answers: list[tuple[str, str, str]] = []

    async def worker() -> None:
        for path in queue:
            response = await client.fetch(base_url + path, request_timeout=60)
            answers.append((path, response.headers["X-Cache"], response.headers.get("X-Edge-Node", "")))

    try:
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    finally:
        client.close()
    return answers


async def origin_fetches(node_urls: list[str]) -> float:
    return sum([total(await scrape(url), "edge_origin_fetches_total") for url in node_urls])


def hit_ratio(answers, results=("HIT",)) -> float:
    return sum(cache in results for _, cache, _ in answers) / len(answers)


def cache_report(answers, node_urls_fetches: float, unique: int) -> dict:
    return {"hit_ratio": hit_ratio(answers), "hit_or_shared_ratio": hit_ratio(answers, ("HIT", "SHARED")),
            "origin_fetches_per_unique_url": node_urls_fetches / unique,
            "x_cache": dict(Counter(cache for _, cache, _ in answers))}


async def run_single(work: Path, s3_url: str, sequence: list[str]) -> dict:
    folder = work / "single"
    folder.mkdir()
    node = start_node_process(folder, node_config(work / "originals", s3_url, 3 * NODE_BUDGET))
    try:
        answers = await drive(node.url, sequence)
        return cache_report(answers, await origin_fetches([node.url]), len(set(sequence)))
    finally:
        node.stop()


async def run_fleet(work: Path, s3_url: str, sequence: list[str], rounds: int, seconds: int) -> dict:
    nodes = []
    for number in range(3):
        folder = work / f"fleet-{number}"
        folder.mkdir()
        nodes.append(start_node_process(folder, node_config(work / "originals", s3_url, NODE_BUDGET)))
    balancer = LoadBalancer("haproxy", [node.url for node in nodes], work / "haproxy", name_the_node=True)
    try:
        answers = await drive(balancer.public_url, sequence)
        report = cache_report(answers, await origin_fetches([n.url for n in nodes]), len(set(sequence)))
        served = Counter(node for _, _, node in answers)
        report["requests_per_node"] = dict(sorted(served.items()))

        hot = Counter(sequence).most_common(1)[0][0]
        owner_name = (await drive(balancer.public_url, [hot]))[0][2]
        owner = nodes[int(owner_name.rsplit("-", 1)[1]) - 1]
        report["throughput"] = throughput(balancer.public_url + hot, balancer.process.pid, owner, hot,
                                          rounds, seconds)
        report["node_loss"] = await lose_a_node(balancer, nodes, sorted(set(sequence)))
    finally:
        balancer.stop()
        for node in nodes:
            node.stop()
    return report


def throughput(proxied_url: str, proxy_pid: int, owner, path: str, rounds: int, seconds: int) -> dict:
    direct, proxied = [], []
    for _ in range(rounds):
        direct.append(wrk_load(owner.url + path, owner.process.pid, seconds).requests_per_second)
        proxied.append(wrk_load(proxied_url, owner.process.pid, seconds).requests_per_second)
    return {"direct_rps": median(direct), "through_haproxy_rps": median(proxied),
            "ratio": median(proxied) / median(direct)}


async def lose_a_node(balancer: LoadBalancer, nodes, urls: list[str]) -> dict:
    """Every URL once (owners), stop the node owning the first, wait until HAProxy routes around it,
    every URL once more."""
    before = {path: node for path, _, node in await drive(balancer.public_url, urls)}
    lost_name = before[urls[0]]
    nodes[int(lost_name.rsplit("-", 1)[1]) - 1].stop()
    deadline = time.monotonic() + MARKED_DOWN_TIMEOUT
    while (await drive(balancer.public_url, [urls[0]]))[0][2] == lost_name:
        if time.monotonic() > deadline:
            raise TimeoutError("HAProxy still sends the lost node's URLs to it")
        await asyncio.sleep(0.2)
    after = await drive(balancer.public_url, [path for path in urls if path != urls[0]])
    remapped = [(path, cache) for path, cache, node in after if node != before[path] and before[path] == lost_name]
    moved_from_live = [path for path, _, node in after if node != before[path] and before[path] != lost_name]
    return {"urls": len(urls), "lost_share": sum(n == lost_name for n in before.values()) / len(urls),
            "remapped_share": (len(remapped) + 1) / len(urls), "moved_from_live_nodes": len(moved_from_live),
            "remapped_served_from_shared": sum(cache == "SHARED" for _, cache in remapped) / max(1, len(remapped)),
            "remapped_x_cache": dict(Counter(cache for _, cache in remapped))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--urls", type=int, default=900)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=3)
    args = parser.parse_args()
    require("haproxy")
    started = time.perf_counter()
    s3_process, s3_url = start_s3_process()
    try:
        client = S3Server(url=s3_url).client()
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            urls = url_set(work / "originals", args.urls)
            sequence = zipf_sequence(urls, args.requests)
            client.create_bucket(Bucket=BUCKET)
            single = asyncio.run(run_single(work, s3_url, sequence))
            for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):  # the fleet starts cold
                client.delete_object(Bucket=BUCKET, Key=item["Key"])
            fleet = asyncio.run(run_fleet(work, s3_url, sequence, args.rounds, args.seconds))
    finally:
        s3_process.stdin.close()
        s3_process.wait(30)
    report = {"requests": args.requests, "urls": args.urls, "unique_urls_requested": len(set(sequence)),
              "node_budget_bytes": NODE_BUDGET, "single": single, "fleet": fleet,
              "seconds": round(time.perf_counter() - started, 1)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_fleet.json").write_text(json.dumps(report, indent=2) + "\n")
    loss, speed = fleet["node_loss"], fleet["throughput"]
    print(f"{args.requests} Zipf({ZIPF_EXPONENT}) requests over {args.urls} URLs "
          f"({report['unique_urls_requested']} requested), 3 × {NODE_BUDGET} B vs 1 × {3 * NODE_BUDGET} B of outputs")
    print(f"  hit ratio              fleet {fleet['hit_ratio']:.3f}   single node {single['hit_ratio']:.3f}")
    print(f"  hit or shared          fleet {fleet['hit_or_shared_ratio']:.3f}   "
          f"single node {single['hit_or_shared_ratio']:.3f}")
    print(f"  origin fetches / URL   fleet {fleet['origin_fetches_per_unique_url']:.3f}   "
          f"single node {single['origin_fetches_per_unique_url']:.3f}")
    print(f"  X-Cache                fleet {fleet['x_cache']}   single node {single['x_cache']}")
    print(f"  requests per node      {fleet['requests_per_node']}")
    print(f"  node lost: {loss['remapped_share']:.1%} of URLs remapped (it owned {loss['lost_share']:.1%}; "
          f"goal ≤ {1 / 3 + 0.05:.1%}), {loss['moved_from_live_nodes']} URLs of live nodes moved, "
          f"{loss['remapped_served_from_shared']:.1%} of remapped URLs served from the shared tier "
          f"{loss['remapped_x_cache']}")
    print(f"  hit throughput         direct {speed['direct_rps']:.0f} req/s, through HAProxy "
          f"{speed['through_haproxy_rps']:.0f} req/s (ratio {speed['ratio']:.2f})")
    print(f"  ({report['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
