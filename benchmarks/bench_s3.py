"""What the `s3` origin adds to a fetch: `S3Origin.fetch()` against a bare aioboto3 `get_object` + read
of the same object from the same S3 server, interleaved in the same run; medians. Goal: under 20 %.

Also, for scale, the whole cache-miss request through a node (fetch + probe/transform + store + respond).

    .venv/bin/python -m benchmarks.bench_s3 [--rounds 200]

The S3 server (moto, on 127.0.0.1) runs in a child process so that it does not share our GIL.
Results go to stdout and benchmarks/results/bench_s3.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aioboto3
from aiobotocore.config import AioConfig

from benchmarks.common import median
from edge.origin import OriginRequest, OriginSettings
from edge.settings import Secret
from edge_builtin_origins.s3 import S3Origin
from tests.imagecorpus import photo_jpeg
from tests.nodes import start_node, write_config
from tests.s3server import REGION, TEST_KEY_ID, TEST_SECRET, S3Server

BUCKET = "edge-bench"
RESULTS = Path(__file__).resolve().parent / "results"
GOAL = 0.20


def start_s3_process() -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "tests.s3server"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()  # bounded: the child prints its URL first, or exits (EOF)
    if not line:
        raise RuntimeError("the S3 server process did not start")
    return process, json.loads(line)["url"]


def median_ms(samples: list[float]) -> float:
    return median(samples) * 1000


async def timed(operation) -> float:
    started = time.perf_counter()
    await operation()
    return time.perf_counter() - started


async def fetch_overhead(url: str, key: str, rounds: int) -> dict:
    origin = S3Origin(OriginSettings("bench", "s3"), bucket=BUCKET, folder="", region=REGION, endpoint_url=url,
                      access_key_id=Secret(TEST_KEY_ID), secret_access_key=Secret(TEST_SECRET),
                      path_style=True, encode_keys=False)
    await origin.open()
    session = aioboto3.Session()
    # botocore's defaults plus what moto needs; the origin also skips response checksums (CRC32), so the
    # baseline is measured both ways
    client_args = dict(region_name=REGION, endpoint_url=url, aws_access_key_id=TEST_KEY_ID,
                       aws_secret_access_key=TEST_SECRET)
    async with session.client("s3", **client_args, config=AioConfig(s3={"addressing_style": "path"})) as client, \
            session.client("s3", **client_args, config=AioConfig(
                s3={"addressing_style": "path"}, response_checksum_validation="when_required")) as unchecked:
        async def read(bare_client) -> None:
            response = await bare_client.get_object(Bucket=BUCKET, Key=key)
            async with response["Body"] as body:
                await body.read()

        async def bare() -> None:
            await read(client)

        async def bare_unchecked() -> None:
            await read(unchecked)

        async def through_origin() -> None:
            await origin.fetch(OriginRequest(key, 40 * 10**6))

        contenders = {"bare_get_object_ms": bare, "bare_unchecked_ms": bare_unchecked,
                      "origin_fetch_ms": through_origin}
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        for round_number in range(rounds + 10):  # interleaved, so that drift in the server hits all alike
            for name, operation in contenders.items():
                elapsed = await timed(operation)
                if round_number >= 10:  # the first rounds warm up connections and code paths
                    samples[name].append(elapsed)
    await origin.close()
    report = {name: round(median_ms(values), 3) for name, values in samples.items()}
    report["overhead"] = round(report["origin_fetch_ms"] / report["bare_get_object_ms"] - 1, 4)
    report["overhead_vs_unchecked"] = round(report["origin_fetch_ms"] / report["bare_unchecked_ms"] - 1, 4)
    return report


async def end_to_end_miss(url: str, keys: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        text = ("[server]\naccess_log = false\n" + S3Server(url=url).origin_table("bench", BUCKET)
                + '\n[[endpoints]]\nid = ""\norigins = ["bench"]\n')
        node = await start_node(write_config(Path(tmp), text))
        try:
            results = {}
            for name, transformation in (("miss_original_ms", "orig-true"), ("miss_resize_ms", "w-300")):
                samples = []
                for key in keys:  # every key once: every request is a cache miss
                    started = time.perf_counter()
                    response = await node.fetch(f"/tr:{transformation}/{key}")
                    samples.append(time.perf_counter() - started)
                    assert response.code == 200, response.code
                results[name] = round(median_ms(samples), 3)
            return results
        finally:
            await node.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--misses", type=int, default=40)
    args = parser.parse_args()

    process, url = start_s3_process()
    try:
        body = photo_jpeg(1200, 800)
        seeding = S3Server(url=url).client()
        seeding.create_bucket(Bucket=BUCKET)
        seeding.put_object(Bucket=BUCKET, Key="photo.jpg", Body=body)
        copies = [f"copy-{i}.jpg" for i in range(args.misses)]
        for key in copies:
            seeding.put_object(Bucket=BUCKET, Key=key, Body=body)

        started = time.perf_counter()
        report = {"object_bytes": len(body), "rounds": args.rounds}
        report.update(asyncio.run(fetch_overhead(url, "photo.jpg", args.rounds)))
        report.update(asyncio.run(end_to_end_miss(url, copies)))
        report["seconds"] = round(time.perf_counter() - started, 1)
    finally:
        process.stdin.close()
        process.wait(30)

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_s3.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"object: {report['object_bytes']} bytes, {args.rounds} interleaved rounds, medians")
    print(f"  bare aioboto3 get_object + read : {report['bare_get_object_ms']:8.3f} ms")
    print(f"  bare, response checksums off    : {report['bare_unchecked_ms']:8.3f} ms")
    print(f"  S3Origin.fetch                  : {report['origin_fetch_ms']:8.3f} ms"
          f"   ({report['overhead']:+.1%} vs bare, {report['overhead_vs_unchecked']:+.1%} vs checksums off;"
          f" goal < +{GOAL:.0%})")
    print(f"  node cache miss, orig-true      : {report['miss_original_ms']:8.3f} ms")
    print(f"  node cache miss, w-300          : {report['miss_resize_ms']:8.3f} ms")
    return 0 if max(report["overhead"], report["overhead_vs_unchecked"]) < GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
